"""Property-based API tests generated from the server's own OpenAPI document.

* schemathesis (when installed) generates valid and invalid requests for every operation
  of ``/openapi.json`` and sends them to a live server: no answer may be a 5xx, every
  status code must be documented, and documented JSON bodies must match their schema.
* hypothesis alone throws arbitrary JSON and requirement-shaped bodies at the
  body-taking endpoints: never a 5xx, and every 4xx body names the problem.
"""

from __future__ import annotations

import json
from urllib.parse import quote
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootstrap.agents import load_registry
from bootstrap.server import create_app, openapi_document
from bootstrap.store import PatternStore

from .conftest import LiveServer, agents_toml

EXAMPLES = 25
# The kernel raises the recursion limit for deep programs; hypothesis only warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:The recursion limit will not be reset")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("api-props")
    registry = load_registry(agents_toml(tmp / "agents.toml", latency_ms=1))
    store = PatternStore(tmp / "store.db")
    app = create_app(registry=registry, store=store, max_concurrent=4, max_body=20_000)
    server = LiveServer(app, store).start()
    yield server
    server.stop()


# --------------------------------------------------------------------------- schemathesis

try:
    import schemathesis as _schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (content_type_conformance,
                                                   response_schema_conformance,
                                                   status_code_conformance)
except ImportError:  # pragma: no cover - the hypothesis tests below still run
    _schemathesis = None

if _schemathesis is not None:
    schema = _schemathesis.openapi.from_dict(openapi_document())

    @schema.parametrize()
    @settings(max_examples=EXAMPLES, deadline=None,
              suppress_health_check=list(HealthCheck))
    def test_openapi_operations_never_5xx(case: Any, api: LiveServer) -> None:
        if isinstance(case.query, dict) and _too_long(case.query.get("wait")):
            case.query = {**case.query, "wait": 1}  # keep the test short; 300 s is the cap
        case.call_and_validate(
            base_url=api.url, timeout=60,
            checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                    response_schema_conformance])
else:  # pragma: no cover
    @pytest.mark.skip(reason="schemathesis is not installed")
    def test_openapi_operations_never_5xx() -> None:
        pass


def _too_long(wait: Any) -> bool:
    try:
        return float(wait) > 5
    except (TypeError, ValueError):
        return False


# --------------------------------------------------------------------------- hypothesis

json_scalars = st.none() | st.booleans() | st.integers(-10**6, 10**6) \
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
strategies = st.sampled_from(["parallel", "sequential", "consensus", "multi-perspective-consensus",
                              "voting", "race", "resilient", "pipeline", "map-reduce",
                              "escalation", "Map_Reduce", "nonsense", ""])
requirement_like = st.fixed_dictionaries(
    {"goal": st.text(max_size=40) | st.integers()},
    optional={
        "strategy": strategies | json_scalars,
        "minConfidence": st.floats(-1, 2) | json_scalars,
        "fallback": st.sampled_from(["escalate to a1", "a2", "retry"]) | json_scalars,
        "context": st.fixed_dictionaries({}, optional={
            "perspectives": st.lists(st.sampled_from(["analysis", "security", "x"]), max_size=3),
            "requireAllPerspectives": st.booleans()}) | json_values,
        "input": json_values,
        "extra": json_values,
    })
bodies = requirement_like.map(lambda d: json.dumps(d).encode()) \
    | json_values.map(lambda v: json.dumps(v).encode()) \
    | st.binary(max_size=64)


def _check(r: httpx.Response) -> None:
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code >= 400:
        error = r.json()["error"]
        assert error["kind"] and error["message"]


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies, wait=st.sampled_from([None, "0", "5", "-1", "x"]))
def test_orchestrate_any_body_never_5xx(api: LiveServer, body: bytes, wait: str | None) -> None:
    with api.client() as c:
        url = "/api/orchestrate" + (f"?wait={wait}" if wait is not None else "")
        _check(c.post(url, content=body))


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies)
def test_compose_any_body_never_5xx(api: LiveServer, body: bytes) -> None:
    with api.client() as c:
        _check(c.post("/api/compose", content=body))


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(segment=st.text(min_size=1, max_size=30),
       query=st.dictionaries(st.sampled_from(["limit", "offset", "status", "after", "wait"]),
                             st.text(max_size=10), max_size=3))
def test_paths_and_queries_never_5xx(api: LiveServer, segment: str, query: dict) -> None:
    segment = quote(segment, safe="")
    with api.client() as c:
        for method, path in (("GET", f"/api/executions/{segment}"),
                             ("GET", f"/api/executions/{segment}/events"),
                             ("POST", f"/api/executions/{segment}/cancel"),
                             ("GET", f"/api/patterns/{segment}"),
                             ("POST", f"/api/patterns/{segment}/run"),
                             ("GET", "/api/executions"), ("GET", "/api/patterns")):
            _check(c.request(method, path, params=query))
