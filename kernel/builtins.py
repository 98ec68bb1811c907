"""Built-in names and per-type method tables.

Consumes a ``Runtime``; produces the read-only global bindings (spec §5 plus the
design §3 extras: Math, JSON, Object, Array.isArray, Date.now, string/array
methods, toFixed) and ``Members``, the only code that resolves ``.name`` and
``[index]`` on Prism values.  Every builtin checks its arguments and raises
PrismRuntimeError; every allocation is checked against the sandbox limits first.
"""
from __future__ import annotations

import json
import math
import time
from concurrent.futures import InvalidStateError
from functools import cmp_to_key
from typing import Any, Callable

from .errors import PrismError, PrismRuntimeError
from .runtime import Runtime, SleepPromise, arity_of, await_value, call_value, wrap_call_result
from .values import (Builtin, Confident, Function, Promise, display, from_host, join_form, make_conf,
                     num_to_str, print_form, strict_equal, to_fixed, truthy, type_name, utf16_len)

C = Confident
_MISSING = object()


def _raw(v: Any) -> Any:
    return v.value if type(v) is C else v


def _conf(v: Any) -> float:
    return v.conf if type(v) is C else 1.0


def _num(v: Any, msg: str) -> float:
    v = _raw(v)
    if type(v) is not float:
        raise PrismRuntimeError(msg)
    return v


def _str(v: Any, msg: str) -> str:
    v = _raw(v)
    if type(v) is not str:
        raise PrismRuntimeError(msg)
    return v


def _fn(v: Any, msg: str) -> Any:
    if isinstance(v, Function) or (type(v) is C and isinstance(v.value, Function)):
        return v
    raise PrismRuntimeError(msg)


def _int_arg(v: Any, default: int) -> int:
    v = _raw(v)
    if v is None:
        return default
    if type(v) is not float:
        raise PrismRuntimeError(f"expected a number, got {type_name(v)}")
    if v != v:
        return 0
    if v in (math.inf, -math.inf):
        return 2 ** 53 if v > 0 else -(2 ** 53)
    return int(v)


def _slice_bounds(n: int, start: Any, end: Any) -> tuple[int, int]:
    s = _int_arg(start, 0)
    e = _int_arg(end, n)
    if s < 0:
        s = max(n + s, 0)
    if e < 0:
        e = max(n + e, 0)
    return min(s, n), min(e, n)


class Members:
    """Resolves member access, indexing and method calls (spec §4.4.15-16, §5.2)."""

    def __init__(self, rt: Runtime):
        self.rt = rt
        self.budget = rt.budget
        self.array_methods = _array_methods(self)
        self.string_methods = _string_methods(self)
        self.number_methods = _number_methods(self)

    # .name / ?.name / ~.name
    def get(self, o: Any, name: str, op: str) -> Any:
        if type(o) is C:
            t = o.conf
            inner = o.value
            while type(inner) is C:            # nested confidences multiply
                t = t * inner.conf
                inner = inner.value
            if inner is None:
                if op == ".":
                    raise PrismRuntimeError(f"Cannot access property '{name}' on null")
                return None if op == "?." else C(None, t)
            v = self._lookup(inner, name, op)
            if v is _MISSING:
                return None if op == "?." else C(None, t)
            if type(v) is C:
                return C(v.value, make_conf(t * v.conf))
            return C(v, t)
        if o is None:
            if op == "?.":
                return None
            if op == "~.":
                return C(None, 1.0)
            raise PrismRuntimeError(f"Cannot access property '{name}' on null")
        v = self._lookup(o, name, op)
        if v is _MISSING:
            return None if op == "?." else C(None, 1.0)
        if op == "~." and type(v) is not C:
            return C(v, 1.0)
        return v

    def _lookup(self, o: Any, name: str, op: str) -> Any:
        t = type(o)
        if t is dict:
            v = o.get(name, _MISSING)
            if v is _MISSING:
                if op == ".":
                    raise PrismRuntimeError(f"Property '{name}' does not exist")
                return _MISSING
            return v
        if t is list:
            if name == "length":
                return float(len(o))
            m = self.array_methods.get(name)
        elif t is str:
            if name == "length":
                return float(utf16_len(o))
            m = self.string_methods.get(name)
        elif t is float:
            m = self.number_methods.get(name)
            if m is None:
                if op == "?.":
                    return _MISSING
                raise PrismRuntimeError(f"Cannot access property '{name}' on number")
        else:
            if op == "?.":
                return _MISSING
            raise PrismRuntimeError(f"Cannot access property '{name}' on {type_name(o)}")
        if m is None:
            if op == ".":
                raise PrismRuntimeError(f"Property '{name}' does not exist")
            return _MISSING
        return Builtin(name, lambda args, _o=o, _m=m: _m(_o, args))

    def method_call(self, o: Any, name: str, args: list) -> Any:
        """``o.name(args)`` without building a bound method for plain receivers."""
        t = type(o)
        if t is list:
            m = self.array_methods.get(name)
            if m is not None:
                return m(o, args)
        elif t is str:
            m = self.string_methods.get(name)
            if m is not None:
                return m(o, args)
        elif t is dict:
            f = o.get(name, _MISSING)
            if f is not _MISSING:
                return call_value(self.rt, f, args)
        f = self.get(o, name, ".")
        return call_value(self.rt, f, args)

    # [index]
    def index(self, o: Any, k: Any) -> Any:
        if type(k) is C:
            k = k.value
        if type(o) is C:
            t = o.conf
            inner = o.value
            while type(inner) is C:
                t = t * inner.conf
                inner = inner.value
            v = self.index(inner, k)
            if type(v) is C:
                return C(v.value, make_conf(t * v.conf))
            return C(v, t)
        t = type(o)
        if t is list:
            if type(k) is not float:
                raise PrismRuntimeError("Array index must be a number")
            if k != k or k in (math.inf, -math.inf):
                raise PrismRuntimeError(f"Array index {num_to_str(k)} out of bounds")
            i = math.floor(k)
            if 0 <= i < len(o):
                return o[i]
            raise PrismRuntimeError(f"Array index {num_to_str(float(i))} out of bounds")
        if t is dict:
            if type(k) is not str:
                raise PrismRuntimeError("Object index must be a string")
            return o.get(k)
        raise PrismRuntimeError(f"Cannot index {type_name(o) if t is not C else 'confident'}")


