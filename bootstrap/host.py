"""The bridge between the agent layer and the Prism kernel.

Consumes a ``Registry`` (agents.toml) and an optional trace sink; produces the
host capabilities a Prism program may be granted: ``agents`` (id -> agent value
whose ``analyze(task, data)`` returns a promise of a confident response),
``select_agents({capabilities, minAgents, maxAgents})``, LLM providers for
``llm()``, and JSON-lines trace events.  In-flight agent calls are cancelled when
the run ends (normally, on error, or at the sandbox deadline).
"""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, TextIO

from kernel.errors import PrismRuntimeError
from kernel.values import Builtin, Confident, Promise, from_host, to_host

from .agents import AgentResponse, AgentRuntime, Registry, SelectionError, UnknownAgentError, build_providers


class TraceWriter:
    """Writes trace events as JSON lines (thread-safe); also forwards them to a callback."""

    def __init__(self, path: str | Path | None = None, *, callback: Callable[[dict], None] | None = None):
        self._fh: TextIO | None = open(path, "w", encoding="utf-8") if path else None
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self.callback = callback
        self.events: list[dict] = []

    def __call__(self, event: dict) -> None:
        ev = dict(event)
        ev.setdefault("t_ms", round((time.monotonic() - self._t0) * 1000, 3))
        if "event" not in ev and "type" in ev:
            ev["event"] = ev.pop("type")
        with self._lock:
            self.events.append(ev)
            if self._fh is not None:
                self._fh.write(json.dumps(ev, default=str, ensure_ascii=False) + "\n")
                self._fh.flush()
        if self.callback is not None:
            self.callback(ev)

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


def response_value(resp: AgentResponse, agent_id: str) -> Confident:
    """A Prism confident value for an agent response: the response object (value,
    reasoning, uncertainties, metadata, agent, error) at the response's confidence."""
    obj = {"value": from_host(resp.value), "confidence": float(resp.confidence), "agent": agent_id,
           "reasoning": resp.reasoning, "uncertainties": from_host(list(resp.uncertainties)),
           "metadata": from_host(dict(resp.metadata)), "error": resp.error}
    return Confident(obj, float(resp.confidence))


