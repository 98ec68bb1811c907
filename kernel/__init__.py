"""Prism kernel: the language.  The pipeline is parse → resolve → compile → execute.

``evaluate(source, *, filename, inputs, limits, mode)`` runs a program and returns
``Result(value, confidence)``; only ``PrismError`` subclasses ever escape it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from . import nodes
from .errors import (PrismCancelled, PrismError, PrismInternalError, PrismLimitError, PrismRuntimeError,
                     PrismStaticError, PrismSyntaxError, format_error)
from .parser import parse, tokenize
from .sandbox import DEFAULT_LIMITS, Budget, Limits

__all__ = ["evaluate", "Result", "Limits", "PrismError", "PrismSyntaxError", "PrismStaticError", "PrismRuntimeError",
           "PrismLimitError", "PrismCancelled", "PrismInternalError", "parse", "tokenize", "check",
           "resolve", "format_error", "Session", "nodes"]


@dataclass(frozen=True)
class Result:
    value: Any                    # plain JSON-compatible value
    confidence: float | None      # outer confidence, or None
    raw: Any = None               # the Prism value itself (for hosts)


def _global_names(rt: Any) -> set:
    return set(rt.globals)


def resolve(program: nodes.Program, global_names: set, *, mode: str = "strict", module: bool = False,
            writable: set | frozenset = frozenset()):
    """Stage 2: name resolution and static errors (kernel/resolver.py)."""
    from .resolver import resolve as _resolve
    return _resolve(program, global_names, mode=mode, module=module, writable=writable)


def compile_program(source: str, rt: Any, *, filename: str = "<input>", module: Any = None,
                    program: nodes.Program | None = None, resolution: Any = None) -> tuple[Callable[[], Any], Any]:
    """Stages 1–3 for one file: returns (run, resolution)."""
    import gc
    from .compiler import Compiler
    # Parsing and compiling allocate many long-lived objects and no cycles worth
    # collecting; the cyclic GC would otherwise rescan them over and over.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        prog = program if program is not None else parse(source, filename)
        res = resolution if resolution is not None else resolve(
            prog, _global_names(rt), mode=rt.mode, module=module is not None,
            writable=rt.writable if module is None else frozenset())
        comp = Compiler(rt, res, filename, source)
        if module is not None:
            comp.module_exports = module.exports
        body = comp.program(prog)
    finally:
        if gc_was_enabled:
            gc.enable()
    size = prog.scope.size

    def run() -> Any:
        from .sandbox import depth_counter
        from .values import UNINIT
        frame = [None] + [UNINIT] * (size - 1)
        saved = depth_counter.budget
        depth_counter.budget = rt.budget
        try:
            return body(frame)
        finally:
            depth_counter.budget = saved
    return run, res


def new_runtime(*, limits: Limits | None = None, mode: str = "strict", filename: str = "<input>",
                source: str | None = None, inputs: dict | None = None, output: Callable | None = None,
                trace: Callable | None = None, host: Any = None, budget: Budget | None = None,
                prelude: dict | None = None, base_dir: str | None = None, clock: Any = None) -> Any:
    """A runtime with the built-ins, host prelude and inputs bound as read-only globals.
    ``clock``: a ``kernel.clock.VirtualClock`` for deterministic time (default: real time)."""
    from .builtins import make_globals
    from .runtime import Runtime
    from .values import from_host
    if mode not in ("strict", "legacy"):
        raise ValueError("mode must be 'strict' or 'legacy'")
    rt = Runtime(limits=limits or DEFAULT_LIMITS, mode=mode, filename=filename, source=source,
                 budget=budget, output=output, trace=trace, host=host, base_dir=base_dir, clock=clock)
    g = make_globals(rt)
    if prelude:
        g.update(prelude)
    from .evalpattern import eval_pattern_builtin
    g["eval_pattern"] = eval_pattern_builtin(rt)
    for v in g.values():
        rt.freeze(v)
    if inputs:
        for k, v in inputs.items():
            if not isinstance(k, str) or not k.isidentifier():
                raise PrismRuntimeError(f"invalid input name {k!r}")
            if mode == "legacy":            # Parallax patterns reassign and mutate their inputs
                g[k] = from_host(v)
                rt.writable.add(k)
            else:
                g[k] = rt.freeze(from_host(v))
    rt.globals = g
    return rt


def _finish(rt: Any, value: Any) -> Result:
    from .runtime import await_value
    from .values import Confident, Promise, to_host
    if isinstance(value, Promise) or (type(value) is Confident and isinstance(value.value, Promise)):
        value = await_value(rt, value)
    conf = value.conf if type(value) is Confident else None
    return Result(to_host(value), conf, value)


def run_guarded(fn: Callable[[], Any], filename: str, source: str | None) -> Any:
    """Run ``fn`` on a big-stack thread; convert every escaping exception to a PrismError."""
    from .runtime import BreakSignal, ContinueSignal, ReturnSignal, run_in_thread
    try:
        return run_in_thread(fn)
    except PrismError as e:
        e.locate(None, filename, source)
        raise
    except RecursionError:
        raise PrismLimitError("maximum call depth exceeded (the program or its data is nested too deeply)",
                              limit="depth", filename=filename, source=source) from None
    except MemoryError:
        raise PrismLimitError("out of memory", limit="memory", filename=filename, source=source) from None
    except (BreakSignal, ContinueSignal):
        raise PrismRuntimeError("'break' or 'continue' outside of a loop", filename=filename,
                                source=source) from None
    except ReturnSignal:
        raise PrismRuntimeError("Illegal 'return' outside of a function", filename=filename,
                                source=source) from None
    except BaseException as e:  # noqa: BLE001 - nothing else may escape
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise PrismInternalError(f"internal error ({type(e).__name__}); please report this program",
                                 filename=filename, source=source) from e


def evaluate(source: str, *, filename: str = "<input>", inputs: dict | None = None,
             limits: Limits | None = None, mode: str = "strict", output: Callable | None = None,
             trace: Callable | None = None, host: Any = None, prelude: dict | None = None,
             base_dir: str | None = None, budget: Budget | None = None, clock: Any = None) -> Result:
    """Parse, resolve, compile and run ``source`` in a fresh interpreter (on ``clock``, a
    ``kernel.clock.VirtualClock``, when given; real time otherwise)."""
    if not isinstance(source, str):
        raise PrismSyntaxError("source must be a string", filename=filename)

    def go() -> Result:
        rt = new_runtime(limits=limits, mode=mode, filename=filename, source=source, inputs=inputs,
                         output=output, trace=trace, host=host, prelude=prelude, base_dir=base_dir,
                         budget=budget, clock=clock)
        run, _ = compile_program(source, rt, filename=filename)
        from .sandbox import depth_counter
        try:
            value = run()
            depth_counter.budget = rt.budget
            return _finish(rt, value)
        finally:
            depth_counter.budget = None
            rt.budget.cancel()        # tasks nobody awaited stop with the run
    return run_guarded(go, filename, source)


def check(source: str, filename: str = "<input>", *, mode: str = "strict",
          global_names: set | None = None, max_errors: int = 20) -> list[PrismSyntaxError]:
    """All static errors of a program, sorted by position.

    Syntax errors: after each one, the offending line is blanked (positions are
    kept) and the source parsed again, so independent mistakes on other lines are
    found too.  Resolver errors (undefined names, const assignment, misplaced
    return/break …) are reported when the program parses."""
    from .builtins import GLOBAL_NAMES
    errors: list[PrismSyntaxError] = []
    text = source
    seen_lines: set[int] = set()
    prog = None
    while len(errors) < max_errors:
        try:
            prog = parse(text, filename)
            break
        except PrismSyntaxError as e:
            e.source = source
            e.filename = filename
            if e.line is None or e.line in seen_lines:
                if e.line is None or not errors:
                    errors.append(e)
                break
            lines = text.split("\n")
            bad = e.line
            here = lines[e.line - 1] if e.line <= len(lines) else ""
            word = here[e.column - 1:].split(" ", 1)[0] if e.column else ""
            from .parser import _STATEMENT_WORDS
            if word in _STATEMENT_WORDS and e.line > 1 and here[:e.column - 1].strip() == "":
                # a statement keyword starting its line: the unfinished statement is above
                prev = e.line - 1
                while prev > 1 and not lines[prev - 1].strip():
                    prev -= 1
                end = len(lines[prev - 1].rstrip())
                e = PrismSyntaxError("Unfinished statement: the expression ends without its last operand "
                                     "or closing bracket", (prev, end, prev, end + 1), filename=filename,
                                     source=source)
                bad = prev
            if bad in seen_lines:
                break
            errors.append(e)
            seen_lines.add(bad)
            if bad > len(lines):
                break
            lines[bad - 1] = " " * len(lines[bad - 1])
            text = "\n".join(lines)
    if errors:
        return sorted(errors, key=lambda e: (e.line or 0, e.column or 0))
    names = set(GLOBAL_NAMES) | {"eval_pattern"} | set(global_names or ())
    res = resolve(prog, names, mode=mode)
    for e in res.errors:
        e.locate(e.span, filename, source)
    return sorted(res.errors, key=lambda e: (e.line or 0, e.column or 0))


class Session:
    """A REPL session: top-level bindings persist between ``run`` calls.

    Each entry is compiled against the names of the earlier entries, whose storage
    (their frames) stays shared, so closures from one entry and code of the next see
    the same variables.  ``const`` bindings stay read-only.  Every entry runs under
    a fresh allowance of the limits.
    """

    def __init__(self, *, limits: Limits | None = None, mode: str = "strict", output: Callable | None = None,
                 inputs: dict | None = None, host: Any = None, prelude: dict | None = None):
        self.rt = None
        self._args = dict(limits=limits, mode=mode, output=output, inputs=inputs, host=host, prelude=prelude)
        self.consts: set[str] = set()
        self.entries = 0

    def run(self, code: str) -> Result:
        def go() -> Result:
            from .compiler import Compiler
            from .values import UNINIT
            if self.rt is None:
                self.rt = new_runtime(filename="<repl>", **self._args)
            rt = self.rt
            rt.budget.reset()
            rt.source = code
            prog = parse(code, "<repl>")
            writable = set(rt.frame_globals) - self.consts
            res = resolve(prog, set(rt.globals), mode=rt.mode, writable=writable | rt.writable)
            body = Compiler(rt, res, "<repl>", code).program(prog)
            frame = [None] + [UNINIT] * (prog.scope.size - 1)
            value = body(frame)
            for name, b in prog.scope.names.items():
                if b.kind in ("let", "const", "func", "var", "import") and b.slot > 0:
                    rt.frame_globals[name] = (frame, b.slot)
                    rt.globals.setdefault(name, None)
                    if b.kind == "const":
                        self.consts.add(name)
                    else:
                        self.consts.discard(name)
            return _finish(rt, value)
        result = run_guarded(go, "<repl>", code)
        self.entries += 1
        return result
