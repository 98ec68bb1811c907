"""The bootstrap end to end: requirements -> built-in composer -> check -> eval_pattern -> result.

Real pieces throughout: the Prism composer, the kernel, simulated agents (seeded),
a real SQLite store file, and the real CLI through click's CliRunner.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bootstrap.agents import load_registry
from bootstrap.cli import cli
from bootstrap.orchestrate import OrchestrationError, compose_pattern, orchestrate
from bootstrap.requirements import load_requirements, validate_requirements
from bootstrap.store import PatternStore
from bootstrap.validate import check_pattern

HERE = Path(__file__).parent
REQS = sorted((HERE / "requirements").glob("*.json"))
ROOT = HERE.parent.parent


@pytest.fixture(scope="module")
def registry():
    return load_registry(HERE / "agents.toml")


@pytest.fixture
def store(tmp_path):
    s = PatternStore(tmp_path / "store.db")
    yield s
    s.close()


def test_there_are_at_least_twenty_requirement_files():
    assert len(REQS) >= 20


@pytest.mark.parametrize("path", REQS, ids=[p.stem for p in REQS])
def test_every_composed_pattern_parses_checks_and_runs(path, registry, store):
    req = load_requirements(path)
    composed = compose_pattern(req, registry=registry, store=store)
    report = check_pattern(composed.source, registry)
    assert report.ok, report.summary()
    assert composed.metadata["primitives"], "the composer names the primitives it chose"
    assert composed.metadata["reasons"], "and says why"
    assert 0.1 <= composed.metadata["estimatedConfidence"] <= 1.0
    result = orchestrate(req, registry=registry, store=store)
    assert result.confidence is not None and 0.0 <= result.confidence <= 1.0
    assert result.pattern_id == composed.id
    assert result.cached is True          # compose stored it; orchestrate reused it
    # each primitive comes from its own module: a run compiles only what it uses
    imports = [line for line in composed.source.splitlines() if line.startswith("import ")]
    assert imports and not any('"primitives/index"' in line for line in imports), imports


EXPECTED = {
    "01-pr-review": ("multi-perspective-consensus", {"parallel", "combineConfidence"}),
    "02-parallel-simple": ("parallel", {"parallel"}),
    "03-sequential": ("sequential", {"sequential"}),
    "04-consensus": ("consensus", {"parallel", "consensus"}),
    "05-voting-weighted": ("voting", {"parallel", "voting"}),
    "07-race": ("race", {"race"}),
    "08-resilient": ("resilient", {"retry", "circuitBreaker", "fallback"}),
    "09-pipeline-stages": ("pipeline", {"pipeline"}),
    "10-map-reduce": ("map-reduce", {"parallel"}),
    "11-escalation": ("escalation", {"escalate"}),
    "12-perspectives-no-strategy": ("multi-perspective-consensus", {"parallel"}),
    "13-keyword-consensus": ("consensus", {"consensus"}),
    "14-keyword-vote": ("voting", {"voting"}),
    "15-keyword-race": ("race", {"race"}),
    "19-stages-stage-keyword": ("pipeline", {"pipeline"}),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_composer_chooses_strategy_and_primitives(name, registry):
    req = load_requirements(HERE / "requirements" / f"{name}.json")
    composed = compose_pattern(req, registry=registry)
    strategy, primitives = EXPECTED[name]
    assert composed.metadata["strategy"] == strategy
    assert primitives <= set(composed.metadata["primitives"])
    assert f"Strategy: {strategy}" in composed.source


def test_perspectives_select_one_agent_per_capability(registry):
    req = load_requirements(HERE / "requirements" / "01-pr-review.json")
    c = compose_pattern(req, registry=registry)
    assert c.metadata["agents"] == ["security", "quality", "performance"]
    assert c.metadata["fallbackAgent"] == "senior-architect"
    assert "const minConfidence = 0.9" in c.source
    assert 'agents["senior-architect"].analyze' in c.source


def test_require_all_perspectives_fails_clearly(registry):
    req = validate_requirements({"goal": "Review", "strategy": "multi-perspective-consensus",
                                 "context": {"perspectives": ["security", "legal"], "requireAllPerspectives": True}})
    with pytest.raises(OrchestrationError) as info:
        compose_pattern(req, registry=registry)
    assert info.value.kind == "composer"
    assert "legal" in info.value.message and "requireAllPerspectives" in info.value.message


def test_optional_perspective_is_skipped_with_a_note(registry):
    req = load_requirements(HERE / "requirements" / "22-perspectives-optional.json")
    c = compose_pattern(req, registry=registry)
    assert c.metadata["agents"] == ["security"]
    assert any("legal" in r for r in c.metadata["reasons"])


def test_unknown_strategy_is_refused_by_the_composer(registry):
    req = validate_requirements({"goal": "x", "strategy": "telepathy"})
    with pytest.raises(OrchestrationError) as info:
        compose_pattern(req, registry=registry)
    assert "telepathy" in info.value.message


def test_hostile_goal_is_only_data(registry):
    req = load_requirements(HERE / "requirements" / "21-hostile-goal.json")
    c = compose_pattern(req, registry=registry)
    assert check_pattern(c.source, registry).ok
    # the goal appears escaped in a string literal, never as code
    assert '"Review \\"this\\" \\${input} */ \\\\ code\\nnow"' in c.source


def test_min_confidence_gate_takes_the_fallback(registry, store):
    req = validate_requirements({"goal": "Review code", "strategy": "parallel", "minConfidence": 0.999,
                                 "fallback": "escalate to senior architect",
                                 "context": {"capabilities": ["code-analysis"]}, "input": {"task": "code"}})
    r = orchestrate(req, registry=registry, store=store)
    assert r.fallback_taken is True
    assert r.metadata["fallbackAgent"] == "senior-architect"


def test_gate_passes_without_fallback_when_confident(registry, store):
    req = validate_requirements({"goal": "Review code", "strategy": "parallel", "minConfidence": 0.0,
                                 "fallback": "escalate to senior architect",
                                 "context": {"capabilities": ["code-analysis"]}, "input": {"task": "code"}})
    r = orchestrate(req, registry=registry, store=store)
    assert r.fallback_taken is False


def test_store_reuse_and_fresh(registry, store):
    req = load_requirements(HERE / "requirements" / "02-parallel-simple.json")
    first = orchestrate(req, registry=registry, store=store)
    second = orchestrate(req, registry=registry, store=store)
    fresh = orchestrate(req, registry=registry, store=store, fresh=True)
    assert (first.cached, second.cached, fresh.cached) == (False, True, False)
    assert first.pattern_id == second.pattern_id == fresh.pattern_id
    assert store.get(first.pattern_id).use_count >= 1


def test_cli_orchestrate_main_job_offline(tmp_path):
    """The README's main job: the PR-review example, offline, built-in composer."""
    runner = CliRunner()
    store = tmp_path / "store.db"
    req = ROOT / "examples" / "pr-review" / "requirements.json"
    args = ["orchestrate", str(req), "--json", "--store", str(store)]
    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    doc = json.loads(first.stdout.strip().splitlines()[-1])
    assert doc["pattern"]["cached"] is False and doc["pattern"]["composer"] == "builtin"
    assert doc["fallback_taken"] is True       # the consensus stays below 0.9 on the included patch
    assert doc["value"]["verdict"] == "request-changes"       # decided by the senior architect
    assert doc["value"]["perspective"] == "senior-architect"
    second = runner.invoke(cli, args)
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout.strip().splitlines()[-1])["pattern"]["cached"] is True


