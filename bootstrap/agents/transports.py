"""Agent transports: deliver an `AgentRequest` to an agent and return its `AgentResponse`.

Consumes an `AgentSpec` and an `AgentRequest`; produces an `AgentResponse` and never
raises for a failed call (only cancellation propagates). Entry point: `call`.

* `python`: `target = "module:attr"`, a callable `(task, data, context)` (callables
  with fewer positional parameters get `(task, data)` or `(task)`), sync or async;
  sync callables run in a worker thread. The module is looked up first in the agent's
  `base_dir` (the agents TOML file's directory), which is put at the front of
  `sys.path` while the module is imported, then on the normal `sys.path`. A module of
  the same name loaded earlier from elsewhere is replaced, so two example folders can
  each hold an `agents.py`. Imports the module does lazily, after loading, see the
  normal `sys.path` only.
* `http`: POST `{task, data, context}` as JSON to `url`; one pooled
  `httpx.AsyncClient` per event loop (`aclose_clients` closes it).
* `llm`: OpenAI-compatible `/chat/completions`; the confidence rule is in
  `openai_compat`'s docstring (reported JSON confidence, else 0.5).
* `simulated`: seeded and reproducible, see `simulate`.

What a `python`/`http` agent returns is read by `AgentResponse.from_raw`. Every
response's metadata gets `agent`, `transport` and `duration_ms`.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import importlib.machinery
import inspect
import json
import random
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from . import openai_compat as oai
from .models import DEFAULT_CONFIDENCE, AgentRequest, AgentResponse, AgentSpec

__all__ = [
    "TRANSPORTS",
    "aclose_clients",
    "agent_prompt",
    "call",
    "call_http",
    "call_llm",
    "call_python",
    "call_simulated",
    "expected_answer",
    "resolve_target",
    "shared_client",
    "simulate",
]

TransportFn = Callable[[AgentSpec, AgentRequest], Awaitable[AgentResponse]]


async def call(spec: AgentSpec, request: AgentRequest, *, timeout: float | None = None) -> AgentResponse:
    """Call an agent through its transport, within `min(spec.timeout, timeout)` seconds.

    Never raises except `asyncio.CancelledError`: failures are responses with
    confidence 0 and an `error`.
    """
    limit = spec.timeout if timeout is None else min(spec.timeout, timeout)
    start = time.perf_counter()
    try:
        async with asyncio.timeout(limit):
            response = await TRANSPORTS[spec.transport](spec, request)
    except TimeoutError:
        response = AgentResponse.failure(f"timed out after {limit:g} s")
    except Exception as exc:  # the safety net: transports convert their own failures
        response = AgentResponse.failure(f"{type(exc).__name__}: {exc}")
    duration_ms = (time.perf_counter() - start) * 1000.0
    response.metadata.update(agent=spec.id, transport=spec.transport, duration_ms=round(duration_ms, 3))
    return response


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --------------------------------------------------------------------------- python

@dataclass(frozen=True)
class _Target:
    fn: Callable[..., Any]
    arity: int
    is_async: bool


_import_lock = threading.RLock()
_targets: dict[tuple[str, str | None], _Target] = {}


def _is_under(module: Any, directory: Path) -> bool:
    locations = [getattr(module, "__file__", None), *list(getattr(module, "__path__", []) or [])]
    for location in locations:
        if location and Path(location).resolve().is_relative_to(directory):
            return True
    return False


def _import_module(name: str, base_dir: str | None) -> Any:
    top = name.partition(".")[0]
    with _import_lock:
        if base_dir is None or importlib.machinery.PathFinder.find_spec(top, [base_dir]) is None:
            return importlib.import_module(name)
        if top in sys.stdlib_module_names:
            raise ImportError(f"module '{top}' in {base_dir} has the name of a standard-library module; rename it")
        loaded = sys.modules.get(top)
        if loaded is not None and not _is_under(loaded, Path(base_dir).resolve()):
            for key in [k for k in sys.modules if k == top or k.startswith(top + ".")]:
                del sys.modules[key]
        sys.path.insert(0, base_dir)
        try:
            importlib.invalidate_caches()
            return importlib.import_module(name)
        finally:
            if sys.path and sys.path[0] == base_dir:
                del sys.path[0]
            elif base_dir in sys.path:
                sys.path.remove(base_dir)


def _arity(fn: Callable[..., Any]) -> int:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return 3
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return 3
    positional = [p for p in params if p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                                                   inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    return len(positional) if len(positional) in (1, 2) else 3


_load_lock = threading.Lock()


def _load_target(target: str, base_dir: str | None) -> _Target:
    key = (target, base_dir)
    cached = _targets.get(key)
    if cached is not None:
        return cached
    # One import at a time: concurrent first calls of several agents of the same module
    # would otherwise race on sys.modules (and on replacing a same-named module from
    # another folder), and one of them would see a half-initialised module.
    with _load_lock:
        cached = _targets.get(key)
        if cached is not None:
            return cached
        return _load_target_locked(target, base_dir, key)


def _load_target_locked(target: str, base_dir: str | None, key: tuple) -> _Target:
    module_name, _, attr_path = target.partition(":")
    obj: Any = _import_module(module_name, base_dir)
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ImportError(f"'{module_name}' has no attribute '{attr_path}'") from None
    if not callable(obj):
        raise TypeError(f"'{target}' is a {type(obj).__name__}, not a callable")
    # a callable instance with an `async def __call__` is async too
    is_async = inspect.iscoroutinefunction(obj) or inspect.iscoroutinefunction(type(obj).__call__)
    loaded = _Target(obj, _arity(obj), is_async)
    _targets[key] = loaded
    return loaded


def resolve_target(target: str, base_dir: str | Path | None = None) -> Callable[..., Any]:
    """Import `"module:attr"` (looking in `base_dir` first) and return the callable.

    Raises `ImportError` or `TypeError`; results are cached per (target, base_dir).
    """
    return _load_target(target, None if base_dir is None else str(base_dir)).fn


async def call_python(spec: AgentSpec, request: AgentRequest) -> AgentResponse:
    """Run an in-process Python agent; exceptions become confidence-0 responses."""
    assert spec.target is not None
    try:
        target = _targets.get((spec.target, spec.base_dir))
        if target is None:  # importing can block: do it off the event loop
            target = await asyncio.to_thread(_load_target, spec.target, spec.base_dir)
    except Exception as exc:
        return AgentResponse.failure(f"cannot load python target '{spec.target}': {_describe(exc)}")
    args = (request.task, request.data, request.context)[: target.arity]
    try:
        if target.is_async:
            result = await target.fn(*args)
        else:
            result = await asyncio.to_thread(target.fn, *args)
            if inspect.isawaitable(result):
                result = await result
    except Exception as exc:
        return AgentResponse.failure(_describe(exc), traceback="".join(traceback.format_exception(exc)))
    return AgentResponse.from_raw(result)


# --------------------------------------------------------------------------- http

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()
_LIMITS = httpx.Limits(max_connections=512, max_keepalive_connections=128)


def shared_client() -> httpx.AsyncClient:
    """The running event loop's pooled HTTP client (created on first use)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        # No redirects: httpx would turn a POST answered by 301/302 into a GET.
        client = httpx.AsyncClient(limits=_LIMITS)
        _clients[loop] = client
    return client


