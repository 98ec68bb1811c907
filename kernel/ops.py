"""Operator semantics: plain operators with confidence propagation and the ``~`` family.

Consumes Prism values; produces Prism values (spec §4.4, §4.7, §4.9).  The
compiler inlines float fast paths and falls back to these functions.
"""
from __future__ import annotations

import math
from typing import Any, Callable

from .errors import PrismRuntimeError
from .values import (Confident, display, error_type_name, loose_equal, make_conf, strict_equal,
                     truthy, type_name)

C = Confident


def conf_of(v: Any) -> float:
    return v.conf if type(v) is C else 1.0


def raw(v: Any) -> Any:
    return v.value if type(v) is C else v


# ------------------------------------------------------------ plain ops

def _num_err(op: str, a: Any, b: Any) -> PrismRuntimeError:
    return PrismRuntimeError(f"Cannot apply {op} to {error_type_name(a)} and {error_type_name(b)}")


def add_plain(a: Any, b: Any, check_string: Callable[[int], None] | None = None) -> Any:
    ta, tb = type(a), type(b)
    if ta is float and tb is float:
        return a + b
    if ta is str or tb is str:
        sa = a if ta is str else display(a)
        sb = b if tb is str else display(b)
        if check_string is not None:
            check_string(len(sa) + len(sb))
        return sa + sb
    raise _num_err("+", a, b)


def sub_plain(a: Any, b: Any) -> Any:
    if type(a) is float and type(b) is float:
        return a - b
    raise _num_err("-", a, b)


def mul_plain(a: Any, b: Any) -> Any:
    if type(a) is float and type(b) is float:
        return a * b
    raise _num_err("*", a, b)


def div_plain(a: Any, b: Any) -> Any:
    if type(a) is float and type(b) is float:
        if b == 0.0:
            raise PrismRuntimeError("Division by zero")
        return a / b
    raise _num_err("/", a, b)


def mod_plain(a: Any, b: Any) -> Any:
    if type(a) is float and type(b) is float:
        if b == 0.0:
            raise PrismRuntimeError("Modulo by zero")
        if a in (math.inf, -math.inf) or a != a or b != b:
            return math.nan
        if b in (math.inf, -math.inf):
            return a
        return math.fmod(a, b)
    raise _num_err("%", a, b)


def pow_plain(a: Any, b: Any) -> Any:
    if type(a) is float and type(b) is float:
        return js_pow(a, b)
    raise _num_err("**", a, b)


def js_pow(a: float, b: float) -> float:
    if b != b:
        return math.nan
    if b == 0:
        return 1.0
    if a != a:
        return math.nan
    try:
        r = a ** b
    except OverflowError:
        if a < 0 and b == int(b) and int(b) % 2 == 1:
            return -math.inf
        return math.inf
    except ZeroDivisionError:
        if a == 0 and b < 0 and b == int(b) and int(b) % 2 == 1 and math.copysign(1, a) < 0:
            return -math.inf
        return math.inf
    if type(r) is complex:
        return math.nan
    return float(r)


def _cmp_err(a: Any, b: Any) -> PrismRuntimeError:
    return PrismRuntimeError(f"Cannot compare {error_type_name(a)} and {error_type_name(b)}")


def lt_plain(a: Any, b: Any) -> bool:
    if type(a) is float and type(b) is float:
        return a < b
    raise _cmp_err(a, b)


def le_plain(a: Any, b: Any) -> bool:
    if type(a) is float and type(b) is float:
        return a <= b
    raise _cmp_err(a, b)


def gt_plain(a: Any, b: Any) -> bool:
    if type(a) is float and type(b) is float:
        return a > b
    raise _cmp_err(a, b)


def ge_plain(a: Any, b: Any) -> bool:
    if type(a) is float and type(b) is float:
        return a >= b
    raise _cmp_err(a, b)


def eq_plain(a: Any, b: Any) -> bool:
    return loose_equal(a, b)


def ne_plain(a: Any, b: Any) -> bool:
    return not loose_equal(a, b)


def seq_plain(a: Any, b: Any) -> bool:
    return strict_equal(a, b)


def sne_plain(a: Any, b: Any) -> bool:
    return not strict_equal(a, b)


def nullish_plain(a: Any, b: Any) -> Any:
    return b if a is None else a


PLAIN: dict[str, Callable[[Any, Any], Any]] = {
    "+": add_plain, "-": sub_plain, "*": mul_plain, "/": div_plain, "%": mod_plain, "**": pow_plain,
    "<": lt_plain, "<=": le_plain, ">": gt_plain, ">=": ge_plain, "==": eq_plain, "!=": ne_plain,
    "===": seq_plain, "!==": sne_plain, "??": nullish_plain,
}


