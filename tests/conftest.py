"""Golden Prism programs: ``tests/golden/**/*.prism`` collected by one pytest hook.

Format (also in ``tests/golden/README.md``)
-------------------------------------------

A file holds one behaviour.  It may contain several *cases* separated by lines
consisting only of ``// ---``.  Each case is run with a fresh interpreter,
padded with blank lines so that line numbers in errors are line numbers of the
file.  Expectations are comments anywhere in the case (usually at the end of
the line they are about)::

    // expect: <JSON>            the program's result value (JSON; NaN/Infinity allowed)
    // expect-confidence: 0.8    result confidence (±1e-6); `none` = no confidence;
                                 `any` = not checked.  Default when `expect:` is
                                 given: `none` (a stray confidence fails the test)
    // expect-output: <text>     one line printed on stdout (print, console.log), in order
    // expect-stderr: <text>     one line printed on stderr (console.warn/error), in order
    // expect-error: KIND TEXT   evaluation raises KIND (syntax|runtime|limit|cancelled)
                                 and its message contains TEXT (case-sensitive; TEXT optional)
    // expect-error-at: L:C      ... at line L, column C (1-based, file coordinates)
    // mode: legacy              run in the Parallax-era dialect (default: strict)
    // limits: {"max_steps": 1000}   Limits(...) keyword arguments as JSON
    // input: <JSON>             bound to the global `input`
    // clock: virtual|real       deterministic virtual time (kernel.clock), or the wall
                                 clock; default: virtual under primitives/, real elsewhere

Rules (jlox / starlark style):

* Printed output must be exactly the listed ``expect-output`` lines (none listed:
  nothing may be printed); the same for ``expect-stderr``.
* An expected error that does not occur fails; an error that was not expected fails.
* ``expect`` and ``expect-error`` exclude each other.  A case with neither only has
  to run without error (and print what it lists).
* Each case runs with ``timeout=10`` s unless ``limits`` says otherwise.

Files whose name starts with ``_`` are helpers (e.g. modules imported by a
golden file) and are not collected.  Test ids are ``path::L<line>``, the line
where the case starts.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

GOLDEN_DIR = Path(__file__).parent / "golden"
SEPARATOR = re.compile(r"^\s*//\s*---\s*$")
DIRECTIVE = re.compile(
    r"//\s*(expect-confidence|expect-output|expect-stderr|expect-error-at|expect-error|expect"
    r"|mode|limits|input|clock):(.*)$")
ERROR_KINDS = ("syntax", "runtime", "limit", "cancelled")
CONF_TOL = 1e-6
DEFAULT_TIMEOUT = 10.0


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    if (file_path.suffix == ".prism" and GOLDEN_DIR in file_path.parents
            and not file_path.name.startswith("_")):
        return GoldenFile.from_parent(parent, path=file_path)
    return None


# ------------------------------------------------------------------ parsing a golden file


class GoldenFormatError(Exception):
    """The golden file itself is malformed."""


@dataclass
class Case:
    path: Path
    start: int  # 1-based line where the case's text starts
    source: str  # padded with start-1 newlines
    expect: list[Any] = field(default_factory=list)
    confidence: str | None = None  # raw directive text
    output: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    error: tuple[str, str] | None = None
    error_at: tuple[int, int] | None = None
    mode: str = "strict"
    limits: dict[str, Any] = field(default_factory=dict)
    input: Any = None
    has_input: bool = False
    clock: str = "real"


def split_cases(path: Path, text: str) -> list[Case]:
    lines = text.split("\n")
    cases: list[Case] = []
    start = 0
    for i, line in enumerate(lines + ["// ---"]):
        if SEPARATOR.match(line):
            chunk = lines[start:i]
            if any(x.strip() for x in chunk):
                cases.append(parse_case(path, start + 1, chunk))
            start = i + 1
    return cases


def parse_case(path: Path, start: int, chunk: list[str]) -> Case:
    case = Case(path, start, "\n" * (start - 1) + "\n".join(chunk))
    if (GOLDEN_DIR / "primitives") in path.parents:
        case.clock = "virtual"     # primitives are tested on deterministic time
    for offset, line in enumerate(chunk):
        m = DIRECTIVE.search(line)
        if not m:
            continue
        key, arg = m.group(1), m.group(2)
        arg = arg[1:] if arg.startswith(" ") else arg
        where = f"{path.name}:{start + offset}"
        try:
            _apply(case, key, arg.rstrip(), where)
        except (ValueError, json.JSONDecodeError) as e:
            raise GoldenFormatError(f"{where}: bad `{key}` directive: {e}") from None
    if case.expect and case.error:
        raise GoldenFormatError(f"{path.name}:{start}: a case cannot have both expect and expect-error")
    if len(case.expect) > 1:
        raise GoldenFormatError(f"{path.name}:{start}: more than one `expect:` in one case")
    return case


def _apply(case: Case, key: str, arg: str, where: str) -> None:
    if key == "expect":
        case.expect.append(json.loads(arg))
    elif key == "expect-confidence":
        if arg not in ("none", "any"):
            float(arg)
        case.confidence = arg
    elif key == "expect-output":
        case.output.append(arg)
    elif key == "expect-stderr":
        case.stderr.append(arg)
    elif key == "expect-error":
        kind, _, text = arg.partition(" ")
        if kind not in ERROR_KINDS:
            raise ValueError(f"kind must be one of {', '.join(ERROR_KINDS)}")
        case.error = (kind, text.strip())
    elif key == "expect-error-at":
        line, _, col = arg.partition(":")
        case.error_at = (int(line), int(col))
    elif key == "mode":
        if arg not in ("strict", "legacy"):
            raise ValueError("mode is strict or legacy")
        case.mode = arg
    elif key == "limits":
        case.limits = json.loads(arg)
    elif key == "input":
        case.input = json.loads(arg)
        case.has_input = True
    elif key == "clock":
        if arg not in ("virtual", "real"):
            raise ValueError("clock is virtual or real")
        case.clock = arg


# ------------------------------------------------------------------ comparison


def values_equal(expected: Any, got: Any) -> bool:
    """JSON-style equality: numbers within 1e-9, booleans never equal numbers,
    object key order ignored, list order significant (as conformance/run.py)."""
    if expected is None:
        return got is None
    if isinstance(expected, bool) or isinstance(got, bool):
        return type(expected) is type(got) and expected == got
    if isinstance(expected, (int, float)):
        if not isinstance(got, (int, float)):
            return False
        if math.isnan(expected) or math.isnan(got):
            return math.isnan(expected) and math.isnan(got)
        if math.isinf(expected) or math.isinf(got):
            return expected == got
        return math.isclose(expected, got, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(expected, str):
        return isinstance(got, str) and expected == got
    if isinstance(expected, list):
        return (isinstance(got, (list, tuple)) and len(got) == len(expected)
                and all(values_equal(e, g) for e, g in zip(expected, got, strict=True)))
    if isinstance(expected, dict):
        return (isinstance(got, dict) and set(got) == set(expected)
                and all(values_equal(v, got[k]) for k, v in expected.items()))
    return bool(expected == got)


# ------------------------------------------------------------------ running a case


class GoldenFailure(Exception):
    pass


def run_case(case: Case) -> None:
    import kernel

    printed: dict[str, list[str]] = {"stdout": [], "stderr": []}

    def output(stream: str, text: str) -> None:
        printed["stderr" if stream == "stderr" else "stdout"].extend(text.split("\n"))

    limits = dict(case.limits)
    limits.setdefault("timeout", DEFAULT_TIMEOUT)
    inputs = {"input": case.input} if case.has_input else None
    problems: list[str] = []
    from kernel.clock import VirtualClock
    clock = VirtualClock() if case.clock == "virtual" else None
    try:
        result = kernel.evaluate(case.source, filename=str(case.path), inputs=inputs,
                                 limits=kernel.Limits(**limits), mode=case.mode, output=output, clock=clock)
        error = None
    except kernel.PrismError as e:
        result, error = None, e

    if error is None and case.error:
        problems.append(f"expected a {case.error[0]} error containing {case.error[1]!r}, "
                        f"but the program returned {result.value!r} (confidence {result.confidence})")
    elif error is not None and not case.error:
        problems.append("unexpected error:\n" + kernel.format_error(error))
    elif error is not None and case.error:
        problems += _check_error(case, error, kernel)
    if result is not None and case.expect:
        problems += _check_result(case, result)
    problems += _check_lines("stdout", case.output, printed["stdout"])
    problems += _check_lines("stderr", case.stderr, printed["stderr"])
    if problems:
        raise GoldenFailure("\n".join(problems))


def _check_error(case: Case, error: Any, kernel: Any) -> list[str]:
    kind, text = case.error  # type: ignore[misc]
    out: list[str] = []
    if error.kind != kind or text not in error.message:
        out.append(f"expected a {kind} error containing {text!r}, got:\n" + kernel.format_error(error))
    if case.error_at is not None and (error.line, error.column) != case.error_at:
        out.append(f"expected the error at {case.error_at[0]}:{case.error_at[1]}, "
                   f"got {error.line}:{error.column}")
    return out


def _check_result(case: Case, result: Any) -> list[str]:
    out: list[str] = []
    expected = case.expect[0]
    if not values_equal(expected, result.value):
        out.append(f"value: expected {json.dumps(expected)}, got {result.value!r}")
    conf = case.confidence or "none"
    if conf == "none" and result.confidence is not None:
        out.append(f"confidence: expected none, got {result.confidence}")
    elif conf not in ("none", "any"):
        if result.confidence is None or abs(result.confidence - float(conf)) > CONF_TOL:
            out.append(f"confidence: expected {conf}, got {result.confidence}")
    return out


def _check_lines(stream: str, expected: list[str], got: list[str]) -> list[str]:
    exp = [x.rstrip() for x in expected]
    actual = [x.rstrip() for x in got]
    if exp == actual:
        return []
    return [f"{stream}: expected lines {exp!r}, got {actual!r}"]


# ------------------------------------------------------------------ pytest nodes


class GoldenFile(pytest.File):
    def collect(self):  # type: ignore[no-untyped-def]
        text = self.path.read_text(encoding="utf-8")
        try:
            cases = split_cases(self.path, text)
        except GoldenFormatError as e:
            raise self.CollectError(str(e)) from None
        for case in cases:
            yield GoldenItem.from_parent(self, name=f"L{case.start}", case=case)


class GoldenItem(pytest.Item):
    def __init__(self, *, case: Case, **kw: Any) -> None:
        super().__init__(**kw)
        self.case = case

    def runtest(self) -> None:
        run_case(self.case)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, GoldenFailure):
            src = self.case.source.lstrip("\n")
            numbered = "\n".join(f"{self.case.start + i:4} | {line}"
                                 for i, line in enumerate(src.split("\n")))
            return f"{self.case.path.name}:{self.case.start}\n{numbered}\n\n{excinfo.value}"
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.case.start - 1, f"{self.path.name}:{self.case.start}"
