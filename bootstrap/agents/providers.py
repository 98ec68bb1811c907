"""LLM providers for the language's `llm()` / `stream_llm()` built-ins (spec §5.8).

Consumes a prompt and an options dict; produces a response dict `{content,
confidence, tokensUsed, model, metadata}` (`complete`) or a `ProviderStream` of
chunks `{type: "text", text}` / `{type: "reasoning", reasoning}` / `{type: "error", error}`.

Providers are synchronous and thread-safe: the interpreter calls them from worker
threads. `complete` raises `LLMProviderError` on failure (the interpreter reports it
as `LLM call failed: MESSAGE`); a stream reports failure as an error chunk.
Options (camelCase as in Prism): `model`, `temperature`, `maxTokens`, `topP`,
`timeout` (milliseconds, as in the JavaScript reference), `structuredOutput`,
`includeReasoning`; unknown keys are ignored. Confidence of an OpenAI-compatible
answer follows the rule in `openai_compat` (reported JSON confidence, else 0.5).
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import httpx

from . import openai_compat as oai
from .models import DEFAULT_CONFIDENCE, LLMProviderSpec
from .registry import Registry

__all__ = [
    "EMBEDDING_DIMENSIONS",
    "LLMProvider",
    "LLMProviderError",
    "MockProvider",
    "OpenAICompatibleProvider",
    "ProviderStream",
    "build_providers",
    "provider_from_spec",
    "stream_completion",
]

EMBEDDING_DIMENSIONS = 384

Chunk = dict[str, Any]
Response = dict[str, Any]


class LLMProviderError(Exception):
    """A provider call failed; the message is what `llm()` reports after `LLM call failed: `."""


@runtime_checkable
class LLMProvider(Protocol):
    """What `llm()` needs. A provider may also define `stream(prompt, options) -> ProviderStream`."""

    name: str

    def complete(self, prompt: str, options: Mapping[str, Any]) -> Response: ...


class ProviderStream(Iterator[Chunk]):
    """Chunks of a streamed completion; afterwards `response` (or `error`) holds the outcome.

    Wraps a generator that yields chunks and *returns* the final response dict (or
    None after an error chunk). `close()` stops the stream early (cancellation).
    Like any generator it is not re-entrant: iterate and close it from one thread at a time.
    """

    def __init__(self, chunks: Generator[Chunk, None, Response | None]) -> None:
        self._chunks = chunks
        self.response: Response | None = None
        self.error: str | None = None
        self.done = False

    def __iter__(self) -> ProviderStream:
        return self

    def __next__(self) -> Chunk:
        if self.done:
            raise StopIteration
        try:
            chunk = next(self._chunks)
        except StopIteration as stop:
            self.done = True
            self.response = stop.value
            raise StopIteration from None
        if chunk.get("type") == "error":
            self.error = str(chunk.get("error"))
        return chunk

    def close(self) -> None:
        if not self.done:
            self.done = True
            self.error = self.error or "stream cancelled"
            self._chunks.close()


def stream_completion(provider: LLMProvider, prompt: str, options: Mapping[str, Any]) -> ProviderStream:
    """Stream from `provider`; one without `stream` gives a single text chunk with the full content."""
    stream = getattr(provider, "stream", None)
    if callable(stream):
        result = stream(prompt, options)
        assert isinstance(result, ProviderStream)
        return result

    def one_chunk() -> Generator[Chunk, None, Response | None]:
        try:
            response = provider.complete(prompt, options)
        except Exception as exc:
            yield {"type": "error", "error": str(exc)}
            return None
        yield {"type": "text", "text": response["content"]}
        return response

    return ProviderStream(one_chunk())


# --------------------------------------------------------------------------- OpenAI-compatible

class OpenAICompatibleProvider:
    """An OpenAI-compatible `/chat/completions` endpoint, via one pooled `httpx.Client`.

    `timeout` is in seconds; `options["timeout"]` (milliseconds) overrides it per call.
    The API key comes from `api_key`, or the environment variable `api_key_env` read
    at call time.
    """

    def __init__(self, name: str, *, base_url: str, model: str, api_key_env: str | None = None,
                 api_key: str | None = None, system: str | None = None, timeout: float = 60.0,
                 temperature: float | None = None, max_tokens: int | None = None,
                 headers: Mapping[str, str] | None = None, client: httpx.Client | None = None) -> None:
        self.name = name
        self.base_url = base_url
        self.model = model
        self.api_key_env = api_key_env
        self.api_key = api_key
        self.system = system
        self.timeout = timeout
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.headers = dict(headers or {})
        self._client = client
        self._owns_client = client is None
        self._client_lock = threading.Lock()

    @classmethod
    def from_spec(cls, spec: LLMProviderSpec) -> OpenAICompatibleProvider:
        assert spec.base_url is not None and spec.model is not None
        return cls(spec.name, base_url=spec.base_url, model=spec.model, api_key_env=spec.api_key_env,
                   system=spec.system, timeout=spec.timeout, temperature=spec.temperature,
                   max_tokens=spec.max_tokens, headers=spec.headers)

    def _http(self) -> httpx.Client:
        with self._client_lock:
            if self._client is None or self._client.is_closed:
                self._client = httpx.Client(limits=httpx.Limits(max_connections=64))
            return self._client

    def close(self) -> None:
        """Close the HTTP client (only if this provider created it)."""
        with self._client_lock:
            if self._client is not None and self._owns_client:
                self._client.close()

    def _request(self, prompt: str, options: Mapping[str, Any], *,
                 stream: bool) -> tuple[dict[str, Any], dict[str, str], float]:
        """The payload, headers and timeout (seconds) of one call."""
        if self.api_key:
            headers = {**self.headers, "Authorization": f"Bearer {self.api_key}"}
        else:
            try:
                headers = oai.auth_headers(self.api_key_env, self.headers)
            except oai.ChatProtocolError as exc:
                raise LLMProviderError(str(exc)) from None
        timeout_ms = options.get("timeout")
        timeout = self.timeout if timeout_ms is None else float(timeout_ms) / 1000.0
        temperature = options.get("temperature")
        max_tokens = options.get("maxTokens")
        payload = oai.chat_payload(
            options.get("model") or self.model,
            oai.chat_messages(self.system, prompt),
            temperature=self.temperature if temperature is None else float(temperature),
            max_tokens=self.max_tokens if max_tokens is None else int(max_tokens),
            top_p=None if options.get("topP") is None else float(options["topP"]),
            json_mode=bool(options.get("structuredOutput")),
            stream=stream,
        )
        return payload, headers, timeout

    def _response(self, content: str, model: str | None, tokens: int | None, reasoning: str | None,
                  finish_reason: str | None, options: Mapping[str, Any]) -> Response:
        answer = oai.parse_answer(content)
        metadata: dict[str, Any] = {
            "provider": self.name,
            "finish_reason": finish_reason,
            "confidence_source": "default" if answer.confidence is None else "reported",
        }
        if reasoning and options.get("includeReasoning"):
            metadata["reasoning"] = reasoning
        return {
            "content": content,
            "confidence": DEFAULT_CONFIDENCE if answer.confidence is None else answer.confidence,
            "tokensUsed": tokens if tokens is not None else 0,
            "model": model or self.model,
            "metadata": metadata,
        }

    def complete(self, prompt: str, options: Mapping[str, Any]) -> Response:
        """One chat completion; raises `LLMProviderError` on any failure."""
        payload, headers, timeout = self._request(prompt, options, stream=False)
        url = oai.chat_url(self.base_url)
        try:
            reply = self._http().post(url, json=payload, headers=headers, timeout=timeout)
        except httpx.TimeoutException:
            raise LLMProviderError(f"Request timeout after {timeout:g} s ({url})") from None
        except httpx.HTTPError as exc:
            raise LLMProviderError(f"cannot reach {url}: {type(exc).__name__}: {exc}") from None
        if not reply.is_success:
            raise LLMProviderError(f"HTTP {reply.status_code} from {url}: {' '.join(reply.text.split())[:200]}")
        try:
            completion = oai.parse_chat_completion(reply.json())
        except ValueError as exc:  # malformed JSON or ChatProtocolError
            raise LLMProviderError(f"unexpected reply from {url}: {exc}") from None
        return self._response(completion.content, completion.model, completion.tokens_used,
                              completion.reasoning, completion.finish_reason, options)

    def stream(self, prompt: str, options: Mapping[str, Any]) -> ProviderStream:
        """A streamed chat completion (server-sent events)."""
        return ProviderStream(self._stream(prompt, options))

    def _stream(self, prompt: str, options: Mapping[str, Any]) -> Generator[Chunk, None, Response | None]:
        try:
            payload, headers, timeout = self._request(prompt, options, stream=True)
        except LLMProviderError as exc:
            yield {"type": "error", "error": str(exc)}
            return None
        url = oai.chat_url(self.base_url)
        text: list[str] = []
        reasoning: list[str] = []
        model: str | None = None
        tokens: int | None = None
        finish: str | None = None
        try:
            with self._http().stream("POST", url, json=payload, headers=headers, timeout=timeout) as reply:
                if not reply.is_success:
                    body = " ".join(reply.read().decode(errors="replace").split())[:200]
                    yield {"type": "error", "error": f"HTTP {reply.status_code} from {url}: {body}"}
                    return None
                for event in oai.iter_sse_events(reply.iter_lines()):
                    model = event.get("model") if isinstance(event.get("model"), str) else model
                    usage = event.get("usage")
                    if isinstance(usage, Mapping) and isinstance(usage.get("total_tokens"), int):
                        tokens = usage["total_tokens"]
                    choices = event.get("choices")
                    if isinstance(choices, list) and choices and isinstance(choices[0], Mapping):
                        finish = choices[0].get("finish_reason") or finish
                    for chunk in oai.stream_chunks(event):
                        if chunk["type"] == "text":
                            text.append(chunk["text"])
                        else:
                            reasoning.append(chunk["reasoning"])
                        yield chunk
        except httpx.TimeoutException:
            yield {"type": "error", "error": f"Request timeout after {timeout:g} s ({url})"}
            return None
        except (httpx.HTTPError, oai.ChatProtocolError) as exc:
            yield {"type": "error", "error": f"stream from {url} failed: {type(exc).__name__}: {exc}"}
            return None
        return self._response("".join(text), model, tokens, "".join(reasoning) or None, finish, options)


# --------------------------------------------------------------------------- Mock

@dataclass
class _MockAnswer:
    content: str
    confidence: float
    reasoning: str | None = None
    tokens_used: int | None = None


class MockProvider:
    """The offline test provider of spec §5.8 (name `Mock`).

    * default answer `Mock response for testing purposes.` at confidence 0.75,
      changeable with `set_default_response`; `queue_response` answers are used
      first, in order;
    * `latency_ms` is slept before answering (`sleep` is injectable);
    * a call fails with `Mock provider failure during complete` (or `… during stream`)
      when `random() < failure_rate`; `random` is injectable;
    * when the latency exceeds the timeout (`options["timeout"]` in ms, else
      `timeout_ms`), the call waits the timeout and fails with `Request timeout`;
    * `stream` yields the content split on whitespace, separators kept as their own
      chunks, after a reasoning chunk when `includeReasoning` is set;
    * `embed(text)` is a deterministic unit vector of 384 floats;
    * `calls` records `(prompt, options)` of every `complete`/`stream` call.
    """

    DEFAULT_CONTENT = "Mock response for testing purposes."
    DEFAULT_CONFIDENCE = 0.75

    def __init__(self, *, name: str = "Mock", content: str = DEFAULT_CONTENT,
                 confidence: float = DEFAULT_CONFIDENCE, reasoning: str | None = None,
                 latency_ms: float = 0.0, failure_rate: float = 0.0, timeout_ms: float | None = None,
                 random: Callable[[], float] = random.random, sleep: Callable[[float], None] = time.sleep,
                 model: str = "mock-model") -> None:
        self.name = name
        self.model = model
        self.latency_ms = latency_ms
        self.failure_rate = failure_rate
        self.timeout_ms = timeout_ms
        self.random = random
        self.sleep = sleep
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._default = _MockAnswer(content, confidence, reasoning)
        self._queue: deque[_MockAnswer] = deque()
        self._lock = threading.Lock()

    @classmethod
    def from_spec(cls, spec: LLMProviderSpec) -> MockProvider:
        return cls(name=spec.name, content=spec.response or cls.DEFAULT_CONTENT,
                   confidence=cls.DEFAULT_CONFIDENCE if spec.confidence is None else spec.confidence,
                   latency_ms=spec.latency_ms, model=spec.model or "mock-model")

    def set_default_response(self, content: str, confidence: float = DEFAULT_CONFIDENCE,
                             reasoning: str | None = None) -> None:
        """Answer used when the queue is empty."""
        with self._lock:
            self._default = _MockAnswer(content, confidence, reasoning)

    def queue_response(self, content: str, confidence: float | None = None, reasoning: str | None = None,
                       tokens_used: int | None = None) -> None:
        """Append a one-shot answer (confidence defaults to the default answer's)."""
        with self._lock:
            conf = self._default.confidence if confidence is None else confidence
            self._queue.append(_MockAnswer(content, conf, reasoning, tokens_used))

    def reset(self) -> None:
        """Forget queued answers and recorded calls."""
        with self._lock:
            self._queue.clear()
            self.calls.clear()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def _begin(self, prompt: str, options: Mapping[str, Any], operation: str) -> _MockAnswer:
        """Record the call, simulate latency/timeout/failure, and pick the answer."""
        with self._lock:
            self.calls.append((prompt, dict(options)))
        timeout_ms = options.get("timeout")
        timeout_ms = self.timeout_ms if timeout_ms is None else float(timeout_ms)
        if timeout_ms is not None and self.latency_ms > timeout_ms:
            self.sleep(timeout_ms / 1000.0)
            raise LLMProviderError("Request timeout")
        if self.latency_ms > 0:
            self.sleep(self.latency_ms / 1000.0)
        if self.failure_rate > 0 and self.random() < self.failure_rate:
            raise LLMProviderError(f"Mock provider failure during {operation}")
        with self._lock:
            return self._queue.popleft() if self._queue else self._default

    def _response(self, prompt: str, answer: _MockAnswer, options: Mapping[str, Any]) -> Response:
        tokens = answer.tokens_used
        if tokens is None:
            tokens = len(prompt.split()) + len(answer.content.split())
        metadata: dict[str, Any] = {"provider": self.name, "latency_ms": self.latency_ms}
        if answer.reasoning is not None:
            metadata["reasoning"] = answer.reasoning
        return {"content": answer.content, "confidence": answer.confidence, "tokensUsed": tokens,
                "model": options.get("model") or self.model, "metadata": metadata}

    def complete(self, prompt: str, options: Mapping[str, Any] | None = None) -> Response:
        options = options or {}
        return self._response(prompt, self._begin(prompt, options, "complete"), options)

    def stream(self, prompt: str, options: Mapping[str, Any] | None = None) -> ProviderStream:
        return ProviderStream(self._stream(prompt, options or {}))

    def _stream(self, prompt: str, options: Mapping[str, Any]) -> Generator[Chunk, None, Response | None]:
        try:
            answer = self._begin(prompt, options, "stream")
        except LLMProviderError as exc:
            yield {"type": "error", "error": str(exc)}
            return None
        if answer.reasoning and options.get("includeReasoning"):
            yield {"type": "reasoning", "reasoning": answer.reasoning}
        for piece in re.split(r"(\s+)", answer.content):
            if piece:
                yield {"type": "text", "text": piece}
        return self._response(prompt, answer, options)

    def embed(self, text: str) -> list[float]:
        """A deterministic 384-dimensional unit vector for `text`."""
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")
        rng = random.Random(seed)
        vector = [rng.gauss(0.0, 1.0) for _ in range(EMBEDDING_DIMENSIONS)]
        norm = math.sqrt(sum(x * x for x in vector))
        return [x / norm for x in vector]


# --------------------------------------------------------------------------- from the registry

def provider_from_spec(spec: LLMProviderSpec) -> LLMProvider:
    """The provider an `[llm.providers.<name>]` table describes."""
    if spec.type == "mock":
        return MockProvider.from_spec(spec)
    return OpenAICompatibleProvider.from_spec(spec)


def build_providers(registry: Registry) -> dict[str, LLMProvider]:
    """Providers declared in the registry, by name (the default is `registry.default_llm_provider`)."""
    return {name: provider_from_spec(spec) for name, spec in registry.llm_providers.items()}
