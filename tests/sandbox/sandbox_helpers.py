"""Shared helpers of the sandbox attack catalogue (tests/sandbox/test_*.py).

``attack(source, kind, limit=...)`` runs a program under tight limits and asserts
that it ends in the expected ``PrismError`` kind (and ``.limit``), within a wall
time bound (a generous multiple of the limit, measured with ``time.monotonic``),
and that neither the message, ``str(err)`` nor anything printed shows host
internals.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import kernel
from kernel import Limits, PrismError, PrismLimitError, PrismRuntimeError, PrismSyntaxError

TIGHT = Limits(max_steps=200_000, timeout=2.0, max_depth=200, max_items=100_000, max_string=1_000_000,
               max_tasks=64)
BOUND = 10.0      # seconds; 5 × the 2 s timeout of TIGHT
UNTIMED = Limits(max_steps=200_000, timeout=3 * BOUND, max_depth=200, max_items=100_000, max_string=1_000_000,
                 max_tasks=64)

# Text that would mean a host detail leaked into a Prism-visible string.
LEAKS = ("Traceback", 'File "', "/work/", "0x", "<function", "kernel.", "<built-in", "object at",
         "<class", "site-packages", "RecursionError", "NoneType", "<bound method", ".py\"", ".py:")

KINDS = {"syntax": PrismSyntaxError, "runtime": PrismRuntimeError, "limit": PrismLimitError}


@dataclass
class Outcome:
    source: str
    elapsed: float
    result: Any = None
    error: PrismError | None = None
    printed: list[str] = field(default_factory=list)


def run(source: str, *, limits: Limits = TIGHT, mode: str = "strict", inputs: dict | None = None,
        isolated: bool = False, memory_mb: int | None = None) -> Outcome:
    """Evaluate ``source``; only PrismErrors may come out."""
    printed: list[str] = []

    def output(stream: str, text: str) -> None:
        printed.append(text)

    start = time.monotonic()
    try:
        if isolated:
            from kernel.isolate import evaluate_isolated
            kw: dict[str, Any] = {} if memory_mb is None else {"memory_mb": memory_mb}
            result = evaluate_isolated(source, limits=limits, inputs=inputs, mode=mode, output=output, **kw)
        else:
            result = kernel.evaluate(source, limits=limits, mode=mode, inputs=inputs, output=output)
    except PrismError as e:
        return Outcome(source, time.monotonic() - start, error=e, printed=printed)
    return Outcome(source, time.monotonic() - start, result=result, printed=printed)


def assert_clean(text: Any, what: str = "text") -> None:
    """No host internals in a Prism-visible string (or in a value's strings)."""
    for s in _strings(text):
        for marker in LEAKS:
            assert marker not in s, f"{what} leaks host internals ({marker!r}): {s[:300]!r}"


def _strings(v: Any, depth: int = 0) -> list[str]:
    if depth > 50:
        return []
    if isinstance(v, str):
        return [v]
    if isinstance(v, dict):
        return [s for k, x in v.items() for s in (_strings(k, depth + 1) + _strings(x, depth + 1))]
    if isinstance(v, (list, tuple)):
        return [s for x in v for s in _strings(x, depth + 1)]
    return []


def attack(source: str, kind: str, limit: str | None = None, *, within: float = BOUND,
           message: str | None = None, **kw: Any) -> PrismError:
    """Run an attack; it must end in ``kind`` (``limit`` for limit errors) within ``within`` s.

    An attack expected to hit a limit other than time runs with TIGHT's other limits but
    a wall-clock limit above ``within`` (unless ``limits`` is given), so a slow, loaded
    machine cannot turn "step limit" into "time limit": the step, depth and size limits
    are deterministic, the clock is not."""
    if limit not in (None, "time") and "limits" not in kw:
        kw["limits"] = UNTIMED
    out = run(source, **kw)
    assert out.error is not None, (f"expected a {kind} error, but the program returned "
                                   f"{out.result.value!r:.200} after {out.elapsed:.2f}s")
    err = out.error
    assert err.kind == kind, f"expected a {kind} error, got {err.kind}: {err.message}"
    assert isinstance(err, KINDS[kind])
    if kind == "limit":
        assert not isinstance(err, PrismRuntimeError)
        if limit is not None:
            assert err.limit == limit, f"expected limit {limit!r}, got {err.limit!r}: {err.message}"
    if message is not None:
        assert message in err.message, f"expected {message!r} in {err.message!r}"
    assert out.elapsed < within, f"took {out.elapsed:.2f}s (bound {within}s)"
    check_error_clean(err)
    assert_clean(out.printed, "printed output")
    return err


def check_error_clean(err: PrismError) -> None:
    assert_clean(err.message, "error message")
    assert_clean(str(err), "formatted error")


def returns(source: str, *, within: float = BOUND, **kw: Any) -> Any:
    """Run a program that must succeed; returns its ``Result`` after the leak checks."""
    out = run(source, **kw)
    if out.error is not None:
        raise AssertionError(f"unexpected {out.error.kind} error: {out.error.message}")
    assert out.elapsed < within, f"took {out.elapsed:.2f}s (bound {within}s)"
    assert_clean(out.result.value, "result value")
    assert_clean(out.printed, "printed output")
    return out.result
