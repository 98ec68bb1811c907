"""Compile resolved Prism nodes into Python closures.

Consumes a resolved ``nodes.Program`` (kernel/resolver.py) and a ``Runtime``;
produces one callable ``run(frame) -> value``.  Every node class has exactly one
``c_<Class>`` method; an unknown class is an internal error (deny by default).
Closures keep their node's span for error locations; the budget is ticked at
calls (runtime.invoke) and at every loop back-edge.
"""
from __future__ import annotations

import math
from operator import itemgetter
from typing import Any, Callable

from . import nodes as N
from . import ops
from .errors import PrismError, PrismInternalError, PrismLimitError, PrismRuntimeError
from .resolver import Ref, Resolution, Scope
from .runtime import (BREAK, CONTINUE, BreakSignal, Closure, ContinueSignal, FunctionCode, ReturnSignal,
                      Runtime, _invoke_sync, await_value, call_value, invoke, wrap_call_result)
from .values import (UNINIT, Builtin, Confident, Function, Promise, display, make_conf, truthy, type_name,
                     utf16_len)

C = Confident
_MISSING = object()


def _level(c: float) -> str:
    return "high" if c >= 0.7 else ("medium" if c >= 0.5 else "low")


class Compiler:
    def __init__(self, rt: Runtime, res: Resolution, filename: str, source: str | None):
        self.rt = rt
        self.res = res
        self.filename = filename
        self.source = source
        self.budget = rt.budget
        from . import builtins
        self.members = builtins.member_of(rt)
        self._funcs: dict[int, Callable] = {}

    # ------------------------------------------------------------ helpers
    def err(self, e: PrismError, span: tuple | None) -> PrismError:
        return e.locate(span, self.filename, self.source)

    def raiser(self, err: PrismError) -> Callable:
        filename, source = self.filename, self.source

        def f(fr: Any) -> Any:
            e = type(err)(err.message, err.span, hint=err.hint)
            raise e.locate(err.span, filename, source)
        return f

    def static_error(self, node: Any) -> Callable | None:
        e = self.res.error_for(node)
        if e is None:
            return None
        return self.raiser(PrismRuntimeError(e.message, e.span, hint=e.hint))

    def program(self, prog: N.Program) -> Callable:
        body = self.stmts(prog.body, prog.scope)
        return body

    # ------------------------------------------------------------ variables
    def getter(self, ref: Ref, span: tuple) -> Callable:
        b = ref.binding
        if b.kind == "global":
            cell = self.rt.frame_globals.get(b.name)
            if cell is not None:                  # a REPL session's earlier top-level binding
                gframe, gslot = cell
                return lambda fr: gframe[gslot]
            if b.name in self.rt.writable:
                g = self.rt.globals
                gname = b.name
                return lambda fr: g[gname]
            value = self.rt.globals[b.name]
            return lambda fr: value
        hops = ref.hops()
        slot = b.slot
        name = b.name
        if ref.check:
            filename, source = self.filename, self.source
            legacy_var = b.kind == "var"

            def checked(fr: Any) -> Any:
                f = fr
                for _ in range(hops):
                    f = f[0]
                v = f[slot]
                if v is UNINIT:
                    msg = (f"Undefined variable: {name}" if legacy_var
                           else f"Cannot access '{name}' before initialization")
                    raise PrismRuntimeError(msg).locate(span, filename, source)
                return v
            return checked
        if hops == 0:
            return itemgetter(slot)
        if hops == 1:
            return lambda fr: fr[0][slot]
        if hops == 2:
            return lambda fr: fr[0][0][slot]

        def deep(fr: Any) -> Any:
            for _ in range(hops):
                fr = fr[0]
            return fr[slot]
        return deep

    def setter(self, ref: Ref, span: tuple, *, init: bool = False) -> Callable[[Any, Any], None]:
        b = ref.binding
        if b.kind == "global":
            cell = self.rt.frame_globals.get(b.name)
            if cell is not None:
                gframe, gslot = cell

                def set_session(fr: Any, v: Any) -> None:
                    gframe[gslot] = v
                return set_session
            g = self.rt.globals
            gname = b.name

            def set_global(fr: Any, v: Any) -> None:
                g[gname] = v
            return set_global
        hops = ref.hops()
        slot = b.slot
        if ref.check and not init and b.kind in ("let", "const"):
            name = b.name
            filename, source = self.filename, self.source

            def checked(fr: Any, v: Any) -> None:
                f = fr
                for _ in range(hops):
                    f = f[0]
                if f[slot] is UNINIT:
                    raise PrismRuntimeError(f"Cannot assign to '{name}' before initialization").locate(
                        span, filename, source)
                f[slot] = v
            return checked
        if hops == 0:
            def s0(fr: Any, v: Any) -> None:
                fr[slot] = v
            return s0
        if hops == 1:
            def s1(fr: Any, v: Any) -> None:
                fr[0][slot] = v
            return s1

        def sn(fr: Any, v: Any) -> None:
            for _ in range(hops):
                fr = fr[0]
            fr[slot] = v
        return sn

    # ------------------------------------------------------------ statements
    def stmts(self, body: list, scope: Scope | None, *, returning: bool = False) -> Callable:
        """A statement list run in ``scope``: creates the scope's frame if it is
        materialized, resets TDZ slots, defines hoisted functions, runs in order.

        ``returning``: the list is (part of) a function body; a ``return`` reached
        through blocks and ``if``s yields a ``_Ret`` marker instead of raising."""
        pre: list[Callable] = []
        flat: list = []
        self._flatten(body, flat)
        seen: set[str] = set()
        for st in flat:
            if type(st) is N.FuncDef and st.name not in seen and isinstance(st.ref, Ref):
                seen.add(st.name)
                pre.append(self.c_FuncDef(st))
        imports = [st for st in flat if type(st) is N.Import]
        for st in imports:
            pre.insert(0, self.import_(st))
        kept = [st for st in body if not (type(st) is N.Import)]
        if returning:
            flags = [_has_return(st) for st in kept]
            compiled = [self.stmt_ret(st) if f else self.stmt(st) for st, f in zip(kept, flags)]
            run = _sequence_ret(compiled, flags) if any(flags) else _sequence(compiled)
        else:
            compiled = [self.stmt(st) for st in kept]
            run = _sequence(compiled)
        resets = list(scope.resets) if scope is not None else []
        materialized = scope is not None and scope.materialized and scope.kind in ("block", "loop", "catch", "arm")
        size = scope.size if scope is not None else 1
        if pre:
            inner = run
            prelude = pre

            def run(fr: Any) -> Any:
                for p in prelude:
                    p(fr)
                return inner(fr)
        if resets:
            inner2 = run

            def run(fr: Any) -> Any:
                for s in resets:
                    fr[s] = UNINIT
                return inner2(fr)
        if materialized:
            inner3 = run
            pad = [UNINIT] * (size - 1)

            def run(fr: Any) -> Any:
                return inner3([fr, *pad])
        return run

    def _flatten(self, body: list, out: list) -> None:
        for st in body:
            if type(st) is N.Context:
                self._flatten(st.body.body, out)
            elif type(st) is N.Export and st.stmt is not None:
                self._flatten([st.stmt], out)
            else:
                out.append(st)

    def stmt(self, st: Any) -> Callable:
        method = getattr(self, "c_" + type(st).__name__, None)
        if method is None:
            raise PrismInternalError(f"no compiler for {type(st).__name__}")
        return method(st)

    def stmt_ret(self, st: Any) -> Callable:
        """A statement of a function body in returning mode (see ``stmts``)."""
        t = type(st)
        if t is N.Return and self.res.error_for(st) is None:
            value = self.expr(st.value) if st.value is not None else (lambda fr: 0.0)
            return lambda fr: _Ret(value(fr))
        if t is N.Block:
            return self.c_Block(st, returning=True)
        if t is N.If:
            return self.c_If(st, branch=self.stmt_ret)
        return self.stmt(st)             # loops, try …: a return inside raises ReturnSignal

    def c_ExprStmt(self, st: N.ExprStmt) -> Callable:
        return self.expr(st.expr)

    def c_Block(self, st: N.Block, *, returning: bool = False) -> Callable:
        if not st.body:
            return lambda fr: 0.0
        return self.stmts(st.body, st.scope, returning=returning)

    def c_Let(self, st: N.Let) -> Callable:
        e = self.static_error(st)
        if e is not None:
            return e
        init = self.expr(st.init) if st.init is not None else (lambda fr: None)
        pat = st.target
        if type(pat) is N.PName and pat.threshold is None:
            if pat.ref is None:
                def discard(fr: Any) -> float:
                    init(fr)
                    return 0.0
                return discard
            b = pat.ref.binding
            hops = pat.ref.hops()
            slot = b.slot
            if hops == 0:
                def let0(fr: Any) -> float:
                    fr[slot] = init(fr)
                    return 0.0
                return let0
            set_ = self.setter(pat.ref, st.span, init=True)

            def let_(fr: Any) -> float:
                set_(fr, init(fr))
                return 0.0
            return let_
        bind = self.destructure(pat, init=True)

        def let_pattern(fr: Any) -> float:
            bind(fr, init(fr), None)
            return 0.0
        return let_pattern

    def c_Assign(self, st: N.Assign) -> Callable:
        tgt = st.target
        value = self.expr(st.value)
        op = st.op
        span = st.span
        if op != "=":
            bop = op[:-1]
            combine = self.binop_fn(bop, span)
        if type(tgt) is N.Name:
            e = self.static_error(tgt)
            if e is not None or tgt.ref is None:
                if e is not None:
                    return e
                return self.raiser(PrismRuntimeError(f"Undefined variable: {tgt.name}", tgt.span))
            set_ = self.setter(tgt.ref, tgt.span)
            b = tgt.ref.binding
            direct = (op == "=" and b.kind != "global" and not tgt.ref.check and tgt.ref.hops() == 0)
            if direct:
                slot = b.slot

                def assign_local(fr: Any) -> Any:
                    v = fr[slot] = value(fr)
                    return v
                return assign_local
            if op == "=":
                def assign(fr: Any) -> Any:
                    v = value(fr)
                    set_(fr, v)
                    return v
                return assign
            get = self.getter(tgt.ref, tgt.span)

            def compound(fr: Any) -> Any:
                v = combine(get(fr), value(fr))
                set_(fr, v)
                return v
            return compound
        obj = self.expr(tgt.obj)
        key = (lambda fr, k=tgt.name: k) if type(tgt) is N.Member else self.expr(tgt.index)
        store = self.store_fn(span)
        load = self.load_fn(tgt)
        if op == "=":
            def assign_member(fr: Any) -> Any:
                o = obj(fr)
                k = key(fr)
                v = value(fr)
                store(o, k, v)
                return v
            return assign_member

        def compound_member(fr: Any) -> Any:
            o = obj(fr)
            k = key(fr)
            v = combine(load(o, k), value(fr))
            store(o, k, v)
            return v
        return compound_member

    def load_fn(self, tgt: Any) -> Callable:
        members = self.members
        span = tgt.span
        filename, source = self.filename, self.source
        if type(tgt) is N.Member:
            def load(o: Any, k: Any) -> Any:
                try:
                    return members.get(o, k, ".")
                except PrismError as e:
                    raise e.locate(span, filename, source)
            return load
        index = self.members.index

        def load_index(o: Any, k: Any) -> Any:
            try:
                return index(o, k)
            except PrismError as e:
                raise e.locate(span, filename, source)
        return load_index

    def store_fn(self, span: tuple) -> Callable:
        rt = self.rt
        filename, source = self.filename, self.source
        budget = self.budget

        def store(o: Any, k: Any, v: Any) -> None:
            try:
                if type(k) is C:
                    k = k.value
                t = type(o)
                if t is dict:
                    if type(k) is not str:
                        if type(k) is float:
                            k = display(k)
                        else:
                            raise PrismRuntimeError("Object key must be a string")
                    rt.check_mutable(o)
                    if k not in o:
                        budget.check_items(len(o) + 1)
                    o[k] = v
                elif t is list:
                    if type(k) is not float:
                        raise PrismRuntimeError("Array index must be a number")
                    rt.check_mutable(o)
                    i = int(math.floor(k)) if k == k and k not in (math.inf, -math.inf) else -1
                    if 0 <= i < len(o):
                        o[i] = v
                    elif i == len(o):
                        budget.check_items(i + 1)
                        o.append(v)
                    else:
                        raise PrismRuntimeError(f"Array index {display(float(i)) if i >= 0 else display(k)} "
                                                "out of bounds")
                elif o is None:
                    raise PrismRuntimeError(f"Cannot set property '{display(k)}' on null")
                else:
                    raise PrismRuntimeError(f"Cannot set property '{display(k)}' on {type_name(o)}")
            except PrismError as e:
                raise e.locate(span, filename, source)
        return store

    def c_Update(self, st: N.Update) -> Callable:
        delta = 1.0 if st.op == "++" else -1.0
        prefix = st.prefix
        span = st.span
        filename, source = self.filename, self.source

        def bump(v: Any) -> Any:
            if type(v) is float:
                return v + delta
            if type(v) is C and type(v.value) is float:
                return C(v.value + delta, v.conf)
            raise PrismRuntimeError(f"Cannot apply {st.op} to {type_name(v)}").locate(span, filename, source)

        tgt = st.target
        if type(tgt) is N.Name:
            e = self.static_error(tgt)
            if e is not None or tgt.ref is None:
                return e or self.raiser(PrismRuntimeError(f"Undefined variable: {tgt.name}", tgt.span))
            get = self.getter(tgt.ref, tgt.span)
            set_ = self.setter(tgt.ref, tgt.span)

            def update(fr: Any) -> Any:
                old = get(fr)
                new = bump(old)
                set_(fr, new)
                return new if prefix else old
            return update
        obj = self.expr(tgt.obj)
        key = (lambda fr, k=tgt.name: k) if type(tgt) is N.Member else self.expr(tgt.index)
        load = self.load_fn(tgt)
        store = self.store_fn(span)

        def update_member(fr: Any) -> Any:
            o = obj(fr)
            k = key(fr)
            old = load(o, k)
            new = bump(old)
            store(o, k, new)
            return new if prefix else old
        return update_member

    def c_Destructure(self, st: N.Destructure) -> Callable:
        for node in N.iter_nodes(st.pattern):
            e = self.static_error(node)
            if e is not None:
                return e
        value = self.expr(st.value)
        thr = self.expr(st.threshold) if st.threshold is not None else None
        bind = self.destructure(st.pattern, init=False)
        span = st.span
        filename, source = self.filename, self.source

        def destructure(fr: Any) -> Any:
            v = value(fr)
            t = None
            if thr is not None:
                t = thr(fr)
                if type(t) is C:
                    t = t.value
                if type(t) is not float:
                    raise PrismRuntimeError("Confidence threshold must be a number").locate(span, filename, source)
                if t != t:
                    t = math.inf                # conf >= NaN is false: a NaN threshold admits nothing
            bind(fr, v, t)
            return v
        return destructure

    def c_FuncDef(self, st: N.FuncDef) -> Callable:
        cached = self._funcs.get(id(st))
        if cached is not None:
            return cached
        e = self.static_error(st)
        if e is not None:
            return e
        make = self.e_Lambda(st.func)
        set_ = self.setter(st.ref, st.span, init=True)
        ann = self.expr(st.func.annotation) if st.func.annotation is not None else None

        def define(fr: Any) -> Any:
            fn = make(fr)
            if ann is not None:
                c = ann(fr)
                if type(c) is C:
                    c = c.value
                if type(c) is float:
                    fn = C(fn, make_conf(c))
            set_(fr, fn)
            return fn
        self._funcs[id(st)] = define
        return define

    def c_Return(self, st: N.Return) -> Callable:
        e = self.static_error(st)
        if e is not None:
            return e
        value = self.expr(st.value) if st.value is not None else (lambda fr: 0.0)

        def ret(fr: Any) -> Any:
            raise ReturnSignal(value(fr))
        return ret

    def c_Break(self, st: N.Break) -> Callable:
        e = self.static_error(st)
        if e is not None:
            return e

        def brk(fr: Any) -> Any:
            raise BREAK
        return brk

    def c_Continue(self, st: N.Continue) -> Callable:
        e = self.static_error(st)
        if e is not None:
            return e

        def cont(fr: Any) -> Any:
            raise CONTINUE
        return cont

    def c_Throw(self, st: N.Throw) -> Callable:
        value = self.expr(st.value)
        span = st.span
        filename, source = self.filename, self.source

        def throw(fr: Any) -> Any:
            v = value(fr)
            raw = v.value if type(v) is C else v
            if type(raw) is dict and type(raw.get("message")) is str:
                msg = raw["message"]
            else:
                msg = display(raw)
            raise PrismRuntimeError(msg, value=v).locate(span, filename, source)
        return throw

    def c_If(self, st: N.If, *, branch: Callable | None = None) -> Callable:
        """``branch`` compiles the two arms (``stmt_ret`` inside function bodies)."""
        branch = branch or self.stmt
        cond = self.expr(st.cond)
        then = branch(st.then)
        other = branch(st.other) if st.other is not None else None

        if other is None:
            def if_(fr: Any) -> Any:
                c = cond(fr)
                if c is True or (c is not False and truthy(c)):
                    return then(fr)
                return 0.0
            return if_

        def if_else(fr: Any) -> Any:
            c = cond(fr)
            if c is True or (c is not False and truthy(c)):
                return then(fr)
            return other(fr)
        return if_else

    def _branches(self, st: N.Uncertain) -> dict:
        return {k: self.stmt(v) for k, v in st.branches.items()}

    def c_Uncertain(self, st: N.Uncertain) -> Callable:
        span = st.span
        filename, source = self.filename, self.source
        branches = self._branches(st)
        default = branches.get("default")
        table = {lvl: branches.get(lvl, default) for lvl in ("high", "medium", "low")}
        budget = self.budget
        if st.kind == "if":
            cond = self.expr(st.cond)

            def uncertain_if(fr: Any) -> Any:
                c = cond(fr)
                if type(c) is not C:
                    raise PrismRuntimeError("Uncertain if requires a confidence expression").locate(
                        span, filename, source)
                b = table[_level(c.conf)]
                return b(fr) if b is not None else 0.0
            return uncertain_if
        cond = self.expr(st.cond) if st.cond is not None else (lambda fr: True)
        init = self.stmt(st.init) if st.init is not None else None
        update = self.stmt(st.update) if st.update is not None else None
        scope = st.scope
        size = scope.size if scope is not None and scope.materialized else 0

        def uncertain_loop(fr: Any) -> Any:
            if size:
                fr = [fr] + [UNINIT] * (size - 1)
            if init is not None:
                init(fr)
            v = None
            while True:
                c = cond(fr)
                if type(c) is C:
                    go = truthy(c.value)
                    level = _level(c.conf)
                else:
                    go = truthy(c)
                    level = "high"
                if not go:
                    break
                b = table[level]
                if b is None:
                    break
                budget.n -= 1
                if budget.n < 0:
                    budget.refill()
                try:
                    v = b(fr)
                except BreakSignal:
                    break
                except ContinueSignal:
                    pass
                if update is not None:
                    update(fr)
            return v
        return uncertain_loop

    def c_While(self, st: N.While) -> Callable:
        cond = self.expr(st.cond)
        body = self.stmt(st.body)
        budget = self.budget
        if not _has_jump(st.body):
            def while_fast(fr: Any) -> Any:
                v = None
                b = budget
                while True:
                    c = cond(fr)
                    if not (c is True or (c is not False and truthy(c))):
                        return v
                    b.n -= 1
                    if b.n < 0:
                        b.refill()
                    v = body(fr)
            return while_fast

        def while_(fr: Any) -> Any:
            v = None
            b = budget
            while True:
                c = cond(fr)
                if not (c is True or (c is not False and truthy(c))):
                    return v
                b.n -= 1
                if b.n < 0:
                    b.refill()
                try:
                    v = body(fr)
                except BreakSignal:
                    return v
                except ContinueSignal:
                    pass
        return while_

    def c_DoWhile(self, st: N.DoWhile) -> Callable:
        cond = self.expr(st.cond)
        body = self.stmt(st.body)
        budget = self.budget

        def do_while(fr: Any) -> Any:
            v = None
            b = budget
            while True:
                b.n -= 1
                if b.n < 0:
                    b.refill()
                try:
                    v = body(fr)
                except BreakSignal:
                    return v
                except ContinueSignal:
                    pass
                c = cond(fr)
                if not (c is True or (c is not False and truthy(c))):
                    return v
        return do_while

    def c_For(self, st: N.For) -> Callable:
        init = self.stmt(st.init) if st.init is not None else None
        cond = self.expr(st.cond) if st.cond is not None else None
        update = self.stmt(st.update) if st.update is not None else None
        body = self.stmt(st.body)
        budget = self.budget
        scope = st.scope
        size = scope.size if scope.materialized else 0
        jumps = _has_jump(st.body)

        def for_(fr: Any) -> Any:
            if size:
                fr = [fr] + [UNINIT] * (size - 1)
            if init is not None:
                init(fr)
            v = None
            b = budget
            while True:
                if cond is not None:
                    c = cond(fr)
                    if not (c is True or (c is not False and truthy(c))):
                        return v
                b.n -= 1
                if b.n < 0:
                    b.refill()
                if jumps:
                    try:
                        v = body(fr)
                    except BreakSignal:
                        return v
                    except ContinueSignal:
                        pass
                else:
                    v = body(fr)
                if size:
                    fr = fr[:]            # closures made in this iteration keep their own copy
                if update is not None:
                    update(fr)
        return for_

    def c_ForIn(self, st: N.ForIn) -> Callable:
        iterable = self.expr(st.iterable)
        body = self.stmt(st.body)
        budget = self.budget
        scope = st.scope
        size = scope.size if scope.materialized else 0
        span = st.span
        filename, source = self.filename, self.source
        of = st.of
        target = st.target
        simple = type(target) is N.PName and target.threshold is None
        if simple:
            set_var = self.setter(target.ref, target.span, init=True) if target.ref is not None else (lambda fr, v: None)
        else:
            bind = self.destructure(target, init=True)

            def set_var(fr: Any, v: Any) -> None:
                bind(fr, v, None)
        set_idx = self.setter(st.index.ref, st.index.span, init=True) if st.index is not None and st.index.ref is not None else None
        jumps = _has_jump(st.body)

        def for_in(fr: Any) -> Any:
            it = iterable(fr)
            if type(it) is C:
                it = it.value
            if type(it) is list:
                seq = list(it)
            elif of and type(it) is str:
                seq = list(it)
            elif of and type(it) is dict:
                raise PrismRuntimeError("for...of needs an array (use Object.keys / Object.entries for objects)"
                                        ).locate(span, filename, source)
            else:
                raise PrismRuntimeError("for...in loop requires an array" if not of else
                                        "for...of loop requires an array").locate(span, filename, source)
            v = None
            b = budget
            outer = fr
            for i, item in enumerate(seq):
                b.n -= 1
                if b.n < 0:
                    b.refill()
                if size:
                    fr = [outer] + [UNINIT] * (size - 1)
                set_var(fr, item)
                if set_idx is not None:
                    set_idx(fr, float(i))
                if jumps:
                    try:
                        v = body(fr)
                    except BreakSignal:
                        return v
                    except ContinueSignal:
                        pass
                else:
                    v = body(fr)
            return v
        return for_in

    def c_Try(self, st: N.Try) -> Callable:
        body = self.stmt(st.body)
        catch = self.stmt(st.catch_body) if st.catch_body is not None else None
        final = self.stmt(st.final) if st.final is not None else None
        scope = st.catch_scope
        size = scope.size if scope is not None and scope.materialized else 0
        set_err = None
        if st.catch_name is not None and st.catch_name.ref is not None:
            set_err = self.setter(st.catch_name.ref, st.catch_name.span, init=True)

        def try_(fr: Any) -> Any:
            try:
                return body(fr)
            except PrismRuntimeError as e:
                if catch is None:
                    raise
                cf = [fr] + [UNINIT] * (size - 1) if size else fr
                if set_err is not None:
                    set_err(cf, e.message if e.value is None else e.value)
                return catch(cf)
            except RecursionError:
                raise
            finally:
                if final is not None:
                    final(fr)
        return try_

    def c_Context(self, st: N.Context) -> Callable:
        body = _sequence([self.stmt(s) for s in st.body.body])
        rt = self.rt
        name = st.name

        def context(fr: Any) -> Any:
            rt.context_stack.append(name)
            try:
                return body(fr)
            finally:
                rt.context_stack.pop()
        return context

    def c_Agents(self, st: N.Agents) -> Callable:
        defs = []
        for name, props in st.agents:
            entries = [(p.key, self.expr(p.value)) for p in props]
            defs.append((self.setter(name.ref, name.span, init=True), entries))
        budget = self.budget

        def agents(fr: Any) -> Any:
            last = None
            for set_, entries in defs:
                obj = {k: f(fr) for k, f in entries}
                set_(fr, obj)
                last = obj
            return last
        return agents

    def c_Import(self, st: N.Import) -> Callable:
        return lambda fr: 0.0

    def import_(self, st: N.Import) -> Callable:
        rt = self.rt
        span = st.span
        filename, source = self.filename, self.source
        spec = st.source
        default = self.setter(st.default.ref, st.default.span, init=True) if st.default is not None else None
        namespace = self.setter(st.namespace.ref, st.namespace.span, init=True) if st.namespace is not None else None
        names = [(key, self.setter(local.ref, local.span, init=True)) for key, local in st.names]

        def do_import(fr: Any) -> Any:
            from .modules import load_module
            try:
                mod = load_module(rt, spec, filename)
                exports = mod.exports
                if default is not None:
                    if "default" not in exports:
                        raise PrismRuntimeError(f"Module {mod.display} has no default export")
                    default(fr, exports["default"])
                if namespace is not None:
                    namespace(fr, dict(exports))
                for key, set_ in names:
                    if key not in exports:
                        if mod.loading:
                            set_(fr, None)
                            continue
                        raise PrismRuntimeError(f"Module {mod.display} has no export named '{key}'")
                    set_(fr, exports[key])
            except PrismError as e:
                raise e.locate(span, filename, source)
            return 0.0
        return do_import

    def c_Export(self, st: N.Export) -> Callable:
        rt = self.rt
        span = st.span
        filename, source = self.filename, self.source
        module = self.module_exports
        if st.kind == "default":
            value = self.expr(st.value)

            def export_default(fr: Any) -> Any:
                v = value(fr)
                module["default"] = v
                return 0.0
            return export_default
        if st.kind == "decl":
            inner = self.stmt(st.stmt)
            getters = [(exported, self.getter(n.ref, n.span)) for (local, exported), n in zip(st.names, st.ref_list)
                       if n.ref is not None]

            def export_decl(fr: Any) -> Any:
                inner(fr)
                for exported, get in getters:
                    module[exported] = get(fr)
                return 0.0
            return export_decl
        if st.kind == "names" and st.source is None:
            pairs = []
            for (local, exported), n in zip(st.names, st.ref_list):
                if n.ref is None:
                    return self.raiser(PrismRuntimeError(f"Cannot export '{local}': variable not defined", span))
                pairs.append((exported, self.getter(n.ref, n.span)))

            def export_names(fr: Any) -> Any:
                for exported, get in pairs:
                    module[exported] = get(fr)
                return 0.0
            return export_names
        spec = st.source
        names = st.names

        def export_from(fr: Any) -> Any:
            from .modules import load_module
            try:
                mod = load_module(rt, spec, filename)
                if st.kind == "all":
                    for k, v in mod.exports.items():
                        if k != "default":
                            module[k] = v
                else:
                    for local, exported in names:
                        if local not in mod.exports:
                            raise PrismRuntimeError(f"Module {mod.display} has no export named '{local}'")
                        module[exported] = mod.exports[local]
            except PrismError as e:
                raise e.locate(span, filename, source)
            return 0.0
        return export_from

    module_exports: dict = {}       # set per module by compile_program; export statements fill it

    # ------------------------------------------------------------ patterns
    def destructure(self, pat: Any, *, init: bool) -> Callable[[Any, Any, Any], None]:
        """bind(fr, value, global_threshold): spec §3.15 (failing thresholds bind null)."""
        t = type(pat)
        filename, source = self.filename, self.source
        span = pat.span
        if t is N.PName:
            own = self._threshold(pat.threshold, "Element confidence threshold must be a number")
            if pat.ref is None:
                return lambda fr, v, g: None
            set_ = self.setter(pat.ref, pat.span, init=init)

            def bind_name(fr: Any, v: Any, g: Any) -> None:
                thr = own(fr) if own is not None else g
                if thr is not None and (v.conf if type(v) is C else 1.0) < thr:
                    v = None
                set_(fr, v)
            return bind_name
        if t is N.PArray:
            elems = []
            for el in pat.elems:
                if el is None:
                    elems.append(None)
                    continue
                elems.append((self.destructure(el, init=init),
                              self._threshold(el.threshold, "Element confidence threshold must be a number")
                              if type(el) is not N.PName else None,
                              type(el) is not N.PName))
            rest = self.destructure(pat.rest, init=init) if pat.rest is not None else None
            own = self._threshold(pat.threshold, "Confidence threshold must be a number") if pat.threshold is not None else None
            n = len(elems)

            def bind_array(fr: Any, v: Any, g: Any) -> None:
                if own is not None:
                    g = own(fr)
                if type(v) is not list:
                    raise PrismRuntimeError("Cannot destructure non-array value").locate(span, filename, source)
                for i, el in enumerate(elems):
                    if el is None:
                        continue
                    bind, thr_fn, nested = el
                    item = v[i] if i < len(v) else None
                    if nested:
                        thr = thr_fn(fr) if thr_fn is not None else g
                        if thr is not None and (item.conf if type(item) is C else 1.0) < thr:
                            item = [] if type(el) is N.PArray else {}
                            item = _empty_like(pat.elems[i])
                        bind(fr, item, None if thr_fn is not None else g)
                    else:
                        bind(fr, item, g)
                if rest is not None:
                    tail = v[n:]
                    if g is not None:
                        tail = [x for x in tail if (x.conf if type(x) is C else 1.0) >= g]
                    rest(fr, tail, None)
            return bind_array
        if t is N.PObject:
            props = []
            for pr in pat.props:
                props.append((pr.key, self.destructure(pr.pattern, init=init),
                              self._threshold(pr.threshold, "Property confidence threshold must be a number"),
                              self.expr(pr.default) if pr.default is not None else None,
                              type(pr.pattern) is not N.PName, pr.pattern))
            rest = self.destructure(pat.rest, init=init) if pat.rest is not None else None
            own = self._threshold(pat.threshold, "Confidence threshold must be a number") if pat.threshold is not None else None
            keys = {pr.key for pr in pat.props}

            def bind_object(fr: Any, v: Any, g: Any) -> None:
                if own is not None:
                    g = own(fr)
                if type(v) is not dict:
                    raise PrismRuntimeError("Cannot destructure non-object value").locate(span, filename, source)
                for key, bind, thr_fn, default, nested, sub in props:
                    item = v.get(key, _MISSING)
                    if item is _MISSING:
                        item = default(fr) if default is not None else None
                    thr = thr_fn(fr) if thr_fn is not None else g
                    if nested:
                        if thr is not None and (item.conf if type(item) is C else 1.0) < thr:
                            item = _empty_like(sub)
                        bind(fr, item, thr if thr_fn is not None else g)
                    else:
                        if thr is not None and (item.conf if type(item) is C else 1.0) < thr:
                            item = None
                        bind(fr, item, None)
                if rest is not None:
                    others = {k: x for k, x in v.items() if k not in keys and
                              (g is None or (x.conf if type(x) is C else 1.0) >= g)}
                    rest(fr, others, None)
            return bind_object
        raise PrismInternalError(f"no destructuring for {t.__name__}")

    def _threshold(self, node: Any, message: str) -> Callable | None:
        if node is None:
            return None
        f = self.expr(node)
        span = node.span
        filename, source = self.filename, self.source

        def thr(fr: Any) -> float:
            t = f(fr)
            if type(t) is C:
                t = t.value
            if type(t) is not float:
                raise PrismRuntimeError(message).locate(span, filename, source)
            return t if t == t else math.inf    # conf >= NaN is false: a NaN threshold admits nothing
        return thr

    def matcher(self, pat: Any) -> Callable[[Any, Any, Any], bool]:
        """match(fr, value, threshold) -> bool, binding names on success (spec §3.11)."""
        t = type(pat)
        if t is N.PWild:
            def wild(fr: Any, v: Any, thr: Any) -> bool:
                return thr is None or (v.conf if type(v) is C else 1.0) >= thr
            return wild
        if t is N.PLiteral:
            lit = pat.value

            def literal(fr: Any, v: Any, thr: Any) -> bool:
                if thr is not None and (v.conf if type(v) is C else 1.0) < thr:
                    return False
                u = v.value if type(v) is C else v
                if lit is None:
                    return u is None
                return type(u) is type(lit) and u == lit
            return literal
        if t is N.PName:
            own = self._threshold(pat.threshold, "Confidence threshold must be a number")
            set_ = self.setter(pat.ref, pat.span, init=True) if pat.ref is not None else None

            def name(fr: Any, v: Any, thr: Any) -> bool:
                if own is not None:
                    thr = own(fr)
                if thr is not None and (v.conf if type(v) is C else 1.0) < thr:
                    return False
                if set_ is not None:
                    set_(fr, v)
                return True
            return name
        if t is N.PArray:
            elems = [(self.matcher(el), self._threshold(el.threshold, "Confidence threshold must be a number")
                      if type(el) is not N.PName else None) if el is not None else None for el in pat.elems]
            rest = self.matcher(pat.rest) if pat.rest is not None else None
            own = self._threshold(pat.threshold, "Confidence threshold must be a number")
            n = len(elems)

            def array(fr: Any, v: Any, thr: Any) -> bool:
                if own is not None:
                    thr = own(fr)
                if thr is not None and (v.conf if type(v) is C else 1.0) < thr:
                    return False
                u = v.value if type(v) is C else v
                if type(u) is not list:
                    return False
                if (rest is None and len(u) != n) or len(u) < n:
                    return False
                for i, el in enumerate(elems):
                    if el is None:
                        continue
                    m, own_t = el
                    if not m(fr, u[i], own_t(fr) if own_t is not None else thr):
                        return False
                if rest is not None:
                    return rest(fr, u[n:], None)
                return True
            return array
        if t is N.PObject:
            props = [(pr.key, self.matcher(pr.pattern),
                      self._threshold(pr.threshold, "Confidence threshold must be a number")) for pr in pat.props]
            rest = self.matcher(pat.rest) if pat.rest is not None else None
            own = self._threshold(pat.threshold, "Confidence threshold must be a number")
            keys = {pr.key for pr in pat.props}

            def obj(fr: Any, v: Any, thr: Any) -> bool:
                if own is not None:
                    thr = own(fr)
                if thr is not None and (v.conf if type(v) is C else 1.0) < thr:
                    return False
                u = v.value if type(v) is C else v
                if type(u) is not dict:
                    return False
                for key, m, own_t in props:
                    if key not in u:
                        return False
                    if not m(fr, u[key], own_t(fr) if own_t is not None else thr):
                        return False
                if rest is not None:
                    return rest(fr, {k: x for k, x in u.items() if k not in keys}, None)
                return True
            return obj
        raise PrismInternalError(f"no matcher for {t.__name__}")

    # ------------------------------------------------------------ expressions
    def expr(self, e: Any) -> Callable:
        method = getattr(self, "e_" + type(e).__name__, None)
        if method is None:
            raise PrismInternalError(f"no compiler for expression {type(e).__name__}")
        return method(e)

    def e_Num(self, e: N.Num) -> Callable:
        v = e.value
        return lambda fr: v

    def e_Str(self, e: N.Str) -> Callable:
        v = e.value
        return lambda fr: v

    def e_Const(self, e: N.Const) -> Callable:
        v = e.value
        return lambda fr: v

    def e_Template(self, e: N.Template) -> Callable:
        parts = [(p, None) if isinstance(p, str) else (None, self.expr(p)) for p in e.parts]
        budget = self.budget
        span = e.span
        filename, source = self.filename, self.source

        def template(fr: Any) -> str:
            out = []
            total = 0
            for lit, f in parts:
                s = lit if f is None else display(f(fr))
                total += len(s)
                out.append(s)
            if total > budget.max_string:
                budget.check_string(total)
            return "".join(out)
        return template

    def e_Name(self, e: N.Name) -> Callable:
        if e.ref is None:
            return self.raiser(PrismRuntimeError(f"Undefined variable: {e.name}", e.span,
                                                 hint=(self.res.error_for(e).hint if self.res.error_for(e) else None)))
        return self.getter(e.ref, e.span)

    def e_Placeholder(self, e: N.Placeholder) -> Callable:
        if e.ref is None:
            return self.raiser(PrismRuntimeError("Placeholder (_) can only be used within pipeline expressions",
                                                 e.span))
        return self.getter(e.ref, e.span)

    def e_Hole(self, e: N.Hole) -> Callable:
        return lambda fr: None

    def e_ArrayLit(self, e: N.ArrayLit) -> Callable:
        budget = self.budget
        if not any(type(x) is N.Spread for x in e.elems):
            items = [self.expr(x) for x in e.elems]
            n = len(items)
            if n == 0:
                return lambda fr: []
            if n == 1:
                a = items[0]
                return lambda fr: [a(fr)]
            if n == 2:
                a, b = items
                return lambda fr: [a(fr), b(fr)]
            return lambda fr: [f(fr) for f in items]
        parts = [(type(x) is N.Spread, self.expr(x.expr if type(x) is N.Spread else x)) for x in e.elems]
        span = e.span
        filename, source = self.filename, self.source

        def array(fr: Any) -> list:
            out: list = []
            for spread, f in parts:
                v = f(fr)
                if spread:
                    while type(v) is C:
                        v = v.value
                    if type(v) is not list:
                        raise PrismRuntimeError("Cannot spread non-array value").locate(span, filename, source)
                    if len(out) + len(v) > budget.max_items:
                        budget.check_items(len(out) + len(v))
                    out.extend(v)
                else:
                    out.append(v)
            if len(out) > budget.max_items:
                budget.check_items(len(out))
            return out
        return array

    def e_ObjectLit(self, e: N.ObjectLit) -> Callable:
        for p in e.props:
            err = self.static_error(p)
            if err is not None:
                return err
        budget = self.budget
        parts = []
        for p in e.props:
            if type(p) is N.Spread:
                parts.append((None, self.expr(p.expr)))
            else:
                parts.append((p.key, self.expr(p.value)))
        span = e.span
        filename, source = self.filename, self.source
        if all(k is not None for k, _ in parts):
            if len(parts) <= 12:
                keys = [k for k, _ in parts]
                fns = [f for _, f in parts]

                def obj_simple(fr: Any) -> dict:
                    return {k: f(fr) for k, f in zip(keys, fns)}
                return obj_simple

        def obj(fr: Any) -> dict:
            out: dict = {}
            for k, f in parts:
                v = f(fr)
                if k is None:
                    while type(v) is C:
                        v = v.value
                    if type(v) is not dict:
                        raise PrismRuntimeError("Cannot spread non-object value").locate(span, filename, source)
                    if len(out) + len(v) > budget.max_items:
                        budget.check_items(len(out) + len(v))
                    out.update(v)
                else:
                    out[k] = v
            return out
        return obj

    def e_Lambda(self, e: N.Lambda) -> Callable:
        scope = e.scope
        simple = (e.rest is None and all(type(p) is N.PName and p.threshold is None and p.ref is not None
                                         for p in e.params))
        binders = []
        if not simple:
            for i, p in enumerate(e.params):
                bind = self.destructure(p, init=True)
                binders.append(_arg_binder(bind))
        rest = None
        if e.rest is not None:
            rbind = self.destructure(e.rest, init=True)

            def rest(fr: Any, items: list) -> None:
                rbind(fr, items, None)
        if e.expr_body:
            body = self.expr(e.body)
        else:
            stmts = e.body.body
            last = stmts[-1] if stmts else None
            if type(last) is N.Return and self.res.error_for(last) is None and len(stmts) > 1 \
                    and not any(type(x) is N.FuncDef for x in stmts):
                # `…; return expr` ends the body: the tail needs no marker
                head = self.stmts(stmts[:-1], scope, returning=True)
                tail = self.expr(last.value) if last.value is not None else (lambda fr: 0.0)

                def body(fr: Any) -> Any:
                    v = head(fr)
                    if type(v) is _Ret:
                        return v.value
                    return tail(fr)
            elif type(last) is N.Return and len(stmts) == 1 and self.res.error_for(last) is None:
                body = self.expr(last.value) if last.value is not None else (lambda fr: 0.0)
            else:
                inner = self.stmts(stmts, scope, returning=True)

                def body(fr: Any) -> Any:
                    v = inner(fr)
                    return v.value if type(v) is _Ret else v
        # slots are assigned per function scope; params first when simple
        if simple:
            expected = list(range(1, len(e.params) + 1))
            if [p.ref.binding.slot for p in e.params] != expected:
                simple = False
                binders = [_arg_binder(self.destructure(p, init=True)) for p in e.params]
        code = FunctionCode(self.rt, e.name if e.name != "lambda" else "lambda", len(e.params), simple,
                            scope.size, body, binders, rest, e.is_async, e.span, e.name == "lambda",
                            self.filename)
        if not simple:
            # arguments are parked in the first slots, then bound by the pattern binders
            code.pad = []

        def make(fr: Any) -> Closure:
            return Closure(code, fr)
        return make

    def e_Call(self, e: N.Call) -> Callable:
        span = e.span
        filename, source = self.filename, self.source
        rt = self.rt
        has_spread = any(type(a) is N.Spread for a in e.args)
        if has_spread:
            parts = [(type(a) is N.Spread, self.expr(a.expr if type(a) is N.Spread else a)) for a in e.args]

            def args_of(fr: Any) -> list:
                out: list = []
                for spread, f in parts:
                    v = f(fr)
                    if spread:
                        if type(v) is C:
                            v = v.value
                        if type(v) is not list:
                            raise PrismRuntimeError(f"Cannot spread non-array value: {type_name(v)}").locate(
                                span, filename, source)
                        out.extend(v)
                    else:
                        out.append(v)
                return out
        else:
            argfns = [self.expr(a) for a in e.args]
            n = len(argfns)
            if n == 0:
                args_of = lambda fr: []  # noqa: E731
            elif n == 1:
                a0 = argfns[0]
                args_of = lambda fr: [a0(fr)]  # noqa: E731
            elif n == 2:
                a0, a1 = argfns
                args_of = lambda fr: [a0(fr), a1(fr)]  # noqa: E731
            else:
                args_of = lambda fr: [f(fr) for f in argfns]  # noqa: E731

        # method call: obj.name(args) without materialising a bound method
        if type(e.callee) is N.Member and e.callee.op == ".":
            obj_f = self.expr(e.callee.obj)
            mname = e.callee.name
            method_call = self.members.method_call

            def call_method(fr: Any) -> Any:
                o = obj_f(fr)
                args = args_of(fr)
                try:
                    return method_call(o, mname, args)
                except PrismError as err:
                    raise err.locate(span, filename, source)
            return call_method

        callee = self.expr(e.callee)

        def call(fr: Any) -> Any:
            f = callee(fr)
            args = args_of(fr)
            if type(f) is Closure:
                try:
                    return _invoke_sync(f, args) if not f.code.is_async else invoke(f, args)
                except PrismError as err:
                    if len(err.stack) < 64:
                        err.stack.append((f.name, filename, span))
                    raise
            try:
                return call_value(rt, f, args, span)
            except PrismError as err:
                raise err.locate(span, filename, source)
        return call

    def e_Member(self, e: N.Member) -> Callable:
        obj = self.expr(e.obj)
        name = e.name
        op = e.op
        get = self.members.get
        span = e.span
        filename, source = self.filename, self.source

        def member(fr: Any) -> Any:
            o = obj(fr)
            if type(o) is dict and op == ".":
                v = o.get(name, _MISSING)
                if v is not _MISSING:
                    return v
            try:
                return get(o, name, op)
            except PrismError as err:
                raise err.locate(span, filename, source)
        return member

    def e_Index(self, e: N.Index) -> Callable:
        obj = self.expr(e.obj)
        idx = self.expr(e.index)
        index = self.members.index
        span = e.span
        filename, source = self.filename, self.source

        def index_(fr: Any) -> Any:
            o = obj(fr)
            k = idx(fr)
            if type(o) is list and type(k) is float:
                i = int(k) if k >= 0 and k == k and k != math.inf else -1
                if 0 <= i < len(o):
                    return o[i]
            try:
                return index(o, k)
            except PrismError as err:
                raise err.locate(span, filename, source)
        return index_

    def e_Unary(self, e: N.Unary) -> Callable:
        operand = self.expr(e.operand)
        op = e.op
        span = e.span
        filename, source = self.filename, self.source
        if op == "!":
            def not_(fr: Any) -> bool:
                v = operand(fr)
                return not (v is True or (v is not False and truthy(v)))
            return not_
        if op == "<~":
            def extract(fr: Any) -> float:
                v = operand(fr)
                return v.conf if type(v) is C else 1.0
            return extract
        if op == "typeof":
            return lambda fr: ops.typeof(operand(fr))
        if op == "-":
            def neg(fr: Any) -> Any:
                v = operand(fr)
                if type(v) is float:
                    return -v
                try:
                    return ops.negate(v)
                except PrismError as err:
                    raise err.locate(span, filename, source)
            return neg
        raise PrismInternalError(f"unknown unary operator {op}")

    def e_Await(self, e: N.Await) -> Callable:
        operand = self.expr(e.operand)
        rt = self.rt
        span = e.span
        filename, source = self.filename, self.source

        def await_(fr: Any) -> Any:
            v = operand(fr)
            try:
                return await_value(rt, v)
            except PrismError as err:
                raise err.locate(span, filename, source)
        return await_

    def binop_fn(self, op: str, span: tuple) -> Callable[[Any, Any], Any]:
        filename, source = self.filename, self.source
        budget = self.budget
        if op == "+":
            lifted = ops.lift("+", lambda a, b: ops.add_plain(a, b, budget.check_string))
        elif op in ops.BINARY:
            lifted = ops.BINARY[op]
        elif op in ops.CONFIDENT:
            lifted = ops.CONFIDENT[op]
        elif op == "instanceof":
            lifted = ops.instanceof
        else:
            raise PrismInternalError(f"unknown operator {op}")

        def apply(a: Any, b: Any) -> Any:
            try:
                return lifted(a, b)
            except PrismError as err:
                raise err.locate(span, filename, source)
        return apply

    def e_Binary(self, e: N.Binary) -> Callable:
        op = e.op
        left = self.expr(e.left)
        right = self.expr(e.right)
        span = e.span
        if op == "&&":
            def and_(fr: Any) -> Any:
                a = left(fr)
                if not (a is True or (a is not False and truthy(a))):
                    return a
                return right(fr)
            return and_
        if op == "||":
            def or_(fr: Any) -> Any:
                a = left(fr)
                if a is True or (a is not False and truthy(a)):
                    return a
                return right(fr)
            return or_
        if op == "??":
            def nullish(fr: Any) -> Any:
                a = left(fr)
                if type(a) is C:
                    b = right(fr) if a.value is None else None
                    if a.value is None:
                        cb = b.conf if type(b) is C else 1.0
                        return C(b.value if type(b) is C else b, min(a.conf, cb))
                    return a
                if a is None:
                    b = right(fr)
                    return b
                return a
            return nullish
        if op == "~??":
            def ccoal(fr: Any) -> Any:
                a = left(fr)
                if (a.conf if type(a) is C else 1.0) >= 0.5:
                    return a
                return right(fr)
            return ccoal
        if op == "~@>":
            filename, source = self.filename, self.source

            def exec_gate(fr: Any) -> Any:
                a = left(fr)
                c = a.conf if type(a) is C else 1.0
                if c >= 0.7:
                    return right(fr)
                return C(a.value if type(a) is C else a, make_conf(c * 0.5))
            return exec_gate
        slow = self.binop_fn(op, span)
        if type(e.right) is N.Num and op in _CONST_OPS:
            return _const_right(op, left, e.right.value, slow)
        if op == "+":
            def add(fr: Any) -> Any:
                a = left(fr)
                b = right(fr)
                if type(a) is float and type(b) is float:
                    return a + b
                return slow(a, b)
            return add
        if op == "-":
            def sub(fr: Any) -> Any:
                a = left(fr)
                b = right(fr)
                if type(a) is float and type(b) is float:
                    return a - b
                return slow(a, b)
            return sub
        if op == "*":
            def mul(fr: Any) -> Any:
                a = left(fr)
                b = right(fr)
                if type(a) is float and type(b) is float:
                    return a * b
                return slow(a, b)
            return mul
        if op == "/":
            def div(fr: Any) -> Any:
                a = left(fr)
                b = right(fr)
                if type(a) is float and type(b) is float and b != 0.0:
                    return a / b
                return slow(a, b)
            return div
        if op == "%":
            fmod = math.fmod
            inf = math.inf

            def mod(fr: Any) -> Any:
                a = left(fr)
                b = right(fr)
                if type(a) is float and type(b) is float and b != 0.0 and -inf < a < inf:
                    return fmod(a, b)
                return slow(a, b)
            return mod
        if op == "<":
            def lt(fr: Any) -> Any:
                a = left(fr)
                b = right(fr)
                if type(a) is float and type(b) is float:
                    return a < b
                return slow(a, b)
            return lt
        if op == "<=":
            def le(fr: Any) -> Any:
                a = left(fr)
                b = right(fr)
                if type(a) is float and type(b) is float:
                    return a <= b
                return slow(a, b)
            return le
        if op == ">":
            def gt(fr: Any) -> Any:
                a = left(fr)
                b = right(fr)
                if type(a) is float and type(b) is float:
                    return a > b
                return slow(a, b)
            return gt
        if op == ">=":
            def ge(fr: Any) -> Any:
                a = left(fr)
                b = right(fr)
                if type(a) is float and type(b) is float:
                    return a >= b
                return slow(a, b)
            return ge
        if op in ("==", "==="):
            def eq(fr: Any) -> Any:
                a = left(fr)
                b = right(fr)
                ta = type(a)
                if ta is type(b) and (ta is float or ta is str or ta is bool):
                    return a == b
                return slow(a, b)
            return eq
        if op in ("!=", "!=="):
            def ne(fr: Any) -> Any:
                a = left(fr)
                b = right(fr)
                ta = type(a)
                if ta is type(b) and (ta is float or ta is str or ta is bool):
                    return a != b
                return slow(a, b)
            return ne

        def binary(fr: Any) -> Any:
            return slow(left(fr), right(fr))
        return binary

    def e_Attach(self, e: N.Attach) -> Callable:
        value = self.expr(e.expr)
        conf = self.expr(e.conf)
        span = e.span
        filename, source = self.filename, self.source

        def attach(fr: Any) -> Any:
            v = value(fr)
            c = conf(fr)
            if type(c) is float and 0.0 <= c <= 1.0:
                return C(v, c)
            try:
                return ops.attach(v, c)
            except PrismError as err:
                raise err.locate(span, filename, source)
        return attach

    def e_Chain(self, e: N.Chain) -> Callable:
        items = [self.expr(x) for x in e.items]

        def chain(fr: Any) -> Any:
            acc = items[0](fr)
            for f in items[1:]:
                acc = ops.chain(acc, f(fr))
            return acc
        return chain

    def e_Ternary(self, e: N.Ternary) -> Callable:
        cond = self.expr(e.cond)
        then = self.expr(e.then)
        other = self.expr(e.other)
        if not e.confident:
            def ternary(fr: Any) -> Any:
                c = cond(fr)
                if c is True or (c is not False and truthy(c)):
                    return then(fr)
                return other(fr)
            return ternary

        def cternary(fr: Any) -> Any:
            c = cond(fr)
            branch = then(fr) if truthy(c) else other(fr)
            cc = c.conf if type(c) is C else 1.0
            cb = branch.conf if type(branch) is C else 1.0
            return C(branch.value if type(branch) is C else branch, make_conf(cc * cb))
        return cternary

    def e_Pipe(self, e: N.Pipe) -> Callable:
        left = self.expr(e.left)
        right = self.expr(e.right)
        set_tmp = self.setter(e.temp, e.span, init=True)
        uses = e.uses_placeholder
        confident = e.confident
        rt = self.rt
        span = e.span
        filename, source = self.filename, self.source

        def pipe(fr: Any) -> Any:
            lv = left(fr)
            set_tmp(fr, lv)
            r = right(fr)
            if not uses and isinstance(r, (Function, C)) and (type(r) is not C or isinstance(r.value, Function)):
                try:
                    r = call_value(rt, r, [lv], span)
                except PrismError as err:
                    raise err.locate(span, filename, source)
            if confident:
                if type(r) is C:
                    return r
                return C(r, lv.conf if type(lv) is C else 1.0)
            return r
        return pipe

    def e_Gate(self, e: N.Gate) -> Callable:
        left = self.expr(e.left)
        arg = self.expr(e.arg)
        span = e.span
        filename, source = self.filename, self.source

        def gate(fr: Any) -> Any:
            try:
                return ops.gate_value(left(fr), arg(fr))
            except PrismError as err:
                raise err.locate(span, filename, source)
        return gate

    def e_Match(self, e: N.Match) -> Callable:
        subject = self.expr(e.subject)
        arms = []
        for arm in e.arms:
            scope = arm.scope
            size = scope.size if scope is not None and scope.materialized else 0
            thr = self._threshold(arm.threshold, "Confidence threshold must be a number")
            m = self.matcher(arm.pattern)
            guard = self.expr(arm.guard) if arm.guard is not None else None
            if type(arm.body) is N.Block:
                body = self.stmts(arm.body.body, None) if arm.body.body else (lambda fr: 0.0)
            else:
                body = self.expr(arm.body)
            arms.append((size, thr, m, guard, body))

        def match(fr: Any) -> Any:
            v = subject(fr)
            for size, thr, m, guard, body in arms:
                af = [fr] + [UNINIT] * (size - 1) if size else fr
                t = thr(af) if thr is not None else None
                if not m(af, v, t):
                    continue
                if guard is not None and not truthy(guard(af)):
                    continue
                return body(af)
            return None
        return match


