"""The incident-triage agents: the classifier finds the cause the log shows, the flaky twin
fails exactly its first call(s), and the on-call fallback decides conservatively."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

FOLDER = Path(__file__).resolve().parents[2] / "examples" / "incident-triage"
LOG = {"task": "Classify this incident", "log_file": "incident.log"}


@pytest.fixture(autouse=True)
def fresh_flaky(incident: ModuleType) -> None:
    incident.reset_flaky()


def test_classifier_names_the_pool_exhaustion_after_the_config_change(
        incident: ModuleType) -> None:
    result = incident.log_classifier("Classify", LOG, {})
    value = result["value"]
    assert value["cause"] == "db-connection-pool-exhaustion"
    assert value["service"] == "checkout-api"
    assert value["severity"] == "SEV1"
    assert value["trigger"]["line"] == 11 and "db.pool_size 40 -> 5" in value["trigger"]["message"]
    assert value["onset"].startswith("2024-05-14T14:03:12")
    assert value["top_signatures"][0]["category"] == "db-connection-pool-exhaustion"
    assert value["top_signatures"][0]["count"] == 12
    # the unrelated SMTP blip before the deploy is the only error not explained
    assert [e["line"] for e in value["unexplained"]] == [7]
    assert value["explained_errors"] == value["total_errors"] - 1
    assert value["candidates"][0]["score"] > 10 * value["candidates"][1]["score"]
    assert value["recommended_actions"][0].startswith("revert the change at 14:02:07")


def test_classifier_confidence_follows_its_formula(incident: ModuleType) -> None:
    result = incident.log_classifier("Classify", LOG, {})
    meta = result["metadata"]
    expected = meta["explained"] * (0.6 + 0.3 * meta["margin"] + 0.1 * meta["trigger"])
    assert result["confidence"] == pytest.approx(expected, abs=1e-3)
    assert 0.7 <= result["confidence"] <= 1.0
    assert incident.log_classifier("Classify", LOG, {}) == result


def test_classifier_reads_other_incidents_too(incident: ModuleType) -> None:
    log = "\n".join([
        "2024-06-01T09:00:00Z INFO  deploy-bot rollout started: search-api v7.2.0",
        "2024-06-01T09:04:10Z ERROR search-api worker crashed",
        "Traceback (most recent call last):",
        '  File "ranker.py", line 88, in score',
        "MemoryError",
        "2024-06-01T09:04:11Z WARN  k8s Container search-api-1 OOMKilled, restarting",
        "2024-06-01T09:04:12Z ERROR k8s pod search-api-1 OOMKilled",
        "2024-06-01T09:04:20Z ERROR edge-nginx GET /search 502 upstream search-api",
        "2024-06-01T09:04:21Z ERROR edge-nginx GET /search 502 upstream search-api",
    ])
    value = incident.log_classifier("t", {"log": log}, {})["value"]
    assert value["cause"] == "out-of-memory"
    assert value["trigger"]["message"].startswith("rollout started: search-api")


def test_symptoms_only_gives_an_unknown_cause_at_low_confidence(incident: ModuleType) -> None:
    log = ("2024-06-01T10:00:00Z ERROR edge-nginx GET /a 503 upstream unavailable\n"
           "2024-06-01T10:00:01Z ERROR edge-nginx upstream timed out while reading response\n")
    result = incident.log_classifier("t", log, {})
    assert result["value"]["cause"] == "unknown"
    assert result["confidence"] < 0.5


def test_flaky_classifier_fails_its_first_call_then_answers(incident: ModuleType) -> None:
    with pytest.raises(incident.UpstreamUnavailable, match="upstream unavailable") as err:
        incident.flaky_classifier("Classify", LOG, {})
    assert "call 1" in str(err.value)
    second = incident.flaky_classifier("Classify", LOG, {})
    direct = incident.log_classifier("Classify", LOG, {})
    assert second["value"] == direct["value"] and second["confidence"] == direct["confidence"]
    assert second["metadata"]["call"] == 2


def test_flaky_failure_count_is_configurable(incident: ModuleType,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    for _ in range(2):
        with pytest.raises(ConnectionError):
            incident.flaky_classifier("t", LOG, {"flakyFailFirst": 2})
    assert incident.flaky_classifier("t", LOG, {"flakyFailFirst": 2})["confidence"] > 0.7
    incident.reset_flaky()
    monkeypatch.setenv("FLAKY_FAIL_FIRST", "0")
    assert incident.flaky_classifier("t", LOG, {})["metadata"]["call"] == 1


def test_oncall_fallback_is_conservative(incident: ModuleType) -> None:
    result = incident.oncall_human("Escalated", {**LOG, "failed": {"error": "retries exhausted"}},
                                   {})
    value = result["value"]
    assert value["decision"] == "page-oncall" and value["cause"] == "unconfirmed"
    assert value["severity"] == "SEV1"
    assert "db-connection-pool-exhaustion" in value["candidate_causes"]
    assert any("roll back" in a and "db.pool_size 40 -> 5" in a for a in value["actions"])
    assert any("retries exhausted" in u for u in result["uncertainties"])
    assert 0.5 <= result["confidence"] <= 0.8
    assert result["confidence"] < incident.log_classifier("t", LOG, {})["confidence"]
    assert incident.oncall_human("t", {"nothing": True}, {})["confidence"] == 0.5


def test_declarations(incident: ModuleType) -> None:
    agents = tomllib.loads((FOLDER / "agents.toml").read_text())["agents"]
    assert set(agents) == {"flaky-classifier", "log-classifier", "oncall-human"}
    for spec in agents.values():
        assert spec["transport"] == "python"
        assert callable(getattr(incident, spec["target"].partition(":")[2]))
    req = json.loads((FOLDER / "requirements.json").read_text())
    assert req["strategy"] == "resilient" and "oncall-human" in req["fallback"]
    assert (FOLDER / req["input"]["log_file"]).is_file()
    assert 50 <= len((FOLDER / "incident.log").read_text().splitlines()) <= 70
