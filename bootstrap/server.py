"""`prism serve`: the orchestration HTTP API (Starlette on uvicorn).

Consumes HTTP requests carrying `OrchestrationRequirements` (camelCase JSON, the same
model the CLI validates), an agent `Registry` and a `PatternStore`; produces
executions that run on worker threads and are written to the store as they happen,
their trace as server-sent events, and composed patterns.

Endpoints (the OpenAPI 3.1 document at ``/openapi.json`` is the reference):

* ``POST /api/orchestrate[?wait=S&fresh=true&composer=builtin|llm]`` — start a run;
  200 with the result when it finishes within ``wait`` seconds, else 202 with its id.
* ``GET /api/executions``, ``GET /api/executions/{id}``,
  ``GET /api/executions/{id}/events`` (SSE, live then replayed; ``id:`` is the event's
  sequence number, so ``Last-Event-ID`` resumes), ``POST /api/executions/{id}/cancel``.
* ``POST /api/compose``, ``GET /api/patterns``, ``GET /api/patterns/{id}``,
  ``POST /api/patterns/{id}/run``.
* ``GET /healthz``, ``GET /openapi.json`` (both open even when a token is required).

Error policy: every 4xx/5xx body is ``{"error": {"kind", "message", "problems"?}}``.
Bad input (JSON, requirements, query parameters, sizes) is always a 4xx naming the
problem; an orchestration that fails answers 422 (409 when cancelled) when waited for;
only an unexpected exception is a 500, with a generic body, and it is logged.

Restarts: on startup every execution still ``pending``/``running`` in the store is
marked ``interrupted`` (its process is gone), so run one server per store file.

Threads: the event loop never blocks on SQLite or on a run. Store calls go through
Starlette's thread pool; orchestrations (synchronous) get a thread each from a pool of
``max_concurrent`` workers; a request that finds every slot taken gets 429 with
``Retry-After`` (runs are never queued invisibly).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from .agents import Registry
from .requirements import OrchestrationRequirements, RequirementsError, validate_requirements
from .store import TERMINAL_STATUSES, ExecutionRecord, PatternRecord, PatternStore, StoreError, finite_json

__all__ = ["API_VERSION", "create_app", "openapi_document", "ExecutionManager"]

log = logging.getLogger("prism.serve")

API_VERSION = "1.0.0"
MAX_WAIT = 300.0            # seconds a client may ask ?wait= for (larger values are clamped)
CANCEL_WAIT = 5.0           # seconds POST /cancel waits for the run to stop before answering 202
SSE_POLL = 1.0              # seconds between store polls of an SSE stream without notification
SSE_KEEPALIVE = 15.0        # seconds between keep-alive comments on an idle SSE stream
MAX_EVENTS_PER_EXECUTION = 10_000
RETRY_AFTER_SECONDS = 1
COMPOSERS = ("builtin", "llm")


# --------------------------------------------------------------------------- errors


class ApiError(Exception):
    """An error answered as ``{"error": {"kind", "message", "problems"?}}``."""

    def __init__(self, status: int, kind: str, message: str, *,
                 problems: list[str] | tuple[str, ...] | None = None,
                 headers: Mapping[str, str] | None = None, extra: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.problems = list(problems) if problems is not None else None
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def response(self) -> Response:
        body: dict[str, Any] = {"kind": self.kind, "message": self.message}
        if self.problems is not None:
            body["problems"] = self.problems
        payload: dict[str, Any] = {"error": body, **self.extra}
        return JsonResponse(payload, status_code=self.status, headers=self.headers)



def _json_text(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError:
        return json.dumps(finite_json(value), ensure_ascii=False, separators=(",", ":"), default=str)
    except TypeError:
        return json.dumps(finite_json(value), ensure_ascii=False, separators=(",", ":"), default=str)


class JsonResponse(JSONResponse):
    """JSONResponse that never fails on NaN/Infinity or odd values (→ null / str)."""

    def render(self, content: Any) -> bytes:
        return _json_text(content).encode("utf-8")


# --------------------------------------------------------------------------- runs


@dataclass
class _Run:
    """An execution running (or about to run) in this process."""

    id: str
    budget: Any
    future: Future | None = None
    cancel_requested: bool = False
    pattern_id: str | None = None
    events: int = 0
    truncated: bool = False
    done: threading.Event = field(default_factory=threading.Event)


class ExecutionManager:
    """Owns the worker threads, the concurrency slots and the runs in flight.

    Every run writes to the store from its worker thread: ``running``, each trace
    event as it happens, then the final status event and the final record. Waiters
    (SSE streams, ``?wait``) are woken through the event loop.
    """

    def __init__(self, *, registry: Registry, store: PatternStore, max_concurrent: int = 8,
                 limits: Any = None, composer: str = "builtin", max_streams: int = 256):
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self.registry = registry
        self.store = store
        self.max_concurrent = max_concurrent
        self.limits = limits
        self.composer = composer
        self.max_streams = max_streams
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._busy = 0
        self._lock = threading.Lock()
        self._runs: dict[str, _Run] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._streams = 0
        self.closing = False
        self.started_at = time.time()

    # ----------------------------------------------------------------- lifecycle

    def start(self, loop: asyncio.AbstractEventLoop) -> int:
        """Mark runs left over by a previous process interrupted; start the workers."""
        self._loop = loop
        self.closing = False
        self._executor = ThreadPoolExecutor(max_workers=self.max_concurrent,
                                            thread_name_prefix="prism-run")
        count = self.store.mark_interrupted()
        if count:
            log.warning("marked %d execution(s) left running by a previous server as interrupted",
                        count)
        return count

    def begin_shutdown(self) -> list[_Run]:
        """Refuse new runs, end the event streams and cancel the runs in flight (they
        end as ``interrupted``). Safe to call from any thread, more than once."""
        self.closing = True
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            run.budget.cancel()
        for execution_id in list(self._waiters):
            self.notify(execution_id)
        return runs

    def stop(self, timeout: float = 10.0) -> None:
        """`begin_shutdown`, then wait for the runs to end and stop the workers."""
        runs = self.begin_shutdown()
        deadline = time.monotonic() + timeout
        for run in runs:
            run.done.wait(max(0.0, deadline - time.monotonic()))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        # A run that did not stop in time is still marked, so nothing is left "running".
        try:
            self.store.mark_interrupted()
        except StoreError:
            log.exception("could not mark unfinished executions interrupted")

    # ----------------------------------------------------------------- slots

    def acquire(self) -> None:
        if self.closing:
            raise ApiError(503, "unavailable", "the server is shutting down",
                           headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        if not self._slots.acquire(blocking=False):
            raise ApiError(
                429, "busy",
                f"all {self.max_concurrent} run slots are busy; retry later",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        with self._lock:
            self._busy += 1

    def release(self) -> None:
        with self._lock:
            self._busy -= 1
        self._slots.release()

    @property
    def busy(self) -> int:
        return self._busy

    def check_streams(self) -> None:
        if self._streams >= self.max_streams:
            raise ApiError(429, "busy", f"too many open event streams ({self.max_streams})",
                           headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    def open_stream(self) -> None:
        with self._lock:
            self._streams += 1

    def close_stream(self) -> None:
        with self._lock:
            self._streams -= 1

    # ----------------------------------------------------------------- notifications

    def subscribe(self, execution_id: str) -> asyncio.Event:
        event = asyncio.Event()
        self._waiters.setdefault(execution_id, set()).add(event)
        return event

    def unsubscribe(self, execution_id: str, event: asyncio.Event) -> None:
        waiters = self._waiters.get(execution_id)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                self._waiters.pop(execution_id, None)

    def _wake(self, execution_id: str) -> None:
        for event in list(self._waiters.get(execution_id, ())):
            event.set()

    def notify(self, execution_id: str) -> None:
        """Wake the SSE streams of an execution (callable from any thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._wake, execution_id)
        except RuntimeError:  # loop closed meanwhile
            pass

    # ----------------------------------------------------------------- runs

    def active(self, execution_id: str) -> _Run | None:
        with self._lock:
            return self._runs.get(execution_id)

    def _new_budget(self) -> Any:
        from kernel import Limits
        from kernel.sandbox import Budget
        return Budget(self.limits or Limits())

    def submit(self, record: ExecutionRecord, work: Callable[[_Run], Any]) -> _Run:
        """Run ``work(run)`` on a worker thread for an execution already in the store.

        The caller holds a slot (`acquire`); it is released when the run ends.
        """
        run = _Run(id=record.id, budget=self._new_budget())
        with self._lock:
            self._runs[run.id] = run
        assert self._executor is not None, "ExecutionManager.start() was not called"
        try:
            run.future = self._executor.submit(self._execute, run, work)
        except RuntimeError:  # executor shut down between acquire and submit
            with self._lock:
                self._runs.pop(run.id, None)
            self.release()
            raise ApiError(503, "unavailable", "the server is shutting down") from None
        return run

    def trace_sink(self, run: _Run) -> Callable[[dict], None]:
        def sink(event: dict) -> None:
            try:
                kind = str(event.get("event") or event.get("type") or "trace")
                if run.pattern_id is None:
                    pid = event.get("pattern_id") or event.get("patternId")
                    if isinstance(pid, str):
                        run.pattern_id = pid
                self.record_event(run, kind, event)
            except Exception:  # noqa: BLE001 - tracing must never break a run
                log.exception("could not record trace event of %s", run.id)
        return sink

    def output_sink(self, run: _Run) -> Callable[[str, str], None]:
        def sink(stream: str, text: str) -> None:
            try:
                self.record_event(run, "output", {"event": "output", "stream": stream, "text": text})
            except Exception:  # noqa: BLE001
                log.exception("could not record output of %s", run.id)
        return sink

    def record_event(self, run: _Run, kind: str, data: Any, *, force: bool = False) -> None:
        if not force:
            if run.events >= MAX_EVENTS_PER_EXECUTION:
                if not run.truncated:
                    run.truncated = True
                    self.store.append_event(run.id, "events_truncated", {
                        "event": "events_truncated",
                        "message": f"more than {MAX_EVENTS_PER_EXECUTION} events; "
                                   "further trace events were not recorded"})
                    self.notify(run.id)
                return
            run.events += 1
        try:
            self.store.append_event(run.id, kind, data)
        except TypeError:  # not JSON data: keep what can be kept
            self.store.append_event(run.id, kind, json.loads(_json_text(data)))
        self.notify(run.id)

    def _execute(self, run: _Run, work: Callable[[_Run], Any]) -> None:
        status, fields, error = "failed", {}, None
        try:
            if run.cancel_requested:
                raise _Cancelled()
            self.store.update_execution(run.id, status="running")
            self.record_event(run, "status", {"event": "status", "status": "running"}, force=True)
            orch = work(run)
            result = orch.to_json()
            status = "completed"
            fields = {
                "result": result,
                "confidence": orch.confidence,
                "pattern_id": orch.pattern_id,
                "fallback_taken": bool(orch.fallback_taken),
            }
        except _Cancelled:
            status = "cancelled"
            error = {"kind": "cancelled", "message": "the execution was cancelled"}
        except Exception as exc:  # noqa: BLE001 - classified below, never lost
            status, error = self._classify(run, exc)
        finally:
            if run.pattern_id and "pattern_id" not in fields:
                fields["pattern_id"] = run.pattern_id
            if status == "cancelled" and self.closing and not run.cancel_requested:
                status = "interrupted"
                error = {"kind": "interrupted",
                         "message": "the server stopped while this execution was running"}
            self._finish(run, status, fields, error)

    def _classify(self, run: _Run, exc: Exception) -> tuple[str, dict]:
        from kernel import PrismCancelled, PrismError
        kind = getattr(exc, "kind", None)
        message = getattr(exc, "message", None) or str(exc)
        if isinstance(exc, PrismCancelled) or kind == "cancelled" or (
                kind == "limit" and (run.cancel_requested or self.closing)):
            return "cancelled", {"kind": "cancelled", "message": "the execution was cancelled"}
        if _is_orchestration_error(exc) or isinstance(exc, PrismError):
            return "failed", {"kind": str(kind or "runtime"), "message": str(message)}
        if isinstance(exc, RequirementsError):
            return "failed", {"kind": "requirements", "message": str(exc),
                              "problems": list(exc.problems)}
        if isinstance(exc, StoreError):
            log.error("execution %s: store error: %s", run.id, exc)
            return "failed", {"kind": "store", "message": "the pattern store failed; see the server log"}
        log.exception("execution %s failed with an unexpected error", run.id, exc_info=exc)
        return "failed", {"kind": "internal",
                          "message": "internal error; see the server log"}

    def _finish(self, run: _Run, status: str, fields: dict, error: dict | None) -> None:
        data: dict[str, Any] = {"event": "status", "status": status}
        if error is not None:
            data["error"] = error
        if status == "completed":
            data["confidence"] = fields.get("confidence")
            data["pattern_id"] = fields.get("pattern_id")
        try:
            # The final event goes first: a stream that sees a terminal status in the
            # record has then already got every event from the store.
            self.record_event(run, "status", data, force=True)
        except Exception:  # noqa: BLE001
            log.exception("could not record the final event of execution %s", run.id)
        try:
            self.store.update_execution(
                run.id, status=status,
                error=_json_text(error) if error is not None else None, **fields)
        except Exception:  # noqa: BLE001
            log.exception("could not record the end of execution %s", run.id)
            try:  # e.g. a result that is not JSON data: still record that it ended
                self.store.update_execution(run.id, status="failed", error=_json_text(
                    {"kind": "internal", "message": "internal error; see the server log"}))
            except Exception:  # noqa: BLE001 - the next start marks it interrupted
                log.exception("could not record the failure of execution %s", run.id)
        finally:
            with self._lock:
                self._runs.pop(run.id, None)
            run.done.set()
            self.release()
            self.notify(run.id)

    def cancel(self, run: _Run) -> None:
        run.cancel_requested = True
        run.budget.cancel()


