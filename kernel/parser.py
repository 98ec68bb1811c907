"""Parse Prism source text into a ``nodes.Program``.

Consumes source text; produces AST nodes (kernel/nodes.py) with spans, or raises
``PrismSyntaxError`` with file:line:col and what was expected.  Built on lark
(LALR, contextual lexer); the grammar table is built once per process and cached
in a per-user directory.
"""
from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path
from typing import Any

import lark
from lark import Lark, Transformer
from lark.parsers.lalr_analysis import Shift as _SHIFT
from lark.lexer import LexerState, TextSlice, Token
from lark.parse_tree_builder import ExpandSingleChild
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from . import nodes as N
from .errors import PrismInternalError, PrismSyntaxError

# ``agents`` and ``context`` are keywords only where a statement starts with
# ``agents {`` or ``in context``; elsewhere they are ordinary names (design §7:
# programs use ``agents.security.analyze(…)``).
RESERVED = frozenset("""
if else uncertain high medium low default in fn function return let const
match true false null undefined for while do break continue typeof instanceof import export
from as async await try catch finally
""".split())

# ----------------------------------------------------------------- the lexer

_ESC = r'\\[\s\S]'


def _string_regex(depth: int = 2) -> str:
    """A regex for whole string tokens, interpolations included (nested to ``depth``)."""
    def interp(d: int) -> str:
        if d == 0:
            inner = r'[^{}"\'`]'
            return rf'(?:{inner})*'
        return (r'(?:[^{}"\'`]|' + dq(d - 1) + '|' + sq(d - 1) + r'|\{' + interp(d - 1) + r'\})*')

    def dq(d: int) -> str:
        return r'"(?:[^"\\\n$]|' + _ESC + r'|\$(?!\{)|\$\{' + interp(d) + r'\})*"'

    def sq(d: int) -> str:
        return r"'(?:[^'\\\n$]|" + _ESC + r"|\$(?!\{)|\$\{" + interp(d) + r"\})*'"

    triple = r'```(?:[^`$]|`(?!``)|\$(?!\{)|\$\{' + interp(depth) + r'\})*```'
    return triple + '|' + dq(depth) + '|' + sq(depth)


_GRAMMAR_PATH = Path(__file__).with_name("grammar.lark")


class _AlwaysAccept:
    """lark postlexer whose only job is to keep the two context-decided tokens in
    every state's lexer; _StatefulLexer retypes them."""

    always_accept = ("LBRACE", "FAT_ARROW")

    def process(self, stream):
        return stream


