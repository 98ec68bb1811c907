"""`prism run --virtual-time`: experiments with simulated agents on deterministic time.

Simulated agents answer when the virtual clock reaches their latency; agents that do
real I/O (here a python agent that really sleeps) keep time still while they work, so
a virtual timeout never fires merely because real work was slow.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

import kernel
from bootstrap.agents.registry import load_registry
from bootstrap.cli import cli
from bootstrap.host import Host, run_with_host
from kernel.clock import VirtualClock

AGENTS = """
[agents.steady]
transport = "simulated"
capabilities = ["review"]
latency_ms = 20000
seed = 1

[agents.jittery]
transport = "simulated"
capabilities = ["review"]
latency_ms = 3000
jitter_ms = 2000
seed = 2

[agents.stuck]
transport = "simulated"
capabilities = ["review"]
latency_ms = 45000
timeout = 40
seed = 3

[agents.real]
transport = "python"
target = "prism_vt_agents:real"
"""

AGENT_PY = """
import time

def real(task, data, context):
    time.sleep(0.3)          # real work, in real time
    return {"value": "done", "confidence": 0.8}
"""

PROGRAM = """
import { parallel, race } from "primitives/execution"
let t0 = now()
let rs = parallel([{agent: agents.steady, task: "q"}, {agent: agents.jittery, task: "q"},
                   {agent: agents.stuck, task: "q"}])