class Host:
    """Host capabilities for one or more runs, over one agent registry."""

    def __init__(self, registry: Registry | None = None, *, trace: Callable[[dict], None] | None = None):
        self.registry = registry if registry is not None else Registry()
        self.trace = trace
        self._runtime: AgentRuntime | None = None
        self._lock = threading.Lock()
        self._inflight: set[Future] = set()
        self._virtual: dict[int, Callable[[], None]] = {}   # unanswered simulated calls -> their cancel
        self.llm_providers = build_providers(self.registry) if self.registry.llm_providers else {}
        self.default_llm_provider = self.registry.default_llm_provider
        self.calls = 0

    # ---- agent runtime (lazy: programs without agents never start the loop)
    @property
    def runtime(self) -> AgentRuntime:
        with self._lock:
            if self._runtime is None:
                self._runtime = AgentRuntime(self.registry, on_event=self._on_agent_event)
            return self._runtime

    def _on_agent_event(self, event: dict) -> None:
        if self.trace is not None:
            self.trace(event)

    def call_agent(self, agent_id: str, task: str, data: Any = None, context: dict | None = None,
                   *, timeout: float | None = None) -> Promise:
        """Start an agent call now; the promise resolves to a confident response value."""
        fut = self.runtime.submit(agent_id, task, data, context or {}, timeout=timeout)
        self.calls += 1
        with self._lock:
            self._inflight.add(fut)
        p = Promise()

        def done(f: Future) -> None:
            with self._lock:
                self._inflight.discard(f)
            if f.cancelled():
                p.future.cancel()
                return
            exc = f.exception()
            if exc is not None:
                p.future.set_exception(PrismRuntimeError(f"agent '{agent_id}' failed: {exc}"))
                return
            p.future.set_result(response_value(f.result(), agent_id))

        fut.add_done_callback(done)
        p.on_cancel = fut.cancel
        return p

    def simulate_on_clock(self, spec: Any, task: str, data: Any, context: dict | None, clock: Any) -> Promise:
        """A simulated agent's call on a virtual clock: the same seeded answer as the
        simulated transport, delivered when the virtual clock reaches its latency (no
        wall time is spent). The agent's `timeout` applies as it would in real time; a
        call cancelled before it answers (a race's loser) is traced as cancelled."""
        response, latency = self.simulated_response(spec, task, data, context, clock)
        p = Promise()
        p.internal = True                       # settled by the clock: waiting on it is idle
        base = {"call_id": f"v{self.calls}", "agent": spec.id, "transport": spec.transport, "virtual_time": True}
        started = clock.now_ms()

        def answer() -> None:
            self._virtual.pop(id(p), None)
            if p.future.set_running_or_notify_cancel():
                self.trace_simulated_end(spec, response, latency, call_id=base["call_id"])
                p.future.set_result(response_value(response, spec.id))

        def cancel() -> None:
            self._virtual.pop(id(p), None)
            if p.future.cancel():
                self._on_agent_event({"event": "agent_call_end", **base,
                                      "duration_ms": round(clock.now_ms() - started, 3), "confidence": None,
                                      "error": "cancelled", "cancelled": True})

        p.on_cancel = cancel
        self._virtual[id(p)] = cancel
        clock.call_at(clock.due_in(latency), answer)
        return p

    def trace_simulated_end(self, spec: Any, response: Any, latency: float, call_id: str | None = None) -> None:
        self._on_agent_event({"event": "agent_call_end", "call_id": call_id or f"v{self.calls}", "agent": spec.id,
                              "transport": spec.transport, "virtual_time": True,
                              "duration_ms": round(latency * 1000.0, 3), "confidence": response.confidence,
                              "error": response.error, "cancelled": False})

    def simulated_response(self, spec: Any, task: str, data: Any, context: dict | None,
                           clock: Any) -> tuple[Any, float]:
        """(AgentResponse, latency in seconds) of a simulated agent on a virtual clock;
        traces the start of the call."""
        from .agents.models import AgentRequest, AgentResponse
        from .agents.transports import simulate
        request = AgentRequest(task=task, data=data, context=dict(context or {}))
        response, latency = simulate(spec, request)
        if latency > spec.timeout:
            response, latency = AgentResponse.failure(f"timed out after {spec.timeout:g} s"), spec.timeout
        response.metadata.update(agent=spec.id, transport=spec.transport, duration_ms=round(latency * 1000.0, 3),
                                 virtual_time=True)
        self.calls += 1
        self._on_agent_event({"event": "agent_call_start", "call_id": f"v{self.calls}", "agent": spec.id,
                              "transport": spec.transport, "virtual_time": True, "task": task,
                              "timestamp": clock.now_ms() / 1000.0})
        return response, latency

    def cancel_inflight(self) -> int:
        """Cancel the agent calls still running (at the end of a run); each is traced."""
        with self._lock:
            pending = list(self._inflight)
        for f in pending:
            f.cancel()
        unanswered = list(self._virtual.values())
        for cancel in unanswered:
            cancel()
        return len(pending) + len(unanswered)

    # ---- Prism values
    def agent_value(self, spec: Any, budget_time_left: Callable[[], float | None] | None = None,
                    clock: Any = None) -> dict:
        """The Prism object for one agent; on a virtual ``clock`` simulated agents answer in
        virtual time (other transports are real I/O and keep real time)."""
        agent_id = spec.id
        virtual = clock is not None and spec.transport == "simulated"

        def analyze(args: list) -> Promise:
            if not args:
                raise PrismRuntimeError(f"agents.{agent_id}.analyze() requires a task")
            task = args[0].value if type(args[0]) is Confident else args[0]
            if type(task) is not str:
                task = json.dumps(to_host(task), default=str)
            data = to_host(args[1]) if len(args) > 1 else None
            context = to_host(args[2]) if len(args) > 2 else None
            if context is not None and not isinstance(context, dict):
                raise PrismRuntimeError("analyze() context must be an object")
            if virtual:
                return self.simulate_on_clock(spec, task, data, context, clock)
            left = budget_time_left() if budget_time_left is not None else None
            return self.call_agent(agent_id, task, data, context,
                                   timeout=max(0.001, left) if left is not None else None)

        return {"id": agent_id, "name": spec.display_name, "capabilities": list(spec.capabilities),
                "expertise": float(spec.expertise), "transport": spec.transport,
                "simulated": spec.transport == "simulated", "analyze": Builtin("analyze", analyze, None)}

    def prelude(self, budget_time_left: Callable[[], float | None] | None = None, clock: Any = None) -> dict:
        """``agents`` and ``select_agents`` for a program granted the whole registry."""
        agents = {spec.id: self.agent_value(spec, budget_time_left, clock) for spec in self.registry}

        def select(args: list) -> list:
            opts = args[0].value if args and type(args[0]) is Confident else (args[0] if args else {})
            if opts is None:
                opts = {}
            if type(opts) is list:
                opts = {"capabilities": opts}
            if type(opts) is not dict:
                raise PrismRuntimeError("select_agents() expects {capabilities, minAgents, maxAgents}")
            caps = to_host(opts.get("capabilities", []))
            if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
                raise PrismRuntimeError("select_agents(): capabilities must be a list of strings")
            min_n = to_host(opts.get("minAgents", opts.get("min", 1)))
            max_n = to_host(opts.get("maxAgents", opts.get("max")))
            try:
                chosen = self.registry.select(caps, min_agents=int(min_n or 0),
                                              max_agents=int(max_n) if max_n is not None else None)
            except (SelectionError, UnknownAgentError) as e:
                raise PrismRuntimeError(str(e)) from None
            return [agents[s.id] for s in chosen]

        return {"agents": agents, "select_agents": Builtin("select_agents", select)}

    def close(self) -> None:
        self.cancel_inflight()
        with self._lock:
            rt, self._runtime = self._runtime, None
        if rt is not None:
            rt.close()


def run_with_host(source: str, *, host: Host, filename: str = "<input>", inputs: dict | None = None,
                  limits: Any = None, mode: str = "strict", output: Callable | None = None,
                  extra_prelude: dict | None = None, base_dir: str | None = None, budget: Any = None,
                  clock: Any = None) -> Any:
    """``kernel.evaluate`` with the host's capabilities in the prelude; cancels
    in-flight agent calls when the run ends. ``clock``: a ``kernel.clock.VirtualClock``
    for deterministic time (simulated agents then answer in virtual time)."""
    import kernel
    from kernel.sandbox import Budget, DEFAULT_LIMITS
    budget = budget if budget is not None else Budget(limits or DEFAULT_LIMITS)
    prelude = host.prelude(budget.time_left, clock)
    if extra_prelude:
        prelude.update(extra_prelude)
    try:
        return kernel.evaluate(source, filename=filename, inputs=inputs, limits=limits, mode=mode, output=output,
                               trace=host.trace, host=host, prelude=prelude, base_dir=base_dir, budget=budget,
                               clock=clock)
    finally:
        host.cancel_inflight()
