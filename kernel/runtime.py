"""Execution state of one evaluation: budget, functions, calls, promises, tasks.

Consumes compiled closures (kernel/compiler.py); produces Prism values.  A
``Runtime`` is created per ``evaluate`` call (and per ``eval_pattern`` child) and
holds the sandbox budget, the read-only globals, the module cache and the host
hooks (output sink, trace sink).
"""
from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future
from concurrent.futures import wait as futures_wait
from typing import Any, Callable

from .errors import PrismCancelled, PrismError, PrismLimitError, PrismRuntimeError
from .sandbox import Budget, Limits, depth_counter
from .values import UNINIT, Builtin, Confident, Function, Promise, display, make_conf, type_name

# Prism frames are Python frames of closures; give them room.  Evaluation runs on
# threads with large stacks (see run_in_thread), so the C stack never overflows
# before our own depth limit (Limits.max_depth) or this recursion limit triggers.
if sys.getrecursionlimit() < 200_000:
    sys.setrecursionlimit(200_000)
STACK_SIZE = 512 * 1024 * 1024
_stack_lock = threading.Lock()


class BreakSignal(Exception):
    pass


class ContinueSignal(Exception):
    pass


class ReturnSignal(Exception):
    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value


BREAK = BreakSignal()
CONTINUE = ContinueSignal()


class FunctionCode:
    """The compiled, environment-independent part of a Prism function."""
    __slots__ = ("name", "nparams", "simple", "size", "body", "binders", "rest", "is_async", "span",
                 "is_lambda", "rt", "filename", "pad")

    def __init__(self, rt: "Runtime", name: str, nparams: int, simple: bool, size: int, body: Callable,
                 binders: list, rest: Callable | None, is_async: bool, span: tuple, is_lambda: bool,
                 filename: str):
        self.rt = rt
        self.name = name
        self.nparams = nparams
        self.simple = simple
        self.size = size
        self.body = body
        self.binders = binders
        self.rest = rest
        self.is_async = is_async
        self.span = span
        self.is_lambda = is_lambda
        self.filename = filename
        self.pad = [UNINIT] * max(0, size - 1 - nparams)

    def arity_error(self, got: int) -> PrismRuntimeError:
        who = "Lambda" if self.is_lambda else "Function"
        if self.rest is not None:
            return PrismRuntimeError(f"{who} expects at least {self.nparams} arguments, got {got}")
        return PrismRuntimeError(f"{who} expects {self.nparams} arguments, got {got}")


class Closure(Function):
    """A Prism function value: code + the frame it was created in."""
    __slots__ = ("code", "env", "arity")

    def __init__(self, code: FunctionCode, env: list):
        self.code = code
        self.env = env
        self.name = code.name
        self.arity = None if code.rest is not None else code.nparams

    def call(self, args: list, span: Any = None) -> Any:
        return invoke(self, args)


def invoke(fn: Closure, args: list) -> Any:
    code = fn.code
    if code.is_async:
        return spawn(code.rt, lambda: _invoke_sync(fn, args), name=code.name)
    return _invoke_sync(fn, args)


def _invoke_sync(fn: Closure, args: list) -> Any:
    code = fn.code
    n = len(args)
    rt = code.rt
    if code.simple:
        if n != code.nparams:
            raise code.arity_error(n).locate(code.span, code.filename, None)
        fr = [fn.env, *args]
        if code.pad:
            fr.extend(code.pad)
    else:
        if n != code.nparams and (code.rest is None or n < code.nparams):
            raise code.arity_error(n).locate(code.span, code.filename, None)
        fr = [fn.env]
        fr.extend([UNINIT] * (code.size - 1))
        for i, b in enumerate(code.binders):
            b(fr, args[i] if i < n else None)
        if code.rest is not None:
            code.rest(fr, list(args[code.nparams:]))
    b = rt.budget
    b.n -= 1
    if b.n < 0:
        b.refill()
    dc = depth_counter
    d = dc.depth + 1
    if d > b.max_depth:
        raise PrismLimitError(f"maximum call depth exceeded ({b.max_depth} nested calls; "
                              "unbounded recursion?)", limit="depth").owned(b)
    dc.depth = d
    try:
        return code.body(fr)
    except ReturnSignal as r:
        return r.value
    finally:
        dc.depth = d - 1


