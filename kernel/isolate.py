"""Process isolation: run one Prism program in a separate, resource-limited process.

Consumes Prism source, plain-data bindings and ``Limits``; produces the same
value (with its confidence) or the same ``PrismError`` kinds as an in-process
run.  Used by ``eval_pattern(src, bindings, {isolation: "process"})`` and by the
Python API ``evaluate_isolated``.

Design
------
* The child is a fresh interpreter (``python -I -B``; never a fork of the
  parent's threads) that imports this module and calls ``_child_main``.  It
  reads one JSON request on stdin and writes JSON lines on a private copy of
  stdout: ``{"t": "out"}`` for each printed line, then one ``{"t": "done"}`` or
  ``{"t": "error"}``.  Its own fd 1 and 2 point at /dev/null, so nothing stray
  can corrupt the protocol or reach the host's terminal.
* OS limits in the child: ``RLIMIT_AS`` (``memory_mb``, default 1 GiB: heap,
  thread stacks and all), ``RLIMIT_CPU`` (from the timeout), ``RLIMIT_CORE`` 0,
  ``RLIMIT_FSIZE`` 0.  Thread stacks are smaller than in-process (64 MiB for the
  program, 16 MiB per concurrent task) and the Python recursion limit is lowered
  to match, so deep recursion still ends as a ``depth`` limit error.
* The parent waits at most until the child's deadline (the caller's deadline or
  the child's own ``timeout``, whichever is first) plus a start-up grace, then
  kills it.  A child that dies without a reply becomes a limit error: ``time``
  when it was killed for time (by us or by ``RLIMIT_CPU``), ``memory`` otherwise
  (address space exhausted, OOM-killed, crashed).
* Values cross the boundary in a tagged JSON form that keeps nested confidences,
  NaN, ±Infinity and lone surrogates.  Bindings must be plain data (numbers,
  strings, booleans, null, arrays, objects, confident values); functions, agents
  and promises cannot cross a process boundary.  A returned function becomes its
  display string, as ``Result.value`` shows it.
* Steps the child used are charged to the caller's budget; exhausting the
  caller's steps or deadline is the caller's own (uncatchable) limit error.
* At most ``MAX_CHILDREN`` isolated children run at once per host process.
"""
from __future__ import annotations

import json
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable

from .errors import PrismError, PrismInternalError, PrismLimitError, PrismRuntimeError, PrismSyntaxError
from .sandbox import DEFAULT_LIMITS, Budget, Limits
from .values import Confident, Function, Promise, display

DEFAULT_MEMORY_MB = 1024
MIN_MEMORY_MB = 256             # below this the interpreter itself cannot start
START_GRACE = 5.0               # seconds allowed for start-up and the reply, beyond the deadline
MAX_CHILDREN = 4                # isolated children running at once in this host process
MAX_VALUE_DEPTH = 1000          # nesting of a value passed between processes
CHILD_STACK = 64 * 1024 * 1024  # stack of the child's evaluation thread
CHILD_TASK_STACK = 16 * 1024 * 1024
CHILD_RECURSION_LIMIT = 20_000  # safe for CHILD_TASK_STACK (~350 bytes of C stack per frame, measured)

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_slots = threading.BoundedSemaphore(MAX_CHILDREN)
_KIND = {"syntax": PrismSyntaxError, "runtime": PrismRuntimeError, "limit": PrismLimitError,
         "internal": PrismInternalError}


# ------------------------------------------------------------------ value transport

class NotPlainData(Exception):
    """A value that cannot cross a process boundary (function, agent, promise)."""

    def __init__(self, path: str, what: str):
        super().__init__(path)
        self.path = path
        self.what = what


def encode(v: Any, *, strict: bool, path: str = "", depth: int = 0) -> Any:
    """Prism value → tagged JSON: arrays ``{"a": [...]}``, objects ``{"o": {...}}``,
    confident values ``{"c": conf, "v": ...}``.  ``strict``: functions and promises
    raise ``NotPlainData``; otherwise they become their display string."""
    t = type(v)
    if t is float or t is str or t is bool or v is None:
        return v
    if t is int:
        return float(v)
    if depth > MAX_VALUE_DEPTH:
        raise PrismRuntimeError("value nested too deeply to pass between processes")
    if t is list:
        return {"a": [encode(x, strict=strict, path=f"{path}[{i}]", depth=depth + 1) for i, x in enumerate(v)]}
    if t is dict:
        return {"o": {k: encode(x, strict=strict, path=f"{path}.{k}", depth=depth + 1) for k, x in v.items()}}
    if t is Confident:
        return {"c": v.conf, "v": encode(v.value, strict=strict, path=path, depth=depth + 1)}
    if strict:
        what = "a function" if isinstance(v, Function) else ("a promise" if isinstance(v, Promise) else "not data")
        raise NotPlainData(path, what)
    return display(v)


