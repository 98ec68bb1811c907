"""Attack catalogue: deeply nested or very long source ends in a PrismSyntaxError or a
PrismLimitError — never a RecursionError, a crash or a quadratic parse."""
from __future__ import annotations

import pytest
from sandbox_helpers import attack, returns

N = 10_000

NESTED = {
    "parens": "(" * N + "1" + ")" * N,
    "arrays": "[" * N + "]" * N,
    "objects": "{a: " * N + "1" + "}" * N,
    "blocks": "if (true) {" * N + "1" + "}" * N,
    "bare-blocks": "{ " * N + "}" * N,
    "unary-minus-parens": "-(" * N + "1" + ")" * N,
    "calls": "print(" * N + ")" * N,
    "functions": "function f() {" * N + "}" * N,
    "match-arms": "match 1 { _ => " * N + "1" + " }" * N,
    "spread": "[" + "...[" * N + "]" * N + "]",
    "index": "let a = [0]; a" + "[a" * N + "[0]" + "]" * N,
    "bare-lambdas": "x => " * N + "1",
    "paren-lambdas": "(x) => " * N + "1",
    "lambda-blocks": "x => {" * N + "1" + "}" * N,
    "interpolation-parens": '"${' + "(" * N + "1" + ")" * N + '}"',
}


@pytest.mark.parametrize("source", list(NESTED.values()), ids=list(NESTED))
def test_deep_nesting_is_a_syntax_error(source: str) -> None:
    attack(source, "syntax", within=5.0)


LONG = {
    "unary-minus": ("- " * N + "1", 1),
    "not": ("!" * N + "true", True),
    "typeof": ("typeof " * N + "1", "string"),
    "await": ("await " * N + "1", 1),
    "confidence-extract": ("<~ " * N + "1", 1),
    "ternary": ("true ? " * 2000 + "1" + " : 0" * 2000, 1),
    "else-if-chain": ("if (false) 1" + " else if (false) 1" * 5000 + " else 2", 2),
    "else-if-chain-blocks": ("let x = 1; if (x == 0) { 1 }" + " else if (x == 0) { 0 }" * 3000 + " else { 2 }", 2),
    "many-statements": ("let a = 0; " + "a = a + 1; " * 10000 + "a", 10000),
    "long-string-literal": ('"' + "x" * 500_000 + '".length', 500_000),
    "long-identifier": ("let " + "v" * 100_000 + " = 1; " + "v" * 100_000, 1),
    "many-lambdas-in-sequence": ("let y = " + " + ".join("(x => { 1 })(1)" for _ in range(3000)) + "; y", 3000),
}


@pytest.mark.parametrize("source,expected", list(LONG.values()), ids=list(LONG))
def test_long_flat_source_runs(source: str, expected) -> None:
    assert returns(source, within=10.0).value == expected


CHAINS = {
    "plus-chain": "1" + " + 1" * 100_000,
    "and-chain": "true" + " && true" * 20_000,
    "member-chain": "let o = {}; o" + ".a" * 20_000,
    "call-chain": "print" + "()" * 20_000,
    "pipe-chain": "1" + " |> (x => x)" * 5_000,
}


@pytest.mark.parametrize("source", list(CHAINS.values()), ids=list(CHAINS))
def test_long_operator_chains_end_in_a_prism_error_or_value(source: str) -> None:
    # flat chains: a value, a runtime error (o.a.a…), or a depth limit — never a crash
    from sandbox_helpers import check_error_clean, run
    out = run(source)
    assert out.elapsed < 15.0
    if out.error is not None:
        assert out.error.kind in ("runtime", "limit", "syntax")
        if out.error.kind == "limit":
            assert out.error.limit == "depth"
        check_error_clean(out.error)


def test_nested_bare_lambdas_parse_in_linear_time() -> None:
    # used to take ~55 s (each `=>` re-simulated the whole parser stack)
    attack("f => " * 100_000 + "1", "syntax", within=5.0, message="nested too deeply")


def test_a_few_curried_lambdas_are_fine() -> None:
    assert returns("let add = a => b => c => d => e => a + b + c + d + e; add(1)(2)(3)(4)(5)").value == 15


@pytest.mark.parametrize("source", ["/*" * N + "*/ 1", '"' + "\\" * 5001, "```" + "x" * 100_000, "'" * (N + 1)],
                         ids=["nested-comment-openers", "backslashes", "unterminated-raw-string", "quotes"])
def test_malformed_long_source_is_a_syntax_error(source: str) -> None:
    attack(source, "syntax", within=5.0)
