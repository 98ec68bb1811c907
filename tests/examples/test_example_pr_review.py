"""The pr-review agents find the real issues of patch.diff, none in clean.diff, and score
them so that a consensus of the three reviewers falls below 0.9 only on the bad patch."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from statistics import mean
from types import ModuleType
from typing import Any

import pytest

FOLDER = Path(__file__).resolve().parents[2] / "examples" / "pr-review"
PATCH = {"patch_file": "patch.diff"}
CLEAN = {"patch_file": "clean.diff"}


def reviews(pr: ModuleType, data: Any) -> list[dict[str, Any]]:
    return [fn("Review this pull request", data, {})
            for fn in (pr.security, pr.quality, pr.performance)]


def keys(result: dict[str, Any]) -> set[tuple[str, int, str]]:
    return {(f["file"], f["line"], f["rule"]) for f in result["value"]["findings"]}


def finding(result: dict[str, Any], file: str, line: int, rule: str) -> dict[str, Any]:
    matches = [f for f in result["value"]["findings"]
               if (f["file"], f["line"], f["rule"]) == (file, line, rule)]
    assert matches, f"{rule} not reported at {file}:{line}; got {sorted(keys(result))}"
    return matches[0]


def added_line(pr: ModuleType, patch: str, file: str, line: int) -> str:
    diff = next(f for f in pr.parse_diff(patch) if f.path == file)
    return diff.added[line]


# --------------------------------------------------------------------------- diff parsing


def test_parse_diff_maps_added_lines_to_new_file_numbers(pr: ModuleType) -> None:
    patch = (FOLDER / "patch.diff").read_text()
    files = {f.path: f for f in pr.parse_diff(patch)}
    assert sorted(files) == ["service/auth.py", "service/orders.py", "service/reports.py",
                             "service/settings.py"]
    assert files["service/reports.py"].is_new and not files["service/orders.py"].is_new
    assert files["service/orders.py"].added[35].lstrip().startswith('query = f"SELECT')
    assert files["service/orders.py"].added[4] == "import subprocess"
    assert 5 not in files["service/orders.py"].added  # context line, not added
    assert min(files["service/reports.py"].added) == 1
    assert max(files["service/reports.py"].added) == 62


def test_parse_diff_ignores_removed_lines_that_look_like_headers(pr: ModuleType) -> None:
    patch = ("--- a/x.py\n+++ b/x.py\n@@ -1,3 +1,2 @@\n keep = 1\n---- not a header\n"
             "+new = 2\n")
    (diff,) = pr.parse_diff(patch)
    assert diff.path == "x.py" and diff.added == {2: "new = 2"}


# --------------------------------------------------------------------------- security


def test_security_reports_sql_injection_at_the_query_line(pr: ModuleType) -> None:
    result = pr.security("Review", PATCH, {})
    sql = finding(result, "service/orders.py", 35, "sql-injection")
    assert sql["severity"] == "critical" and sql["method"] == "ast"
    assert "conn.execute" in sql["message"] and "line 38" in sql["message"]
    patch = (FOLDER / "patch.diff").read_text()
    assert "f\"SELECT * FROM orders WHERE customer = '{customer}'" in added_line(
        pr, patch, "service/orders.py", 35)


def test_security_finds_every_planted_issue(pr: ModuleType) -> None:
    result = pr.security("Review", PATCH, {})
    expected = {
        ("service/orders.py", 34, "code-injection"): "high",
        ("service/orders.py", 52, "shell-injection"): "critical",
        ("service/settings.py", 10, "hardcoded-secret"): "critical",
        ("service/reports.py", 19, "unsafe-deserialisation"): "high",
        ("service/auth.py", 20, "weak-hash"): "high",
        ("service/reports.py", 39, "tls-verification-disabled"): "high",
        ("service/reports.py", 42, "tls-verification-disabled"): "high",
    }
    for (file, line, rule), severity in expected.items():
        assert finding(result, file, line, rule)["severity"] == severity
    assert result["value"]["verdict"] == "request-changes"


def test_secret_finding_combines_signals_and_hides_the_value(pr: ModuleType) -> None:
    secret = finding(pr.security("Review", PATCH, {}), "service/settings.py", 10,
                     "hardcoded-secret")
    assert "format" in secret["message"] and "PAYMENTS_API_KEY" in secret["message"]
    assert "sk_live" not in secret["message"]
    assert secret["confidence"] > 0.95  # three independent signals agree (noisy-OR)


def test_good_code_in_the_patch_is_not_flagged(pr: ModuleType) -> None:
    result = pr.security("Review", PATCH, {})
    flagged = {(f["file"], f["line"]) for f in result["value"]["findings"]}
    # the parameterised per-row query and the env-based settings are fine
    assert ("service/orders.py", 41) not in flagged
    assert ("service/settings.py", 7) not in flagged and ("service/settings.py", 8) not in flagged
    # the shell command's embedded SELECT is judged as shell injection, not as SQL
    assert ("service/orders.py", 52, "sql-injection") not in keys(result)


# --------------------------------------------------------------------------- quality, performance


def test_quality_finds_structure_and_hygiene_issues(pr: ModuleType) -> None:
    result = pr.quality("Review", PATCH, {})
    for file, line, rule in [
        ("service/orders.py", 53, "bare-except"),
        ("service/reports.py", 23, "function-too-long"),
        ("service/reports.py", 40, "deep-nesting"),
        ("service/reports.py", 23, "naming"),
        ("service/reports.py", 23, "missing-docstring"),
        ("service/orders.py", 31, "missing-docstring"),
        ("service/settings.py", 9, "todo-comment"),
        ("service/orders.py", 36, "print-debugging"),
        ("service/reports.py", 42, "duplicated-lines"),
    ]:
        finding(result, file, line, rule)
    assert any(f["rule"] == "missing-tests" for f in result["value"]["findings"])
    assert "40 lines" in finding(result, "service/reports.py", 23, "function-too-long")["message"]


def test_performance_finds_per_iteration_work(pr: ModuleType) -> None:
    result = pr.performance("Review", PATCH, {})
    for file, line, rule in [
        ("service/orders.py", 41, "query-in-loop"),
        ("service/reports.py", 33, "query-in-loop"),
        ("service/reports.py", 39, "http-in-loop"),
        ("service/reports.py", 28, "nested-loop-same-collection"),
        ("service/reports.py", 47, "regex-compile-in-loop"),
        ("service/reports.py", 51, "string-concat-in-loop"),
        ("service/reports.py", 53, "list-membership-in-loop"),
        ("service/reports.py", 41, "sleep-call"),
        ("service/reports.py", 57, "read-whole-file"),
    ]:
        finding(result, file, line, rule)
    # the first query of search_orders runs once, outside the loop
    assert ("service/orders.py", 38, "query-in-loop") not in keys(result)


# --------------------------------------------------------------------------- clean patch


def test_clean_patch_has_no_findings(pr: ModuleType) -> None:
    for result in reviews(pr, CLEAN):
        assert result["value"]["findings"] == []
        assert result["value"]["verdict"] == "approve"
        assert result["metadata"]["regex_lines"] == 0  # every hunk parsed, incl. mid-function


# --------------------------------------------------------------------------- confidence


def test_confidences_are_bounded_and_deterministic(pr: ModuleType) -> None:
    for data in (PATCH, CLEAN):
        first, second = reviews(pr, data), reviews(pr, data)
        assert first == second
        for result in first:
            assert 0.0 <= result["confidence"] <= 1.0
            assert set(result) == {"value", "confidence", "reasoning", "uncertainties",
                                   "metadata"}


def test_consensus_of_three_is_below_threshold_only_on_the_bad_patch(pr: ModuleType) -> None:
    """Consensus measured both as the mean and as the min of the three confidences."""
    bad = [r["confidence"] for r in reviews(pr, PATCH)]
    good = [r["confidence"] for r in reviews(pr, CLEAN)]
    assert mean(bad) < 0.9 and min(bad) < 0.9
    assert min(good) >= 0.9 and mean(good) >= 0.9


def test_confidence_follows_the_documented_formula(pr: ModuleType) -> None:
    result = pr.performance("Review", PATCH, {})
    meta = result["metadata"]
    assert meta["coverage"] == pytest.approx(0.6 + 0.4 * meta["depth"], abs=1e-4)
    assert result["confidence"] == pytest.approx(meta["coverage"] * meta["evidence"], abs=1e-3)
    clean = pr.security("Review", CLEAN, {})
    lines = clean["metadata"]["lines"]
    assert clean["confidence"] == pytest.approx(0.99 ** (1 + lines / 100), abs=1e-3)


def test_regex_fallback_when_a_hunk_does_not_parse(pr: ModuleType) -> None:
    # Python 2 print statements: no stretch of this hunk parses, so only line rules apply
    patch = (
        "--- a/jobs.py\n+++ b/jobs.py\n@@ -10,1 +10,4 @@ def sync(ids):\n"
        "     for user_id in ids:\n"
        '+        print "sync"; cur.execute("SELECT * FROM users WHERE id = %s" % user_id)\n'
        '+        print "get"; r = requests.get("http://api/%s" % user_id, verify=False)\n'
        '+        print "done"\n'
    )
    sec, perf = pr.security("t", patch, {}), pr.performance("t", patch, {})
    assert keys(sec) == {("jobs.py", 11, "sql-injection"),
                         ("jobs.py", 12, "tls-verification-disabled")}
    assert keys(perf) == {("jobs.py", 11, "query-in-loop"), ("jobs.py", 12, "http-in-loop")}
    assert all(f["method"] == "regex" for f in sec["value"]["findings"] + perf["value"]["findings"])
    assert sec["metadata"]["regex_lines"] == 3 and sec["metadata"]["depth"] == pytest.approx(0.8)
    assert any("regex only" in u for u in sec["uncertainties"])


def test_partial_hunks_are_parsed_after_trimming(pr: ModuleType) -> None:
    # the hunk starts inside one function and ends in the next: trimming recovers the tree
    patch = (
        "--- a/m.py\n+++ b/m.py\n@@ -5,4 +5,8 @@ def a():\n"
        "         return 1\n"
        "     return 2\n"
        " \n"
        "+def b(items):\n"
        '+    """Sum the items."""\n'
        "+    for x in items:\n"
        "+        for y in items:\n"
        "+            pass\n"
        " def c(\n"
    )
    perf = pr.performance("t", patch, {})
    assert perf["metadata"]["regex_lines"] == 0
    assert keys(perf) == {("m.py", 11, "nested-loop-same-collection")}


def test_secrets_in_config_files_and_removed_code(pr: ModuleType) -> None:
    patch = (
        "--- a/deploy/app.yaml\n+++ b/deploy/app.yaml\n@@ -1,1 +1,3 @@\n env: prod\n"
        "+aws_access_key_id: AKIAIOSFODNN7EXAMPLE\n+db_password: 'hunter2-prod'\n"
        "--- a/x.py\n+++ b/x.py\n@@ -1,2 +1,1 @@\n-y = eval(data)\n x = 1\n"
    )
    result = pr.security("t", patch, {})
    assert keys(result) == {("deploy/app.yaml", 2, "hardcoded-secret"),
                            ("deploy/app.yaml", 3, "hardcoded-secret")}


def test_accepted_input_forms_give_the_same_review(pr: ModuleType) -> None:
    text = (FOLDER / "patch.diff").read_text()
    expected = pr.security("t", PATCH, {})
    for data in (text, {"patch": text}, "patch.diff", {"input": {"patch_file": "patch.diff"}},
                 {"task": "Review this pull request", "patch_file": "patch.diff"}):
        assert pr.security("t", data, {}) == expected
    with pytest.raises(ValueError, match="no patch"):
        pr.security("t", {"task": "nothing here"}, {})
    with pytest.raises(FileNotFoundError):
        pr.security("t", {"patch_file": "missing.diff"}, {})


# --------------------------------------------------------------------------- senior architect


def test_architect_confirms_ranks_and_decides_with_higher_confidence(pr: ModuleType) -> None:
    received = reviews(pr, PATCH)
    result = pr.senior_architect("Escalated review", {**PATCH, "reviews": received}, {})
    value = result["value"]
    assert value["verdict"] == "request-changes"
    assert result["confidence"] > max(r["confidence"] for r in received)
    assert result["confidence"] >= 0.9
    ranks = [pr.SEVERITY_RANK[f["severity"]] for f in value["findings"]]
    assert ranks == sorted(ranks, reverse=True)
    found = [(f["file"], f["line"], f["rule"]) for f in value["findings"]]
    assert len(found) == len(set(found))
    assert set(found) == set().union(*(keys(r) for r in received))
    assert value["unconfirmed"] == [] and value["missed_by_reviewers"] == []
    assert value["summary"].startswith("senior architect: request-changes")


def test_architect_rejects_unreproducible_findings_and_covers_missing_reviews(
        pr: ModuleType) -> None:
    received = reviews(pr, PATCH)
    forged = json.loads(json.dumps(received[0]))
    forged["value"]["findings"].append({"severity": "critical", "file": "service/orders.py",
                                        "line": 3, "rule": "sql-injection", "message": "forged"})
    honest = pr.senior_architect("t", {**PATCH, "results": received[:2]}, {})
    tampered = pr.senior_architect("t", {**PATCH, "results": [forged, received[1]]}, {})
    assert [f["line"] for f in tampered["value"]["unconfirmed"]] == [3]
    assert tampered["confidence"] == pytest.approx(honest["confidence"] * 0.98, abs=1e-3)
    missed = {f["perspective"] for f in honest["value"]["missed_by_reviewers"]}
    assert missed == {"performance"}


def test_architect_accepts_agent_results_as_the_orchestrator_wraps_them(pr: ModuleType) -> None:
    received = reviews(pr, PATCH)
    wrapped = {"originalInput": {"task": "Review", "patch_file": "patch.diff"},
               "agentResults": [{"agentId": r["value"]["perspective"], "result": r["value"],
                                 "confidence": r["confidence"]} for r in received]}
    result = pr.senior_architect("t", wrapped, {})
    assert result["value"]["reviewed"] == ["code-quality", "performance", "security"]
    assert result["value"]["verdict"] == "request-changes"


def test_architect_on_clean_patch_approves(pr: ModuleType) -> None:
    received = reviews(pr, CLEAN)
    result = pr.senior_architect("t", {**CLEAN, "reviews": received}, {})
    assert result["value"]["verdict"] == "approve"
    assert result["confidence"] >= max(r["confidence"] for r in received)


def test_architect_without_patch_merges_reviews_unverified(pr: ModuleType) -> None:
    received = reviews(pr, PATCH)
    result = pr.senior_architect("t", {"reviews": received}, {})
    assert result["confidence"] == pytest.approx(mean(r["confidence"] for r in received), abs=1e-3)
    assert any("could not be re-checked" in u for u in result["uncertainties"])
    with pytest.raises(ValueError):
        pr.senior_architect("t", {}, {})


# --------------------------------------------------------------------------- declarations


def test_agents_toml_and_requirements_match_the_scenario(pr: ModuleType) -> None:
    agents = tomllib.loads((FOLDER / "agents.toml").read_text())["agents"]
    caps = {name: set(spec["capabilities"]) for name, spec in agents.items()}
    assert {"security", "code-analysis"} <= caps["security"]
    assert {"code-quality", "code-analysis"} <= caps["quality"]
    assert {"performance", "code-analysis"} <= caps["performance"]
    assert caps["senior-architect"] == {"architecture", "escalation", "senior-architect"}
    for spec in agents.values():
        assert spec["transport"] == "python"
        module, _, attr = spec["target"].partition(":")
        assert module == "agents" and callable(getattr(pr, attr))
    req = json.loads((FOLDER / "requirements.json").read_text())
    assert req["minConfidence"] == 0.9 and req["strategy"] == "multi-perspective-consensus"
    assert req["fallback"] == "escalate to senior architect"
    assert req["context"]["requireAllPerspectives"] is True
    assert (FOLDER / req["input"]["patch_file"]).is_file()
    clean = json.loads((FOLDER / "requirements-clean.json").read_text())
    assert clean["input"]["patch_file"] == "clean.diff"


def test_agents_run_through_the_agent_registry() -> None:
    agents = pytest.importorskip("bootstrap.agents")
    registry = agents.load_registry(FOLDER / "agents.toml")
    with agents.AgentRuntime(registry) as runtime:
        response = runtime.submit("security", "Review", PATCH, {}).result(timeout=60)
    assert response.ok and response.value["verdict"] == "request-changes"