def decode(x: Any) -> Any:
    """Tagged JSON → Prism value."""
    t = type(x)
    if t is dict:
        if "a" in x:
            return [decode(y) for y in x["a"]]
        if "o" in x:
            return {k: decode(y) for k, y in x["o"].items()}
        return Confident(decode(x.get("v")), float(x["c"]))
    if t is int:
        return float(x)
    return x


def _dumps(obj: Any) -> bytes:
    # ensure_ascii keeps lone surrogates representable; NaN/Infinity are allowed on both ends
    return json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def error_info(e: PrismError) -> dict:
    return {"kind": e.kind, "message": e.message, "span": list(e.span) if e.span else None,
            "limit": getattr(e, "limit", None), "hint": e.hint,
            "stack": [[name, f, list(s) if s else None] for name, f, s in e.stack[:1000]]}


def rebuild_error(info: dict, filename: str, source: str | None) -> PrismError:
    """The parent-side ``PrismError`` for an error reported by the child."""
    kind = info.get("kind")
    cls = _KIND.get(kind, PrismInternalError)
    span = tuple(info["span"]) if info.get("span") else None
    kw: dict[str, Any] = {"filename": filename, "source": source, "hint": info.get("hint")}
    if cls is PrismLimitError:
        kw["limit"] = info.get("limit") or "steps"
    err = cls(str(info.get("message", "")), span, **kw)
    err.stack = [(str(n), f, tuple(s) if s else None) for n, f, s in info.get("stack") or []]
    return err


# ------------------------------------------------------------------ parent side

class _Outcome:
    """What the child reported (or how it died)."""

    def __init__(self) -> None:
        self.reply: dict | None = None
        self.killed_for_time = False
        self.returncode: int | None = None
        self.too_big = False


def _child_command() -> list[str]:
    code = (f"import sys; sys.path.insert(0, {_ROOT!r}); "
            "from kernel.isolate import _child_main; _child_main()")
    return [sys.executable, "-I", "-B", "-c", code]


def _child_env() -> dict:
    # nothing of the host's environment: the child needs no secrets, paths or tokens
    return {"MALLOC_ARENA_MAX": "2", "LC_ALL": "C.UTF-8"}


def _effective(limits: Limits, parent: Budget | None) -> tuple[Limits, float | None, bool, bool]:
    """(child limits, absolute deadline, steps bounded by the caller, time bounded by the caller)."""
    steps = limits.max_steps
    steps_by_caller = False
    if parent is not None and parent.remaining is not None:
        avail = max(0, parent.remaining + max(parent.n, 0))
        if steps is None or avail < steps:
            steps, steps_by_caller = avail, True
    now = time.monotonic()
    deadline = now + limits.timeout if limits.timeout is not None else None
    time_by_caller = False
    if parent is not None and parent.deadline is not None and (deadline is None or parent.deadline <= deadline):
        deadline, time_by_caller = parent.deadline, True
    return Limits(max_steps=steps, timeout=limits.timeout, max_depth=limits.max_depth,
                  max_items=limits.max_items, max_string=limits.max_string,
                  max_tasks=limits.max_tasks), deadline, steps_by_caller, time_by_caller


