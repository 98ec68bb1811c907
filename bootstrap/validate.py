"""Static validation of generated patterns.

Consumes Prism source (from a composer) and the agent registry; produces a
``ValidationReport``: syntax and resolver errors (unknown names with "did you
mean"), imports that do not exist in ``primitives/``/``stdlib/``, references to
agents the registry does not have, and forbidden constructs (relative imports,
``eval_pattern`` options that try to raise limits).  Used by both composers and
by the bootstrap before anything runs.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kernel
from kernel import nodes as N
from kernel.builtins import GLOBAL_NAMES
from kernel.modules import LIBRARY_DIRS

from .agents import Registry

# names a generated pattern may use besides the built-ins: exactly the bindings the
# bootstrap grants it through eval_pattern
PATTERN_BINDINGS = frozenset({"agents", "input"})


@dataclass
class Issue:
    message: str
    line: int | None = None
    column: int | None = None
    kind: str = "error"

    def to_dict(self) -> dict:
        return {"message": self.message, "line": self.line, "column": self.column, "kind": self.kind}

    def __str__(self) -> str:
        where = f"{self.line}:{self.column}: " if self.line else ""
        return f"{where}{self.message}"


@dataclass
class ValidationReport:
    ok: bool
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    imports: list[str] = field(default_factory=list)
    agents: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "errors": [e.to_dict() for e in self.errors],
                "warnings": [w.to_dict() for w in self.warnings], "imports": self.imports, "agents": self.agents}

    def summary(self) -> str:
        if self.ok:
            return f"ok ({len(self.warnings)} warning(s))"
        return "; ".join(str(e) for e in self.errors[:10])


_exports_cache: dict[str, set[str]] = {}
_exports_lock = threading.Lock()


def module_exports(spec: str) -> set[str] | None:
    """Names exported by a library module (``primitives/x`` or ``stdlib/x``), or None
    when the module does not exist.  Loaded once per process."""
    with _exports_lock:
        if spec in _exports_cache:
            return _exports_cache[spec]
    head, _, rest = spec.partition("/")
    root = LIBRARY_DIRS.get(head)
    if root is None or not rest:
        return None
    path = root / (rest if rest.endswith(".prism") else rest + ".prism")
    if not path.is_file():
        path = root / rest / "index.prism"
        if not path.is_file():
            return None
    probe = f'import * as m from "{spec}"\nObject.keys(m)'
    try:
        names = set(kernel.evaluate(probe, filename="<validate>").value)
    except kernel.PrismError:
        names = set()
    with _exports_lock:
        _exports_cache[spec] = names
    return names


def check_pattern(source: str, registry: Registry | None = None, *,
                  bindings: frozenset[str] | set[str] = PATTERN_BINDINGS) -> ValidationReport:
    """Validate a generated pattern without running it."""
    errors: list[Issue] = []
    warnings: list[Issue] = []
    if not isinstance(source, str) or not source.strip():
        return ValidationReport(False, [Issue("the pattern is empty")])
    if len(source) > 200_000:
        return ValidationReport(False, [Issue("the pattern is too long (over 200,000 characters)")])
    try:
        prog = kernel.parse(source, "<pattern>")
    except kernel.PrismSyntaxError as e:
        return ValidationReport(False, [Issue(e.message, e.line, e.column, "syntax")])
    imports: list[str] = []
    imported_names: set[str] = set()
    for st in prog.body:
        if isinstance(st, N.Import):
            imports.append(st.source)
            if not (st.source.startswith("primitives/") or st.source.startswith("stdlib/")):
                errors.append(Issue(f"import of '{st.source}' is not allowed: patterns may import only "
                                    "primitives/… and stdlib/… modules", st.span[0], st.span[1]))
                continue
            exported = module_exports(st.source)
            if exported is None:
                errors.append(Issue(f"unknown module '{st.source}'", st.span[0], st.span[1]))
                continue
            for key, local in st.names:
                if key not in exported:
                    close = _close(key, exported)
                    errors.append(Issue(f"module '{st.source}' has no export named '{key}'"
                                        + (f" (did you mean '{close}'?)" if close else ""), local.span[0],
                                        local.span[1]))
                imported_names.add(local.name)
    for e in kernel.check(source, "<pattern>", global_names=set(bindings)):
        errors.append(Issue(e.message + (f" ({e.hint})" if e.hint else ""), e.line, e.column, "static"))
    used_agents = _agent_refs(prog)
    if registry is not None:
        known = set(registry.ids())
        for name, span in used_agents:
            if name not in known:
                close = _close(name, known)
                errors.append(Issue(f"unknown agent '{name}'" + (f" (did you mean '{close}'?)" if close else
                                    f"; the registry has: {', '.join(sorted(known)) or 'no agents'}"),
                                    span[0], span[1]))
    for node in N.iter_nodes(prog):
        if isinstance(node, N.Call) and isinstance(node.callee, N.Name) and node.callee.name == "eval_pattern":
            warnings.append(Issue("the pattern calls eval_pattern itself (nested evaluation is bounded by "
                                  "the caller's budget)", node.span[0], node.span[1], "warning"))
    return ValidationReport(not errors, errors, warnings, imports, sorted({n for n, _ in used_agents}))


def _agent_refs(prog: N.Program) -> list[tuple[str, tuple]]:
    """``agents.x`` and ``agents["x"]`` references with constant names."""
    out = []
    for node in N.iter_nodes(prog):
        if isinstance(node, N.Member) and isinstance(node.obj, N.Name) and node.obj.name == "agents":
            out.append((node.name, node.span))
        elif isinstance(node, N.Index) and isinstance(node.obj, N.Name) and node.obj.name == "agents" \
                and isinstance(node.index, N.Str):
            out.append((node.index.value, node.span))
    return out


def _close(name: str, options: set[str]) -> str | None:
    import difflib
    m = difflib.get_close_matches(name, sorted(options), n=1, cutoff=0.6)
    return m[0] if m else None


__all__ = ["Issue", "ValidationReport", "check_pattern", "module_exports", "PATTERN_BINDINGS"]
