"""Process isolation (kernel/isolate.py): the same values and error kinds as in-process,
OS limits in the child, and a killed child mapped to a memory/time limit error."""
from __future__ import annotations

import math
import os
import sys
import time

import pytest
from sandbox_helpers import assert_clean, attack, check_error_clean, returns, run

import kernel
from kernel import Limits, PrismLimitError, PrismRuntimeError
from kernel import isolate

LIMITS = Limits(max_steps=200_000, timeout=5.0, max_depth=200, max_items=100_000, max_string=1_000_000,
                max_tasks=16)

PARITY = {
    "number": "1 + 2",
    "confident": "(3 ~> 0.8) ~+ (4 ~> 0.5)",
    "nested-confidence": "[1 ~> 0.5, {a: 2 ~> 0.25}] ~> 0.9",
    "special-numbers": "[Math.sqrt(-1), 10 ** 400, -(10 ** 400), 0.1 + 0.2]",
    "strings": '["a\\u0000b", "\\ud800", "😀", "\\u202e"]',
    "object": '({b: 1, a: [true, false, null], "k y": "v"})',
    "function-result": "(x => x)",
    "promise-result": "async function f() { return 5 ~> 0.3 }; f()",
    "printing": 'print("hi", 1 ~> 0.5); console.error("warn"); 7',
}


@pytest.mark.parametrize("source", list(PARITY.values()), ids=list(PARITY))
def test_same_value_and_confidence_as_in_process(source: str) -> None:
    a = run(source, limits=LIMITS)
    b = run(source, limits=LIMITS, isolated=True)
    assert a.error is None and b.error is None, (a.error, b.error)
    assert _same(a.result.value, b.result.value)
    assert a.result.confidence == b.result.confidence
    assert a.printed == b.printed


def _same(x, y) -> bool:
    if isinstance(x, float) and math.isnan(x):
        return isinstance(y, float) and math.isnan(y)
    if isinstance(x, list):
        return isinstance(y, list) and len(x) == len(y) and all(_same(a, b) for a, b in zip(x, y))
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    return x == y and type(x) is type(y)


ERRORS = {
    "syntax": ("let x = ;", "syntax", None),
    "runtime": ("\n\n  null.x", "runtime", None),
    "steps": ("while (true) { }", "limit", "steps"),
    "depth": ("function f() { return f() }; f()", "limit", "depth"),
    "size": ('let s = "x"; while (true) { s = s + s }', "limit", "size"),
    "tasks": ("function f() { return spawn(f) }; await f()", "limit", "tasks"),
}


@pytest.mark.parametrize("source,kind,limit", list(ERRORS.values()), ids=list(ERRORS))
def test_same_error_kind_and_location_as_in_process(source: str, kind: str, limit: str | None) -> None:
    a = run(source, limits=LIMITS)
    b = run(source, limits=LIMITS, isolated=True)
    assert a.error is not None and b.error is not None
    assert (a.error.kind, getattr(a.error, "limit", None)) == (b.error.kind, getattr(b.error, "limit", None))
    assert b.error.kind == kind and getattr(b.error, "limit", None) == limit
    assert (a.error.line, a.error.column, a.error.message) == (b.error.line, b.error.column, b.error.message)
    assert str(a.error) == str(b.error)
    check_error_clean(b.error)


def test_time_limit_in_the_child() -> None:
    start = time.monotonic()
    attack("while (true) { }", "limit", "time", limits=Limits(max_steps=None, timeout=1.0), isolated=True,
           within=8.0)
    assert time.monotonic() - start >= 0.9


def test_memory_exhaustion_is_a_memory_limit_error() -> None:
    src = 'let a = []; while (true) { a = a.push("x".repeat(1000000) + a.length) }'
    attack(src, "limit", "memory", limits=Limits(max_steps=None, timeout=20.0), isolated=True, memory_mb=400,
           within=20.0)


def test_inputs_must_be_plain_data() -> None:
    with pytest.raises(kernel.PrismError):
        isolate.evaluate_isolated("x", inputs={"x": object()}, limits=LIMITS)


def test_inputs_round_trip() -> None:
    r = returns("[input.a, input.b.length, input.c]", inputs={"input": {"a": 1.5, "b": [1, 2], "c": None}},
                limits=LIMITS, isolated=True)
    assert r.value == [1.5, 2, None]


def test_inputs_are_read_only_in_the_child() -> None:
    attack("input.a = 2", "runtime", inputs={"input": {"a": 1}}, limits=LIMITS, isolated=True)


# ---------------------------------------------------------------- eval_pattern(..., {isolation: "process"})

P = '{isolation: "process"}'


