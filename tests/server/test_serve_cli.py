"""`prism serve` command-line behaviour: safe defaults and clear refusals."""

from __future__ import annotations

import httpx
import pytest
from click.testing import CliRunner

from bootstrap.serve_cli import is_loopback, serve


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "localhost", "::1", "[::1]"])
def test_loopback_hosts(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "10.0.0.1", "example.com", ""])
def test_non_loopback_hosts(host):
    assert not is_loopback(host)


def test_non_loopback_bind_without_token_is_refused(monkeypatch, tmp_path):
    monkeypatch.delenv("PRISM_API_TOKEN", raising=False)
    result = CliRunner().invoke(serve, ["--host", "0.0.0.0", "--store", str(tmp_path / "s.db")])
    assert result.exit_code == 2
    assert "PRISM_API_TOKEN" in result.output and "0.0.0.0" in result.output


def test_blank_token_does_not_count(monkeypatch, tmp_path):
    monkeypatch.setenv("PRISM_API_TOKEN", "   ")
    result = CliRunner().invoke(serve, ["--host", "0.0.0.0", "--store", str(tmp_path / "s.db")])
    assert result.exit_code == 2


def test_bad_agents_file_is_a_usage_error(tmp_path):
    bad = tmp_path / "agents.toml"
    bad.write_text("[agents.x]\ntransport = 'carrier-pigeon'\n")
    result = CliRunner().invoke(serve, ["--agents", str(bad), "--store", str(tmp_path / "s.db")])
    assert result.exit_code == 2
    assert "error:" in result.output and "agents.toml" in result.output


def test_unusable_store_is_a_usage_error(tmp_path):
    (tmp_path / "dir.db").mkdir()
    result = CliRunner().invoke(serve, ["--store", str(tmp_path / "dir.db")])
    assert result.exit_code == 2
    assert "directory" in result.output


def test_serve_with_token_requires_it(spawn_server, tmp_path, fast_agents):
    server = spawn_server("--agents", str(fast_agents), "--store", str(tmp_path / "s.db"),
                          env={"PRISM_API_TOKEN": "tok-123"}).wait_ready()
    assert httpx.get(f"{server.url}/api/executions").status_code == 401
    assert httpx.get(f"{server.url}/api/executions",
                     headers={"Authorization": "Bearer tok-123"}).status_code == 200
    assert server.terminate() == 0


def test_taken_port_is_a_clear_error_and_leaves_the_store_alone(tmp_path):
    import socket

    from bootstrap.store import PatternStore

    store_file = tmp_path / "busy.db"
    with PatternStore(store_file) as store:
        running = store.create_execution(status="running").id  # owned by "another server"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(serve, ["--port", str(port), "--store", str(store_file)])
    assert result.exit_code == 2
    assert "already in use" in result.output
    with PatternStore(store_file) as store:
        assert store.get_execution(running).status == "running"
