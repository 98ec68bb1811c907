"""PatternStore executions and their event logs (the HTTP service's bookkeeping)."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from bootstrap.store import EXECUTION_STATUSES, NotFoundError, PatternStore

Advance = Callable[..., None]


def test_create_and_get(store: PatternStore) -> None:
    created = store.create_execution(
        pattern_id="pat_1", requirements={"goal": "x", "minConfidence": 0.5},
        input={"text": "hello"},
    )
    assert created.id.startswith("exe_")
    assert created.status == "pending"
    assert created.requirements == '{"goal":"x","minConfidence":0.5}'
    assert created.input == {"text": "hello"}
    assert (created.result, created.confidence, created.error) == (None, None, None)
    assert created.fallback_taken is False
    assert created.created_at == "2025-01-01T12:00:00.000000Z"
    assert (created.started_at, created.finished_at) == (None, None)
    assert store.get_execution(created.id) == created
    assert store.get_execution("exe_missing") is None


def test_explicit_id_must_be_new(store: PatternStore) -> None:
    store.create_execution(execution_id="exe_fixed")
    with pytest.raises(ValueError, match="already exists"):
        store.create_execution(execution_id="exe_fixed")


def test_lifecycle_sets_timestamps(store: PatternStore, advance: Advance) -> None:
    run = store.create_execution()
    advance(seconds=1)
    running = store.update_execution(run.id, status="running")
    assert running.started_at == "2025-01-01T12:00:01.000000Z" and running.finished_at is None
    advance(seconds=2)
    done = store.update_execution(
        run.id, status="completed", result={"answer": [1, 2]}, confidence=0.9,
        fallback_taken=True,
    )
    assert done.status == "completed"
    assert done.result == {"answer": [1, 2]} and done.confidence == 0.9
    assert done.fallback_taken is True
    assert done.started_at == "2025-01-01T12:00:01.000000Z"
    assert done.finished_at == "2025-01-01T12:00:03.000000Z"


def test_failed_execution_keeps_error(store: PatternStore) -> None:
    run = store.create_execution(status="running")
    failed = store.update_execution(run.id, status="failed", error="composer gave up")
    assert failed.error == "composer gave up" and failed.finished_at is not None


def test_result_follows_json_stringify_for_non_finite_numbers(store: PatternStore) -> None:
    run = store.create_execution()
    updated = store.update_execution(run.id, result={"x": math.nan, "y": [math.inf, 1.5]})
    assert updated.result == {"x": None, "y": [None, 1.5]}


def test_update_rejects_bad_input(store: PatternStore) -> None:
    run = store.create_execution()
    with pytest.raises(TypeError, match="unknown execution field"):
        store.update_execution(run.id, colour="red")
    with pytest.raises(ValueError, match="unknown execution status 'done'"):
        store.update_execution(run.id, status="done")
    with pytest.raises(TypeError, match="result must be JSON data"):
        store.update_execution(run.id, result={"x": object()})
    with pytest.raises(NotFoundError):
        store.update_execution("exe_missing", status="running")


def test_list_executions_newest_first_and_by_status(
    store: PatternStore, advance: Advance
) -> None:
    made = []
    for status in ("pending", "running", "completed", "running"):
        made.append(store.create_execution(status=status).id)
        advance(seconds=1)
    assert [e.id for e in store.list_executions()] == made[::-1]
    assert [e.id for e in store.list_executions(status="running")] == [made[3], made[1]]
    both = store.list_executions(status=["pending", "completed"])
    assert [e.id for e in both] == [made[2], made[0]]
    assert [e.id for e in store.list_executions(limit=2, offset=1)] == [made[2], made[1]]
    with pytest.raises(ValueError):
        store.list_executions(status="nope")


def test_events_are_numbered_per_execution(store: PatternStore) -> None:
    a = store.create_execution().id
    b = store.create_execution().id
    assert store.append_event(a, "composer.start", {"composer": "builtin"}) == 1
    assert store.append_event(a, "agent.call", {"agent": "security", "ms": 12}) == 2
    assert store.append_event(b, "start") == 1
    assert store.append_event(a, "done", [1, 2]) == 3
    events = store.events(a)
    assert [(e.seq, e.kind, e.data) for e in events] == [
        (1, "composer.start", {"composer": "builtin"}),
        (2, "agent.call", {"agent": "security", "ms": 12}),
        (3, "done", [1, 2]),
    ]
    assert all(e.execution_id == a and e.ts.endswith("Z") for e in events)
    assert [e.seq for e in store.events(a, after_seq=1)] == [2, 3]
    assert [e.seq for e in store.events(a, after_seq=1, limit=1)] == [2]
    assert store.events("exe_missing") == []


def test_events_need_an_existing_execution(store: PatternStore) -> None:
    with pytest.raises(NotFoundError, match="exe_missing"):
        store.append_event("exe_missing", "start")


def test_mark_interrupted_recovers_after_a_restart(store: PatternStore) -> None:
    runs = {status: store.create_execution(status=status).id for status in EXECUTION_STATUSES}
    assert store.mark_interrupted() == 2
    after = {status: store.get_execution(i) for status, i in runs.items()}
    for status, record in after.items():
        assert record is not None
        expected = "interrupted" if status in ("pending", "running") else status
        assert record.status == expected
        assert record.finished_at is not None
    assert store.mark_interrupted() == 0


def test_records_serialise_to_dicts(store: PatternStore) -> None:
    run = store.create_execution(input=[1])
    store.append_event(run.id, "k", {"a": 1})
    assert run.to_dict()["input"] == [1]
    assert store.events(run.id)[0].to_dict()["data"] == {"a": 1}
