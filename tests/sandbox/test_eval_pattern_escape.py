"""Attack catalogue: escaping the child scope of ``eval_pattern`` — reading the
caller's variables, mutating the prelude or the caller's data, raising its own
limits, nesting without bound — in-process and with ``isolation: "process"``."""
from __future__ import annotations

import pytest
from sandbox_helpers import attack, returns, run

from kernel import Limits

ISOLATIONS = ["thread", "process"]


def child(src: str, bindings: str = "{}", options: str = "{}") -> str:
    """A caller that runs ``src`` as a child and returns the caught error (or the value)."""
    q = src.replace("\\", "\\\\").replace('"', '\\"')
    return f'let r = null; try {{ r = eval_pattern("{q}", {bindings}, {options}) }} catch (e) {{ r = e }}; '


def opts(isolation: str, extra: str = "") -> str:
    return "{isolation: \"%s\"%s}" % (isolation, (", " + extra) if extra else "")


READS = {
    "caller-let": ("let secret = 42; ", "secret"),
    "caller-function": ("function helper() { return 1 }; ", "helper()"),
    "caller-const": ("const K = 1; ", "K + 1"),
    "caller-loop-variable": ("let out = null; for let i = 0; i < 1; i = i + 1 { ", "i"),
}


@pytest.mark.parametrize("isolation", ISOLATIONS)
@pytest.mark.parametrize("prefix,src", list(READS.values()), ids=list(READS))
def test_child_cannot_read_caller_variables(prefix: str, src: str, isolation: str) -> None:
    program = prefix + child(src, "{}", opts(isolation)) + ("out = r }; out" if "for let" in prefix else "r")
    r = returns(program)
    assert r.value["kind"] == "runtime" and "Undefined variable" in r.value["message"]


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_child_cannot_read_caller_inputs(isolation: str) -> None:
    r = returns(child("input.k", "{}", opts(isolation)) + "r", inputs={"input": {"k": "secret"}})
    assert r.value["kind"] == "runtime"


PRELUDE_MUTATIONS = {
    "Math.max": ("Math.max = (a, b) => 0", "Math.max(1, 2)", 2),
    "Math.PI": ("Math.PI = 4", "Math.PI > 3.14 && Math.PI < 3.15", True),
    "console.log": ("console.log = (x) => 0", 'typeof console.log', "function"),
    "console-index": ('console["log"] = 1', 'typeof console.log', "function"),
    "JSON.parse": ("JSON.parse = (s) => 0", 'JSON.parse("[1]")', [1]),
    "Promise.all": ("Promise.all = 1", "Promise.all([1])", [1]),
    "Object.keys": ("Object.keys = 1", "Object.keys({a: 1})", ["a"]),
    "alias": ("let m = Math; m.max = 1", "Math.max(1, 2)", 2),
    "assign-builtin": ("print = 1", "typeof print", "function"),
    "assign-Math": ("Math = {}", "Math.max(1, 2)", 2),
    "Object.assign-into-Math": ("Object.assign(Math, {max: 1}); Math.max", "Math.max(1, 2)", 2),
    "method-property": ("Math.max.x = 1", "Math.max(1, 2)", 2),
}


@pytest.mark.parametrize("isolation", ISOLATIONS)
@pytest.mark.parametrize("mutation,check,expected", list(PRELUDE_MUTATIONS.values()), ids=list(PRELUDE_MUTATIONS))
def test_child_cannot_mutate_the_prelude(mutation: str, check: str, expected, isolation: str) -> None:
    r = returns(child(mutation, "{}", opts(isolation)) + f"[r, {check}]")
    err, after = r.value
    assert after == expected
    if isinstance(err, dict) and "kind" in err:
        assert err["kind"] in ("runtime", "syntax")


def test_prelude_is_frozen_for_the_caller_too() -> None:
    attack("Math.max = 1", "runtime", message="read-only")


def test_child_shadowing_the_prelude_is_local() -> None:
    r = returns(child("let Math = {max: (a, b) => 0}; Math.max(1, 2)") + "[r, Math.max(1, 2)]")
    assert r.value == [0, 2]


@pytest.mark.parametrize("isolation", ISOLATIONS)
@pytest.mark.parametrize("mutation", ["data.a = 2", "data.list[0] = 9", 'data["a"] = 3'],
                         ids=["member", "nested-index", "index"])
def test_child_cannot_mutate_the_callers_bound_data(mutation: str, isolation: str) -> None:
    r = returns("let data = {a: 1, list: [1]}; " + child(mutation, "{data: data}", opts(isolation))
                + "[r.kind, data]")
    assert r.value == ["runtime", {"a": 1, "list": [1]}]


