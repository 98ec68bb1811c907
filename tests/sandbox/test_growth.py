"""Attack catalogue: exponential string, array and object growth ends in a size limit
error (checked before allocating), within the time bound."""
from __future__ import annotations

import pytest
from sandbox_helpers import TIGHT, attack, returns

from kernel import Limits

S100K = 'let s = "x".repeat(100000); '
ELEVEN = "[s, s, s, s, s, s, s, s, s, s, s]"

GROWTH = {
    "string-doubling-concat": 'let s = "x"; while (true) { s = s + s }',
    "string-doubling-compound": 'let s = "x"; while (true) { s += s }',
    "string-concat-method": 'let s = "x"; while (true) { s = s.concat(s, s) }',
    "string-repeat": '"ab".repeat(2 ** 40)',
    "string-repeat-infinity": '"ab".repeat(10 ** 400)',
    "string-padStart": '"x".padStart(1e9)',
    "string-padEnd-fill": '"x".padEnd(2e6, "ab")',
    "string-replaceAll": S100K + 's.replaceAll("x", "xxxxxxxxxxxx")',
    "string-interpolation": 'let s = "x".repeat(600000); "${s}${s}"',
    "string-raw-interpolation": 'let s = "x".repeat(600000); ```${s}${s}```',
    "array-join": 'range(100000).join("x".repeat(100))',
    "array-join-strings": S100K + ELEVEN + '.join("")',
    "json-stringify": S100K + "JSON.stringify(" + ELEVEN + ")",
    "json-stringify-nested-indent": S100K + "JSON.stringify({a: {b: " + ELEVEN + "}}, null, 2)",
    "canonical-json": S100K + "canonical_json(" + ELEVEN + ")",
    "print-line": S100K + "print(s, s, s, s, s, s, s, s, s, s, s)",
    "groupBy-key": S100K + "groupBy(x => x + x + x + x + x + x + x + x + x + x + x)([s])",
    "object-key": 'let s = "x".repeat(999999); let o = {}; o[s + s] = 1',
    "split-to-items": 'let s = "x".repeat(900000); s.split("")',
    "array-spread-doubling": "let a = [1]; while (true) { a = [...a, ...a] }",
    "array-push-spread": "let a = [1]; while (true) { a = a.push(...a) }",
    "array-concat-doubling": "let a = [1]; while (true) { a = a.concat(a) }",
    "array-flatMap": "range(100000).flatMap(x => [x, x])",
    "array-flat-shared": "let a = [1]; for let i = 0; i < 20; i = i + 1 { a = [a, a] }; a.flat(1e9)",
    "array-index-assign": "let a = []; let i = 0; while (true) { a[i] = i; i = i + 1 }",
    "range-huge": "range(1e9)",
    "range-infinite": "range(0, 10 ** 400)",
    "object-index-assign": 'let o = {}; let i = 0; while (true) { o["k" + i] = i; i = i + 1 }',
    "object-assign-doubling": (
        "let o = {k: 1}; let i = 0; while (true) { i = i + 1; "
        'o = Object.assign({}, o, Object.fromEntries(Object.entries(o).map(e => ["g" + i + e[0], 1]))) }'),
    "object-spread-doubling": (
        "let o = {k: 1}; let i = 0; while (true) { i = i + 1; "
        'o = {...o, ...Object.fromEntries(Object.entries(o).map(e => ["g" + i + e[0], 1]))} }'),
}

SMALL_ITEMS = Limits(max_steps=200_000, timeout=2.0, max_depth=200, max_items=1_000, max_string=1_000_000)


@pytest.mark.parametrize("source", list(GROWTH.values()), ids=list(GROWTH))
def test_growth_hits_size_limit(source: str) -> None:
    limits = SMALL_ITEMS if "index-assign" in source or "Object." in source or "o = {..." in source else TIGHT
    attack(source, "limit", "size", limits=limits)


def test_legacy_push_growth_hits_size_limit() -> None:
    attack("let a = []; while (true) { a.push(1, 2, 3, 4, 5, 6, 7, 8, 9, 10) }", "limit", "size", mode="legacy")


def test_legacy_in_place_push_of_itself() -> None:
    attack("let a = [1]; while (true) { a.push(...a) }", "limit", "size", mode="legacy")


def test_string_just_under_the_limit_is_fine() -> None:
    r = returns('let s = "x".repeat(999999); (s + "y").length')
    assert r.value == 1_000_000


def test_array_from_string_is_size_checked() -> None:
    attack('Array.from("x".repeat(1000000))', "limit", "size")


def test_String_of_large_array_is_size_checked() -> None:
    attack("let a = range(100000); String([a, a, a])", "limit", "size")


# Values that share sub-arrays ([a, a] doubling) are tiny in memory but exponential
# when rendered.  Every walk over a value (display, JSON, equality, result conversion)
# goes through values.Guard, which checks the deadline and the size limits.
SHARED = "let a = [1]; for let i = 0; i < %d; i = i + 1 { a = [a, a] }; "


@pytest.mark.parametrize("tail", ["JSON.stringify(a)", '"${a}"',
                                  "let b = [1]; for let i = 0; i < 18; i = i + 1 { b = [b, b] }; a == b", "a"],
                         ids=["JSON", "interpolation", "equality", "result"])
def test_rendering_shared_structure_is_bounded_in_time(tail: str) -> None:
    # 2**18 leaves take ~0.3-1 s to render here; the limit is 0.01 s (bound 0.25 s, so a
    # loaded machine cannot make it flaky while a walk that ignored the deadline still fails)
    attack(SHARED % 18 + tail, "limit", limits=Limits(max_steps=200_000, timeout=0.01, max_string=1_000_000),
           within=0.25)
