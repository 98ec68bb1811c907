"""Property tests: whatever the input, ``kernel.evaluate`` returns a plain value or
raises a ``PrismError`` (never another exception), and loops stop at the step limit.

Generators: token soup (every token of spec §1.8 plus keywords and literals),
arbitrary text, and small programs built from a grammar of expressions and
statements.  All runs use tight limits so the whole file takes a few seconds.
"""

from __future__ import annotations

import json
import math
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kernel
import kernel.runtime  # noqa: F401 - raises the recursion limit now, not inside a hypothesis run
from kernel import Limits, PrismError, PrismLimitError

TIGHT = Limits(max_steps=2000, timeout=2, max_depth=200, max_items=10_000, max_string=100_000)
# for properties of the step budget: the clock must not decide them on a loaded machine
STEPS_ONLY = Limits(max_steps=2000, timeout=30, max_depth=200, max_items=10_000, max_string=100_000)
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _quiet(stream: str, text: str) -> None:
    pass


def run(source: str, limits: Limits = TIGHT, mode: str = "strict"):
    """Evaluate; return the Result, or the PrismError raised.  Anything else fails the test."""
    try:
        result = kernel.evaluate(source, limits=limits, mode=mode, output=_quiet,
                                 inputs={"input": {"n": 3, "items": [1, 2]}})
    except PrismError as e:
        assert e.kind in ("syntax", "runtime", "limit", "cancelled", "internal")
        assert e.kind != "internal", f"internal error for {source!r}: {e}"
        str(e)  # formatting an error never fails
        return e
    json.dumps(result.value)  # plain, JSON-compatible (NaN/Infinity allowed)
    c = result.confidence
    assert c is None or (isinstance(c, float) and 0.0 <= c <= 1.0 and not math.isnan(c))
    return result


# ------------------------------------------------------------------ token soup

KEYWORDS = """if else uncertain high medium low default in context agents fn function return
let const match true false null undefined for while do break continue typeof instanceof
import export from as async await try catch finally throw of""".split()
OPERATORS = """+ += - -= -> * *= ** / /= % %= = == === => ! != !== < <= <~ > >= && || |>
? ?. ?? . ... ( ) { } [ ] , : ; ~>= ~> ~?? ~?> ~? ~&& ~@> ~|> ~||> ~|| ~+= ~+ ~-= ~-
~*= ~* ~/= ~/ ~== ~!= ~<= ~< ~. ~~ ~ ++ --""".split()
LITERALS = ["0", "1", "2.5", "1e3", "1e400", "0.7", '"s"', "'q'", '"${x}"', '"a${1 + 1}b"',
            "```raw```", "x", "y", "f", "_", "print", "Math", "JSON", "Object", "input",
            "sleep", "Promise", "eval_pattern", "length", "map", "push", "__class__",
            "constructor", "#", "`", "@", "\\", "$"]
TOKENS = KEYWORDS + OPERATORS + LITERALS

token_soup = st.lists(st.sampled_from(TOKENS), max_size=40).map(
    lambda toks: " ".join(toks))


@FUZZ
@given(token_soup)
def test_token_soup_only_raises_prism_errors(source: str) -> None:
    run(source)


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=25), st.sampled_from(["\n", "", ";\n"]))
def test_token_soup_with_newlines(tokens: list[str], sep: str) -> None:
    run(sep.join(tokens))


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_text(source: str) -> None:
    run(source)


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=50, max_value=5000), st.sampled_from(["(", "[", "{", "-", "!", "<~ "]))
def test_deep_nesting_is_a_clean_error(depth: int, opener: str) -> None:
    closer = {"(": ")", "[": "]", "{": "}"}.get(opener, "")
    run("let v = " + opener * depth + "1" + closer * depth)


# ------------------------------------------------------------------ small generated programs

NAMES = ["a", "b", "c", "d"]
PRELUDE = 'let a = 1; let b = "s"; let c = [1, 2, 3]; let d = {k: 0.5 ~> 0.8};\n'

leaf = st.one_of(
    st.integers(min_value=-5, max_value=100).map(str),
    st.sampled_from(["0.5", "1e3", "0", "true", "false", "null", '"txt"', "'q'", '"n=${a}"',
                     "[]", "{}", "_", "input", "input.n"]),
    st.sampled_from(NAMES),
)

BINARY = ["+", "-", "*", "/", "%", "**", "==", "!=", "===", "<", "<=", ">", ">=", "&&", "||",
          "??", "~+", "~-", "~*", "~/", "~==", "~!=", "~<", "~<=", "~>=", "~&&", "~||",
          "~??", "~~", "~||>", "~@>", "~?>"]


def _extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(inner, st.sampled_from(BINARY), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(st.sampled_from(["-", "!", "<~ ", "~", "typeof ", "await "]), inner).map(
            lambda t: f"({t[0]}{t[1]})"),
        st.tuples(inner, st.sampled_from(["0.9", "0.3", "1.5", "a", "(0.2 + 0.1)"])).map(
            lambda t: f"({t[0]} ~> {t[1]})"),
        st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} ? {t[1]} : {t[2]})"),
        st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} ~? {t[1]} : {t[2]})"),
        st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.tuples(inner, inner).map(lambda t: f"{{k: {t[0]}, v: {t[1]}}}"),
        st.tuples(inner, st.sampled_from(["length", "k", "map(x => x)", "filter(x => x)",
                                          "push(1)", "join()", "toFixed(1)", "trim()",
                                          "includes(1)", "slice(1)"])).map(
            lambda t: f"({t[0]}).{t[1]}"),
        st.tuples(inner, st.sampled_from(["?.k", "~.k", "[0]", '["k"]'])).map(
            lambda t: f"({t[0]}){t[1]}"),
        st.tuples(inner, inner).map(lambda t: f"({t[0]} |> [_, {t[1]}])"),
        st.tuples(inner, inner).map(lambda t: f"({t[0]} ~|> ({t[1]}))"),
        st.tuples(inner, inner).map(lambda t: f"((v) => {t[0]})({t[1]})"),
        st.tuples(st.sampled_from(["max", "min", "Math.max", "JSON.stringify", "Object.keys",
                                   "consensus", "aggregate", "String", "print"]), inner).map(
            lambda t: f"{t[0]}({t[1]})"),
        st.tuples(inner, inner).map(
            lambda t: f"(match {t[0]} {{ [x, y] => x, {{k}} => k, n if n => {t[1]}, _ => 0 }})"),
    )


