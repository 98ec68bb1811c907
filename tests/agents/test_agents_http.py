"""The http transport against real servers on 127.0.0.1, with injected faults."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from bootstrap.agents import transports
from bootstrap.agents.models import AgentRequest, AgentResponse, AgentSpec
from bootstrap.agents.registry import Registry
from bootstrap.agents.runtime import AgentRuntime

Run = Callable[[Any], Any]
LocalServer = Any  # the conftest fixture's server object


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def http_spec(url: str, timeout: float = 5.0, agent_id: str = "api") -> AgentSpec:
    return AgentSpec.from_config(agent_id, {"transport": "http", "url": url, "timeout": timeout})


def call(arun: Run, url: str, timeout: float = 5.0, task: str = "review", data: Any = None) -> AgentResponse:
    request = AgentRequest(task=task, data=data, context={"round": 1})
    return arun(transports.call(http_spec(url, timeout), request))


def test_normal_reply(arun: Run, agent_server: LocalServer) -> None:
    response = call(arun, agent_server.url("/ok"), task="normal-reply", data={"diff": "+x"})
    assert response.value == {"echo": "normal-reply"}
    assert response.confidence == 0.9
    assert response.reasoning == "looked closely"
    assert response.uncertainties == ["none really"]
    assert response.error is None
    assert response.metadata["model"] == "rules"
    assert response.metadata["agent"] == "api" and response.metadata["transport"] == "http"
    assert response.metadata["duration_ms"] >= 0
    sent = next(r for r in agent_server.requests if r["body"].get("task") == "normal-reply")
    assert sent["body"] == {"task": "normal-reply", "data": {"diff": "+x"}, "context": {"round": 1}}
    assert sent["headers"]["Content-Type"] == "application/json"


def test_reply_without_confidence_defaults_to_half(arun: Run, agent_server: LocalServer) -> None:
    response = call(arun, agent_server.url("/no-confidence"))
    assert (response.value, response.confidence, response.error) == ("fine", 0.5, None)


def test_slow_reply_within_timeout(arun: Run, agent_server: LocalServer) -> None:
    response = call(arun, agent_server.url("/slow"), timeout=5.0)
    assert response.value == "slow but fine" and response.confidence == 0.7
    assert response.metadata["duration_ms"] >= 190


def test_http_500(arun: Run, agent_server: LocalServer) -> None:
    response = call(arun, agent_server.url("/500"))
    assert response.confidence == 0.0 and response.value is None
    assert response.error is not None
    assert response.error.startswith("HTTP 500 from http://127.0.0.1:") and "internal kaboom" in response.error
    assert response.metadata["http_status"] == 500


def test_malformed_json(arun: Run, agent_server: LocalServer) -> None:
    response = call(arun, agent_server.url("/malformed"))
    assert response.confidence == 0.0
    assert response.error is not None and response.error.startswith("malformed JSON from")


def test_nan_confidence_from_server(arun: Run, agent_server: LocalServer) -> None:
    response = call(arun, agent_server.url("/nan"))
    assert response.value == 1 and response.confidence == 0.0
    assert response.error is not None and "finite" in response.error


def test_unknown_route_404(arun: Run, agent_server: LocalServer) -> None:
    response = call(arun, agent_server.url("/missing"))
    assert response.confidence == 0.0 and response.error is not None and "HTTP 404" in response.error


def test_refused_connection(arun: Run, refused_url: str) -> None:
    response = call(arun, refused_url)
    assert response.confidence == 0.0
    assert response.error is not None and response.error.startswith(f"cannot connect to {refused_url}")


def test_hanging_server_times_out(arun: Run, agent_server: LocalServer) -> None:
    response = call(arun, agent_server.url("/hang"), timeout=0.3)
    assert response.confidence == 0.0
    assert response.error is not None and "timed out after 0.3 s" in response.error
    assert 250 <= response.metadata["duration_ms"] < 5000


def test_unserialisable_data(arun: Run, agent_server: LocalServer) -> None:
    response = call(arun, agent_server.url("/ok"), data={"x": float("nan")})
    assert response.confidence == 0.0
    assert response.error is not None and response.error.startswith("request is not JSON-serializable")


def test_all_faults_at_once_through_the_runtime(agent_server: LocalServer, refused_url: str) -> None:
    """Every fault kind in one concurrent fan-out: each gives its documented response, none raises."""
    routes = {"ok": "/ok", "slow": "/slow", "e500": "/500", "bad": "/malformed", "hang": "/hang"}
    agents = {name: {"transport": "http", "url": agent_server.url(path), "timeout": 0.5}
              for name, path in routes.items()}
    agents["refused"] = {"transport": "http", "url": refused_url, "timeout": 0.5}
    events: list[dict[str, Any]] = []
    with AgentRuntime(Registry.from_dict({"agents": agents}), on_event=events.append) as runtime:
        futures = {name: runtime.submit(name, "fan-out", {"n": 1}) for name in agents}
        results = {name: future.result(timeout=10) for name, future in futures.items()}
    assert results["ok"].confidence == 0.9
    assert results["slow"].confidence == 0.7
    expected_errors = {"e500": "HTTP 500", "bad": "malformed JSON", "hang": "timed out", "refused": "cannot connect"}
    for name, fragment in expected_errors.items():
        assert results[name].confidence == 0.0, name
        assert fragment in (results[name].error or ""), (name, results[name].error)
    ends = {e["agent"]: e for e in events if e["event"] == "agent_call_end"}
    assert set(ends) == set(agents)
    assert ends["e500"]["confidence"] == 0.0 and "HTTP 500" in ends["e500"]["error"]
    assert ends["ok"]["error"] is None


def test_cancelling_the_future_cancels_the_request(agent_server: LocalServer) -> None:
    registry = Registry.from_dict({"agents": {"hang": {"transport": "http", "url": agent_server.url("/hang")}}})
    events: list[dict[str, Any]] = []
    with AgentRuntime(registry, on_event=events.append) as runtime:
        future = runtime.submit("hang", "cancel me")
        wait_for(lambda: any(e["event"] == "agent_call_start" for e in events))
        assert future.cancel()
        wait_for(lambda: any(e["event"] == "agent_call_end" for e in events))
    end = next(e for e in events if e["event"] == "agent_call_end")
    assert end["cancelled"] is True and end["error"] == "cancelled"
    assert future.cancelled()


@pytest.mark.parametrize("path", ["/ok", "/500"])
def test_client_is_pooled_per_loop(arun: Run, agent_server: LocalServer, path: str) -> None:
    async def two_calls() -> tuple[Any, Any]:
        first = transports.shared_client()
        await transports.call(http_spec(agent_server.url(path)), AgentRequest(task="pool"))
        return first, transports.shared_client()

    first, second = arun(two_calls())
    assert first is second
