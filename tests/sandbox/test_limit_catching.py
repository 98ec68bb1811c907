"""Attack catalogue: a program cannot catch (or outlive) its own limit errors —
not with try/catch, finally, settle, Promise.allSettled or a retry loop."""
from __future__ import annotations

import pytest
from sandbox_helpers import attack, returns

from kernel import Limits

CATCHING = {
    "try-catch-loop": ("let r = 0; try { while (true) { } } catch (e) { r = 1 }; r", "steps"),
    "try-catch-finally-loop": ("let r = 0; try { while (true) { } } catch (e) { r = 1 } finally { r = 2 }; r", "steps"),
    "retry-loop": ("let n = 0; while (true) { try { while (true) { } } catch (e) { n = n + 1 } }", "steps"),
    "finally-extends-run": ("try { while (true) { } } finally { while (true) { } }", "steps"),
    "finally-after-limit-counts": ("let n = 0; try { while (true) { } } "
                                   "finally { for let i = 0; i < 1e9; i = i + 1 { n = n + 1 } }", "steps"),
    "nested-finally": ("try { try { while (true) { } } finally { let a = 1 } } catch (e) { 1 } "
                       "finally { while (true) { } }", "steps"),
    "catch-recursion": ("function f() { return f() }; try { f() } catch (e) { 1 }", "depth"),
    "catch-in-recursion": ("function f() { try { return f() } catch (e) { return 0 } }; f()", "depth"),
    "catch-size": ('let s = "x"; try { while (true) { s = s + s } } catch (e) { s = "caught" }; s', "size"),
    "catch-items": ("let a = [1]; try { while (true) { a = [...a, ...a] } } catch (e) { 1 }", "size"),
    "catch-time": ("try { await sleep(1e9) } catch (e) { 1 }", "time"),
    "catch-tasks": ("try { for let i = 0; i < 1000; i = i + 1 { spawn(() => sleep(1e6)) } } catch (e) { 1 }", "tasks"),
    "settle-loop": ("settle(() => { while (true) { } })", "steps"),
    "settle-recursion": ("function f() { return f() }; settle(f)", "depth"),
    "allSettled-task-loop": ("Promise.allSettled([spawn(() => { while (true) { } })])", "steps"),
    "catch-in-callback": ("[1, 2].map(x => { try { while (true) { } } catch (e) { 0 } })", "steps"),
    "catch-awaited-task": ("try { await spawn(() => { while (true) { } }) } catch (e) { 1 }", "steps"),
    "debounce-swallows": ("debounce(0)(() => { while (true) { } })()", "steps"),
    "match-guard-catch": ("try { match 1 { n if (() => { while (true) { } })() => 1, _ => 2 } } "
                          "catch (e) { 3 }", "steps"),
    "confidence-coalesce": ("(() => { while (true) { } })() ~?? 1", "steps"),
}


@pytest.mark.parametrize("source,limit", list(CATCHING.values()), ids=list(CATCHING))
def test_limit_errors_are_not_catchable(source: str, limit: str) -> None:
    # the wall clock decides only the time-limit cases; the others must not race it
    timed = limit == "time"
    limits = Limits(max_steps=200_000, timeout=1.0 if timed else 30.0, max_depth=200, max_items=100_000,
                    max_string=1_000_000, max_tasks=64)
    attack(source, "limit", limit, limits=limits, within=6.0 if timed else 30.0)


def test_runtime_errors_are_still_catchable() -> None:
    assert returns("let r = 0; try { null.x } catch (e) { r = e }; r").value == "Cannot access property 'x' on null"


def test_finally_runs_for_runtime_errors() -> None:
    assert returns("let r = 0; try { try { null.x } finally { r = 1 } } catch (e) { r = r + 1 }; r").value == 2


def test_catch_then_continue_after_runtime_errors_in_a_loop() -> None:
    r = returns("let n = 0; for let i = 0; i < 100; i = i + 1 { try { null.x } catch (e) { n = n + 1 } }; n")
    assert r.value == 100
