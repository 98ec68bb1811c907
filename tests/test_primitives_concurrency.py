"""The primitives library really runs things concurrently, and its keyed state outlives a run.

Overlap is shown structurally, never by a total wall-clock time: each task records when it
started and ended (``now()``), and the test counts how many were in flight at once; the agent
tests use a barrier agent that only answers once every call of the group has arrived, so
calls that did not overlap could never finish (they would hit the run's time limit).
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

import kernel
from bootstrap.agents.registry import load_registry
from bootstrap.host import Host, run_with_host


def run(source: str):  # noqa: ANN201 - kernel's result object
    return kernel.evaluate(textwrap.dedent(source), filename="<test>", limits=kernel.Limits(timeout=20))


def peak_overlap(intervals: list[list[float]]) -> int:
    """The largest number of [start, end] intervals open at one instant."""
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals],
                   key=lambda edge: (edge[0], edge[1]))  # an end before a start at the same instant
    open_now = peak = 0
    for _, step in edges:
        open_now += step
        peak = max(peak, open_now)
    return peak


# Each task returns [its value, [start, end]]; long sleeps leave room for a loaded machine.
TIMED_TASK = "i => () => { let t0 = now(); await sleep(SLEEP); return [i, [t0, now()]] }"


def test_peak_overlap_counts_open_intervals() -> None:
    assert peak_overlap([[0, 10], [5, 15], [10, 20]]) == 2
    assert peak_overlap([[0, 1], [1, 2], [2, 3]]) == 1
    assert peak_overlap([[0, 9]] * 4) == 4


def test_parallel_overlaps_twenty_sleeping_tasks() -> None:
    r = run(f"""
        import {{ parallel }} from "primitives/execution"
        parallel(range(20).map({TIMED_TASK.replace("SLEEP", "1000")}))
    """)
    assert [v for v, _ in r.value] == list(range(20))
    assert peak_overlap([span for _, span in r.value]) == 20, "the tasks did not all run at once"


def test_parallel_respects_max_concurrency() -> None:
    r = run(f"""
        import {{ parallel }} from "primitives/execution"
        parallel(range(6).map({TIMED_TASK.replace("SLEEP", "300")}), {{maxConcurrency: 2}})
    """)
    assert [v for v, _ in r.value] == list(range(6))
    assert peak_overlap([span for _, span in r.value]) == 2


def test_nested_primitives_do_not_deadlock() -> None:
    # A deadlock would end in the run's time limit (a PrismLimitError), not in a value.
    r = run("""
        import { parallel, race, batch } from "primitives/execution"
        import { retry } from "primitives/control"
        let inner = k => () => parallel(range(5).map(i => () => { await sleep(50); return k * 10 + i }), {maxConcurrency: 2})
        let outer = parallel(range(4).map(k => () => retry(inner(k), {delay: 1})), {maxConcurrency: 3})
        let first = race([() => batch(range(6).map(i => () => { await sleep(20); return i }), 2), () => { await sleep(15000); return "slow" }]);
        [outer, first]
    """)
    assert r.value[0] == [[k * 10 + i for i in range(5)] for k in range(4)]
    assert r.value[1] == list(range(6))


AGENTS_PY = '''
import asyncio

finished = []
arrived = []


async def barrier(task, data, context):
    """Answers only once ``data`` calls have arrived: calls that do not overlap never finish."""
    arrived.append(task)
    while len(arrived) < data:
        await asyncio.sleep(0.005)
    return {"value": task, "confidence": 0.9}

async def sleeper(task, data, context):
    await asyncio.sleep(0.1)
    finished.append(task)
    return {"value": task, "confidence": 0.9}

async def slow(task, data, context):
    await asyncio.sleep(0.6)
    finished.append("slow:" + task)
    return {"value": "slow", "confidence": 0.99}
'''

TOML = '''
[agents.sleeper]
transport = "python"
target = "prism_prim_agents:sleeper"

[agents.barrier]
transport = "python"
target = "prism_prim_agents:barrier"

[agents.slow]
transport = "python"
target = "prism_prim_agents:slow"
'''


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "prism_prim_agents.py").write_text(AGENTS_PY, encoding="utf-8")
    (tmp_path / "agents.toml").write_text(TOML, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    h = Host(load_registry(tmp_path / "agents.toml"))
    yield h
    h.close()


def test_parallel_agent_calls_overlap(host: Host) -> None:
    import prism_prim_agents  # type: ignore[import-not-found]
    prism_prim_agents.arrived.clear()
    r = run_with_host(textwrap.dedent("""
        import { parallel } from "primitives/execution"
        let results = parallel(range(20).map(i => ({agent: agents.barrier, task: "t" + i, data: 20})))
        results.map(x => x.value)
    """), host=host, limits=kernel.Limits(timeout=20))
    assert r.value == [f"t{i}" for i in range(20)]
    assert r.confidence == pytest.approx(0.9)
    assert sorted(prism_prim_agents.arrived) == sorted(f"t{i}" for i in range(20))


def test_race_cancels_the_losing_agent_call(host: Host) -> None:
    import prism_prim_agents  # type: ignore[import-not-found]
    r = run_with_host(textwrap.dedent("""
        import { race } from "primitives/execution"
        race([{agent: agents.slow, task: "a"}, {agent: agents.sleeper, task: "b"}]).value
    """), host=host, limits=kernel.Limits(timeout=20))
    assert r.value == "b"
    time.sleep(0.8)
    assert "slow:a" not in prism_prim_agents.finished, "the losing agent call ran to completion"


def test_circuit_breaker_state_persists_across_runs() -> None:
    key = f"persist-{time.time_ns()}"
    trip = f"""
        import {{ circuitBreaker }} from "primitives/control"
        circuitBreaker("{key}", () => {{ throw "down" }}, {{threshold: 1, volumeThreshold: 1, resetTimeout: 60000}}).state
    """
    assert run(trip).value == "open"
    later = run(f"""
        import {{ circuitBreaker, circuitState }} from "primitives/control"
        let ran = false
        let r = circuitBreaker("{key}", () => {{ ran = true; return 1 }});
        [r.error, ran, circuitState("{key}").state]
    """)
    assert later.value == ["circuit open", False, "open"]
    run(f'import {{ resetCircuit }} from "primitives/control"\nresetCircuit("{key}")')
    assert run(f'import {{ circuitState }} from "primitives/control"\ncircuitState("{key}").state').value == "closed"


def test_cache_persists_across_runs() -> None:
    ns = f"persist-{time.time_ns()}"
    src = f"""
        import {{ cache }} from "primitives/control"
        cache("k", () => now() ~> 0.9, {{namespace: "{ns}"}})
    """
    first, second = run(src), run(src)
    assert first.value == second.value
