"""The Prism value model.

Prism values are: float (number), str, bool, None (null), list (array), dict
(object, str keys), ``Confident`` (a value with a confidence), ``Function``
subclasses, ``Promise``.  Nothing else ever reaches Prism code: member access
only looks into dict keys and the per-type method tables in builtins.py.
Also here: JS-compatible number display, ``toFixed``, equality, truthiness,
and conversion to and from host (JSON-compatible) values.
"""
from __future__ import annotations

import math
import threading
from concurrent.futures import Future
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any, Callable

from .errors import PrismRuntimeError


class _Uninit:
    """Marks a let/const binding in its temporal dead zone."""
    __slots__ = ()

    def __repr__(self) -> str:
        return "<uninitialized>"


UNINIT = _Uninit()


class Confident:
    """A value with a confidence in [0, 1]."""
    __slots__ = ("value", "conf")

    def __init__(self, value: Any, conf: float):
        self.value = value
        self.conf = conf


def make_conf(c: Any) -> float:
    """Clamp a number to [0, 1]; NaN and infinities are errors (spec §4.2)."""
    if type(c) is not float:
        if isinstance(c, bool) or not isinstance(c, (int, float)):
            raise PrismRuntimeError("Confidence value must be a number")
        c = float(c)
    if c != c or c in (math.inf, -math.inf):
        raise PrismRuntimeError(f"Invalid confidence value: {num_to_str(c)}. Must be a finite number.")
    return 0.0 if c < 0.0 else (1.0 if c > 1.0 else c)


class Function:
    """Base of every callable Prism value."""
    __slots__ = ("name",)
    arity: int | None = None          # declared non-rest parameters; None = variadic

    def call(self, args: list, span: Any = None) -> Any:   # pragma: no cover - abstract
        raise NotImplementedError


class Builtin(Function):
    """A host function exposed to Prism.  ``fn(args)`` receives Prism values."""
    __slots__ = ("fn", "arity")

    def __init__(self, name: str, fn: Callable[[list], Any], arity: int | None = None):
        self.name = name
        self.fn = fn
        self.arity = arity

    def call(self, args: list, span: Any = None) -> Any:
        return self.fn(args)


class Promise:
    """A pending or settled asynchronous result (wraps a concurrent Future)."""
    __slots__ = ("future", "on_cancel", "internal")

    def __init__(self, future: Future | None = None):
        self.future = future if future is not None else Future()
        self.on_cancel = None
        self.internal = False   # settled by a task of this run (spawn), not by the host

    @classmethod
    def resolved(cls, value: Any) -> "Promise":
        p = cls()
        p.future.set_result(value)
        return p

    @classmethod
    def rejected(cls, exc: BaseException) -> "Promise":
        p = cls()
        p.future.set_exception(exc)
        return p

    def done(self) -> bool:
        return self.future.done()


# ------------------------------------------------------------------ types

def type_name(v: Any) -> str:
    """The ``typeof`` name of a value (confident values report their inner type)."""
    t = type(v)
    if t is float:
        return "number"
    if t is str:
        return "string"
    if t is bool:
        return "boolean"
    if v is None:
        return "null"
    if t is list:
        return "array"
    if t is dict:
        return "object"
    if t is Confident:
        return type_name(v.value)
    if isinstance(v, Function):
        return "function"
    if t is Promise:
        return "promise"
    if t is int:
        return "number"
    return "unknown"


def error_type_name(v: Any) -> str:
    """Type name used in operator error messages (``confident`` for wrappers)."""
    return "confident" if type(v) is Confident else type_name(v)


def truthy(v: Any) -> bool:
    t = type(v)
    if t is bool:
        return v
    if t is float:
        return v != 0.0 and v == v
    if t is str:
        return v != ""
    if v is None:
        return False
    if t is Confident:
        return truthy(v.value)
    return True


# ---------------------------------------------------------------- numbers

def num_to_str(x: float) -> str:
    """ECMAScript Number.prototype.toString()."""
    if x != x:
        return "NaN"
    if x == math.inf:
        return "Infinity"
    if x == -math.inf:
        return "-Infinity"
    if x == 0:
        return "0"
    if x.is_integer() and abs(x) < 2 ** 53:
        return str(int(x))
    sign = "-" if x < 0 else ""
    r = repr(abs(x))
    if "e" in r:
        mant, exp = r.split("e")
        exp_i = int(exp)
    else:
        mant, exp_i = r, 0
    if "." in mant:
        ip, fp = mant.split(".")
    else:
        ip, fp = mant, ""
    digits = (ip + fp).lstrip("0")
    lead_zeros = len(ip + fp) - len((ip + fp).lstrip("0"))
    n = len(ip) + exp_i - lead_zeros          # value = 0.digits × 10^n
    digits = digits.rstrip("0") or "0"
    k = len(digits)
    if k <= n <= 21:
        s = digits + "0" * (n - k)
    elif 0 < n <= 21:
        s = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        s = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        es = ("+" if e >= 0 else "-") + str(abs(e))
        s = digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + es
    return sign + s


