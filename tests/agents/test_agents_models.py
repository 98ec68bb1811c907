"""AgentRequest / AgentResponse / AgentSpec: confidence normalisation and validation messages."""

from __future__ import annotations

import math

import pytest

from bootstrap.agents.models import AgentRequest, AgentResponse, AgentSpec, AgentSpecError, LLMProviderSpec


class TestConfidence:
    def test_missing_confidence_is_half(self) -> None:
        assert AgentResponse(value=1).confidence == 0.5
        assert AgentResponse(value=1, confidence=None).confidence == 0.5  # type: ignore[arg-type]

    @pytest.mark.parametrize(("raw", "expected"), [(0.3, 0.3), (1, 1.0), (1.7, 1.0), (-0.2, 0.0), (0, 0.0)])
    def test_numbers_are_clamped_silently(self, raw: float, expected: float) -> None:
        response = AgentResponse(value="x", confidence=raw)
        assert response.confidence == expected
        assert response.error is None

    @pytest.mark.parametrize("raw", [math.nan, math.inf, -math.inf, "high", "0.8", True, [0.5], {"c": 1}])
    def test_invalid_confidence_is_zero_with_error(self, raw: object) -> None:
        response = AgentResponse(value="x", confidence=raw)  # type: ignore[arg-type]
        assert response.confidence == 0.0
        assert response.error is not None and "confidence" in response.error

    def test_confidence_problem_is_appended_to_existing_error(self) -> None:
        response = AgentResponse(confidence=math.nan, error="agent said no")
        assert response.error is not None
        assert response.error.startswith("agent said no; ")


class TestFromRaw:
    def test_response_shaped_mapping(self) -> None:
        response = AgentResponse.from_raw({"value": [1, 2], "confidence": 0.8, "reasoning": "because",
                                           "uncertainties": ["a"], "metadata": {"m": 1}, "agent": "x"})
        assert response.value == [1, 2]
        assert response.confidence == 0.8
        assert response.reasoning == "because"
        assert response.uncertainties == ["a"]
        assert response.metadata == {"m": 1, "agent": "x"}  # unknown keys kept in metadata

    def test_lenient_field_coercion(self) -> None:
        response = AgentResponse.from_raw({"value": 1, "reasoning": 42, "uncertainties": "one doubt"})
        assert response.reasoning == "42"
        assert response.uncertainties == ["one doubt"]
        assert response.confidence == 0.5

    def test_confidence_only_mapping(self) -> None:
        response = AgentResponse.from_raw({"confidence": 0.2})
        assert response.value is None and response.confidence == 0.2

    @pytest.mark.parametrize("raw", ["text", 3, [1, 2], {"score": 3}, None])
    def test_other_values_become_the_value(self, raw: object) -> None:
        response = AgentResponse.from_raw(raw)
        assert response.value == raw
        assert response.confidence == 0.5
        assert response.error is None

    def test_bad_metadata_type_is_a_failure(self) -> None:
        response = AgentResponse.from_raw({"value": 1, "metadata": "nope"})
        assert response.confidence == 0.0
        assert response.error is not None and "metadata" in response.error

    def test_response_instance_is_copied(self) -> None:
        original = AgentResponse(value=1, confidence=0.9, metadata={"a": 1})
        copy = AgentResponse.from_raw(original)
        copy.metadata["b"] = 2
        assert original.metadata == {"a": 1}
        assert copy.confidence == 0.9

    def test_failure_helper(self) -> None:
        response = AgentResponse.failure("boom", http_status=500)
        assert (response.value, response.confidence, response.error) == (None, 0.0, "boom")
        assert response.metadata == {"http_status": 500}
        assert not response.ok


def test_request_defaults() -> None:
    request = AgentRequest(task="review")
    assert request.data is None and request.context == {}
    assert request.payload() == {"task": "review", "data": None, "context": {}}


class TestAgentSpec:
    def test_defaults(self) -> None:
        spec = AgentSpec.from_config("sim", {"transport": "simulated"})
        assert spec.expertise == 0.7 and spec.timeout == 30.0
        assert spec.capabilities == [] and spec.display_name == "sim"
        assert spec.summary()["id"] == "sim"

    @pytest.mark.parametrize(("table", "fragment"), [
        ({"transport": "grpc"}, "unknown transport 'grpc' (expected one of: python, http, llm, simulated)"),
        ({}, "field 'transport' is required"),
        ({"transport": "http"}, "field 'url' is required for transport 'http'"),
        ({"transport": "http", "url": "ftp://x"}, "field 'url' must start with http://"),
        ({"transport": "python"}, "field 'target' is required for transport 'python'"),
        ({"transport": "python", "target": "no_colon"}, "field 'target' must look like 'package.module:function'"),
        ({"transport": "llm", "model": "m"}, "field 'base_url' is required for transport 'llm'"),
        ({"transport": "simulated", "capabilities": "security"}, "field 'capabilities' must be a list of strings"),
        ({"transport": "simulated", "capabilities": ["a", 3]}, "(item 1 is 3)"),
        ({"transport": "simulated", "capabilities": ["a", "a"]}, "lists a capability twice"),
        ({"transport": "simulated", "expertise": 1.5}, "field 'expertise'"),
        ({"transport": "simulated", "timeout": "30"}, "field 'timeout'"),
        ({"transport": "simulated", "timeout": 0}, "field 'timeout'"),
        ({"transport": "simulated", "tiemout": 3}, "unknown field 'tiemout' (did you mean 'timeout'?)"),
        ({"transport": "simulated", "accuracy": 2}, "field 'accuracy'"),
    ])
    def test_errors_name_agent_and_field(self, table: dict[str, object], fragment: str) -> None:
        with pytest.raises(AgentSpecError) as info:
            AgentSpec.from_config("reviewer", table)
        assert str(info.value).startswith("agent 'reviewer'")
        assert fragment in str(info.value)
        assert info.value.name == "reviewer"

    def test_several_problems_are_listed(self) -> None:
        with pytest.raises(AgentSpecError) as info:
            AgentSpec.from_config("r", {"transport": "simulated", "expertise": 2, "colour": "red"})
        assert len(info.value.problems) == 2
        assert "\n  - " in str(info.value)

    def test_bad_id(self) -> None:
        with pytest.raises(AgentSpecError, match="the id must be"):
            AgentSpec.from_config("has space", {"transport": "simulated"})

    def test_table_must_be_a_table(self) -> None:
        with pytest.raises(AgentSpecError, match="must be a table"):
            AgentSpec.from_config("x", "simulated")  # type: ignore[arg-type]

    def test_llm_provider_spec(self) -> None:
        spec = LLMProviderSpec.from_config("local", {"base_url": "http://h/v1", "model": "m"})
        assert spec.type == "openai" and spec.timeout == 60.0
        with pytest.raises(AgentSpecError, match="LLM provider 'bad': field 'model' is required"):
            LLMProviderSpec.from_config("bad", {"base_url": "http://h/v1"})
        assert LLMProviderSpec.from_config("m", {"type": "mock"}).type == "mock"