def call_value(rt: "Runtime", f: Any, args: list, span: tuple | None = None) -> Any:
    """Call any Prism callable (used by builtins for callbacks and by the compiler's slow path)."""
    t = type(f)
    if t is Closure:
        return invoke(f, args)
    if t is Builtin:
        b = rt.budget
        b.n -= 1
        if b.n < 0:
            b.refill()
        return f.fn(args)
    if t is Confident:
        inner = f.value
        if not isinstance(inner, Function):
            raise PrismRuntimeError(f"Cannot call non-function value: {type_name(inner)}")
        r = call_value(rt, inner, args, span)
        return wrap_call_result(r, f.conf)
    if isinstance(f, Function):
        return f.call(args, span)
    raise PrismRuntimeError(f"Cannot call non-function value: {type_name(f)}")


def wrap_call_result(r: Any, c: float) -> Any:
    """Result of calling a confident function (product rule, spec §4.4.14)."""
    if type(r) is Promise:
        return then(r, lambda v: wrap_call_result(v, c))
    if type(r) is Confident:
        return Confident(r.value, make_conf(r.conf * c))
    return Confident(r, c)


def arity_of(f: Any) -> int | None:
    if type(f) is Confident:
        f = f.value
    return getattr(f, "arity", None) if isinstance(f, Function) else None


# ------------------------------------------------------------ promises

def then(p: Promise, fn: Callable[[Any], Any]) -> Promise:
    if getattr(p, "due", None) is not None:          # a timer: its value is known, its time is not
        return SleepPromise.at(p.due, fn(p.future.result()))  # type: ignore[attr-defined]
    out = Promise()
    out.internal = p.internal

    def done(fut: Future) -> None:
        if fut.cancelled():
            out.future.cancel()
            return
        exc = fut.exception()
        if exc is not None:
            out.future.set_exception(exc)
            return
        try:
            out.future.set_result(fn(fut.result()))
        except BaseException as e:  # noqa: BLE001 - delivered to the awaiting side
            out.future.set_exception(e)

    p.future.add_done_callback(done)
    return out


class SleepPromise(Promise):
    """A timer: resolves to ``value`` (null for ``sleep``) at ``due`` — monotonic seconds,
    or the run's virtual clock when it has one.  Waiting on several overlaps naturally;
    no thread is used."""
    __slots__ = ("due",)

    def __init__(self, seconds: float, clock: Any = None, value: Any = None):
        super().__init__()
        self.due = time.monotonic() + seconds if clock is None else clock.due_in(seconds)
        self.future.set_result(value)

    @classmethod
    def at(cls, due: float, value: Any = None) -> "SleepPromise":
        p = cls(0.0, None, value)
        p.due = due
        return p


def await_value(rt: "Runtime", v: Any) -> Any:
    """``await v``: wait for a promise (bounded by the budget), pass anything else through."""
    t = type(v)
    if t is Confident and isinstance(v.value, Promise):
        inner = await_value(rt, v.value)
        return wrap_call_result(inner, v.conf) if type(inner) is not Confident else Confident(inner, v.conf)
    if not isinstance(v, Promise):
        return v
    b = rt.budget
    due = getattr(v, "due", None)
    clock = rt.clock
    if clock is not None:
        if due is not None:
            clock.wait(b, due, [], True)
            b.check_time()
            return v.future.result()
        if not v.future.done():
            clock.wait(b, None, [v.future], v.internal)
    if due is not None:
        while True:
            b.check_time()
            left = due - time.monotonic()
            if left <= 0:
                break
            tl = b.time_left()
            if tl is not None and tl <= 0:
                b.check_time()
            time.sleep(min(left, 0.05, tl if tl is not None else 0.05))
        b.check_time()
        return v.future.result()
    fut = v.future
    while True:
        b.check_time()
        tl = b.time_left()
        try:
            res = fut.result(timeout=min(0.05, tl) if tl is not None else 0.05)
        except TimeoutError:
            continue
        except PrismError:
            raise
        except Exception as e:  # noqa: BLE001 - a host future failed
            raise PrismRuntimeError(f"awaited operation failed ({e.__class__.__name__})") from None
        return res


