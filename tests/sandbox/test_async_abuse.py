"""Attack catalogue: promises, tasks and timers.  Concurrency is bounded by max_tasks,
every wait by the deadline; nothing outlives the run for long."""
from __future__ import annotations

import threading
import time

import pytest
from sandbox_helpers import attack, returns

from kernel import Limits

@pytest.fixture(autouse=True)
def _orphans_end_by_the_deadline():
    """Tasks nobody awaited run on until their run's deadline; they must be gone
    soon after it (and must not slow down the next test)."""
    before = threading.active_count()
    yield
    deadline = time.monotonic() + 8.0
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before, "tasks outlived their run's deadline"


ONE_SECOND = Limits(max_steps=1_000_000, timeout=1.0, max_depth=200, max_items=100_000, max_string=1_000_000,
                    max_tasks=64)

HALF_SECOND_64 = Limits(max_steps=1_000_000, timeout=0.5, max_depth=200, max_tasks=64)

TASKS = {
    "spawn-storm": "for let i = 0; i < 10000; i = i + 1 { spawn(() => sleep(1e6)) }",
    "async-storm": ("async function f() { await sleep(1e6) }; let ps = []; "
                    "for let i = 0; i < 10000; i = i + 1 { ps = ps.push(f()) }"),
    "recursive-spawn": "function f() { return spawn(f) }; await f()",
    "spawn-tree": "function f() { let a = spawn(f); let b = spawn(f); return await a }; await f()",
    "async-recursion": "async function f() { return await f() }; await f()",
    "map-of-async": "async function f(x) { await sleep(1e6) }; range(10000).map(f)",
}


@pytest.mark.parametrize("source", list(TASKS.values()), ids=list(TASKS))
def test_unbounded_concurrency_hits_tasks_limit(source: str) -> None:
    # the tasks limit trips within ~10 ms; the deadline only leaves room for a loaded
    # machine (starting 64 threads must not race a 0.5 s deadline)
    err = attack(source, "limit", "tasks", limits=Limits(timeout=5.0, max_tasks=64), within=15.0)
    assert "64" in err.message


def test_fork_bomb_without_await_is_bounded() -> None:
    # errors of tasks nobody awaits are dropped; the run still ends at its deadline
    attack("function f() { spawn(f); spawn(f); return 1 }; f(); await sleep(1e6)", "limit", "time",
           limits=HALF_SECOND_64, within=5.0)


def test_child_task_storm_is_the_childs_catchable_limit() -> None:
    r = returns('let r = null; try { eval_pattern("for let i = 0; i < 10000; i = i + 1 { spawn(() => sleep(1e6)) }") '
                "} catch (e) { r = [e.kind, e.limit] }; r", limits=HALF_SECOND_64)
    assert r.value == ["limit", "tasks"]


TIMERS = {
    "sleep-forever": "await sleep(1e12)",
    "delay-forever": "await delay(1e12)",
    "sleep-infinity": "await sleep(10 ** 400)",
    "promise-all-never": "Promise.all([spawn(() => sleep(1e12)), spawn(() => sleep(1e12))])",
    "promise-all-timers": "Promise.all([sleep(1e12), sleep(1e12)])",
    "promise-race-never": "await Promise.race([sleep(1e12), spawn(() => sleep(1e12))])",
    "allSettled-never": "Promise.allSettled([spawn(() => sleep(1e12))])",
    "await-task-forever": "await spawn(() => sleep(1e12))",
    "sleep-loop": "while (true) { await sleep(0) }",
    "many-short-sleeps": "for let i = 0; i < 1e9; i = i + 1 { await sleep(1) }",
    "debounce-forever": "debounce(1e12)(() => 1)()",
    "settle-forever": "settle(() => sleep(1e12))",
    "sleep-in-catch": "try { null.x } catch (e) { await sleep(1e12) }",
    "sleep-in-finally": "try { 1 } finally { await sleep(1e12) }",
    "sleep-in-child": 'eval_pattern("await sleep(1e12)")',
    "sleep-in-child-options": 'eval_pattern("await sleep(1e12)", {}, {timeout: 1e12})',
}


HALF_SECOND = HALF_SECOND_64


@pytest.mark.parametrize("source", list(TIMERS.values()), ids=list(TIMERS))
def test_waiting_forever_hits_time_limit(source: str) -> None:
    err = attack(source, "limit", "time", limits=HALF_SECOND, within=5.0)
    assert "time limit" in err.message


def test_sleep_under_a_one_second_timeout_ends_in_about_a_second() -> None:
    start = time.monotonic()
    attack("await sleep(1e12)", "limit", "time", limits=ONE_SECOND)
    assert 0.9 < time.monotonic() - start < 6.0


def test_child_timeout_is_catchable_and_the_caller_continues() -> None:
    r = returns('let r = null; try { eval_pattern("await sleep(1e12)", {}, {timeout: 0.2}) } '
                "catch (e) { r = [e.kind, e.limit] }; r", limits=HALF_SECOND_64)
    assert r.value == ["limit", "time"]


def test_orphaned_tasks_end_within_the_deadline() -> None:
    before = threading.active_count()
    r = returns("for let i = 0; i < 20; i = i + 1 { spawn(() => { while (true) { await sleep(10) } }) }; 1",
                limits=Limits(max_steps=1_000_000, timeout=0.5, max_tasks=64))
    assert r.value == 1
    deadline = time.monotonic() + 6.0
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before, "tasks outlived the run's deadline"


def test_orphaned_busy_task_stops_at_the_step_limit() -> None:
    before = threading.active_count()
    returns("spawn(() => { while (true) { } }); 1", limits=Limits(max_steps=100_000, timeout=5.0))
    deadline = time.monotonic() + 6.0
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before


def test_tasks_are_reusable_after_finishing() -> None:
    # max_tasks bounds *concurrent* tasks: 1000 sequential ones are fine
    r = returns("let n = 0; for let i = 0; i < 1000; i = i + 1 { n = n + await spawn(() => 1) }; n",
                limits=ONE_SECOND)
    assert r.value == 1000


def test_promise_all_of_many_resolved_values() -> None:
    assert len(returns("Promise.all(range(10000).map(x => Promise.resolve(x)))").value) == 10000


def test_cancelled_timer_does_not_wait() -> None:
    r = returns("let p = spawn(() => sleep(1e12)); cancel(p); 1", limits=ONE_SECOND, within=3.0)
    assert r.value == 1
