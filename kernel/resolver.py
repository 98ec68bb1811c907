"""Static resolution: scopes, slots and static errors.

Consumes a ``nodes.Program``; fills ``ref``/``scope`` slots on the nodes and
returns a ``Resolution`` with every static error found (for ``prism check``).

Scoping rules (spec §3.4, design §3):

* Environments nest: global (built-ins, host capabilities and inputs; read-only)
  → program (or module) → functions → blocks.  Every block, loop header, for-in
  variable, catch clause and match arm opens a scope; ``in context`` bodies do not.
* ``let``/``const`` names of a scope are pre-declared when the scope is entered
  (temporal dead zone); reading one before its declaration runs is an error.
  Parameters, function declarations, imports and agents are *soft* bindings: a
  later ``let``/``const`` of the same name in the same scope replaces them.
* Function declarations are hoisted within their scope (first one wins at entry,
  later ones rebind when reached).
* Assignment needs an existing binding (strict mode); in legacy mode an assignment
  to an unknown name creates it in the nearest function/program scope.
* Storage: each function (and the program) gets one frame, a Python list whose
  slot 0 links to the enclosing frame.  Block-scoped names are flattened into that
  frame, except in scopes whose names are captured by an inner function: those
  get their own frame each time they are entered, so closures created in a loop
  body see that iteration's bindings.  A name use compiles to (hops, slot).
* Errors that the reference reports at run time (undefined names, assignment to
  const, redeclaration, ``return``/``break`` outside their construct) are recorded
  here and compiled into raising code, so ``evaluate`` keeps run-time semantics
  while ``prism check`` can list them all up front.
"""
from __future__ import annotations

import difflib
from typing import Any

from . import nodes as N
from .errors import PrismStaticError, PrismSyntaxError

HARD = ("let", "const")


class Scope:
    __slots__ = ("kind", "parent", "names", "order", "materialized", "size", "func", "resets",
                 "children", "loop")

    def __init__(self, kind: str, parent: "Scope | None"):
        self.kind = kind                   # global | program | module | function | block | loop | catch | arm
        self.parent = parent
        self.names: dict[str, Binding] = {}
        self.order: list[Binding] = []     # every binding ever created here (incl. replaced)
        self.materialized = kind in ("program", "module", "function", "global")
        self.size = 1
        self.func: Scope = self if kind in ("program", "module", "function", "global") else parent.func
        self.resets: list[int] = []        # flattened slots reset to UNINIT on entry
        self.children: list[Scope] = []
        self.loop = False
        if parent is not None:
            parent.children.append(self)

    def frame_owner(self) -> "Scope":
        s = self
        while not s.materialized:
            s = s.parent
        return s


class Binding:
    __slots__ = ("name", "kind", "scope", "slot", "captured", "decl_pos", "checked", "span")

    def __init__(self, name: str, kind: str, scope: Scope, span: tuple | None):
        self.name = name
        self.kind = kind                   # let const param func import var catch loop arm global temp
        self.scope = scope
        self.slot = -1
        self.captured = False
        self.decl_pos: tuple | None = None  # (line, col) after which reads need no TDZ check
        self.checked = False               # some read needs a TDZ check
        self.span = span

    @property
    def const(self) -> bool:
        return self.kind in ("const", "global", "import_const")


class Ref:
    """A resolved name use: where it is used and what it binds to."""
    __slots__ = ("scope", "binding", "check")

    def __init__(self, scope: Scope, binding: Binding, check: bool):
        self.scope = scope
        self.binding = binding
        self.check = check

    def hops(self) -> int:
        f = self.scope.frame_owner()
        target = self.binding.scope.frame_owner()
        n = 0
        while f is not target:
            f = f.parent.frame_owner()
            n += 1
        return n


class Resolution:
    def __init__(self) -> None:
        self.errors: list[PrismSyntaxError] = []
        self.node_errors: dict[int, PrismSyntaxError] = {}
        self.scopes: list[Scope] = []
        self.exports: list[str] = []

    def error(self, node: Any, msg: str, hint: str | None = None) -> PrismSyntaxError:
        err = PrismStaticError(msg, node.span if node is not None else None, hint=hint)
        self.errors.append(err)
        if node is not None:
            self.node_errors.setdefault(id(node), err)
        return err

    def error_for(self, node: Any) -> PrismSyntaxError | None:
        return self.node_errors.get(id(node))


def _pos_after(span: tuple) -> tuple:
    return (span[2], span[3])