# --------------------------------------------------------------- tasks

def spawn(rt: "Runtime", fn: Callable[[], Any], name: str = "task") -> Promise:
    """Run ``fn`` concurrently on a worker thread; returns its promise.  Bounded by
    ``Limits.max_tasks`` concurrent tasks and by the budget's deadline."""
    b = rt.budget
    b.task_started()
    p = Promise()
    p.internal = True
    clock = rt.clock
    parent_depth = depth_counter.depth
    token = threading.Event()
    p.on_cancel = token.set                 # cooperative: checked at every budget refill and await

    def run() -> None:
        depth_counter.depth = parent_depth
        depth_counter.cancel = token
        depth_counter.budget = b
        try:
            if p.future.set_running_or_notify_cancel():
                try:
                    p.future.set_result(fn())
                except PrismCancelled:
                    if token.is_set():
                        p.future.set_exception(PrismRuntimeError("the task was cancelled"))
                    else:
                        p.future.set_exception(_as_prism_error(sys.exc_info()[1]))
                except BaseException as e:  # noqa: BLE001 - delivered to the awaiting side
                    p.future.set_exception(_as_prism_error(e))
        finally:
            b.task_finished()
            if clock is not None:
                clock.task_finished()

    if clock is not None:
        clock.task_started()
    try:
        start_thread(run, name=f"prism-{name}")
    except RuntimeError as e:            # cannot start a new thread
        b.task_finished()
        if clock is not None:
            clock.task_finished()
        raise PrismLimitError(f"cannot start a concurrent task: {e}", limit="tasks").owned(b) from None
    return p


def start_thread(fn: Callable[[], None], name: str = "prism") -> threading.Thread:
    with _stack_lock:
        old = threading.stack_size()
        try:
            threading.stack_size(STACK_SIZE)
            t = threading.Thread(target=fn, name=name, daemon=True)
            t.start()
        finally:
            threading.stack_size(old)
    return t


