"""`prism run` with real HTTP agents on 127.0.0.1: parallel calls, consensus, retry of a
failing agent, and a trace that shows every call; plus the legacy (Parallax) flow."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from bootstrap.cli import cli

PATTERN = """
import { parallel, retry, consensus } from "primitives/index"
let results = parallel([
  {agent: agents.alpha, task: "answer", data: input},
  {agent: agents.beta, task: "answer", data: input},
  () => retry(() => agents.flaky.analyze("answer", input), {maxAttempts: 3, delay: 10, minConfidence: 0.5})
])
consensus(results.map(r => r.value))
"""

LEGACY = """/**
 * @name ConsensusBuilder
 * @version 1.0.0
 * @agents {"capabilities": ["answer"]}
 * @minAgents 2
 */
total = 0
for r in successfulResults {
  total = total + r.confidence
}
summary = {agents: agentCount, ids: agentList.map(a => a.id), first: agentResults[0].result}
summary ~> (total / successfulResults.length)
"""


class _Agents(BaseHTTPRequestHandler):
    calls: dict[str, int] = {}
    lock = threading.Lock()

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        with self.lock:
            n = self.calls[self.path] = self.calls.get(self.path, 0) + 1
        if self.path == "/flaky" and n == 1:
            self._send(500, b'{"error": "warming up"}')
            return
        conf = {"/alpha": 0.9, "/beta": 0.8, "/flaky": 0.85}[self.path]
        self._send(200, json.dumps({"value": 42, "confidence": conf, "reasoning": body.get("task")}).encode())

    def _send(self, code: int, payload: bytes) -> None:
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def agents_file(tmp_path):
    _Agents.calls = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Agents)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    path = tmp_path / "agents.toml"
    path.write_text("".join(
        f'[agents.{name}]\ncapabilities = ["answer"]\ntransport = "http"\n'
        f'url = "http://127.0.0.1:{port}/{name}"\ntimeout = 5\n\n' for name in ("alpha", "beta", "flaky")))
    yield path
    server.shutdown()
    server.server_close()


def test_parallel_consensus_and_retry_over_http_with_trace(tmp_path, agents_file):
    pattern = tmp_path / "pattern.prism"
    pattern.write_text(PATTERN)
    trace = tmp_path / "trace.jsonl"
    r = CliRunner().invoke(cli, ["run", str(pattern), "--agents", str(agents_file), "--input", '{"q": 1}',
                                 "--trace", str(trace), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert doc["value"]["consensus"] == 42
    assert doc["value"]["participantCount"] == 3
    assert doc["confidence"] == pytest.approx((0.9 + 0.8 + 0.85) / 3, abs=1e-6)
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    ends = [e for e in events if e["event"] == "agent_call_end"]
    assert sorted(e["agent"] for e in ends) == ["alpha", "beta", "flaky", "flaky"]    # the retry is visible
    failed = [e for e in ends if e["agent"] == "flaky" and e["confidence"] == 0]
    assert len(failed) == 1 and failed[0]["error"]
    assert all("duration_ms" in e for e in ends)
    assert any(e["event"] == "primitive" and e.get("data", {}).get("name") == "retry" for e in events)


def test_legacy_header_fan_out_and_injection(tmp_path, agents_file):
    pattern = tmp_path / "legacy.prism"
    pattern.write_text(LEGACY)
    r = CliRunner().invoke(cli, ["run", "--legacy", str(pattern), "--agents", str(agents_file),
                                 "--input", '{"task": "answer"}', "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert doc["value"]["agents"] == 3
    assert doc["value"]["ids"] == ["alpha", "beta", "flaky"]
    assert doc["value"]["first"] == 42
    # flaky failed its first (and only) call: it is not among the successful results
    assert doc["confidence"] == pytest.approx((0.9 + 0.8) / 2)


def test_header_with_too_few_agents_is_a_clear_error(tmp_path, agents_file):
    pattern = tmp_path / "needs.prism"
    pattern.write_text('/**\n * @agents {"capabilities": ["answer"]}\n * @minAgents 5\n */\n1')
    r = CliRunner().invoke(cli, ["run", "--legacy", str(pattern), "--agents", str(agents_file)])
    assert r.exit_code == 1
    assert "Not enough agents available. Required: 5, Available: 3" in r.output


def test_unknown_agent_reference_is_a_runtime_error_not_a_crash(tmp_path, agents_file):
    pattern = tmp_path / "bad.prism"
    pattern.write_text("agents.gamma.analyze('x', 1)")
    r = CliRunner().invoke(cli, ["run", str(pattern), "--agents", str(agents_file)])
    assert r.exit_code == 1
    assert "Property 'gamma' does not exist" in r.output


def test_refused_connection_becomes_confidence_zero(tmp_path):
    agents = tmp_path / "agents.toml"
    agents.write_text('[agents.down]\ncapabilities = ["x"]\ntransport = "http"\n'
                      'url = "http://127.0.0.1:9/analyze"\ntimeout = 2\n')
    pattern = tmp_path / "p.prism"
    pattern.write_text('let r = await agents.down.analyze("x", 1)\n{error: r.error != null, conf: <~ r}')
    res = CliRunner().invoke(cli, ["run", str(pattern), "--agents", str(agents), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["value"] == {"error": True, "conf": 0}


def test_llm_builtin_uses_a_mock_provider_from_the_agents_file(tmp_path):
    agents = tmp_path / "agents.toml"
    agents.write_text('[llm.providers.offline]\ntype = "mock"\nresponse = "forty-two"\nconfidence = 0.9\n')
    pattern = tmp_path / "p.prism"
    pattern.write_text('let a = llm("What is six times seven?");\n[a, <~ a]')
    res = CliRunner().invoke(cli, ["run", str(pattern), "--agents", str(agents), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["value"] == ["forty-two", 0.9]
