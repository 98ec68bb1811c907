"""The README's tour of the language runs and does what its comments say."""

from __future__ import annotations

import re
from pathlib import Path

import kernel

README = Path(__file__).resolve().parents[1] / "README.md"


def tour() -> str:
    blocks = re.findall(r"```prism\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1, "the README has one Prism tour block"
    return blocks[0]


def run(source: str) -> tuple[kernel.Result, list[str]]:
    printed: list[str] = []
    result = kernel.evaluate(source, filename="README.md", output=lambda stream, text: printed.append(text))
    return result, printed


def test_the_tour_ends_as_its_last_comment_says() -> None:
    result, printed = run(tour())
    assert (result.value, result.confidence) == ("act on 50", 0.8)
    assert printed == ["a 1", "b 2", "caught 7"]


def test_the_values_the_tour_comments_promise() -> None:
    result, _ = run(tour() + ";\n[c, sum, <~ sum, safe, total, piped, label, score({value: 3}), greeting]")
    assert result.value == [0.8, 50, 0.8, 0, 12, 11, "probably big", 3, "Hello, Ada!"]