def _run_child(request: dict, deadline: float | None, memory_mb: int, budget: Budget | None,
               output: Callable[[str, str], None]) -> _Outcome:
    """Start the child, feed it ``request``, forward its output, wait (bounded)."""
    out = _Outcome()
    payload = _dumps(request)
    max_line = max(memory_mb, MIN_MEMORY_MB) * 1024 * 1024
    if not _acquire_slot(budget, deadline):
        out.killed_for_time = True
        return out
    try:
        try:
            proc = subprocess.Popen(_child_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, env=_child_env(), cwd=_ROOT,
                                    close_fds=True, start_new_session=True)
        except OSError as e:
            raise PrismRuntimeError(f"process isolation is unavailable ({e.strerror or 'cannot start'})") from None
        lines: queue.Queue = queue.Queue()

        def feed() -> None:
            try:
                assert proc.stdin is not None
                proc.stdin.write(payload)
                proc.stdin.close()
            except OSError:
                pass                                   # the child died early; its exit status tells

        def read() -> None:
            assert proc.stdout is not None
            try:
                while True:
                    line = proc.stdout.readline(max_line)
                    if not line:
                        break
                    if not line.endswith(b"\n"):
                        lines.put(b"\x00too-big")
                        break
                    lines.put(line)
            except (OSError, ValueError):
                pass
            finally:
                lines.put(None)
                proc.stdout.close()

        threading.Thread(target=feed, name="prism-isolate-feed", daemon=True).start()
        threading.Thread(target=read, name="prism-isolate-read", daemon=True).start()
        try:
            _wait(proc, lines, out, deadline, budget, output)
        finally:
            if proc.poll() is None:
                _kill(proc)
            out.returncode = proc.returncode
    finally:
        _slots.release()
    return out


def _acquire_slot(budget: Budget | None, deadline: float | None) -> bool:
    """Wait for one of the MAX_CHILDREN slots; False when the deadline passed first."""
    while not _slots.acquire(timeout=0.05):
        if budget is not None:
            budget.check_time()
        if deadline is not None and time.monotonic() > deadline:
            return False
    return True


def _wait(proc: subprocess.Popen, lines: queue.Queue, out: _Outcome, deadline: float | None,
          budget: Budget | None, output: Callable[[str, str], None]) -> None:
    kill_at = deadline + START_GRACE if deadline is not None else None
    while True:
        try:
            line = lines.get(timeout=0.05)
        except queue.Empty:
            line = False
        if line is None:                                   # EOF: the child is finishing or dead
            try:
                proc.wait(timeout=max(0.1, (kill_at - time.monotonic()) if kill_at else 5.0))
            except subprocess.TimeoutExpired:
                out.killed_for_time = True
            return
        if line is not False:
            if line == b"\x00too-big":
                out.too_big = True
                return
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if msg.get("t") == "out":
                output("stderr" if msg.get("s") == "stderr" else "stdout", str(msg.get("x", "")))
            elif msg.get("t") in ("done", "error"):
                out.reply = msg
        if budget is not None:
            try:
                budget.check_time()                         # the caller's deadline or cancellation
            except PrismError:
                _kill(proc)
                raise
        if kill_at is not None and time.monotonic() > kill_at:
            out.killed_for_time = True
            return


def _kill(proc: subprocess.Popen) -> None:
    try:
        proc.kill()
    except OSError:
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _death_error(out: _Outcome, limits: Limits) -> PrismLimitError:
    """The limit error for a child that ended without a reply."""
    rc = out.returncode
    if out.too_big:
        return PrismLimitError("the isolated pattern's result is too large", limit="size")
    if out.killed_for_time or rc == -signal.SIGXCPU:
        t = limits.timeout
        return PrismLimitError(f"time limit exceeded ({t:g} s)" if t is not None else
                               "time limit exceeded (isolated process)", limit="time")
    return PrismLimitError("the isolated pattern ran out of memory or crashed", limit="memory")


def _cpu_limit(deadline: float | None) -> int | None:
    if deadline is None:
        return None
    return int(math.ceil(max(0.0, deadline - time.monotonic()))) + 2


def _request(source: str, bindings: dict, limits: Limits, deadline: float | None, filename: str,
             mode: str, memory_mb: int, eval_depth: int, call_depth: int) -> dict:
    return {"source": source, "bindings": bindings, "filename": filename, "mode": mode,
            "limits": {"max_steps": limits.max_steps, "timeout": limits.timeout,
                       "max_depth": max(1, limits.max_depth - call_depth), "max_items": limits.max_items,
                       "max_string": limits.max_string, "max_tasks": limits.max_tasks},
            "deadline": deadline, "memory_mb": memory_mb, "cpu": _cpu_limit(deadline),
            "eval_depth": eval_depth}