_FIXED = Context(prec=200)     # |x| < 1e21 and up to 100 digits: at most 121 significant digits


def to_fixed(x: float, digits: int) -> str:
    """JS ``toFixed``: round the exact binary value half-up."""
    if x != x:
        return "NaN"
    if x in (math.inf, -math.inf):
        return "Infinity" if x > 0 else "-Infinity"
    if abs(x) >= 1e21:
        return num_to_str(x)
    q = Decimal(1).scaleb(-digits)
    d = Decimal(x).quantize(q, rounding=ROUND_HALF_UP, context=_FIXED)
    s = format(d, "f")
    if s.startswith("-") and float(d) == 0:
        s = s[1:]
    return s


def conf_percent(c: float) -> str:
    return to_fixed(c * 100, 1) + "%"


# ---------------------------------------------------------------- display

class Guard:
    """Bounds one walk over a value (rendering, comparing, converting): values may share
    sub-structure, so a small value can stand for an exponential tree.  Counts nodes
    and characters, checks the run's deadline every 1024 nodes, and stops at the
    sandbox's size limits."""
    __slots__ = ("nodes", "chars", "budget", "max_nodes", "max_chars")

    def __init__(self) -> None:
        from .sandbox import depth_counter
        b = depth_counter.budget
        self.budget = b
        self.max_nodes = b.max_items if b is not None else 5_000_000
        self.max_chars = b.max_string if b is not None else 50_000_000
        self.nodes = 0
        self.chars = 0

    def node(self) -> None:
        self.nodes += 1
        if not self.nodes & 1023:
            if self.budget is not None:
                self.budget.check_time()
            if self.nodes > self.max_nodes:
                raise self._limit(f"value too large to process (over {self.max_nodes:,} parts)")

    def text(self, n: int) -> None:
        self.chars += n
        if self.chars > self.max_chars:
            raise self._limit(f"string too long ({self.chars:,} characters; the limit is {self.max_chars:,})")

    def _limit(self, message: str) -> Exception:
        from .errors import PrismLimitError
        err = PrismLimitError(message, limit="size")
        return err.owned(self.budget) if self.budget is not None else err


def display(v: Any) -> str:
    """The display (toString) form of a value, spec §4.1."""
    t = type(v)
    if t is str:
        return v
    if t is float:
        return num_to_str(v)
    if t is bool:
        return "true" if v else "false"
    if v is None:
        return "null"
    out: list[str] = []
    _render(v, out, Guard())
    return "".join(out)


def _render(v: Any, out: list, g: Guard) -> None:
    g.node()
    t = type(v)
    if t is str:
        s = v
    elif t is float:
        s = num_to_str(v)
    elif t is bool:
        s = "true" if v else "false"
    elif v is None:
        s = "null"
    elif t is list:
        out.append("[")
        first = True
        for x in v:
            if not first:
                out.append(", ")
            first = False
            _render(x, out, g)
        out.append("]")
        g.text(2 + 2 * len(v))
        return
    elif t is dict:
        if not v:
            s = "{}"
        else:
            out.append("{ ")
            first = True
            for k, x in v.items():
                if not first:
                    out.append(", ")
                first = False
                out.append(k)
                out.append(": ")
                g.text(len(k) + 4)
                _render(x, out, g)
            out.append(" }")
            return
    elif t is Confident:
        _render(v.value, out, g)
        s = f" (~{conf_percent(v.conf)})"
    elif isinstance(v, Function):
        s = f"[Function: {v.name}]"
    elif t is Promise:
        s = "[Promise]"
    elif t is int:
        s = num_to_str(float(v))
    else:
        s = "[unknown]"
    g.text(len(s))
    out.append(s)


def print_form(v: Any) -> str:
    """The form used by print/console: ``INNER ~> 0.80`` for confident values."""
    if type(v) is Confident:
        return f"{display(v.value)} ~> {to_fixed(v.conf, 2)}"
    return display(v)


def join_form(v: Any) -> str:
    """Element form used by ``Array.join``: null becomes empty."""
    if v is None:
        return ""
    return display(v)


# --------------------------------------------------------------- equality

