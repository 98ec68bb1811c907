"""Module loading for ``import``/``export``.

Consumes an import specifier and the importing file's name; produces a loaded
``Module`` (its exports dict), parsed, resolved, compiled and run once per
evaluation.  Resolution: ``./x`` and ``../x`` relative to the importing file
(only for programs that came from files), ``stdlib/x`` and ``primitives/x`` from
the project's own folders; ``.prism`` is appended when missing, ``x/index.prism``
is tried next.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from .errors import PrismError, PrismRuntimeError

ROOT = Path(__file__).resolve().parent.parent
LIBRARY_DIRS = {"stdlib": ROOT / "stdlib", "primitives": ROOT / "primitives"}


# Parsed and resolved modules, shared by every evaluation in the process (keyed by
# path, size and mtime).  Modules are resolved against the built-in names only, so
# the result does not depend on the importing program's host capabilities; only
# the (cheap) compile step runs per evaluation.
_ANALYSED: dict[tuple, tuple] = {}
_ANALYSED_LOCK = threading.Lock()
_MAX_ANALYSED = 256


def analysed(path: Path) -> tuple:
    """(source, program, resolution) for a module file, from the process-wide cache;
    the file is read and parsed only when its size or modification time changed.
    Raises OSError/UnicodeDecodeError when it cannot be read."""
    from . import parse, resolve
    from .builtins import GLOBAL_NAMES
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _ANALYSED_LOCK:
        hit = _ANALYSED.get(key)
    if hit is not None:
        return hit
    source = path.read_text(encoding="utf-8")
    prog = parse(source, str(path))
    res = resolve(prog, set(GLOBAL_NAMES) | {"eval_pattern"}, module=True)
    with _ANALYSED_LOCK:
        if len(_ANALYSED) >= _MAX_ANALYSED:
            _ANALYSED.clear()
        _ANALYSED[key] = (source, prog, res)
    return source, prog, res


# Where a library specifier leads ("primitives/execution", or "./_task" from inside
# primitives/): the same for every program, so resolved once per process. A file that
# disappears is noticed when it is loaded (the entry is dropped and resolved again).
_RESOLVED: dict[tuple[str, str], Path] = {}
_LIB_ROOTS: dict[str, Path | None] = {}


class Module:
    def __init__(self, path: str, display: str):
        self.path = path
        self.display = display
        self.exports: dict[str, Any] = {}
        self.loading = True


def _candidates(base: Path) -> list[Path]:
    s = str(base)
    first = base if s.endswith(".prism") else Path(s + ".prism")
    return [first, base / "index.prism"]


def resolve_spec(rt: Any, spec: str, importer: str) -> tuple[Path, str]:
    head = spec.split("/", 1)[0]
    if head in LIBRARY_DIRS and "/" in spec:
        key = ("", spec)
    elif (spec.startswith("./") or spec.startswith("../")) and _library_root_of(importer) is not None:
        key = (importer, spec)
    else:
        return _resolve_spec(rt, spec, importer)
    hit = _RESOLVED.get(key)
    if hit is None:
        hit = _RESOLVED[key] = _resolve_spec(rt, spec, importer)[0]
    return hit, spec


def _resolve_spec(rt: Any, spec: str, importer: str) -> tuple[Path, str]:
    head = spec.split("/", 1)[0]
    tried: list[Path] = []
    if head in LIBRARY_DIRS and "/" in spec:
        root = LIBRARY_DIRS[head]
        rest = spec.split("/", 1)[1]
        for cand in _candidates(root / rest):
            tried.append(cand)
            real = cand.resolve()
            if real.is_file() and root.resolve() in real.parents:
                return real, spec
    elif spec.startswith("./") or spec.startswith("../"):
        lib_root = _library_root_of(importer)
        if lib_root is not None:              # inside stdlib/ or primitives/: stay inside it
            for cand in _candidates(Path(importer).resolve().parent / spec):
                tried.append(cand)
                real = cand.resolve()
                if real.is_file() and lib_root in real.parents:
                    return real, spec
            raise PrismRuntimeError(f"Cannot resolve module '{spec}' from '{_short(Path(importer))}'")
        if not getattr(rt, "allow_file_imports", True):
            raise PrismRuntimeError(f"Cannot import '{spec}': this program may only import stdlib/ and primitives/ "
                                    "modules")
        base_dir = Path(importer).resolve().parent if importer and not importer.startswith("<") else (
            Path(rt.base_dir) if rt.base_dir else Path.cwd())
        for cand in _candidates(base_dir / spec):
            tried.append(cand)
            if cand.is_file():
                return cand.resolve(), spec
    else:
        raise PrismRuntimeError(f"Cannot resolve module '{spec}': use './path' for your own files, or "
                                "'stdlib/…' / 'primitives/…' for the bundled libraries")
    shown = ", ".join(_short(p) for p in tried)
    raise PrismRuntimeError(f"Cannot resolve module '{spec}' from '{importer}'. Tried: {shown}")


def _library_root_of(importer: str) -> Path | None:
    if not importer or importer.startswith("<"):
        return None
    if importer in _LIB_ROOTS:
        return _LIB_ROOTS[importer]
    real = Path(importer).resolve()
    found = None
    for root in LIBRARY_DIRS.values():
        r = root.resolve()
        if r in real.parents:
            found = r
            break
    if len(_LIB_ROOTS) < 4096:
        _LIB_ROOTS[importer] = found
    return found


def _short(p: Path) -> str:
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


def load_module(rt: Any, spec: str, importer: str) -> Module:
    path, display = resolve_spec(rt, spec, importer)
    key = str(path)
    mod = rt.modules.get(key)
    if mod is not None:
        return mod
    mod = Module(key, display)
    rt.modules[key] = mod
    from . import compile_program
    try:
        source, prog, res = analysed(path)
    except (OSError, UnicodeDecodeError) as e:
        _RESOLVED.clear()                   # a library file moved: resolve afresh next time
        rt.modules.pop(key, None)
        raise PrismRuntimeError(f"Failed to load module {display}: {e.__class__.__name__}") from None
    try:
        run, _ = compile_program(source, rt, filename=key, module=mod, program=prog, resolution=res)
        run()
    except PrismError as e:
        if e.filename is None:
            e.filename = key
        if not e.message.startswith("Failed to load module"):
            e.message = f"Failed to load module {display}: {e.message}"
        mod.loading = False
        rt.modules.pop(key, None)
        raise
    mod.loading = False
    rt.freeze(mod.exports)
    return mod