def _pos(span: tuple) -> tuple:
    return (span[0], span[1])


class Resolver:
    def __init__(self, global_names: frozenset | set, *, mode: str = "strict", module: bool = False,
                 writable: frozenset | set = frozenset()):
        self.res = Resolution()
        self.writable = writable
        self.global_names = global_names
        self.mode = mode
        self.module = module
        self.globals = Scope("global", None)
        for name in sorted(global_names):
            b = Binding(name, "global", self.globals, None)
            self.globals.names[name] = b
        self.scope = self.globals
        self.loop_depth = 0
        self.pipe_temp: Ref | None = None
        self.pipe_used = 0

    # ------------------------------------------------------------ helpers
    def push(self, kind: str) -> Scope:
        s = Scope(kind, self.scope)
        self.res.scopes.append(s)
        self.scope = s
        return s

    def pop(self) -> None:
        self.scope = self.scope.parent

    def declare(self, name: str, kind: str, node: Any, scope: Scope | None = None) -> Binding:
        scope = scope or self.scope
        b = Binding(name, kind, scope, node.span if node is not None else None)
        scope.names[name] = b
        scope.order.append(b)
        return b

    def lookup(self, name: str) -> Binding | None:
        s = self.scope
        while s is not None:
            b = s.names.get(name)
            if b is not None:
                return b
            s = s.parent
        return None

    def use(self, name: str, node: Any) -> Ref | None:
        b = self.lookup(name)
        if b is None:
            return None
        check = False
        if b.kind in HARD:
            same_func = b.scope.func is self.scope.func
            if not (same_func and b.decl_pos is not None and _pos(node.span) > b.decl_pos):
                check = True
        elif b.kind == "var":
            check = True
        if check:
            b.checked = True
        if b.scope.func is not self.scope.func and b.kind != "global":
            b.captured = True
        return Ref(self.scope, b, check)

    def _suggest(self, name: str) -> str | None:
        seen: set[str] = set()
        s = self.scope
        while s is not None:
            seen.update(s.names)
            s = s.parent
        close = difflib.get_close_matches(name, sorted(seen), n=1, cutoff=0.75)
        return f"did you mean '{close[0]}'?" if close else None

    # ------------------------------------------------------------ entry
    def resolve_program(self, prog: N.Program) -> Resolution:
        scope = self.push("module" if self.module else "program")
        prog.scope = scope
        self.statements(prog.body, scope, hoist_imports=True)
        self.pop()
        self.finalize()
        return self.res

    # pre-pass: TDZ pre-declarations, hoisted functions, imports
    def _collect(self, body: list, out: list) -> None:
        for st in body:
            t = type(st)
            if t is N.Context:
                self._collect(st.body.body, out)
            elif t is N.Export and st.stmt is not None:
                self._collect([st.stmt], out)
            else:
                out.append(st)

    def statements(self, body: list, scope: Scope, hoist_imports: bool = False) -> None:
        flat: list = []
        self._collect(body, flat)
        seen_hard: dict[str, Any] = {}
        for st in flat:
            t = type(st)
            if t is N.Let:
                for pn in _pattern_names(st.target):
                    if pn.name == "_":
                        continue
                    if pn.name in seen_hard:
                        pn.ref = "redeclared"
                        continue
                    seen_hard[pn.name] = pn
                    existing = scope.names.get(pn.name)
                    if existing is not None and existing.kind not in HARD:
                        continue           # replaces a soft binding when reached
                    self.declare(pn.name, "const" if st.const else "let", pn, scope)
            elif t is N.FuncDef:
                if st.name not in scope.names:
                    b = self.declare(st.name, "func", st, scope)
                    st.ref = "hoist"
            elif t is N.Import and hoist_imports:
                self.import_stmt(st)
        if self.mode == "legacy":
            self._legacy_vars(flat, scope)
        for st in body:
            self.stmt(st)

    def _legacy_vars(self, flat: list, scope: Scope) -> None:
        if scope.kind not in ("program", "module", "function"):
            return
        names: list = []
        for node in N.walk(flat, stop=N.is_function):
            if type(node) is N.Assign and type(node.target) is N.Name:
                names.append(node.target)
            elif type(node) is N.Destructure:
                names.extend(_pattern_names(node.pattern))
        for n in names:
            if self.lookup(n.name) is None and n.name not in scope.names:
                self.declare(n.name, "var", n, scope)

    # ------------------------------------------------------------ statements
    def stmt(self, st: Any) -> None:
        getattr(self, "s_" + type(st).__name__)(st)

    def s_ExprStmt(self, st: N.ExprStmt) -> None:
        self.expr(st.expr)

    def s_Let(self, st: N.Let) -> None:
        if st.init is not None:
            self.expr(st.init)
        self.bind_pattern(st.target, "const" if st.const else "let", declaring=True, stmt=st)

    def bind_pattern(self, pat: Any, kind: str, *, declaring: bool, stmt: Any = None) -> None:
        """Bind the names of a pattern in the current scope (thresholds and defaults
        are expressions evaluated in it)."""
        t = type(pat)
        if t is N.PName:
            if pat.threshold is not None:
                self.expr(pat.threshold)
            if pat.name == "_":
                pat.ref = None
                return
            if pat.ref == "redeclared":
                self.res.error(stmt if stmt is not None else pat,
                               f"Variable '{pat.name}' already declared in this scope")
                pat.ref = None
                return
            b = self.scope.names.get(pat.name) if declaring else None
            if not (b is not None and b.kind in HARD and kind in HARD):
                b = self.declare(pat.name, kind, pat)
            if stmt is not None:
                b.decl_pos = _pos_after(stmt.span)
            pat.ref = Ref(self.scope, b, False)
        elif t is N.PArray:
            if pat.threshold is not None:
                self.expr(pat.threshold)
            for el in pat.elems:
                if el is not None:
                    self.bind_pattern(el, kind, declaring=declaring, stmt=stmt)
            if pat.rest is not None:
                self.bind_pattern(pat.rest, kind, declaring=declaring, stmt=stmt)
        elif t is N.PObject:
            if pat.threshold is not None:
                self.expr(pat.threshold)
            for pr in pat.props:
                if pr.threshold is not None:
                    self.expr(pr.threshold)
                if pr.default is not None:
                    self.expr(pr.default)
                self.bind_pattern(pr.pattern, kind, declaring=declaring, stmt=stmt)
            if pat.rest is not None:
                self.bind_pattern(pat.rest, kind, declaring=declaring, stmt=stmt)
        elif t in (N.PLiteral, N.PWild):
            pass
        else:  # pragma: no cover
            raise AssertionError(f"no binder for {t.__name__}")

    def assign_pattern(self, pat: Any) -> None:
        """Destructuring assignment: names must exist (strict) or are created (legacy)."""
        t = type(pat)
        if t is N.PName:
            if pat.threshold is not None:
                self.expr(pat.threshold)
            if pat.name == "_":
                pat.ref = None
                return
            pat.ref = self._assign_ref(pat.name, pat)
        elif t is N.PArray:
            if pat.threshold is not None:
                self.expr(pat.threshold)
            for el in pat.elems:
                if el is not None:
                    self.assign_pattern(el)
            if pat.rest is not None:
                self.assign_pattern(pat.rest)
        elif t is N.PObject:
            if pat.threshold is not None:
                self.expr(pat.threshold)
            for pr in pat.props:
                if pr.threshold is not None:
                    self.expr(pr.threshold)
                if pr.default is not None:
                    self.expr(pr.default)
                self.assign_pattern(pr.pattern)
            if pat.rest is not None:
                self.assign_pattern(pat.rest)

    def _assign_ref(self, name: str, node: Any) -> Ref | None:
        ref = self.use(name, node)
        if ref is None:
            self.res.error(node, f"Undefined variable: {name}", hint=self._suggest(name) or
                           f"declare it first with 'let {name} = …'")
            return None
        b = ref.binding
        if b.kind == "global" and name in self.writable:
            return ref
        if b.kind == "global":
            self.res.error(node, f"Cannot assign to built-in or input '{name}'",
                           hint=f"declare your own with 'let {name} = …'")
            return None
        if b.kind == "const":
            if ref.check or b.decl_pos is None or _pos(node.span) > b.decl_pos or b.scope.func is not self.scope.func:
                self.res.error(node, f"Cannot assign to const variable '{name}'")
                return None
        return ref

    def s_Assign(self, st: N.Assign) -> None:
        self.expr(st.value)
        tgt = st.target
        if type(tgt) is N.Name:
            tgt.ref = self._assign_ref(tgt.name, tgt)
        else:
            self.expr(tgt)

    def s_Update(self, st: N.Update) -> None:
        tgt = st.target
        if type(tgt) is N.Name:
            tgt.ref = self._assign_ref(tgt.name, tgt)
        else:
            self.expr(tgt)

    def s_Destructure(self, st: N.Destructure) -> None:
        self.expr(st.value)
        if st.threshold is not None:
            self.expr(st.threshold)
        self.assign_pattern(st.pattern)

    def s_FuncDef(self, st: N.FuncDef) -> None:
        if st.func.annotation is not None:
            self.expr(st.func.annotation)
        b = self.scope.names.get(st.name)
        if b is None or st.ref != "hoist" and b.kind in HARD:
            if b is not None and b.kind in HARD and b.scope is self.scope:
                self.res.error(st, f"Variable '{st.name}' already declared in this scope")
            b = self.declare(st.name, "func", st)
        st.ref = Ref(self.scope, b, False)
        self.lambda_(st.func)

    def s_Return(self, st: N.Return) -> None:
        if self.scope.func.kind not in ("function",):
            self.res.error(st, "Illegal 'return' outside of a function")
        if st.value is not None:
            self.expr(st.value)

    def s_Break(self, st: N.Break) -> None:
        if self.loop_depth == 0:
            self.res.error(st, "'break' outside of a loop")

    def s_Continue(self, st: N.Continue) -> None:
        if self.loop_depth == 0:
            self.res.error(st, "'continue' outside of a loop")

    def s_Throw(self, st: N.Throw) -> None:
        self.expr(st.value)

    def s_Block(self, st: N.Block) -> None:
        st.scope = self.push("block")
        self.statements(st.body, st.scope)
        self.pop()

    def body(self, st: Any) -> None:
        """A loop or if body: a Block opens its scope; a bare statement does not."""
        self.stmt(st)

    def s_If(self, st: N.If) -> None:
        self.expr(st.cond)
        self.body(st.then)
        if st.other is not None:
            self.body(st.other)

    def _loop_body(self, st: Any) -> None:
        self.loop_depth += 1
        self.body(st)
        self.loop_depth -= 1

    def s_While(self, st: N.While) -> None:
        self.expr(st.cond)
        self._loop_body(st.body)

    def s_DoWhile(self, st: N.DoWhile) -> None:
        self._loop_body(st.body)
        self.expr(st.cond)

    def s_For(self, st: N.For) -> None:
        st.scope = self.push("loop")
        st.scope.loop = True
        if st.init is not None:
            if type(st.init) is N.Let:
                for pn in _pattern_names(st.init.target):
                    if pn.name != "_":
                        self.declare(pn.name, "const" if st.init.const else "let", pn)
            self.stmt(st.init)
        if st.cond is not None:
            self.expr(st.cond)
        if st.update is not None:
            self.stmt(st.update)
        self._loop_body(st.body)
        self.pop()

    def s_ForIn(self, st: N.ForIn) -> None:
        self.expr(st.iterable)
        st.scope = self.push("loop")
        st.scope.loop = True
        kind = "const" if st.const else "loop"
        self.bind_pattern(st.target, kind if kind != "const" else "loop", declaring=True)
        if st.index is not None:
            self.bind_pattern(st.index, "loop", declaring=True)
        self._loop_body(st.body)
        self.pop()

    def s_Uncertain(self, st: N.Uncertain) -> None:
        if st.kind == "if":
            self.expr(st.cond)
            for blk in st.branches.values():
                self.stmt(blk)
            return
        st.scope = self.push("loop")
        st.scope.loop = True
        if st.init is not None:
            if type(st.init) is N.Let:
                for pn in _pattern_names(st.init.target):
                    if pn.name != "_":
                        self.declare(pn.name, "const" if st.init.const else "let", pn)
            self.stmt(st.init)
        if st.cond is not None:
            self.expr(st.cond)
        if st.update is not None:
            self.stmt(st.update)
        self.loop_depth += 1
        for blk in st.branches.values():
            self.stmt(blk)
        self.loop_depth -= 1
        self.pop()

    def s_Try(self, st: N.Try) -> None:
        self.stmt(st.body)
        if st.catch_body is not None:
            st.catch_scope = self.push("catch")
            if st.catch_name is not None:
                self.bind_pattern(st.catch_name, "catch", declaring=True)
            self.stmt(st.catch_body)
            self.pop()
        if st.final is not None:
            self.stmt(st.final)

    def s_Context(self, st: N.Context) -> None:
        for s in st.body.body:
            self.stmt(s)

    def s_Agents(self, st: N.Agents) -> None:
        for name, props in st.agents:
            for p in props:
                self.expr(p.value)
            b = self.scope.names.get(name.name)
            if b is None or b.kind not in HARD:
                b = self.declare(name.name, "import", name)
            name.ref = Ref(self.scope, b, False)

    def import_stmt(self, st: N.Import) -> None:
        if self.scope.kind not in ("program", "module"):
            self.res.error(st, "Imports must be at the top level of a file")
        for pn in [st.default, st.namespace] + [local for _, local in st.names]:
            if pn is None:
                continue
            b = self.declare(pn.name, "import", pn)
            pn.ref = Ref(self.scope, b, False)

    def s_Import(self, st: N.Import) -> None:
        if st.default is None and st.namespace is None and not st.names:
            return
        if (st.default or st.namespace or st.names[0][1]).ref is None:
            self.import_stmt(st)

    def s_Export(self, st: N.Export) -> None:
        if st.kind == "default":
            self.expr(st.value)
            self.res.exports.append("default")
        elif st.kind == "decl":
            self.stmt(st.stmt)
            s = st.stmt
            if type(s) is N.Let and type(s.target) is N.PName:
                st.names = [(s.target.name, s.target.name)]
            elif type(s) is N.FuncDef:
                st.names = [(s.name, s.name)]
            elif type(s) is N.Assign and type(s.target) is N.Name:
                st.names = [(s.target.name, s.target.name)]
            for local, _ in st.names:
                node = N.Name(local, st.span)
                node.ref = self.use(local, node)
                st.ref_list.append(node)
        elif st.kind == "names" and st.source is None:
            for local, exported in st.names:
                node = N.Name(local, st.span)
                node.ref = self.use(local, node)
                if node.ref is None:
                    self.res.error(st, f"Cannot export '{local}': variable not defined")
                st.ref_list.append(node)

    # ------------------------------------------------------------ expressions
    def expr(self, e: Any) -> None:
        getattr(self, "e_" + type(e).__name__)(e)

    def e_Num(self, e: Any) -> None:
        pass

    e_Str = e_Const = e_Hole = e_Num

    def e_Template(self, e: N.Template) -> None:
        saved = self.pipe_temp
        self.pipe_temp = None
        for p in e.parts:
            if not isinstance(p, str):
                self.expr(p)
        self.pipe_temp = saved

    def e_Name(self, e: N.Name) -> None:
        e.ref = self.use(e.name, e)
        if e.ref is None:
            self.res.error(e, f"Undefined variable: {e.name}", hint=self._suggest(e.name))

    def e_Placeholder(self, e: N.Placeholder) -> None:
        e.ref = self.pipe_temp
        if e.ref is not None:
            self.pipe_used += 1

    def e_Spread(self, e: N.Spread) -> None:
        self.expr(e.expr)

    def e_ArrayLit(self, e: N.ArrayLit) -> None:
        for x in e.elems:
            self.expr(x)

    def e_ObjectLit(self, e: N.ObjectLit) -> None:
        for p in e.props:
            if type(p) is N.Spread:
                self.expr(p)
                continue
            if p.default is not None:
                self.res.error(p, "Unexpected '=' in object literal. Did you mean to use destructuring "
                               "assignment?")
                continue
            if p.value is None:
                node = N.Name(p.key, p.span)
                p.value = node
                if p.threshold is not None:
                    p.value = N.Attach(node, p.threshold, p.span)
                    self.expr(p.threshold)
                from .parser import RESERVED
                if p.key in RESERVED:
                    self.res.error(p, f"'{p.key}' is a reserved word and cannot be used as a name")
                    continue
                self.e_Name(node)
            else:
                self.expr(p.value)

    def lambda_(self, fn: N.Lambda) -> None:
        saved_loop, saved_pipe = self.loop_depth, self.pipe_temp
        self.loop_depth = 0
        self.pipe_temp = None
        fn.scope = self.push("function")
        for p in fn.params:
            self.bind_pattern(p, "param", declaring=False)
        if fn.rest is not None:
            self.bind_pattern(fn.rest, "param", declaring=False)
        if fn.expr_body:
            self.expr(fn.body)
        else:
            self.statements(fn.body.body, fn.scope)
        self.pop()
        self.loop_depth, self.pipe_temp = saved_loop, saved_pipe

    def e_Lambda(self, e: N.Lambda) -> None:
        if e.annotation is not None:
            self.expr(e.annotation)
        self.lambda_(e)

    def e_Call(self, e: N.Call) -> None:
        self.expr(e.callee)
        for a in e.args:
            self.expr(a)

    def e_Member(self, e: N.Member) -> None:
        if e.op == "?.":
            saved = self.pipe_temp
            self.pipe_temp = None
            self.expr(e.obj)
            self.pipe_temp = saved
        else:
            self.expr(e.obj)

    def e_Index(self, e: N.Index) -> None:
        self.expr(e.obj)
        self.expr(e.index)

    def e_Unary(self, e: N.Unary) -> None:
        self.expr(e.operand)

    def e_Await(self, e: N.Await) -> None:
        saved = self.pipe_temp
        self.pipe_temp = None
        self.expr(e.operand)
        self.pipe_temp = saved

    def e_Binary(self, e: N.Binary) -> None:
        self.expr(e.left)
        self.expr(e.right)

    def e_Attach(self, e: N.Attach) -> None:
        self.expr(e.expr)
        self.expr(e.conf)

    def e_Chain(self, e: N.Chain) -> None:
        for x in e.items:
            self.expr(x)

    def e_Ternary(self, e: N.Ternary) -> None:
        if e.confident:
            saved = self.pipe_temp
            self.pipe_temp = None
            self.expr(e.cond)
            self.expr(e.then)
            self.expr(e.other)
            self.pipe_temp = saved
        else:
            self.expr(e.cond)
            self.expr(e.then)
            self.expr(e.other)

    def e_Pipe(self, e: N.Pipe) -> None:
        self.expr(e.left)
        b = self.declare(f"%pipe{id(e)}", "temp", e)
        e.temp = Ref(self.scope, b, False)
        saved, saved_used = self.pipe_temp, self.pipe_used
        self.pipe_temp = e.temp
        self.pipe_used = 0
        self.expr(e.right)
        e.uses_placeholder = self.pipe_used > 0
        self.pipe_temp, self.pipe_used = saved, saved_used

    def e_Gate(self, e: N.Gate) -> None:
        self.expr(e.left)
        self.expr(e.arg)

    def e_Match(self, e: N.Match) -> None:
        self.expr(e.subject)
        saved = self.pipe_temp
        self.pipe_temp = None
        for arm in e.arms:
            arm.scope = self.push("arm")
            if arm.threshold is not None:
                self.expr(arm.threshold)
            self.bind_pattern(arm.pattern, "arm", declaring=True)
            if arm.guard is not None:
                self.expr(arm.guard)
            if type(arm.body) is N.Block:
                self.statements(arm.body.body, arm.scope)
            else:
                self.expr(arm.body)
            self.pop()
        self.pipe_temp = saved

    # ------------------------------------------------------------ slots
    def finalize(self) -> None:
        for s in self.res.scopes:
            if not s.materialized and any(b.captured for b in s.order):
                s.materialized = True
        for s in self.res.scopes:
            if s.materialized:
                self._assign(s)

    def _assign(self, owner: Scope) -> None:
        counter = 1
        if owner.kind == "function":
            # parameters first, in order, so a call can build the frame directly
            pass
        stack = [owner]
        while stack:
            s = stack.pop()
            for b in s.order:
                if b.slot < 0:
                    b.slot = counter
                    counter += 1
                    if s is not owner and b.checked and b.kind in HARD:
                        s.resets.append(b.slot)
            for c in reversed(s.children):
                if not c.materialized:
                    stack.append(c)
        owner.size = counter


def _pattern_names(pat: Any) -> list:
    out: list = []
    stack = [pat]
    while stack:
        p = stack.pop()
        t = type(p)
        if t is N.PName:
            out.append(p)
        elif t is N.PArray:
            stack.extend(x for x in p.elems if x is not None)
            if p.rest is not None:
                stack.append(p.rest)
        elif t is N.PObject:
            stack.extend(pr.pattern for pr in p.props)
            if p.rest is not None:
                stack.append(p.rest)
    out.reverse()
    return out


def resolve(prog: N.Program, global_names: frozenset | set, *, mode: str = "strict",
            module: bool = False, writable: frozenset | set = frozenset()) -> Resolution:
    """Resolve names of a parsed program against the given global names (``writable``:
    globals that legacy programs may assign, i.e. the injected inputs)."""
    return Resolver(global_names, mode=mode, module=module, writable=writable).resolve_program(prog)