async def aclose_clients() -> None:
    """Close the running event loop's HTTP client, if any."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


async def _post_json(url: str, payload: Any, headers: Mapping[str, str], timeout: float) -> Any | AgentResponse:
    """POST JSON and decode the JSON reply; any failure is returned as a failure response."""
    try:
        content = json.dumps(payload, allow_nan=False, ensure_ascii=False).encode()
    except (TypeError, ValueError) as exc:
        return AgentResponse.failure(f"request is not JSON-serializable: {exc}")
    headers = {"Content-Type": "application/json", **headers}
    try:
        response = await shared_client().post(url, content=content, headers=headers, timeout=timeout)
    except httpx.TimeoutException as exc:
        return AgentResponse.failure(f"timed out after {timeout:g} s ({type(exc).__name__}) calling {url}")
    except httpx.ConnectError as exc:
        return AgentResponse.failure(f"cannot connect to {url}: {_describe(exc)}")
    except httpx.HTTPError as exc:
        return AgentResponse.failure(f"HTTP request to {url} failed: {_describe(exc)}")
    if not response.is_success:
        return AgentResponse.failure(f"HTTP {response.status_code} from {url}: {_snippet(response.text)}",
                                     http_status=response.status_code)
    try:
        return response.json()
    except ValueError:
        return AgentResponse.failure(f"malformed JSON from {url}: {_snippet(response.text)!r}",
                                     http_status=response.status_code)


async def call_http(spec: AgentSpec, request: AgentRequest) -> AgentResponse:
    """POST `{task, data, context}` to the agent's URL and read the JSON reply."""
    assert spec.url is not None
    body = await _post_json(spec.url, request.payload(), spec.headers, spec.timeout)
    if isinstance(body, AgentResponse):
        return body
    return AgentResponse.from_raw(body)


