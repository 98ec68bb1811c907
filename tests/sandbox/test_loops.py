"""Attack catalogue: endless loops of every form end in a step (or time) limit error."""
from __future__ import annotations

import pytest
from sandbox_helpers import TIGHT, attack

from kernel import Limits

LOOPS = {
    "while-true": "while (true) { }",
    "while-no-parens": "let n = 0; while true { n = n + 1 }",
    "while-empty-body-expr": "while (1) 0",
    "do-while": "do { } while (true)",
    "do-while-no-parens": "let n = 0; do { n = n + 1 } while n > 0",
    "for-no-condition": "for let i = 0; ; i = i + 1 { }",
    "for-always-true": "for let i = 0; i >= 0; i = i + 1 { }",
    "for-no-update": "for let i = 0; i < 10; { let z = i }",
    "for-counter-reset": "for let i = 0; i < 10; i = i + 1 { i = 0 }",
    "for-in-growing-array-legacy": "let a = [1]; let n = 0; while (n < 1e12) { for x in a { n = n + 1 }; a.push(n) }",
    "uncertain-while": "uncertain while (true ~> 0.9) { high { 1 } }",
    "uncertain-while-default": "uncertain while (true) { default { 1 } }",
    "uncertain-for-no-condition": "uncertain for let i = 0; ; i = i + 1 { high { 1 } }",
    "uncertain-for-low": "uncertain for let i = 0; true ~> 0.3; i = i + 1 { low { 1 } }",
    "nested-loops-1e12": "for let i = 0; i < 1e6; i = i + 1 { for let j = 0; j < 1e6; j = j + 1 { } }",
    "match-in-loop": "let x = 1; while (true) { let r = match x { 1 => 2, _ => 3 } }",
    "loop-in-match-arm": "match 1 { _ => { while (true) { } } }",
    "loop-in-interpolation": '"${(() => { while (true) { } })()}"',
    "loop-in-map-callback": "[1, 2].map(x => { while (true) { } })",
    "loop-in-sort-comparator": "[2, 1].sort((a, b) => { while (true) { } })",
    "loop-in-context-block": "in context C { while (true) { } }",
    "loop-in-async-function": "async function f() { while (true) { } }; await f()",
    "loop-via-continue": "let i = 0; while (i < 10) { continue }",
    "loop-in-confident-condition": "while (true ~> 0.1) { }",
    "loop-in-ternary-lambda": "let f = () => true ? (() => { while (true) { } })() : 0; f()",
}


@pytest.mark.parametrize("source", list(LOOPS.values()), ids=list(LOOPS))
def test_endless_loop_hits_step_limit(source: str) -> None:
    mode = "legacy" if "legacy" in source or "push(n)" in source else "strict"
    attack(source, "limit", "steps", mode=mode)


@pytest.mark.parametrize("source", [
    "while (true) { }",
    "let a = 0; for let i = 0; ; i = i + 1 { a = a + i }",
    "function f(n) { return n < 2 ? n : f(n - 1) + f(n - 2) }; f(60)",
], ids=["while", "for", "exponential-recursion"])
def test_endless_loop_without_step_limit_hits_time_limit(source: str) -> None:
    attack(source, "limit", "time", limits=Limits(max_steps=None, timeout=0.5, max_depth=200), within=5.0)


def test_lambda_trampoline_hits_step_limit() -> None:
    # recursion that stays shallow: each call returns a thunk the loop calls again
    attack("let next = () => next; let f = next; while (true) { f = f() }", "limit", "steps")


def test_exponential_recursion_hits_step_limit() -> None:
    attack("let f = n => n < 2 ? n : f(n - 1) + f(n - 2); f(40)", "limit", "steps")


def test_step_limit_is_reported_as_steps_not_time() -> None:
    err = attack("while (true) { }", "limit", "steps", limits=Limits(max_steps=1000, timeout=30))
    assert "step limit" in err.message


def test_tight_limits_are_what_the_catalogue_uses() -> None:
    assert TIGHT.max_steps == 200_000 and TIGHT.timeout == 2.0