_BLOCK_AFTER = frozenset({"RPAR", "ELSE", "TRY", "FINALLY", "LAMBDA_ARROW", "ARM_ARROW", "DO", "AGENTS"})
_SKIP = re.compile(r'(?:\s+|//[^\n]*|/\*[\s\S]*?(?:\*/|\Z))*')
_KEY = re.compile(r'[A-Za-z_][A-Za-z0-9_]*|"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'')


def _brace_kind(prev: Any, text: str, pos: int) -> str:
    """Decide a statement-start ``{``: block, or object literal / destructuring
    (spec §3.1: ``{}``, ``{...``, ``{k,``, ``{k:``, ``{k}``, ``{k ~>``, ``{k = d,``)."""
    if prev is not None and prev.type in _BLOCK_AFTER:
        return "LBRACE_BLOCK"
    i = _SKIP.match(text, pos).end()
    if text.startswith("}", i) or text.startswith("...", i):
        return "LBRACE_OBJ"
    m = _KEY.match(text, i)
    if not m:
        return "LBRACE_BLOCK"
    j = _SKIP.match(text, m.end()).end()
    nxt = text[j:j + 2]
    if nxt[:1] in (",", ":", "}") or nxt == "~>":
        return "LBRACE_OBJ"
    if nxt[:1] == "=" and nxt not in ("==", "=>"):
        depth = 0
        k = j + 1
        n = len(text)
        while k < n:
            ch = text[k]
            if ch in "([{":
                depth += 1
            elif ch in ")]":
                depth -= 1
            elif ch == "}":
                if depth == 0:
                    after = _SKIP.match(text, k + 1).end()
                    return "LBRACE_OBJ" if text.startswith("=", after) and not text.startswith("==", after) else "LBRACE_BLOCK"
                depth -= 1
            elif ch == "," and depth == 0:
                return "LBRACE_OBJ"
            elif ch in "\"'":
                end = text.find(ch, k + 1)
                k = n if end < 0 else end
            k += 1
    return "LBRACE_BLOCK"


class _StatefulLexer:
    """Wraps lark's contextual lexer; retypes ``{`` and ``=>`` from the parser state."""

    def __init__(self, inner: Any, parse_table: Any, max_nesting: int, ignore: list):
        self.inner = inner
        self.states = parse_table.states
        self.max_nesting = max_nesting
        # the ignored terminals (whitespace, comments) skipped by one regex before each token
        self.skip = re.compile("(?:" + "|".join(t.pattern.to_regexp() for t in ignore) + ")*").match
        self.ignore_types = frozenset(t.name for t in ignore)

    def lex(self, lexer_state: Any, parser_state: Any):
        """The tokens of lark's contextual lexer (the state's terminals, keyword callbacks,
        positions), with ``{`` and ``=>`` retyped from the parser state and bracket depth
        bounded. One regex match per token: ignored text is skipped first. Anything
        unusual (no match, an ignored terminal the skip missed) is left to lark's own
        lexer, so every lexing error is exactly lark's."""
        text_slice = lexer_state.text
        text = text_slice.text
        end = text_slice.end
        ctr = lexer_state.line_ctr
        lexers = getattr(self.inner, "lexer", self.inner).lexers      # behind the postlexer
        skip = self.skip
        ignore_types = self.ignore_types
        states = self.states
        limit = self.max_nesting
        scanners: dict = {}
        prev = None
        depth = 0
        pos, line, line_start = ctr.char_pos, ctr.line, ctr.line_start_pos
        while True:
            after = skip(text, pos, end).end()
            if after != pos:
                nl = text.count("\n", pos, after)
                if nl:
                    line += nl
                    line_start = text.rindex("\n", pos, after) + 1
                pos = after
            if pos >= end:
                return
            lexer = lexers[parser_state.position]
            got = scanners.get(id(lexer))
            if got is None:
                got = scanners[id(lexer)] = (lexer.scanner._mres, lexer.callback)
            m = None
            for mre in got[0]:
                m = mre.match(text, pos, end)
                if m:
                    break
            if m is None or m.lastgroup in ignore_types:
                ctr.char_pos, ctr.line, ctr.line_start_pos = pos, line, line_start
                ctr.column = pos - line_start + 1
                try:
                    tok = lexer.next_token(lexer_state, parser_state)
                except EOFError:
                    return
                except UnexpectedCharacters:
                    yield from self.inner.lex(lexer_state, parser_state)   # lark's error path
                    return
                pos, line, line_start = ctr.char_pos, ctr.line, ctr.line_start_pos
            else:
                value = m.group(0)
                type_ = m.lastgroup
                tok = Token(type_, value, pos, line, pos - line_start + 1)
                nl = value.count("\n")
                if nl:
                    line += nl
                    line_start = pos + value.rindex("\n") + 1
                pos += len(value)
                tok.end_line = line
                tok.end_column = pos - line_start + 1
                tok.end_pos = pos
                cb = got[1].get(type_)
                if cb is not None:
                    tok = cb(tok)
                lexer_state.last_token = tok
            t = tok.type
            if t == "LBRACE":
                stack = parser_state.state_stack
                block_ok = _shiftable(states, stack, "LBRACE_BLOCK", tok)
                if block_ok and _shiftable(states, stack, "LBRACE_OBJ", tok):
                    # a body right after its header (if (…) {, else {, => {) is a block;
                    # a '{' that first ends the previous statement is decided by the text
                    direct = states[stack[-1]].get("LBRACE_BLOCK", (None,))[0] is _SHIFT
                    tok.type = _brace_kind(prev if direct else None, text, tok.end_pos)
                else:
                    tok.type = "LBRACE_BLOCK" if block_ok else "LBRACE_OBJ"
                depth += 1
            elif t == "FAT_ARROW":
                arm = _shiftable(states, parser_state.state_stack, "ARM_ARROW", tok)
                tok.type = "ARM_ARROW" if arm else "LAMBDA_ARROW"
            elif t == "LPAR" or t == "LSQB":
                depth += 1
            elif t == "RPAR" or t == "RSQB" or t == "RBRACE":
                depth -= 1
            if depth > limit:
                raise PrismSyntaxError(
                    f"source nested too deeply (more than {limit} open brackets)", _tok_span(tok))
            prev = tok
            yield tok


MAX_WALK = 800                 # reductions simulated for one token; legit code needs < 10, each
                               # directly nested bare lambda (x => y => …) adds 8


def _shiftable(states: dict, stack: list, ttype: str, tok: Any = None) -> bool:
    """Would the LALR automaton shift ``ttype`` after the reductions it triggers?
    (LALR merges look-aheads across contexts, so one table lookup is not enough.)
    Simulated on a virtual stack (``stack[:top] + pushed``) without copying, and
    for at most MAX_WALK reductions, so deep source cannot make parsing quadratic."""
    top = len(stack)
    pushed: list = []
    for _ in range(MAX_WALK):
        act = states[pushed[-1] if pushed else stack[top - 1]].get(ttype)
        if act is None:
            return False
        action, arg = act
        if action is _SHIFT:
            return True
        size = len(arg.expansion)
        if size:
            k = min(size, len(pushed))
            if k:
                del pushed[-k:]
            top -= size - k
        goto = states[pushed[-1] if pushed else stack[top - 1]].get(arg.origin.name)
        if goto is None:
            return False
        pushed.append(goto[1])
    raise PrismSyntaxError("source nested too deeply (expressions or lambdas nested without brackets)",
                           _tok_span(tok) if tok is not None else None)


def _cache_dir() -> Path | None:
    base = os.environ.get("PRISM_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base else Path.home() / ".cache"
    path = root / "prism" if not os.environ.get("PRISM_CACHE_DIR") else root
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError:
        return None
    return path if os.access(path, os.W_OK) else None


_lock = threading.Lock()
_parser: Lark | None = None
MAX_NESTING = 200


def _grammar_text() -> str:
    text = _GRAMMAR_PATH.read_text(encoding="utf-8")
    return text.replace("%%STRING_REGEX%%", _string_regex().replace("/", "\\/"))


def get_parser() -> Lark:
    """The process-wide lark parser (built once; grammar table cached per user)."""
    global _parser
    if _parser is not None:
        return _parser
    with _lock:
        if _parser is None:
            text = _grammar_text()
            kwargs: dict[str, Any] = dict(parser="lalr", lexer="contextual", start=["start", "expr_only"],
                                          transformer=_Builder(), postlex=_AlwaysAccept(),
                                          maybe_placeholders=True)
            cache_dir = _cache_dir()
            if cache_dir is not None:
                digest = hashlib.sha256((text + lark.__version__).encode()).hexdigest()[:16]
                kwargs["cache"] = str(cache_dir / f"grammar-{digest}.lark-cache")
            try:
                p = Lark(text, **kwargs)
            except (OSError, EOFError, ValueError):       # unreadable or racing cache file
                kwargs.pop("cache", None)
                p = Lark(text, **kwargs)
            frontend = p.parser
            ignore = [t for t in p.terminals if t.name in p.lexer_conf.ignore]
            frontend.lexer = _StatefulLexer(frontend.lexer, frontend.parser.parser.parse_table, MAX_NESTING, ignore)
            _parser = p
    return _parser


# ------------------------------------------------------------------ spans

def _tok_span(t: Any) -> tuple:
    return (t.line, t.column, t.end_line, t.end_column)


def _span_of(x: Any) -> tuple | None:
    if isinstance(x, N.Node):
        return x.span
    if isinstance(x, lark.Token):
        return (x.line, x.column, x.end_line, x.end_column)
    return None


def _join(first: Any, last: Any) -> tuple:
    a = _span_of(first)
    b = _span_of(last)
    if a is None:
        return b
    if b is None:
        return a
    return (a[0], a[1], b[2], b[3])


def _cspan(c: list) -> tuple:
    first = last = None
    for x in c:
        if x is not None and not isinstance(x, (list, str)) or isinstance(x, lark.Token):
            s = _span_of(x)
            if s is not None:
                first = s
                break
    for x in reversed(c):
        s = _span_of(x) if x is not None else None
        if s is not None:
            last = s
            break
    if first is None:
        return (1, 1, 1, 1)
    return (first[0], first[1], last[2], last[3])


def _toks(c: list, *types: str) -> list:
    return [x for x in c if isinstance(x, lark.Token) and x.type in types]


def _nodes(c: list) -> list:
    return [x for x in c if isinstance(x, N.Node)]


def _err(msg: str, at: Any, hint: str | None = None) -> PrismSyntaxError:
    return PrismSyntaxError(msg, _span_of(at), hint=hint)


_STATEMENT_WORDS = frozenset("let const if for while do return function fn try import export uncertain".split())


def _check_name(tok: Any) -> str:
    name = str(tok)
    if name in RESERVED:
        if name in _STATEMENT_WORDS:
            # most likely the previous statement is unfinished: `let a = 1 +` ⏎ `let b …`
            err = _err(f"Expected an expression, found '{name}'", tok,
                       hint="is the expression before it unfinished? (a missing operand or closing bracket)")
            err.statement_word = True
            raise err
        raise _err(f"'{name}' is a reserved word and cannot be used as a name", tok)
    return name


# --------------------------------------------------------------- strings

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "$": "$", "0": "\0",
            "b": "\b", "f": "\f", "v": "\v", "`": "`"}


def _unescape(s: str, tok: Any) -> str:
    if "\\" not in s:
        return s
    out = []
    i = 0
    n = len(s)
    while i < n:
        ch = s[i]
        if ch == "\\" and i + 1 < n:
            nx = s[i + 1]
            if nx == "u" and re.match(r"[0-9a-fA-F]{4}", s[i + 2:i + 6]):
                out.append(chr(int(s[i + 2:i + 6], 16)))
                i += 6
                continue
            if nx == "u" and s[i + 2:i + 3] == "{":
                end = s.find("}", i + 3)
                if end > 0 and re.fullmatch(r"[0-9a-fA-F]{1,6}", s[i + 3:end]) and int(s[i + 3:end], 16) <= 0x10FFFF:
                    out.append(chr(int(s[i + 3:end], 16)))
                    i = end + 1
                    continue
            out.append(_ESCAPES.get(nx, nx))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _find_close(s: str, i: int) -> int:
    """Index of the ``}`` closing an interpolation whose body starts at ``i``."""
    depth = 0
    n = len(s)
    while i < n:
        ch = s[i]
        if ch == "\\":
            i += 2
            continue
        if ch in "\"'":
            j = i + 1
            while j < n and s[j] != ch:
                j += 2 if s[j] == "\\" else 1
            i = j + 1
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    return -1


def _string_node(tok: Any) -> N.Node:
    raw = str(tok)
    span = _tok_span(tok)
    if raw.startswith("```"):
        body, body_off, raw_mode = raw[3:-3], 3, True
    else:
        body, body_off, raw_mode = raw[1:-1], 1, False
    if "${" not in body:
        return N.Str(body if raw_mode else _unescape(body, tok), span)
    parts: list = []
    lit_start = 0
    i = 0
    n = len(body)
    while i < n:
        ch = body[i]
        if ch == "\\" and not raw_mode:
            i += 2
            continue
        if ch == "$" and body.startswith("${", i):
            close = _find_close(body, i + 2)
            if close < 0:
                raise _err("Unclosed interpolation in string", tok)
            lit = body[lit_start:i]
            if lit:
                parts.append(lit if raw_mode else _unescape(lit, tok))
            inner = body[i + 2:close]
            if not inner.strip():
                raise _err("Empty interpolation expression", tok)
            line, col = _position_in(raw, tok, body_off + i + 2)
            parts.append(parse_expression(inner, line=line, column=col))
            i = lit_start = close + 1
            continue
        i += 1
    if lit_start < n:
        lit = body[lit_start:]
        parts.append(lit if raw_mode else _unescape(lit, tok))
    if all(isinstance(x, str) for x in parts):
        return N.Str("".join(parts), span)
    return N.Template(parts, span)


def _position_in(raw: str, tok: Any, offset: int) -> tuple[int, int]:
    """(line, column) of character ``offset`` of a token's text."""
    before = raw[:offset]
    nl = before.count("\n")
    start_line = tok.end_line - raw.count("\n") if "\n" in raw else tok.line
    if nl:
        return start_line + nl, offset - before.rfind("\n")
    return start_line, tok.column + offset


# ------------------------------------------------------------ patterns

def to_pattern(e: N.Node, *, match: bool = False) -> N.Node:
    """Convert an expression parsed in a binding position into a pattern."""
    t = type(e)
    if t is N.Name:
        return N.PName(_check_pattern_name(e), e.span)
    if t is N.Placeholder:
        return N.PWild(e.span) if match else N.PName("_", e.span)
    if t is N.Attach:
        p = to_pattern(e.expr, match=match)
        if isinstance(p, (N.PLiteral, N.PWild)) and not match:
            raise _err("Invalid destructuring target", e)
        p.threshold = e.conf
        return p
    if t is N.ArrayLit:
        elems: list = []
        rest = None
        for k, el in enumerate(e.elems):
            if isinstance(el, N.Spread):
                if k != len(e.elems) - 1:
                    raise _err("Rest element must be last element", el)
                rest = _rest_target(el, match)
            elif isinstance(el, N.Hole):
                elems.append(None)
            else:
                elems.append(to_pattern(el, match=match))
        return N.PArray(elems, rest, e.span)
    if t is N.ObjectLit:
        props: list = []
        rest = None
        for k, pr in enumerate(e.props):
            if isinstance(pr, N.Spread):
                if k != len(e.props) - 1:
                    raise _err("Rest element must be last element", pr)
                rest = _rest_target(pr, match)
                continue
            if pr.value is None:
                if pr.key in RESERVED:
                    raise _err(f"'{pr.key}' is a reserved word and cannot be used as a name", pr)
                sub = N.PName(pr.key, pr.span)
                threshold = pr.threshold
            else:
                v = pr.value
                threshold = None
                if isinstance(v, N.Attach) and isinstance(v.expr, (N.Name, N.ArrayLit, N.ObjectLit, N.Placeholder)):
                    threshold = v.conf
                    v = v.expr
                sub = to_pattern(v, match=match)
                if threshold is not None and isinstance(sub, (N.PArray, N.PObject)):
                    sub.threshold = threshold       # becomes the nested pattern's global threshold
                    threshold = None if not match else threshold
            props.append(N.PProp(pr.key, sub, pr.span, threshold, pr.default))
        return N.PObject(props, rest, e.span)
    if match:
        if t is N.Num or t is N.Str:
            return N.PLiteral(e.value, e.span)
        if t is N.Const:
            return N.PLiteral(e.value, e.span)
        if t is N.Unary and e.op == "-" and type(e.operand) is N.Num:
            return N.PLiteral(-e.operand.value, e.span)
    raise _err("Invalid pattern" if match else "Invalid destructuring target", e)


def _rest_target(sp: N.Spread, match: bool) -> N.Node:
    if isinstance(sp.expr, N.Name):
        return N.PName(_check_pattern_name(sp.expr), sp.expr.span)
    if isinstance(sp.expr, N.Placeholder):
        return N.PName("_", sp.expr.span)
    raise _err("A rest element must be a name", sp)


def _check_pattern_name(e: N.Name) -> str:
    if e.name in RESERVED:
        raise _err(f"'{e.name}' is a reserved word and cannot be used as a name", e)
    return e.name


def _params(items: list) -> tuple[list, Any]:
    params: list = []
    rest = None
    for k, it in enumerate(items):
        if isinstance(it, N.Spread):
            if k != len(items) - 1:
                raise _err("Rest parameter must be last formal parameter", it)
            rest = to_pattern(it.expr)
        else:
            params.append(to_pattern(it))
    return params, rest


# ------------------------------------------------------------- builder

_COMPOUND = {"+=": "+", "-=": "-", "*=": "*", "/=": "/", "%=": "%", "**=": "**", "??=": "??",
             "~+=": "~+", "~-=": "~-", "~*=": "~*", "~/=": "~/"}


class _Builder(Transformer):
    """lark callbacks building nodes directly during the LALR parse."""

    # ---- program / statements
    def start(self, c):
        body = [s for s in c if s is not None]
        return N.Program(body, _cspan(body) if body else (1, 1, 1, 1))

    def expr_only(self, c):
        return c[0]

    def empty_stmt(self, c):
        return None

    def block(self, c):
        return N.Block([s for s in c[1:-1] if s is not None], _cspan(c))

    def expr_stmt(self, c):
        return N.ExprStmt(c[0], c[0].span)

    def assign_stmt(self, c):
        return _assignment(c[0], c[1], c[2])

    for_update_assign = assign_stmt

    def for_update_expr(self, c):
        return N.ExprStmt(c[0], c[0].span)

    def postfix_update(self, c):
        return _update(c[0], c[1], False, _cspan(c))

    def prefix_update(self, c):
        return _update(c[1], c[0], True, _cspan(c))

    def let_stmt(self, c):
        decl, target, _eq, init = c
        return _let(decl, target, init, _cspan(c))

    def for_init_let(self, c):
        return self.let_stmt(c)

    def for_init_assign(self, c):
        return _assignment(c[0], c[1], c[2])

    def for_init_expr(self, c):
        return N.ExprStmt(c[0], c[0].span)

    def func_decl(self, c):
        is_async = c[0] is not None
        name_tok = _toks(c, "NAME")[0]
        name = _check_name(name_tok)
        lpar = next(i for i, x in enumerate(c) if isinstance(x, lark.Token) and x.type == "LPAR")
        rpar = max(i for i, x in enumerate(c) if isinstance(x, lark.Token) and x.type == "RPAR")
        items = [x for x in c[lpar + 1:rpar] if x is not None and not isinstance(x, lark.Token)]
        params, rest = _params(items)
        annotation = c[rpar + 2]
        body = c[-1]
        fn = N.Lambda(params, rest, body, _cspan(c), name=name, is_async=is_async, annotation=annotation)
        return N.FuncDef(name, fn, _cspan(c))

    def param(self, c):
        return c[0]

    def rest_param(self, c):
        return N.Spread(c[1], _cspan(c))

    def return_stmt(self, c):
        return N.Return(c[1], _cspan(c))

    def break_stmt(self, c):
        return N.Break(_cspan(c))

    def continue_stmt(self, c):
        return N.Continue(_cspan(c))

    def throw_stmt(self, c):
        return N.Throw(c[1], _cspan(c))

    def if_stmt(self, c):
        return N.If(c[2], _stmt(c[4]), _stmt(c[6]) if len(c) > 6 else None, _cspan(c))

    def if_bare(self, c):
        return N.If(c[1], c[2], _stmt(c[4]) if len(c) > 4 else None, _cspan(c))

    def branches(self, c):
        return [x for x in c[1:-1] if x is not None]

    def branch(self, c):
        return (str(c[0]), c[1], c[0])

    def _branch_map(self, items, strict):
        out: dict = {}
        for kw, blk, tok in items:
            if strict and kw in out:
                raise _err(f"Duplicate '{kw}' branch in uncertain statement", tok)
            out[kw] = blk
        return out

    def uncertain_if(self, c):
        return N.Uncertain("if", c[2], self._branch_map(c[3], False), _cspan(c))

    def uncertain_while(self, c):
        return N.Uncertain("while", c[2], self._branch_map(c[3], True), _cspan(c))

    def uncertain_for(self, c):
        init, cond, update = c[2], c[4], c[6]
        return N.Uncertain("for", cond, self._branch_map(c[7], True), _cspan(c), init=init, update=update)

    def for_stmt(self, c):
        return N.For(c[1], c[3], c[5], _stmt(c[6]), _cspan(c))

    def for_paren(self, c):
        return N.For(c[2], c[4], c[6], _stmt(c[8]), _cspan(c))

    def for_in(self, c):
        names = _toks(c, "NAME")
        var = N.PName(_check_name(names[0]), _tok_span(names[0]))
        idx = N.PName(_check_name(names[1]), _tok_span(names[1])) if len(names) > 1 else None
        return N.ForIn(var, idx, c[-2], _stmt(c[-1]), False, False, _cspan(c))

    def for_of(self, c):
        decl = c[1]
        return N.ForIn(to_pattern(c[2]), None, c[4], _stmt(c[5]), True,
                       decl is not None and str(decl) == "const", _cspan(c))

    def for_of_paren(self, c):
        decl = c[2]
        return N.ForIn(to_pattern(c[3]), None, c[5], _stmt(c[7]), True,
                       decl is not None and str(decl) == "const", _cspan(c))

    def while_stmt(self, c):
        return N.While(c[2], _stmt(c[4]), _cspan(c))

    def while_bare(self, c):
        return N.While(c[1], c[2], _cspan(c))

    def do_stmt(self, c):
        return N.DoWhile(_stmt(c[1]), c[3], _cspan(c))

    def try_stmt(self, c):
        body, catch, final = c[1], c[2], c[4]
        if catch is None and final is None:
            raise _err("Expected 'catch' or 'finally' after 'try'", c[0])
        name, cbody = (catch if catch is not None else (None, None))
        return N.Try(body, name, cbody, final, _cspan(c))

    def catch_clause(self, c):
        name_tok = c[2]
        name = N.PName(_check_name(name_tok), _tok_span(name_tok)) if name_tok is not None else None
        return (name, c[-1])

    def context_stmt(self, c):
        def nm(t):
            return _unescape(str(t)[1:-1], t) if t.type == "STRING" else str(t)
        shift = c[5] if len(c) > 5 else None
        return N.Context(nm(c[2]), c[3], nm(shift) if shift is not None else None, _cspan(c))

    def agents_stmt(self, c):
        return N.Agents([x for x in c[2:-1] if isinstance(x, tuple)], _cspan(c))

    def agent_def(self, c):
        name = N.PName(_check_name(c[0]), _tok_span(c[0]))
        return (name, [x for x in c if isinstance(x, N.Prop)])

    def agent_entry(self, c):
        return N.Prop(c[0], c[2], _join(c[1], c[2]))

    # ---- modules
    def import_stmt(self, c):
        clause = c[1]
        return N.Import(_module_spec(c[3]), clause.get("default"), clause.get("namespace"),
                        clause.get("names", []), _cspan(c))

    def import_bare(self, c):
        return N.Import(_module_spec(c[1]), None, None, [], _cspan(c))

    def import_default(self, c):
        return {"default": N.PName(_check_name(c[0]), _tok_span(c[0]))}

    def import_namespace(self, c):
        return {"namespace": N.PName(_check_name(c[2]), _tok_span(c[2]))}

    def import_named(self, c):
        return {"names": c[0]}

    def import_default_named(self, c):
        return {"default": N.PName(_check_name(c[0]), _tok_span(c[0])), "names": c[2]}

    def import_default_namespace(self, c):
        return {"default": N.PName(_check_name(c[0]), _tok_span(c[0])),
                "namespace": N.PName(_check_name(c[4]), _tok_span(c[4]))}

    def import_names(self, c):
        return [x for x in c if isinstance(x, tuple)]

    def import_name(self, c):
        key = c[0]
        local_tok = c[2]
        if local_tok is not None:
            return (key, N.PName(_check_name(local_tok), _tok_span(local_tok)))
        if key in RESERVED:
            raise _err(f"'{key}' is a reserved word; import it with 'as'", c[0] if isinstance(c[0], lark.Token) else None)
        return (key, N.PName(key, _cspan(c) if _cspan(c) else (1, 1, 1, 1)))

    def export_default(self, c):
        return N.Export("default", _cspan(c), value=c[2])

    def export_decl(self, c):
        return N.Export("decl", _cspan(c), stmt=c[1])

    def export_assign(self, c):
        name = N.Name(_check_name(c[1]), _tok_span(c[1]))
        return N.Export("decl", _cspan(c), stmt=N.Assign(name, "=", c[3], _cspan(c[1:])))

    def export_names(self, c):
        names = [(local.name, key) for key, local in c[1]]
        src = _module_spec(c[3]) if len(c) > 3 and c[3] is not None else None
        return N.Export("names", _cspan(c), names=names, source=src)

    def export_all(self, c):
        return N.Export("all", _cspan(c), source=_module_spec(c[3]))

    # ---- expressions
    def pipe(self, c):
        return N.Pipe(c[0], c[2], str(c[1]) == "~|>", _cspan(c))

    def value_gate(self, c):
        return N.Gate(c[0], c[2], _cspan(c))

    def ternary(self, c):
        return N.Ternary(c[0], c[2], c[4], False, _cspan(c))

    def cternary(self, c):
        return N.Ternary(c[0], c[2], c[4], True, _cspan(c))

    def attach(self, c):
        return N.Attach(c[0], c[2], _cspan(c))

    def chain(self, c):
        return N.Chain([x for x in c if isinstance(x, N.Node)], _cspan(c))

    def binary(self, c):
        return N.Binary(str(c[1]), c[0], c[2], _cspan(c))

    def binchain(self, c):
        """Arrange ``a op b op c …`` by precedence (spec §2.1); ``**`` is right-associative."""
        operands = [c[0]]
        operators: list[str] = []
        prec = _PREC
        for i in range(1, len(c), 2):
            op = str(c[i])
            p = prec[op]
            while operators and (prec[operators[-1]] > p or (prec[operators[-1]] == p and op != "**")):
                top = operators.pop()
                r = operands.pop()
                l = operands.pop()
                operands.append(N.Binary(top, l, r, (l.span[0], l.span[1], r.span[2], r.span[3])))
            operators.append(op)
            operands.append(c[i + 1])
        while operators:
            top = operators.pop()
            r = operands.pop()
            l = operands.pop()
            operands.append(N.Binary(top, l, r, (l.span[0], l.span[1], r.span[2], r.span[3])))
        return operands[0]

    def unary(self, c):
        op = str(c[0])
        operand = c[1]
        if op == "-" and type(operand) is N.Num:
            return N.Num(-operand.value, _cspan(c))
        return N.Unary("<~" if op == "~" else op, operand, _cspan(c))

    def await_expr(self, c):
        return N.Await(c[1], _cspan(c))

    def call(self, c):
        args = [x for x in c[2:-1] if x is not None]
        return N.Call(c[0], args, _cspan(c))

    def member(self, c):
        return N.Member(c[0], c[2], str(c[1]), _cspan(c))

    def index(self, c):
        return N.Index(c[0], c[2], _cspan(c))

    def spread(self, c):
        return N.Spread(c[1], _cspan(c))

    def number(self, c):
        return N.Num(float(c[0]), _tok_span(c[0]))

    def string(self, c):
        return _string_node(c[0])

    def true(self, c):
        return N.Const(True, _tok_span(c[0]))

    def false(self, c):
        return N.Const(False, _tok_span(c[0]))

    def null(self, c):
        return N.Const(None, _tok_span(c[0]))

    def placeholder(self, c):
        return N.Placeholder(_tok_span(c[0]))

    def name(self, c):
        return N.Name(_check_name(c[0]), _tok_span(c[0]))

    def keyword_name(self, c):
        return N.Name(str(c[0]), _tok_span(c[0]))

    def paren(self, c):
        return c[1]

    def array(self, c):
        inner = c[1:-1]
        elems: list = []
        pending = None          # element seen since the last comma
        seen_comma = False
        for x in inner:
            if isinstance(x, lark.Token) and x.type == "COMMA":
                elems.append(pending if pending is not None else N.Hole(_tok_span(x)))
                pending = None
                seen_comma = True
            elif x is not None:
                pending = x
        if pending is not None:
            elems.append(pending)
        elif seen_comma:
            pass                # one trailing comma is ignored (JS)
        return N.ArrayLit(elems, _cspan(c))

    def object(self, c):
        props = [x for x in c[1:-1] if isinstance(x, N.Node)]
        return N.ObjectLit(props, _cspan(c))

    def prop_pair(self, c):
        return N.Prop(c[0], c[2], _cspan(c[1:]))

    def prop_short(self, c):
        return N.Prop(c[0], None, self._key_span(c), shorthand=True)

    def prop_short_threshold(self, c):
        return N.Prop(c[0], None, _cspan(c[1:]), threshold=c[2], shorthand=True)

    def prop_default(self, c):
        return N.Prop(c[0], None, _cspan(c[1:]), default=c[2], shorthand=True)

    def prop_default_threshold(self, c):
        return N.Prop(c[0], None, _cspan(c[1:]), threshold=c[2], default=c[4], shorthand=True)

    def _key_span(self, c):
        return getattr(self, "_last_key_span", (1, 1, 1, 1))

    def prop_key(self, c):
        t = c[0]
        self._last_key_span = _tok_span(t)
        if t.type == "STRING":
            node = _string_node(t)
            if not isinstance(node, N.Str):
                raise _err("Object keys cannot contain interpolation", t)
            return node.value
        return str(t)

    def lambda_single(self, c):
        p = N.PName(_check_name(c[0]), _tok_span(c[0]))
        return _lambda([p], None, c[2], _cspan(c))

    def lambda_empty(self, c):
        return _lambda([], None, c[3], _cspan(c))

    def lambda_one(self, c):
        return _lambda([to_pattern(c[1])], None, c[4], _cspan(c))

    def lambda_rest_only(self, c):
        return _lambda([], to_pattern(c[2]), c[5], _cspan(c))

    def lambda_many(self, c):
        items = [x for x in c[1:] if isinstance(x, N.Node)]
        body = items.pop()
        params, rest = _params(items)
        return _lambda(params, rest, body, _cspan(c))

    def match_expr(self, c):
        arms = [x for x in c[3:-1] if isinstance(x, N.MatchArm)]
        return N.Match(c[1], arms, _cspan(c))

    def arm(self, c):
        pat_expr = c[0]
        guard = c[2]
        body = c[4]
        threshold = None
        if isinstance(pat_expr, N.Attach):
            threshold = pat_expr.conf
            pat_expr = pat_expr.expr
        pattern = to_pattern(pat_expr, match=True)
        return N.MatchArm(pattern, threshold, guard, body, _cspan(c))


_PREC = {op: level for level, ops in (
    (4, ("||", "~||", "~||>", "~@>")), (5, ("??",)), (6, ("~??",)), (7, ("&&", "~&&")),
    (8, ("==", "!=", "===", "!==", "~==", "~!=")), (9, ("<", "<=", ">", ">=", "~<", "~<=", "~>=", "instanceof")),
    (10, ("+", "-", "~+", "~-")), (11, ("*", "/", "%", "~*", "~/")), (12, ("**",))) for op in ops}


def _stmt(s: Any) -> Any:
    """A statement used as a body: ``;`` alone becomes an empty block."""
    return s if s is not None else N.Block([], (1, 1, 1, 1))


def _module_spec(tok: Any) -> str:
    node = _string_node(tok)
    if not isinstance(node, N.Str):
        raise _err("Module paths cannot contain interpolation", tok)
    return node.value


def _lambda(params, rest, body, span) -> N.Lambda:
    return N.Lambda(params, rest, body, span, expr_body=not isinstance(body, N.Block))


def _let(decl: Any, target: N.Node, init: N.Node | None, span: tuple) -> N.Let:
    const = str(decl) == "const"
    if isinstance(target, N.Attach):
        raise _err("A declaration cannot take a confidence threshold; use per-element thresholds", target)
    pat = to_pattern(target)
    if init is None:
        if const:
            raise PrismSyntaxError("const declarations must have an initializer", span)
        if not isinstance(pat, N.PName):
            raise PrismSyntaxError("Expected '=' after destructuring pattern", span)
    return N.Let(const, pat, init, span)


def _assignment(target: N.Node, op_tok: Any, value: N.Node) -> N.Node:
    op = str(op_tok)
    span = _join(target, value)
    if op == "=":
        threshold = None
        inner = target
        if isinstance(target, N.Attach) and isinstance(target.expr, (N.ArrayLit, N.ObjectLit)):
            threshold = target.conf
            inner = target.expr
        if isinstance(inner, (N.ArrayLit, N.ObjectLit)):
            return N.Destructure(to_pattern(inner), threshold, value, span)
    if isinstance(target, (N.Name, N.Member, N.Index)):
        if isinstance(target, N.Member) and target.op != ".":
            raise _err(f"Cannot assign through '{target.op}'", target)
        return N.Assign(target, op, value, span)
    raise _err("Invalid assignment target: only names, properties (o.k) and indexes (a[i]) can be assigned",
               target)


def _update(target: N.Node, op_tok: Any, prefix: bool, span: tuple) -> N.Update:
    if not isinstance(target, (N.Name, N.Member, N.Index)):
        raise _err(f"Invalid target for '{op_tok}'", target)
    return N.Update(target, str(op_tok), prefix, span)


# ----------------------------------------------------------------- entry

_TERMINAL_TEXT = {
    "LBRACE_BLOCK": "'{'", "LBRACE_OBJ": "'{'", "LAMBDA_ARROW": "'=>'", "ARM_ARROW": "'=>'",
    "NAME": "a name", "NUMBER": "a number", "STRING": "a string", "RPAR": "')'", "LPAR": "'('",
    "RSQB": "']'", "LSQB": "'['", "RBRACE": "'}'", "COMMA": "','", "COLON": "':'", "SEMI": "';'",
    "EQUALS": "'='", "DOT": "'.'", "ELLIPSIS": "'...'", "QUESTION": "'?'", "ATTACH": "'~>'",
    "$END": "end of input", "PLACEHOLDER": "'_'", "HIGH": "'high'", "MEDIUM": "'medium'",
    "LOW": "'low'", "DEFAULT": "'default'", "CONTEXT_ARROW": "'->'", "OPT_DOT": "'?.'",
}


def _describe_terminal(name: str) -> str:
    if name in _TERMINAL_TEXT:
        return _TERMINAL_TEXT[name]
    p = get_parser()
    for t in p.terminals:
        if t.name == name:
            pat = t.pattern
            if pat.type == "str":
                return f"'{pat.value}'"
            break
    return name.lower()


_EXPR_STARTS = {"NAME", "NUMBER", "STRING", "LPAR", "LSQB", "LBRACE_OBJ", "MINUS", "BANG", "TRUE"}


def _expected_text(expected: set[str], tok_type: str | None = None) -> str:
    exp = set(expected)
    if exp & {"HIGH", "MEDIUM", "LOW", "DEFAULT"} and "NAME" not in exp:
        return "'high', 'medium', 'low', or 'default' branch"
    if len(exp & _EXPR_STARTS) >= 3:
        rest = sorted(_describe_terminal(e) for e in exp - _EXPR_STARTS - {
            "TYPEOF", "CONF_EXTRACT", "TILDE", "AWAIT", "FALSE", "NULL", "UNDEFINED", "PLACEHOLDER", "MATCH",
            "AGENTS", "CONTEXT", "LAMBDA_ARROW", "ARM_ARROW", "LBRACE_BLOCK", "LBRACE", "FAT_ARROW"}
            if e not in ("LET", "CONST", "IF", "FOR", "WHILE", "DO", "RETURN", "FUNCTION", "FN", "ASYNC",
                         "TRY", "THROW", "BREAK", "CONTINUE", "IN", "AGENTS", "IMPORT", "EXPORT", "UNCERTAIN",
                         "LBRACE_BLOCK", "SEMI", "PLUSPLUS", "MINUSMINUS"))
        extra = [r for r in rest if r not in ("'('",)]
        if not extra or len(extra) > 6:
            return "an expression"
        return "an expression or " + ", ".join(extra)
    names = sorted({_describe_terminal(e) for e in exp})
    if len(names) > 8:
        names = names[:8] + ["…"]
    return ", ".join(names) if len(names) > 1 else (names[0] if names else "something else")


def _found_text(tok: Any) -> str:
    if tok is None or tok.type == "$END":
        return "end of input"
    text = str(tok)
    if len(text) > 30:
        text = text[:27] + "..."
    return f"'{text}'"


def _convert(e: UnexpectedInput, text: str) -> PrismSyntaxError:
    if isinstance(e, UnexpectedCharacters):
        ch = text[e.pos_in_stream] if 0 <= e.pos_in_stream < len(text) else ""
        span = (e.line, e.column, e.line, e.column + 1)
        if ch in "\"'":
            end_of_line = text.find("\n", e.pos_in_stream)
            rest = text[e.pos_in_stream + 1: end_of_line if end_of_line >= 0 else len(text)]
            if ch in rest and end_of_line >= 0:
                return PrismSyntaxError("Invalid string literal (check its escapes and interpolations)", span)
            if end_of_line >= 0:
                return PrismSyntaxError(f"Unterminated string at line {e.line}, column {e.column} "
                                        "(a string cannot span lines; use ``` for multi-line text)", span)
            return PrismSyntaxError(f"Unterminated string at line {e.line}, column {e.column}", span)
        if ch == "`":
            if text.startswith("```", e.pos_in_stream):
                return PrismSyntaxError(
                    f"Unterminated multiline string starting at line {e.line}, column {e.column}", span)
            return PrismSyntaxError("Unexpected character '`' (use \"...\" or ``` for strings)", span)
        shown = f"'{ch}'" if ch.isprintable() else f"U+{ord(ch):04X}" if ch else "end of input"
        return PrismSyntaxError(f"Unexpected character {shown} at line {e.line}, column {e.column}", span)
    if isinstance(e, UnexpectedToken):
        tok = e.token
        if tok.type == "$END":
            line, col = _end_position(text)
            span = (line, col, line, col + 1)
            return PrismSyntaxError(f"Unexpected end of input: expected {_expected_text(e.expected)}", span)
        span = _tok_span(tok)
        msg = f"Expected {_expected_text(e.expected, tok.type)}, found {_found_text(tok)}"
        hint = _continuation_hint(text, tok) if tok.type == "COMMA" else None
        if tok.type == "EQUALS":
            hint = "assignment is a statement in Prism; compare with '==' or declare with 'let'"
        if tok.type in ("LBRACE_BLOCK", "LBRACE_OBJ"):
            msg = f"Unexpected '{{': expected {_expected_text(e.expected, tok.type)}"
        return PrismSyntaxError(msg, span, hint=hint)
    if isinstance(e, UnexpectedEOF):
        line, col = _end_position(text)
        return PrismSyntaxError(f"Unexpected end of input: expected {_expected_text(set(e.expected))}",
                                (line, col, line, col + 1))
    return PrismSyntaxError(str(e).split("\n")[0])


def _continuation_hint(text: str, tok: Any) -> str | None:
    """A line that starts with '[' or '(' continues the previous expression (spec §1.9)."""
    lines = text.split("\n")
    for ln in range(tok.line, max(0, tok.line - 3), -1):
        stripped = lines[ln - 1].lstrip() if ln - 1 < len(lines) else ""
        if stripped[:1] in ("[", "(") and ln > 1 and lines[ln - 2].strip() and not lines[ln - 2].rstrip().endswith(
                (";", "{", "}", ",", "(", "[")):
            return (f"line {ln} starts with '{stripped[0]}', which continues the expression on line {ln - 1}; "
                    f"end line {ln - 1} with ';'")
    return None


def _end_position(text: str) -> tuple[int, int]:
    lines = text.split("\n")
    # point at the last non-blank character
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].strip():
            return i + 1, len(lines[i].rstrip()) + 1
    return 1, 1