class _Cancelled(Exception):
    pass


def _is_orchestration_error(exc: BaseException) -> bool:
    try:
        from .orchestrate import OrchestrationError
    except ImportError:  # pragma: no cover - during development only
        return False
    return isinstance(exc, OrchestrationError)


# --------------------------------------------------------------------------- representation


def _parse_ts(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _duration_ms(start: str | None, end: str | None) -> float | None:
    a, b = _parse_ts(start), _parse_ts(end)
    if a is None or b is None:
        return None
    return round((b - a).total_seconds() * 1000.0, 3)


def _decode_error(text: str | None) -> dict | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if isinstance(value, dict) and "message" in value:
        return value
    return {"kind": "error", "message": text}


def _maybe_json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def execution_json(rec: ExecutionRecord, base: str = "") -> dict[str, Any]:
    error = _decode_error(rec.error)
    if rec.status == "interrupted" and error is None:
        error = {"kind": "interrupted",
                 "message": "the server stopped while this execution was pending or running"}
    return {
        "id": rec.id,
        "status": rec.status,
        "pattern_id": rec.pattern_id,
        "result": rec.result,
        "confidence": rec.confidence,
        "fallback_taken": rec.fallback_taken,
        "error": error,
        "requirements": _maybe_json(rec.requirements),
        "input": rec.input,
        "created_at": rec.created_at,
        "started_at": rec.started_at,
        "finished_at": rec.finished_at,
        "duration_ms": _duration_ms(rec.started_at, rec.finished_at),
        "url": f"{base}/api/executions/{rec.id}",
        "events_url": f"{base}/api/executions/{rec.id}/events",
    }


def pattern_json(rec: PatternRecord, *, full: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": rec.id,
        "composer": rec.composer,
        "composer_version": rec.composer_version,
        "requirements": _maybe_json(rec.requirements),
        "metadata": rec.metadata,
        "created_at": rec.created_at,
        "updated_at": rec.updated_at,
        "last_used_at": rec.last_used_at,
        "use_count": rec.use_count,
        "url": f"/api/patterns/{rec.id}",
    }
    if full:
        out["source"] = rec.source
        out["validation"] = rec.validation
    return out


# --------------------------------------------------------------------------- request helpers


async def read_body(request: Request, max_body: int) -> bytes:
    """The request body, refusing more than ``max_body`` bytes (413) even when chunked."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, "bad_request", "invalid Content-Length header") from None
        if size > max_body:
            raise _too_large(max_body)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > max_body:
            raise _too_large(max_body)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(max_body: int) -> ApiError:
    return ApiError(413, "too_large", f"request body larger than {max_body} bytes")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes, *, allow_empty: bool = False) -> Any:
    """Decode a JSON request body; any problem is a 400 naming it."""
    if not raw.strip():
        if allow_empty:
            return None
        raise ApiError(400, "bad_json", "the request body is empty; expected a JSON object",
                       problems=["empty body"])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "bad_json", f"the request body is not UTF-8 (byte {exc.start})",
                       problems=[f"not UTF-8 at byte {exc.start}"]) from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        problem = f"line {exc.lineno} column {exc.colno}: {exc.msg}"
        raise ApiError(400, "bad_json", f"invalid JSON: {problem}", problems=[problem]) from None
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "bad_json", f"invalid JSON: {exc}", problems=[str(exc)]) from None


def parse_requirements(data: Any) -> OrchestrationRequirements:
    try:
        return validate_requirements(data, source="request body")
    except RequirementsError as exc:
        problems = list(exc.problems)
        raise ApiError(422, "requirements",
                       "invalid requirements: " + "; ".join(problems), problems=problems) from None
    except RecursionError:
        raise ApiError(422, "requirements", "invalid requirements: nested too deeply",
                       problems=["nested too deeply"]) from None


def query_wait(request: Request) -> float | None:
    raw = request.query_params.get("wait")
    if raw is None:
        return None
    try:
        value = float(raw) if raw.strip() else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ApiError(400, "bad_request", f"wait must be a number of seconds >= 0 (got {raw!r})",
                       problems=[f"wait: must be a number of seconds >= 0 (got {raw!r})"])
    return min(value, MAX_WAIT)


def query_bool(request: Request, name: str) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return False
    text = raw.strip().lower()
    if text in ("", "1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ApiError(400, "bad_request", f"{name} must be true or false (got {raw!r})",
                   problems=[f"{name}: must be true or false (got {raw!r})"])


def query_int(request: Request, name: str, default: int, *, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        value = low - 1
    if not (low <= value <= high):
        raise ApiError(400, "bad_request", f"{name} must be an integer from {low} to {high} "
                       f"(got {raw!r})", problems=[f"{name}: must be an integer from {low} to {high}"])
    return value


def query_composer(request: Request, default: str) -> str:
    raw = request.query_params.get("composer")
    if raw is None:
        return default
    if raw not in COMPOSERS:
        raise ApiError(400, "bad_request", f"composer must be one of {', '.join(COMPOSERS)} "
                       f"(got {raw!r})", problems=[f"composer: must be one of {', '.join(COMPOSERS)}"])
    return raw


# --------------------------------------------------------------------------- middleware


class BodyLimitMiddleware:
    """Answer 413 before routing when Content-Length declares too large a body, and
    stop reading a chunked body once it passes the limit."""

    def __init__(self, app: ASGIApp, max_body: int):
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_body
                except ValueError:
                    await ApiError(400, "bad_request", "invalid Content-Length header") \
                        .response()(scope, receive, send)
                    return
                if too_big:
                    await _too_large(self.max_body).response()(scope, receive, send)
                    return
        await self.app(scope, receive, send)


class AuthMiddleware:
    """Require ``Authorization: Bearer <token>`` on /api/* when a token is configured."""

    OPEN_PATHS = ("/healthz", "/openapi.json")

    def __init__(self, app: ASGIApp, token: str | None):
        self.app = app
        self.token = token.encode("utf-8") if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.token is None or scope.get("path") in self.OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        supplied = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, rest = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    supplied = rest.strip()
                break
        if not supplied or not hmac.compare_digest(supplied, self.token):
            message = "a bearer token is required" if not supplied else "invalid bearer token"
            await ApiError(401, "unauthorized", message,
                           headers={"WWW-Authenticate": 'Bearer realm="prism"'}) \
                .response()(scope, receive, send)
            return
        await self.app(scope, receive, send)


# --------------------------------------------------------------------------- the app


def _endpoint(handler: Callable[..., Any]) -> Callable[[Request], Any]:
    """Wrap a handler: ApiError → its response; anything unexpected → logged 500."""
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return exc.response()
        except ClientDisconnect:  # nobody is listening for the answer
            return ApiError(400, "bad_request", "the client disconnected").response()
        except StoreError as exc:
            log.error("%s %s: store error: %s", request.method, request.url.path, exc)
            return ApiError(503, "store", "the pattern store is unavailable; see the server log",
                            headers={"Retry-After": "5"}).response()
        except Exception:  # noqa: BLE001
            log.exception("%s %s failed", request.method, request.url.path)
            return ApiError(500, "internal", "internal server error").response()
    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


def create_app(*, registry: Registry, store: PatternStore, token: str | None = None,
               max_concurrent: int = 8, max_body: int = 1_000_000, limits: Any = None,
               composer: str = "builtin") -> Starlette:
    """The ASGI app. ``token`` (normally ``$PRISM_API_TOKEN``) makes /api/* require
    ``Authorization: Bearer <token>``; ``limits`` (`kernel.Limits`) bound every run."""
    if composer not in COMPOSERS:
        raise ValueError(f"composer must be one of {COMPOSERS}, got {composer!r}")
    manager = ExecutionManager(registry=registry, store=store, max_concurrent=max_concurrent,
                               limits=limits, composer=composer)

    # ----------------------------------------------------------------- helpers

    async def get_record(execution_id: str) -> ExecutionRecord:
        rec = await run_in_threadpool(store.get_execution, execution_id)
        if rec is None:
            raise ApiError(404, "not_found", f"no execution {execution_id!r}")
        return rec

    async def start(request: Request, *, pattern_id: str | None, req: OrchestrationRequirements | None,
                    work: Callable[[_Run], Any], input_value: Any) -> Response:
        wait = query_wait(request)
        manager.acquire()
        try:
            requirements = None
            if req is not None:
                requirements = req.model_dump(mode="json", by_alias=True, exclude_none=True,
                                              exclude={"input"})
            rec = await run_in_threadpool(
                store.create_execution, pattern_id=pattern_id, requirements=requirements,
                input=input_value)
        except BaseException:
            manager.release()
            raise
        run = manager.submit(rec, work)
        url = f"/api/executions/{rec.id}"
        if wait is not None and wait > 0:
            assert run.future is not None
            await asyncio.wait({asyncio.wrap_future(run.future)}, timeout=wait)
            if run.done.is_set():
                return finished_response(await get_record(rec.id), url)
        return JsonResponse(
            {"id": rec.id, "status": "pending" if not run.done.is_set() else "finished",
             "url": url, "events_url": f"{url}/events"},
            status_code=202, headers={"Location": url})

    def finished_response(rec: ExecutionRecord, url: str) -> Response:
        summary = {"id": rec.id, "status": rec.status, "url": url}
        if rec.status == "completed" and isinstance(rec.result, dict):
            return JsonResponse({**rec.result, "execution": summary})
        error = _decode_error(rec.error) or {"kind": rec.status, "message": f"execution {rec.status}"}
        status = {"cancelled": 409, "interrupted": 503}.get(rec.status, 422)
        if error.get("kind") == "internal":
            status = 500
        elif error.get("kind") == "store":
            status = 503
        body = {"error": error, "execution": summary}
        return JsonResponse(body, status_code=status)

    # ----------------------------------------------------------------- endpoints

    async def healthz(request: Request) -> Response:
        return JsonResponse({"status": "ok", "version": API_VERSION,
                             "running": manager.busy, "max_concurrent": manager.max_concurrent,
                             "agents": len(registry)})

    async def openapi(request: Request) -> Response:
        return JsonResponse(openapi_document(auth=token is not None))

    async def orchestrate_endpoint(request: Request) -> Response:
        fresh = query_bool(request, "fresh")
        chosen = query_composer(request, composer)
        query_wait(request)  # validate before doing any work
        req = parse_requirements(parse_json(await read_body(request, max_body)))

        def work(run: _Run) -> Any:
            from .orchestrate import orchestrate
            return orchestrate(req, registry=registry, composer=chosen, store=store, fresh=fresh,
                               limits=limits, trace=manager.trace_sink(run), budget=run.budget,
                               output=manager.output_sink(run))

        return await start(request, pattern_id=None, req=req, work=work, input_value=req.input)

    async def list_executions(request: Request) -> Response:
        limit = query_int(request, "limit", 50, low=1, high=1000)
        offset = query_int(request, "offset", 0, low=0, high=10**9)
        status = request.query_params.get("status")
        statuses = None
        if status is not None:
            statuses = [s.strip() for s in status.split(",") if s.strip()]
            bad = [s for s in statuses if s not in (*TERMINAL_STATUSES, "pending", "running")]
            if bad or not statuses:
                raise ApiError(400, "bad_request", f"unknown status {', '.join(bad) or status!r}",
                               problems=["status: one or more of pending, running, completed, "
                                         "failed, cancelled, interrupted (comma-separated)"])
        records = await run_in_threadpool(store.list_executions, limit, offset, statuses)
        return JsonResponse({"executions": [execution_json(r) for r in records],
                             "limit": limit, "offset": offset})

    async def get_execution(request: Request) -> Response:
        rec = await get_record(request.path_params["id"])
        return JsonResponse(execution_json(rec))

    async def cancel_execution(request: Request) -> Response:
        rec = await get_record(request.path_params["id"])
        run = manager.active(rec.id)
        if run is None:
            if rec.status in TERMINAL_STATUSES:
                raise ApiError(409, "conflict", f"execution {rec.id} has already finished "
                               f"({rec.status})", extra={"execution": execution_json(rec)})
            raise ApiError(409, "conflict", f"execution {rec.id} is not running in this server")
        manager.cancel(run)
        done = await run_in_threadpool(run.done.wait, CANCEL_WAIT)
        rec = await get_record(rec.id)
        return JsonResponse(execution_json(rec), status_code=200 if done else 202)

    async def execution_events(request: Request) -> Response:
        execution_id = request.path_params["id"]
        await get_record(execution_id)
        after = 0
        raw = request.headers.get("last-event-id") or request.query_params.get("after")
        if raw is not None:
            try:
                after = max(0, int(raw.strip()))
            except ValueError:
                raise ApiError(400, "bad_request", f"Last-Event-ID / after must be an event "
                               f"sequence number (got {raw!r})") from None
        manager.check_streams()
        return StreamingResponse(
            _event_stream(manager, store, execution_id, after),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def compose_endpoint(request: Request) -> Response:
        fresh = query_bool(request, "fresh")
        chosen = query_composer(request, composer)
        req = parse_requirements(parse_json(await read_body(request, max_body)))
        manager.acquire()
        try:
            from .orchestrate import compose_pattern
            try:
                pattern = await run_in_threadpool(
                    lambda: compose_pattern(req, registry=registry, composer=chosen, store=store,
                                            fresh=fresh))
            except Exception as exc:  # noqa: BLE001
                if _is_orchestration_error(exc):
                    kind = getattr(exc, "kind", "composer")
                    raise ApiError(422, str(kind), str(getattr(exc, "message", exc))) from None
                raise
        finally:
            manager.release()
        return JsonResponse({
            "id": pattern.id, "source": pattern.source, "metadata": pattern.metadata,
            "composer": pattern.composer, "cached": pattern.cached,
            "validation": pattern.validation, "url": f"/api/patterns/{pattern.id}"})

    async def list_patterns(request: Request) -> Response:
        limit = query_int(request, "limit", 50, low=1, high=1000)
        offset = query_int(request, "offset", 0, low=0, high=10**9)
        records, total = await run_in_threadpool(lambda: (store.list(limit, offset), store.count()))
        return JsonResponse({"patterns": [pattern_json(r, full=False) for r in records],
                             "total": total, "limit": limit, "offset": offset})

    async def get_pattern(request: Request) -> Response:
        pattern_id = request.path_params["id"]
        rec = await run_in_threadpool(store.get, pattern_id)
        if rec is None:
            raise ApiError(404, "not_found", f"no pattern {pattern_id!r}")
        return JsonResponse(pattern_json(rec, full=True))

    async def run_pattern(request: Request) -> Response:
        pattern_id = request.path_params["id"]
        query_wait(request)
        data = parse_json(await read_body(request, max_body), allow_empty=True)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ApiError(422, "bad_request", "the body must be a JSON object {\"input\": ...}",
                           problems=["body: must be a JSON object"])
        unknown = sorted(set(data) - {"input"})
        if unknown:
            problems = [f"{k}: unknown field (allowed fields: input)" for k in unknown]
            raise ApiError(422, "bad_request", "; ".join(problems), problems=problems)
        rec = await run_in_threadpool(store.get, pattern_id)
        if rec is None:
            raise ApiError(404, "not_found", f"no pattern {pattern_id!r}")
        given = {"input": data["input"]} if "input" in data else {}

        def work(run: _Run) -> Any:
            from .orchestrate import run_stored_pattern
            return run_stored_pattern(pattern_id, registry=registry, store=store, limits=limits,
                                      trace=manager.trace_sink(run), budget=run.budget, **given)

        return await start(request, pattern_id=pattern_id, req=None, work=work,
                           input_value=data.get("input"))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http")
        message = {404: f"no such endpoint: {request.url.path}",
                   405: f"method {request.method} is not allowed on {request.url.path}"}.get(
            exc.status_code, str(exc.detail))
        return ApiError(exc.status_code, kind, message, headers=exc.headers).response()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(manager.start, asyncio.get_running_loop())
        try:
            yield
        finally:
            await run_in_threadpool(manager.stop)

    routes = [
        Route("/healthz", _endpoint(healthz), methods=["GET"]),
        Route("/openapi.json", _endpoint(openapi), methods=["GET"]),
        Route("/api/orchestrate", _endpoint(orchestrate_endpoint), methods=["POST"]),
        Route("/api/executions", _endpoint(list_executions), methods=["GET"]),
        Route("/api/executions/{id}", _endpoint(get_execution), methods=["GET"]),
        Route("/api/executions/{id}/events", _endpoint(execution_events), methods=["GET"]),
        Route("/api/executions/{id}/cancel", _endpoint(cancel_execution), methods=["POST"]),
        Route("/api/compose", _endpoint(compose_endpoint), methods=["POST"]),
        Route("/api/patterns", _endpoint(list_patterns), methods=["GET"]),
        Route("/api/patterns/{id}", _endpoint(get_pattern), methods=["GET"]),
        Route("/api/patterns/{id}/run", _endpoint(run_pattern), methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(AuthMiddleware, token=token),
                    Middleware(BodyLimitMiddleware, max_body=max_body)],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.manager = manager
    app.state.store = store
    app.state.registry = registry
    return app


# --------------------------------------------------------------------------- SSE


def _sse(event: Any) -> bytes:
    data = {"seq": event.seq, "ts": event.ts, "kind": event.kind, "data": event.data}
    kind = "".join(ch for ch in str(event.kind) if ch not in "\r\n") or "message"
    return f"id: {event.seq}\nevent: {kind}\ndata: {_json_text(data)}\n\n".encode("utf-8")


async def _event_stream(manager: ExecutionManager, store: PatternStore, execution_id: str,
                        after: int) -> AsyncIterator[bytes]:
    """Replay the execution's events after ``after``, then follow it live until it ends."""
    wake = manager.subscribe(execution_id)
    manager.open_stream()
    last_sent = time.monotonic()
    try:
        yield b"retry: 2000\n\n"
        while True:
            wake.clear()
            # Status first, then events: the final event is stored before the terminal
            # status, so a terminal status here means the read below sees everything.
            rec = await run_in_threadpool(store.get_execution, execution_id)
            events = await run_in_threadpool(store.events, execution_id, after, 500)
            for event in events:
                after = event.seq
                yield _sse(event)
            if events:
                last_sent = time.monotonic()
                if len(events) == 500:
                    continue  # more to replay
            if rec is None or rec.status in TERMINAL_STATUSES:
                break
            if manager.closing:
                break
            try:
                await asyncio.wait_for(wake.wait(), timeout=SSE_POLL)
            except TimeoutError:
                pass
            if time.monotonic() - last_sent > SSE_KEEPALIVE:
                last_sent = time.monotonic()
                yield b": keep-alive\n\n"
    finally:
        manager.unsubscribe(execution_id, wake)
        manager.close_stream()


# --------------------------------------------------------------------------- OpenAPI


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _requirements_schema() -> dict[str, Any]:
    schema = OrchestrationRequirements.model_json_schema(by_alias=True)
    props = schema.get("properties", {})
    # The validators say more than the annotations; the document says it too.
    if "goal" in props:
        props["goal"].update({"minLength": 1, "pattern": r"\S",
                              "description": "What the orchestration must achieve (required)."})
    if "minConfidence" in props:
        props["minConfidence"] = {
            "anyOf": [{"type": "number", "minimum": 0, "maximum": 1}, {"type": "null"}],
            "default": None, "title": "Minconfidence",
            "description": "The confidence the result must reach (0–1); below it the "
                           "fallback is taken."}
    if "strategy" in props:
        props["strategy"]["description"] = (
            "parallel, sequential, consensus, multi-perspective-consensus, voting, race, "
            "resilient, pipeline, map-reduce, escalation (any case or separator).")
    if "fallback" in props:
        props["fallback"]["description"] = "What to do when confidence stays below minConfidence."
    if "context" in props:
        props["context"]["description"] = (
            "Free-form hints, e.g. {\"perspectives\": [...], \"requireAllPerspectives\": true}.")
    if "input" in props:
        props["input"]["description"] = "The data the pattern runs on (any JSON)."
    schema.pop("description", None)
    return schema


def openapi_document(*, auth: bool = False) -> dict[str, Any]:
    """The hand-written OpenAPI 3.1 document of the API (served at /openapi.json)."""
    ref = lambda name: {"$ref": f"#/components/schemas/{name}"}  # noqa: E731
    json_body = lambda name: {"application/json": {"schema": ref(name)}}  # noqa: E731
    id_param = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    wait_param = {
        "name": "wait", "in": "query", "required": False,
        "description": f"Seconds to wait for the result (0–{MAX_WAIT:g}; larger values are "
                       "clamped). Finished in time: 200 (or the error of the run); otherwise 202.",
        "schema": {"type": "number", "minimum": 0}}
    fresh_param = {"name": "fresh", "in": "query", "required": False,
                   "description": "Compose anew even when a stored pattern matches.",
                   "schema": {"type": "boolean"}}
    composer_param = {"name": "composer", "in": "query", "required": False,
                      "schema": {"type": "string", "enum": list(COMPOSERS)}}
    page = [
        {"name": "limit", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}},
        {"name": "offset", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 0, "default": 0}},
    ]
    common_errors = {
        "400": _error_response("Bad request: invalid JSON or query parameter."),
        "413": _error_response("Request body too large."),
        "422": _error_response("Invalid requirements (problems name the fields), or the run failed."),
        "429": {**_error_response("Every run slot is busy; retry after Retry-After seconds."),
                "headers": {"Retry-After": {"schema": {"type": "integer"}}}},
    }
    if auth:
        common_errors["401"] = _error_response("Missing or invalid bearer token.")
    started = {
        "200": {"description": "Finished within `wait`: the result (the same JSON as "
                               "`prism orchestrate --json`) plus the execution.",
                "content": json_body("OrchestrationResult")},
        "202": {"description": "Accepted; follow the execution's url.",
                "headers": {"Location": {"schema": {"type": "string"}}},
                "content": json_body("Accepted")},
        "409": _error_response("The run was cancelled while waited for."),
    }
    execution_statuses = ["pending", "running", "completed", "failed", "cancelled", "interrupted"]
    schemas: dict[str, Any] = {
        "Requirements": _requirements_schema(),
        "Error": {
            "type": "object", "required": ["error"],
            "properties": {"error": {
                "type": "object", "required": ["kind", "message"],
                "properties": {"kind": {"type": "string"}, "message": {"type": "string"},
                               "problems": {"type": "array", "items": {"type": "string"}}}}}},
        "Accepted": {
            "type": "object", "required": ["id", "status", "url"],
            "properties": {"id": {"type": "string"}, "status": {"type": "string"},
                           "url": {"type": "string"}, "events_url": {"type": "string"}}},
        "OrchestrationResult": {
            "type": "object", "required": ["value", "confidence", "execution"],
            "properties": {
                "value": {}, "confidence": {"type": ["number", "null"]},
                "pattern": {"type": "object", "properties": {
                    "id": {"type": ["string", "null"]}, "cached": {"type": "boolean"},
                    "composer": {"type": ["string", "null"]}}},
                "fallback_taken": {"type": "boolean"},
                "execution": {"type": "object", "required": ["id", "status", "url"],
                              "properties": {"id": {"type": "string"},
                                             "status": {"type": "string"},
                                             "url": {"type": "string"}}}}},
        "Execution": {
            "type": "object", "required": ["id", "status", "created_at"],
            "properties": {
                "id": {"type": "string"},
                "status": {"type": "string", "enum": execution_statuses},
                "pattern_id": {"type": ["string", "null"]},
                "result": {"description": "The `prism orchestrate --json` object when completed."},
                "confidence": {"type": ["number", "null"]},
                "fallback_taken": {"type": "boolean"},
                "error": {"anyOf": [{"type": "null"}, {
                    "type": "object", "required": ["kind", "message"],
                    "properties": {"kind": {"type": "string"}, "message": {"type": "string"}}}]},
                "requirements": {}, "input": {},
                "created_at": {"type": "string"},
                "started_at": {"type": ["string", "null"]},
                "finished_at": {"type": ["string", "null"]},
                "duration_ms": {"type": ["number", "null"]},
                "url": {"type": "string"}, "events_url": {"type": "string"}}},
        "ExecutionList": {
            "type": "object", "required": ["executions"],
            "properties": {"executions": {"type": "array", "items": ref("Execution")},
                           "limit": {"type": "integer"}, "offset": {"type": "integer"}}},
        "PatternSummary": {
            "type": "object", "required": ["id", "composer"],
            "properties": {
                "id": {"type": "string"}, "composer": {"type": "string"},
                "composer_version": {"type": "string"}, "requirements": {},
                "metadata": {"type": "object"}, "created_at": {"type": ["string", "null"]},
                "updated_at": {"type": ["string", "null"]},
                "last_used_at": {"type": ["string", "null"]},
                "use_count": {"type": "integer"}, "url": {"type": "string"}}},
        "Pattern": {"allOf": [ref("PatternSummary"), {
            "type": "object", "required": ["source"],
            "properties": {"source": {"type": "string"}, "validation": {"type": "object"}}}]},
        "PatternList": {
            "type": "object", "required": ["patterns", "total"],
            "properties": {"patterns": {"type": "array", "items": ref("PatternSummary")},
                           "total": {"type": "integer"}, "limit": {"type": "integer"},
                           "offset": {"type": "integer"}}},
        "ComposedPattern": {
            "type": "object", "required": ["id", "source", "composer", "cached"],
            "properties": {"id": {"type": "string"}, "source": {"type": "string"},
                           "metadata": {"type": "object"}, "composer": {"type": "string"},
                           "cached": {"type": "boolean"}, "validation": {},
                           "url": {"type": "string"}}},
        "PatternRunRequest": {
            "type": "object", "additionalProperties": False,
            "properties": {"input": {"description": "The data the pattern runs on."}}},
        "Health": {"type": "object", "required": ["status"],
                   "properties": {"status": {"type": "string"}, "version": {"type": "string"},
                                  "running": {"type": "integer"},
                                  "max_concurrent": {"type": "integer"},
                                  "agents": {"type": "integer"}}},
    }
    not_found = {"404": _error_response("No such execution or pattern.")}
    paths: dict[str, Any] = {
        "/api/orchestrate": {"post": {
            "operationId": "orchestrate",
            "summary": "Compose (or reuse) a pattern for the requirements and run it.",
            "parameters": [wait_param, fresh_param, composer_param],
            "requestBody": {"required": True, "content": json_body("Requirements")},
            "responses": {**started, **common_errors}}},
        "/api/executions": {"get": {
            "operationId": "listExecutions", "summary": "Executions, newest first.",
            "parameters": [*page, {"name": "status", "in": "query", "required": False,
                                   "description": "Comma-separated statuses to keep.",
                                   "schema": {"type": "string"}}],
            "responses": {"200": {"description": "A page of executions.",
                                  "content": json_body("ExecutionList")}, **common_errors}}},
        "/api/executions/{id}": {"get": {
            "operationId": "getExecution",
            "summary": "Status, result, confidence, pattern id, timings and error.",
            "parameters": [id_param],
            "responses": {"200": {"description": "The execution.",
                                  "content": json_body("Execution")},
                          **not_found, **common_errors}}},
        "/api/executions/{id}/events": {"get": {
            "operationId": "executionEvents",
            "summary": "The execution's trace as server-sent events: replayed, then live "
                       "until it finishes. Each event's `id:` is its sequence number.",
            "parameters": [id_param,
                           {"name": "Last-Event-ID", "in": "header", "required": False,
                            "schema": {"type": "string", "pattern": "^[0-9]{1,9}$"}},
                           {"name": "after", "in": "query", "required": False,
                            "schema": {"type": "integer", "minimum": 0}}],
            "responses": {"200": {"description": "An event stream; each `data:` is JSON "
                                                 "{seq, ts, kind, data}.",
                                  "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                          **not_found, **common_errors}}},
        "/api/executions/{id}/cancel": {"post": {
            "operationId": "cancelExecution",
            "summary": "Stop a running execution (cancels agent calls in flight).",
            "parameters": [id_param],
            "responses": {"200": {"description": "Stopped.", "content": json_body("Execution")},
                          "202": {"description": "Cancellation requested; not stopped yet.",
                                  "content": json_body("Execution")},
                          "409": _error_response("Already finished, or not running here."),
                          **not_found, **common_errors}}},
        "/api/compose": {"post": {
            "operationId": "compose", "summary": "Compose the pattern without running it.",
            "parameters": [fresh_param, composer_param],
            "requestBody": {"required": True, "content": json_body("Requirements")},
            "responses": {"200": {"description": "The pattern.",
                                  "content": json_body("ComposedPattern")}, **common_errors}}},
        "/api/patterns": {"get": {
            "operationId": "listPatterns", "summary": "Stored patterns, most recently used first.",
            "parameters": page,
            "responses": {"200": {"description": "A page of patterns.",
                                  "content": json_body("PatternList")}, **common_errors}}},
        "/api/patterns/{id}": {"get": {
            "operationId": "getPattern", "summary": "A stored pattern with its source.",
            "parameters": [id_param],
            "responses": {"200": {"description": "The pattern.", "content": json_body("Pattern")},
                          **not_found, **common_errors}}},
        "/api/patterns/{id}/run": {"post": {
            "operationId": "runPattern", "summary": "Run a stored pattern on an input.",
            "parameters": [id_param, wait_param],
            "requestBody": {"required": False, "content": json_body("PatternRunRequest")},
            "responses": {**started, **not_found, **common_errors}}},
        "/healthz": {"get": {
            "operationId": "health", "summary": "Liveness.", "security": [],
            "responses": {"200": {"description": "OK", "content": json_body("Health")}}}},
        "/openapi.json": {"get": {
            "operationId": "openapi", "summary": "This document.", "security": [],
            "responses": {"200": {"description": "The OpenAPI document.",
                                  "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    }
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "Prism orchestration API", "version": API_VERSION,
                 "description": "Hand requirements in, get orchestrated results with their "
                                "confidence. Started by `prism serve`."},
        "paths": paths,
        "components": {"schemas": schemas},
    }
    if auth:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
    return doc
