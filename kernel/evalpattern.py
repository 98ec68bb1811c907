"""``eval_pattern(source, bindings = {}, options = {})``: run generated Prism safely.

Consumes Prism source and explicit capabilities; produces the child's value (with
its confidence).  The child sees only the prelude and ``bindings``; its budget is
carved from the caller's (``options`` may only lower limits); its failures become
errors the caller can catch: an object ``{kind, message, line, column}``.
``options.isolation = "process"`` runs the child in a separate process with OS
resource limits (see kernel/isolate.py); bindings must then be plain data.
"""
from __future__ import annotations

import math
from typing import Any

from .errors import PrismError, PrismLimitError, PrismRuntimeError, PrismSyntaxError
from .sandbox import Budget
from .values import Builtin, Confident, Function, display, from_host, to_host

_OPTION_LIMITS = {"steps": "max_steps", "timeout": "timeout", "depth": "max_depth", "items": "max_items",
                  "string": "max_string", "tasks": "max_tasks"}
MAX_NESTED = 8


def _raw(v: Any) -> Any:
    return v.value if type(v) is Confident else v


def child_error(err: PrismError, kind: str | None = None) -> PrismRuntimeError:
    """A catchable error describing a failed child program."""
    kind = kind or err.kind
    info = {"kind": kind, "message": err.message,
            "line": float(err.line) if err.line is not None else None,
            "column": float(err.column) if err.column is not None else None}
    if isinstance(err, PrismLimitError):
        info["limit"] = err.limit
    out = PrismRuntimeError(f"eval_pattern: {kind} error: {err.message}", value=info)
    return out


def eval_pattern_builtin(rt: Any) -> Builtin:
    def eval_pattern(args: list) -> Any:
        if not args or len(args) > 3:
            raise PrismRuntimeError("eval_pattern() requires 1 to 3 arguments: source, bindings, options")
        source = _raw(args[0])
        if type(source) is not str:
            raise PrismRuntimeError("eval_pattern() source must be a string")
        bindings = _raw(args[1]) if len(args) > 1 and args[1] is not None else {}
        if type(bindings) is not dict:
            raise PrismRuntimeError("eval_pattern() bindings must be an object")
        options = _raw(args[2]) if len(args) > 2 and args[2] is not None else {}
        if type(options) is not dict:
            raise PrismRuntimeError("eval_pattern() options must be an object")
        for name in bindings:
            if not name.isidentifier():
                raise PrismRuntimeError(f"eval_pattern() binding name '{name}' is not a valid identifier")
        lowered: dict = {}
        for key, field in _OPTION_LIMITS.items():
            if key in options and options[key] is not None:
                v = _raw(options[key])
                if type(v) is not float or v != v or v < 0:
                    raise PrismRuntimeError(f"eval_pattern() option '{key}' must be a non-negative number")
                lowered[field] = v if field == "timeout" else (int(v) if math.isfinite(v) else None)
        isolation = _raw(options.get("isolation", "thread"))
        if isolation not in ("thread", "process", None):
            raise PrismRuntimeError("eval_pattern() option 'isolation' must be \"thread\" or \"process\"")
        depth = getattr(rt, "eval_depth", 0)
        if depth >= MAX_NESTED:
            raise PrismRuntimeError(f"eval_pattern() nested more than {MAX_NESTED} levels deep")
        parent_budget = rt.budget
        limits = parent_budget.limits.lowered(**lowered)
        filename = display(_raw(options.get("filename", "<pattern>")))
        mode = _raw(options.get("mode", "strict"))
        mode = mode if mode in ("strict", "legacy") else "strict"
        if isolation == "process":
            from .isolate import run_isolated
            memory = _raw(options.get("memory"))
            if memory is not None and (type(memory) is not float or not memory > 0):
                raise PrismRuntimeError("eval_pattern() option 'memory' must be a positive number (MiB)")
            return run_isolated(rt, source, bindings, limits, filename, mode=mode,
                                memory_mb=int(min(memory, 1 << 30)) if memory is not None else None)
        child_budget = Budget(limits, parent=parent_budget)
        from . import compile_program, new_runtime, _finish
        try:
            child = new_runtime(limits=limits, mode=mode,
                                filename=filename, source=source, output=rt.output, trace=rt.trace,
                                host=rt.host, budget=child_budget, prelude=getattr(rt, "prelude", None),
                                clock=rt.clock)
            child.eval_depth = depth + 1
            child.allow_file_imports = False
            child.prelude = getattr(rt, "prelude", None)
            for name, value in bindings.items():
                # read-only in the child (as with process isolation): the child cannot
                # mutate the caller's objects through a binding
                child.globals[name] = child.freeze(value)
            run, _ = compile_program(source, child, filename=filename)
            result = run()
            rt.emit({"event": "eval_pattern_end", "steps": child_budget.consumed})
            return _finish(child, result).raw
        except PrismLimitError as e:
            owner = getattr(e, "budget", None)
            if owner is child_budget or owner is None:
                if e.limit == "steps" and parent_budget.steps_left() <= 0:
                    # the child used up what was left of the caller's own steps: that is
                    # the caller's limit, and the caller may not catch it
                    raise PrismLimitError(
                        f"step limit exceeded ({parent_budget.limits.max_steps:,} steps) "
                        "while running eval_pattern", limit="steps").owned(parent_budget) from None
                raise child_error(e, "limit") from None
            raise                                   # the caller's own budget: not catchable
        except PrismSyntaxError as e:
            raise child_error(e, "syntax") from None
        except PrismRuntimeError as e:
            raise child_error(e, "runtime") from None
        except RecursionError:
            raise child_error(PrismLimitError("maximum call depth exceeded", limit="depth"), "limit") from None
    return Builtin("eval_pattern", eval_pattern)
