"""Attack catalogue: odd Unicode — bidi overrides, NUL, lone surrogates, emoji,
BOM, line separators — in strings and identifiers.  Strings hold them as data;
identifiers reject them with a syntax error; nothing becomes an internal error."""
from __future__ import annotations

import pytest
from sandbox_helpers import attack, returns, run

RLO, PDF, ZWJ, BOM = "\u202e", "\u202c", "\u200d", "\ufeff"

STRINGS = {
    "rtl-override": (f'"abc{RLO}def{PDF}".length', 8),
    "rtl-override-escape": ('"\\u202eabc".length', 4),
    "nul-escape": ('"a\\u0000b".length', 3),
    "nul-raw": ('"a\x00b".length', 3),
    "lone-high-surrogate": ('"\\ud800".length', 1),
    "lone-low-surrogate": ('"\\udc00x".length', 2),
    "surrogate-pair-escapes": ('"\\ud83d\\ude00".length', 2),
    "emoji-length": ('"😀".length', 2),
    "emoji-family-zwj": (f'"👨{ZWJ}👩{ZWJ}👧".length', 8),
    "flag": ('"🇫🇷".length', 4),
    "combining-marks": ('"e\u0301\u0301\u0301".length', 4),
    "lone-surrogate-concat": ('let s = "\\ud800"; (s + s).length', 2),
    "lone-surrogate-json": ('JSON.parse(JSON.stringify("\\ud800")).length', 1),
    "json-escape-surrogate": ('JSON.parse("\\"\\\\ud800\\"").length', 1),
    "lone-surrogate-upper": ('"\\ud800a".toUpperCase().length', 2),
    "lone-surrogate-split": ('"\\ud800".split("").length', 1),
    "lone-surrogate-padStart": ('"\\ud800".padStart(3, "\\udc00").length', 3),
    "emoji-repeat": ('"😀".repeat(3).length', 6),
    "bom-in-string": (f'"{BOM}x".length', 2),
    "line-separator-in-string": ('"a\u2028b".length', 3),
    "interpolate-surrogate": ('let s = "\\ud800"; "${s}!".length', 2),
    "object-key-surrogate": ('let o = {}; o["\\ud800"] = 1; Object.keys(o)[0].length', 1),
}


@pytest.mark.parametrize("source,expected", list(STRINGS.values()), ids=list(STRINGS))
def test_odd_unicode_in_strings_is_data(source: str, expected) -> None:
    assert returns(source).value == expected


IDENTIFIERS = {
    "rtl-override": f"let a{RLO}b = 1",
    "rtl-only": f"let {RLO} = 1",
    "nul": "let a\x00b = 1",
    "lone-surrogate": "let a\ud800 = 1",
    "emoji": "let 😀 = 1",
    "zero-width-joiner": f"let a{ZWJ}b = 1",
    "bom-inside": f"let a{BOM}b = 1",
    "nul-between-statements": "1;\x00 2",
    "unicode-escape-in-name": "let \\u0061 = 1",
}


@pytest.mark.parametrize("source", list(IDENTIFIERS.values()), ids=list(IDENTIFIERS))
def test_odd_unicode_in_identifiers_is_a_syntax_error(source: str) -> None:
    err = attack(source, "syntax")
    assert err.line == 1


@pytest.mark.parametrize("text", ["\ud800", "a\udfffb", "\x00", RLO + "x", "😀", "\ud83d"],
                         ids=["high-surrogate", "low-surrogate", "nul", "rtl", "emoji", "half-emoji"])
def test_printing_odd_unicode(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    # the default output sink (real stdout) must cope with text it cannot encode
    import kernel
    escaped = text.encode("unicode_escape").decode("ascii").replace('"', '\\"')
    r = kernel.evaluate(f'print("{escaped}"); console.error("{escaped}"); 1')
    assert r.value == 1
    out = capsys.readouterr()
    assert out.out.endswith("\n") and out.err.endswith("\n")


def test_lone_surrogate_input_round_trips() -> None:
    r = returns("input + input", inputs={"input": "\ud800"})
    assert r.value == "\ud800\ud800"


def test_error_message_with_odd_unicode_is_clean() -> None:
    err = attack(f'let s = "{RLO}\\ud800"; null[s]', "runtime")
    assert "\\x" not in err.message


def test_bom_at_start_of_source() -> None:
    out = run(BOM + "1 + 1")
    assert (out.error is None and out.result.value == 2) or out.error.kind == "syntax"


def test_huge_unicode_string_counts_utf16_units_against_nothing_but_max_string() -> None:
    assert returns('"😀".repeat(400000).length').value == 800_000
