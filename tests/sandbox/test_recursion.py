"""Attack catalogue: unbounded and mutual recursion, also through built-in callbacks,
and deeply nested data, end in a depth (or tasks) limit error — never RecursionError."""
from __future__ import annotations

import pytest
from sandbox_helpers import attack

from kernel import Limits

RECURSION = {
    "self": "function f() { return f() }; f()",
    "self-with-argument": "function f(n) { return f(n + 1) + 1 }; f(0)",
    "mutual": "function f() { return g() }; function g() { return f() }; f()",
    "mutual-three": "function a() { return b() }; function b() { return c() }; function c() { return a() }; a()",
    "lambda-self": "let f = x => f(x); f(1)",
    "lambda-y-combinator": "let y = f => f(f); y(y)",
    "lambda-omega": "let w = x => x(x); w(w)",
    "array-map": "function f() { return [1].map(x => f())[0] }; f()",
    "array-filter": "function f() { return [1].filter(x => f()) }; f()",
    "array-reduce": "function f() { return [1, 2].reduce((a, b) => f(), 0) }; f()",
    "array-sort": "function f() { return [2, 1].sort((a, b) => f()) }; f()",
    "array-forEach": "function f() { [1].forEach(x => f()); return 1 }; f()",
    "array-find": "function f() { return [1].find(x => f()) }; f()",
    "array-some": "function f() { return [1].some(x => f()) }; f()",
    "array-flatMap": "function f() { return [1].flatMap(x => f()) }; f()",
    "global-map": "function f() { return map([1], x => f()) }; f()",
    "global-filter": "function f() { return filter([1], x => f()) }; f()",
    "global-reduce": "function f() { return reduce([1, 2], (a, b) => f(), 0) }; f()",
    "groupBy-callback": "function f() { return groupBy(x => f())([1]) }; f()",
    "aggregate-combine": "function f() { return aggregate([1], {combine: a => f()}) }; f()",
    "confidence-wrapper": "function f() { return confidence(0.5)(x => f())(1) }; f()",
    "settle": "function f() { return settle(f) }; f()",
    "mutual-through-callbacks": ("function f() { return [1].map(x => g())[0] }; "
                                 "function g() { return [2, 1].sort((a, b) => f()) }; f()"),
    "pipeline": "function f(x) { return x |> f }; f(1)",
    "match-guard": "function f(x) { return match x { n if f(n) => 1, _ => 2 } }; f(1)",
    "interpolation": 'function f() { return "${f()}" }; f()',
}


@pytest.mark.parametrize("source", list(RECURSION.values()), ids=list(RECURSION))
def test_unbounded_recursion_hits_depth_limit(source: str) -> None:
    attack(source, "limit", "depth")


@pytest.mark.parametrize("source", [
    "function f(n) { return f(n + 1) }; f(0)",
    "function f() { return [1].map(x => f())[0] }; f()",
    "function f() { return [2, 1].sort((a, b) => f()) }; f()",
], ids=["plain", "map", "sort"])
def test_recursion_past_a_huge_max_depth_is_still_a_depth_error(source: str) -> None:
    # max_depth far above what Python can nest: the interpreter's own recursion guard
    # must still turn into a Prism depth error (not a RecursionError or a crash)
    attack(source, "limit", "depth", limits=Limits(max_depth=10_000_000, max_steps=50_000_000, timeout=10),
           within=30.0)


def test_async_recursion_hits_tasks_limit() -> None:
    attack("async function f() { return await f() }; await f()", "limit", "tasks")


def test_recursive_spawn_hits_tasks_limit() -> None:
    attack("function f() { return spawn(f) }; await f()", "limit", "tasks")


DEEP_DATA = "let a = []; for let i = 0; i < 100000; i = i + 1 { a = [a] }; "
BIG = Limits(max_steps=10_000_000, timeout=10)


@pytest.mark.parametrize("tail,kind,limit", [
    ("JSON.stringify(a)", "runtime", None),
], ids=["JSON.stringify"])
def test_deeply_nested_data_is_an_error_not_a_crash(tail: str, kind: str, limit: str | None) -> None:
    attack(DEEP_DATA + tail, kind, limit, limits=BIG, within=30.0)


def test_deeply_nested_data_renders_and_compares_within_the_limits() -> None:
    """100 000 levels of nesting: rendering and equality walk it (bounded by
    values.Guard), neither crashing nor needing Python's recursion limit."""
    import time
    import kernel
    t0 = time.monotonic()
    r = kernel.evaluate(DEEP_DATA + 'let s = "${a}"; [s.length, s.slice(0, 3)]', limits=BIG)
    assert r.value == [200002, "[[["]      # 100 001 arrays
    r = kernel.evaluate(DEEP_DATA + "let b = []; for let i = 0; i < 100000; i = i + 1 { b = [b] }; a == b",
                        limits=BIG)
    assert r.value is True
    assert time.monotonic() - t0 < 30.0
