"""The golden-file harness itself (tests/conftest.py): case splitting, directives,
and that every kind of mismatch really fails."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("golden_harness", Path(__file__).parent / "conftest.py")
assert _spec is not None and _spec.loader is not None
harness = importlib.util.module_from_spec(_spec)
sys.modules["golden_harness"] = harness  # dataclasses look their module up while building
_spec.loader.exec_module(harness)

HERE = Path("/virtual/example.prism")


def cases(text: str):
    return harness.split_cases(HERE, text)


def test_split_keeps_file_line_numbers() -> None:
    got = cases("1 // expect: 1\n// ---\n\n2 // expect: 2\n// ---\n// ---\n3\n")
    assert [c.start for c in got] == [1, 3, 7]
    assert got[1].source.split("\n")[3] == "2 // expect: 2"  # padded: line 4 is line 4
    assert [c.expect for c in got] == [[1], [2], []]


def test_directives() -> None:
    (case,) = cases(
        '// mode: legacy\n// limits: {"max_steps": 10}\n// input: {"a": [1]}\n'
        'print(1) // expect-output: 1\n// expect-output:\n// expect-stderr: warn\n'
        "x // expect-error: runtime Undefined variable: x\n// expect-error-at: 7:1\n")
    assert case.mode == "legacy"
    assert case.limits == {"max_steps": 10}
    assert case.has_input and case.input == {"a": [1]}
    assert case.output == ["1", ""]
    assert case.stderr == ["warn"]
    assert case.error == ("runtime", "Undefined variable: x")
    assert case.error_at == (7, 1)


@pytest.mark.parametrize("text", [
    "1 // expect: {not json}",
    "1 // expect-error: crash something",
    "1 // expect: 1\n2 // expect-error: runtime x",
    "1 // expect: 1\n// expect: 2",
    "1 // expect-confidence: high",
    "1 // mode: loose",
])
def test_malformed_golden_files_are_rejected(text: str) -> None:
    with pytest.raises(harness.GoldenFormatError):
        cases(text)


def test_values_equal_is_json_strict() -> None:
    eq = harness.values_equal
    assert eq(1, 1.0) and eq(0.3, 0.1 + 0.2) and eq({"a": [1]}, {"a": [1.0]})
    assert not eq(True, 1) and not eq(1, True) and not eq(None, 0) and not eq([1], [1, 2])
    assert eq(float("inf"), float("inf")) and not eq(float("inf"), 1e308)


GOOD = [
    '"x" ~> 0.5 // expect: "x"\n// expect-confidence: 0.5',
    "print(1, 2) // expect-output: 1 2",
    "1 / 0 // expect-error: runtime Division by zero\n// expect-error-at: 1:1",
    '// limits: {"max_steps": 100}\nwhile (true) { } // expect-error: limit',
    "input.a // expect: 3\n// input: {\"a\": 3}",
    "1 ~> 0.5 // expect: 1\n// expect-confidence: any",
]

BAD = [
    "1 + 1 // expect: 3",                                    # wrong value
    "1 ~> 0.5 // expect: 1",                                 # confidence not expected
    "1 // expect: 1\n// expect-confidence: 0.5",             # confidence missing
    'print("extra")\n1 // expect: 1',                         # unexpected output
    "1 // expect-output: missing",                            # missing output
    "1 // expect-error: runtime boom",                       # error expected, none raised
    "1 / 0 // expect: 1",                                    # unexpected error
    "1 / 0 // expect-error: syntax",                         # wrong kind
    "1 / 0 // expect-error: runtime Modulo",                 # wrong message
    "1 / 0 // expect-error: runtime Division\n// expect-error-at: 2:1",   # wrong position
    "let x = 1\nx = 2 // expect: 2\n// mode: legacy\n// expect-stderr: nothing printed",
]


@pytest.mark.parametrize("text", GOOD)
def test_matching_cases_pass(text: str) -> None:
    for case in cases(text):
        harness.run_case(case)


@pytest.mark.parametrize("text", BAD)
def test_mismatches_fail(text: str) -> None:
    (case,) = cases(text)
    with pytest.raises(harness.GoldenFailure):
        harness.run_case(case)
