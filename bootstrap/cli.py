"""The ``prism`` command line: run, eval, check, repl and stage dumps.

Consumes file names, source text and options; produces program output on
stdout/stderr and an exit code.  Every stage of the kernel pipeline
(``tokenize → parse → check → evaluate``) is reachable from here, so a problem
can be looked at one stage at a time (``prism dump tokens|ast FILE``).

Error policy: user errors (syntax, runtime, limits, bad input) are printed with
``kernel.format_error`` on stderr and mapped to the exit codes below; a Python
traceback is shown only for internal errors, and only with ``--debug`` or
``PRISM_DEBUG=1``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import traceback
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, NoReturn

import click

# Exit codes (also printed by ``prism --help``).
EXIT_OK = 0
EXIT_RUNTIME = 1  # uncaught Prism runtime error (including `throw`)
EXIT_USAGE = 2  # syntax/static error, bad usage, bad input JSON, unreadable file
EXIT_LIMIT = 3  # a sandbox limit was exceeded: steps, time, depth, size, tasks
EXIT_INTERNAL = 4  # a bug in Prism itself

EPILOG = """\
\b
Exit codes:
  0  success
  1  Prism runtime error (uncaught error or `throw`)
  2  syntax or static error; bad usage or input (bad JSON, missing file)
  3  limit exceeded (steps, time, call depth, string/collection size)
  4  internal error (a bug in Prism; use --debug or PRISM_DEBUG=1 for the traceback)
