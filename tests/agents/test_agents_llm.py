"""The llm transport against a local OpenAI-compatible server, and the confidence rule."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from bootstrap.agents import transports
from bootstrap.agents.models import AgentRequest, AgentResponse, AgentSpec
from bootstrap.agents.openai_compat import FORMAT_INSTRUCTIONS, parse_answer

Run = Callable[[Any], Any]


def llm_call(arun: Run, server: Any, model: str, *, api_key_env: str | None = None, task: str = "add",
             data: Any = None, timeout: float = 5.0) -> AgentResponse:
    table: dict[str, Any] = {"transport": "llm", "base_url": server.url("/v1/"), "model": model,
                             "system": "You are careful.", "timeout": timeout}
    if api_key_env:
        table["api_key_env"] = api_key_env
    spec = AgentSpec.from_config("writer", table)
    return arun(transports.call(spec, AgentRequest(task=task, data=data, context={"lang": "en"})))


def test_json_answer_with_confidence(arun: Run, openai_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRISM_TEST_LLM_KEY", "sk-test-123")
    response = llm_call(arun, openai_server, "json-model", api_key_env="PRISM_TEST_LLM_KEY",
                        task="json-answer", data={"a": 40, "b": 2})
    assert response.value == "42" and response.confidence == 0.85
    assert response.reasoning == "arithmetic" and response.uncertainties == ["units"]
    assert response.error is None
    assert response.metadata["tokensUsed"] == 15 and response.metadata["model"] == "json-model"
    assert response.metadata["confidence_source"] == "reported"
    sent = next(r for r in openai_server.requests if "json-answer" in json.dumps(r["body"]))
    assert sent["headers"]["Authorization"] == "Bearer sk-test-123"
    system, user = sent["body"]["messages"]
    assert system["role"] == "system" and system["content"].startswith("You are careful.")
    assert FORMAT_INSTRUCTIONS in system["content"]
    assert user["role"] == "user" and user["content"].startswith("Task: json-answer")
    assert '"a": 40' in user["content"] and '"lang": "en"' in user["content"]


def test_plain_text_answer_gets_default_confidence(arun: Run, openai_server: Any) -> None:
    response = llm_call(arun, openai_server, "plain-model")
    assert response.value == "The answer is 42." and response.confidence == 0.5
    assert response.error is None
    assert response.metadata["confidence_source"] == "default"
    assert "the model reported no confidence" in response.uncertainties
    sent = openai_server.requests[-1]
    assert "Authorization" not in sent["headers"]


def test_fenced_json_and_answer_key(arun: Run, openai_server: Any) -> None:
    response = llm_call(arun, openai_server, "fenced-model")
    assert (response.value, response.confidence) == ("fenced", 0.6)


def test_percentage_confidence(arun: Run, openai_server: Any) -> None:
    assert llm_call(arun, openai_server, "percent-model").confidence == 0.85


def test_json_without_confidence(arun: Run, openai_server: Any) -> None:
    response = llm_call(arun, openai_server, "noconf-model")
    assert (response.value, response.confidence) == ("no confidence here", 0.5)


def test_server_error(arun: Run, openai_server: Any) -> None:
    response = llm_call(arun, openai_server, "error-model")
    assert response.confidence == 0.0 and response.value is None
    assert response.error is not None and "HTTP 500" in response.error and "model overloaded" in response.error


def test_empty_answer_is_a_failure(arun: Run, openai_server: Any) -> None:
    response = llm_call(arun, openai_server, "empty-model")
    assert response.confidence == 0.0 and response.error == "the model returned an empty answer"


def test_timeout(arun: Run, openai_server: Any) -> None:
    response = llm_call(arun, openai_server, "slow-model", timeout=0.2)
    assert response.confidence == 0.0 and "timed out" in (response.error or "")


def test_missing_api_key(arun: Run, openai_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PRISM_TEST_UNSET_KEY", raising=False)
    response = llm_call(arun, openai_server, "json-model", api_key_env="PRISM_TEST_UNSET_KEY")
    assert response.confidence == 0.0
    assert response.error == "environment variable PRISM_TEST_UNSET_KEY (the API key) is not set"


def test_refused(arun: Run, refused_url: str) -> None:
    spec = AgentSpec.from_config("w", {"transport": "llm", "base_url": refused_url, "model": "m"})
    response = arun(transports.call(spec, AgentRequest(task="t")))
    assert response.confidence == 0.0 and "cannot connect" in (response.error or "")


@pytest.mark.parametrize(("content", "value", "confidence"), [
    ('{"value": 3, "confidence": 0.25}', 3, 0.25),
    ('  {"answer": "yes", "confidence": 1}  ', "yes", 1.0),
    ('{"value": 3, "confidence": 250}', 3, 1.0),
    ('{"value": 3, "confidence": -1}', 3, 0.0),
    ('{"value": 3, "confidence": "high"}', 3, None),
    ('{"value": 3, "confidence": true}', 3, None),
    ('{"verdict": "ok", "confidence": 0.7, "reasoning": "r"}', {"verdict": "ok"}, 0.7),
    ('[1, 2]', "[1, 2]", None),
    ('{"value": 1, "confidence": 0.9', '{"value": 1, "confidence": 0.9', None),
    ("Probably yes.", "Probably yes.", None),
])
def test_parse_answer(content: str, value: Any, confidence: float | None) -> None:
    parsed = parse_answer(content)
    assert parsed.value == value
    assert parsed.confidence == confidence