# ------------------------------------------------------------------ utils

_CONST_OPS = frozenset({"+", "-", "*", "/", "%", "<", "<=", ">", ">=", "==", "===", "!=", "!=="})


def _const_right(op: str, left: Callable, c: float, slow: Callable) -> Callable:
    """``x OP 3``: the number is a constant, so the fast path needs no second call."""
    if op == "+":
        return lambda fr: a + c if type(a := left(fr)) is float else slow(a, c)
    if op == "-":
        return lambda fr: a - c if type(a := left(fr)) is float else slow(a, c)
    if op == "*":
        return lambda fr: a * c if type(a := left(fr)) is float else slow(a, c)
    if op == "/":
        if c == 0.0:
            return lambda fr: slow(left(fr), c)
        return lambda fr: a / c if type(a := left(fr)) is float else slow(a, c)
    if op == "%":
        if c == 0.0 or c != c:
            return lambda fr: slow(left(fr), c)
        fmod = math.fmod
        inf = math.inf
        return lambda fr: fmod(a, c) if type(a := left(fr)) is float and -inf < a < inf else slow(a, c)
    if op == "<":
        return lambda fr: a < c if type(a := left(fr)) is float else slow(a, c)
    if op == "<=":
        return lambda fr: a <= c if type(a := left(fr)) is float else slow(a, c)
    if op == ">":
        return lambda fr: a > c if type(a := left(fr)) is float else slow(a, c)
    if op == ">=":
        return lambda fr: a >= c if type(a := left(fr)) is float else slow(a, c)
    if op in ("==", "==="):
        return lambda fr: a == c if type(a := left(fr)) is float else slow(a, c)
    return lambda fr: a != c if type(a := left(fr)) is float else slow(a, c)