# --------------------------------------------------------------------------- llm

def agent_prompt(request: AgentRequest) -> str:
    """The user message for an `llm` agent: the task, then its data and context as JSON."""
    parts = [f"Task: {request.task}"]
    if request.data is not None:
        parts.append("Data (JSON):\n" + json.dumps(request.data, indent=2, ensure_ascii=False, default=str))
    if request.context:
        parts.append("Context (JSON):\n" + json.dumps(request.context, indent=2, ensure_ascii=False, default=str))
    return "\n\n".join(parts)


async def call_llm(spec: AgentSpec, request: AgentRequest) -> AgentResponse:
    """Ask an OpenAI-compatible chat endpoint; see `openai_compat` for the confidence rule."""
    assert spec.base_url is not None and spec.model is not None
    try:
        headers = oai.auth_headers(spec.api_key_env, spec.headers)
    except oai.ChatProtocolError as exc:
        return AgentResponse.failure(str(exc))
    system = f"{spec.system}\n\n{oai.FORMAT_INSTRUCTIONS}" if spec.system else oai.FORMAT_INSTRUCTIONS
    payload = oai.chat_payload(spec.model, oai.chat_messages(system, agent_prompt(request)),
                               temperature=spec.temperature, max_tokens=spec.max_tokens)
    url = oai.chat_url(spec.base_url)
    body = await _post_json(url, payload, headers, spec.timeout)
    if isinstance(body, AgentResponse):
        return body
    try:
        completion = oai.parse_chat_completion(body)
    except oai.ChatProtocolError as exc:
        return AgentResponse.failure(f"unexpected reply from {url}: {exc}")
    if not completion.content.strip():
        return AgentResponse.failure("the model returned an empty answer",
                                     finish_reason=completion.finish_reason)
    answer = oai.parse_answer(completion.content)
    uncertainties = list(answer.uncertainties)
    if answer.confidence is None:
        uncertainties.append("the model reported no confidence")
    if completion.finish_reason == "length":
        uncertainties.append("the answer was cut off (finish_reason=length)")
    return AgentResponse(
        value=answer.value,
        confidence=DEFAULT_CONFIDENCE if answer.confidence is None else answer.confidence,
        reasoning=answer.reasoning or completion.reasoning,
        uncertainties=uncertainties,
        metadata={
            "model": completion.model or spec.model,
            "tokensUsed": completion.tokens_used,
            "finish_reason": completion.finish_reason,
            "confidence_source": "default" if answer.confidence is None else "reported",
        },
    )