class _DriverState:
    """What the lexers may ask of the parser: its state stack and current state."""
    __slots__ = ("state_stack",)

    def __init__(self, stack: list) -> None:
        self.state_stack = stack

    @property
    def position(self) -> Any:
        return self.state_stack[-1]


_tables: dict[int, tuple] = {}


def _driver_tables(p: Lark) -> tuple:
    """lark's LALR table, flattened once per parser for the driver below: per state,
    token type -> (None, next state) for a shift or (size, callback, rule name) for a
    reduce (size -1: a unit rule whose value passes through), and per state, rule
    name -> state after the reduction (the goto)."""
    key = id(p)
    got = _tables.get(key)
    if got is not None:
        return got
    lalr = p.parser.parser.parser
    table = lalr.parse_table
    callbacks = lalr.callbacks
    actions: dict = {}
    gotos: dict = {}
    for state, row in table.states.items():
        acts = actions[state] = {}
        go = gotos[state] = {}
        for sym, (action, arg) in row.items():
            if action is _SHIFT:
                if sym.isupper() or sym == "$END":
                    acts[sym] = (None, arg)
                else:
                    go[sym] = arg
            else:
                cb = callbacks[arg]
                size = len(arg.expansion)
                if size == 1 and type(cb) is ExpandSingleChild:
                    size = -1            # a unit rule (?a: b): the value stays, only the state changes
                acts[sym] = (size, cb, arg.origin.name)
    token_callbacks = {k: v for k, v in callbacks.items() if isinstance(k, str)}
    got = _tables[key] = (actions, gotos, table.start_states, table.end_states, token_callbacks)
    return got


