"""The primitive catalog: what ``primitives/*.prism`` really exports, for composers.

Consumes the primitive library's files (their exports, ``export function`` parameter
lists and header comments); produces `PrimitiveInfo` per exported function: the module
to import it from, its parameters, the *kind* of each parameter (how a composer must
pass it an argument) and a one-line description for prompts.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kernel
from kernel import nodes as N
from kernel.modules import LIBRARY_DIRS

from .prism_text import comment_text

__all__ = ["PrimitiveInfo", "primitive_catalog"]


@dataclass(frozen=True)
class PrimitiveInfo:
    """One exported primitive: where to import it from and how to pass it arguments."""

    name: str
    module: str                      # import specifier, e.g. "primitives/control"
    category: str                    # the defining file's stem
    params: tuple[str, ...]          # parameter names as written ("…rest" for a rest parameter)
    modes: tuple[str, ...]           # per parameter: task | tasks | function | value | options
    summary: str = ""

    @property
    def signature(self) -> str:
        shown = ["options?" if m == "options" else p for p, m in zip(self.params, self.modes)]
        return f"{self.name}({', '.join(shown)})"

    @property
    def takes_options(self) -> bool:
        return "options" in self.modes

    @property
    def positional(self) -> int | None:
        """How many positional arguments precede the options (None: any number)."""
        if self.params and self.params[-1].startswith("...") and self.modes[-1] != "options":
            return None
        return len([m for m in self.modes if m != "options"])

    @property
    def positional_names(self) -> list[str]:
        return [p for p, m in zip(self.params, self.modes) if m != "options"]

    @property
    def plannable(self) -> bool:
        """False when a parameter needs a plain function (a plan cannot express one)."""
        return "function" not in self.modes

    def mode(self, index: int) -> str:
        positional = [m for m in self.modes if m != "options"]
        if index < len(positional):
            return positional[index]
        return positional[-1] if positional and self.positional is None else "value"

    def to_prompt(self) -> str:
        line = f"- {self.signature}"
        return line + (f" — {self.summary}" if self.summary else "")


# Parameter kinds, inferred from the library's parameter names (its documented convention):
#   task      one task (function, agent-call descriptor, promise or literal) the primitive runs
#   tasks     an array of tasks, or an object of tasks ({medium, low}, {level1, …})
#   function  a plain function (reducer, router, key function…): plans cannot express one
#   options   the trailing options object (`...rest` read with optionsOf)
#   value     anything else: data, results, numbers
_TASK_PARAMS = {"task", "operation", "op", "action", "thunk", "work", "primary", "mapper", "process", "fallback",
                "router", "planner", "workflow", "handler"}
_TASKS_PARAMS = {"tasks", "operations", "alternatives", "steps", "stages", "participants", "handlers",
                 "fallbacks", "path", "levels", "branches", "strategies", "actions", "checks"}
_FUNCTION_PARAMS = {"fn", "f", "reducer", "keyOf", "keyFn", "valueOf", "predicate", "pred", "classifier",
                    "scorer", "compensate", "save", "restore", "aggregator", "comparator", "selector",
                    "transform", "condition", "merger", "mergeDeps"}
_OPTION_PARAMS = {"options", "opts", "config", "settings"}
# (primitive, parameter) pairs where the parameter's name alone would mislead.
_MODE_OVERRIDES: dict[tuple[str, str], str] = {
    ("batch", "items"): "tasks",                 # each item is a task unless options.process is given
    ("batchSequential", "items"): "tasks",
}


def _param_mode(name: str, last: bool = False) -> str:
    base = name.removeprefix("...")
    if base in _OPTION_PARAMS or (last and name.startswith("...") and base in ("rest", "more", "args")):
        return "options"  # the library's convention: `f(tasks, ...rest)` + optionsOf(rest, key)
    if base in _OPTION_PARAMS:
        return "options"
    if base in _TASK_PARAMS:
        return "task"
    if base in _TASKS_PARAMS:
        return "tasks"
    if base in _FUNCTION_PARAMS:
        return "function"
    return "value"


def _pattern_name(p: Any, i: int) -> str:
    if isinstance(p, N.PName):
        return p.name
    return "options" if isinstance(p, N.PObject) else f"arg{i + 1}"


_ENTRY = re.compile(r"^([A-Za-z_]\w*)\(([^)]*)\)\s*(.*)$")


def _header_docs(text: str, limit: int = 300) -> dict[str, str]:
    """Per-primitive documentation from a library file's header comment.

    The library's convention: the first ``/** … */`` block lists each primitive as a line
    ``name(params)  [short text]`` followed by indented lines (options, output, failure).
    Returns name -> that text folded to one line (at most ``limit`` characters).
    """
    m = re.search(r"/\*\*(.*?)\*/", text, re.DOTALL)
    if not m:
        return {}
    docs: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in m.group(1).splitlines():
        line = re.sub(r"^\s*\* ?", "", raw)
        entry = _ENTRY.match(line)
        if entry and not line.startswith(" "):
            current = docs.setdefault(entry.group(1), [])
            rest = entry.group(3).lstrip("—- ").strip()
            if rest.startswith("("):          # e.g. "(shadows the kernel's builtin `consensus`)"
                rest = ""
            if rest:
                current.append(rest)
        elif current is not None and line.startswith(" ") and line.strip():
            current.append(line.strip())
        else:
            current = None
    return {name: comment_text(" ".join(parts), limit) for name, parts in docs.items()}


def _scan_file(path: Path) -> dict[str, tuple[tuple[str, ...], str]]:
    """Exported functions of one library file: name -> (params, doc line)."""
    try:
        text = path.read_text(encoding="utf-8")
        prog = kernel.parse(text, str(path))
    except (OSError, UnicodeDecodeError, kernel.PrismError):
        return {}
    docs = _header_docs(text)
    out: dict[str, tuple[tuple[str, ...], str]] = {}
    for st in prog.body:
        if not isinstance(st, N.Export) or st.kind != "decl" or st.stmt is None:
            continue
        inner = st.stmt
        name, lam = None, None
        if isinstance(inner, N.FuncDef):
            name, lam = inner.name, inner.func
        elif isinstance(inner, N.Let) and isinstance(inner.target, N.PName) and isinstance(inner.init, N.Lambda):
            name, lam = inner.target.name, inner.init
        if name is None or lam is None:
            continue
        params = [_pattern_name(p, i) for i, p in enumerate(lam.params)]
        if lam.rest is not None:
            params.append("..." + _pattern_name(lam.rest, len(params)))
        out[name] = (tuple(params), docs.get(name, ""))
    return out


_catalog_lock = threading.Lock()
_catalog_cache: dict[str, PrimitiveInfo] | None = None


def primitive_catalog(*, refresh: bool = False) -> dict[str, PrimitiveInfo]:
    """Every exported function of ``primitives/`` that a plan may call, by name.

    Names and modules come from the real exports (`bootstrap.validate.module_exports`):
    a name is imported from its own category module (``primitives/control`` …), so a
    pattern compiles only the modules it uses; ``primitives/index`` only for a name its
    file does not export. Parameters are read from the defining ``export function``/``export const``
    and their kinds inferred from their names (``tasks`` → a list of tasks, ``options`` →
    the options object, …). Empty when the library is missing. Cached per process.
    """
    global _catalog_cache
    with _catalog_lock:
        if _catalog_cache is not None and not refresh:
            return _catalog_cache
    from .validate import module_exports
    root = LIBRARY_DIRS["primitives"]
    files = sorted(p for p in root.glob("*.prism") if p.is_file()) if root.is_dir() else []
    defined: dict[str, tuple[str, tuple[str, ...], str]] = {}
    for path in files:
        if path.stem == "index" or path.stem.startswith("_"):
            continue  # the index re-exports; "_x" files are the library's private helpers
        for name, (params, doc) in _scan_file(path).items():
            defined.setdefault(name, (path.stem, params, doc))
    index = module_exports("primitives/index") or set()
    catalog: dict[str, PrimitiveInfo] = {}
    for name, (stem, params, doc) in sorted(defined.items()):
        if name in (module_exports(f"primitives/{stem}") or set()):
            module = f"primitives/{stem}"   # its own module: a pattern compiles only what it imports
        elif name in index:
            module = "primitives/index"
        else:
            continue  # not actually exported (e.g. a failing module)
        if name.startswith("_") or not name[:1].islower():
            continue
        modes = tuple(_MODE_OVERRIDES.get((name, p)) or _param_mode(p, i == len(params) - 1)
                      for i, p in enumerate(params))
        catalog[name] = PrimitiveInfo(name, module, stem, params, modes, doc)
    with _catalog_lock:
        _catalog_cache = catalog
    return catalog