"""

_EXIT_BY_KIND = {
    "syntax": EXIT_USAGE,
    "static": EXIT_USAGE,
    "runtime": EXIT_RUNTIME,
    "limit": EXIT_LIMIT,
    "cancelled": EXIT_LIMIT,
}


# ------------------------------------------------------------------ helpers


def _kernel() -> Any:
    """Import the kernel lazily so ``prism --help`` works (and stays fast) even
    when the kernel cannot be imported; a broken kernel is an internal error."""
    import kernel

    return kernel


def _debug_enabled() -> bool:
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx is not None else None
    if root is not None and root.params.get("debug"):
        return True
    return os.environ.get("PRISM_DEBUG", "") not in ("", "0", "false", "no")


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)


def _internal(exc: BaseException) -> NoReturn:
    """Report a bug in Prism: short message always, traceback only when debugging."""
    click.echo(f"internal error: {exc.__class__.__name__}: {exc}", err=True)
    click.echo("This is a bug in Prism, not in your program. Please report it.", err=True)
    if _debug_enabled():
        click.echo("".join(traceback.format_exception(exc)), err=True, nl=False)
    else:
        click.echo("(run with --debug or PRISM_DEBUG=1 to see the Python traceback)", err=True)
    raise SystemExit(EXIT_INTERNAL)


def _report(exc: BaseException) -> NoReturn:
    """Print a Prism error (or an unexpected exception) and exit with its code."""
    k = _kernel()
    if isinstance(exc, k.PrismError):
        kind = getattr(exc, "kind", "internal")
        if kind not in _EXIT_BY_KIND:
            _internal(exc)
        errors = getattr(exc, "errors", None) or [exc]
        for i, err in enumerate(errors):  # a syntax error may carry every static error
            if i:
                click.echo("", err=True)
            click.echo(k.format_error(err), err=True)
        raise SystemExit(_EXIT_BY_KIND[kind])
    _internal(exc)


def _read_source(path: str) -> str:
    """Read a program (``-`` is stdin); unreadable files are a usage error."""
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        _fail(f"cannot read {path!r}: no such file")
    except IsADirectoryError:
        _fail(f"cannot read {path!r}: it is a directory")
    except UnicodeDecodeError as e:
        _fail(f"cannot read {path!r}: not UTF-8 text ({e.reason} at byte {e.start})")
    except OSError as e:
        _fail(f"cannot read {path!r}: {e.strerror or e}")


def _parse_input(spec: str | None) -> Any:
    """``--input JSON`` or ``--input @FILE``; returns the decoded host value."""
    if spec is None:
        return None
    where = "--input"
    text = spec
    if spec.startswith("@"):
        where = spec[1:]
        text = _read_source(where)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        _fail(f"{where} is not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})")


def _limits(max_steps: int | None, timeout: float | None, max_depth: int | None) -> Any:
    """Sandbox defaults, with the given overrides (0 steps/timeout = unlimited)."""
    k = _kernel()
    kw: dict[str, Any] = {}
    if max_steps is not None:
        kw["max_steps"] = max_steps or None
    if timeout is not None:
        kw["timeout"] = timeout or None
    if max_depth is not None:
        kw["max_depth"] = max_depth
    return k.Limits(**kw)


def _output(stream: str, text: str) -> None:
    """Sink for ``print``/``console.*``: written as the program runs."""
    click.echo(text, err=(stream == "stderr"))


def _output_to_stderr(stream: str, text: str) -> None:
    """With ``--json`` stdout carries only the result object, so prints go to stderr."""
    click.echo(text, err=True)


def _plain(v: Any) -> Any:
    """JSON-ready copy: integral floats become ints, NaN/±Infinity become null."""
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return None
        if v.is_integer() and abs(v) < 2**53:
            return int(v)
        return v
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(key): _plain(x) for key, x in v.items()}
    return v


def show_value(v: Any) -> str:
    """The value as the CLI shows it: strings raw, numbers JS-style, the rest JSON."""
    if isinstance(v, str):
        return v
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    return json.dumps(_plain(v), ensure_ascii=False)


def show_confidence(c: float) -> str:
    """``0.85`` style: at most 6 significant digits, no float noise."""
    return f"{c:.6g}"


def percent(c: float) -> str:
    """``85.0%`` with JS toFixed(1) rounding (half-up on the exact double)."""
    d = Decimal(c * 100).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    return f"{d}%"


def _evaluate(source: str, filename: str, *, inputs: Any, limits: Any, mode: str,
              as_json: bool = False, clock: Any = None) -> Any:
    k = _kernel()
    try:
        return k.evaluate(source, filename=filename, inputs=inputs, limits=limits, mode=mode,
                          output=_output_to_stderr if as_json else _output, clock=clock)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except BaseException as e:  # noqa: BLE001 - every failure maps to an exit code
        if isinstance(e, SystemExit):
            raise
        _report(e)


def _print_result(result: Any, as_json: bool) -> None:
    if as_json:
        obj = {"value": _plain(result.value), "confidence": result.confidence}
        click.echo(json.dumps(obj, ensure_ascii=False, allow_nan=False))
        return
    click.echo(show_value(result.value))
    if result.confidence is not None:
        click.echo(f"confidence: {show_confidence(result.confidence)}")


# ------------------------------------------------------------------ options shared by run/eval

_input_option = click.option(
    "--input", "input_spec", metavar="JSON|@FILE",
    help="Input data as JSON text, or @FILE to read JSON from a file; bound to the global `input`.")
_json_option = click.option(
    "--json", "as_json", is_flag=True,
    help='Print exactly one JSON object {"value": ..., "confidence": ...} on stdout '
         "(the program's own output then goes to stderr).")
_legacy_option = click.option(
    "--legacy", is_flag=True,
    help="Parallax-era dialect: assignment creates undeclared names, push mutates.")


def _limit_options(f: Any) -> Any:
    f = click.option("--max-depth", type=click.IntRange(min=1), metavar="N",
                     help="Maximum call depth.")(f)
    f = click.option("--timeout", type=click.FloatRange(min=0), metavar="S",
                     help="Wall-clock limit in seconds (0 = none).")(f)
    f = click.option("--max-steps", type=click.IntRange(min=0), metavar="N",
                     help="Step budget: calls and loop iterations (0 = unlimited).")(f)
    return f


_virtual_time_option = click.option(
    "--virtual-time", is_flag=True,
    help="Run on a virtual clock: sleep, now(), timeouts and simulated agents' latency "
         "take no wall time and are deterministic (other agents stay real I/O).")


# ------------------------------------------------------------------ the group


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="prism-bootstrap", prog_name="prism")
@click.option("--debug", is_flag=True,
              help="Show Python tracebacks for internal errors (also PRISM_DEBUG=1).")
def cli(debug: bool) -> None:
    """Prism: the confidence-aware orchestration language of Parallax."""


_agents_option = click.option(
    "--agents", "agents_file", type=click.Path(dir_okay=False), metavar="FILE",
    help="Agent registry (TOML); default ./agents.toml when present.")
_trace_option = click.option(
    "--trace", "trace_file", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
    help="Write JSON-lines trace events (agent calls, durations, confidences) to FILE.")


def _registry(agents_file: str | None) -> Any:
    from bootstrap.agents import RegistryError
    from bootstrap.runner import load_agents
    try:
        return load_agents(agents_file)
    except RegistryError as e:
        _fail(str(e))
    except OSError as e:
        _fail(f"cannot read the agents file: {e}")


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@_input_option
@_legacy_option
@_json_option
@_agents_option
@_trace_option
@_virtual_time_option
@_limit_options
def run(file: str, input_spec: str | None, legacy: bool, as_json: bool, agents_file: str | None,
        trace_file: str | None, virtual_time: bool, max_steps: int | None, timeout: float | None,
        max_depth: int | None) -> None:
    """Run the Prism program FILE ("-" reads stdin) and print its result.

    Agents from --agents (or ./agents.toml) are available as `agents` and
    `select_agents`; a Parallax header (/** @agents … @minAgents N */) selects
    agents, and with --legacy they are all called first and their results injected
    (agentResults, successfulResults, agentList, agentCount).

    --virtual-time runs the program on a virtual clock, for experiments with
    simulated agents: time jumps to the next timer whenever every task is waiting,
    so a run that simulates minutes of agent latency finishes at once, with the same
    result every time."""
    from bootstrap.host import TraceWriter
    from bootstrap.runner import run_pattern
    data = _parse_input(input_spec)
    source = _read_source(file)
    limits = _limits(max_steps, timeout, max_depth)
    registry = _registry(agents_file)
    name = "<stdin>" if file == "-" else file
    trace = TraceWriter(trace_file) if trace_file else None
    k = _kernel()
    try:
        result = run_pattern(source, filename=name, input_value=data, registry=registry, legacy=legacy,
                             limits=limits, trace=trace, output=_output_to_stderr if as_json else _output,
                             clock=_virtual_clock() if virtual_time else None)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except k.PrismError as e:
        _report(e)
    finally:
        if trace is not None:
            trace.close()
    _print_result(result, as_json)


def _virtual_clock() -> Any:
    from kernel.clock import VirtualClock
    return VirtualClock()


@cli.command(name="eval")
@click.argument("code")
@_input_option
@_legacy_option
@_json_option
@_virtual_time_option
@_limit_options
def eval_(code: str, input_spec: str | None, legacy: bool, as_json: bool, virtual_time: bool,
          max_steps: int | None, timeout: float | None, max_depth: int | None) -> None:
    """Evaluate the Prism source CODE and print its result."""
    data = _parse_input(input_spec)
    limits = _limits(max_steps, timeout, max_depth)
    inputs = {"input": data} if input_spec is not None else None
    result = _evaluate(code, "<eval>", inputs=inputs, limits=limits,
                       mode="legacy" if legacy else "strict", as_json=as_json,
                       clock=_virtual_clock() if virtual_time else None)
    _print_result(result, as_json)


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def check(files: tuple[str, ...]) -> None:
    """Parse and statically check FILES without running them.

    Every error of every file is listed (syntax errors, undefined names,
    assignment to const, misplaced return/break/continue, ...), followed by a
    summary line.  Exits 2 if any error was found.
    """
    k = _kernel()
    total = 0
    bad_files = 0
    for path in files:
        try:
            with open(path, encoding="utf-8") as fh:
                source = fh.read()
        except (OSError, UnicodeDecodeError) as e:
            reason = "no such file" if isinstance(e, FileNotFoundError) else str(e)
            click.echo(f"error: cannot read {path!r}: {reason}")
            total += 1
            bad_files += 1
            continue
        try:
            errors = k.check(source, path)
        except Exception as e:  # noqa: BLE001 - check must report, not crash
            if isinstance(e, k.PrismError) and getattr(e, "kind", "") != "internal":
                errors = [e]
            else:
                _internal(e)
        if not errors:
            click.echo(f"ok: {path}")
            continue
        bad_files += 1
        for err in errors:
            total += 1
            click.echo(k.format_error(err))
            click.echo()
    if total:
        click.echo(f"{total} error(s) in {bad_files} file(s)")
        raise SystemExit(EXIT_USAGE)
    click.echo(f"0 error(s) in {len(files)} file(s)")


@cli.group()
def dump() -> None:
    """Show one stage of the pipeline: tokens or ast."""


@dump.command(name="tokens")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
def dump_tokens(file: str) -> None:
    """Tokens of FILE, one per line: line:col TYPE 'text'."""
    k = _kernel()
    source = _read_source(file)
    try:
        tokens = k.tokenize(source)
    except BaseException as e:  # noqa: BLE001
        if isinstance(e, SystemExit):
            raise
        if isinstance(e, k.PrismError) and e.filename is None:
            e.locate(e.span, file, source)
        _report(e)
    for ttype, text, line, col in tokens:
        click.echo(f"{line}:{col} {ttype} {_quote(text)}")


@dump.command(name="ast")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
def dump_ast(file: str) -> None:
    """The syntax tree of FILE: one S-expression per top-level statement."""
    k = _kernel()
    source = _read_source(file)
    try:
        program = k.parse(source, file)
    except BaseException as e:  # noqa: BLE001
        if isinstance(e, SystemExit):
            raise
        _report(e)
    for stmt in program.body:
        click.echo(k.nodes.dump(stmt))


def _quote(text: str) -> str:
    body = (text.replace("\\", "\\\\").replace("'", "\\'")
            .replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t"))
    return f"'{body}'"


# ------------------------------------------------------------------ repl

REPL_HISTORY = os.path.join(os.path.expanduser("~"), ".prism_history")


def _is_incomplete(k: Any, source: str) -> bool:
    """True when ``source`` only fails because it ends too early (an open
    bracket, block or multi-line string): the REPL then reads more lines."""
    try:
        k.parse(source, "<repl>")
    except k.PrismSyntaxError as e:
        msg = getattr(e, "message", str(e))
        return msg.startswith("Unexpected end of input") or msg.startswith(
            "Unterminated multiline string")
    except Exception:  # noqa: BLE001 - let evaluation report it
        return False
    return False


def _quiet_result(k: Any, source: str, result: Any) -> bool:
    """Declarations don't echo their value, nor bare calls (``print(x)``) their null."""
    if result.confidence is not None:
        return False
    try:
        body = k.parse(source, "<repl>").body
    except Exception:  # noqa: BLE001
        return False
    if not body:
        return True
    last = body[-1]
    name = type(last).__name__
    if name in ("Let", "FuncDef", "Import", "Export"):
        return True
    is_call = name == "ExprStmt" and type(getattr(last, "expr", None)).__name__ == "Call"
    return is_call and result.value is None


