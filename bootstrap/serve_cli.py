"""`prism serve`: run the orchestration HTTP API (see `bootstrap.server`) on uvicorn.

Consumes command-line options and ``$PRISM_API_TOKEN``; produces a running server.
Safe by default: it binds to loopback; a non-loopback ``--host`` is refused (exit 2)
unless ``PRISM_API_TOKEN`` is set, and when it is set every ``/api/*`` request must
carry ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
import sys
from typing import Any, NoReturn

import click

__all__ = ["serve", "is_loopback", "build_server"]

EXIT_USAGE = 2


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    name = host.strip().strip("[]").lower()
    if name in ("localhost", "localhost.", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # any other name may resolve to a public address


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(EXIT_USAGE)


def build_server(app: Any, *, host: str, port: int, log_level: str = "info",
                 graceful_timeout: float = 5.0) -> Any:
    """A uvicorn Server whose exit signal also cancels the runs in flight and ends the
    event streams, so that Ctrl-C stops promptly and marks unfinished runs interrupted."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                            timeout_graceful_shutdown=graceful_timeout, proxy_headers=False,
                            server_header=False, access_log=log_level == "debug")

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:  # noqa: D401 - uvicorn hook
            manager = getattr(getattr(app, "state", None), "manager", None)
            if manager is not None:
                manager.begin_shutdown()
            super().handle_exit(sig, frame)

    return _Server(config)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket bound to ``host:port``; a clear error (exit 2) if not."""
    name = host.strip().strip("[]")
    try:
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        _fail(f"cannot resolve --host {host!r}: {exc.strerror or exc}")
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        reason = "is already in use" if exc.errno == errno.EADDRINUSE else \
            f"cannot be bound ({exc.strerror or exc})"
        _fail(f"{name}:{port} {reason}; choose another address or --port")
    sock.set_inheritable(True)
    return sock


# The cyclic GC's default thresholds (700, 10, 10) suit short scripts. A server runs many
# orchestrations at once, each compiling the primitive library into tens of thousands of
# closures: with the defaults the collector re-scans all of them again and again (60 % of
# the CPU at 50 concurrent runs, measured with py-spy --gil). Collecting less often keeps
# the same guarantees — cycles are still reclaimed — at a fraction of the cost
# (bench/serve_bench.py, 50 concurrent: 5.7 -> 15.9 orchestrations/s, p50 6.3 -> 2.3 s).
SERVER_GC_THRESHOLDS = (100_000, 50, 100)


def tune_gc() -> None:
    import gc
    gc.set_threshold(*SERVER_GC_THRESHOLDS)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but loopback requires PRISM_API_TOKEN.")
@click.option("--port", default=8600, show_default=True, type=click.IntRange(0, 65535),
              help="TCP port (0 picks a free one).")
@click.option("--agents", "agents_file", type=click.Path(dir_okay=False), default=None,
              help="Agents TOML file (default: ./agents.toml when present).")
@click.option("--store", "store_path", type=click.Path(dir_okay=True), default=None,
              help="Pattern store SQLite file (default: $PRISM_STORE or the user data dir).")
@click.option("--composer", type=click.Choice(["builtin", "llm"]), default="builtin",
              show_default=True, help="Default composer (a request may pass ?composer=).")
@click.option("--max-concurrent", type=click.IntRange(1, 1024), default=8, show_default=True,
              help="Runs at once; more answer 429 with Retry-After.")
@click.option("--max-body", type=click.IntRange(1, None), default=1_000_000, show_default=True,
              help="Largest request body in bytes; larger ones answer 413.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Time limit of each run in seconds (default: the sandbox default).")
@click.option("--max-steps", type=click.IntRange(1, None), default=None,
              help="Step limit of each run (default: the sandbox default).")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]),
              default="info", show_default=True)
def serve(host: str, port: int, agents_file: str | None, store_path: str | None, composer: str,
          max_concurrent: int, max_body: int, timeout: float | None, max_steps: int | None,
          log_level: str) -> None:
    """Serve the orchestration HTTP API (POST /api/orchestrate, /openapi.json …).

    \b
    Example:
      prism serve --agents examples/pr-review/agents.toml
      curl -X POST 'localhost:8600/api/orchestrate?wait=60' \\
           -d @examples/pr-review/requirements.json
    """
    token = os.environ.get("PRISM_API_TOKEN", "").strip() or None
    if not is_loopback(host) and token is None:
        _fail(f"refusing to bind {host!r} without authentication: set PRISM_API_TOKEN "
              "(clients then send 'Authorization: Bearer <token>'), or bind 127.0.0.1")

    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        _fail(f"prism serve needs starlette and uvicorn ({exc}); "
              "install them with: pip install starlette uvicorn")

    from kernel import Limits

    from .agents import RegistryError
    from .runner import load_agents
    from .server import create_app
    from .store import PatternStore, StoreError

    try:
        registry = load_agents(agents_file)
    except RegistryError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot read the agents file {agents_file}: {exc.strerror or exc}")
    try:
        store = PatternStore(store_path)
    except StoreError as exc:
        _fail(str(exc))

    limits = None
    if timeout is not None or max_steps is not None:
        changes: dict[str, Any] = {}
        if timeout is not None:
            changes["timeout"] = timeout
        if max_steps is not None:
            changes["max_steps"] = max_steps
        limits = Limits(**changes)

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s: %(name)s: %(message)s")
    app = create_app(registry=registry, store=store, token=token, max_concurrent=max_concurrent,
                     max_body=max_body, limits=limits, composer=composer)
    # Bind before the app starts: a taken port must fail before startup touches the
    # store (startup marks executions left running by a dead server as interrupted).
    sock = bind_socket(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    click.echo(f"prism serve: http://{shown}:{bound_port} ({len(registry)} agent(s), store "
               f"{store.path}, auth {'on' if token else 'off'}; Ctrl-C stops)", err=True)
    server = build_server(app, host=host, port=port, log_level=log_level)
    tune_gc()
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn re-raises the SIGINT it shut down for; the shutdown was clean.
        pass
    finally:
        store.close()
    if not server.started:  # e.g. the port is taken; uvicorn has logged why
        sys.exit(1)
