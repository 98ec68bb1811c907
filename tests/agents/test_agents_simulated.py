"""Simulated agents: determinism, accuracy, calibration, latency, failures."""

from __future__ import annotations

from collections.abc import Callable
from statistics import mean
from typing import Any

from bootstrap.agents import transports
from bootstrap.agents.models import AgentRequest, AgentSpec
from bootstrap.agents.transports import expected_answer, simulate

Run = Callable[[Any], Any]


def sim(agent_id: str = "sim", **knobs: Any) -> AgentSpec:
    return AgentSpec.from_config(agent_id, {"transport": "simulated", **knobs})


def without_timing(response: Any) -> dict[str, Any]:
    dumped = response.model_dump()
    dumped["metadata"].pop("duration_ms", None)
    return dumped


def test_same_seed_same_request_same_response(arun: Run) -> None:
    request = AgentRequest(task="classify", data={"text": "hello"}, context={"round": 1})
    first = arun(transports.call(sim(seed=7), request))
    second = arun(transports.call(sim(seed=7), request))
    assert without_timing(first) == without_timing(second)
    assert first.metadata["simulated"] is True and first.metadata["transport"] == "simulated"


def test_seed_not_agent_id_determines_answers() -> None:
    tasks = [AgentRequest(task=f"q{i}") for i in range(50)]
    a = [simulate(sim("a", seed=3), r)[0] for r in tasks]
    b = [simulate(sim("b", seed=3), r)[0] for r in tasks]
    c = [simulate(sim("c", seed=4), r)[0] for r in tasks]
    assert [x.value for x in a] == [x.value for x in b]
    assert [x.confidence for x in a] != [x.confidence for x in c]


def test_unseeded_agents_are_seeded_by_id() -> None:
    request = AgentRequest(task="q")
    assert simulate(sim("x"), request)[0] == simulate(sim("x"), request)[0]


def test_expected_answer() -> None:
    assert expected_answer("t", {"expected": 12}) == 12
    assert expected_answer("t", None) == expected_answer("t", {"other": 1})
    assert expected_answer("t", None) != expected_answer("u", None)
    assert str(expected_answer("t", None)).startswith("answer-")


def test_accuracy_knob() -> None:
    def hit_rate(accuracy: float) -> float:
        spec = sim(seed=1, accuracy=accuracy)
        hits = [simulate(spec, AgentRequest(task=f"q{i}", data={"expected": i}))[0].value == i for i in range(400)]
        return sum(hits) / len(hits)

    assert hit_rate(1.0) == 1.0
    assert hit_rate(0.0) == 0.0
    assert 0.65 <= hit_rate(0.75) <= 0.85


def test_calibration_knob() -> None:
    def separation(calibration: float) -> float:
        spec = sim(seed=2, accuracy=0.6, calibration=calibration)
        responses = [simulate(spec, AgentRequest(task=f"q{i}"))[0] for i in range(400)]
        right = [r.confidence for r in responses if r.metadata["correct"]]
        wrong = [r.confidence for r in responses if not r.metadata["correct"]]
        return mean(right) - mean(wrong)

    assert separation(1.0) > 0.4
    assert abs(separation(0.0)) < 0.05
    assert 0.1 < separation(0.5) < separation(1.0)


def test_wrong_answers_come_from_choices() -> None:
    spec = sim(seed=5, accuracy=0.0)
    data = {"expected": "cat", "choices": ["cat", "dog", "cow"]}
    values = {simulate(spec, AgentRequest(task=f"q{i}", data=data))[0].value for i in range(30)}
    assert values <= {"dog", "cow"} and values


def test_wrong_numeric_answers_stay_numeric() -> None:
    spec = sim(seed=5, accuracy=0.0)
    for expected in (10, 2.5, True):
        value = simulate(spec, AgentRequest(task="n", data={"expected": expected}))[0].value
        assert type(value) is type(expected) and value != expected


def test_latency_and_jitter(arun: Run) -> None:
    spec = sim(seed=1, latency_ms=50, jitter_ms=20)
    response, latency = simulate(spec, AgentRequest(task="slow"))
    assert 0.05 <= latency <= 0.07
    timed = arun(transports.call(spec, AgentRequest(task="slow")))
    assert timed.metadata["duration_ms"] >= 49
    # latency knobs draw from their own stream: the answer does not change
    assert simulate(sim(seed=1), AgentRequest(task="slow"))[0] == response


def test_failure_rate() -> None:
    spec = sim(seed=1, failure_rate=1.0)
    response, _ = simulate(spec, AgentRequest(task="x"))
    assert response.confidence == 0.0 and response.error == "simulated failure"
    assert response.metadata["simulated"] is True


def test_timeout_shorter_than_latency(arun: Run) -> None:
    response = arun(transports.call(sim(latency_ms=2000, timeout=0.1), AgentRequest(task="x")))
    assert response.confidence == 0.0 and response.error == "timed out after 0.1 s"
    assert response.metadata["agent"] == "sim"


def test_caller_timeout_shortens_agent_timeout(arun: Run) -> None:
    response = arun(transports.call(sim(latency_ms=2000), AgentRequest(task="x"), timeout=0.05))
    assert response.error == "timed out after 0.05 s"