def lift(op: str, plain: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """The §4.4.1 rule: if either operand is confident, apply to the inner values
    (recursively) and wrap with the minimum confidence."""
    def apply(a: Any, b: Any) -> Any:
        if type(a) is C or type(b) is C:
            ca = a.conf if type(a) is C else 1.0
            cb = b.conf if type(b) is C else 1.0
            return C(apply(a.value if type(a) is C else a, b.value if type(b) is C else b),
                     ca if ca <= cb else cb)
        return plain(a, b)
    apply.__name__ = f"op_{op}"
    return apply


BINARY: dict[str, Callable[[Any, Any], Any]] = {op: lift(op, f) for op, f in PLAIN.items()}


def instanceof(a: Any, b: Any) -> bool:
    left = raw(a)
    rb = raw(b)
    if type(rb) is not str:
        from .values import Function
        if isinstance(rb, Function):
            raise PrismRuntimeError("instanceof with constructor functions not yet supported")
        raise PrismRuntimeError("Right-hand side of instanceof must be a type name or constructor")
    name = rb.lower()
    if name == "undefined":
        name = "null"
    if name not in ("number", "string", "boolean", "array", "object", "function", "null"):
        raise PrismRuntimeError(f"Unknown type name: {name}")
    return type_name(left) == name


# -------------------------------------------------------- confident ops

_ARITH_NAMES = {"~+": "addition", "~-": "subtraction", "~*": "multiplication", "~/": "division"}


def confident_arith(op: str) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        ra = a.value if type(a) is C else a
        rb = b.value if type(b) is C else b
        if type(ra) is not float or type(rb) is not float:
            raise PrismRuntimeError("Confident arithmetic requires numeric values")
        if op == "~+":
            v = ra + rb
        elif op == "~-":
            v = ra - rb
        elif op == "~*":
            v = ra * rb
        else:
            if rb == 0.0:
                raise PrismRuntimeError("Division by zero in confident arithmetic")
            v = ra / rb
        ca = a.conf if type(a) is C else 1.0
        cb = b.conf if type(b) is C else 1.0
        return C(v, ca if ca <= cb else cb)
    return apply


_CMP_NAMES = {"~<": "less than", "~<=": "less equal", "~>=": "greater equal"}


def confident_compare(op: str) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        ra, rb = raw(a), raw(b)
        if op == "~==":
            v = strict_equal(ra, rb)
        elif op == "~!=":
            v = not strict_equal(ra, rb)
        else:
            if type(ra) is not float or type(rb) is not float:
                raise PrismRuntimeError(f"Confident {_CMP_NAMES[op]} requires numeric values")
            v = ra < rb if op == "~<" else (ra <= rb if op == "~<=" else ra >= rb)
        return C(v, min(conf_of(a), conf_of(b)))
    return apply


def confident_and(a: Any, b: Any) -> Any:
    return C(truthy(a) and truthy(b), min(conf_of(a), conf_of(b)))


def confident_or(a: Any, b: Any) -> Any:
    return C(truthy(a) or truthy(b), max(conf_of(a), conf_of(b)))


def chain(a: Any, b: Any) -> Any:
    return C(raw(b), min(conf_of(a), conf_of(b)))


def parallel_pick(a: Any, b: Any) -> Any:
    return b if conf_of(b) > conf_of(a) else a


CONFIDENT: dict[str, Callable[[Any, Any], Any]] = {
    "~+": confident_arith("~+"), "~-": confident_arith("~-"), "~*": confident_arith("~*"),
    "~/": confident_arith("~/"), "~==": confident_compare("~=="), "~!=": confident_compare("~!="),
    "~<": confident_compare("~<"), "~<=": confident_compare("~<="), "~>=": confident_compare("~>="),
    "~&&": confident_and, "~||": confident_or, "~||>": parallel_pick,
}


def attach(v: Any, c: Any) -> Confident:
    if type(c) is C:
        c = c.value
    if type(c) is not float:
        raise PrismRuntimeError("Confidence value must be a number")
    return C(v, make_conf(c))


def gate_value(left: Any, arg: Any) -> Any:
    """``l ~?> t`` and ``l ~?> [t, fallback]`` (spec §4.4.10)."""
    fallback = None
    t = raw(arg)
    if type(t) is list:
        if len(t) != 2:
            raise PrismRuntimeError("Threshold gate expects a number or [threshold, default] array")
        fallback = t[1]
        t = raw(t[0])
        if type(t) is not float:
            raise PrismRuntimeError("Threshold gate array first element must be a number")
    elif type(t) is not float:
        raise PrismRuntimeError("Threshold gate expects a number or [threshold, default] array")
    if not 0.0 <= t <= 1.0:
        raise PrismRuntimeError("Confidence threshold must be between 0 and 1")
    c = conf_of(left)
    if c >= t:
        return C(raw(left), c)
    return fallback


def negate(v: Any) -> Any:
    if type(v) is float:
        return -v
    if type(v) is C:
        return C(negate(v.value), v.conf)
    raise PrismRuntimeError(f"Cannot apply unary - to {type_name(v)}")


def typeof(v: Any) -> str:
    while type(v) is C:
        v = v.value
    return type_name(v)