def _encode_bindings(bindings: dict, who: str) -> dict:
    try:
        return {k: encode(v, strict=True, path=k) for k, v in bindings.items()}
    except NotPlainData as e:
        raise PrismRuntimeError(
            f"{who}: with isolation \"process\" bindings must be plain data (numbers, strings, booleans, "
            f"null, arrays, objects); '{e.path}' is {e.what}") from None


def _memory(memory_mb: Any) -> int:
    if memory_mb is None:
        return DEFAULT_MEMORY_MB
    m = int(memory_mb)
    return max(MIN_MEMORY_MB, m)


def run_isolated(rt: Any, source: str, bindings: dict, limits: Limits, filename: str, *,
                 mode: str = "strict", memory_mb: int | None = None) -> Any:
    """``eval_pattern`` with ``isolation: "process"``: the child's Prism value, or a
    catchable error ``{kind, message, line, column}``; the caller's own limits are
    not catchable."""
    from .evalpattern import child_error
    from .sandbox import depth_counter
    parent = rt.budget
    wire = _encode_bindings(bindings, "eval_pattern()")
    child_limits, deadline, steps_by_caller, time_by_caller = _effective(limits, parent)
    mem = min(_memory(memory_mb), DEFAULT_MEMORY_MB)      # options may only lower it
    req = _request(source, wire, child_limits, deadline, filename, mode, mem,
                   getattr(rt, "eval_depth", 0) + 1, depth_counter.depth)
    out = _run_child(req, deadline, mem, parent, rt.output)
    reply = out.reply
    steps = int(reply.get("steps", 0)) if reply else 0
    rt.emit({"event": "eval_pattern_end", "steps": steps, "isolation": "process"})
    if steps:
        parent.charge(steps)                     # may raise the caller's own step limit error
    if reply is None:
        err: PrismError = _death_error(out, limits)
    elif reply["t"] == "done":
        return decode(reply["value"])
    else:
        err = rebuild_error(reply["error"], filename, source)
    if isinstance(err, PrismLimitError):
        if err.limit == "time" and time_by_caller:          # the caller's deadline: not catchable
            raise PrismLimitError(f"time limit exceeded ({parent.limits.timeout:g} s)",
                                  limit="time").owned(parent)
        if err.limit == "steps" and steps_by_caller:
            raise PrismLimitError(f"step limit exceeded ({parent.limits.max_steps:,} steps)",
                                  limit="steps").owned(parent)
        raise child_error(err, "limit") from None
    if isinstance(err, (PrismSyntaxError, PrismRuntimeError)):
        raise child_error(err) from None
    raise err


def evaluate_isolated(source: str, *, limits: Limits | None = None, inputs: dict | None = None,
                      filename: str = "<input>", memory_mb: int | None = DEFAULT_MEMORY_MB,
                      mode: str = "strict", output: Callable[[str, str], None] | None = None) -> Any:
    """Like ``kernel.evaluate``, but in a separate process under OS resource limits
    (``memory_mb`` of address space, CPU time from ``limits.timeout``).  ``inputs``
    must be JSON-compatible data.  Returns ``Result``; raises the same ``PrismError``
    kinds as ``evaluate`` (a killed child: ``PrismLimitError`` with limit
    ``memory`` or ``time``)."""
    from . import Result
    from .runtime import _default_output
    from .values import from_host, to_host
    if not isinstance(source, str):
        raise PrismSyntaxError("source must be a string", filename=filename)
    if mode not in ("strict", "legacy"):
        raise ValueError("mode must be 'strict' or 'legacy'")
    limits = limits or DEFAULT_LIMITS
    prism_inputs = {}
    for k, v in (inputs or {}).items():
        if not isinstance(k, str) or not k.isidentifier():
            raise PrismRuntimeError(f"invalid input name {k!r}", filename=filename)
        prism_inputs[k] = from_host(v)
    wire = _encode_bindings(prism_inputs, "evaluate_isolated()")
    child_limits, deadline, _, _ = _effective(limits, None)
    mem = _memory(memory_mb)
    req = _request(source, wire, child_limits, deadline, filename, mode, mem, 0, 0)
    out = _run_child(req, deadline, mem, None, output or _default_output)
    if out.reply is None:
        err: PrismError = _death_error(out, limits)
        err.locate(None, filename, source)
        raise err
    if out.reply["t"] == "error":
        raise rebuild_error(out.reply["error"], filename, source)
    raw = decode(out.reply["value"])
    conf = raw.conf if type(raw) is Confident else None
    return Result(to_host(raw), conf, raw)


