"""Prism errors: one hierarchy and one formatter.

Consumes spans (line, column, end_line, end_column; 1-based) and source text;
produces messages with ``file:line:col``, the source line and a caret.
"""
from __future__ import annotations

from typing import Any


class PrismError(Exception):
    """Base of every error that leaves the kernel."""

    kind = "error"

    def __init__(self, message: str, span: tuple | None = None, *, filename: str | None = None,
                 source: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.span = span
        self.filename = filename
        self.source = source
        self.hint = hint
        self.stack: list[tuple[str, str | None, tuple | None]] = []   # (function, filename, span)

    @property
    def line(self) -> int | None:
        return self.span[0] if self.span else None

    @property
    def column(self) -> int | None:
        return self.span[1] if self.span else None

    def locate(self, span: tuple | None, filename: str | None, source: str | None) -> "PrismError":
        """Fill in a location if the error has none yet (first one wins)."""
        if self.span is None and span is not None:
            self.span = span
        if self.filename is None:
            self.filename = filename
            if self.source is None:
                self.source = source
        return self

    def __str__(self) -> str:
        return format_error(self)


class PrismSyntaxError(PrismError):
    """Tokenizer, parser and static errors found before the program runs."""

    kind = "syntax"

    def __init__(self, message: str, span: tuple | None = None, **kw: Any):
        super().__init__(message, span, **kw)
        self.errors: list[PrismSyntaxError] = [self]


class PrismStaticError(PrismSyntaxError):
    """A mistake found by the resolver before running (undefined name, assignment
    to const, misplaced return/break …).  ``evaluate`` reports these at run time,
    as the reference does; ``prism check`` lists them all up front."""

    kind = "static"


class PrismRuntimeError(PrismError):
    """Errors raised while evaluating; catchable by Prism ``try/catch``."""

    kind = "runtime"

    def __init__(self, message: str, span: tuple | None = None, *, value: Any = None, **kw: Any):
        super().__init__(message, span, **kw)
        self.value = value          # the thrown Prism value, for ``throw``


class PrismLimitError(PrismError):
    """A sandbox limit was exhausted (steps, time, depth, size, tasks, memory).

    Not a PrismRuntimeError: the program that exhausted its own budget cannot catch it.
    """

    kind = "limit"

    def __init__(self, message: str, span: tuple | None = None, *, limit: str = "steps", **kw: Any):
        super().__init__(message, span, **kw)
        self.limit = limit


class PrismCancelled(PrismLimitError):
    """The run was cancelled from outside (e.g. a service's cancel request)."""

    kind = "cancelled"


def format_error(err: PrismError, source: str | None = None) -> str:
    """Render ``message``, ``--> file:line:col``, the source line with a caret, and
    the Prism traceback (innermost call last)."""
    label = {"syntax": "syntax error", "static": "error", "runtime": "runtime error",
             "limit": "limit exceeded", "cancelled": "cancelled"}.get(err.kind, "error")
    out = [f"{label}: {err.message}"]
    span = err.span
    src = source if source is not None else err.source
    fname = err.filename or "<input>"
    if span:
        line, col = span[0], span[1]
        out.append(f"  --> {fname}:{line}:{col}")
        text = _source_line(src, line)
        if text is not None:
            width = 1
            if len(span) >= 4 and span[2] == line and span[3] > col:
                width = span[3] - col
            width = max(1, min(width, max(1, len(text) - col + 1)))
            gutter = str(line)
            pad = " " * len(gutter)
            shown = text.replace("\t", " ")
            out.append(f"{pad} |")
            out.append(f"{gutter} | {shown}")
            out.append(f"{pad} | {' ' * (col - 1)}{'^' * width}")
    if err.hint:
        out.append(f"  = hint: {err.hint}")
    if err.stack:
        # stack entries are (callee, file, call site), innermost first; each call site
        # lies in the previous callee; the error itself lies in the innermost callee
        frames = list(reversed(err.stack))
        out.append("traceback (most recent call last):")
        where_in = "<program>"
        for name, frame_file, frame_span in frames:
            loc = f"{frame_file or fname}:{frame_span[0]}:{frame_span[1]}" if frame_span else (frame_file or fname)
            out.append(f"  {loc} in {where_in}")
            where_in = name
        if span:
            out.append(f"  {fname}:{span[0]}:{span[1]} in {where_in}")
    return "\n".join(out)


def _source_line(src: str | None, line: int) -> str | None:
    if not src or line < 1:
        return None
    lines = src.split("\n")
    if line > len(lines):
        return None
    return lines[line - 1].rstrip("\r")


class PrismInternalError(PrismError):
    """A bug in the interpreter, never expected; reported without host internals."""

    kind = "internal"