expr = st.recursive(leaf, _extend, max_leaves=12)


def _stmt_extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    block = st.lists(inner, min_size=0, max_size=3).map(lambda ss: " ".join(ss))
    return st.one_of(
        st.tuples(expr, block, block).map(lambda t: f"if ({t[0]}) {{ {t[1]} }} else {{ {t[2]} }}"),
        st.tuples(st.integers(0, 30), block).map(
            lambda t: f"for (let i = 0; i < {t[0]}; i++) {{ {t[1]} }}"),
        st.tuples(expr, block).map(lambda t: f"for x in [{t[0]}, 1] {{ {t[1]} }}"),
        st.tuples(expr, block).map(lambda t: f"while ({t[0]}) {{ {t[1]} break; }}"),
        st.tuples(block, block).map(lambda t: f"try {{ {t[0]} }} catch (e) {{ {t[1]} }}"),
        st.tuples(expr, block, block).map(
            lambda t: f"uncertain if ({t[0]}) {{ high {{ {t[1]} }} low {{ {t[2]} }} }}"),
        st.tuples(block, expr).map(lambda t: f"function g(p) {{ {t[0]} return {t[1]}; }} g(1);"),
    )


simple_stmt = st.one_of(
    expr.map(lambda e: f"{e};"),
    st.tuples(st.sampled_from(NAMES), expr).map(lambda t: f"{t[0]} = {t[1]};"),
    st.tuples(st.sampled_from(["e1", "e2"]), expr).map(lambda t: f"let {t[0]} = {t[1]};"),
    st.tuples(st.sampled_from(NAMES), st.sampled_from(["+=", "-=", "~+=", "*="]), expr).map(
        lambda t: f"{t[0]} {t[1]} {t[2]};"),
    expr.map(lambda e: f"throw {e};"),
    st.just("break;"), st.just("continue;"), st.just("return 1;"),
)
stmt = st.recursive(simple_stmt, _stmt_extend, max_leaves=6)
program = st.tuples(st.lists(stmt, max_size=5), expr).map(
    lambda t: PRELUDE + "\n".join(t[0]) + "\n" + t[1])


@FUZZ
@given(program, st.sampled_from(["strict", "legacy"]))
def test_generated_programs_only_raise_prism_errors(source: str, mode: str) -> None:
    run(source, mode=mode)


# ------------------------------------------------------------------ the step limit holds

LOOP_VARS = "let i = 0; let s = 0; let acc = [];\n"
SAFE_BODY = ["i += 1;", "s = s + 1;", "let t = i * 2;", "s = Math.max(s, i);",
             "if (i > 1e12) { i = 0 }", "let u = [1, 2].map(v => v + i);", "s = s ~+ 1;",
             'let w = "n" + i;']
FOREVER = [
    "while (true) {{ {body} }}",
    "for (let k = 0; ; k++) {{ {body} }}",
    "for let k = 0; true; k += 1 {{ {body} }}",
    "do {{ {body} }} while (true)",
    "uncertain while (true ~> 0.9) {{ high {{ {body} }} }}",
    "function spin(n) {{ {body} return spin(n + 1) }}\nspin(0)",
    "function deep(n) {{ {body} return [n].map(v => deep(v + 1)) }}\ndeep(0)",
    "let again = () => {{ {body} return again() }}\nagain()",
    "while (true) {{ try {{ {body} }} catch (e) {{ }} finally {{ }} }}",
    "async function loop() {{ {body} while (true) {{ {body} }} }}\nawait loop()",
]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(FOREVER), st.lists(st.sampled_from(SAFE_BODY), max_size=4, unique=True))
def test_endless_loops_hit_a_limit(shape: str, body: list[str]) -> None:
    source = LOOP_VARS + shape.format(body=" ".join(body))
    started = time.monotonic()
    outcome = run(source)
    assert isinstance(outcome, PrismLimitError), f"{source!r} gave {outcome!r}"
    assert time.monotonic() - started < 15  # generous multiple of the 2 s timeout


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=300))
def test_short_loops_finish_within_the_budget(n: int) -> None:
    outcome = run(f"let total = 0\nfor (let k = 0; k < {n}; k++) {{ total += 1 }}\ntotal", STEPS_ONLY)
    assert not isinstance(outcome, PrismError), outcome
    assert outcome.value == n


@settings(max_examples=20, deadline=None)
@given(st.integers(min_value=3000, max_value=10**9))
def test_long_loops_stop_at_the_step_limit(n: int) -> None:
    outcome = run(f"let total = 0\nfor (let k = 0; k < {n}; k++) {{ total += 1 }}\ntotal", STEPS_ONLY)
    assert isinstance(outcome, PrismLimitError), outcome
    assert "step" in outcome.message
