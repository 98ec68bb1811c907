"""LLM providers for `llm()`: the Mock provider (spec §5.8) and the OpenAI-compatible one."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from bootstrap.agents.providers import (
    LLMProvider,
    LLMProviderError,
    MockProvider,
    OpenAICompatibleProvider,
    build_providers,
    stream_completion,
)
from bootstrap.agents.registry import load_registry


class TestMock:
    def test_defaults(self) -> None:
        mock = MockProvider()
        response = mock.complete("hello there", {})
        assert mock.name == "Mock"
        assert response["content"] == "Mock response for testing purposes."
        assert response["confidence"] == 0.75
        assert response["tokensUsed"] == 2 + 5  # whitespace-separated words of prompt + answer
        assert response["model"] == "mock-model"
        assert isinstance(mock, LLMProvider)
        assert mock.calls == [("hello there", {})]

    def test_queued_then_default(self) -> None:
        mock = MockProvider()
        mock.queue_response("first", 0.9)
        mock.queue_response("second")
        assert mock.queued == 2
        answers = [mock.complete("p", {}) for _ in range(3)]
        assert [a["content"] for a in answers] == ["first", "second", "Mock response for testing purposes."]
        assert [a["confidence"] for a in answers] == [0.9, 0.75, 0.75]

    def test_settable_default(self) -> None:
        mock = MockProvider()
        mock.set_default_response("custom", 0.4, reasoning="because")
        response = mock.complete("p", {"model": "other"})
        assert (response["content"], response["confidence"]) == ("custom", 0.4)
        assert response["metadata"]["reasoning"] == "because"
        assert response["model"] == "other"

    def test_latency_uses_injected_sleep(self) -> None:
        slept: list[float] = []
        MockProvider(latency_ms=250, sleep=slept.append).complete("p", {})
        assert slept == [0.25]

    def test_failure_rate_with_injected_randomness(self) -> None:
        draws = iter([0.1, 0.9])
        mock = MockProvider(failure_rate=0.5, random=lambda: next(draws))
        with pytest.raises(LLMProviderError, match="^Mock provider failure during complete$"):
            mock.complete("p", {})
        assert mock.complete("p", {})["content"].startswith("Mock response")

    def test_timeout(self) -> None:
        slept: list[float] = []
        mock = MockProvider(latency_ms=500, sleep=slept.append)
        with pytest.raises(LLMProviderError, match="^Request timeout$"):
            mock.complete("p", {"timeout": 100})
        assert slept == [0.1]
        mock.timeout_ms = 200
        with pytest.raises(LLMProviderError, match="^Request timeout$"):
            mock.complete("p", {})
        assert mock.complete("p", {"timeout": 1000})["confidence"] == 0.75

    def test_stream_splits_on_whitespace_keeping_separators(self) -> None:
        mock = MockProvider(content="Hello  big\nworld")
        stream = mock.stream("p", {})
        chunks = list(stream)
        assert [c["text"] for c in chunks] == ["Hello", "  ", "big", "\n", "world"]
        assert all(c["type"] == "text" for c in chunks)
        assert stream.response is not None and stream.response["content"] == "Hello  big\nworld"
        assert stream.error is None

    def test_stream_reasoning_chunk(self) -> None:
        mock = MockProvider(content="a b", reasoning="think")
        chunks = list(mock.stream("p", {"includeReasoning": True}))
        assert chunks[0] == {"type": "reasoning", "reasoning": "think"}
        assert list(mock.stream("p", {}))[0] == {"type": "text", "text": "a"}

    def test_stream_failure_is_an_error_chunk(self) -> None:
        stream = MockProvider(failure_rate=1.0, random=lambda: 0.0).stream("p", {})
        assert list(stream) == [{"type": "error", "error": "Mock provider failure during stream"}]
        assert stream.response is None and stream.error == "Mock provider failure during stream"

    def test_stream_cancel(self) -> None:
        stream = MockProvider(content="one two three").stream("p", {})
        assert next(stream) == {"type": "text", "text": "one"}
        stream.close()
        assert list(stream) == [] and stream.error == "stream cancelled"

    def test_embeddings(self) -> None:
        mock = MockProvider()
        a, again, b = mock.embed("cat"), mock.embed("cat"), mock.embed("dog")
        assert len(a) == 384 and a == again and a != b
        assert math.isclose(math.fsum(x * x for x in a), 1.0)

    def test_reset(self) -> None:
        mock = MockProvider()
        mock.queue_response("x")
        mock.complete("p", {})
        mock.queue_response("y")
        mock.reset()
        assert mock.queued == 0 and mock.calls == []


class CompleteOnly:
    name = "plain"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def complete(self, prompt: str, options: Mapping[str, Any]) -> dict[str, Any]:
        if self.fail:
            raise LLMProviderError("down")
        return {"content": f"echo {prompt}", "confidence": 0.6, "tokensUsed": 1, "model": "m"}


def test_stream_completion_falls_back_to_one_chunk() -> None:
    stream = stream_completion(CompleteOnly(), "hi", {})
    assert list(stream) == [{"type": "text", "text": "echo hi"}]
    assert stream.response is not None and stream.response["confidence"] == 0.6
    failing = stream_completion(CompleteOnly(fail=True), "hi", {})
    assert list(failing) == [{"type": "error", "error": "down"}]


@pytest.fixture
def openai_provider(openai_server: Any) -> Iterator[OpenAICompatibleProvider]:
    provider = OpenAICompatibleProvider("local", base_url=openai_server.url("/v1"), model="json-model",
                                        system="Be brief.", timeout=5.0)
    yield provider
    provider.close()


class TestOpenAICompatible:
    def test_complete_with_reported_confidence(self, openai_provider: OpenAICompatibleProvider,
                                               openai_server: Any) -> None:
        response = openai_provider.complete("what is 40 + 2?", {"maxTokens": 50, "temperature": 0,
                                                                "structuredOutput": True, "topP": 0.9})
        assert response["confidence"] == 0.85 and response["tokensUsed"] == 15
        assert response["content"].startswith('{"value": "42"')
        assert response["metadata"]["provider"] == "local"
        body = openai_server.requests[-1]["body"]
        assert body["max_tokens"] == 50 and body["temperature"] == 0 and body["top_p"] == 0.9
        assert body["response_format"] == {"type": "json_object"}
        assert body["messages"] == [{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": "what is 40 + 2?"}]

    def test_plain_text_defaults_to_half(self, openai_provider: OpenAICompatibleProvider) -> None:
        response = openai_provider.complete("hi", {"model": "plain-model"})
        assert response["content"] == "The answer is 42." and response["confidence"] == 0.5
        assert response["model"] == "plain-model"

    def test_server_error_raises_provider_error(self, openai_provider: OpenAICompatibleProvider) -> None:
        with pytest.raises(LLMProviderError, match="HTTP 500 .*model overloaded"):
            openai_provider.complete("hi", {"model": "error-model"})

    def test_timeout_option_in_milliseconds(self, openai_provider: OpenAICompatibleProvider) -> None:
        with pytest.raises(LLMProviderError, match="^Request timeout after 0.2 s"):
            openai_provider.complete("hi", {"model": "slow-model", "timeout": 200})

    def test_refused(self, refused_url: str) -> None:
        provider = OpenAICompatibleProvider("x", base_url=refused_url, model="m")
        with pytest.raises(LLMProviderError, match="cannot reach"):
            provider.complete("hi", {})
        provider.close()

    def test_stream(self, openai_provider: OpenAICompatibleProvider) -> None:
        stream = openai_provider.stream("hi", {"includeReasoning": True})
        chunks = list(stream)
        assert chunks[0] == {"type": "reasoning", "reasoning": "thinking"}
        assert "".join(c["text"] for c in chunks if c["type"] == "text") == '{"value": "streamed", "confidence": 0.9}'
        assert stream.response is not None
        assert stream.response["confidence"] == 0.9 and stream.response["metadata"]["reasoning"] == "thinking"
        assert stream.response["metadata"]["finish_reason"] == "stop"

    def test_stream_error_is_a_chunk(self, openai_provider: OpenAICompatibleProvider) -> None:
        chunks = list(openai_provider.stream("hi", {"model": "error-model"}))
        assert len(chunks) == 1 and chunks[0]["type"] == "error" and "HTTP 500" in chunks[0]["error"]

    def test_api_key_from_env(self, openai_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PRISM_TEST_PROVIDER_KEY", "sk-provider")
        provider = OpenAICompatibleProvider("k", base_url=openai_server.url("/v1"), model="plain-model",
                                            api_key_env="PRISM_TEST_PROVIDER_KEY")
        provider.complete("hi", {})
        provider.close()
        assert openai_server.requests[-1]["headers"]["Authorization"] == "Bearer sk-provider"
        monkeypatch.delenv("PRISM_TEST_PROVIDER_KEY")
        with pytest.raises(LLMProviderError, match="PRISM_TEST_PROVIDER_KEY"):
            provider.complete("hi", {})
        provider.close()


def test_build_providers_from_registry(tmp_path: Path, openai_server: Any) -> None:
    path = tmp_path / "agents.toml"
    path.write_text(f'''
[llm.providers.local]
base_url = "{openai_server.url("/v1")}"
model = "plain-model"
default = true

[llm.providers.offline]
type = "mock"
response = "canned answer"
confidence = 0.9
''')
    registry = load_registry(path)
    providers = build_providers(registry)
    assert registry.default_llm_provider == "local"
    assert isinstance(providers["local"], OpenAICompatibleProvider)
    assert providers["local"].complete("hi", {})["content"] == "The answer is 42."
    offline = providers["offline"].complete("hi", {})
    assert (offline["content"], offline["confidence"]) == ("canned answer", 0.9)
    providers["local"].close()  # type: ignore[attr-defined]