let afterParallel = now() - t0
let first = race([{agent: agents.steady, task: "q"}, {agent: agents.jittery, task: "q"}]);
{errors: rs.map(r => r.error), confidences: rs.map(r => <~ r), afterParallel: afterParallel,
 winner: first.agent, total: now() - t0}
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "agents.toml").write_text(AGENTS, encoding="utf-8")
    (tmp_path / "prism_vt_agents.py").write_text(AGENT_PY, encoding="utf-8")
    (tmp_path / "experiment.prism").write_text(PROGRAM, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def run_cli(workdir: Path, *extra: str) -> dict:
    result = CliRunner().invoke(cli, ["run", "--virtual-time", "--agents", str(workdir / "agents.toml"),
                                      "--json", *extra, str(workdir / "experiment.prism")])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_simulated_latency_passes_in_virtual_time(workdir: Path) -> None:
    out = run_cli(workdir)
    value = out["value"]
    # the parallel step lasts until the stuck agent's own 40 s timeout
    assert value["errors"] == [None, None, "timed out after 40 s"]
    assert value["afterParallel"] == 40000
    assert value["confidences"][2] == 0
    # the race: jittery answers within 3-5 s, long before steady's 20 s
    assert value["winner"] == "jittery"
    assert 3000 <= value["total"] - value["afterParallel"] <= 5000


def test_virtual_time_runs_are_reproducible(workdir: Path) -> None:
    assert run_cli(workdir) == run_cli(workdir)


def test_trace_marks_virtual_calls_with_their_simulated_durations(workdir: Path) -> None:
    trace = workdir / "trace.jsonl"
    run_cli(workdir, "--trace", str(trace))
    events = [json.loads(line) for line in trace.read_text(encoding="utf-8").splitlines()]
    ends = {e["call_id"]: e for e in events if e["event"] == "agent_call_end"}
    starts = [e for e in events if e["event"] == "agent_call_start"]
    assert len(starts) == len(ends) == 5 and all(e["virtual_time"] for e in ends.values())
    parallel, race = starts[:3], starts[3:]
    done = {s["agent"]: ends[s["call_id"]] for s in parallel}
    assert done["steady"]["duration_ms"] == 20000 and done["stuck"]["duration_ms"] == 40000
    assert done["stuck"]["error"] == "timed out after 40 s"
    # the race: jittery answers first; steady's call is cancelled at that moment, and says so
    raced = {s["agent"]: ends[s["call_id"]] for s in race}
    assert raced["jittery"]["cancelled"] is False
    assert raced["steady"]["cancelled"] is True and raced["steady"]["error"] == "cancelled"
    assert raced["steady"]["duration_ms"] == raced["jittery"]["duration_ms"]
    # events are written in virtual-time order: the 20 s answer after the 3-5 s one
    order = [e["call_id"] for e in events if e["event"] == "agent_call_end"]
    by_agent = {s["call_id"]: s["agent"] for s in parallel}
    assert [by_agent[c] for c in order[:3]] == ["jittery", "steady", "stuck"]


def test_real_work_keeps_virtual_time_still(workdir: Path) -> None:
    host = Host(load_registry(workdir / "agents.toml"))
    try:
        r = run_with_host(textwrap.dedent("""
            import { timeout } from "primitives/control"
            let t0 = now()
            let r = timeout({agent: agents.real, task: "t"}, 100);  // 100 virtual ms
            [r.value, now() - t0]
        """), host=host, limits=kernel.Limits(timeout=20), clock=VirtualClock())
    finally:
        host.close()
    assert r.value == ["done", 0]


def test_without_the_flag_the_clock_is_real(workdir: Path) -> None:
    (workdir / "quick.prism").write_text("let t0 = now()\nawait sleep(20)\nnow() - t0 >= 19", encoding="utf-8")
    result = CliRunner().invoke(cli, ["run", str(workdir / "quick.prism")])
    assert result.exit_code == 0 and result.stdout.strip() == "true"


PERSPECTIVES = ["security", "quality", "performance"]
SIMULATED_PANEL = "".join(f"""
[agents.sim{i}]
transport = "simulated"
capabilities = ["{cap}"]
latency_ms = {30000 + 5000 * i}
timeout = 120
seed = {i}
""" for i, cap in enumerate(PERSPECTIVES))


def test_orchestrate_on_virtual_time_is_reproducible(tmp_path: Path) -> None:
    (tmp_path / "agents.toml").write_text(SIMULATED_PANEL, encoding="utf-8")
    (tmp_path / "req.json").write_text(json.dumps({
        "goal": "review the change", "strategy": "consensus", "minConfidence": 0.5,
        "context": {"perspectives": PERSPECTIVES}, "input": {"task": "is 2 + 2 = 4?"}}), encoding="utf-8")

    def once(n: int) -> tuple[dict, list[dict]]:
        trace = tmp_path / f"trace{n}.jsonl"
        result = CliRunner().invoke(cli, ["orchestrate", str(tmp_path / "req.json"), "--agents",
                                          str(tmp_path / "agents.toml"), "--store", str(tmp_path / "p.db"),
                                          "--virtual-time", "--json", "--trace", str(trace)])
        assert result.exit_code == 0, result.output
        events = [json.loads(line) for line in trace.read_text(encoding="utf-8").splitlines()]
        return json.loads(result.stdout), events

    first, events = once(1)
    second, _ = once(2)
    assert (first["value"], first["confidence"]) == (second["value"], second["confidence"])
    calls = [e for e in events if e["event"] == "agent_call_end"]
    assert sorted(e["duration_ms"] for e in calls) == [30000, 35000, 40000]
    assert all(e["virtual_time"] for e in calls)


def test_legacy_fan_out_of_simulated_agents_is_virtual(tmp_path: Path) -> None:
    (tmp_path / "agents.toml").write_text(SIMULATED_PANEL, encoding="utf-8")
    (tmp_path / "legacy.prism").write_text(textwrap.dedent("""\
        /**
         * @name panel
         * @agents {"capabilities": ["security"]}
         */
        [successfulResults.length, agentResults[0].agentId]
    """), encoding="utf-8")
    trace = tmp_path / "t.jsonl"
    result = CliRunner().invoke(cli, ["run", "--legacy", "--virtual-time", "--agents", str(tmp_path / "agents.toml"),
                                      "--input", '{"task": "q"}', "--trace", str(trace), "--json",
                                      str(tmp_path / "legacy.prism")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["value"] == [1, "sim0"]
    ends = [json.loads(line) for line in trace.read_text(encoding="utf-8").splitlines()
            if json.loads(line)["event"] == "agent_call_end"]
    assert [(e["agent"], e["duration_ms"], e["virtual_time"]) for e in ends] == [("sim0", 30000, True)]


def test_eval_accepts_virtual_time() -> None:
    result = CliRunner().invoke(cli, ["eval", "--virtual-time",
                                      "let t = now(); await sleep(86400000); (now() - t) / 3600000"])
    assert result.exit_code == 0 and result.stdout.strip() == "24"


def test_a_simulated_call_left_unanswered_at_the_end_of_a_run_is_traced_as_cancelled(workdir: Path) -> None:
    (workdir / "orphan.prism").write_text('let p = agents.steady.analyze("q")\n"done before the answer"',
                                          encoding="utf-8")
    trace = workdir / "t.jsonl"
    result = CliRunner().invoke(cli, ["run", "--virtual-time", "--agents", str(workdir / "agents.toml"),
                                      "--trace", str(trace), str(workdir / "orphan.prism")])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in trace.read_text(encoding="utf-8").splitlines()]
    kinds = [(e["event"], e.get("cancelled")) for e in events if e["event"].startswith("agent_call")]
    assert kinds == [("agent_call_start", None), ("agent_call_end", True)]
