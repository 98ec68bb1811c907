"""Where the store lives, and the clear StoreError for files it cannot use."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from bootstrap.store import (
    SCHEMA_VERSION,
    PatternStore,
    StoreError,
    default_store_path,
    migrate,
    schema_version,
)

# --------------------------------------------------------------------------- location


def test_prism_store_env_var_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "custom" / "mine.db"
    monkeypatch.setenv("PRISM_STORE", str(target))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    with PatternStore() as store:
        assert store.path == target
    assert target.is_file()


def test_xdg_data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PRISM_STORE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_store_path() == tmp_path / "xdg" / "prism" / "store.db"


def test_home_fallback_ignores_relative_xdg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PRISM_STORE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", "relative/dir")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_store_path() == tmp_path / ".local" / "share" / "prism" / "store.db"
    assert default_store_path({"HOME": "unused", "PRISM_STORE": "~/s.db"}) == (
        tmp_path / "s.db"
    )


def test_explicit_path_beats_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRISM_STORE", str(tmp_path / "env.db"))
    with PatternStore(tmp_path / "arg.db") as store:
        assert store.path == tmp_path / "arg.db"
    assert not (tmp_path / "env.db").exists()


def test_new_store_has_current_schema(tmp_path: Path) -> None:
    PatternStore(tmp_path / "s.db").close()
    conn = sqlite3.connect(tmp_path / "s.db")
    try:
        assert schema_version(conn) == SCHEMA_VERSION
        assert migrate(conn) == SCHEMA_VERSION  # nothing left to apply
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert {"meta", "patterns", "executions", "events"} <= tables
    finally:
        conn.close()


# --------------------------------------------------------------------------- bad files


def assert_clear(err: StoreError, path: Path) -> None:
    message = str(err)
    assert str(path) in message
    assert "--store" in message and "PRISM_STORE" in message
    # No sqlite3 traceback chained underneath.
    assert err.__cause__ is None
    assert err.__context__ is None or err.__suppress_context__


@pytest.mark.parametrize(
    "content",
    [b"this is not a database, just some text\n" * 50, bytes(range(256)) * 40],
    ids=["text", "binary"],
)
def test_non_sqlite_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "store.db"
    path.write_bytes(content)
    with pytest.raises(StoreError) as info:
        PatternStore(path)
    assert_clear(info.value, path)
    assert "not a usable SQLite database" in str(info.value)
    assert "Move the file away" in str(info.value)
    assert path.read_bytes() == content


def test_corrupted_store(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    PatternStore(path).close()
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xde\xad\xbe\xef" * ((4096 - 100) // 4)  # smash the schema page
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError) as info:
        store = PatternStore(path)
        store.list()
    assert_clear(info.value, path)


def test_foreign_sqlite_database_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a Prism pattern store") as info:
        PatternStore(path)
    assert_clear(info.value, path)
    assert path.read_bytes() == before  # not even switched to WAL
    conn = sqlite3.connect(path)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()
    assert tables == {"invoices"}


def test_store_from_a_newer_version(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    PatternStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="schema version 999"):
        PatternStore(path)


def test_directory_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create the pattern store directory") as info:
        PatternStore(blocker / "sub" / "store.db")
    assert_clear(info.value, blocker / "sub")


def test_path_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is a directory") as info:
        PatternStore(tmp_path)
    assert_clear(info.value, tmp_path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores modes")
def test_unwritable_directory(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(StoreError, match="not writable") as info:
            PatternStore(locked / "store.db")
        assert_clear(info.value, locked)
    finally:
        locked.chmod(0o700)


def test_closed_store_says_so(tmp_path: Path) -> None:
    store = PatternStore(tmp_path / "s.db")
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.get("x")
