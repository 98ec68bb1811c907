"""Running pattern files: the static (Parallax-era) flow.

Consumes a ``.prism`` file, its input and an agent registry; produces a
``kernel.Result``.  The first ``/** … */`` block may be a Parallax header
(``@name``, ``@version``, ``@agents {"capabilities": [...]}``, ``@minAgents``,
``@maxAgents``…).  With a header asking for agents, the agents having all the
listed capabilities are selected (error when fewer than ``minAgents``).  In legacy
mode they are then all called concurrently on the input task, as the old engine
did, and ``input``, ``agentList``, ``agentCount``, ``agentResults``,
``successfulResults`` and ``pattern`` are injected; in the default mode the
program gets ``input``, ``agents``, ``select_agents`` and ``agentList``.
"""
from __future__ import annotations

import json
import re
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from kernel import Limits, PrismRuntimeError

from .agents import Registry, load_registry
from .host import Host, run_with_host

_HEADER = re.compile(r"\A\s*(/\*\*(.*?)\*/)", re.S)


@dataclass
class PatternHeader:
    metadata: dict = field(default_factory=dict)
    name: str | None = None
    version: str = "1.0.0"
    capabilities: list[str] = field(default_factory=list)
    min_agents: int = 0
    max_agents: int | None = None

    @property
    def wants_agents(self) -> bool:
        return self.min_agents >= 1 or bool(self.metadata.get("agents"))


def parse_header(source: str) -> PatternHeader:
    """Read the Parallax metadata header (the first ``/** … */`` block), if any."""
    m = _HEADER.match(source)
    h = PatternHeader()
    if not m:
        return h
    for line in m.group(2).splitlines():
        line = line.strip().lstrip("*").strip()
        km = re.match(r"@(\w+)\s*(.*)$", line)
        if not km:
            continue
        key, raw = km.group(1), km.group(2).strip()
        try:
            value: Any = json.loads(raw) if raw else True
        except json.JSONDecodeError:
            value = raw
        h.metadata[key] = value
    h.name = str(h.metadata["name"]) if "name" in h.metadata else None
    h.version = str(h.metadata.get("version", "1.0.0"))
    agents = h.metadata.get("agents")
    if isinstance(agents, dict) and isinstance(agents.get("capabilities"), list):
        h.capabilities = [str(c) for c in agents["capabilities"]]
    try:
        h.min_agents = int(h.metadata.get("minAgents", 0) or 0)
        h.max_agents = int(h.metadata["maxAgents"]) if "maxAgents" in h.metadata else None
    except (TypeError, ValueError):
        raise PrismRuntimeError("@minAgents and @maxAgents must be numbers") from None
    return h


def select_for_header(registry: Registry, header: PatternHeader) -> list:
    """The old engine's rule: agents having *all* listed capabilities, in registry order."""
    chosen = [s for s in registry if all(c in s.capabilities for c in header.capabilities)]
    if len(chosen) < header.min_agents:
        raise PrismRuntimeError(f"Not enough agents available. Required: {header.min_agents}, "
                                f"Available: {len(chosen)} (capabilities {header.capabilities or 'any'}; "
                                f"registry has {', '.join(registry.ids()) or 'no agents'})")
    if header.max_agents is not None:
        chosen = chosen[:header.max_agents]
    return chosen


def fan_out(host: Host, specs: list, input_value: Any, timeout: float = 30.0, clock: Any = None) -> list[dict]:
    """Call every selected agent concurrently on the input task (legacy engine). On a
    virtual ``clock`` simulated agents answer at once and the clock moves on by the
    slowest one's latency, as if the fan-out had been waited for."""
    task = "analyze"
    data = input_value
    if isinstance(input_value, dict):
        task = str(input_value.get("task") or "analyze")
        data = input_value.get("data", input_value)
    futures: list = []
    slowest = 0.0
    for s in specs:
        if clock is not None and s.transport == "simulated":
            resp, latency = host.simulated_response(s, task, data, {}, clock)
            host.trace_simulated_end(s, resp, latency)
            slowest = max(slowest, min(latency, timeout))
            done: Future = Future()
            done.set_result(resp)
            futures.append((s, done))
        else:
            futures.append((s, host.runtime.submit(s.id, task, data, {}, timeout=timeout)))
    if clock is not None:
        clock.advance(slowest)
    results = []
    for spec, fut in futures:
        entry = {"agentId": spec.id, "agentName": spec.display_name, "capabilities": list(spec.capabilities),
                 "expertise": spec.expertise, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        try:
            resp = fut.result(timeout=timeout + 5)
        except Exception as e:  # noqa: BLE001 - a failed call is recorded, not raised
            entry.update(result=None, confidence=0.0, reasoning="Agent failed to respond", error=str(e))
        else:
            entry.update(result=resp.value, confidence=resp.confidence, reasoning=resp.reasoning)
            if resp.error:
                entry.update(error=resp.error, reasoning=resp.reasoning or "Agent failed to respond")
        results.append(entry)
    return results


def run_pattern(source: str, *, filename: str, input_value: Any = None, registry: Registry | None = None,
                legacy: bool = False, limits: Limits | None = None, trace: Callable[[dict], None] | None = None,
                output: Callable | None = None, clock: Any = None) -> Any:
    """Run a static pattern (see module docstring); ``clock``: a virtual clock, or None."""
    header = parse_header(source)
    host = Host(registry, trace=trace)
    try:
        inputs: dict[str, Any] = {"input": input_value}
        selected = select_for_header(host.registry, header) if header.wants_agents else list(host.registry)
        agent_list = [{"id": s.id, "name": s.display_name, "capabilities": list(s.capabilities),
                       "expertise": s.expertise, "historicalConfidence": 0.75} for s in selected]
        if legacy:
            inputs["agentList"] = agent_list
            inputs["agentCount"] = len(agent_list)
            inputs["pattern"] = {"name": header.name or Path(filename).stem, "version": header.version}
            if header.wants_agents:
                if trace is not None:
                    trace({"event": "fan_out_start", "agents": [s.id for s in selected]})
                results = fan_out(host, selected, input_value,
                                  timeout=min(30.0, (limits.timeout if limits and limits.timeout else 30.0)),
                                  clock=clock)
                inputs["agentResults"] = results
                inputs["successfulResults"] = [r for r in results if (r.get("confidence") or 0) > 0]
            extra = None
        else:
            extra = ({"agentList": [host.agent_value(s, None, clock) for s in selected]}
                     if header.wants_agents else None)
        base_dir = str(Path(filename).resolve().parent) if not filename.startswith("<") else None
        return run_with_host(source, host=host, filename=filename, inputs=inputs, limits=limits,
                             mode="legacy" if legacy else "strict", output=output, extra_prelude=extra,
                             base_dir=base_dir, clock=clock)
    finally:
        host.close()


def load_agents(path: str | Path | None) -> Registry:
    """The registry from ``path``, or ``./agents.toml`` when present, or an empty one."""
    if path is None:
        default = Path("agents.toml")
        return load_registry(default) if default.is_file() else Registry()
    return load_registry(path)


__all__ = ["PatternHeader", "parse_header", "select_for_header", "fan_out", "run_pattern", "load_agents"]
