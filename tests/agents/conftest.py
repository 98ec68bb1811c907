"""Fixtures for the agent-layer tests: real HTTP servers on 127.0.0.1 with fault injection.

Produces `agent_server` (an agent endpoint per fault), `openai_server` (a small
OpenAI-compatible `/v1/chat/completions`), `refused_url`, and `arun` (runs a
coroutine and closes the event loop's pooled HTTP client).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bootstrap.agents import transports

HANG_SECONDS = 30.0  # a hanging handler is released at teardown long before this


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (timeout, cancellation) makes the handler's write fail: expected


class LocalServer:
    """A threaded HTTP server whose POST routes are `path -> handler(request_handler, body)`."""

    def __init__(self, routes: dict[str, Callable[[BaseHTTPRequestHandler, Any], None]]) -> None:
        self.routes = routes
        self.requests: list[dict[str, Any]] = []
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                server.requests.append({"path": self.path, "body": body, "headers": dict(self.headers)})
                route = server.routes.get(self.path)
                if route is None:
                    send_json(self, {"error": "no such route"}, status=404)
                else:
                    route(self, body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> LocalServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def send_json(handler: BaseHTTPRequestHandler, payload: Any, status: int = 200) -> None:
    send_raw(handler, json.dumps(payload).encode(), status, "application/json")


def send_raw(handler: BaseHTTPRequestHandler, data: bytes, status: int = 200,
             content_type: str = "application/json") -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


# --------------------------------------------------------------------------- agent endpoints

def _agent_routes(server_ref: list[LocalServer]) -> dict[str, Callable[[BaseHTTPRequestHandler, Any], None]]:
    def ok(h: BaseHTTPRequestHandler, body: Any) -> None:
        send_json(h, {"value": {"echo": body["task"]}, "confidence": 0.9, "reasoning": "looked closely",
                      "uncertainties": ["none really"], "metadata": {"model": "rules"}})

    def no_confidence(h: BaseHTTPRequestHandler, body: Any) -> None:
        send_json(h, {"value": "fine"})

    def slow(h: BaseHTTPRequestHandler, body: Any) -> None:
        time.sleep(0.2)
        send_json(h, {"value": "slow but fine", "confidence": 0.7})

    def error500(h: BaseHTTPRequestHandler, body: Any) -> None:
        send_raw(h, b"internal kaboom", 500, "text/plain")

    def malformed(h: BaseHTTPRequestHandler, body: Any) -> None:
        send_raw(h, b'{"value": "unterminated', 200)

    def nan_confidence(h: BaseHTTPRequestHandler, body: Any) -> None:
        send_raw(h, b'{"value": 1, "confidence": NaN}', 200)

    def hang(h: BaseHTTPRequestHandler, body: Any) -> None:
        server_ref[0].release.wait(HANG_SECONDS)

    return {"/ok": ok, "/no-confidence": no_confidence, "/slow": slow, "/500": error500,
            "/malformed": malformed, "/nan": nan_confidence, "/hang": hang}


@pytest.fixture(scope="session")
def agent_server() -> Iterator[LocalServer]:
    ref: list[LocalServer] = []
    server = LocalServer(_agent_routes(ref))
    ref.append(server)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def refused_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (the port was just bound and released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/analyze"


# --------------------------------------------------------------------------- OpenAI-compatible endpoint

def completion(content: str, model: str) -> dict[str, Any]:
    return {
        "id": "cmpl-test", "object": "chat.completion", "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


ANSWERS = {
    "json-model": '{"value": "42", "confidence": 0.85, "reasoning": "arithmetic", "uncertainties": ["units"]}',
    "fenced-model": '```json\n{"answer": "fenced", "confidence": 0.6}\n```',
    "percent-model": '{"value": "p", "confidence": 85}',
    "plain-model": "The answer is 42.",
    "noconf-model": '{"value": "no confidence here"}',
    "empty-model": "",
}


def _chat(server_ref: list[LocalServer]) -> Callable[[BaseHTTPRequestHandler, Any], None]:
    def chat(h: BaseHTTPRequestHandler, body: Any) -> None:
        model = body.get("model")
        if model == "error-model":
            send_json(h, {"error": {"message": "model overloaded"}}, status=500)
        elif model == "slow-model":
            server_ref[0].release.wait(2.0)
            send_json(h, completion("late", model))
        elif body.get("stream"):
            _stream(h, model)
        else:
            send_json(h, completion(ANSWERS.get(model, "unknown model"), model))
    return chat


def _stream(h: BaseHTTPRequestHandler, model: str) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "text/event-stream")
    h.send_header("Connection", "close")
    h.end_headers()
    events: list[dict[str, Any]] = [
        {"model": model, "choices": [{"delta": {"reasoning_content": "thinking"}}]},
        {"model": model, "choices": [{"delta": {"content": '{"value": "streamed", '}}]},
        {"model": model, "choices": [{"delta": {"content": '"confidence": 0.9}'}, "finish_reason": "stop"}]},
    ]
    for event in events:
        h.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
        h.wfile.flush()
    h.wfile.write(b"data: [DONE]\n\n")
    h.wfile.flush()
    h.close_connection = True


@pytest.fixture(scope="session")
def openai_server() -> Iterator[LocalServer]:
    ref: list[LocalServer] = []
    server = LocalServer({"/v1/chat/completions": _chat(ref)})
    ref.append(server)
    server.start()
    yield server
    server.stop()


# --------------------------------------------------------------------------- async helper

@pytest.fixture
def arun() -> Callable[[Coroutine[Any, Any, Any]], Any]:
    """Run a coroutine in a fresh event loop, closing that loop's pooled HTTP client after."""

    def run(coro: Coroutine[Any, Any, Any]) -> Any:
        async def main() -> Any:
            try:
                return await coro
            finally:
                await transports.aclose_clients()

        return asyncio.run(main())

    return run