def _with_end(tokens: Any) -> Any:
    """The tokens, then lark's ``$END`` (placed after the last one)."""
    token = None
    for token in tokens:
        yield token
    yield Token.new_borrow_pos("$END", "", token) if token is not None else Token("$END", "", 0, 1, 1)


def _drive(p: Lark, text: str, start: str) -> Any:
    """The LALR loop (what lark's ParserState.feed_token does, on flattened tables and
    without per-token hashing of rule objects); the tokens come from lark's contextual
    lexer through _StatefulLexer. Errors are lark's UnexpectedToken/UnexpectedCharacters.
    The accepting state is reached only by reductions on ``$END`` (it follows the start
    rule), so reaching it ends the parse."""
    actions, gotos, start_states, end_states, token_callbacks = _driver_tables(p)
    stack = [start_states[start]]
    values: list = []
    state = _DriverState(stack)
    end_state = end_states[start]
    for token in _with_end(p.parser.lexer.lex(LexerState(TextSlice.cast_from(text)), state)):
        ttype = token.type
        while True:
            act = actions[stack[-1]].get(ttype)
            if act is None:
                raise UnexpectedToken(token, {s for s in actions[stack[-1]] if s.isupper()}, state=state)
            size = act[0]
            if size is None:                  # shift ($END never is)
                stack.append(act[1])
                cb = token_callbacks.get(ttype)
                values.append(token if cb is None else cb(token))
                break
            if size == -1:                    # unit rule: the value stays
                del stack[-1]
            else:
                if size:
                    children = values[-size:]
                    del stack[-size:]
                    del values[-size:]
                else:
                    children = []
                values.append(act[1](children))
            stack.append(gotos[stack[-1]][act[2]])
            if stack[-1] == end_state:
                return values[-1]
    raise PrismInternalError("the parser ended without accepting")   # pragma: no cover


