"""``prism compose``, ``prism orchestrate`` and ``prism patterns``.

Consumes requirement files, an agent registry and the pattern store; prints
patterns, results (``--json``: value, confidence, pattern {id, cached, composer},
fallback_taken) and store listings.  Exit codes as in ``prism --help``.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click

from .cli import (EXIT_LIMIT, EXIT_RUNTIME, EXIT_USAGE, _agents_option, _fail, _input_option, _limit_options,
                  _limits, _output, _output_to_stderr, _parse_input, _registry, _trace_option, _virtual_clock,
                  _virtual_time_option, show_confidence, show_value)

_store_option = click.option("--store", "store_path", type=click.Path(dir_okay=False), metavar="PATH",
                             help="Pattern store (SQLite); default $PRISM_STORE or ~/.local/share/prism/store.db.")
_composer_option = click.option("--composer", type=click.Choice(["builtin", "llm"]), default="builtin",
                                show_default=True, help="Which composer writes the pattern.")
_EXIT_BY_KIND = {"requirements": EXIT_USAGE, "composer": EXIT_RUNTIME, "validation": EXIT_RUNTIME,
                 "runtime": EXIT_RUNTIME, "limit": EXIT_LIMIT, "cancelled": EXIT_LIMIT}


def _requirements(path: str) -> Any:
    from .requirements import RequirementsError, load_requirements
    if not Path(path).is_file():
        _fail(f"cannot read {path!r}: no such file")
    try:
        return load_requirements(path)
    except RequirementsError as e:
        _fail(str(e))


def _store(path: str | None) -> Any:
    from .store import PatternStore, StoreError
    try:
        return PatternStore(path)
    except StoreError as e:
        _fail(str(e))


def _orch_fail(e: Any) -> None:
    click.echo(f"orchestration failed ({e.kind}): {e.message}", err=True)
    if e.error is not None and getattr(e.error, "span", None) is not None and e.error.filename \
            and not str(e.error.filename).endswith("bootstrap-composer.prism"):
        from kernel import format_error
        click.echo(format_error(e.error), err=True)
    raise SystemExit(_EXIT_BY_KIND.get(e.kind, EXIT_RUNTIME))


class _Progress:
    """One status line on stderr while a long run is going (only on a terminal)."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.calls = self.done = 0
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def event(self, ev: dict) -> None:
        kind = ev.get("event")
        if kind == "agent_call_start":
            self.calls += 1
        elif kind == "agent_call_end":
            self.done += 1

    def __enter__(self) -> "_Progress":
        if self.enabled:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            if time.monotonic() - self.t0 > 0.5:
                sys.stderr.write(f"\r  running… {time.monotonic() - self.t0:5.1f}s  agent calls {self.done}/{self.calls}  ")
                sys.stderr.flush()

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            if time.monotonic() - self.t0 > 0.5:
                sys.stderr.write("\r" + " " * 60 + "\r")
                sys.stderr.flush()


@click.command()
@click.argument("requirements", type=click.Path(dir_okay=False))
@_agents_option
@_composer_option
@_store_option
@click.option("-o", "--output", "out_file", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              help="Write the pattern to FILE instead of printing it.")
@click.option("--fresh", is_flag=True, help="Compose again even if the store has this pattern.")
@click.option("--json", "as_json", is_flag=True, help="Print {id, composer, cached, metadata, validation, pattern}.")
def compose(requirements: str, agents_file: str | None, composer: str, store_path: str | None, out_file: str | None,
            fresh: bool, as_json: bool) -> None:
    """Compose the pattern for REQUIREMENTS (JSON) without running it — the review step.

    The printed pattern is plain Prism: review it, edit it, and run it with
    `prism run FILE --agents agents.toml --input @input.json`."""
    from .orchestrate import OrchestrationError, compose_pattern
    req = _requirements(requirements)
    registry = _registry(agents_file or _sibling_agents(requirements))
    store = _store(store_path)
    try:
        c = compose_pattern(req, registry=registry, composer=composer, store=store, fresh=fresh)
    except OrchestrationError as e:
        _orch_fail(e)
    if c.composer_note:
        click.echo(f"note: {c.composer_note}", err=True)
    if as_json:
        click.echo(json.dumps({"id": c.id, "composer": c.composer, "cached": c.cached, "metadata": c.metadata,
                               "validation": c.validation, "pattern": c.source}, indent=2, default=str))
        return
    if out_file:
        Path(out_file).write_text(c.source, encoding="utf-8")
        click.echo(f"wrote {out_file} (pattern {c.id}, composer {c.composer}"
                   f"{', from the store' if c.cached else ''})", err=True)
        return
    click.echo(c.source, nl=False)


def _sibling_agents(requirements: str) -> str | None:
    """``agents.toml`` next to the requirements file, when there is no ./agents.toml."""
    if Path("agents.toml").is_file():
        return None
    candidate = Path(requirements).resolve().parent / "agents.toml"
    return str(candidate) if candidate.is_file() else None


