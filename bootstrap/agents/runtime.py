"""The agent runtime: one background asyncio event loop that runs agent calls concurrently.

Consumes a `Registry` and call requests from any thread (`submit`); produces
`concurrent.futures.Future[AgentResponse]`s and, optionally, trace events.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from . import transports
from .models import AgentRequest, AgentResponse, AgentSpec
from .registry import Registry

__all__ = ["AgentRuntime", "EventCallback"]

log = logging.getLogger(__name__)

EventCallback = Callable[[dict[str, Any]], None]


class AgentRuntime:
    """Runs agent calls on one event loop in a daemon thread; thread-safe.

    `submit` starts a call at once and returns a `concurrent.futures.Future`; many
    calls overlap (100 simulated 100 ms agents take about 100 ms in all). Cancelling
    the future cancels the call's asyncio task, which aborts an in-flight HTTP
    request (a sync Python agent keeps running in its worker thread, but its result
    is dropped). `on_event` receives `agent_call_start` / `agent_call_end` dicts, on
    the loop thread, one at a time; an exception in it is logged, not raised.
    `close()` (or leaving a `with` block) cancels pending calls and closes the HTTP
    clients and the loop.
    """

    def __init__(self, registry: Registry, *, on_event: EventCallback | None = None,
                 max_threads: int = 64) -> None:
        self.registry = registry
        self.on_event = on_event
        self._call_ids = itertools.count(1)
        self._lock = threading.Lock()
        self._closed = False
        # Sync python agents run via asyncio.to_thread, i.e. in the loop's default executor;
        # the default size (cpu + 4) would serialise a wide fan-out of blocking agents.
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=max_threads,
                                                               thread_name_prefix="prism-agent")
        self._loop = asyncio.new_event_loop()
        self._loop.set_default_executor(self._executor)
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run_loop, args=(ready,), name="prism-agent-loop",
                                        daemon=True)
        self._thread.start()
        ready.wait()

    def _run_loop(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(ready.set)
        self._loop.run_forever()

    # ------------------------------------------------------------------ calls

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(self, agent_id: str, task: str, data: Any = None, context: Mapping[str, Any] | None = None,
               *, timeout: float | None = None) -> concurrent.futures.Future[AgentResponse]:
        """Start calling an agent; the future resolves to its response (never to a transport error).

        `timeout` (seconds) may shorten the agent's own timeout, e.g. to honour a
        caller's deadline. Raises `UnknownAgentError` for an unknown id and
        `RuntimeError` after `close()`.
        """
        spec = self.registry.get(agent_id)
        request = AgentRequest(task=task, data=data, context=dict(context or {}))
        with self._lock:
            if self._closed:
                raise RuntimeError("AgentRuntime is closed")
            return asyncio.run_coroutine_threadsafe(self._call(spec, request, timeout), self._loop)

    def call(self, agent_id: str, task: str, data: Any = None, context: Mapping[str, Any] | None = None,
             *, timeout: float | None = None) -> AgentResponse:
        """`submit(...)` and wait for the response."""
        return self.submit(agent_id, task, data, context, timeout=timeout).result()

    async def _call(self, spec: AgentSpec, request: AgentRequest, timeout: float | None) -> AgentResponse:
        call_id = next(self._call_ids)
        base = {"call_id": call_id, "agent": spec.id, "transport": spec.transport}
        self._emit({"event": "agent_call_start", **base, "task": request.task, "timestamp": time.time()})
        start = time.perf_counter()
        try:
            response = await transports.call(spec, request, timeout=timeout)
        except asyncio.CancelledError:
            self._emit({"event": "agent_call_end", **base, "duration_ms": _ms_since(start),
                        "confidence": None, "error": "cancelled", "cancelled": True})
            raise
        self._emit({"event": "agent_call_end", **base, "duration_ms": _ms_since(start),
                    "confidence": response.confidence, "error": response.error, "cancelled": False})
        return response

    def _emit(self, event: dict[str, Any]) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:  # a broken trace sink must not break agent calls
            log.exception("agent runtime on_event callback failed for %s", event.get("event"))

    # ------------------------------------------------------------------ lifecycle

    def close(self, timeout: float = 5.0) -> None:
        """Cancel pending calls, close HTTP clients, stop the loop. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._thread.is_alive():
            shutdown = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
            try:
                shutdown.result(timeout)
            except concurrent.futures.TimeoutError:
                log.warning("agent runtime shutdown did not finish within %s s", timeout)
            except Exception:
                log.exception("agent runtime shutdown failed")
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
        # Threads still running sync python agents are not waited for.
        self._executor.shutdown(wait=False, cancel_futures=True)
        if not self._thread.is_alive():
            self._loop.close()

    async def _shutdown(self) -> None:
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await transports.aclose_clients()
        await self._loop.shutdown_asyncgens()

    def __enter__(self) -> AgentRuntime:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)