def member_of(rt: Runtime) -> Members:
    m = getattr(rt, "_members", None)
    if m is None:
        m = Members(rt)
        rt._members = m  # type: ignore[attr-defined]
    return m


# ---------------------------------------------------------------- arrays

def _array_methods(M: Members) -> dict[str, Callable[[list, list], Any]]:
    rt = M.rt
    budget = rt.budget
    legacy = rt.mode == "legacy"

    def call(f: Any, args: list) -> Any:
        return call_value(rt, f, args)

    def one_fn(args: list, method: str, what: str) -> Any:
        if len(args) != 1:
            raise PrismRuntimeError(f"Array.{method}() requires exactly 1 argument: {what}")
        return _fn(args[0], f"Argument to {method}() must be a function")

    def with_index(f: Any) -> bool:
        return arity_of(f) == 2

    def map_(a: list, args: list) -> list:
        f = one_fn(args, "map", "function")
        if with_index(f):
            return [call(f, [x, float(i)]) for i, x in enumerate(a)]
        return [call(f, [x]) for x in a]

    def filter_(a: list, args: list) -> list:
        f = one_fn(args, "filter", "predicate")
        if with_index(f):
            return [x for i, x in enumerate(a) if truthy(call(f, [x, float(i)]))]
        return [x for x in a if truthy(call(f, [x]))]

    def reduce_(a: list, args: list) -> Any:
        if len(args) not in (1, 2):
            raise PrismRuntimeError("Array.reduce() requires 1 or 2 arguments: reducer and optional initial value")
        f = _fn(args[0], "First argument to reduce() must be a function")
        return _reduce(rt, a, f, args[1] if len(args) == 2 else _MISSING)

    def push(a: list, args: list) -> list:
        if not args:
            raise PrismRuntimeError("Array.push() requires at least 1 argument")
        if len(a) + len(args) > budget.max_items:
            budget.check_items(len(a) + len(args))
        if legacy:
            rt.check_mutable(a)
            a.extend(args)
            return a
        return a + args

    def for_each(a: list, args: list) -> None:
        f = one_fn(args, "forEach", "function")
        if with_index(f):
            for i, x in enumerate(list(a)):
                call(f, [x, float(i)])
        else:
            for x in list(a):
                call(f, [x])
        return None

    def join(a: list, args: list) -> str:
        if len(args) > 1:
            raise PrismRuntimeError("Array.join() requires 0 or 1 argument")
        sep = ","
        if args:
            sep = _raw(args[0])
            if type(sep) is not str:
                raise PrismRuntimeError("Array.join() separator must be a string")
        parts = [join_form(x) for x in a]
        total = sum(len(p) for p in parts) + len(sep) * max(0, len(parts) - 1)
        budget.check_string(total)
        return sep.join(parts)

    def find(a: list, args: list) -> Any:
        f = one_fn(args, "find", "predicate")
        for i, x in enumerate(a):
            if truthy(call(f, [x, float(i)] if with_index(f) else [x])):
                return x
        return None

    def find_index(a: list, args: list) -> float:
        f = one_fn(args, "findIndex", "predicate")
        for i, x in enumerate(a):
            if truthy(call(f, [x, float(i)] if with_index(f) else [x])):
                return float(i)
        return -1.0

    def some(a: list, args: list) -> bool:
        f = one_fn(args, "some", "predicate")
        return any(truthy(call(f, [x, float(i)] if with_index(f) else [x])) for i, x in enumerate(a))

    def every(a: list, args: list) -> bool:
        f = one_fn(args, "every", "predicate")
        return all(truthy(call(f, [x, float(i)] if with_index(f) else [x])) for i, x in enumerate(a))

    def includes(a: list, args: list) -> bool:
        if len(args) != 1:
            raise PrismRuntimeError("Array.includes() requires exactly 1 argument")
        return any(strict_equal(x, args[0]) or (_raw(x) is not None and strict_equal(_raw(x), _raw(args[0])))
                   for x in a)

    def index_of(a: list, args: list) -> float:
        if len(args) != 1:
            raise PrismRuntimeError("Array.indexOf() requires exactly 1 argument")
        for i, x in enumerate(a):
            if strict_equal(x, args[0]):
                return float(i)
        return -1.0

    def slice_(a: list, args: list) -> list:
        s, e = _slice_bounds(len(a), args[0] if args else None, args[1] if len(args) > 1 else None)
        return a[s:e]

    def concat(a: list, args: list) -> list:
        out = list(a)
        for x in args:
            x = _raw(x)
            add = x if type(x) is list else [x]
            budget.check_items(len(out) + len(add))
            out.extend(add)
        return out

    def sort(a: list, args: list) -> list:
        if args:
            f = _fn(args[0], "Argument to sort() must be a function")

            def cmp(x: Any, y: Any) -> int:
                r = _raw(call(f, [x, y]))
                if type(r) is not float:
                    raise PrismRuntimeError("sort() comparator must return a number")
                return -1 if r < 0 else (1 if r > 0 else 0)
            return sorted(a, key=cmp_to_key(cmp))

        def default_cmp(x: Any, y: Any) -> int:
            rx, ry = _raw(x), _raw(y)
            if type(rx) is float and type(ry) is float:
                return -1 if rx < ry else (1 if rx > ry else 0)
            sx, sy = display(rx), display(ry)
            return -1 if sx < sy else (1 if sx > sy else 0)
        return sorted(a, key=cmp_to_key(default_cmp))

    def reverse(a: list, args: list) -> list:
        return a[::-1]

    def flat(a: list, args: list) -> list:
        depth = _int_arg(args[0], 1) if args else 1

        def go(xs: list, d: int, out: list) -> None:
            for x in xs:
                rx = _raw(x)
                if type(rx) is list and d > 0:
                    go(rx, d - 1, out)
                else:
                    out.append(x)
                if len(out) > budget.max_items:
                    budget.check_items(len(out))
        out: list = []
        go(a, depth, out)
        return out

    def flat_map(a: list, args: list) -> list:
        f = one_fn(args, "flatMap", "function")
        out: list = []
        for i, x in enumerate(a):
            r = _raw(call(f, [x, float(i)] if with_index(f) else [x]))
            if type(r) is list:
                out.extend(r)
            else:
                out.append(r)
            if len(out) > budget.max_items:
                budget.check_items(len(out))
        return out

    def last_index_of(a: list, args: list) -> float:
        for i in range(len(a) - 1, -1, -1):
            if args and strict_equal(a[i], args[0]):
                return float(i)
        return -1.0

    def at(a: list, args: list) -> Any:
        i = _int_arg(args[0] if args else None, 0)
        if i < 0:
            i += len(a)
        return a[i] if 0 <= i < len(a) else None

    def pop(a: list, args: list) -> Any:
        if legacy:
            rt.check_mutable(a)
            return a.pop() if a else None
        return a[-1] if a else None

    return {"map": map_, "filter": filter_, "reduce": reduce_, "push": push, "forEach": for_each,
            "join": join, "find": find, "findIndex": find_index, "some": some, "every": every,
            "includes": includes, "indexOf": index_of, "lastIndexOf": last_index_of, "slice": slice_,
            "concat": concat, "sort": sort, "reverse": reverse, "flat": flat, "flatMap": flat_map,
            "at": at, "pop": pop}