# --------------------------------------------------------------------------- simulated

def expected_answer(task: str, data: Any) -> Any:
    """The "correct" answer of a simulated agent: `data["expected"]`, else derived from the task."""
    if isinstance(data, Mapping) and "expected" in data:
        return data["expected"]
    return "answer-" + hashlib.sha256(task.encode()).hexdigest()[:8]


def _rng(spec: AgentSpec, request: AgentRequest, purpose: str) -> random.Random:
    seed = spec.seed if spec.seed is not None else spec.id
    key = json.dumps([seed, request.task, request.data, request.context, purpose],
                     sort_keys=True, default=repr, ensure_ascii=False)
    return random.Random(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big"))


def _wrong_answer(correct: Any, data: Any, rng: random.Random) -> Any:
    choices = data.get("choices") if isinstance(data, Mapping) else None
    if isinstance(choices, list):
        others = [c for c in choices if c != correct]
        if others:
            return rng.choice(others)
    if isinstance(correct, bool):
        return not correct
    if isinstance(correct, int):
        return correct + rng.choice([-3, -2, -1, 1, 2, 3])
    if isinstance(correct, float):
        return correct * (1 + rng.choice([-1, 1]) * rng.uniform(0.1, 0.5)) if correct else rng.uniform(0.1, 1.0)
    return f"wrong-{rng.randrange(16 ** 6):06x}"


def simulate(spec: AgentSpec, request: AgentRequest) -> tuple[AgentResponse, float]:
    """A simulated agent's response and latency (seconds), without waiting. Deterministic.

    The RNG is seeded by (`seed`, or the agent id when unset; task; data; context), so
    the same seed and request always give the same response. With probability
    `failure_rate` the call fails; otherwise it is correct with probability `accuracy`
    (correct = `expected_answer`, wrong = another of `data["choices"]` or a perturbed
    value). Confidence = calibration * informative + (1 - calibration) * uninformative,
    where informative is U(0.75, 0.95) when correct and U(0.1, 0.4) when wrong, and
    uninformative is accuracy + U(-0.15, 0.15); clamped to [0.01, 0.99]. Latency =
    `latency_ms` + U(0, `jitter_ms`), from a separate stream so latency knobs do not
    change answers. `metadata` has `simulated: true`, `correct`, `expected`, `seed`.
    """
    latency_rng = _rng(spec, request, "latency")
    latency = (spec.latency_ms + latency_rng.uniform(0.0, spec.jitter_ms)) / 1000.0
    rng = _rng(spec, request, "answer")
    failed = rng.random() < spec.failure_rate
    correct = rng.random() < spec.accuracy
    informative = rng.uniform(0.75, 0.95) if correct else rng.uniform(0.1, 0.4)
    uninformative = spec.accuracy + rng.uniform(-0.15, 0.15)
    metadata: dict[str, Any] = {"simulated": True, "seed": spec.seed}
    if failed:
        return AgentResponse.failure("simulated failure", **metadata), latency
    expected = expected_answer(request.task, request.data)
    value = expected if correct else _wrong_answer(expected, request.data, rng)
    confidence = spec.calibration * informative + (1.0 - spec.calibration) * uninformative
    metadata.update(correct=correct, expected=expected)
    response = AgentResponse(
        value=value,
        confidence=round(min(0.99, max(0.01, confidence)), 4),
        reasoning=f"simulated agent '{spec.id}' answering {request.task!r}",
        metadata=metadata,
    )
    return response, latency


async def call_simulated(spec: AgentSpec, request: AgentRequest) -> AgentResponse:
    """Sleep for the simulated latency, then return `simulate`'s response."""
    response, latency = simulate(spec, request)
    if latency > 0:
        await asyncio.sleep(latency)
    return response


TRANSPORTS: dict[str, TransportFn] = {
    "python": call_python,
    "http": call_http,
    "llm": call_llm,
    "simulated": call_simulated,
}
