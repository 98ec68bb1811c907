"""The HTTP API end to end: a real uvicorn server on 127.0.0.1, simulated agents, httpx.

Sync (?wait) and async orchestration, SSE, cancel, the pattern endpoints, auth, and the
4xx answers to bad input.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from bootstrap.agents import load_registry
from bootstrap.orchestrate import orchestrate
from bootstrap.requirements import OrchestrationRequirements, validate_requirements
from bootstrap.server import openapi_document
from bootstrap.store import PatternStore

from .conftest import PARALLEL_REQ, read_sse, wait_for_status

ROOT = Path(__file__).resolve().parents[2]
PR_REVIEW = ROOT / "examples" / "pr-review"
TIMINGS = ("duration_ms", "t_ms", "elapsed_ms")


def stable(value):
    """``value`` without measured durations (which differ from run to run)."""
    if isinstance(value, dict):
        return {k: stable(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [stable(v) for v in value]
    return value

# --------------------------------------------------------------------------- basics


def test_healthz_and_openapi(live_server, fast_agents):
    srv = live_server(agents=fast_agents)
    with srv.client() as c:
        health = c.get("/healthz").json()
        assert health["status"] == "ok" and health["agents"] == 3
        doc = c.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {
        "/api/orchestrate", "/api/executions", "/api/executions/{id}",
        "/api/executions/{id}/events", "/api/executions/{id}/cancel", "/api/compose",
        "/api/patterns", "/api/patterns/{id}", "/api/patterns/{id}/run", "/healthz",
        "/openapi.json"}
    schema = doc["components"]["schemas"]["Requirements"]
    pydantic_schema = OrchestrationRequirements.model_json_schema(by_alias=True)
    assert set(schema["properties"]) == set(pydantic_schema["properties"])
    assert schema["required"] == ["goal"] and schema["additionalProperties"] is False
    assert doc == openapi_document()


# --------------------------------------------------------------------------- orchestration


def test_sync_orchestration_returns_the_result(live_server, fast_agents):
    srv = live_server(agents=fast_agents)
    with srv.client() as c:
        r = c.post("/api/orchestrate?wait=30", json=PARALLEL_REQ)
        assert r.status_code == 200, r.text
        body = r.json()
        assert {"value", "confidence", "pattern", "fallback_taken", "execution"} <= set(body)
        assert body["pattern"]["id"].startswith("pat_") and body["pattern"]["cached"] is False
        assert 0 <= body["confidence"] <= 1
        again = c.post("/api/orchestrate?wait=30", json=PARALLEL_REQ).json()
        assert again["pattern"]["cached"] is True
        assert stable(again["value"]) == stable(body["value"])
        assert again["confidence"] == body["confidence"]
        execution = c.get(body["execution"]["url"]).json()
    assert execution["status"] == "completed"
    assert execution["result"]["value"] == body["value"]
    assert execution["pattern_id"] == body["pattern"]["id"]
    assert execution["requirements"]["goal"] == PARALLEL_REQ["goal"]
    assert execution["input"] == PARALLEL_REQ["input"]
    assert execution["started_at"] and execution["finished_at"]


def test_result_is_the_same_as_the_cli_orchestration(live_server, fast_agents, tmp_path):
    srv = live_server(agents=fast_agents)
    with srv.client() as c:
        body = c.post("/api/orchestrate?wait=30", json=PARALLEL_REQ).json()
    with PatternStore(tmp_path / "cli-store.db") as store:
        direct = orchestrate(validate_requirements(PARALLEL_REQ), registry=load_registry(fast_agents),
                             store=store).to_json()
    assert stable({k: v for k, v in body.items() if k != "execution"}) == stable(direct)


def test_async_orchestration_202_then_poll(live_server, fast_agents):
    srv = live_server(agents=fast_agents)
    with srv.client() as c:
        r = c.post("/api/orchestrate", json={**PARALLEL_REQ, "strategy": "consensus"})
        assert r.status_code == 202
        body = r.json()
        assert r.headers["Location"] == body["url"] == f"/api/executions/{body['id']}"
        done = wait_for_status(c, body["id"])
        assert done["status"] == "completed", done
        assert done["result"]["confidence"] == done["confidence"]
        listed = c.get("/api/executions").json()["executions"]
        assert body["id"] in [e["id"] for e in listed]
        completed = c.get("/api/executions?status=completed,failed&limit=5").json()
        assert all(e["status"] in ("completed", "failed") for e in completed["executions"])


def test_wait_time_out_answers_202(live_server, tmp_path):
    from .conftest import agents_toml
    srv = live_server(agents=agents_toml(tmp_path / "a.toml", latency_ms=3000))
    with srv.client() as c:
        r = c.post("/api/orchestrate?wait=0.2", json=PARALLEL_REQ)
        assert r.status_code == 202                  # answered before the 3 s agents were done
        assert r.json()["status"] in ("pending", "running")
        assert wait_for_status(c, r.json()["id"])["status"] == "completed"


def test_sse_events_of_a_real_run(live_server, tmp_path):
    from .conftest import agents_toml
    srv = live_server(agents=agents_toml(tmp_path / "a.toml", latency_ms=300))
    with srv.client() as c:
        execution_id = c.post("/api/orchestrate", json=PARALLEL_REQ).json()["id"]
        with c.stream("GET", f"/api/executions/{execution_id}/events") as stream:
            live = read_sse(stream)
        kinds = [e["event"] for e in live]
        assert kinds[0] == "status" and kinds[-1] == "status"
        assert live[-1]["data"]["data"]["status"] == "completed"
        assert kinds.count("agent_call_start") == 3 and kinds.count("agent_call_end") == 3
        assert [int(e["id"]) for e in live] == list(range(1, len(live) + 1))
        assert all(e["data"]["seq"] == int(e["id"]) for e in live)
        replay = read_sse(c.get(f"/api/executions/{execution_id}/events"))
        assert replay == live
        stored = [(e.seq, e.kind) for e in srv.store.events(execution_id)]
        assert stored == [(int(e["id"]), e["event"]) for e in live]


def test_cancel_a_real_run_reaches_the_agent_calls(live_server, slow_agents):
    srv = live_server(agents=slow_agents)
    with srv.client() as c:
        execution_id = c.post("/api/orchestrate", json=PARALLEL_REQ).json()["id"]
        deadline = time.monotonic() + 10
        while not any(e.kind == "agent_call_start" for e in srv.store.events(execution_id)):
            assert time.monotonic() < deadline, "no agent call started"
            time.sleep(0.02)
        t0 = time.monotonic()
        r = c.post(f"/api/executions/{execution_id}/cancel")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "cancelled"
        assert time.monotonic() - t0 < 15  # the agents would take 20 s
        assert c.post(f"/api/executions/{execution_id}/cancel").status_code == 409


# --------------------------------------------------------------------------- patterns


def test_compose_then_patterns_endpoints(live_server, fast_agents):
    srv = live_server(agents=fast_agents)
    with srv.client() as c:
        composed = c.post("/api/compose", json={**PARALLEL_REQ, "minConfidence": 0.6})
        assert composed.status_code == 200, composed.text
        pattern = composed.json()
        assert pattern["id"].startswith("pat_") and pattern["cached"] is False
        assert "agents" in pattern["source"] or "select_agents" in pattern["source"]
        assert c.post("/api/compose", json={**PARALLEL_REQ, "minConfidence": 0.6}).json()["cached"]
        assert c.post("/api/compose?fresh=true",
                      json={**PARALLEL_REQ, "minConfidence": 0.6}).json()["cached"] is False
        listing = c.get("/api/patterns").json()
        assert listing["total"] == 1 and listing["patterns"][0]["id"] == pattern["id"]
        assert "source" not in listing["patterns"][0]
        shown = c.get(f"/api/patterns/{pattern['id']}").json()
        assert shown["source"] == pattern["source"]
        assert shown["requirements"]["minConfidence"] == 0.6
        run = c.post(f"/api/patterns/{pattern['id']}/run?wait=30", json={"input": {"task": "y"}})
        assert run.status_code == 200, run.text
        assert run.json()["pattern"]["id"] == pattern["id"]
        execution = c.get(run.json()["execution"]["url"]).json()
        assert execution["pattern_id"] == pattern["id"] and execution["input"] == {"task": "y"}
        no_body = c.post(f"/api/patterns/{pattern['id']}/run?wait=30")
        assert no_body.status_code == 200, no_body.text
        assert c.get("/api/patterns/pat_0000000000000000").status_code == 404
        assert c.post("/api/patterns/pat_0000000000000000/run", json={}).status_code == 404
        bad = c.post(f"/api/patterns/{pattern['id']}/run", json={"inptu": 1})
        assert bad.status_code == 422 and "inptu" in bad.json()["error"]["problems"][0]
        assert c.post(f"/api/patterns/{pattern['id']}/run", json=[1]).status_code == 422
        assert c.get("/api/patterns?limit=0").status_code == 400


def test_compose_failure_is_a_4xx_naming_the_problem(live_server, fast_agents):
    srv = live_server(agents=fast_agents)
    with srv.client() as c:
        r = c.post("/api/compose", json={
            "goal": "review", "strategy": "multi-perspective-consensus",
            "context": {"perspectives": ["security", "nope"], "requireAllPerspectives": True}})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["message"]


# --------------------------------------------------------------------------- auth


def test_auth_on(live_server, fast_agents):
    srv = live_server(agents=fast_agents, token="s3cret-token")
    with srv.client() as c:
        r = c.get("/api/executions")
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert r.json()["error"]["kind"] == "unauthorized"
        assert c.get("/api/executions", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/executions", headers={"Authorization": "Basic s3cret-token"}).status_code == 401
        assert c.post("/api/orchestrate", json=PARALLEL_REQ).status_code == 401
        assert c.get("/healthz").status_code == 200
        assert c.get("/openapi.json").json()["security"] == [{"bearer": []}]
        ok = c.get("/api/executions", headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status_code == 200
        authed = c.post("/api/orchestrate?wait=30", json=PARALLEL_REQ,
                        headers={"Authorization": "Bearer s3cret-token"})
        assert authed.status_code == 200


def test_auth_off(live_server, fast_agents):
    srv = live_server(agents=fast_agents)
    with srv.client() as c:
        assert c.get("/api/executions").status_code == 200
        assert c.get("/api/executions", headers={"Authorization": "Bearer anything"}).status_code == 200
        assert "security" not in c.get("/openapi.json").json()


# --------------------------------------------------------------------------- 4xx


@pytest.fixture
def client(live_server, fast_agents):
    srv = live_server(agents=fast_agents, max_body=10_000)
    with srv.client() as c:
        yield c


def _error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body["error"]) >= {"kind", "message"}
    return body["error"]


def test_bad_json(client):
    err = _error(client.post("/api/orchestrate", content=b'{"goal": "x",'), 400)
    assert err["kind"] == "bad_json" and "line 1" in err["message"]
    assert _error(client.post("/api/orchestrate", content=b""), 400)["kind"] == "bad_json"
    assert _error(client.post("/api/orchestrate", content=b"\xff\xfe{}"), 400)["kind"] == "bad_json"
    assert _error(client.post("/api/orchestrate", content=b'{"goal": NaN}'), 400)["kind"] == "bad_json"
    assert _error(client.post("/api/compose", content=b"nope"), 400)["kind"] == "bad_json"
    deep = b"[" * 5000 + b"]" * 5000
    assert client.post("/api/orchestrate", content=deep).status_code in (400, 422)


def test_missing_goal(client):
    err = _error(client.post("/api/orchestrate", json={"strategy": "parallel"}), 422)
    assert err["kind"] == "requirements"
    assert err["problems"] == ["goal: required field is missing"]


def test_min_confidence_out_of_range(client):
    err = _error(client.post("/api/orchestrate", json={"goal": "x", "minConfidence": 1.5}), 422)
    assert any(p.startswith("minConfidence:") and "between 0 and 1" in p for p in err["problems"])


def test_other_invalid_requirements(client):
    err = _error(client.post("/api/orchestrate", json={"goal": "x", "stratgy": "race"}), 422)
    assert "did you mean 'strategy'" in err["problems"][0]
    assert _error(client.post("/api/orchestrate", json=[1, 2]), 422)["kind"] == "requirements"
    assert _error(client.post("/api/orchestrate", json={"goal": "  "}), 422)["problems"][0].startswith("goal")
    assert _error(client.post("/api/compose", json={"goal": 3}), 422)["kind"] == "requirements"


def test_body_too_large(client):
    big = {"goal": "x", "input": "y" * 20_000}
    assert _error(client.post("/api/orchestrate", json=big), 413)["kind"] == "too_large"

    def chunks():  # no Content-Length: the limit holds while reading
        for _ in range(30):
            yield b" " * 1000

    assert client.post("/api/orchestrate", content=chunks()).status_code == 413


def test_bad_query_parameters(client):
    for query in ("wait=-1", "wait=abc", "wait=nan", "fresh=maybe", "composer=gpt"):
        assert _error(client.post(f"/api/orchestrate?{query}", json=PARALLEL_REQ), 400)["kind"] \
            == "bad_request", query
    for query in ("limit=0", "limit=x", "offset=-1", "status=done"):
        assert client.get(f"/api/executions?{query}").status_code == 400, query


def test_unknown_execution_and_routes(client):
    assert _error(client.get("/api/executions/exe_nope"), 404)["kind"] == "not_found"
    assert _error(client.get("/api/executions/exe_nope/events"), 404)["kind"] == "not_found"
    assert _error(client.post("/api/executions/exe_nope/cancel"), 404)["kind"] == "not_found"
    assert _error(client.get("/api/nothing"), 404)["kind"] == "not_found"
    r = client.get("/api/orchestrate")
    assert _error(r, 405)["kind"] == "method_not_allowed" and "POST" in r.headers["Allow"]


def test_bad_last_event_id(live_server, fast_agents):
    srv = live_server(agents=fast_agents)
    with srv.client() as c:
        execution_id = c.post("/api/orchestrate?wait=30", json=PARALLEL_REQ).json()["execution"]["id"]
        r = c.get(f"/api/executions/{execution_id}/events", headers={"Last-Event-ID": "x"})
        assert _error(r, 400)["kind"] == "bad_request"


# --------------------------------------------------------------------------- the README example


def test_pr_review_example_over_http_matches_the_cli(live_server, tmp_path):
    registry = load_registry(PR_REVIEW / "agents.toml")
    srv = live_server(agents=registry)
    raw = (PR_REVIEW / "requirements.json").read_bytes()
    with srv.client(timeout=120) as c:
        r = c.post("/api/orchestrate?wait=120", content=raw,
                   headers={"Content-Type": "application/x-www-form-urlencoded"})  # as curl -d
    assert r.status_code == 200, r.text
    body = r.json()
    with PatternStore(tmp_path / "cli.db") as store:
        req = validate_requirements(json.loads(raw))
        direct = orchestrate(req, registry=registry, store=store).to_json()
    assert stable({k: v for k, v in body.items() if k != "execution"}) == stable(direct)