def test_cli_compose_output_runs_with_prism_run(tmp_path):
    runner = CliRunner()
    out = tmp_path / "pattern.prism"
    req = HERE / "requirements" / "04-consensus.json"
    agents = HERE / "agents.toml"
    r = runner.invoke(cli, ["compose", str(req), "--agents", str(agents), "-o", str(out),
                            "--store", str(tmp_path / "s.db")])
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert text.startswith("// Pattern composed by the built-in composer")
    run = runner.invoke(cli, ["run", str(out), "--agents", str(agents), "--input", '{"task": "resolved?"}',
                              "--json"])
    assert run.exit_code == 0, run.output
    doc = json.loads(run.stdout.strip().splitlines()[-1])
    assert doc["value"]["strategy"] == "consensus"


def test_cli_invalid_requirements_name_the_field(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"goal": "x", "minConfidence": 1.5}))
    r = CliRunner().invoke(cli, ["orchestrate", str(bad), "--store", str(tmp_path / "s.db")])
    assert r.exit_code == 2
    assert "minConfidence" in r.output


def test_cli_corrupt_store_is_a_clear_error(tmp_path):
    corrupt = tmp_path / "store.db"
    corrupt.write_bytes(b"this is not a database" * 100)
    req = HERE / "requirements" / "02-parallel-simple.json"
    r = CliRunner().invoke(cli, ["orchestrate", str(req), "--agents", str(HERE / "agents.toml"),
                                 "--store", str(corrupt)])
    assert r.exit_code == 2
    assert str(corrupt) in r.output and "Traceback" not in r.output


def test_patterns_list_show_export_gc(tmp_path, registry):
    runner = CliRunner()
    store_path = tmp_path / "s.db"
    req = HERE / "requirements" / "02-parallel-simple.json"
    agents = HERE / "agents.toml"
    r = runner.invoke(cli, ["compose", str(req), "--agents", str(agents), "--json", "--store", str(store_path)])
    assert r.exit_code == 0, r.output
    pid = json.loads(r.stdout)["id"]
    listing = runner.invoke(cli, ["patterns", "list", "--store", str(store_path)])
    assert pid in listing.output
    shown = runner.invoke(cli, ["patterns", "show", pid, "--store", str(store_path)])
    assert "Classify this ticket" in shown.output
    exported = tmp_path / "p.prism"
    ex = runner.invoke(cli, ["patterns", "export", pid, str(exported), "--store", str(store_path)])
    assert ex.exit_code == 0 and exported.is_file()
    run = runner.invoke(cli, ["run", str(exported), "--agents", str(agents), "--input", '{"task": "t"}'])
    assert run.exit_code == 0, run.output
    gc = runner.invoke(cli, ["patterns", "gc", "--older-than", "0", "--store", str(store_path)])
    assert gc.exit_code == 0 and "removed" in gc.output


EXAMPLES = sorted(p.parent for p in (ROOT / "examples").glob("*/requirements.json"))


@pytest.mark.parametrize("folder", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_composes_to_a_reviewable_pattern_that_prism_run_accepts(folder, tmp_path):
    """The review step: compose, read the file, run it as a person would."""
    runner = CliRunner()
    out = tmp_path / "pattern.prism"
    req = folder / "requirements.json"
    r = runner.invoke(cli, ["compose", str(req), "-o", str(out), "--store", str(tmp_path / "s.db")])
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert "// Strategy:" in text and "// Primitives:" in text and "// Agents:" in text
    assert check_pattern(text, load_registry(folder / "agents.toml")).ok
    data = json.loads(req.read_text())["input"]
    run = runner.invoke(cli, ["run", str(out), "--agents", str(folder / "agents.toml"), "--input", json.dumps(data),
                              "--json"])
    assert run.exit_code == 0, run.output
    doc = json.loads(run.stdout.strip().splitlines()[-1])
    assert doc["confidence"] is not None and doc["value"]["answer"] is not None
