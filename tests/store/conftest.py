"""Fixtures for the pattern store tests: a store in tmp_path and a controllable clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bootstrap.store import PatternRecord, PatternStore


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, days: float = 0, seconds: float = 0) -> None:
        self.now += timedelta(days=days, seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def advance(clock: FakeClock) -> Callable[..., None]:
    """``advance(days=…, seconds=…)`` moves the store's clock forward."""
    return clock.advance


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[PatternStore]:
    with PatternStore(tmp_path / "store.db", clock=clock) as opened:
        yield opened


@pytest.fixture
def make_pattern() -> Callable[..., PatternRecord]:
    """``make_pattern(id="pat_…", **field_changes)`` builds a PatternRecord to put."""
    return _make_pattern


def _make_pattern(pattern_id: str = "pat_0123456789abcdef", **changes: object) -> PatternRecord:
    fields: dict[str, object] = {
        "id": pattern_id,
        "source": "let answer = 42;\nanswer\n",
        "requirements": '{"goal":"answer","minConfidence":0.7}',
        "composer": "builtin",
        "composer_version": "1.0.0",
        "validation": {"ok": True, "errors": [], "warnings": []},
        "metadata": {"primitives": ["parallel"]},
    }
    fields.update(changes)
    return PatternRecord(**fields)  # type: ignore[arg-type]
