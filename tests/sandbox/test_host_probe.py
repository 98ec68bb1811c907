"""Attack catalogue: probing for the host (Python) through member access, indexing,
string conversion, error objects and built-ins.  Every probe ends in a plain
PrismRuntimeError or a missing value (null); nothing shows a Python repr, path,
traceback or attribute."""
from __future__ import annotations

import pytest
from sandbox_helpers import attack, check_error_clean, returns, run

from kernel.values import Builtin, Confident, Function, Promise

PRELUDE = ("function fdecl() { return 1 }; async function fasync() { return 1 }; "
           "let caught = null; try { null.x } catch (e) { caught = e }; "
           'let childErr = null; try { eval_pattern("null.x") } catch (e) { childErr = e }; ')

KINDS = {
    "number": "(1)", "string": '"s"', "boolean": "true", "array": "[1]", "object": "({a: 1})",
    "builtin": "print", "bound-method": "[1].map", "lambda": "(x => x)", "function": "fdecl",
    "async-function": "fasync", "promise": "Promise.resolve(1)", "timer": "sleep(1)",
    "confident": "(1 ~> 0.5)", "confident-object": "({a: 1} ~> 0.5)", "Math": "Math",
    "console": "console", "JSON": "JSON", "Promise": "Promise", "eval_pattern": "eval_pattern",
    "caught-error": "caught", "child-error": "childErr", "random-fn": "seeded_random(1)",
    "console.log": "console.log", "Math.max": "Math.max",
}

NAMES = ["__class__", "__dict__", "__globals__", "__builtins__", "__code__", "__closure__", "__init__",
         "__subclasses__", "__mro__", "__bases__", "__self__", "__func__", "__module__", "__reduce__",
         "__getattribute__", "constructor", "prototype", "__proto__", "f_globals", "gi_frame", "func_globals",
         "fn", "future", "conf", "code", "env", "rt", "budget", "on_cancel", "__name__"]

OPS = {"dot": "{v}.{n}", "optional": "{v}?.{n}", "confident": "{v}~.{n}", "index": '{v}["{n}"]',
       "call": "{v}.{n}()", "optional-index": '{v}?.["{n}"]'}

PRISM_TYPES = (float, str, bool, type(None), list, dict, Confident, Function, Promise)


def _probe(expr: str) -> None:
    out = run(PRELUDE + expr)
    if out.error is not None:
        assert out.error.kind in ("runtime", "syntax"), f"{expr}: {out.error.kind}: {out.error.message}"
        from sandbox_helpers import check_error_clean
        check_error_clean(out.error)
        return
    raw = out.result.raw
    inner = raw.value if type(raw) is Confident else raw
    assert inner is None, f"{expr} reached something: {out.result.value!r:.200}"
    assert isinstance(raw, PRISM_TYPES)


@pytest.mark.parametrize("op", list(OPS.values()), ids=list(OPS))
@pytest.mark.parametrize("value", list(KINDS.values()), ids=list(KINDS))
def test_dunder_and_host_attribute_names_are_missing(value: str, op: str) -> None:
    for name in NAMES:
        _probe(op.format(v=value, n=name))


@pytest.mark.parametrize("value", list(KINDS.values()), ids=list(KINDS))
def test_rendering_a_value_shows_no_host_repr(value: str) -> None:
    forms = [f'"${{{value}}}"', f"String({value})", f"[{value}].join()", f"JSON.stringify([{value}])",
             f"canonical_json([{value}])", f"{value}", f"[{value}]", f"({{k: {value}}})", f"typeof {value}"]
    for form in forms:
        r = returns(PRELUDE + form)
        assert not isinstance(r.value, (Function, Promise, Builtin))
    out = run(PRELUDE + f"print({value}); console.log({value}, [{value}]); console.error({{x: {value}}})")
    assert out.error is None
    from sandbox_helpers import assert_clean
    assert_clean(out.printed, "printed")
    assert len(out.printed) == 3


def test_functions_display_as_function_tags() -> None:
    assert returns('"${print} ${x => x} ${Promise.resolve(1)}"').value == \
        "[Function: print] [Function: lambda] [Promise]"


ERRORS = {
    "null-member": "null.x",
    "undefined-call": "let u = null; u()",
    "arity": "let f = (a, b) => a; f(1)",
    "builtin-type": 'Math.sqrt("x")',
    "json-parse": 'JSON.parse("{bad")',
    "thrown-object": 'throw {message: "boom", detail: [1, 2]}',
    "thrown-function": "throw print",
    "rejected-promise": 'await Promise.reject("nope")',
    "failed-task": "await spawn(() => null.x)",
    "callback": "[1].map(x => x.y.z)",
    "index": "[1][5]",
    "spread": "[...1]",
    "confidence": '1 ~> "high"',
    "child-runtime": 'eval_pattern("null.x")',
    "child-syntax": 'eval_pattern("let = ")',
    "child-limit": 'eval_pattern("while (true) { }", {}, {steps: 100})',
    "nested-child": 'eval_pattern("eval_pattern(\\"null.x\\")")',
}