def _reduce(rt: Runtime, a: list, f: Any, init: Any) -> Any:
    with_idx = arity_of(f) == 3
    if init is _MISSING:
        if not a:
            raise PrismRuntimeError("reduce() of empty array with no initial value")
        acc = a[0]
        start = 1
    else:
        acc = init
        start = 0
    for i in range(start, len(a)):
        acc = call_value(rt, f, [acc, a[i], float(i)] if with_idx else [acc, a[i]])
    return acc


# --------------------------------------------------------------- strings

def _string_methods(M: Members) -> dict[str, Callable[[str, list], Any]]:
    budget = M.budget

    def arg_str(args: list, i: int, name: str) -> str:
        if len(args) <= i:
            raise PrismRuntimeError(f"String.{name}() requires a string argument")
        v = _raw(args[i])
        if type(v) is not str:
            raise PrismRuntimeError(f"String.{name}() argument must be a string")
        return v

    def split(s: str, args: list) -> list:
        if not args or _raw(args[0]) is None:
            return [s]
        sep = arg_str(args, 0, "split")
        parts = list(s) if sep == "" else s.split(sep)
        if len(args) > 1 and _raw(args[1]) is not None:
            parts = parts[:max(0, _int_arg(args[1], len(parts)))]
        budget.check_items(len(parts))
        return parts

    def replace(s: str, args: list, all_: bool = False) -> str:
        old = arg_str(args, 0, "replace")
        new = _raw(args[1]) if len(args) > 1 else None
        if isinstance(new, Function):
            raise PrismRuntimeError("String.replace() with a function is not supported")
        new = display(new)
        if all_:
            count = s.count(old) if old else len(s) + 1
        else:
            count = 1 if old in s else 0
        budget.check_string(len(s) + count * max(0, len(new) - len(old)))
        return s.replace(old, new) if all_ else s.replace(old, new, 1)

    def repeat(s: str, args: list) -> str:
        n = _int_arg(args[0] if args else None, 0)
        if n < 0:
            raise PrismRuntimeError("Invalid count value: repeat count must be non-negative")
        budget.check_string(len(s) * n)
        return s * n

    def pad(s: str, args: list, start: bool) -> str:
        width = _int_arg(args[0] if args else None, 0)
        fill = display(_raw(args[1])) if len(args) > 1 and _raw(args[1]) is not None else " "
        if width <= len(s) or not fill:
            return s
        budget.check_string(width)
        need = width - len(s)
        padding = (fill * (need // len(fill) + 1))[:need]
        return padding + s if start else s + padding

    def index_of(s: str, args: list) -> float:
        return float(s.find(arg_str(args, 0, "indexOf")))

    def slice_(s: str, args: list) -> str:
        st, en = _slice_bounds(len(s), args[0] if args else None, args[1] if len(args) > 1 else None)
        return s[st:en]

    def substring(s: str, args: list) -> str:
        n = len(s)
        a = min(max(_int_arg(args[0] if args else None, 0), 0), n)
        b = min(max(_int_arg(args[1] if len(args) > 1 else None, n), 0), n)
        return s[min(a, b):max(a, b)]

    def char_at(s: str, args: list) -> str:
        i = _int_arg(args[0] if args else None, 0)
        return s[i] if 0 <= i < len(s) else ""

    def concat(s: str, args: list) -> str:
        parts = [display(_raw(a)) for a in args]
        budget.check_string(len(s) + sum(len(p) for p in parts))
        return s + "".join(parts)

    return {
        "toUpperCase": lambda s, a: s.upper(), "toLowerCase": lambda s, a: s.lower(),
        "trim": lambda s, a: s.strip(), "trimStart": lambda s, a: s.lstrip(), "trimEnd": lambda s, a: s.rstrip(),
        "split": split, "includes": lambda s, a: arg_str(a, 0, "includes") in s,
        "startsWith": lambda s, a: s.startswith(arg_str(a, 0, "startsWith")),
        "endsWith": lambda s, a: s.endswith(arg_str(a, 0, "endsWith")),
        "slice": slice_, "substring": substring, "replace": replace,
        "replaceAll": lambda s, a: replace(s, a, True), "indexOf": index_of,
        "lastIndexOf": lambda s, a: float(s.rfind(arg_str(a, 0, "lastIndexOf"))),
        "padStart": lambda s, a: pad(s, a, True), "padEnd": lambda s, a: pad(s, a, False),
        "repeat": repeat, "charAt": char_at, "concat": concat,
        "toString": lambda s, a: s,
    }


def _number_methods(M: Members) -> dict[str, Callable[[float, list], Any]]:
    def fixed(x: float, args: list) -> str:
        d = _int_arg(args[0] if args else None, 0)
        if not 0 <= d <= 100:
            raise PrismRuntimeError("toFixed() digits argument must be between 0 and 100")
        return to_fixed(x, d)

    return {"toFixed": fixed, "toString": lambda x, a: num_to_str(x)}


# -------------------------------------------------------------- globals

GLOBAL_NAMES = frozenset("""
map filter reduce print console confidence threshold consensus aggregate sortBy groupBy debounce
Promise delay sleep max min llm stream_llm Math JSON Object Array Date parseFloat parseInt
isNaN String Number Boolean range len keys values spawn cancel now shared_state seeded_random
canonical_json is_promise settle trace arity wait_any
""".split())

# Process-lifetime state for primitives that must remember across runs (circuit
# breakers, caches).  Bounded: at most MAX_SHARED namespaces of MAX_SHARED_KEYS keys.
_SHARED: dict[str, dict] = {}
MAX_SHARED = 1000
MAX_SHARED_KEYS = 10000


def canonical_json(v: Any) -> str:
    """Canonical JSON of a Prism value (sorted keys, confidences dropped)."""
    from .values import to_json_value
    return json.dumps(to_json_value(v), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def make_globals(rt: Runtime) -> dict[str, Any]:
    budget = rt.budget
    g: dict[str, Any] = {}
    clock = rt.clock

    def _wall_ms() -> float:
        return time.time() * 1000.0 if clock is None else clock.now_ms()

    def builtin(name: str, arity: int | None = None) -> Callable[[Callable], Callable]:
        def deco(fn: Callable[[list], Any]) -> Callable:
            g[name] = Builtin(name, fn, arity)
            return fn
        return deco

    # ---- collections (spec §5.2)
    def _array_arg(v: Any, fname: str) -> tuple[list, float | None]:
        c = v.conf if type(v) is C else None
        a = _raw(v)
        if type(a) is not list:
            raise PrismRuntimeError(f"First argument to {fname}() must be an array")
        return a, c

    @builtin("map")
    def _map(args: list) -> Any:
        if len(args) != 2:
            raise PrismRuntimeError("map() requires exactly 2 arguments: array and function")
        a, c = _array_arg(args[0], "map")
        f = _fn(args[1], "Second argument to map() must be a function")
        if arity_of(f) == 2:
            out = [call_value(rt, f, [x, float(i)]) for i, x in enumerate(a)]
        else:
            out = [call_value(rt, f, [x]) for x in a]
        return C(out, c) if c is not None else out

    @builtin("filter")
    def _filter(args: list) -> Any:
        if len(args) != 2:
            raise PrismRuntimeError("filter() requires exactly 2 arguments: array and predicate")
        a, c = _array_arg(args[0], "filter")
        f = _fn(args[1], "Second argument to filter() must be a function")
        out = [x for x in a if truthy(call_value(rt, f, [x]))]
        return C(out, c) if c is not None else out

    @builtin("reduce")
    def _reduce_g(args: list) -> Any:
        if len(args) not in (2, 3):
            raise PrismRuntimeError("reduce() requires 2 or 3 arguments: array, reducer, and optional initial value")
        a, c = _array_arg(args[0], "reduce")
        f = _fn(args[1], "Second argument to reduce() must be a function")
        r = _reduce(rt, a, f, args[2] if len(args) == 3 else _MISSING)
        if c is not None and type(r) is not C:
            return C(r, c)
        return r

    # ---- output (spec §5.6)
    def _line(args: list) -> str:
        text = " ".join(print_form(a) for a in args)
        budget.check_string(len(text))
        return text

    @builtin("print")
    def _print(args: list) -> None:
        rt.output("stdout", _line(args))
        return None

    console = {
        "log": Builtin("log", lambda a: rt.output("stdout", _line(a))),
        "info": Builtin("info", lambda a: rt.output("stdout", _line(a))),
        "warn": Builtin("warn", lambda a: rt.output("stderr", _line(a))),
        "error": Builtin("error", lambda a: rt.output("stderr", _line(a))),
        "debug": Builtin("debug", lambda a: rt.output("stdout", "[DEBUG] " + _line(a))),
    }
    g["console"] = console

    # ---- confidence helpers (spec §5.4)
    @builtin("confidence")
    def _confidence(args: list) -> Any:
        if len(args) != 1:
            raise PrismRuntimeError("confidence() requires exactly one argument: threshold")
        c = _num(args[0], "confidence() threshold must be a number")
        if not 0.0 <= c <= 1.0:
            raise PrismRuntimeError("confidence() threshold must be between 0 and 1")

        def configure(a: list) -> Any:
            if len(a) != 1:
                raise PrismRuntimeError("confidence-configured function requires exactly one argument: function")
            f = _fn(a[0], "confidence-configured function requires a function argument")
            return Builtin("confident", lambda xs: C(call_value(rt, f, xs), c))
        return Builtin("confidence", configure)

    @builtin("threshold")
    def _threshold(args: list) -> Any:
        if len(args) != 1:
            raise PrismRuntimeError("threshold() requires exactly one argument: minimum confidence")
        t = _num(args[0], "threshold() requires a number")

        def keep(x: Any) -> bool:
            if type(x) is C:
                return x.conf >= t
            if type(x) is dict:
                return all(v.conf >= t for v in x.values() if type(v) is C)
            return True

        def filt(a: list) -> Any:
            if len(a) != 1:
                raise PrismRuntimeError("threshold filter requires exactly one argument: array")
            arr = _raw(a[0])
            if type(arr) is not list:
                raise PrismRuntimeError("threshold filter requires an array")
            return [x for x in arr if keep(x)]
        return Builtin("threshold", filt)

    def _options(args: list, fname: str) -> tuple[list, dict | None]:
        if len(args) not in (1, 2):
            raise PrismRuntimeError(f"{fname}() requires an array and optional options object")
        arr = _raw(args[0])
        if type(arr) is not list:
            raise PrismRuntimeError(f"{fname}() expects an array of values")
        opts = None
        if len(args) == 2:
            opts = _raw(args[1])
            if type(opts) is not dict:
                raise PrismRuntimeError(f"{fname}() options must be an object")
        return arr, opts

    @builtin("consensus")
    def _consensus(args: list) -> Any:
        arr, opts = _options(args, "consensus")
        strategy = "max"
        if opts is not None and "strategy" in opts:
            strategy = _raw(opts["strategy"])
            if type(strategy) is not str:
                raise PrismRuntimeError("consensus() strategy must be a string")
            if strategy not in ("max", "min"):
                raise PrismRuntimeError('consensus() strategy must be "min" or "max"')
        if not arr:
            raise PrismRuntimeError("consensus() requires at least one value")
        best = arr[0]
        for x in arr[1:]:
            if (strategy == "max" and _conf(x) > _conf(best)) or (strategy == "min" and _conf(x) < _conf(best)):
                best = x
        return best

    @builtin("aggregate")
    def _aggregate(args: list) -> Any:
        arr, opts = _options(args, "aggregate")
        strategy = "average"
        combine = None
        if opts is not None:
            if "strategy" in opts:
                strategy = _raw(opts["strategy"])
                if strategy not in ("average", "min", "max", "product"):
                    raise PrismRuntimeError('aggregate() strategy must be "min", "max", "product", or "average"')
            if "combine" in opts:
                combine = opts["combine"]
                if not isinstance(_raw(combine), Function):
                    raise PrismRuntimeError("aggregate() combine must be a function")
        confs = [_conf(x) for x in arr]
        if not confs:
            c = 1.0
        elif strategy == "average":
            c = sum(confs) / len(confs)
        elif strategy == "min":
            c = min(confs)
        elif strategy == "max":
            c = max(confs)
        else:
            c = math.prod(confs)
        value = call_value(rt, combine, [arr]) if combine is not None else list(arr)
        return C(value, make_conf(c))

    @builtin("max")
    def _max(args: list) -> Any:
        return _extremum(args, "max", max)

    @builtin("min")
    def _min(args: list) -> Any:
        return _extremum(args, "min", min)

    def _extremum(args: list, name: str, pick: Callable) -> Any:
        if not args:
            return -math.inf if name == "max" else math.inf
        vals = args
        if len(args) == 1 and type(_raw(args[0])) is list:
            vals = _raw(args[0])
            if not vals:
                return -math.inf if name == "max" else math.inf
        for v in vals:
            if type(_raw(v)) is not float:
                raise PrismRuntimeError(f"{name}() requires numeric arguments")
        best = vals[0]
        for v in vals[1:]:
            if (name == "max" and _raw(v) > _raw(best)) or (name == "min" and _raw(v) < _raw(best)):
                best = v
        return best

    # ---- collections helpers (spec §5.5)
    @builtin("sortBy")
    def _sort_by(args: list) -> Any:
        if len(args) not in (1, 2):
            raise PrismRuntimeError("sortBy() requires 1-2 arguments: key [, direction]")
        key = _str(args[0], "sortBy() key must be a string")
        direction = _str(args[1], "sortBy() direction must be a string") if len(args) == 2 else "asc"
        desc = direction != "asc"

        def keyval(x: Any) -> Any:
            return _raw(x)

        def cmp(x: Any, y: Any) -> int:
            a, b = keyval(x), keyval(y)
            if type(a) is dict and type(b) is dict:
                a, b = _raw(a.get(key)), _raw(b.get(key))
            if type(a) is float and type(b) is float:
                r = -1 if a < b else (1 if a > b else 0)
            else:
                sa, sb = display(a), display(b)
                la, lb = sa.lower(), sb.lower()
                r = -1 if la < lb else (1 if la > lb else (-1 if sa > sb else (1 if sa < sb else 0)))
            return -r if desc else r

        def sorter(a: list) -> Any:
            if len(a) != 1:
                raise PrismRuntimeError("sortBy sorter requires exactly one argument: array")
            arr = _raw(a[0])
            if type(arr) is not list:
                raise PrismRuntimeError("sortBy sorter requires an array")
            return C(sorted(arr, key=cmp_to_key(cmp)), 0.95)
        return Builtin("sortBy", sorter)

    @builtin("groupBy")
    def _group_by(args: list) -> Any:
        if len(args) != 1:
            raise PrismRuntimeError("groupBy() requires exactly one argument: key or function")
        spec = args[0]
        if type(_raw(spec)) is not str and not isinstance(_raw(spec), Function):
            raise PrismRuntimeError("groupBy() requires a string key or function")

        def grouper(a: list) -> Any:
            if len(a) != 1:
                raise PrismRuntimeError("groupBy grouper requires exactly one argument: array")
            arr = _raw(a[0])
            if type(arr) is not list:
                raise PrismRuntimeError("groupBy grouper requires an array")
            out: dict = {}
            for x in arr:
                if type(_raw(spec)) is str:
                    u = _raw(x)
                    k = display(u.get(_raw(spec))) if type(u) is dict else display(u)
                else:
                    k = display(call_value(rt, spec, [x]))
                out.setdefault(k, []).append(x)
            return out
        return Builtin("groupBy", grouper)

    @builtin("debounce")
    def _debounce(args: list) -> Any:
        if len(args) != 1:
            raise PrismRuntimeError("debounce() requires exactly one argument: delay in milliseconds")
        ms = _num(args[0], "debounce() delay must be a number")

        def creator(a: list) -> Any:
            if len(a) != 1:
                raise PrismRuntimeError("debounce creator requires exactly one argument: function")
            f = _fn(a[0], "debounce creator requires a function argument")

            def debounced(xs: list) -> Any:
                await_value(rt, SleepPromise(max(0.0, ms) / 1000.0, rt.clock))
                try:
                    return call_value(rt, f, xs)
                except PrismRuntimeError:
                    return None
            return Builtin("debounced", debounced)
        return Builtin("debounce", creator)

    # ---- async (spec §5.7)
    def _sleep(args: list) -> Any:
        if len(args) != 1:
            raise PrismRuntimeError("delay() requires exactly one argument: milliseconds")
        ms = _num(args[0], "delay() requires a number of milliseconds")
        if ms != ms:
            ms = 0.0
        return SleepPromise(max(0.0, math.floor(ms) if math.isfinite(ms) else ms) / 1000.0, rt.clock)

    g["delay"] = Builtin("delay", _sleep)
    g["sleep"] = Builtin("sleep", _sleep)

    def _resolve(args: list) -> Any:
        if len(args) != 1:
            raise PrismRuntimeError("Promise.resolve() requires exactly one argument")
        return Promise.resolved(args[0])

    def _reject(args: list) -> Any:
        if len(args) != 1:
            raise PrismRuntimeError("Promise.reject() requires exactly one argument")
        return Promise.rejected(PrismRuntimeError(display(_raw(args[0]))))

    def _all(args: list) -> Any:
        if len(args) != 1 or type(_raw(args[0])) is not list:
            raise PrismRuntimeError("Promise.all() requires an array of promises")
        return [await_value(rt, x) for x in _raw(args[0])]

    def _race(args: list) -> Any:
        if len(args) != 1 or type(_raw(args[0])) is not list:
            raise PrismRuntimeError("Promise.race() requires an array of promises")
        items = _raw(args[0])
        if not items:
            raise PrismRuntimeError("Promise.race() of an empty array never settles")
        from .runtime import race
        return race(rt, items)

    def _all_settled(args: list) -> Any:
        if len(args) != 1 or type(_raw(args[0])) is not list:
            raise PrismRuntimeError("Promise.allSettled() requires an array of promises")
        out = []
        for x in _raw(args[0]):
            try:
                out.append({"status": "fulfilled", "value": await_value(rt, x)})
            except PrismRuntimeError as e:
                out.append({"status": "rejected", "reason": e.message})
        return out

    def _with_resolvers(args: list) -> dict:
        """Promise.withResolvers() (ES2024): {promise, resolve, reject}; the first call of
        either settles the promise, later calls do nothing."""
        if args:
            raise PrismRuntimeError("Promise.withResolvers() takes no arguments")
        p = Promise()
        p.internal = True                   # settled by this run's own code

        def settle_with(how: Callable[[], None]) -> None:
            if not p.future.done():
                try:
                    how()
                except InvalidStateError:   # settled by another task meanwhile
                    pass

        def resolve(a: list) -> None:
            settle_with(lambda: p.future.set_result(a[0] if a else None))

        def reject(a: list) -> None:
            reason = display(_raw(a[0])) if a else "null"
            settle_with(lambda: p.future.set_exception(PrismRuntimeError(reason)))
        return {"promise": p, "resolve": Builtin("resolve", resolve), "reject": Builtin("reject", reject)}

    g["Promise"] = {"resolve": Builtin("resolve", _resolve), "reject": Builtin("reject", _reject),
                    "all": Builtin("all", _all), "race": Builtin("race", _race),
                    "allSettled": Builtin("allSettled", _all_settled),
                    "withResolvers": Builtin("withResolvers", _with_resolvers)}

    # ---- LLM (spec §5.8): delegated to the host's providers
    @builtin("llm")
    def _llm(args: list) -> Any:
        from .llm import call_llm
        return call_llm(rt, args)

    @builtin("stream_llm")
    def _stream_llm(args: list) -> Any:
        from .llm import stream_llm
        return stream_llm(rt, args)

    # ---- design §3 extras
    g["Math"] = _math(rt)
    g["JSON"] = _json(rt)
    g["Object"] = _object(rt)
    def _array_from(a: list) -> list:
        src = _raw(a[0]) if a else None
        if type(src) not in (list, str):
            return []
        budget.check_items(len(src))
        return list(src)

    g["Array"] = {"isArray": Builtin("isArray", lambda a: type(_raw(a[0]) if a else None) is list),
                  "from": Builtin("from", _array_from)}
    g["Date"] = {"now": Builtin("now", lambda a: float(int(_wall_ms())))}

    @builtin("parseFloat")
    def _parse_float(args: list) -> float:
        from .values import parse_float
        v = _raw(args[0]) if args else None
        if type(v) is float:
            return v
        r = parse_float(display(v)) if v is not None else None
        return math.nan if r is None else r

    @builtin("parseInt")
    def _parse_int(args: list) -> float:
        import re
        v = _raw(args[0]) if args else None
        if type(v) is float:
            return float(math.trunc(v)) if v == v and v not in (math.inf, -math.inf) else math.nan
        m = re.match(r"\s*([+-]?\d+)", display(v) if v is not None else "")
        return float(m.group(1)) if m else math.nan       # float(): no int digit limit, inf past 1e308

    @builtin("isNaN")
    def _is_nan(args: list) -> bool:
        v = _raw(args[0]) if args else None
        return type(v) is float and v != v

    @builtin("String")
    def _string(args: list) -> str:
        text = display(_raw(args[0])) if args else ""
        budget.check_string(len(text))
        return text

    @builtin("Number")
    def _number(args: list) -> float:
        from .values import parse_float
        v = _raw(args[0]) if args else 0.0
        if type(v) is float:
            return v
        if type(v) is bool:
            return 1.0 if v else 0.0
        if v is None:
            return 0.0
        if type(v) is str:
            s = v.strip()
            if s == "":
                return 0.0
            try:
                return float(s)
            except ValueError:
                return math.nan
        return math.nan

    @builtin("Boolean")
    def _boolean(args: list) -> bool:
        return truthy(args[0]) if args else False

    @builtin("range")
    def _range(args: list) -> list:
        nums = [_num(a, "range() requires numbers") for a in args]
        if len(nums) == 1:
            start, stop, step = 0.0, nums[0], 1.0
        elif len(nums) in (2, 3):
            start, stop = nums[0], nums[1]
            step = nums[2] if len(nums) == 3 else 1.0
        else:
            raise PrismRuntimeError("range() requires 1 to 3 arguments")
        if step == 0:
            raise PrismRuntimeError("range() step must not be zero")
        span = (stop - start) / step if math.isfinite(stop - start) else math.inf
        count = max(0, math.ceil(span)) if math.isfinite(span) else (0 if span < 0 else budget.max_items + 1)
        budget.check_items(count)
        return [start + i * step for i in range(count)]

    @builtin("len")
    def _len(args: list) -> float:
        v = _raw(args[0]) if args else None
        if type(v) in (list, dict):
            return float(len(v))
        if type(v) is str:
            return float(utf16_len(v))
        raise PrismRuntimeError(f"len() requires an array, object or string, got {type_name(v)}")

    # ---- host functions the primitives library is built on
    @builtin("spawn")
    def _spawn(args: list) -> Any:
        """spawn(fn, ...args): start fn(...args) concurrently; returns its promise."""
        if not args:
            raise PrismRuntimeError("spawn() requires a function")
        f = _fn(args[0], "spawn() requires a function")
        from .runtime import spawn
        rest = list(args[1:])
        return spawn(rt, lambda: await_value(rt, call_value(rt, f, rest)), name="spawn")

    @builtin("cancel")
    def _cancel(args: list) -> bool:
        p = _raw(args[0]) if args else None
        if not isinstance(p, Promise):
            return False
        done = p.future.cancel()
        if p.on_cancel is not None:
            p.on_cancel()
            return True
        return done

    @builtin("arity")
    def _arity(args: list) -> Any:
        """arity(f): declared parameter count of a function (null when variadic)."""
        f = _raw(args[0]) if args else None
        if not isinstance(f, Function):
            raise PrismRuntimeError("arity() requires a function")
        a = f.arity
        return float(a) if a is not None else None

    @builtin("is_promise")
    def _is_promise(args: list) -> bool:
        return bool(args) and isinstance(_raw(args[0]), Promise)

    @builtin("now")
    def _now(args: list) -> float:
        return _wall_ms()

    @builtin("wait_any")
    def _wait_any(args: list) -> float:
        """wait_any(promises, timeoutMs?): the index of the first settled promise (the lowest
        when several have settled; non-promises count as settled), or -1 at the timeout.
        Waits without polling; never throws for a rejected promise (await it to see why)."""
        items = _raw(args[0]) if args else None
        if type(items) is not list or not items:
            raise PrismRuntimeError("wait_any() requires a non-empty array of promises")
        ms = _raw(args[1]) if len(args) > 1 else None
        if ms is not None and (type(ms) is not float or ms != ms):
            raise PrismRuntimeError("wait_any() timeout must be a number of milliseconds or null")
        from .runtime import wait_any
        return float(wait_any(rt, items, None if ms is None else ms / 1000.0))

    @builtin("settle")
    def _settle(args: list) -> Any:
        """settle(fn, ...args): call and await fn; returns {ok, value, error} and never throws
        (limit errors still stop the program)."""
        if not args:
            raise PrismRuntimeError("settle() requires a function or promise")
        try:
            target = args[0]
            if isinstance(_raw(target), Function):
                v = await_value(rt, call_value(rt, target, list(args[1:])))
            else:
                v = await_value(rt, target)
            return {"ok": True, "value": v, "error": None}
        except PrismRuntimeError as e:
            return {"ok": False, "value": None, "error": e.message}

    @builtin("shared_state")
    def _shared_state(args: list) -> dict:
        name = _str(args[0] if args else None, "shared_state() requires a name")
        st = _SHARED.get(name)
        if st is None:
            if len(_SHARED) >= MAX_SHARED:
                raise PrismRuntimeError("too many shared_state namespaces")
            st = _SHARED[name] = {}
        if len(st) > MAX_SHARED_KEYS:
            st.clear()
        return st

    @builtin("seeded_random")
    def _seeded_random(args: list) -> Any:
        import random
        seed = _raw(args[0]) if args else 0.0
        rng = random.Random(display(seed))
        return Builtin("random", lambda a: rng.random())

    @builtin("canonical_json")
    def _canonical(args: list) -> str:
        text = canonical_json(args[0] if args else None)
        budget.check_string(len(text))
        return text

    @builtin("trace")
    def _trace(args: list) -> None:
        """trace(kind, data?): add an event to the run's trace (no-op without a trace sink)."""
        if rt.trace is None:
            return None
        kind = display(_raw(args[0])) if args else "event"
        from .values import to_json_value
        ev = {"event": kind}
        if len(args) > 1:
            ev["data"] = to_json_value(args[1])
        rt.emit(ev)
        return None

    g["keys"] = Builtin("keys", lambda a: list(_obj_arg(a, "keys").keys()))
    g["values"] = Builtin("values", lambda a: list(_obj_arg(a, "values").values()))
    return g


def _obj_arg(args: list, name: str) -> dict:
    v = _raw(args[0]) if args else None
    if type(v) is not dict:
        raise PrismRuntimeError(f"{name}() requires an object")
    return v


def _math(rt: Runtime) -> dict:
    import random

    def unary(name: str, fn: Callable[[float], float]) -> Builtin:
        def apply(args: list) -> Any:
            if len(args) < 1:
                raise PrismRuntimeError(f"Math.{name}() requires a number")
            x = args[0]
            c = x.conf if type(x) is C else None
            v = _num(x, f"Math.{name}() requires a number")
            try:
                r = fn(v)
            except (ValueError, OverflowError):
                r = math.nan if name not in ("exp", "cosh", "sinh") else math.inf
            r = float(r)
            return C(r, c) if c is not None else r
        return Builtin(name, apply)

    def js_round(x: float) -> float:
        if x != x or x in (math.inf, -math.inf):
            return x
        return float(math.floor(x + 0.5))

    def variadic(name: str, pick: Callable) -> Builtin:
        def apply(args: list) -> Any:
            vals = [_num(a, f"Math.{name}() requires numeric arguments") for a in args]
            if not vals:
                return -math.inf if name == "max" else math.inf
            if any(v != v for v in vals):
                return math.nan
            return pick(vals)
        return Builtin(name, apply)

    def pow_(args: list) -> float:
        from .ops import js_pow
        if len(args) != 2:
            raise PrismRuntimeError("Math.pow() requires 2 arguments")
        return js_pow(_num(args[0], "Math.pow() requires numbers"), _num(args[1], "Math.pow() requires numbers"))

    rng = random.Random()
    return {
        "PI": math.pi, "E": math.e, "LN2": math.log(2), "LN10": math.log(10), "SQRT2": math.sqrt(2),
        "abs": unary("abs", abs), "floor": unary("floor", lambda x: x if not math.isfinite(x) else math.floor(x)),
        "ceil": unary("ceil", lambda x: x if not math.isfinite(x) else math.ceil(x)),
        "round": unary("round", js_round),
        "trunc": unary("trunc", lambda x: x if not math.isfinite(x) else math.trunc(x)),
        "sign": unary("sign", lambda x: x if x != x else (1.0 if x > 0 else (-1.0 if x < 0 else 0.0))),
        "sqrt": unary("sqrt", lambda x: math.sqrt(x) if x >= 0 else math.nan),
        "cbrt": unary("cbrt", lambda x: math.copysign(abs(x) ** (1 / 3), x)),
        "exp": unary("exp", math.exp), "log": unary("log", lambda x: math.log(x) if x > 0 else
                                                     (-math.inf if x == 0 else math.nan)),
        "log2": unary("log2", lambda x: math.log2(x) if x > 0 else (-math.inf if x == 0 else math.nan)),
        "log10": unary("log10", lambda x: math.log10(x) if x > 0 else (-math.inf if x == 0 else math.nan)),
        "sin": unary("sin", math.sin), "cos": unary("cos", math.cos), "tan": unary("tan", math.tan),
        "atan": unary("atan", math.atan), "asin": unary("asin", math.asin), "acos": unary("acos", math.acos),
        "max": variadic("max", max), "min": variadic("min", min), "pow": Builtin("pow", pow_),
        "random": Builtin("random", lambda a: rng.random()),
        "hypot": Builtin("hypot", lambda a: math.hypot(*[_num(x, "Math.hypot() requires numbers") for x in a])),
        "atan2": Builtin("atan2", lambda a: math.atan2(_num(a[0] if a else None, "Math.atan2() requires numbers"),
                                                       _num(a[1] if len(a) > 1 else None,
                                                            "Math.atan2() requires numbers"))),
    }


def _json(rt: Runtime) -> dict:
    budget = rt.budget

    def to_jsonable(v: Any, depth: int = 0, g: Any = None) -> Any:
        if depth > 500:
            raise PrismRuntimeError("JSON.stringify(): value nested too deeply")
        if g is None:
            from .values import Guard
            g = Guard()
        g.node()
        v = _raw(v)
        t = type(v)
        if t is float:
            if v != v or v in (math.inf, -math.inf):
                return None
            return int(v) if v.is_integer() and abs(v) < 2 ** 53 else v
        if t in (str, bool) or v is None:
            return v
        if t is list:
            return [to_jsonable(x, depth + 1, g) for x in v]
        if t is dict:
            return {k: to_jsonable(x, depth + 1, g) for k, x in v.items() if not isinstance(_raw(x), Function)}
        return None

    def stringify(args: list) -> Any:
        if not args:
            return None
        indent = None
        if len(args) >= 3 and _raw(args[2]) is not None:
            ind = _raw(args[2])
            indent = (int(min(10.0, ind)) if ind == ind else None) if type(ind) is float else (
                ind[:10] if type(ind) is str else None)
        if isinstance(_raw(args[0]), Function):
            return None
        text = json.dumps(to_jsonable(args[0]), ensure_ascii=False, indent=indent,
                          separators=(",", ":") if indent is None else (",", ": "))
        budget.check_string(len(text))
        return text

    def parse(args: list) -> Any:
        if not args or type(_raw(args[0])) is not str:
            raise PrismRuntimeError("JSON.parse() requires a string")
        text = _raw(args[0])
        try:
            data = json.loads(text, parse_constant=lambda c: None)
        except json.JSONDecodeError as e:
            raise PrismRuntimeError(f"JSON.parse(): {e.msg} at line {e.lineno}, column {e.colno}") from None
        except RecursionError:
            raise PrismRuntimeError("JSON.parse(): value nested too deeply") from None
        return from_host(data)

    return {"stringify": Builtin("stringify", stringify), "parse": Builtin("parse", parse)}


def _object(rt: Runtime) -> dict:
    budget = rt.budget

    def obj(args: list, name: str) -> dict:
        v = _raw(args[0]) if args else None
        if type(v) is not dict:
            raise PrismRuntimeError(f"Object.{name}() requires an object")
        return v

    def assign(args: list) -> dict:
        out: dict = {}
        for a in args:
            v = _raw(a)
            if v is None:
                continue
            if type(v) is not dict:
                raise PrismRuntimeError("Object.assign() requires objects")
            budget.check_items(len(out) + len(v))
            out.update(v)
        return out

    def from_entries(args: list) -> dict:
        v = _raw(args[0]) if args else None
        if type(v) is not list:
            raise PrismRuntimeError("Object.fromEntries() requires an array of [key, value] pairs")
        out: dict = {}
        for pair in v:
            p = _raw(pair)
            if type(p) is not list or len(p) < 2:
                raise PrismRuntimeError("Object.fromEntries() requires an array of [key, value] pairs")
            k = _raw(p[0])
            out[k if type(k) is str else display(k)] = p[1]
        return out

    return {
        "keys": Builtin("keys", lambda a: list(obj(a, "keys").keys())),
        "values": Builtin("values", lambda a: list(obj(a, "values").values())),
        "entries": Builtin("entries", lambda a: [[k, v] for k, v in obj(a, "entries").items()]),
        "assign": Builtin("assign", assign),
        "fromEntries": Builtin("fromEntries", from_entries),
    }
