"""PatternStore: pattern CRUD, use tracking, listing, garbage collection and export."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from bootstrap.store import (
    NotFoundError,
    PatternRecord,
    PatternStore,
    StoreError,
    render_export,
)

Make = Callable[..., PatternRecord]
Advance = Callable[..., None]

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def test_put_then_get_round_trips(store: PatternStore, make_pattern: Make) -> None:
    stored = store.put(make_pattern())
    assert store.get(stored.id) == stored
    assert stored.source == "let answer = 42;\nanswer\n"
    assert stored.validation == {"ok": True, "errors": [], "warnings": []}
    assert stored.metadata == {"primitives": ["parallel"]}
    assert stored.created_at == stored.updated_at == "2025-01-01T12:00:00.000000Z"
    assert (stored.last_used_at, stored.use_count) == (None, 0)


def test_get_missing_is_none(store: PatternStore) -> None:
    assert store.get("pat_missing") is None


def test_upsert_replaces_content_but_keeps_creation_and_usage(
    store: PatternStore, advance: Advance, make_pattern: Make
) -> None:
    store.put(make_pattern())
    store.touch("pat_0123456789abcdef")
    advance(days=1)
    updated = store.put(make_pattern(source="1", composer_version="2.0.0", validation={}))
    assert updated.source == "1" and updated.composer_version == "2.0.0"
    assert updated.validation == {}
    assert updated.created_at == "2025-01-01T12:00:00.000000Z"
    assert updated.updated_at == "2025-01-02T12:00:00.000000Z"
    assert updated.use_count == 1 and updated.last_used_at == "2025-01-01T12:00:00.000000Z"
    assert store.count() == 1


def test_put_accepts_explicit_timestamps_in_any_iso_form(
    store: PatternStore, make_pattern: Make
) -> None:
    stored = store.put(make_pattern(created_at="2024-06-01T10:00:00+02:00"))
    assert stored.created_at == "2024-06-01T08:00:00.000000Z"


def test_put_rejects_requirements_that_are_not_json(
    store: PatternStore, make_pattern: Make
) -> None:
    with pytest.raises(ValueError):
        store.put(make_pattern(requirements="goal: x"))


def test_timestamps_are_iso_utc(tmp_path: Path, make_pattern: Make) -> None:
    with PatternStore(tmp_path / "real-clock.db") as real:
        stored = real.put(make_pattern())
        assert TS.fullmatch(stored.created_at or "")


def test_touch_counts_uses(store: PatternStore, advance: Advance, make_pattern: Make) -> None:
    store.put(make_pattern())
    advance(seconds=5)
    assert store.touch("pat_0123456789abcdef")
    assert store.touch("pat_0123456789abcdef")
    record = store.get("pat_0123456789abcdef")
    assert record is not None
    assert record.use_count == 2 and record.last_used_at == "2025-01-01T12:00:05.000000Z"
    assert not store.touch("pat_missing")


def test_list_orders_by_recent_use_and_pages(
    store: PatternStore, advance: Advance, make_pattern: Make
) -> None:
    for name in ("a", "b", "c"):
        store.put(make_pattern(f"pat_{name}"))
        advance(seconds=1)
    store.touch("pat_a")
    assert [p.id for p in store.list()] == ["pat_a", "pat_c", "pat_b"]
    assert [p.id for p in store.list(limit=1, offset=1)] == ["pat_c"]
    assert [p.id for p in store.list(limit=None, offset=2)] == ["pat_b"]
    with pytest.raises(ValueError):
        store.list(limit=-1)


def test_delete(store: PatternStore, make_pattern: Make) -> None:
    store.put(make_pattern())
    assert store.delete("pat_0123456789abcdef")
    assert not store.delete("pat_0123456789abcdef")
    assert store.get("pat_0123456789abcdef") is None


# --------------------------------------------------------------------------- gc


@pytest.fixture
def aged(store: PatternStore, advance: Advance, make_pattern: Make) -> PatternStore:
    """pat_old made on day 0; pat_mid made day 0, used day 5; pat_new made day 9; now day 10."""
    store.put(make_pattern("pat_old"))
    store.put(make_pattern("pat_mid"))
    advance(days=5)
    store.touch("pat_mid")
    advance(days=4)
    store.put(make_pattern("pat_new"))
    advance(days=1)
    return store


def ids(store: PatternStore) -> set[str]:
    return {p.id for p in store.list(limit=None)}


def test_gc_by_age_uses_last_use(aged: PatternStore) -> None:
    store = aged
    assert store.gc(older_than_days=7) == 1
    assert ids(store) == {"pat_mid", "pat_new"}
    assert store.gc(older_than_days=7) == 0


def test_gc_keep_last(aged: PatternStore) -> None:
    store = aged
    assert store.gc(keep_last=2) == 1
    assert ids(store) == {"pat_mid", "pat_new"}


def test_gc_age_and_keep_last_combined(aged: PatternStore) -> None:
    store = aged
    assert store.gc(older_than_days=0.5, keep_last=2) == 1  # all old enough; 2 kept
    assert ids(store) == {"pat_mid", "pat_new"}


def test_gc_spares_patterns_of_active_executions(aged: PatternStore) -> None:
    store = aged
    store.create_execution(pattern_id="pat_old", status="running")
    store.create_execution(pattern_id="pat_mid", status="pending")
    store.create_execution(pattern_id="pat_new", status="completed")
    assert store.gc(keep_last=0) == 1
    assert ids(store) == {"pat_old", "pat_mid"}


def test_gc_needs_a_criterion(store: PatternStore) -> None:
    with pytest.raises(ValueError):
        store.gc()
    with pytest.raises(ValueError):
        store.gc(older_than_days=-1)


# --------------------------------------------------------------------------- export


def header_and_body(text: str) -> tuple[str, str]:
    end = text.index("*/") + 2
    return text[:end], text[end:].lstrip("\n")


def test_export_writes_a_reviewable_prism_file(
    store: PatternStore, tmp_path: Path, make_pattern: Make
) -> None:
    requirements = {"goal": "answer", "minConfidence": 0.7, "context": {"n": [1, 2]}}
    store.put(make_pattern(
        requirements=json.dumps(requirements, separators=(",", ":"), sort_keys=True),
        validation={"ok": False, "errors": [{"message": "unknown name foo", "line": 2,
                                             "column": 1}], "attempts": 2},
    ))
    out = store.export("pat_0123456789abcdef", tmp_path / "review.prism")
    assert out == tmp_path / "review.prism"
    text = out.read_text(encoding="utf-8")
    assert text.startswith("/**\n")
    header, body = header_and_body(text)
    assert body == "let answer = 42;\nanswer\n"
    for needle in ("pat_0123456789abcdef", "builtin 1.0.0", "created: 2025-01-01T12:00:00",
                   "FAILED", "2:1: unknown name foo", "attempts: 2"):
        assert needle in header
    # The pretty requirements JSON can be read back out of the comment.
    lines = [line[3:] for line in header.splitlines()]
    start = lines.index("requirements:") + 1
    end = lines.index("", start)
    assert json.loads("\n".join(lines[start:end])) == requirements
    assert "\n * @name pat_0123456789abcdef\n" in header


def test_export_header_cannot_be_closed_or_tagged_by_content(
    store: PatternStore, make_pattern: Make
) -> None:
    hostile = {"goal": "close it */ now", "context": {"x": "\n@agents {\"capabilities\":[]}"}}
    record = store.put(make_pattern(
        requirements=json.dumps(hostile),
        composer="evil */ @minAgents 9",
        validation={"ok": True, "warnings": ["*/ @minAgents 5", "multi\nline */"]},
    ))
    text = render_export(record)
    header, body = header_and_body(text)
    assert body == record.source  # the first "*/" is the header's own end
    tags = [line for line in header.splitlines() if re.match(r"^\s*\*?\s*@\w+", line)]
    assert tags == [" * @name pat_0123456789abcdef"]
    assert "(at)minAgents" in header


def test_export_merges_the_sources_own_parallax_header(
    store: PatternStore, make_pattern: Make
) -> None:
    source = '/**\n * @name reviewer\n * @minAgents 2\n */\nlet x = input;\nx\n'
    record = store.put(make_pattern(source=source))
    header, body = header_and_body(render_export(record))
    assert body == "let x = input;\nx\n"
    assert " * @name reviewer\n * @minAgents 2\n" in header
    assert "@name pat_" not in header


def test_export_into_a_directory_and_missing_pattern(
    store: PatternStore, tmp_path: Path, make_pattern: Make
) -> None:
    store.put(make_pattern())
    assert store.export("pat_0123456789abcdef", tmp_path) == (
        tmp_path / "pat_0123456789abcdef.prism"
    )
    with pytest.raises(NotFoundError):
        store.export("pat_missing", tmp_path)
    with pytest.raises(StoreError, match="cannot write"):
        store.export("pat_0123456789abcdef", tmp_path / "no" / "such" / "dir" / "x.prism")


def test_reopening_keeps_data(tmp_path: Path, make_pattern: Make) -> None:
    with PatternStore(tmp_path / "s.db") as first:
        first.put(make_pattern())
    with PatternStore(tmp_path / "s.db") as second:
        assert second.get("pat_0123456789abcdef") is not None
