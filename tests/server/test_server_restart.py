"""Nothing is lost: executions and events survive a restart; runs cut short are marked
``interrupted`` by the next server, never silently dropped."""

from __future__ import annotations

import time

import httpx

from .conftest import PARALLEL_REQ, agents_toml, read_sse, wait_for_status


def test_finished_execution_is_served_after_a_restart(live_server, fast_agents, tmp_path):
    store_file = tmp_path / "persist.db"
    first = live_server(agents=fast_agents, store=store_file)
    with first.client() as c:
        body = c.post("/api/orchestrate?wait=30", json=PARALLEL_REQ).json()
        execution_id = body["execution"]["id"]
        before = c.get(f"/api/executions/{execution_id}").json()
        events_before = read_sse(c.get(f"/api/executions/{execution_id}/events"))
    assert before["status"] == "completed"
    first.stop()

    second = live_server(agents=fast_agents, store=store_file)
    with second.client() as c:
        after = c.get(f"/api/executions/{execution_id}").json()
        events_after = read_sse(c.get(f"/api/executions/{execution_id}/events"))
        assert execution_id in [e["id"] for e in c.get("/api/executions").json()["executions"]]
        assert c.get(f"/api/patterns/{body['pattern']['id']}").status_code == 200
    assert after == before
    assert events_after == events_before
    assert after["result"]["value"] == body["value"]


def test_killed_server_leaves_interrupted_executions(spawn_server, tmp_path):
    store_file = tmp_path / "killed.db"
    slow = agents_toml(tmp_path / "slow.toml", latency_ms=20_000)
    server = spawn_server("--agents", str(slow), "--store", str(store_file)).wait_ready()
    with httpx.Client(base_url=server.url, timeout=10) as c:
        execution_id = c.post("/api/orchestrate", json=PARALLEL_REQ).json()["id"]
        wait_for_status(c, execution_id, ("running",))
        deadline = time.monotonic() + 10
        while not any(e["event"] == "agent_call_start"
                      for e in read_sse_nowait(c, execution_id)):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    server.kill()  # SIGKILL: no chance to record anything

    restarted = spawn_server("--agents", str(slow), "--store", str(store_file)).wait_ready()
    with httpx.Client(base_url=restarted.url, timeout=10) as c:
        record = c.get(f"/api/executions/{execution_id}").json()
        assert record["status"] == "interrupted"
        assert record["error"]["kind"] == "interrupted"
        assert record["finished_at"]
        events = read_sse(c.get(f"/api/executions/{execution_id}/events"))  # ends: it is final
        assert any(e["event"] == "agent_call_start" for e in events)
    assert restarted.terminate() == 0


def read_sse_nowait(c: httpx.Client, execution_id: str) -> list[dict]:
    """The events so far, without following the stream (reads the store through the API
    by asking for events after a huge sequence number would return nothing; instead read
    the execution's stream with a short timeout)."""
    events: list[dict] = []
    try:
        with c.stream("GET", f"/api/executions/{execution_id}/events", timeout=0.5) as stream:
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    events.append({"event": line[7:]})
    except httpx.ReadTimeout:
        pass
    return events


def test_graceful_stop_of_prism_serve_marks_running_interrupted(spawn_server, tmp_path):
    store_file = tmp_path / "graceful.db"
    slow = agents_toml(tmp_path / "slow.toml", latency_ms=20_000)
    server = spawn_server("--agents", str(slow), "--store", str(store_file)).wait_ready()
    with httpx.Client(base_url=server.url, timeout=10) as c:
        execution_id = c.post("/api/orchestrate", json=PARALLEL_REQ).json()["id"]
        wait_for_status(c, execution_id, ("running",))
    t0 = time.monotonic()
    assert server.terminate() == 0
    assert time.monotonic() - t0 < 10  # Ctrl-C does not wait for 20 s agents

    from bootstrap.store import PatternStore
    with PatternStore(store_file) as store:
        record = store.get_execution(execution_id)
    assert record.status == "interrupted"