def test_child_cannot_mutate_bound_arrays_in_legacy_mode() -> None:
    r = returns("let a = [1]; " + child("a.push(2); a.length", "{a: a}", '{mode: "legacy"}') + "[r.kind, a]",
                mode="legacy")
    assert r.value == ["runtime", [1]]


def test_bindings_are_visible_and_usable() -> None:
    assert returns('eval_pattern("f(x) + 1", {f: (v) => v * 2, x: 20})').value == 41


CALLER = Limits(max_steps=50_000, timeout=1.0, max_depth=100, max_items=1_000, max_string=10_000)

RAISING = {
    "steps": ('while (true) { }', "{steps: 1e12}", "steps"),
    "steps-infinite": ('while (true) { }', "{steps: 10 ** 400}", "steps"),
    "timeout": ("await sleep(1e9)", "{timeout: 1e9}", "time"),
}


@pytest.mark.parametrize("src,options,limit", list(RAISING.values()), ids=list(RAISING))
def test_options_cannot_raise_the_callers_steps_or_time(src: str, options: str, limit: str) -> None:
    # the child runs out of the caller's budget: the caller's own, uncatchable limit error
    attack(child(src, "{}", options) + "r", "limit", limit, limits=CALLER)


@pytest.mark.parametrize("src,options,limit", [
    ("function f() { return f() }; f()", "{depth: 1e9}", "depth"),
    ("range(5000)", "{items: 1e12}", "size"),
    ('"x".repeat(50000)', "{string: 1e12}", "size"),
], ids=["depth", "items", "string"])
def test_options_cannot_raise_the_callers_size_limits(src: str, options: str, limit: str) -> None:
    # the child's own limit (copied from the caller): catchable, reported as a limit error
    r = returns(child(src, "{}", options) + "r", limits=CALLER)
    assert r.value["kind"] == "limit" and r.value["limit"] == limit


def test_child_exhausting_its_own_steps_is_catchable() -> None:
    r = returns(child("while (true) { }", "{}", "{steps: 1000}") + "[r.kind, r.limit, 'continued']")
    assert r.value == ["limit", "steps", "continued"]


def test_callers_own_exhaustion_is_not_catchable() -> None:
    attack(child("while (true) { }") + "r", "limit", "steps", limits=CALLER)


def test_child_steps_count_against_the_caller() -> None:
    # each child succeeds on its own, but together they exhaust the caller's budget
    attack('let n = 0; while (true) { eval_pattern("let i = 0; while (i < 100) { i = i + 1 }"); n = n + 1 }',
           "limit", "steps", limits=CALLER)


def test_nested_eval_pattern_is_bounded() -> None:
    src = "let r = null; try { r = eval_pattern(src, {src: src}) } catch (e) { r = e }; r"
    r = returns(f"let src = {src!r}; eval_pattern(src, {{src: src}})".replace("'", '"'))
    assert "nested more than" in str(r.value)


def test_nested_eval_pattern_ten_levels_deep() -> None:
    src = "1"
    for _ in range(10):
        q = src.replace("\\", "\\\\").replace('"', '\\"')
        src = f'eval_pattern("{q}") + 1'
    out = returns(f"let r = null; try {{ r = {src} }} catch (e) {{ r = e }}; r")
    assert "nested more than 8 levels" in str(out.value)


def test_nested_children_share_the_callers_budget() -> None:
    # the innermost child runs out of what the callers had left: whichever level sees
    # it first, the whole nest stops within the caller's step budget
    src = "while (true) { }"
    for _ in range(5):
        q = src.replace("\\", "\\\\").replace('"', '\\"')
        src = f'eval_pattern("{q}", {{}}, {{steps: 1e12}})'
    out = run(src, limits=CALLER)
    assert out.error is not None and out.error.kind in ("limit", "runtime")
    assert "step limit exceeded (50,000 steps)" in out.error.message
    assert out.elapsed < 5.0


def test_child_syntax_runtime_and_limit_errors_have_locations() -> None:
    r = returns("let out = []; "
                'for s in ["let x = ;", "\\n  null.x", "while (true) { }"] { '
                "  try { eval_pattern(s, {}, {steps: 500}) } catch (e) { out = out.push([e.kind, e.line]) } }; out")
    assert r.value[0][0] == "syntax" and r.value[0][1] == 1
    assert r.value[1] == ["runtime", 2]
    assert r.value[2][0] == "limit"


def test_spawned_work_in_a_child_is_bounded_by_the_callers_deadline() -> None:
    attack(child("spawn(() => sleep(1e9)); await sleep(1e9)") + "r", "limit", "time",
           limits=Limits(max_steps=50_000, timeout=1.0), within=6.0)
