"""Prism AST node classes.

Produced by kernel/parser.py; consumed by kernel/resolver.py (which fills the
resolution slots) and kernel/compiler.py.  Every node carries ``span`` =
(line, column, end_line, end_column), 1-based.  ``dump(node)`` prints an
S-expression without spans, for tests and ``prism dump ast``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

node = dataclass(slots=True, eq=False, repr=False)


class Node:
    __slots__ = ()
    span: tuple

    def __repr__(self) -> str:
        return dump(self)


# ---------------------------------------------------------------- expressions

@node
class Num(Node):
    value: float
    span: tuple


@node
class Str(Node):
    value: str
    span: tuple


@node
class Template(Node):
    parts: list          # str | Node
    span: tuple


@node
class Const(Node):       # true, false, null
    value: Any
    span: tuple


@node
class Name(Node):
    name: str
    span: tuple
    ref: Any = None      # filled by the resolver: Ref


@node
class Placeholder(Node):
    span: tuple
    ref: Any = None      # pipeline temporary, when inside a pipeline


@node
class Hole(Node):
    span: tuple


@node
class Spread(Node):
    expr: Node
    span: tuple


@node
class ArrayLit(Node):
    elems: list          # Node | Spread | Hole
    span: tuple


@node
class Prop(Node):
    key: str
    value: Node | None   # None for shorthand
    span: tuple
    threshold: Node | None = None    # pattern-only: {k ~> t}
    default: Node | None = None      # pattern-only: {k = d}
    shorthand: bool = False


@node
class ObjectLit(Node):
    props: list          # Prop | Spread
    span: tuple


@node
class Lambda(Node):
    params: list         # patterns
    rest: Node | None
    body: Node           # Block or expression
    span: tuple
    name: str = "lambda"
    is_async: bool = False
    annotation: Node | None = None
    expr_body: bool = False
    scope: Any = None    # filled by the resolver


@node
class Call(Node):
    callee: Node
    args: list           # Node | Spread
    span: tuple


@node
class Member(Node):
    obj: Node
    name: str
    op: str              # "." "?." "~."
    span: tuple


@node
class Index(Node):
    obj: Node
    index: Node
    span: tuple


@node
class Unary(Node):
    op: str              # "-" "!" "<~" "~" "typeof"
    operand: Node
    span: tuple


@node
class Await(Node):
    operand: Node
    span: tuple


@node
class Binary(Node):
    op: str
    left: Node
    right: Node
    span: tuple


@node
class Attach(Node):
    expr: Node
    conf: Node
    span: tuple


@node
class Chain(Node):
    items: list
    span: tuple


@node
class Ternary(Node):
    cond: Node
    then: Node
    other: Node
    confident: bool
    span: tuple


@node
class Pipe(Node):
    left: Node
    right: Node
    confident: bool
    span: tuple
    temp: Any = None     # Ref of the hidden temporary that holds ``left``
    uses_placeholder: bool = False


@node
class Gate(Node):
    left: Node
    arg: Node
    span: tuple


@node
class MatchArm(Node):
    pattern: Node
    threshold: Node | None
    guard: Node | None
    body: Node
    span: tuple
    scope: Any = None


@node
class Match(Node):
    subject: Node
    arms: list
    span: tuple


# ------------------------------------------------------------------ patterns

@node
class PName(Node):       # binds a name (or "_" binds nothing)
    name: str
    span: tuple
    threshold: Node | None = None
    ref: Any = None


@node
class PArray(Node):
    elems: list          # pattern | None (hole)
    rest: Any            # PName | None
    span: tuple
    threshold: Node | None = None


@node
class PProp(Node):
    key: str
    pattern: Node
    span: tuple
    threshold: Node | None = None
    default: Node | None = None


@node
class PObject(Node):
    props: list
    rest: Any
    span: tuple
    threshold: Node | None = None


@node
class PLiteral(Node):    # match patterns only
    value: Any
    span: tuple


@node
class PWild(Node):
    span: tuple


# ---------------------------------------------------------------- statements

@node
class ExprStmt(Node):
    expr: Node
    span: tuple


@node
class Let(Node):
    const: bool
    target: Node         # PName | PArray | PObject
    init: Node | None
    span: tuple


@node
class Assign(Node):
    target: Node         # Name | Member | Index
    op: str              # "=" "+=" ...
    value: Node
    span: tuple


@node
class Destructure(Node):
    pattern: Node
    threshold: Node | None
    value: Node
    span: tuple


@node
class Update(Node):
    target: Node
    op: str              # "++" "--"
    prefix: bool
    span: tuple


@node
class FuncDef(Node):
    name: str
    func: Lambda
    span: tuple
    ref: Any = None


@node
class Return(Node):
    value: Node | None
    span: tuple


@node
class Break(Node):
    span: tuple


@node
class Continue(Node):
    span: tuple


@node
class Throw(Node):
    value: Node
    span: tuple


@node
class Block(Node):
    body: list
    span: tuple
    scope: Any = None


@node
class If(Node):
    cond: Node
    then: Node
    other: Node | None
    span: tuple


@node
class Uncertain(Node):   # uncertain if / for / while
    kind: str            # "if" | "for" | "while"
    cond: Node | None
    branches: dict       # "high"|"medium"|"low"|"default" -> Block
    span: tuple
    init: Node | None = None
    update: Node | None = None
    scope: Any = None


@node
class For(Node):
    init: Node | None
    cond: Node | None
    update: Node | None
    body: Node
    span: tuple
    scope: Any = None


@node
class ForIn(Node):
    target: Node         # PName / pattern
    index: Any           # PName | None
    iterable: Node
    body: Node
    of: bool             # for-of (additive) vs for-in (Prism)
    const: bool
    span: tuple
    scope: Any = None


@node
class While(Node):
    cond: Node
    body: Node
    span: tuple


@node
class DoWhile(Node):
    body: Node
    cond: Node
    span: tuple


@node
class Try(Node):
    body: Block
    catch_name: Any      # PName | None
    catch_body: Block | None
    final: Block | None
    span: tuple
    catch_scope: Any = None


@node
class Context(Node):
    name: str
    body: Block
    shift: str | None
    span: tuple


@node
class Agents(Node):
    agents: list         # (PName, [Prop])
    span: tuple


@node
class Import(Node):
    source: str
    default: Any         # PName | None
    namespace: Any       # PName | None
    names: list          # (exported name, PName)
    span: tuple


@node
class Export(Node):
    kind: str            # "default" | "decl" | "names" | "all"
    span: tuple
    stmt: Node | None = None
    names: list = field(default_factory=list)   # (local, exported)
    source: str | None = None
    value: Node | None = None
    ref_list: list = field(default_factory=list)


@node
class Program(Node):
    body: list
    span: tuple
    scope: Any = None
    filename: str = "<input>"


def dump(n: Any) -> str:
    """Compact S-expression of a node (spans and resolver slots omitted)."""
    if isinstance(n, Node):
        parts = [type(n).__name__]
        for f in fields(n):
            if f.name in ("span", "ref", "scope", "temp", "catch_scope", "ref_list"):
                continue
            v = getattr(n, f.name)
            if v is None or v == [] or v is False or v == {}:
                continue
            if f.name == "name" and v == "lambda":
                continue
            parts.append(f"{f.name}={dump(v)}")
        return "(" + " ".join(parts) + ")"
    if isinstance(n, list):
        return "[" + " ".join(dump(x) for x in n) + "]"
    if isinstance(n, tuple):
        return "(" + " ".join(dump(x) for x in n) + ")"
    if isinstance(n, dict):
        return "{" + " ".join(f"{k}:{dump(v)}" for k, v in n.items()) + "}"
    if isinstance(n, float) and n.is_integer():
        return str(int(n))
    if isinstance(n, str):
        return repr(n) if (not n.isidentifier()) else n
    return repr(n)


_NOT_CHILDREN = frozenset({"span", "ref", "scope", "temp", "catch_scope", "ref_list"})


def walk(n: Any, stop: Any = None):
    """Yield every node reachable from ``n`` (depth-first, iterative).  A node for
    which ``stop(node)`` is true is yielded but its children are not visited."""
    stack = [n]
    while stack:
        cur = stack.pop()
        if isinstance(cur, Node):
            yield cur
            if stop is not None and stop(cur):
                continue
            for name in cur.__slots__:
                if name not in _NOT_CHILDREN:
                    v = getattr(cur, name)
                    if isinstance(v, (Node, list, tuple, dict)):
                        stack.append(v)
        elif isinstance(cur, (list, tuple)):
            stack.extend(cur)
        elif isinstance(cur, dict):
            stack.extend(cur.values())


def iter_nodes(n: Any):
    """Every node reachable from ``n``."""
    return walk(n)


def is_function(n: Node) -> bool:
    return type(n) is Lambda or type(n) is FuncDef
