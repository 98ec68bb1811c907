"""OrchestrationRequirements: loading camelCase JSON, user-facing errors, identity hashing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bootstrap.requirements import (
    KNOWN_STRATEGIES,
    OrchestrationRequirements,
    RequirementsError,
    canonical_json,
    load_requirements,
    normalize_strategy,
    requirements_hash,
    validate_requirements,
)

FULL = {
    "goal": "Review this pull request for security and quality",
    "strategy": "Multi Perspective Consensus",
    "minConfidence": 0.8,
    "fallback": "senior-reviewer",
    "context": {"perspectives": ["security", "quality"], "requireAllPerspectives": True},
    "input": {"diff": "--- a/x.py\n+++ b/x.py"},
}


def write(tmp_path: Path, text: str, name: str = "req.json") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(text: str) -> tuple[str, ...]:
    with pytest.raises(RequirementsError) as info:
        load_requirements(text)
    return info.value.problems


# --------------------------------------------------------------------------- happy path


def test_all_fields_from_a_camel_case_file(tmp_path: Path) -> None:
    req = load_requirements(write(tmp_path, json.dumps(FULL, indent=2)))
    assert req.goal == FULL["goal"]
    assert req.strategy == "multi-perspective-consensus"
    assert req.min_confidence == 0.8
    assert req.fallback == "senior-reviewer"
    assert req.context == FULL["context"]
    assert req.input == FULL["input"]
    assert req.model_dump()["minConfidence"] == 0.8  # serialises back to camelCase


def test_path_given_as_string_and_text_given_inline(tmp_path: Path) -> None:
    path = write(tmp_path, '{"goal": "summarise"}')
    assert load_requirements(str(path)).goal == "summarise"
    assert load_requirements('  {"goal": "summarise"}').goal == "summarise"


def test_defaults_for_optional_fields() -> None:
    req = load_requirements('{"goal": "x"}')
    assert (req.strategy, req.min_confidence, req.fallback, req.context, req.input) == (
        None, None, None, {}, None,
    )


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes('\ufeff{"goal": "ünïcode"}'.encode())
    assert load_requirements(path).goal == "ünïcode"


def test_python_callers_may_use_field_names() -> None:
    req = OrchestrationRequirements(goal="x", min_confidence=0.5)
    assert req.min_confidence == 0.5


def test_validate_requirements_for_decoded_data() -> None:
    assert validate_requirements({"goal": "x", "minConfidence": 1}).min_confidence == 1.0
    with pytest.raises(RequirementsError, match="body.json"):
        validate_requirements({"goal": 1}, source="body.json")


# --------------------------------------------------------------------------- errors


def test_missing_goal_is_named() -> None:
    assert problems_of('{"strategy": "race"}') == ("goal: required field is missing",)


def test_min_confidence_out_of_range() -> None:
    problems = problems_of('{"goal": "x", "minConfidence": 1.5}')
    assert problems == ("minConfidence: must be between 0 and 1 (got 1.5)",)


@pytest.mark.parametrize("value", ['"high"', "true", "[0.5]", "-0.1"])
def test_min_confidence_wrong_type_or_range(value: str) -> None:
    (problem,) = problems_of(f'{{"goal": "x", "minConfidence": {value}}}')
    assert problem.startswith("minConfidence: must be")


def test_unknown_field_is_named_with_a_suggestion() -> None:
    (problem,) = problems_of('{"goal": "x", "minConfidense": 0.5}')
    assert problem.startswith("minConfidense: unknown field")
    assert "did you mean 'minConfidence'" in problem


def test_snake_case_in_json_is_rejected_with_the_camel_case_name() -> None:
    (problem,) = problems_of('{"goal": "x", "min_confidence": 0.5}')
    assert "min_confidence: unknown field; did you mean 'minConfidence'" in problem


def test_goal_not_a_string() -> None:
    assert problems_of('{"goal": 42}') == ("goal: must be a non-empty string (got 42)",)


def test_blank_goal() -> None:
    assert problems_of('{"goal": "   "}') == ("goal: must not be empty",)


def test_other_field_types() -> None:
    problems = problems_of('{"goal": "x", "strategy": 3, "fallback": [], "context": "no"}')
    assert [p.split(":")[0] for p in problems] == ["strategy", "fallback", "context"]


def test_every_problem_is_listed_in_the_message() -> None:
    with pytest.raises(RequirementsError) as info:
        load_requirements('{"goal": 1, "minConfidence": 2, "colour": "red"}')
    message = str(info.value)
    assert "3 problems" in message
    for name in ("goal:", "minConfidence:", "colour:"):
        assert f"\n  {name}" in message


def test_bad_json_reports_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, '{\n  "goal": "x"\n  "strategy": "race"\n}\n')
    with pytest.raises(RequirementsError) as info:
        load_requirements(path)
    err = info.value
    assert (err.line, err.column) == (3, 3)
    first, source_line, caret = str(err).splitlines()
    assert first == f"{path}:3:3: invalid JSON: Expecting ',' delimiter"
    assert source_line.strip() == '"strategy": "race"'
    assert caret.index("^") == source_line.index('"')


def test_bad_inline_json() -> None:
    with pytest.raises(RequirementsError, match=r"^<requirements>:1:14: invalid JSON"):
        load_requirements('{"goal": "x",}')


def test_nan_is_not_json() -> None:
    with pytest.raises(RequirementsError, match="NaN is not valid JSON"):
        load_requirements('{"goal": "x", "minConfidence": NaN}')


def test_top_level_must_be_an_object() -> None:
    assert problems_of('["goal"]') == ("requirements must be a JSON object (got an array)",)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(RequirementsError, match="requirements file not found: .*nope.json"):
        load_requirements(tmp_path / "nope.json")
    with pytest.raises(RequirementsError, match="is a directory"):
        load_requirements(tmp_path)


def test_empty_input() -> None:
    with pytest.raises(RequirementsError, match="no requirements given"):
        load_requirements("  ")


def test_errors_do_not_chain_pydantic_tracebacks() -> None:
    with pytest.raises(RequirementsError) as info:
        load_requirements('{"goal": 1}')
    assert info.value.__suppress_context__


# --------------------------------------------------------------------------- strategy


@pytest.mark.parametrize(
    ("written", "normal"),
    [
        ("Multi Perspective Consensus", "multi-perspective-consensus"),
        ("multi_perspective_consensus", "multi-perspective-consensus"),
        ("MultiPerspectiveConsensus", "multi-perspective-consensus"),
        ("  MAP  REDUCE ", "map-reduce"),
        ("mapReduce", "map-reduce"),
        ("map--reduce", "map-reduce"),
        ("consensus", "consensus"),
        ("Tree Of Thought", "tree-of-thought"),
    ],
)
def test_strategy_normalisation(written: str, normal: str) -> None:
    req = validate_requirements({"goal": "x", "strategy": written})
    assert req.strategy == normal


def test_unknown_strategies_are_kept_and_known_ones_listed() -> None:
    assert KNOWN_STRATEGIES == (
        "parallel", "sequential", "consensus", "multi-perspective-consensus", "voting",
        "race", "resilient", "pipeline", "map-reduce", "escalation",
    )
    assert validate_requirements({"goal": "x", "strategy": "Voting"}).strategy_is_known
    odd = validate_requirements({"goal": "x", "strategy": "Debate Club"})
    assert odd.strategy == "debate-club" and not odd.strategy_is_known


def test_blank_strategy_means_none() -> None:
    assert validate_requirements({"goal": "x", "strategy": "  "}).strategy is None


@given(st.text(alphabet=st.sampled_from("aBz _-9 "), max_size=30))
def test_normalisation_is_idempotent_and_kebab(name: str) -> None:
    once = normalize_strategy(name)
    assert normalize_strategy(once) == once
    assert re.fullmatch(r"([a-z0-9]+(-[a-z0-9]+)*)?", once)


# --------------------------------------------------------------------------- identity


def test_canonical_json_is_sorted_compact_camel_case_without_input() -> None:
    req = validate_requirements(FULL)
    text = canonical_json(req)
    assert text == (
        '{"context":{"perspectives":["security","quality"],"requireAllPerspectives":true},'
        '"fallback":"senior-reviewer","goal":"Review this pull request for security and '
        'quality","minConfidence":0.8,"strategy":"multi-perspective-consensus"}'
    )
    assert "input" not in json.loads(text)


def test_hash_is_stable_across_key_order_and_spelling() -> None:
    shuffled = dict(reversed(list(FULL.items())))
    shuffled["context"] = dict(reversed(list(FULL["context"].items())))
    shuffled["strategy"] = "multi_perspective_consensus"
    a = requirements_hash(validate_requirements(FULL), "builtin", "1.0.0")
    b = requirements_hash(load_requirements(json.dumps(shuffled)), "builtin", "1.0.0")
    assert a == b
    assert re.fullmatch(r"pat_[0-9a-f]{16}", a)


def test_hash_depends_on_composer_identity_and_version() -> None:
    req = validate_requirements(FULL)
    base = requirements_hash(req, "builtin", "1.0.0")
    assert requirements_hash(req, "builtin", "1.0.1") != base
    assert requirements_hash(req, "llm", "1.0.0") != base


def test_hash_excludes_input() -> None:
    one = validate_requirements({**FULL, "input": {"diff": "a"}})
    two = validate_requirements({**FULL, "input": [1, 2, 3]})
    none = validate_requirements({k: v for k, v in FULL.items() if k != "input"})
    hashes = {requirements_hash(r, "builtin", "1") for r in (one, two, none)}
    assert len(hashes) == 1


def test_hash_treats_equal_json_numbers_and_omitted_nulls_alike() -> None:
    a = validate_requirements({"goal": "x", "minConfidence": 1, "context": {"n": 2}})
    b = validate_requirements(
        {"goal": " x ", "minConfidence": 1.0, "context": {"n": 2.0}, "fallback": None}
    )
    assert canonical_json(a) == canonical_json(b)
    assert requirements_hash(a, "c", "1") == requirements_hash(b, "c", "1")


def test_hash_changes_with_requirements() -> None:
    a = validate_requirements({"goal": "x", "minConfidence": 0.7})
    b = validate_requirements({"goal": "x", "minConfidence": 0.8})
    assert requirements_hash(a, "c", "1") != requirements_hash(b, "c", "1")
