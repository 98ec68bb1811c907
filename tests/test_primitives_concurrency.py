"""The primitives library really runs things concurrently, and its keyed state outlives a run.

Timing assertions here are generous bounds that prove overlap (or its absence), not
benchmarks: 20 x 100 ms sequentially would take 2 s.
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


def timed(source: str) -> tuple[object, float]:
    t0 = time.perf_counter()
    r = run(source)
    return r, time.perf_counter() - t0


def test_parallel_overlaps_twenty_sleeping_tasks() -> None:
    r, elapsed = timed("""
        import { parallel } from "primitives/execution"
        parallel(range(20).map(i => () => { await sleep(100); return i }))
    """)
    assert r.value == list(range(20))
    assert elapsed < 1.0, f"20 x 100 ms took {elapsed:.2f} s: the tasks did not overlap"


def test_parallel_respects_max_concurrency() -> None:
    r, elapsed = timed("""
        import { parallel } from "primitives/execution"
        parallel(range(4).map(i => () => { await sleep(100); return i }), {maxConcurrency: 2})
    """)
    assert r.value == [0, 1, 2, 3]
    assert elapsed >= 0.2, f"4 x 100 ms with 2 in flight took only {elapsed:.2f} s"
    assert elapsed < 1.0


def test_nested_primitives_do_not_deadlock() -> None:
    r, elapsed = timed("""
        import { parallel, race, batch } from "primitives/execution"
        import { retry } from "primitives/control"
        let inner = k => () => parallel(range(5).map(i => () => { await sleep(50); return k * 10 + i }), {maxConcurrency: 2})
        let outer = parallel(range(4).map(k => () => retry(inner(k), {delay: 1})), {maxConcurrency: 3})
        let first = race([() => batch(range(6).map(i => () => { await sleep(20); return i }), 2), () => { await sleep(2000); return "slow" }]);
        [outer, first]
    """)
    assert r.value[0] == [[k * 10 + i for i in range(5)] for k in range(4)]
    assert r.value[1] == list(range(6))
    assert elapsed < 2.0


AGENTS_PY = '''
import asyncio

finished = []

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
    t0 = time.perf_counter()
    r = run_with_host(textwrap.dedent("""
        import { parallel } from "primitives/execution"
        let results = parallel(range(20).map(i => ({agent: agents.sleeper, task: "t" + i})))
        results.map(x => x.value)
    """), host=host, limits=kernel.Limits(timeout=20))
    elapsed = time.perf_counter() - t0
    assert r.value == [f"t{i}" for i in range(20)]
    assert r.confidence == pytest.approx(0.9)
    assert elapsed < 1.0, f"20 agent calls of 100 ms took {elapsed:.2f} s"


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
