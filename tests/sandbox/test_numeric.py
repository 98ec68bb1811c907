"""Attack catalogue: huge numeric operations stay IEEE doubles or end in a Prism error
(never a Python OverflowError, decimal error or int-size error)."""
from __future__ import annotations

import math

import pytest
from sandbox_helpers import attack, returns

from kernel import Limits

VALUES = {
    "power-overflow": ("10 ** 400", math.inf),
    "power-huge-exponent": ("2 ** 1e300", math.inf),
    "negative-power-overflow": ("-(10 ** 400)", -math.inf),
    "zero-negative-power": ("0 ** -1", math.inf),
    "Math.pow-overflow": ("Math.pow(10, 400)", math.inf),
    "Math.exp-overflow": ("Math.exp(1000)", math.inf),
    "huge-literal": ("1" + "0" * 400, math.inf),
    "huge-literal-times-zero": ("1" + "0" * 400 + " * 0", math.nan),
    "Number-huge-string": ('Number("9".repeat(5000))', math.inf),
    "parseFloat-huge-string": ('parseFloat("9".repeat(5000))', math.inf),
    "parseInt-huge-string": ('parseInt("9".repeat(5000))', math.inf),
    "parseInt-400-digits": ('parseInt("9".repeat(400))', math.inf),
    "parseInt-negative-huge": ('parseInt("-" + "9".repeat(400))', -math.inf),
    "toFixed-of-huge": ("(1e300).toFixed(2)", "1e+300"),
    "max-safe-integer-plus": ("2 ** 53 + 1", 2.0 ** 53),
    "NaN-compare": ("Math.sqrt(-1) == Math.sqrt(-1)", False),
    "fractional-cube-root": ("(-8) ** (1 / 3)", math.nan),
    "hypot-large": ("Math.hypot(1e308, 1e308) > 1e308", True),
    "hypot-overflow": ("Math.hypot(1e308, 1e308, 1e308, 1e308)", math.inf),
    "infinity-minus-infinity": ("10 ** 400 - 10 ** 400", math.nan),
    "charAt-huge-index": ('"s".charAt(1e300)', ""),
    "slice-huge-bounds": ("[1, 2].slice(1e300, -1e300)", []),
    "at-huge-index": ("[1].at(1e300)", None),
    "repeat-NaN-count": ('"s".repeat(Math.sqrt(-1))', ""),
    "flat-infinite-depth": ("[[1, [2]]].flat(10 ** 400)", [1, 2]),
    "sleep-NaN": ("await sleep(Math.sqrt(-1))", None),
}


def _same(expected, got) -> bool:
    if isinstance(expected, float) and math.isnan(expected):
        return isinstance(got, float) and math.isnan(got)
    return got == expected and type(got) is type(expected) or (expected is None and got is None)


@pytest.mark.parametrize("source,expected", list(VALUES.values()), ids=list(VALUES))
def test_huge_numbers_stay_numbers(source: str, expected) -> None:
    r = returns(source)
    assert _same(expected, r.value) or r.value == expected, f"{source} -> {r.value!r}"


@pytest.mark.parametrize("digits", [20, 50, 100], ids=lambda d: f"digits-{d}")
@pytest.mark.parametrize("source,x", [("1.5", 1.5), ("1e20", 1e20), ("1e-7", 1e-7), ("123.456", 123.456),
                                      ("(0 - 2.5)", -2.5)], ids=["1.5", "1e20", "1e-7", "123.456", "-2.5"])
def test_toFixed_with_many_digits(source: str, x: float, digits: int) -> None:
    # JS toFixed prints the exact binary value, up to 100 digits
    from decimal import ROUND_HALF_UP, Context, Decimal
    r = returns(f"({source}).toFixed({digits})")
    exact = Decimal(x).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP, context=Context(prec=500))
    assert r.value == format(exact, "f")


ERRORS = {
    "toFixed-1000": ("(1).toFixed(1000)", "runtime", None),
    "toFixed-negative": ("(1).toFixed(-1)", "runtime", None),
    "repeat-huge": ('"a".repeat(1e15)', "limit", "size"),
    "repeat-infinite": ('"a".repeat(10 ** 400)', "limit", "size"),
    "repeat-negative": ('"a".repeat(-1)', "runtime", None),
    "padStart-huge": ('"a".padStart(1e300)', "limit", "size"),
    "range-tiny-step": ("range(0, 1e300, 1e-300)", "limit", "size"),
    "range-NaN": ("range(Math.sqrt(-1))", "limit", "size"),
    "range-zero-step": ("range(0, 10, 0)", "runtime", None),
    "index-huge": ("[1][1e300]", "runtime", None),
    "index-infinite": ("[1][10 ** 400]", "runtime", None),
    "index-NaN": ("[1][Math.sqrt(-1)]", "runtime", None),
    "division-by-zero": ("1 / 0", "runtime", None),
    "modulo-by-zero": ("1 % 0", "runtime", None),
    "sleep-infinite-under-timeout": ("await sleep(10 ** 400)", "limit", "time"),
    "delay-huge-under-timeout": ("await delay(1e300)", "limit", "time"),
}


@pytest.mark.parametrize("source,kind,limit", list(ERRORS.values()), ids=list(ERRORS))
def test_huge_numeric_operation_errors(source: str, kind: str, limit: str | None) -> None:
    attack(source, kind, limit, limits=Limits(max_steps=200_000, timeout=0.5, max_items=100_000,
                                              max_string=1_000_000))