def strict_equal(a: Any, b: Any, _g: "Guard | None" = None) -> bool:
    ta, tb = type(a), type(b)
    if ta is float and tb is float:
        return a == b
    if ta is Confident or tb is Confident:
        if ta is Confident and tb is Confident:
            return strict_equal(a.value, b.value, _g) and abs(a.conf - b.conf) <= 1e-10
        return False
    if ta is not tb:
        return False
    if ta is list:
        if a is b:
            return True
        if len(a) != len(b):
            return False
        g = _g or Guard()
        for x, y in zip(a, b):
            g.node()
            if not strict_equal(x, y, g):
                return False
        return True
    if ta is dict:
        if a is b:
            return True
        if len(a) != len(b):
            return False
        g = _g or Guard()
        for k, x in a.items():
            g.node()
            if k not in b or not strict_equal(x, b[k], g):
                return False
        return True
    if ta in (str, bool) or a is None:
        return a == b
    return a is b


def _to_number(v: Any) -> float | None:
    t = type(v)
    if t is float:
        return v
    if t is bool:
        return 1.0 if v else 0.0
    if v is None:
        return 0.0
    if t is str:
        return parse_float(v)
    return None


def parse_float(s: str) -> float | None:
    """JS parseFloat: the longest numeric prefix, or None."""
    import re
    m = re.match(r"\s*([+-]?(?:Infinity|\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?))", s)
    if not m:
        return None
    text = m.group(1)
    if text.endswith("Infinity"):
        return -math.inf if text.startswith("-") else math.inf
    try:
        return float(text)
    except ValueError:
        return None


def loose_equal(a: Any, b: Any) -> bool:
    """``==`` on plain values (spec §4.9)."""
    ta, tb = type(a), type(b)
    if ta is tb or (a is None and b is None):
        return strict_equal(a, b)
    if ta is float or tb is float:
        x, y = _to_number(a), _to_number(b)
        if x is not None and y is not None:
            return x == y
    if ta is str or tb is str:
        if (a == "" and b is False) or (b == "" and a is False):
            return True
        if a is None or b is None:
            return False
        return display(a) == display(b)
    if ta is bool or tb is bool:
        return truthy(a) == truthy(b)
    return False


# ------------------------------------------------------------ conversions

def from_host(v: Any, _depth: int = 0) -> Any:
    """Convert a JSON-compatible host value (or a Prism value) into a Prism value."""
    if _depth > 200:
        raise PrismRuntimeError("input value nested too deeply")
    t = type(v)
    if t is bool or v is None or t is str or t is float:
        return v
    if t is int:
        return float(v)
    if t is list or t is tuple:
        return [from_host(x, _depth + 1) for x in v]
    if t is dict:
        return {str(k): from_host(x, _depth + 1) for k, x in v.items()}
    if t is Confident or isinstance(v, (Function, Promise)):
        return v
    if isinstance(v, bool):
        return bool(v)
    if isinstance(v, int):
        return float(v)
    if isinstance(v, float):
        return float(v)
    if isinstance(v, str):
        return str(v)
    if isinstance(v, dict):
        return {str(k): from_host(x, _depth + 1) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [from_host(x, _depth + 1) for x in v]
    if hasattr(v, "model_dump"):           # pydantic models from the host side
        return from_host(v.model_dump(mode="json"), _depth + 1)
    raise PrismRuntimeError(f"cannot pass a host value of type {type(v).__name__} to Prism")


def to_host(v: Any, _depth: int = 0, _g: "Guard | None" = None) -> Any:
    """Plain JSON-compatible Python value; nested confidences dropped; integral
    numbers become ``int``; functions and promises become descriptive strings."""
    t = type(v)
    if t is float:
        if v.is_integer() and abs(v) < 2 ** 53:
            return int(v)
        return v
    if t is str or t is bool or v is None:
        return v
    if _depth > 500:
        return None
    g = _g or Guard()
    g.node()
    if t is list:
        return [to_host(x, _depth + 1, g) for x in v]
    if t is dict:
        return {k: to_host(x, _depth + 1, g) for k, x in v.items()}
    if t is Confident:
        return to_host(v.value, _depth + 1, g)
    return display(v)


def to_json_value(v: Any) -> Any:
    """Like to_host, but NaN/Infinity become None so the result is strict JSON."""
    return json_safe(to_host(v))


def json_safe(h: Any) -> Any:
    """A host value with NaN and infinities replaced by None (strict JSON)."""
    if isinstance(h, float) and (h != h or h in (math.inf, -math.inf)):
        return None
    if isinstance(h, list):
        return [json_safe(x) for x in h]
    if isinstance(h, dict):
        return {k: json_safe(x) for k, x in h.items()}
    return h


def utf16_len(s: str) -> int:
    if s.isascii():
        return len(s)
    return len(s.encode("utf-16-le", "surrogatepass")) // 2      # lone surrogates count as one unit


class Cell:
    """A thread-safe mutable holder (used for process-wide primitive state)."""
    __slots__ = ("value", "lock")

    def __init__(self, value: Any = None):
        self.value = value
        self.lock = threading.Lock()