def _setup_readline() -> None:
    """Line editing and history when a terminal is attached and readline exists."""
    if not sys.stdin.isatty():
        return
    try:
        import atexit
        import readline
    except ImportError:
        return
    try:
        readline.read_history_file(REPL_HISTORY)
    except OSError:
        pass
    readline.set_history_length(1000)

    def save() -> None:
        try:
            readline.write_history_file(REPL_HISTORY)
        except OSError:
            pass

    atexit.register(save)


def _read_entry(k: Any) -> str | None:
    """One complete entry (possibly several lines); None at end of input."""
    try:
        line = input("prism> ")
    except EOFError:
        return None
    buf = line
    while buf.strip() and _is_incomplete(k, buf):
        try:
            more = input("... ")
        except EOFError:
            break
        if not more.strip():
            break  # an empty continuation line submits the entry as it is
        buf += "\n" + more
    return buf


@cli.command()
@_legacy_option
def repl(legacy: bool) -> None:
    """Interactive Prism: enter statements, see values and confidences.

    Incomplete input (an open bracket, block or string) continues on the next
    line with a ``...`` prompt; an empty line submits it anyway.  ``:quit`` or
    Ctrl-D exits.
    """
    try:
        k = _kernel()
    except Exception as e:  # noqa: BLE001
        _internal(e)
    mode = "legacy" if legacy else "strict"
    session_cls = getattr(k, "Session", None)
    session = None
    if session_cls is not None:
        try:
            session = session_cls(mode=mode, output=_output)
        except TypeError:
            session = session_cls()
    click.echo("Prism REPL. :quit or Ctrl-D to exit.")
    if session is None:
        click.echo("note: this kernel has no Session; each entry is evaluated on its own "
                   "(variables are not kept between entries).")
    _setup_readline()
    while True:
        try:
            entry = _read_entry(k)
        except KeyboardInterrupt:
            click.echo("\n(interrupted; :quit or Ctrl-D to exit)")
            continue
        if entry is None:
            click.echo()
            return
        text = entry.strip()
        if not text:
            continue
        if text in (":quit", ":q", ":exit"):
            return
        _repl_eval(k, session, entry, mode)