@pytest.mark.parametrize("source", list(ERRORS.values()), ids=list(ERRORS))
def test_caught_error_objects_hold_no_host_details(source: str) -> None:
    r = returns("let e = null; try { " + source + " } catch (err) { e = err }; "
                "[typeof e, String(e), JSON.stringify(e), e]")
    kind, text, as_json, value = r.value
    assert kind in ("string", "object", "function"), kind
    assert text
    assert as_json is None or isinstance(as_json, str)      # JSON.stringify(function) is null, as in JS
    if isinstance(value, dict) and "kind" in value:          # eval_pattern's error object
        assert set(value) <= {"kind", "message", "line", "column", "limit"}
        assert value["kind"] in ("syntax", "runtime", "limit")


@pytest.mark.parametrize("source", list(ERRORS.values()), ids=list(ERRORS))
def test_uncaught_errors_hold_no_host_details(source: str) -> None:
    attack(source, "runtime")


BUILTIN_MISUSE = [
    "Math.atan2()", "Math.atan2(1)", "Math.pow(1)", "Math.sqrt()", 'Math.max("a")', 'Math.hypot("a")',
    "JSON.parse(1)", 'JSON.parse("{")', "Object.keys(1)", "Object.assign(1)", "Object.fromEntries(1)",
    'range("a")', "range()", "range(1, 2, 3, 4)", "range(0, 10, 0)", "len(1)", "len()", "keys(1)",
    "values()", "spawn()", "spawn(1)", "sleep()", 'sleep("a")', "delay(1, 2)", "Promise.all(1)",
    "Promise.race([])", "Promise.race()", "Promise.resolve()", "Promise.reject()", "Promise.allSettled(1)",
    "confidence()", "confidence(2)", "confidence(1)(1)", 'threshold("a")', "consensus()", "consensus([])",
    "aggregate(1)", "aggregate([1], {combine: 1})", "sortBy(1)", 'sortBy("a")(1)', "groupBy()", "groupBy(1)",
    'debounce("x")', "debounce(1)(1)", 'max("a")', 'min([1, "a"])', "map()", "map(1, 2)", "filter([1], 1)",
    "reduce([], (a, b) => a)", "reduce(1)", '"s".repeat(-1)', '"s".repeat("a")', '"s".split(1)',
    '"s".replace()', '"s".replace("s", x => x)', '"s".includes()', '"s".padStart("a")', '"s".slice("a")',
    '"s".startsWith(1)', "[].push()", "[].join(1)", "[].map()", "[].map(1)", "[].sort(1)",
    '[3, 1].sort((a, b) => "x")', "[].reduce()", "[].reduce((a, b) => a)", '[[1]].flat("a")', '[1].at("a")',
    "[1].includes()", "[1].indexOf()", "[1].find()", "(1).toFixed(-1)", '(1).toFixed("a")', "(1).toFixed(101)",
    "llm()", "llm(1)", "stream_llm()", "shared_state()", "shared_state(1)", "settle()", "eval_pattern()",
    "eval_pattern(1)", 'eval_pattern("1", 1)', 'eval_pattern("1", {}, {steps: -1})',
    'eval_pattern("1", {"a b": 1})', 'eval_pattern("1", {}, {isolation: "fork"})',
    'eval_pattern("1", {}, {steps: "many"})', "1()", "null()", '"s"()', "Math()", "Math.PI()", "print.x",
    'print["x"]', '[1]["a"]', "({})[1]", "(1)[0]", '"abc"[0]', "null[0]", "true.x", "-print", "print + 1",
    "[] * {}", '"a" - 1', "[...1]", "({...1})", "let {a} = 1", "let [a] = 1", "for x in 1 { }",
    "uncertain if (1) { high { 1 } }", '1 ~?> "x"', "print instanceof 1",
]


@pytest.mark.parametrize("source", BUILTIN_MISUSE)
def test_builtin_misuse_is_a_runtime_error(source: str) -> None:
    attack(source, "runtime")


@pytest.mark.parametrize("where", ["main", "task", "child"])
def test_internal_errors_do_not_show_the_host_exception(monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    # simulate an interpreter bug: a builtin raising a plain Python exception
    import kernel.builtins as B

    def broken(v):
        raise ValueError("secret /work/host/path.py 0xdeadbeef")
    monkeypatch.setattr(B, "display", broken)
    src = {"main": "String(1)", "task": "await spawn(() => String(1))",
           "child": 'eval_pattern("String(1)")'}[where]
    out = run(src)
    assert out.error is not None and out.error.kind == "internal"
    assert "secret" not in out.error.message and "secret" not in str(out.error)
    check_error_clean(out.error)