def test_eval_pattern_process_value_and_confidence() -> None:
    r = returns(f'eval_pattern("a ~+ b", {{a: 1 ~> 0.5, b: 2}}, {P})', limits=LIMITS)
    assert r.value == 3 and r.confidence == 0.5


@pytest.mark.parametrize("binding,what", [
    ("{f: print}", "'f' is a function"),
    ("{f: x => x}", "'f' is a function"),
    ("{agent: {name: \"a\", analyze: (t) => t}}", "'agent.analyze' is a function"),
    ("{p: Promise.resolve(1)}", "'p' is a promise"),
    ("{list: [1, [2, print]]}", "'list[1][1]' is a function"),
], ids=["builtin", "lambda", "agent-object", "promise", "nested"])
def test_eval_pattern_process_rejects_non_data_bindings(binding: str, what: str) -> None:
    r = returns(f'let r = null; try {{ eval_pattern("1", {binding}, {P}) }} catch (e) {{ r = e }}; r',
                limits=LIMITS)
    assert isinstance(r.value, str) and "plain data" in r.value and what in r.value


@pytest.mark.parametrize("src,kind,limit", [
    ("let x = ;", "syntax", None),
    ("null.x", "runtime", None),
    ("while (true) { }", "limit", "steps"),
    ('let a = []; while (true) { a = a.push("x".repeat(1000000) + a.length) }', "limit", "memory"),
], ids=["syntax", "runtime", "steps", "memory"])
def test_eval_pattern_process_failures_are_catchable(src: str, kind: str, limit: str | None) -> None:
    q = src.replace('"', '\\"')
    r = returns(f'let r = null; try {{ eval_pattern("{q}", {{}}, {{isolation: "process", steps: 1000, '
                f'memory: 300}}) }} catch (e) {{ r = e }}; [r, "continued"]',
                limits=Limits(max_steps=200_000, timeout=20.0, max_string=50_000_000), within=20.0)
    err, tail = r.value
    assert tail == "continued"
    assert err["kind"] == kind and err.get("limit") == limit
    assert_clean(err["message"])


def test_eval_pattern_process_child_timeout_is_catchable() -> None:
    r = returns(f'let r = null; try {{ eval_pattern("while (true) {{ }}", {{}}, '
                '{isolation: "process", timeout: 0.5, steps: 1e12}) } catch (e) { r = [e.kind, e.limit] }; r',
                limits=Limits(max_steps=None, timeout=10.0))
    assert r.value == ["limit", "time"]


def test_eval_pattern_process_callers_deadline_kills_the_child() -> None:
    start = time.monotonic()
    attack(f'let r = null; try {{ eval_pattern("while (true) {{ }}", {{}}, {P}) }} catch (e) {{ r = e }}; r',
           "limit", "time", limits=Limits(max_steps=None, timeout=1.0), within=8.0)
    assert time.monotonic() - start >= 0.9


def test_eval_pattern_process_callers_steps_are_not_catchable() -> None:
    attack(f'let r = null; try {{ eval_pattern("while (true) {{ }}", {{}}, {P}) }} catch (e) {{ r = e }}; r',
           "limit", "steps", limits=Limits(max_steps=50_000, timeout=10.0))


def test_eval_pattern_process_steps_are_charged_to_the_caller() -> None:
    src = "let i = 0; while (i < 20000) { i = i + 1 }"
    attack(f'let n = 0; while (true) {{ eval_pattern("{src}", {{}}, {P}); n = n + 1 }}', "limit", "steps",
           limits=Limits(max_steps=50_000, timeout=20.0), within=20.0)


def test_eval_pattern_process_output_is_forwarded_in_order() -> None:
    r = returns(f'print("before"); eval_pattern("print(1); print(2); 3", {{}}, {P}) + 1', limits=LIMITS)
    assert r.value == 4


def test_eval_pattern_process_memory_option_cannot_raise_the_default() -> None:
    r = returns(f'eval_pattern("1", {{}}, {{isolation: "process", memory: 1e12}})', limits=LIMITS)
    assert r.value == 1


def test_eval_pattern_process_nested() -> None:
    inner = 'eval_pattern(\\"x * 2\\", {x: x}, {isolation: \\"process\\"})'
    r = returns(f'eval_pattern("{inner}", {{x: 21}}, {P})', limits=LIMITS)
    assert r.value == 42


def test_isolated_children_run_at_most_max_children_at_once() -> None:
    n = isolate.MAX_CHILDREN + 2
    r = returns(f"let ps = range({n}).map(i => spawn(() => eval_pattern(\"await sleep(300); i\", {{i: i}}, {P})));"
                " Promise.all(ps)", limits=Limits(max_steps=200_000, timeout=20.0), within=20.0)
    assert r.value == list(range(n))


