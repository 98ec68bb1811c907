"""Fixtures for the HTTP API tests: real uvicorn servers on 127.0.0.1 driven with httpx.

Produces `live_server` (a factory: ``live_server(agents=..., store=..., token=...)`` →
`LiveServer` running in a thread on a free port, stopped at teardown), agents files of
`simulated` agents (`fast_agents`, `slow_agents`), and `spawn_server` (a `prism serve`
subprocess, for hard-kill restarts).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")

from bootstrap.agents import Registry, load_registry  # noqa: E402
from bootstrap.server import create_app  # noqa: E402
from bootstrap.store import TERMINAL_STATUSES, PatternStore  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

PARALLEL_REQ: dict[str, Any] = {
    "goal": "Summarise the findings", "strategy": "parallel", "input": {"task": "x"},
}


def agents_toml(path: Path, *, latency_ms: float = 5, ids: tuple[str, ...] = ("a1", "a2", "a3"),
                capabilities: tuple[str, ...] = ("analysis",)) -> Path:
    lines = []
    for i, agent_id in enumerate(ids):
        lines += [f"[agents.{agent_id}]",
                  f"capabilities = {json.dumps(list(capabilities))}",
                  'transport = "simulated"',
                  f"seed = {i + 1}",
                  f"latency_ms = {latency_ms}", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.fixture
def fast_agents(tmp_path: Path) -> Path:
    return agents_toml(tmp_path / "agents.toml", latency_ms=5)


@pytest.fixture
def slow_agents(tmp_path: Path) -> Path:
    """Agents that take 20 s: a run with them is certainly still running when cancelled."""
    return agents_toml(tmp_path / "slow-agents.toml", latency_ms=20_000)


class LiveServer:
    """A real uvicorn server in a thread, bound to a free port on 127.0.0.1."""

    def __init__(self, app: Any, store: PatternStore):
        self.app = app
        self.store = store
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=3,
                                lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True, name=f"uvicorn-{self.port}")
        self.stopped = False

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.app.state.manager.begin_shutdown()
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()
        self.store.close()

    def client(self, **kw: Any) -> httpx.Client:
        kw.setdefault("timeout", 30.0)
        return httpx.Client(base_url=self.url, **kw)


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    started: list[LiveServer] = []

    def make(*, agents: Path | Registry | None = None, store: Path | None = None,
             token: str | None = None, max_concurrent: int = 8, max_body: int = 1_000_000,
             limits: Any = None) -> LiveServer:
        if isinstance(agents, Registry):
            registry = agents
        elif agents is not None:
            registry = load_registry(agents)
        else:
            registry = Registry()
        pattern_store = PatternStore(store or tmp_path / "store.db")
        app = create_app(registry=registry, store=pattern_store, token=token,
                         max_concurrent=max_concurrent, max_body=max_body, limits=limits)
        server = LiveServer(app, pattern_store).start()
        started.append(server)
        return server

    yield make
    for server in reversed(started):
        server.stop()


def wait_for_status(client: httpx.Client, execution_id: str, statuses: tuple[str, ...] = TERMINAL_STATUSES,
                    timeout: float = 30.0) -> dict[str, Any]:
    """Poll GET /api/executions/{id} until its status is one of ``statuses``."""
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/api/executions/{execution_id}").json()
        if body["status"] in statuses:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"execution {execution_id} still {body['status']} after {timeout} s")
        time.sleep(0.02)


def read_sse(response: httpx.Response) -> list[dict[str, Any]]:
    """Parse a whole server-sent-event stream into [{id, event, data}] (data JSON-decoded)."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    data_lines: list[str] = []
    for line in response.iter_lines():
        if line == "":
            if data_lines:
                current["data"] = json.loads("\n".join(data_lines))
                events.append(current)
            current, data_lines = {}, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data_lines.append(value)
        elif name in ("id", "event", "retry"):
            current[name] = value
    return events


class ServeProcess:
    """`prism serve` in a subprocess (so it can be killed hard)."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = dict(os.environ)
        full_env.pop("PRISM_API_TOKEN", None)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from bootstrap.serve_cli import serve; serve()",
             "--port", str(self.port), "--log-level", "warning", *args],
            cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def wait_ready(self, timeout: float = 20.0) -> ServeProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                raise RuntimeError(f"prism serve exited with {self.proc.returncode}: {err.decode()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("prism serve did not become ready")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc.communicate()

    def terminate(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(20)
        finally:
            self.proc.communicate()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def spawn_server() -> Iterator[Callable[..., ServeProcess]]:
    procs: list[ServeProcess] = []

    def spawn(*args: str, env: dict[str, str] | None = None) -> ServeProcess:
        proc = ServeProcess(list(args), env)
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        proc.kill()