class _Ret:
    """The value of a ``return`` travelling up a function body in returning mode."""
    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value


def _sequence_ret(compiled: list, flags: list) -> Callable:
    if len(compiled) == 1:
        return compiled[0]                  # its _Ret (if any) is the list's value
    if len(compiled) == 2:
        a, b = compiled
        if flags[0]:
            def seq2_ret(fr: Any) -> Any:
                v = a(fr)
                if type(v) is _Ret:
                    return v
                return b(fr)
            return seq2_ret

        def seq2(fr: Any) -> Any:
            a(fr)
            return b(fr)
        return seq2
    pairs = list(zip(compiled, flags))

    def seq_ret(fr: Any) -> Any:
        v = 0.0
        for s, may_return in pairs:
            v = s(fr)
            if may_return and type(v) is _Ret:
                return v
        return v
    return seq_ret


def _has_return(st: Any) -> bool:
    """Does ``st`` contain a return of the enclosing function (not of a nested one)?"""
    return any(type(n) is N.Return for n in N.walk(st, stop=N.is_function))


def _sequence(compiled: list) -> Callable:
    n = len(compiled)
    if n == 0:
        return lambda fr: 0.0
    if n == 1:
        return compiled[0]
    if n == 2:
        a, b = compiled

        def seq2(fr: Any) -> Any:
            a(fr)
            return b(fr)
        return seq2
    head = compiled[:-1]
    last = compiled[-1]

    def seq(fr: Any) -> Any:
        for s in head:
            s(fr)
        return last(fr)
    return seq


def _arg_binder(bind: Callable) -> Callable:
    def binder(fr: Any, v: Any) -> None:
        bind(fr, v, None)
    return binder


def _empty_like(pat: Any) -> Any:
    return [] if type(pat) is N.PArray else {}


_LOOPS = (N.For, N.ForIn, N.While, N.DoWhile)


def _own_loop_boundary(n: Any) -> bool:
    return type(n) in _LOOPS or N.is_function(n) or (type(n) is N.Uncertain and n.kind != "if")


def _has_jump(body: Any) -> bool:
    """Does ``body`` contain a break/continue that targets this loop?"""
    return any(type(n) is N.Break or type(n) is N.Continue for n in N.walk(body, stop=_own_loop_boundary))