@click.command()
@click.argument("requirements", type=click.Path(dir_okay=False))
@_agents_option
@_composer_option
@_input_option
@_store_option
@click.option("--fresh", is_flag=True, help="Compose again even if the store has this pattern.")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"value", "confidence", "pattern": {"id", "cached", "composer"}, "fallback_taken"}.')
@_trace_option
@_virtual_time_option
@_limit_options
def orchestrate(requirements: str, agents_file: str | None, composer: str, input_spec: str | None,
                store_path: str | None, fresh: bool, as_json: bool, trace_file: str | None,
                virtual_time: bool, max_steps: int | None, timeout: float | None, max_depth: int | None) -> None:
    """Orchestrate REQUIREMENTS (JSON): compose a pattern (or reuse the stored one), run it, print the result.

    Agents come from --agents, ./agents.toml, or an agents.toml beside the
    requirements file.  --input replaces the requirements' own `input`."""
    from .host import TraceWriter
    from .orchestrate import UNSET, OrchestrationError, orchestrate as run_orchestration
    req = _requirements(requirements)
    data = _parse_input(input_spec) if input_spec is not None else UNSET
    registry = _registry(agents_file or _sibling_agents(requirements))
    store = _store(store_path)
    limits = _limits(max_steps, timeout, max_depth)
    progress = _Progress()
    writer = TraceWriter(trace_file, callback=progress.event) if trace_file else TraceWriter(None, callback=progress.event)
    try:
        with progress:
            result = run_orchestration(req, registry=registry, composer=composer, store=store, fresh=fresh,
                                       input=data, limits=limits, trace=writer,
                                       output=_output_to_stderr if as_json else _output,
                                       clock=_virtual_clock() if virtual_time else None)
    except OrchestrationError as e:
        _orch_fail(e)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    finally:
        writer.close()
    if result.composer_note:
        click.echo(f"note: {result.composer_note}", err=True)
    if as_json:
        click.echo(json.dumps(result.to_json(), ensure_ascii=False, default=str))
        return
    if isinstance(result.value, (dict, list)):
        click.echo(json.dumps(result.value, indent=2, ensure_ascii=False, default=str))
    else:
        click.echo(show_value(result.value))
    if result.confidence is not None:
        click.echo(f"confidence: {show_confidence(result.confidence)}")
    origin = "from the store" if result.cached else "newly composed"
    click.echo(f"pattern: {result.pattern_id} ({result.composer} composer, {origin})")
    if result.fallback_taken:
        click.echo("fallback: taken (confidence stayed below minConfidence)")
    elif result.below_minimum:
        click.echo("warning: the result is below minConfidence and no fallback agent was available")


@click.group()
def patterns() -> None:
    """Inspect the pattern store: list, show, export, gc."""


@patterns.command("list")
@_store_option
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def patterns_list(store_path: str | None, limit: int, as_json: bool) -> None:
    """List stored patterns, most recently used first."""
    store = _store(store_path)
    rows = store.list(limit=limit)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in rows], indent=2, default=str))
        return
    if not rows:
        click.echo(f"no patterns in {store.path}")
        return
    for r in rows:
        goal = json.loads(r.requirements).get("goal", "")
        click.echo(f"{r.id}  {r.composer:<8} used {r.use_count:>3}×  last {r.last_used_at or r.created_at}  {goal[:60]}")


@patterns.command("show")
@click.argument("pattern_id")
@_store_option
def patterns_show(pattern_id: str, store_path: str | None) -> None:
    """Show a stored pattern with its requirements and validation report."""
    store = _store(store_path)
    rec = store.get(pattern_id)
    if rec is None:
        _fail(f"no pattern '{pattern_id}' in {store.path}")
    from .store import render_export
    click.echo(render_export(rec), nl=False)


@patterns.command("export")
@click.argument("pattern_id")
@click.argument("path", type=click.Path(writable=True))
@_store_option
def patterns_export(pattern_id: str, path: str, store_path: str | None) -> None:
    """Write a stored pattern to PATH as a reviewable .prism file (runnable with `prism run`)."""
    store = _store(store_path)
    if store.get(pattern_id) is None:
        _fail(f"no pattern '{pattern_id}' in {store.path}")
    out = store.export(pattern_id, path)
    click.echo(f"wrote {out}")


@patterns.command("gc")
@_store_option
@click.option("--older-than", "days", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Remove patterns not used for this many days.")
@click.option("--keep-last", type=click.IntRange(min=0), default=None, help="Always keep the N most recent.")
def patterns_gc(store_path: str | None, days: float, keep_last: int | None) -> None:
    """Remove patterns that have not been used recently."""
    store = _store(store_path)
    n = store.gc(older_than_days=days, keep_last=keep_last)
    click.echo(f"removed {n} pattern(s) from {store.path}")
