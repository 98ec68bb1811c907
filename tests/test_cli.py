"""The ``prism`` command through click's CliRunner (and once as the installed script):
output, stream separation and exit codes of run/eval/check/dump/repl."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import kernel
from bootstrap.cli import cli


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def write(tmp_path: Path):
    def _write(name: str, text: str) -> str:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return str(path)

    return _write


def no_python_traceback(result) -> None:
    assert "Traceback (most recent call last)" not in result.output


# ------------------------------------------------------------------ help and version


def test_help_documents_every_exit_code(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "Exit codes" in result.output
    for code, words in [("0", "success"), ("1", "runtime error"), ("2", "syntax"),
                        ("3", "limit exceeded"), ("4", "internal error")]:
        assert re.search(rf"^\s*{code}\s+.*{words}", result.output, re.M | re.I), code
    for command in ("run", "eval", "check", "repl", "dump"):
        assert command in result.output


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert re.match(r"prism, version \d+\.\d+", result.output)


def test_unknown_command_is_usage_error(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["frobnicate"])
    assert result.exit_code == 2


# ------------------------------------------------------------------ run


def test_run_prints_output_value_and_confidence(runner: CliRunner, write) -> None:
    path = write("hello.prism", 'print("working")\nconsole.error("note")\n"done" ~> 0.85\n')
    result = runner.invoke(cli, ["run", path])
    assert result.exit_code == 0, result.output
    assert result.stdout == "working\ndone\nconfidence: 0.85\n"
    assert result.stderr == "note\n"


def test_run_plain_value_has_no_confidence_line(runner: CliRunner, write) -> None:
    path = write("plain.prism", "let xs = [1, 2]\n{total: 3, items: xs, ok: true, none: null}\n")
    result = runner.invoke(cli, ["run", path])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"total": 3, "items": [1, 2], "ok": True, "none": None}
    assert "confidence" not in result.stdout


def test_run_json_prints_exactly_one_object(runner: CliRunner, write) -> None:
    path = write("j.prism", 'print("chatter");\n[1, 2.5, "x"] ~> 0.7\n')
    result = runner.invoke(cli, ["run", "--json", path])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"value": [1, 2.5, "x"], "confidence": 0.7}
    assert result.stdout.count("\n") == 1
    assert "chatter" in result.stderr  # program output moves out of the way


def test_run_json_without_confidence_is_null(runner: CliRunner, write) -> None:
    result = runner.invoke(cli, ["run", "--json", write("n.prism", "40 + 2")])
    assert json.loads(result.stdout) == {"value": 42, "confidence": None}


def test_run_input_json_is_bound_as_input(runner: CliRunner, write) -> None:
    path = write("in.prism", "input.items.length * input.factor")
    result = runner.invoke(cli, ["run", path, "--input", '{"items": [1, 2, 3], "factor": 2}'])
    assert result.exit_code == 0, result.output
    assert result.stdout == "6\n"


def test_run_input_from_file(runner: CliRunner, write) -> None:
    data = write("data.json", '{"name": "Ada"}')
    path = write("greet.prism", '"hi " + input.name')
    result = runner.invoke(cli, ["run", path, "--input", "@" + data])
    assert result.exit_code == 0, result.output
    assert result.stdout == "hi Ada\n"


def test_run_bad_json_input(runner: CliRunner, write) -> None:
    result = runner.invoke(cli, ["run", write("a.prism", "1"), "--input", "{not json"])
    assert result.exit_code == 2
    assert "--input is not valid JSON" in result.stderr
    assert result.stdout == ""
    no_python_traceback(result)


def test_run_bad_json_in_input_file(runner: CliRunner, write) -> None:
    bad = write("bad.json", "[1, 2,")
    result = runner.invoke(cli, ["run", write("a.prism", "1"), "--input", "@" + bad])
    assert result.exit_code == 2
    assert "bad.json is not valid JSON" in result.stderr


def test_run_missing_input_file(runner: CliRunner, write, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["run", write("a.prism", "1"), "--input", f"@{tmp_path}/nope.json"])
    assert result.exit_code == 2
    assert "nope.json" in result.stderr and "no such file" in result.stderr


def test_run_missing_file(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["run", str(tmp_path / "missing.prism")])
    assert result.exit_code == 2
    assert "missing.prism" in result.stderr and "no such file" in result.stderr
    no_python_traceback(result)


def test_run_reads_stdin(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["run", "-"], input="6 * 7\n")
    assert result.exit_code == 0
    assert result.stdout == "42\n"


def test_syntax_error_shows_position_and_caret(runner: CliRunner, write) -> None:
    path = write("syn.prism", "let total = 10\nlet score = ;\n")
    result = runner.invoke(cli, ["run", path])
    assert result.exit_code == 2
    assert result.stdout == ""
    err = result.stderr
    assert f"{path}:2:13" in err
    assert "let score = ;" in err
    caret = [line for line in err.splitlines() if line.strip().endswith("^")]
    assert caret and caret[0].index("^") == err.splitlines()[
        err.splitlines().index(next(x for x in err.splitlines() if "let score = ;" in x))].index(";")
    no_python_traceback(result)


def test_runtime_error_shows_prism_traceback(runner: CliRunner, write) -> None:
    path = write("rt.prism", "let point = {x: 1}\nfunction getZ(p) {\n  return p.z\n}\n"
                             "function outer() { return getZ(point) }\nouter()\n")
    result = runner.invoke(cli, ["run", path])
    assert result.exit_code == 1
    err = result.stderr
    assert "Property 'z' does not exist" in err
    assert f"{path}:3:" in err
    assert "traceback (most recent call last)" in err
    assert "in getZ" in err and "in outer" in err
    no_python_traceback(result)


def test_uncaught_throw_is_a_runtime_error(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["eval", 'throw "boom"'])
    assert result.exit_code == 1
    assert "boom" in result.stderr


def test_max_steps_limit(runner: CliRunner, write) -> None:
    path = write("loop.prism", "let i = 0\nwhile (true) { i += 1 }\n")
    result = runner.invoke(cli, ["run", "--max-steps", "1000", path])
    assert result.exit_code == 3
    assert "step limit" in result.stderr
    no_python_traceback(result)


def test_timeout_limit(runner: CliRunner, write) -> None:
    path = write("spin.prism", "while (true) { }\n")
    result = runner.invoke(cli, ["run", "--max-steps", "0", "--timeout", "0.3", path])
    assert result.exit_code == 3


def test_max_depth_limit(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["eval", "--max-depth", "30", "function f(n) { return f(n + 1) }\nf(0)"])
    assert result.exit_code == 3
    assert "depth" in result.stderr


def test_legacy_flag(runner: CliRunner) -> None:
    strict = runner.invoke(cli, ["eval", "total = 5\ntotal"])
    assert strict.exit_code == 1
    assert "Undefined variable: total" in strict.stderr
    legacy = runner.invoke(cli, ["eval", "--legacy", "total = 5\ntotal"])
    assert legacy.exit_code == 0
    assert legacy.stdout == "5\n"


# ------------------------------------------------------------------ eval


def test_eval_value_and_confidence(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["eval", "[1, 2] ~> 0.85"])
    assert result.exit_code == 0
    assert result.stdout == "[1, 2]\nconfidence: 0.85\n"


def test_eval_string_is_printed_raw(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["eval", '"a \\"quoted\\" word"'])
    assert result.stdout == 'a "quoted" word\n'


def test_eval_json_with_input(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["eval", "--json", "--input", '{"a": 21}', "input.a * 2 ~> 0.5"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"value": 42, "confidence": 0.5}


def test_eval_syntax_error(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["eval", "let = 3"])
    assert result.exit_code == 2
    assert "<eval>:1:" in result.stderr


# ------------------------------------------------------------------ check

MISTAKES = """\
const limit = 3
limit = 4
print(undefinedName)
function f() { return 1 }
break
"""


def test_check_clean_file(runner: CliRunner, write) -> None:
    path = write("ok.prism", "let x = 1\nfunction f(a) { return a + x }\nf(2)\n")
    result = runner.invoke(cli, ["check", path])
    assert result.exit_code == 0
    assert f"ok: {path}" in result.stdout
    assert "0 error(s) in 1 file(s)" in result.stdout


def test_check_lists_every_mistake_with_position(runner: CliRunner, write) -> None:
    path = write("bad.prism", MISTAKES)
    result = runner.invoke(cli, ["check", path])
    assert result.exit_code == 2
    out = result.output
    assert f"{path}:2:1" in out and "const" in out
    assert f"{path}:3:7" in out and "undefinedName" in out
    assert f"{path}:5:1" in out and "break" in out
    assert "3 error(s) in 1 file(s)" in out
    no_python_traceback(result)


def test_check_several_files(runner: CliRunner, write) -> None:
    good = write("good.prism", "1 + 1")
    bad = write("syntax.prism", "let x = (1 +\n")
    result = runner.invoke(cli, ["check", good, bad])
    assert result.exit_code == 2
    assert f"ok: {good}" in result.output
    assert f"{bad}:1:" in result.output
    assert "1 error(s) in 1 file(s)" in result.output


def test_check_missing_file(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["check", str(tmp_path / "gone.prism")])
    assert result.exit_code == 2
    assert "gone.prism" in result.output and "no such file" in result.output


# ------------------------------------------------------------------ dump


def test_dump_tokens(runner: CliRunner, write) -> None:
    path = write("t.prism", "let x = 'a'\nx ~> 0.5\n")
    result = runner.invoke(cli, ["dump", "tokens", path])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "1:1 LET 'let'"
    assert all(re.fullmatch(r"\d+:\d+ [A-Z_0-9]+ '.*'", line) for line in lines), lines
    assert any(line.startswith("2:3 ") and "'~>'" in line for line in lines)


def test_dump_ast_one_statement_per_line(runner: CliRunner, write) -> None:
    path = write("a.prism", "let x = 1 + 2\nprint(x)\n")
    result = runner.invoke(cli, ["dump", "ast", path])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    program = kernel.parse("let x = 1 + 2\nprint(x)\n", path)
    assert lines == [kernel.nodes.dump(s) for s in program.body]
    assert lines[0].startswith("(Let")


def test_dump_ast_syntax_error(runner: CliRunner, write) -> None:
    result = runner.invoke(cli, ["dump", "ast", write("s.prism", "let = 1")])
    assert result.exit_code == 2
    assert "s.prism:1:" in result.stderr


def test_dump_unknown_stage(runner: CliRunner, write) -> None:
    result = runner.invoke(cli, ["dump", "bytecode", write("s.prism", "1")])
    assert result.exit_code == 2


# ------------------------------------------------------------------ repl

HAS_SESSION = hasattr(kernel, "Session")


def test_repl_multiline_entry_and_confidence(runner: CliRunner) -> None:
    entries = "function sq(n) {\n  return n * n\n}\nsq(3 ~> 0.85)\n:quit\n"
    result = runner.invoke(cli, ["repl"], input=entries)
    assert result.exit_code == 0, result.output
    assert "... " in result.stdout  # continuation prompt for the open block
    if HAS_SESSION:
        assert "9 (~85.0%)" in result.stdout


@pytest.mark.skipif(not HAS_SESSION, reason="kernel has no Session")
def test_repl_keeps_variables_between_entries(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["repl"], input='let who = "Ada"\nprint("hi " + who)\nwho\n')
    assert result.exit_code == 0, result.output
    assert result.stdout.count("hi Ada") == 1  # earlier output is not repeated
    assert '"Ada"' in result.stdout


def test_repl_errors_are_reported_and_repl_continues(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["repl"], input="undefinedThing\n1 + 1\n")
    assert result.exit_code == 0  # Ctrl-D (end of input) exits cleanly
    assert "Undefined variable: undefinedThing" in result.stderr
    assert "\n2\n" in "\n" + result.stdout.replace("prism> ", "\n")
    no_python_traceback(result)


def test_repl_banner_mentions_session_fallback(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["repl"], input=":quit\n")
    assert result.exit_code == 0
    assert ("no Session" in result.stdout) == (not HAS_SESSION)


# ------------------------------------------------------------------ internal errors


def _boom(*args, **kwargs):
    raise ZeroDivisionError("simulated kernel bug")


def test_internal_error_exit_code_and_no_traceback(runner: CliRunner, monkeypatch) -> None:
    monkeypatch.setattr(kernel, "evaluate", _boom)
    monkeypatch.delenv("PRISM_DEBUG", raising=False)
    result = runner.invoke(cli, ["eval", "1"])
    assert result.exit_code == 4
    assert "internal error" in result.stderr
    assert "simulated kernel bug" in result.stderr
    no_python_traceback(result)


def test_internal_error_traceback_with_debug(runner: CliRunner, monkeypatch) -> None:
    monkeypatch.setattr(kernel, "evaluate", _boom)
    result = runner.invoke(cli, ["--debug", "eval", "1"])
    assert result.exit_code == 4
    assert "Traceback (most recent call last)" in result.stderr


def test_internal_error_traceback_with_env(runner: CliRunner, monkeypatch) -> None:
    monkeypatch.setattr(kernel, "evaluate", _boom)
    monkeypatch.setenv("PRISM_DEBUG", "1")
    result = runner.invoke(cli, ["eval", "1"])
    assert result.exit_code == 4
    assert "Traceback (most recent call last)" in result.stderr


# ------------------------------------------------------------------ the installed script


def _prism_script() -> str | None:
    here = Path(sys.executable).parent / "prism"
    return str(here) if here.exists() else shutil.which("prism")


@pytest.mark.skipif(_prism_script() is None, reason="console script `prism` not installed")
def test_installed_script(tmp_path: Path) -> None:
    prism = _prism_script()
    assert prism is not None
    env = {**os.environ, "PRISM_DEBUG": ""}
    ok = subprocess.run([prism, "eval", "--json", "1 + 1"], capture_output=True, text=True,
                        timeout=60, env=env)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == {"value": 2, "confidence": None}
    loop = tmp_path / "loop.prism"
    loop.write_text("while (true) { }\n")
    limited = subprocess.run([prism, "run", "--max-steps", "1000", str(loop)], capture_output=True,
                             text=True, timeout=60, env=env)
    assert limited.returncode == 3
    assert "step limit" in limited.stderr


def test_check_reports_independent_syntax_errors_each_at_its_place(tmp_path):
    src = tmp_path / "many.prism"
    src.write_text("let a = [1, 2\nlet b = 2\nb = = 3\nlet ok = 1\nlet c = (4 +\nlet d = 5\n")
    result = CliRunner().invoke(cli, ["check", str(src)])
    assert result.exit_code == 2
    out = result.output
    assert f"{src}:1:13" in out          # unfinished array on line 1 (reported where it ends)
    assert f"{src}:3:5" in out           # the stray '='
    assert f"{src}:5:12" in out          # unfinished expression on line 5
    assert "3 error(s) in 1 file(s)" in out


def test_check_labels_resolver_findings_as_errors_not_syntax(tmp_path):
    src = tmp_path / "static.prism"
    src.write_text("const k = 1\nk = 2\nprint(missing)\n")
    result = CliRunner().invoke(cli, ["check", str(src)])
    assert result.exit_code == 2
    assert "error: Cannot assign to const variable 'k'" in result.output
    assert "syntax error" not in result.output
