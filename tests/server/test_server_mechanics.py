"""Server mechanics with a scripted orchestration (deterministic timing and failures):
live SSE, cancel, the concurrency limit, internal errors, shutdown while running.

The orchestration entry point is replaced by `scripted`, which reads what to do from the
requirements' context: ``{"ticks": N, "tick_ms": T, "fail": KIND}``. Everything else
(HTTP, threads, store, SSE) is the real server.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest

import bootstrap.orchestrate as orchestrate_module
from bootstrap.orchestrate import Orchestration, OrchestrationError
from kernel import PrismCancelled, PrismLimitError

from .conftest import read_sse, wait_for_status

CALLS: list[dict[str, Any]] = []


def scripted(req: Any, *, registry: Any, composer: str = "builtin", store: Any = None,
             fresh: bool = False, input: Any = None, limits: Any = None, trace: Any = None,
             budget: Any = None, output: Any = None) -> Orchestration:
    ctx = req.context
    CALLS.append({"composer": composer, "fresh": fresh, "limits": limits})
    trace({"event": "orchestration_start", "pattern_id": "pat_scripted"})
    if output is not None:
        output("stdout", "hello from the pattern")
    for i in range(int(ctx.get("ticks", 0))):
        deadline = time.monotonic() + ctx.get("tick_ms", 10) / 1000
        while time.monotonic() < deadline:
            try:
                budget.check_time()
            except PrismCancelled as exc:
                raise OrchestrationError("cancelled", "the run was cancelled") from exc
            except PrismLimitError as exc:
                raise OrchestrationError("limit", exc.message) from exc
            time.sleep(0.002)
        trace({"event": "tick", "i": i})
    fail = ctx.get("fail")
    if fail == "internal":
        raise RuntimeError("boom: a bug with a secret path /etc/secret")
    if fail:
        raise OrchestrationError(fail, f"scripted {fail} failure")
    return Orchestration(value={"echo": req.input, "nan": float("nan")}, confidence=0.75,
                         pattern_id="pat_scripted", cached=False, composer=composer,
                         fallback_taken=bool(ctx.get("fallback")))


@pytest.fixture
def server(live_server, monkeypatch):
    monkeypatch.setattr(orchestrate_module, "orchestrate", scripted)
    CALLS.clear()
    return live_server


def req(**context: Any) -> dict[str, Any]:
    return {"goal": "scripted", "strategy": "parallel", "context": context, "input": {"task": "x"}}


def test_completed_result_is_the_cli_json_plus_the_execution(server):
    srv = server()
    with srv.client() as c:
        r = c.post("/api/orchestrate?wait=10", json=req(fallback=True))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["value"] == {"echo": {"task": "x"}, "nan": None}  # NaN is not JSON: null
        assert body["confidence"] == 0.75
        assert body["pattern"] == {"id": "pat_scripted", "cached": False, "composer": "builtin"}
        assert body["fallback_taken"] is True
        execution = c.get(body["execution"]["url"]).json()
        assert execution["status"] == "completed"
        assert execution["result"] == {k: v for k, v in body.items() if k != "execution"}
        assert execution["pattern_id"] == "pat_scripted"
        assert execution["fallback_taken"] is True
        assert execution["duration_ms"] >= 0
        kinds = [e.kind for e in srv.store.events(execution["id"])]
        assert kinds[0] == "status" and kinds[-1] == "status"
        assert "output" in kinds and "orchestration_start" in kinds


def test_query_options_reach_the_orchestration(server):
    srv = server()
    with srv.client() as c:
        assert c.post("/api/orchestrate?wait=10&fresh=true&composer=llm", json=req()).status_code == 200
        assert CALLS[-1]["composer"] == "llm" and CALLS[-1]["fresh"] is True
        assert c.post("/api/orchestrate?wait=10&fresh=0", json=req()).status_code == 200
        assert CALLS[-1]["composer"] == "builtin" and CALLS[-1]["fresh"] is False


def test_sse_is_live_while_running_then_replayed(server):
    srv = server()
    with srv.client() as c:
        r = c.post("/api/orchestrate", json=req(ticks=6, tick_ms=150))
        assert r.status_code == 202
        execution_id = r.json()["id"]
        arrivals: list[tuple[float, dict]] = []
        t0 = time.monotonic()
        with c.stream("GET", f"/api/executions/{execution_id}/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            for event in _iter_events(stream):
                arrivals.append((time.monotonic() - t0, event))
        events = [e for _, e in arrivals]
        ids = [int(e["id"]) for e in events]
        assert ids == list(range(1, len(ids) + 1))
        assert events[0]["event"] == "status" and events[0]["data"]["data"]["status"] == "running"
        assert events[-1]["event"] == "status" and events[-1]["data"]["data"]["status"] == "completed"
        ticks = [t for t, e in arrivals if e["event"] == "tick"]
        assert len(ticks) == 6
        # live: the ticks arrived spread over the run, not all at the end
        assert ticks[-1] - ticks[0] > 0.4
        # replay after the end: the same events, and Last-Event-ID resumes after it
        replay = read_sse(c.get(f"/api/executions/{execution_id}/events"))
        assert [e["id"] for e in replay] == [e["id"] for e in events]
        resumed = read_sse(c.get(f"/api/executions/{execution_id}/events",
                                 headers={"Last-Event-ID": "3"}))
        assert [int(e["id"]) for e in resumed] == ids[3:]
        assert [int(e["id"]) for e in read_sse(c.get(
            f"/api/executions/{execution_id}/events?after=5"))] == ids[5:]


def _iter_events(stream: httpx.Response):
    current: dict[str, Any] = {}
    for line in stream.iter_lines():
        if line == "":
            if "data" in current:
                current["data"] = json.loads(current["data"])
                yield current
            current = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            current[name] = value


def test_cancel_stops_a_running_execution(server):
    srv = server()
    with srv.client() as c:
        execution_id = c.post("/api/orchestrate", json=req(ticks=1, tick_ms=60_000)).json()["id"]
        wait_for_status(c, execution_id, ("running",))
        t0 = time.monotonic()
        r = c.post(f"/api/executions/{execution_id}/cancel")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "cancelled"
        assert r.json()["error"]["kind"] == "cancelled"
        assert time.monotonic() - t0 < 20  # the run would take 60 s
        again = c.post(f"/api/executions/{execution_id}/cancel")
        assert again.status_code == 409
        assert again.json()["error"]["kind"] == "conflict"
        last = srv.store.events(execution_id)[-1]
        assert last.kind == "status" and last.data["status"] == "cancelled"


def test_a_waiting_client_sees_the_cancellation(server):
    srv = server()
    with srv.client() as c:
        outcome: dict[str, httpx.Response] = {}

        def wait_for_it() -> None:
            with srv.client() as other:
                outcome["r"] = other.post("/api/orchestrate?wait=30", json=req(ticks=1, tick_ms=60_000))

        waiter = threading.Thread(target=wait_for_it)
        waiter.start()
        deadline = time.monotonic() + 10
        while not (running := c.get("/api/executions?status=running").json()["executions"]):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert c.post(f"/api/executions/{running[0]['id']}/cancel").status_code == 200
        waiter.join(10)
        assert outcome["r"].status_code == 409
        assert outcome["r"].json()["error"]["kind"] == "cancelled"


def test_concurrency_limit_answers_429_with_retry_after(server):
    srv = server(max_concurrent=2)
    with srv.client() as c:
        ids = [c.post("/api/orchestrate", json=req(ticks=1, tick_ms=60_000)).json()["id"]
               for _ in range(2)]
        r = c.post("/api/orchestrate", json=req())
        assert r.status_code == 429
        assert int(r.headers["Retry-After"]) >= 1
        assert r.json()["error"]["kind"] == "busy"
        assert c.get("/healthz").json()["running"] == 2
        for execution_id in ids:
            assert c.post(f"/api/executions/{execution_id}/cancel").status_code == 200
        assert c.post("/api/orchestrate?wait=10", json=req()).status_code == 200


@pytest.mark.parametrize("kind", ["requirements", "composer", "validation", "runtime", "limit"])
def test_a_failed_run_is_a_422_naming_the_kind(server, kind):
    srv = server()
    with srv.client() as c:
        r = c.post("/api/orchestrate?wait=10", json=req(fail=kind))
        assert r.status_code == 422
        assert r.json()["error"] == {"kind": kind, "message": f"scripted {kind} failure"}
        execution = c.get(r.json()["execution"]["url"]).json()
        assert execution["status"] == "failed"
        assert execution["error"]["kind"] == kind


def test_an_unexpected_error_is_a_generic_500_and_logged(server, caplog):
    srv = server()
    with srv.client() as c:
        r = c.post("/api/orchestrate?wait=10", json=req(fail="internal"))
        assert r.status_code == 500
        assert "secret" not in r.text and "boom" not in r.text
        assert r.json()["error"]["kind"] == "internal"
        execution = c.get(r.json()["execution"]["url"]).json()
        assert execution["status"] == "failed"
        assert "secret" not in json.dumps(execution)
    assert any("boom" in (rec.exc_text or "") or "boom" in str(rec.exc_info)
               for rec in caplog.records if rec.name == "prism.serve")


def test_stopping_the_server_marks_running_executions_interrupted(server):
    srv = server()
    with srv.client() as c:
        execution_id = c.post("/api/orchestrate", json=req(ticks=1, tick_ms=60_000)).json()["id"]
        wait_for_status(c, execution_id, ("running",))
    store_path = srv.store.path
    t0 = time.monotonic()
    srv.stop()
    assert time.monotonic() - t0 < 10
    from bootstrap.store import PatternStore
    with PatternStore(store_path) as store:
        record = store.get_execution(execution_id)
        assert record.status == "interrupted"
        assert json.loads(record.error)["kind"] == "interrupted"


def test_time_limit_of_the_server_bounds_every_run(server):
    from kernel import Limits
    srv = server(limits=Limits(timeout=0.3))
    with srv.client() as c:
        r = c.post("/api/orchestrate?wait=20", json=req(ticks=1, tick_ms=10_000))
        assert r.status_code == 422
        assert r.json()["error"]["kind"] == "limit"