# ---------------------------------------------------------------- how a dead child is reported

def _fake_child(code: str):
    return lambda: [sys.executable, "-I", "-c", code]


@pytest.mark.parametrize("code,limit", [
    ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", "memory"),
    ("import os; os.abort()", "memory"),
    ("raise MemoryError", "memory"),
    ("import os, signal; os.kill(os.getpid(), signal.SIGXCPU)", "time"),
    ("import time; time.sleep(60)", "time"),
    ("print('not json'); import sys; sys.exit(0)", "memory"),
], ids=["segfault", "abort", "memory-error", "cpu-limit", "hangs", "garbage"])
def test_dead_child_maps_to_a_limit_error(monkeypatch: pytest.MonkeyPatch, code: str, limit: str) -> None:
    monkeypatch.setattr(isolate, "_child_command", _fake_child(code))
    monkeypatch.setattr(isolate, "START_GRACE", 0.5)
    start = time.monotonic()
    with pytest.raises(PrismLimitError) as info:
        isolate.evaluate_isolated("1", limits=Limits(timeout=1.0))
    assert info.value.limit == limit
    assert time.monotonic() - start < 10.0
    check_error_clean(info.value)


def test_real_cpu_limit_kills_a_busy_child(monkeypatch: pytest.MonkeyPatch) -> None:
    # a child that never reads its budget (pure Python busy loop) is stopped by RLIMIT_CPU
    code = ("import resource; resource.setrlimit(resource.RLIMIT_CPU, (1, 2))\n"
            "while True: pass")
    monkeypatch.setattr(isolate, "_child_command", _fake_child(code))
    monkeypatch.setattr(isolate, "START_GRACE", 30.0)
    start = time.monotonic()
    with pytest.raises(PrismLimitError) as info:
        isolate.evaluate_isolated("1", limits=Limits(timeout=30.0))
    assert info.value.limit == "time"
    assert time.monotonic() - start < 15.0


def test_child_os_limits_are_applied() -> None:
    # the child's own view of its limits, read through a tiny fake "kernel"
    import json
    import subprocess
    req = isolate._request("1", {}, LIMITS, time.monotonic() + 5, "<t>", "strict", 512, 0, 0)
    code = ("import sys, json, resource; sys.path.insert(0, %r)\n"
            "from kernel import isolate\n"
            "req = json.loads(sys.stdin.read())\n"
            "isolate._apply_os_limits(req['memory_mb'], req['cpu'])\n"
            "print(json.dumps([resource.getrlimit(r) for r in (resource.RLIMIT_AS, resource.RLIMIT_CPU, "
            "resource.RLIMIT_CORE, resource.RLIMIT_FSIZE)]))") % isolate._ROOT
    out = subprocess.run([sys.executable, "-I", "-c", code], input=json.dumps(req), capture_output=True,
                         text=True, timeout=30, check=True)
    as_, cpu, core, fsize = json.loads(out.stdout)
    assert as_[0] == 512 * 1024 * 1024
    assert 5 <= cpu[0] <= 8 and cpu[1] == cpu[0] + 1
    assert core == [0, 0] and fsize == [0, 0]


def test_child_is_a_fresh_interpreter_not_a_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    # a marker only this process has must not exist in the child
    monkeypatch.setenv("PRISM_PARENT_SECRET", "s3cret")
    r = isolate.evaluate_isolated("1", limits=LIMITS)
    assert r.value == 1
    assert set(isolate._child_env()) == {"MALLOC_ARENA_MAX", "LC_ALL"}      # none of the host's variables


def test_no_child_processes_are_left_behind() -> None:
    before = _children()
    for src in ["while (true) { }", "await sleep(1e9)", "1"]:
        run(src, limits=Limits(max_steps=None, timeout=0.5), isolated=True)
    time.sleep(0.2)
    assert _children() <= before


def _children() -> set[int]:
    me = os.getpid()
    out = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == me and fields[0] != "Z":
                    out.add(int(pid))
            except OSError:
                pass
    return out


def test_isolated_concurrency_is_also_bounded_by_the_address_space() -> None:
    # every task thread reserves stack inside the child's memory limit
    attack("let ps = []; while (true) { ps = ps.push(spawn(() => sleep(1e9))) }", "limit", "tasks",
           limits=Limits(max_steps=None, timeout=10.0, max_tasks=10_000), isolated=True)


def test_isolation_unavailable_is_a_runtime_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(isolate, "_child_command", lambda: ["/nonexistent/python"])
    with pytest.raises(PrismRuntimeError) as info:
        isolate.evaluate_isolated("1", limits=LIMITS)
    assert "unavailable" in info.value.message
