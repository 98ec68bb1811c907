"""Attack catalogue: NaN, infinite and out-of-range confidences.  A confidence is
always a finite number in [0, 1]: NaN and ±Infinity are runtime errors, finite
values are clamped, and a NaN threshold never lets a value through."""
from __future__ import annotations

import math

import pytest
from sandbox_helpers import attack, returns

NAN = "(Math.sqrt(-1))"
INF = "(10 ** 400)"
NEG_INF = "(-(10 ** 400))"

INVALID = {
    "attach-NaN": f"1 ~> {NAN}",
    "attach-Infinity": f"1 ~> {INF}",
    "attach-minus-Infinity": f"1 ~> {NEG_INF}",
    "reattach-NaN": f"let x = 5 ~> 0.5; x ~> {NAN}",
    "attach-NaN-parseFloat": 'let c = parseFloat("nope"); "a" ~> c',
    "attach-NaN-Number": 'let c = Number("nope"); [1] ~> c',
    "uncertain-if-NaN": f"uncertain if (1 ~> {NAN}) {{ high {{ 1 }} low {{ 2 }} }}",
    "uncertain-while-Infinity": f"uncertain while (true ~> {INF}) {{ high {{ break }} }}",
    "confidence-factory-NaN": f"confidence({NAN})(x => x)(1)",
    "confidence-factory-Infinity": f"confidence({INF})(x => x)(1)",
    "confidence-factory-negative": "confidence(-1)(x => x)(1)",
    "value-gate-NaN": f"(1 ~> 0.5) ~?> {NAN}",
    "value-gate-negative": "(1 ~> 0.5) ~?> -1",
    "attach-string": '1 ~> "0.9"',
    "attach-array": "1 ~> [0.9]",
    "attach-null": "1 ~> null",
}


@pytest.mark.parametrize("source", list(INVALID.values()), ids=list(INVALID))
def test_invalid_confidence_is_a_runtime_error(source: str) -> None:
    attack(source, "runtime")


CLAMPED = {
    "minus-one": ("1 ~> -1", 0.0),
    "minus-half": ("1 ~> (0 - 0.5)", 0.0),
    "two": ("1 ~> 2", 1.0),
    "huge": ("1 ~> 1e308", 1.0),
    "tiny-negative": ("1 ~> -1e-300", 0.0),
    "negative-zero": ("1 ~> (0 * -1)", 0.0),
    "chain-clamps": ("((1 ~> 5) ~> -5) ~> 0.5", 0.5),
}


@pytest.mark.parametrize("source,conf", list(CLAMPED.values()), ids=list(CLAMPED))
def test_out_of_range_confidence_is_clamped(source: str, conf: float) -> None:
    r = returns(source)
    assert r.confidence == conf and 0.0 <= r.confidence <= 1.0


GATES = {
    "destructure-element": f"let [a ~> {NAN}] = [1 ~> 0.5]; a",
    "destructure-property": f"let {{a ~> {NAN}}} = {{a: 1 ~> 0.5}}; a",
    "destructure-global": f"let a = 0; [a] ~> {NAN} = [1 ~> 0.5]; a",
    "match-arm": f"match 1 ~> 0.5 {{ x ~> {NAN} => x, _ => null }}",
    "match-element": f"match [1 ~> 0.5] {{ [x ~> {NAN}] => x, _ => null }}",
}


@pytest.mark.parametrize("source", list(GATES.values()), ids=list(GATES))
def test_NaN_threshold_lets_nothing_through(source: str) -> None:
    # as in the reference (conf >= NaN is false): a NaN threshold fails closed
    assert returns(source).value is None


def test_threshold_filter_with_NaN_keeps_no_confident_values() -> None:
    assert returns(f"threshold({NAN})([1 ~> 0.5, 2 ~> 1])").value == []


def test_confident_arithmetic_with_NaN_values_keeps_a_valid_confidence() -> None:
    r = returns(f"(1 ~> 0.5) ~* {NAN}")
    assert math.isnan(r.value) and r.confidence == 0.5


def test_extracting_confidence_of_NaN_value() -> None:
    assert returns(f"<~ ({NAN} ~> 0.25)").value == 0.25


def test_aggregate_product_of_many_small_confidences_stays_in_range() -> None:
    r = returns('aggregate(range(2000).map(x => x ~> 0.1), {strategy: "product"})')
    assert r.confidence == 0.0


def test_confidence_survives_eval_pattern_boundary() -> None:
    r = returns('eval_pattern("x ~> 2", {x: 1})')
    assert r.value == 1 and r.confidence == 1.0