def _run(text: str, start: str) -> Any:
    p = get_parser()
    try:
        return _drive(p, text, start)
    except PrismSyntaxError:
        raise
    except UnexpectedInput as e:
        raise _convert(e, text) from None
    except lark.exceptions.VisitError as e:       # pragma: no cover - transformer is inline
        if isinstance(e.orig_exc, PrismSyntaxError):
            raise e.orig_exc from None
        raise


def parse(source: str, filename: str = "<input>") -> N.Program:
    """Parse a whole program.  Raises PrismSyntaxError."""
    try:
        prog = _run(source, "start")
    except PrismSyntaxError as e:
        e.locate(e.span, filename, source)
        raise
    except RecursionError:
        raise PrismSyntaxError("source nested too deeply", None, filename=filename, source=source) from None
    prog.filename = filename
    return prog


def parse_expression(text: str, *, line: int = 1, column: int = 1) -> N.Node:
    """Parse one expression; positions are reported as if it started at line:column."""
    padded = "\n" * (line - 1) + " " * (column - 1) + text
    try:
        return _run(padded, "expr_only")
    except PrismSyntaxError as e:
        if e.message.startswith("Expected") or e.message.startswith("Unexpected end"):
            e.message = "Invalid interpolation expression: " + e.message
        raise


def tokenize(source: str) -> list[tuple[str, str, int, int]]:
    """(type, text, line, column) for each token, as the standalone lexer sees them
    (``{`` and ``=>`` are shown undecided: the parser state decides them)."""
    p = get_parser()
    try:
        return [(t.type, str(t), t.line, t.column) for t in p.lex(source, dont_ignore=False)]
    except UnexpectedInput as e:
        raise _convert(e, source) from None
