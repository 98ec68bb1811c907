"""Orchestration: requirements in, result with confidence and provenance out.

Consumes ``OrchestrationRequirements``, an agent ``Registry`` and a pattern store;
produces an ``Orchestration``.  All the decisions live in the static Prism
program ``bootstrap/bootstrap-composer.prism``; this module only grants it its
capabilities (agents, composers, the pattern checker, the cached pattern), picks
the pattern id (hash of the canonical requirements + composer identity/version),
and stores newly composed patterns.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import kernel
from kernel import Limits, PrismCancelled, PrismError, PrismLimitError, PrismRuntimeError, PrismSyntaxError
from kernel.sandbox import DEFAULT_LIMITS, Budget
from kernel.values import Builtin, Confident, from_host, to_host

from .agents import Registry
from .host import Host, run_with_host
from .requirements import OrchestrationRequirements, canonical_json, requirements_hash
from .store import PatternRecord, PatternStore
from .validate import check_pattern

BOOTSTRAP = Path(__file__).with_name("bootstrap-composer.prism")
COMPOSER_FILE = Path(__file__).resolve().parent.parent / "stdlib" / "composer.prism"
UNSET: Any = object()
# the generated pattern gets this share of the orchestration's own budget
PATTERN_BUDGET = {"steps": 20_000_000, "timeout": 120.0}


class OrchestrationError(Exception):
    """A failed orchestration, with ``kind``: requirements | composer | validation |
    runtime | limit | cancelled."""

    def __init__(self, kind: str, message: str, *, error: PrismError | None = None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.error = error


@dataclass
class ComposedPattern:
    id: str
    source: str
    metadata: dict
    composer: str
    cached: bool
    validation: dict
    confidence: float | None = None
    composer_note: str | None = None


@dataclass
class Orchestration:
    value: Any
    confidence: float | None
    pattern_id: str
    cached: bool
    composer: str
    fallback_taken: bool
    composer_note: str | None = None
    source: str = ""
    metadata: dict = field(default_factory=dict)
    validation: dict = field(default_factory=dict)
    duration_ms: float = 0.0
    below_minimum: bool = False

    def to_json(self) -> dict:
        from kernel.values import json_safe
        out = {"value": json_safe(self.value), "confidence": self.confidence,
               "pattern": {"id": self.pattern_id, "cached": self.cached, "composer": self.composer},
               "fallback_taken": self.fallback_taken}
        if self.below_minimum:
            out["below_minimum"] = True
        if self.composer_note:
            out["composer_note"] = self.composer_note
        return out


# ---------------------------------------------------------------- composers

def builtin_identity() -> tuple[str, str]:
    """("builtin", "<declared version>+<hash of the composer source>"): any change to
    the composer changes the identity, so the store never serves stale patterns."""
    import hashlib
    import re
    text = COMPOSER_FILE.read_text(encoding="utf-8")
    m = re.search(r'COMPOSER_VERSION\s*=\s*"([^"]+)"', text)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
    return "builtin", f"{m.group(1) if m else '0'}+{digest}"


def composer_identity(composer: str, registry: Registry) -> tuple[str, str]:
    if composer == "builtin":
        return builtin_identity()
    if composer == "llm":
        llm = _llm_composer(registry)
        return llm.identity
    raise OrchestrationError("requirements", f"unknown composer '{composer}' (use builtin or llm)")


def _llm_composer(registry: Registry) -> Any:
    config = registry.composer_config or {}
    llm_cfg = config.get("llm", config) if isinstance(config, dict) else {}
    if not llm_cfg or not llm_cfg.get("base_url"):
        raise OrchestrationError("composer", "the LLM composer is not configured: add a [composer.llm] table "
                                 "with base_url and model to the agents file")
    from .llm_composer import ComposerConfigError, LLMComposer
    try:
        return LLMComposer(llm_cfg, registry)
    except ComposerConfigError as e:
        raise OrchestrationError("composer", f"the LLM composer is misconfigured: {e}") from None


def catalog_of(registry: Registry) -> list[dict]:
    return [{"id": s.id, "name": s.display_name, "capabilities": list(s.capabilities),
             "expertise": float(s.expertise), "description": s.description or "", "transport": s.transport}
            for s in registry]


def _composer_builtins(registry: Registry, composer: str) -> dict:
    def check(args: list) -> Any:
        source = args[0].value if args and type(args[0]) is Confident else (args[0] if args else None)
        if not isinstance(source, str):
            raise PrismRuntimeError("check_pattern() requires the pattern source")
        return from_host(check_pattern(source, registry).to_dict())

    composers: dict[str, Any] = {}
    if composer == "llm":
        llm = _llm_composer(registry)

        def compose_llm(args: list) -> Any:
            req = to_host(args[0])
            catalog = to_host(args[1]) if len(args) > 1 else catalog_of(registry)
            try:
                out = llm.compose(OrchestrationRequirements.model_validate(req), catalog)
            except Exception as e:  # noqa: BLE001 - reported to the bootstrap, which falls back
                raise PrismRuntimeError(f"LLM composer failed: {e}") from None
            return Confident(from_host({"pattern": out["pattern"], "metadata": out.get("metadata", {})}),
                             float(out.get("confidence", 0.5)))
        composers["llm"] = Builtin("llm_composer", compose_llm)
    return {"check_pattern": Builtin("check_pattern", check), "composers": composers}


# ------------------------------------------------------------------ entry

def _req_data(req: OrchestrationRequirements, input_value: Any) -> dict:
    data = req.model_dump(mode="json", by_alias=True, exclude_none=True)
    if input_value is not UNSET:
        data["input"] = input_value
    return data


def _store_lookup(store: PatternStore | None, pattern_id: str, fresh: bool) -> PatternRecord | None:
    if store is None or fresh:
        return None
    return store.get(pattern_id)


def _error_kind(e: PrismError) -> str:
    if isinstance(e, PrismCancelled):
        return "cancelled"
    if isinstance(e, PrismLimitError):
        return "limit"
    msg = e.message
    if "composer could not" in msg or "unknown strategy" in msg or "perspective" in msg or "registry is empty" in msg:
        return "composer"
    if "pattern is invalid" in msg:
        return "validation"
    return "runtime"


def orchestrate(req: OrchestrationRequirements, *, registry: Registry, composer: str = "builtin",
                store: PatternStore | None = None, fresh: bool = False, input: Any = UNSET,
                limits: Limits | None = None, trace: Callable[[dict], None] | None = None,
                budget: Budget | None = None, output: Callable[[str, str], None] | None = None,
                clock: Any = None) -> Orchestration:
    """Compose (or reuse) a pattern for ``req`` and run it; see the module docstring.
    ``clock``: a ``kernel.clock.VirtualClock`` to run on virtual time (experiments)."""
    t0 = time.monotonic()
    composer_id, version = composer_identity(composer, registry)
    pattern_id = requirements_hash(req, composer_id, version)
    cached = _store_lookup(store, pattern_id, fresh)
    limits = limits or DEFAULT_LIMITS
    budget = budget or Budget(limits)
    pattern_budget = {"steps": float(min(PATTERN_BUDGET["steps"], limits.max_steps or PATTERN_BUDGET["steps"])),
                      "timeout": float(min(PATTERN_BUDGET["timeout"], limits.timeout or PATTERN_BUDGET["timeout"]))}
    inputs = {
        "requirements": _req_data(req, input),
        "catalog": catalog_of(registry),
        "preferred": composer,
        "cached": ({"id": cached.id, "source": cached.source, "composer": cached.composer,
                    "metadata": cached.metadata} if cached is not None else None),
        "budget": pattern_budget,
    }
    host = Host(registry, trace=trace)
    if trace is not None:
        trace({"event": "orchestration_start", "pattern_id": pattern_id, "cached": cached is not None,
               "composer": composer})
    try:
        source = BOOTSTRAP.read_text(encoding="utf-8")
        try:
            result = run_with_host(source, host=host, filename=str(BOOTSTRAP), inputs=inputs, limits=limits,
                                   extra_prelude=_composer_builtins(registry, composer), output=output,
                                   budget=budget, clock=clock)
        except PrismError as e:
            raise OrchestrationError(_error_kind(e), _clean(e.message), error=e) from None
    finally:
        host.close()
    raw = result.raw
    inner = raw.value if type(raw) is Confident else raw
    out = to_host(inner)
    used = str(out.get("composer") or composer)
    if used != composer:
        composer_id, version = composer_identity(used, registry)
        pattern_id = requirements_hash(req, composer_id, version)
    validation = out.get("validation") or {}
    metadata = out.get("metadata") or {}
    if store is not None and cached is None:
        store.put(PatternRecord(id=pattern_id, source=out["source"], requirements=canonical_json(req),
                                composer=composer_id, composer_version=version, validation=validation,
                                metadata=metadata))
    elif store is not None:
        store.touch(pattern_id)
    orch = Orchestration(value=_value_of(inner), confidence=result.confidence, pattern_id=pattern_id,
                         cached=cached is not None, composer=used, fallback_taken=bool(out.get("fallbackTaken")),
                         composer_note=out.get("composerNote"), source=out.get("source", ""), metadata=metadata,
                         validation=validation, duration_ms=(time.monotonic() - t0) * 1000,
                         below_minimum=bool(out.get("belowMinimum")))
    if trace is not None:
        trace({"event": "orchestration_end", "pattern_id": pattern_id, "confidence": orch.confidence,
               "fallback_taken": orch.fallback_taken, "duration_ms": round(orch.duration_ms, 3)})
    return orch


def _value_of(inner: dict) -> Any:
    return to_host(inner.get("value")) if isinstance(inner, dict) else to_host(inner)


def _clean(message: str) -> str:
    return message.removeprefix("eval_pattern: ")


def compose_pattern(req: OrchestrationRequirements, *, registry: Registry, composer: str = "builtin",
                    store: PatternStore | None = None, fresh: bool = False) -> ComposedPattern:
    """Compose (or fetch) the pattern for ``req`` without running it: the review step."""
    composer_id, version = composer_identity(composer, registry)
    pattern_id = requirements_hash(req, composer_id, version)
    cached = _store_lookup(store, pattern_id, fresh)
    if cached is not None:
        return ComposedPattern(cached.id, cached.source, cached.metadata, cached.composer, True, cached.validation)
    note = None
    used = composer
    catalog = catalog_of(registry)
    data = _req_data(req, UNSET)
    source = metadata = None
    conf: float | None = None
    if composer == "llm":
        try:
            out = _llm_composer(registry).compose(req, catalog)
            source, metadata, conf = out["pattern"], out.get("metadata", {}), out.get("confidence")
            if not check_pattern(source, registry).ok:
                raise ValueError("; ".join(str(i) for i in check_pattern(source, registry).errors))
        except Exception as e:  # noqa: BLE001 - fall back to the built-in composer, and say so
            note = f"the llm composer failed ({e}); used the built-in composer instead"
            used = "builtin"
            source = None
    if source is None:
        prog = 'import { compose } from "stdlib/composer"\ncompose(requirements, catalog)'
        try:
            r = kernel.evaluate(prog, filename="<compose>", inputs={"requirements": data, "catalog": catalog})
        except PrismError as e:
            raise OrchestrationError("composer", _clean(e.message), error=e) from None
        source, metadata, conf = r.value["pattern"], r.value["metadata"], r.confidence
    report = check_pattern(source, registry)
    if not report.ok:
        raise OrchestrationError("validation", "the composed pattern is invalid: " + report.summary())
    composer_id, version = composer_identity(used, registry)
    pattern_id = requirements_hash(req, composer_id, version)
    if store is not None:
        store.put(PatternRecord(id=pattern_id, source=source, requirements=canonical_json(req), composer=composer_id,
                                composer_version=version, validation=report.to_dict(), metadata=metadata))
    return ComposedPattern(pattern_id, source, metadata, used, False, report.to_dict(), conf, note)


def run_stored_pattern(pattern_id: str, *, registry: Registry, store: PatternStore, input: Any = UNSET,
                       limits: Limits | None = None, trace: Callable[[dict], None] | None = None,
                       budget: Budget | None = None) -> Orchestration:
    """Run a stored pattern again (with new input, or the input its requirements carried)."""
    rec = store.get(pattern_id)
    if rec is None:
        raise OrchestrationError("requirements", f"no stored pattern with id '{pattern_id}'")
    from .requirements import validate_requirements
    import json
    req = validate_requirements(json.loads(rec.requirements))
    t0 = time.monotonic()
    host = Host(registry, trace=trace)
    value = input if input is not UNSET else req.input
    try:
        result = run_with_host(rec.source, host=host, filename=f"<pattern {pattern_id}>", inputs={"input": value},
                               limits=limits, budget=budget)
    except PrismError as e:
        raise OrchestrationError(_error_kind(e), e.message, error=e) from None
    finally:
        host.close()
    inner = result.raw.value if type(result.raw) is Confident else result.raw
    shaped = isinstance(inner, dict) and "answer" in inner
    store.touch(pattern_id)
    return Orchestration(value=to_host(inner["answer"]) if shaped else to_host(inner), confidence=result.confidence,
                         pattern_id=pattern_id, cached=True, composer=rec.composer,
                         fallback_taken=bool(to_host(inner.get("fallbackTaken"))) if shaped else False,
                         source=rec.source, metadata=rec.metadata, validation=rec.validation,
                         duration_ms=(time.monotonic() - t0) * 1000)