def _repl_eval(k: Any, session: Any, entry: str, mode: str) -> None:
    try:
        if session is not None:
            result = session.run(entry)
        else:
            result = k.evaluate(entry, filename="<repl>", mode=mode, output=_output)
    except KeyboardInterrupt:
        click.echo("(interrupted)")
        return
    except k.PrismError as e:
        if getattr(e, "kind", "") == "internal":
            _repl_internal(e)
        else:
            click.echo(k.format_error(e), err=True)
        return
    except Exception as e:  # noqa: BLE001 - the REPL survives bugs, but says so
        _repl_internal(e)
        return
    if _quiet_result(k, entry, result):
        return
    shown = show_value(result.value)
    if isinstance(result.value, str):
        shown = json.dumps(result.value, ensure_ascii=False)  # quoted, so "" and " " are visible
    if result.confidence is not None:
        shown += f" (~{percent(result.confidence)})"
    click.echo(shown)


def _repl_internal(e: BaseException) -> None:
    click.echo(f"internal error: {e.__class__.__name__}: {e}", err=True)
    if _debug_enabled():
        click.echo("".join(traceback.format_exception(e)), err=True, nl=False)


# ------------------------------------------------------------------ more commands
#
# Extension point.  The orchestration layer adds its commands here, next to
# the language commands above, e.g. in this module:
#
#     from bootstrap.<module> import compose, orchestrate, patterns, serve
#     cli.add_command(compose)        # prism compose REQ.json [-o FILE]
#     cli.add_command(orchestrate)    # prism orchestrate REQ.json [--agents ...] [--json]
#     cli.add_command(patterns)       # prism patterns list|show|export|gc
#     cli.add_command(serve)          # prism serve
#
# Such commands should reuse the helpers above: _parse_input (--input JSON|@FILE),
# _limit_options, _print_result (--json shape), _report (error → exit code) so the
# exit codes in EPILOG stay true for every command.


from bootstrap.cli_orchestrate import compose, orchestrate, patterns  # noqa: E402

cli.add_command(compose)
cli.add_command(orchestrate)
cli.add_command(patterns)
try:
    from bootstrap.serve_cli import serve  # noqa: E402
except ImportError:  # the HTTP service needs starlette/uvicorn
    serve = None
if serve is not None:
    cli.add_command(serve)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``prism``)."""
    cli.main(args=argv, prog_name="prism")