# ------------------------------------------------------------------ child side

def _apply_os_limits(memory_mb: int, cpu: int | None) -> None:
    import resource

    def lower(which: int, soft: int, hard: int) -> None:
        _, cur_hard = resource.getrlimit(which)
        if cur_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, cur_hard), min(hard, cur_hard)
        try:
            resource.setrlimit(which, (soft, hard))
        except (ValueError, OSError):
            pass

    lower(resource.RLIMIT_CORE, 0, 0)
    lower(resource.RLIMIT_FSIZE, 0, 0)
    if cpu is not None:
        lower(resource.RLIMIT_CPU, cpu, cpu + 1)        # SIGXCPU first, SIGKILL a second later
    lower(resource.RLIMIT_AS, memory_mb * 1024 * 1024, memory_mb * 1024 * 1024)


def _child_main() -> None:
    """Entry point of the isolated process (see the module docstring)."""
    proto = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    lock = threading.Lock()

    def send(msg: dict) -> None:
        data = _dumps(msg) + b"\n"
        with lock:
            proto.write(data)
            proto.flush()

    try:
        req = json.loads(sys.stdin.buffer.read())
        import kernel
        from kernel import runtime as _rt
        kernel.parse("0", "<warm-up>")                    # load the grammar before the limits apply
        _rt.STACK_SIZE = CHILD_STACK
        sys.setrecursionlimit(CHILD_RECURSION_LIMIT)
        _apply_os_limits(int(req["memory_mb"]), req.get("cpu"))
        _child_run(req, send)
    except MemoryError:
        _send_quietly(send, {"t": "error", "steps": 0,
                             "error": {"kind": "limit", "limit": "memory", "message": "out of memory"}})
    except BaseException as e:  # noqa: BLE001 - reported without host details
        _send_quietly(send, {"t": "error", "steps": 0, "error": {
            "kind": "internal", "message": f"internal error in the isolated process ({type(e).__name__})"}})
    finally:
        try:
            proto.close()
        except (OSError, MemoryError):
            pass
    os._exit(0)


def _send_quietly(send: Callable[[dict], None], msg: dict) -> None:
    try:
        send(msg)
    except (OSError, MemoryError, ValueError):
        os._exit(3)


def _child_run(req: dict, send: Callable[[dict], None]) -> None:
    from . import _finish, compile_program, new_runtime, run_guarded
    from . import runtime as _rt
    source, filename = req["source"], req["filename"]
    lim = req["limits"]
    limits = Limits(max_steps=lim["max_steps"], timeout=lim["timeout"], max_depth=int(lim["max_depth"]),
                    max_items=int(lim["max_items"]), max_string=int(lim["max_string"]),
                    max_tasks=int(lim["max_tasks"]))
    budget = Budget(limits)
    if req.get("deadline") is not None:
        budget.deadline = float(req["deadline"])          # CLOCK_MONOTONIC is shared by all processes

    def output(stream: str, text: str) -> None:
        send({"t": "out", "s": stream, "x": text})

    def go() -> Any:
        # spawned tasks get smaller stacks than the program's own thread
        _rt.STACK_SIZE = CHILD_TASK_STACK
        rt = new_runtime(limits=limits, mode=req.get("mode", "strict"), filename=filename, source=source,
                         output=output, budget=budget)
        rt.eval_depth = int(req.get("eval_depth", 0))
        rt.allow_file_imports = False
        for name, value in req["bindings"].items():
            rt.globals[name] = rt.freeze(decode(value))
        run, _ = compile_program(source, rt, filename=filename)
        res = _finish(rt, run())
        return encode(res.raw, strict=False)

    try:
        value = run_guarded(go, filename, source)
        msg: dict = {"t": "done", "value": value, "steps": budget.consumed}
    except PrismError as e:
        msg = {"t": "error", "error": error_info(e), "steps": budget.consumed}
    _send_quietly(send, msg)


if __name__ == "__main__":          # ``python -m kernel.isolate`` reads a request on stdin
    _child_main()