def run_in_thread(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on a fresh thread with a large stack and return (or raise) its result."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            box["error"] = e

    t = start_thread(target, name="prism-eval")
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _as_prism_error(e: BaseException) -> BaseException:
    if isinstance(e, (PrismError, BreakSignal, ContinueSignal, ReturnSignal)):
        return e
    if isinstance(e, RecursionError):
        return PrismLimitError("maximum call depth exceeded", limit="depth")
    if isinstance(e, MemoryError):
        return PrismLimitError("out of memory", limit="memory")
    from .errors import PrismInternalError
    return PrismInternalError(f"internal error ({type(e).__name__}); please report this program")


# ------------------------------------------------------------- runtime

class Runtime:
    """Everything one evaluation needs at run time."""

    def __init__(self, *, limits: Limits, mode: str = "strict", filename: str = "<input>",
                 source: str | None = None, budget: Budget | None = None,
                 output: Callable[[str, str], None] | None = None,
                 trace: Callable[[dict], None] | None = None,
                 host: Any = None, base_dir: str | None = None, clock: Any = None):
        self.limits = limits
        self.clock = clock                # a kernel.clock.VirtualClock, or None for real time
        self.budget = budget if budget is not None else Budget(limits)
        self.mode = mode
        self.filename = filename
        self.source = source
        self.output = output or _default_output
        self.trace = trace
        self.host = host                  # host capabilities (agents, llm providers …) or None
        self.base_dir = base_dir
        self.modules: dict[str, Any] = {}
        self.loading: set[str] = set()
        self.globals: dict[str, Any] = {}
        self.frozen: set[int] = set()     # ids of prelude objects that Prism may not mutate
        self.keep: list = []              # keeps frozen objects alive
        self.context_stack: list[str] = []
        self.writable: set[str] = set()   # globals a legacy program may assign (its inputs)
        self.frame_globals: dict[str, tuple[list, int]] = {}   # REPL: name -> (frame, slot)

    def freeze(self, v: Any) -> Any:
        """Mark a container (recursively) as part of the read-only prelude."""
        stack = [v]
        while stack:
            x = stack.pop()
            if type(x) in (list, dict) and id(x) not in self.frozen:
                self.frozen.add(id(x))
                self.keep.append(x)
                stack.extend(x.values() if type(x) is dict else x)
        return v

    def check_mutable(self, container: Any) -> None:
        if id(container) in self.frozen:
            raise PrismRuntimeError("Cannot modify a built-in or imported read-only value")

    def emit(self, event: dict) -> None:
        if self.trace is not None:
            try:
                self.trace(event)
            except Exception:  # noqa: BLE001 - tracing never breaks a run
                pass


def _default_output(stream: str, text: str) -> None:
    out = sys.stderr if stream == "stderr" else sys.stdout
    try:
        out.write(text + "\n")
    except UnicodeEncodeError:      # lone surrogates, or a terminal that cannot show the text
        enc = getattr(out, "encoding", None) or "utf-8"
        out.write((text + "\n").encode(enc, "replace").decode(enc))
    out.flush()


def wait_any(rt: "Runtime", items: list, timeout: float | None = None) -> int:
    """The index of the first of ``items`` that has settled (the lowest index when several
    have), or -1 when ``timeout`` seconds pass first.  Anything but a promise counts as
    settled.  Sleeps without polling: on the futures' completion, the nearest timer, the
    timeout or the run's deadline, whichever comes first (re-checking cancellation at
    least every 50 ms).  On a virtual clock the same, in the clock's time."""
    b = rt.budget
    clock = rt.clock
    read = time.monotonic if clock is None else (lambda: clock.t)
    end = None if timeout is None else read() + max(0.0, timeout)
    while True:
        b.check_time()
        now = read()
        settled, pending, internal, wake = _scan(items, now, end)
        if settled is not None:
            return settled
        if end is not None and now >= end:
            return -1
        if clock is not None:
            clock.wait(b, wake, pending, internal)
            continue
        wait_s = 0.05 if wake is None else min(0.05, max(0.0, wake - now))
        tl = b.time_left()
        if tl is not None:
            wait_s = min(wait_s, max(0.0, tl) + 0.001)
        if pending:
            futures_wait(pending, timeout=wait_s, return_when=FIRST_COMPLETED)
        else:
            time.sleep(wait_s)


def _scan(items: list, now: float, end: float | None) -> tuple[int | None, list, bool, float | None]:
    """One look at ``items``: (index of the first settled one or None, the pending futures,
    whether they all belong to tasks of this run, the nearest timer or ``end``)."""
    pending = []
    internal = True
    wake = end
    for i, p in enumerate(items):
        if type(p) is Confident:
            p = p.value
        if not isinstance(p, Promise):
            return i, pending, internal, wake
        due = getattr(p, "due", None)
        if due is not None:
            if now >= due:
                return i, pending, internal, wake
            wake = due if wake is None else min(wake, due)
        elif p.future.done():
            return i, pending, internal, wake
        else:
            pending.append(p.future)
            internal = internal and p.internal
    return None, pending, internal, wake


def race(rt: "Runtime", items: list) -> Any:
    """Settle with the first of ``items`` to settle; cancel the others (best effort)."""
    if not items:
        return None
    i = wait_any(rt, items)
    winner = items[i]
    for other in items:
        if other is not winner and isinstance(other, Promise) and getattr(other, "due", None) is None:
            other.future.cancel()
            if other.on_cancel is not None:
                other.on_cancel()
    return await_value(rt, winner)
