"""Consumes generated patterns (source + canonical requirements + composer identity),
execution records and their event logs; produces a durable SQLite store shared safely by
several threads and processes, and reviewable `.prism` exports of stored patterns.

Design notes:

* One file, WAL journal, ``synchronous=NORMAL``. Every thread (and every process, after a
  fork) gets its own connection. Writes run in ``BEGIN IMMEDIATE`` transactions, so a
  writer takes the lock up front instead of failing on a read→write upgrade; SQLite's
  ``busy_timeout`` waits for the lock and a bounded retry loop with jittered backoff
  covers the cases it does not (e.g. switching a fresh file to WAL).
* The schema is versioned in the ``meta`` table; `migrate` applies `MIGRATIONS` in order
  and the file is stamped with an ``application_id`` so that a foreign SQLite database is
  recognised and never modified.
* Every SQLite failure leaves this module as `StoreError`, whose message names the file
  and says what to do about it; callers never see a raw ``sqlite3`` traceback.
* Timestamps are ISO-8601 UTC strings of fixed width (``2025-01-31T12:00:00.000000Z``),
  so they sort and compare correctly as text inside SQL.
* Requirements are kept as JSON *text* (canonical for patterns: they are the pattern's
  identity); every other JSON column is decoded to Python data in the records.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shlex
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "ACTIVE_STATUSES",
    "EXECUTION_STATUSES",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "EventRecord",
    "ExecutionRecord",
    "NotFoundError",
    "PatternRecord",
    "PatternStore",
    "StoreError",
    "default_store_path",
    "migrate",
    "render_export",
    "schema_version",
    "utc_now",
]

T = TypeVar("T")

APPLICATION_ID = 0x50525331  # "PRS1", stamped in the SQLite header of every store
EXECUTION_STATUSES: tuple[str, ...] = (
    "pending", "running", "completed", "failed", "cancelled", "interrupted",
)
ACTIVE_STATUSES: tuple[str, ...] = ("pending", "running")
TERMINAL_STATUSES: tuple[str, ...] = ("completed", "failed", "cancelled", "interrupted")

_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_DEFAULT_TIMEOUT = 30.0
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY = 5, 6, 8
_SQLITE_CORRUPT, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 11, 14, 26
_MAX_SUMMARY_ITEMS = 20


class StoreError(Exception):
    """The pattern store cannot be used; the message names the file and a remedy."""


class NotFoundError(StoreError, LookupError):
    """A pattern or execution id that is not in the store."""


# --------------------------------------------------------------------------- time, paths


def _format_ts(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_TS_FORMAT)


def utc_now() -> str:
    """The current time as a fixed-width ISO-8601 UTC string."""
    return _format_ts(datetime.now(UTC))


def _normalize_ts(value: str | None) -> str | None:
    """Re-format any ISO-8601 timestamp (naive means UTC) into the store's format."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"not an ISO-8601 timestamp: {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return _format_ts(moment)


def default_store_path(env: Mapping[str, str] | None = None) -> Path:
    """``$PRISM_STORE``, else ``$XDG_DATA_HOME/prism/store.db``, else
    ``~/.local/share/prism/store.db``."""
    env = os.environ if env is None else env
    explicit = env.get("PRISM_STORE", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    data_home = env.get("XDG_DATA_HOME", "").strip()
    # The XDG spec says relative values are invalid and must be ignored.
    base = Path(data_home) if data_home and os.path.isabs(data_home) else None
    if base is None:
        base = Path.home() / ".local" / "share"
    return base / "prism" / "store.db"


# --------------------------------------------------------------------------- JSON columns


def finite_json(value: Any) -> Any:
    """Mirror JavaScript's JSON.stringify: NaN and ±Infinity become null, keys strings.
    (Shared by the store's JSON columns and the HTTP API's responses.)"""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): finite_json(v) for k, v in value.items()}
    return value


def _dump(value: Any, what: str) -> str | None:
    if value is None:
        return None
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError:
        return json.dumps(finite_json(value), ensure_ascii=False, separators=(",", ":"))
    except TypeError as exc:
        raise TypeError(f"{what} must be JSON data: {exc}") from None


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _requirements_text(value: str | Mapping[str, Any] | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        json.loads(value)  # must at least be JSON; raises ValueError otherwise
        return value
    return json.dumps(dict(value), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class PatternRecord:
    """A generated pattern. ``requirements`` is the canonical requirements JSON text.

    When passed to `PatternStore.put`, the timestamps and ``use_count`` may be left at
    their defaults; the store fills them in.
    """

    id: str
    source: str
    requirements: str
    composer: str
    composer_version: str
    validation: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: str | None = None
    updated_at: str | None = None
    last_used_at: str | None = None
    use_count: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ExecutionRecord:
    """One run of a pattern (or of requirements), as tracked for the HTTP service."""

    id: str
    status: str
    created_at: str
    pattern_id: str | None = None
    requirements: str | None = None
    input: Any = None
    result: Any = None
    confidence: float | None = None
    error: str | None = None
    fallback_taken: bool = False
    started_at: str | None = None
    finished_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One entry of an execution's event log; ``seq`` counts from 1 per execution."""

    execution_id: str
    seq: int
    ts: str
    kind: str
    data: Any = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pattern_from_row(row: sqlite3.Row) -> PatternRecord:
    return PatternRecord(
        id=row["id"],
        source=row["source"],
        requirements=row["requirements"],
        composer=row["composer"],
        composer_version=row["composer_version"],
        validation=_load(row["validation"]) or {},
        metadata=_load(row["metadata"]) or {},
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_used_at=row["last_used_at"],
        use_count=row["use_count"],
    )


def _execution_from_row(row: sqlite3.Row) -> ExecutionRecord:
    return ExecutionRecord(
        id=row["id"],
        status=row["status"],
        created_at=row["created_at"],
        pattern_id=row["pattern_id"],
        requirements=row["requirements"],
        input=_load(row["input"]),
        result=_load(row["result"]),
        confidence=row["confidence"],
        error=row["error"],
        fallback_taken=bool(row["fallback_taken"]),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


# --------------------------------------------------------------------------- schema


def _migration_1(conn: sqlite3.Connection) -> None:
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    statements = [
        """CREATE TABLE IF NOT EXISTS meta (
               key TEXT PRIMARY KEY,
               value TEXT NOT NULL)""",
        """CREATE TABLE patterns (
               id TEXT PRIMARY KEY,
               source TEXT NOT NULL,
               requirements TEXT NOT NULL,
               composer TEXT NOT NULL,
               composer_version TEXT NOT NULL,
               validation TEXT NOT NULL DEFAULT '{}',
               metadata TEXT NOT NULL DEFAULT '{}',
               created_at TEXT NOT NULL,
               updated_at TEXT NOT NULL,
               last_used_at TEXT,
               use_count INTEGER NOT NULL DEFAULT 0)""",
        "CREATE INDEX patterns_recency ON patterns (COALESCE(last_used_at, created_at))",
        f"""CREATE TABLE executions (
               id TEXT PRIMARY KEY,
               pattern_id TEXT,
               status TEXT NOT NULL CHECK (status IN {EXECUTION_STATUSES!r}),
               requirements TEXT,
               input TEXT,
               result TEXT,
               confidence REAL,
               error TEXT,
               fallback_taken INTEGER NOT NULL DEFAULT 0,
               created_at TEXT NOT NULL,
               started_at TEXT,
               finished_at TEXT)""",
        "CREATE INDEX executions_by_status ON executions (status, created_at)",
        "CREATE INDEX executions_by_created ON executions (created_at)",
        "CREATE INDEX executions_by_pattern ON executions (pattern_id)",
        """CREATE TABLE events (
               execution_id TEXT NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
               seq INTEGER NOT NULL,
               ts TEXT NOT NULL,
               kind TEXT NOT NULL,
               data TEXT,
               PRIMARY KEY (execution_id, seq)) WITHOUT ROWID""",
    ]
    for statement in statements:
        conn.execute(statement)


#: schema version → function bringing the schema from the previous version to it.
#: Each runs inside the caller's write transaction.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _migration_1}
SCHEMA_VERSION = max(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    """The schema version recorded in ``meta`` (0 for an empty database)."""
    has_meta = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone()
    if not has_meta:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: sqlite3.Connection) -> int:
    """Apply every migration newer than the database's version; return the new version.

    Must run inside a write transaction (`PatternStore` does this when it opens a file).
    """
    version = schema_version(conn)
    for target in sorted(MIGRATIONS):
        if target <= version:
            continue
        MIGRATIONS[target](conn)
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(target),),
        )
        version = target
    return version


# --------------------------------------------------------------------------- export


def _comment_text(text: str) -> list[str]:
    """Free text made safe for a ``/** */`` header: it cannot close the comment and no
    line can start a Parallax ``@tag``."""
    safe = text.replace("*/", "* /").replace("@", "(at)")
    return safe.splitlines() or [""]


def _comment_json(value: Any) -> list[str]:
    """Pretty JSON that stays valid JSON yet cannot close the comment or form a tag:
    ``*/`` and ``@`` only occur inside JSON strings, where ``\\/`` and ``\\u0040``
    are equivalent escapes."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    return text.replace("*/", "*\\/").replace("@", "\\u0040").splitlines()


def _issue_text(item: Any) -> str:
    if isinstance(item, Mapping):
        message = item.get("message") or item.get("msg") or json.dumps(item, sort_keys=True)
        line, column = item.get("line"), item.get("column")
        where = f"{line}:{column}: " if line is not None and column is not None else (
            f"line {line}: " if line is not None else ""
        )
        kind = f"[{item['kind']}] " if item.get("kind") else ""
        return f"{where}{kind}{message}"
    return str(item)


def _validation_summary(validation: Mapping[str, Any]) -> list[str]:
    if not validation:
        return ["not recorded"]
    status_keys = ("ok", "valid", "passed")
    verdict = next((validation[k] for k in status_keys if k in validation), None)
    lines = ["passed" if verdict is True else "FAILED" if verdict is False else "recorded"]
    for key in ("errors", "warnings"):
        items = validation.get(key)
        if not isinstance(items, list) or not items:
            continue
        lines.append(f"{key} ({len(items)}):")
        lines.extend(f"  - {_issue_text(item)}" for item in items[:_MAX_SUMMARY_ITEMS])
        if len(items) > _MAX_SUMMARY_ITEMS:
            lines.append(f"  - ... and {len(items) - _MAX_SUMMARY_ITEMS} more")
    for key, value in validation.items():
        if key in status_keys or key in ("errors", "warnings"):
            continue
        if value is None or isinstance(value, str | int | float | bool):
            lines.append(f"{key}: {value}")
    return lines


# A leading Parallax header (`/** @name … */`); `/**/` is an empty comment, not a header.
_HEADER_RE = re.compile(r"\A\s*/\*\*(?!/)(.*?)\*/[ \t]*\n?", re.S)
_TAG_RE = re.compile(r"^\s*\*?\s*@(\w+)", re.M)


def _split_header(source: str) -> tuple[list[str], str]:
    """Split off the source's own Parallax header (if it has ``@tags``) so that its tags
    can live in the export's header: the engine only reads the first ``/** */`` block."""
    match = _HEADER_RE.match(source)
    if not match or not _TAG_RE.search(match.group(1)):
        return [], source
    lines = [re.sub(r"^\s*\*? ?", "", line).rstrip() for line in match.group(1).splitlines()]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return lines, source[match.end():]


def render_export(record: PatternRecord) -> str:
    """The reviewable `.prism` text of a pattern: a ``/** … */`` header (id, composer,
    times, requirements, validation summary, Parallax tags) followed by the source."""
    own_tags, body = _split_header(record.source)
    try:
        requirements: Any = json.loads(record.requirements)
    except ValueError:
        requirements = record.requirements
    usage = f"used {record.use_count} time{'s' if record.use_count != 1 else ''}"
    if record.last_used_at:
        usage += f", last {record.last_used_at}"
    lines = [f"Prism pattern {record.id}"]
    lines += _comment_text(f"composer: {record.composer} {record.composer_version}")
    lines += [f"created: {record.created_at}", f"updated: {record.updated_at} ({usage})", ""]
    lines += ["requirements:"] + ["  " + line for line in _comment_json(requirements)]
    lines += ["", "validation:"]
    lines += ["  " + part for item in _validation_summary(record.validation)
              for part in _comment_text(item)]
    lines += [""]
    if not any(re.match(r"@name\b", tag) for tag in own_tags):
        lines.append(f"@name {record.id}")
    lines += own_tags
    header = "/**\n" + "".join(f" * {line}".rstrip() + "\n" for line in lines) + " */\n"
    return header + body.lstrip("\n").rstrip("\n") + "\n"


# --------------------------------------------------------------------------- the store


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return True
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _statuses(status: str | Iterable[str] | None) -> tuple[str, ...] | None:
    if status is None:
        return None
    wanted = (status,) if isinstance(status, str) else tuple(status)
    for item in wanted:
        _check_status(item)
    return wanted


def _check_status(status: str) -> str:
    if status not in EXECUTION_STATUSES:
        raise ValueError(
            f"unknown execution status {status!r} (expected one of: "
            f"{', '.join(EXECUTION_STATUSES)})"
        )
    return status


def _check_page(limit: int | None, offset: int) -> int:
    if offset < 0 or (limit is not None and limit < 0):
        raise ValueError("limit and offset must not be negative")
    return -1 if limit is None else limit  # SQLite: LIMIT -1 means no limit


_EXECUTION_FIELDS = frozenset({
    "pattern_id", "status", "requirements", "input", "result", "confidence", "error",
    "fallback_taken", "started_at", "finished_at",
})


class PatternStore:
    """The SQLite pattern store (patterns, executions, events) at one file path.

    ``PatternStore()`` uses `default_store_path`; ``PatternStore(path)`` any other file.
    Instances are safe to share between threads; several processes may open the same
    file at once. ``clock`` (returning an aware datetime) exists for tests.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        timeout: float = _DEFAULT_TIMEOUT,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.path = Path(path).expanduser() if path is not None else default_store_path()
        if str(self.path) == ":memory:":
            raise ValueError("the pattern store needs a file path, not ':memory:'")
        self._timeout = timeout
        self._clock = clock or (lambda: datetime.now(UTC))
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[tuple[int, sqlite3.Connection]] = []
        self._closed = False
        self._prepare_directory()
        try:
            # Check before switching to WAL: a foreign file must be left byte-for-byte alone.
            self._transaction(self._check_compatible, write=False)
            self._retry(lambda: self._conn().execute("PRAGMA journal_mode = WAL").fetchone())
            self._transaction(self._initialize)
        except BaseException:
            self.close()
            raise

    # ----------------------------------------------------------------- plumbing

    def _hint(self) -> str:
        return ("choose another location with --store PATH or the PRISM_STORE "
                "environment variable")

    def _prepare_directory(self) -> None:
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise StoreError(
                f"cannot create the pattern store directory {parent}: a file of that name "
                f"(or above it) is in the way; {self._hint()}"
            ) from None
        except OSError as exc:
            raise StoreError(
                f"cannot create the pattern store directory {parent} "
                f"({exc.strerror or exc}); {self._hint()}"
            ) from None
        if self.path.is_dir():
            raise StoreError(
                f"the pattern store path {self.path} is a directory, not a file; "
                f"{self._hint()}"
            )
        if not os.access(parent, os.W_OK | os.X_OK):
            raise StoreError(
                f"the pattern store directory {parent} is not writable (SQLite needs to "
                f"create journal files next to {self.path.name}); {self._hint()}"
            )

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"the pattern store {self.path} has been closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        # A connection must never cross a fork: the child opens its own.
        if conn is not None and self._local.pid == os.getpid():
            return conn
        try:
            conn = sqlite3.connect(
                self.path, timeout=self._timeout, isolation_level=None,
                check_same_thread=False,
            )
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            raise self._translate(exc) from None
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._lock:
            self._connections.append((os.getpid(), conn))
        return conn

    def _translate(self, exc: sqlite3.Error) -> StoreError:
        where, detail = self.path, str(exc)
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        if code in (_SQLITE_NOTADB, _SQLITE_CORRUPT) or "not a database" in detail \
                or "malformed" in detail:
            return StoreError(
                f"the pattern store {where} is not a usable SQLite database ({detail}). "
                f"Move the file away (e.g. `mv {shlex.quote(str(where))} "
                f"{shlex.quote(str(where) + '.broken')}`) so a fresh store "
                f"is created, or {self._hint()}."
            )
        if code == _SQLITE_READONLY or "readonly" in detail:
            return StoreError(
                f"the pattern store {where} is read-only ({detail}); fix its permissions "
                f"or {self._hint()}."
            )
        if code == _SQLITE_CANTOPEN or "unable to open" in detail:
            return StoreError(
                f"cannot open the pattern store {where} ({detail}); check that its "
                f"directory exists and is writable, or {self._hint()}."
            )
        if _is_busy(exc):
            return StoreError(
                f"the pattern store {where} stayed locked by another process for more "
                f"than {self._timeout:g} s ({detail}); try again, or {self._hint()}."
            )
        return StoreError(f"pattern store {where}: {detail}")

    def _retry(self, action: Callable[[], T]) -> T:
        """Run ``action``, retrying while SQLite reports the database busy or locked."""
        deadline = time.monotonic() + self._timeout
        delay = 0.002
        while True:
            try:
                return action()
            except sqlite3.Error as exc:
                if not (_is_busy(exc) and time.monotonic() < deadline):
                    raise self._translate(exc) from None
            time.sleep(delay * (0.5 + random.random()))  # jitter: avoid lock-step retries
            delay = min(delay * 2, 0.1)

    def _transaction(self, body: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        """Run ``body`` in one transaction (``BEGIN IMMEDIATE`` for writes), retried whole
        on contention; any exception rolls it back."""

        def attempt() -> T:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                result = body(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise
            return result

        return self._retry(attempt)

    def _initialize(self, conn: sqlite3.Connection) -> None:
        self._check_compatible(conn)  # again: another process may have raced us here
        migrate(conn)

    def _check_compatible(self, conn: sqlite3.Connection) -> None:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'")
        if tables.fetchone()[0] and app_id != APPLICATION_ID:
            raise StoreError(
                f"{self.path} is an SQLite database but not a Prism pattern store; "
                f"it was left untouched. Move it away or {self._hint()}."
            )
        version = schema_version(conn)
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the pattern store {self.path} has schema version {version}, newer than "
                f"this Prism understands ({SCHEMA_VERSION}); upgrade Prism or "
                f"{self._hint()}."
            )

    def _now(self) -> str:
        return _format_ts(self._clock())

    def close(self) -> None:
        """Close every connection this process opened; the store is unusable after."""
        self._closed = True
        with self._lock:
            mine = [c for pid, c in self._connections if pid == os.getpid()]
            self._connections.clear()
        for conn in mine:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def __enter__(self) -> PatternStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PatternStore({str(self.path)!r})"

    # ----------------------------------------------------------------- patterns

    def get(self, pattern_id: str) -> PatternRecord | None:
        """The pattern with this id, or None."""
        def body(conn: sqlite3.Connection) -> PatternRecord | None:
            row = conn.execute("SELECT * FROM patterns WHERE id = ?", (pattern_id,)).fetchone()
            return _pattern_from_row(row) if row else None
        return self._transaction(body, write=False)

    def put(self, record: PatternRecord) -> PatternRecord:
        """Insert or replace a pattern and return it as stored.

        On replace, ``created_at``, ``last_used_at`` and ``use_count`` are kept;
        ``updated_at`` is always set to now.
        """
        _requirements_text(record.requirements)
        values = (
            record.id, record.source, record.requirements, record.composer,
            record.composer_version, _dump(record.validation or {}, "validation"),
            _dump(record.metadata or {}, "metadata"),
        )
        created = _normalize_ts(record.created_at)
        last_used = _normalize_ts(record.last_used_at)

        def body(conn: sqlite3.Connection) -> PatternRecord:
            now = self._now()
            conn.execute(
                """INSERT INTO patterns (id, source, requirements, composer,
                       composer_version, validation, metadata, created_at, updated_at,
                       last_used_at, use_count)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (id) DO UPDATE SET
                       source = excluded.source,
                       requirements = excluded.requirements,
                       composer = excluded.composer,
                       composer_version = excluded.composer_version,
                       validation = excluded.validation,
                       metadata = excluded.metadata,
                       updated_at = excluded.updated_at""",
                (*values, created or now, now, last_used, record.use_count),
            )
            row = conn.execute("SELECT * FROM patterns WHERE id = ?", (record.id,)).fetchone()
            return _pattern_from_row(row)

        return self._transaction(body)

    def touch(self, pattern_id: str) -> bool:
        """Record a use of the pattern (last_used_at = now, use_count + 1).
        Returns False when there is no such pattern."""
        def body(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE patterns SET last_used_at = ?, use_count = use_count + 1 "
                "WHERE id = ?",
                (self._now(), pattern_id),
            )
            return cursor.rowcount > 0
        return self._transaction(body)

    def list(self, limit: int | None = 50, offset: int = 0) -> list[PatternRecord]:
        """Patterns, most recently used (or created) first."""
        page = _check_page(limit, offset)

        def body(conn: sqlite3.Connection) -> list[PatternRecord]:
            rows = conn.execute(
                "SELECT * FROM patterns ORDER BY COALESCE(last_used_at, created_at) DESC, "
                "id LIMIT ? OFFSET ?",
                (page, offset),
            ).fetchall()
            return [_pattern_from_row(row) for row in rows]
        return self._transaction(body, write=False)

    def count(self) -> int:
        """How many patterns are stored."""
        return self._transaction(
            lambda conn: int(conn.execute("SELECT count(*) FROM patterns").fetchone()[0]),
            write=False,
        )

    def delete(self, pattern_id: str) -> bool:
        """Delete a pattern; False when there was none."""
        return self._transaction(
            lambda conn: conn.execute(
                "DELETE FROM patterns WHERE id = ?", (pattern_id,)
            ).rowcount > 0
        )

    def gc(self, older_than_days: float | None = None, keep_last: int | None = None) -> int:
        """Delete unused patterns and return how many went.

        ``older_than_days``: only patterns whose last use (or creation, if never used)
        is older than that many days. ``keep_last``: always keep the N most recently
        used. Both may be combined; at least one is required. Patterns referenced by a
        pending or running execution are never deleted.
        """
        if older_than_days is None and keep_last is None:
            raise ValueError("gc needs older_than_days and/or keep_last")
        if (older_than_days is not None and older_than_days < 0) or \
                (keep_last is not None and keep_last < 0):
            raise ValueError("older_than_days and keep_last must not be negative")
        cutoff = (
            _format_ts(self._clock() - timedelta(days=older_than_days))
            if older_than_days is not None else None
        )
        active = ", ".join("?" for _ in ACTIVE_STATUSES)

        def body(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                f"""DELETE FROM patterns
                    WHERE (? IS NULL OR COALESCE(last_used_at, created_at) < ?)
                      AND id NOT IN (
                          SELECT id FROM patterns
                          ORDER BY COALESCE(last_used_at, created_at) DESC, id DESC
                          LIMIT ?)
                      AND id NOT IN (
                          SELECT pattern_id FROM executions
                          WHERE pattern_id IS NOT NULL AND status IN ({active}))""",
                (cutoff, cutoff, keep_last or 0, *ACTIVE_STATUSES),
            )
            return cursor.rowcount
        return self._transaction(body)

    def export(self, pattern_id: str, path: str | os.PathLike[str]) -> Path:
        """Write the pattern as a reviewable `.prism` file (see `render_export`) and
        return its path. ``path`` may be a directory: the file is then ``<id>.prism``."""
        record = self.get(pattern_id)
        if record is None:
            raise NotFoundError(f"no pattern {pattern_id!r} in the store {self.path}")
        target = Path(path).expanduser()
        if target.is_dir():
            target = target / f"{record.id}.prism"
        temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            temp.write_text(render_export(record), encoding="utf-8")
            os.replace(temp, target)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise StoreError(f"cannot write {target}: {exc.strerror or exc}") from None
        return target

    # ----------------------------------------------------------------- executions

    def create_execution(
        self,
        *,
        pattern_id: str | None = None,
        requirements: str | Mapping[str, Any] | None = None,
        input: Any = None,
        status: str = "pending",
        execution_id: str | None = None,
    ) -> ExecutionRecord:
        """Record a new execution (by default ``pending``, with a fresh ``exe_…`` id)."""
        _check_status(status)
        new_id = execution_id or f"exe_{uuid.uuid4().hex}"
        values = (pattern_id, _requirements_text(requirements), _dump(input, "input"))

        def body(conn: sqlite3.Connection) -> ExecutionRecord:
            now = self._now()
            started = now if status == "running" else None
            finished = now if status in TERMINAL_STATUSES else None
            try:
                conn.execute(
                    """INSERT INTO executions (id, status, pattern_id, requirements, input,
                           created_at, started_at, finished_at)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                    (new_id, status, *values, now, started, finished),
                )
            except sqlite3.IntegrityError:
                raise ValueError(f"execution {new_id!r} already exists") from None
            return self._execution_in(conn, new_id)

        return self._transaction(body)

    def _execution_in(self, conn: sqlite3.Connection, execution_id: str) -> ExecutionRecord:
        row = conn.execute("SELECT * FROM executions WHERE id = ?", (execution_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no execution {execution_id!r} in the store {self.path}")
        return _execution_from_row(row)

    def get_execution(self, execution_id: str) -> ExecutionRecord | None:
        """The execution with this id, or None."""
        def body(conn: sqlite3.Connection) -> ExecutionRecord | None:
            try:
                return self._execution_in(conn, execution_id)
            except NotFoundError:
                return None
        return self._transaction(body, write=False)

    def update_execution(self, execution_id: str, **fields: Any) -> ExecutionRecord:
        """Change some fields of an execution and return it.

        Accepted fields: pattern_id, status, requirements, input, result, confidence,
        error, fallback_taken, started_at, finished_at. Moving to ``running`` sets
        ``started_at`` and moving to a terminal status sets ``finished_at`` unless they
        are given or already set. Raises `NotFoundError` for an unknown id.
        """
        unknown = set(fields) - _EXECUTION_FIELDS
        if unknown:
            raise TypeError(f"unknown execution field(s): {', '.join(sorted(unknown))}")
        columns = self._execution_columns(fields)

        def body(conn: sqlite3.Connection) -> ExecutionRecord:
            current = self._execution_in(conn, execution_id)
            changes = dict(columns)
            status = changes.get("status")
            if status == "running" and "started_at" not in changes and not current.started_at:
                changes["started_at"] = self._now()
            if status in TERMINAL_STATUSES and "finished_at" not in changes \
                    and not current.finished_at:
                changes["finished_at"] = self._now()
            if changes:
                assignments = ", ".join(f"{name} = ?" for name in changes)
                conn.execute(
                    f"UPDATE executions SET {assignments} WHERE id = ?",
                    (*changes.values(), execution_id),
                )
            return self._execution_in(conn, execution_id)

        return self._transaction(body)

    @staticmethod
    def _execution_columns(fields: Mapping[str, Any]) -> dict[str, Any]:
        columns: dict[str, Any] = {}
        for name, value in fields.items():
            if name == "status":
                value = _check_status(value)
            elif name in ("input", "result"):
                value = _dump(value, name)
            elif name == "requirements":
                value = _requirements_text(value)
            elif name == "confidence":
                value = None if value is None else float(value)
            elif name == "fallback_taken":
                value = int(bool(value))
            elif name in ("started_at", "finished_at"):
                value = _normalize_ts(value)
            columns[name] = value
        return columns

    def list_executions(
        self,
        limit: int | None = 50,
        offset: int = 0,
        status: str | Iterable[str] | None = None,
    ) -> list[ExecutionRecord]:
        """Executions, newest first, optionally only those with the given status(es)."""
        page = _check_page(limit, offset)
        wanted: tuple[str, ...] = _statuses(status) or ()
        filtered = status is not None

        def body(conn: sqlite3.Connection) -> list[ExecutionRecord]:
            where = f"WHERE status IN ({', '.join('?' * len(wanted))})" if filtered else ""
            rows = conn.execute(
                f"SELECT * FROM executions {where} ORDER BY created_at DESC, id DESC "
                "LIMIT ? OFFSET ?",
                (*wanted, page, offset),
            ).fetchall()
            return [_execution_from_row(row) for row in rows]
        return self._transaction(body, write=False)

    def mark_interrupted(self) -> int:
        """Mark every pending or running execution ``interrupted`` and return how many.

        For restart recovery: call it once when the process that owns executions starts.
        """
        def body(conn: sqlite3.Connection) -> int:
            marks = ", ".join("?" for _ in ACTIVE_STATUSES)
            cursor = conn.execute(
                "UPDATE executions SET status = 'interrupted', "
                f"finished_at = COALESCE(finished_at, ?) WHERE status IN ({marks})",
                (self._now(), *ACTIVE_STATUSES),
            )
            return cursor.rowcount
        return self._transaction(body)

    # ----------------------------------------------------------------- events

    def append_event(self, execution_id: str, kind: str, data: Any = None) -> int:
        """Append an event to an execution's log and return its sequence number
        (1, 2, 3… per execution, without gaps even with concurrent writers)."""
        encoded = _dump(data, "event data")

        def body(conn: sqlite3.Connection) -> int:
            if not conn.execute(
                "SELECT 1 FROM executions WHERE id = ?", (execution_id,)
            ).fetchone():
                raise NotFoundError(f"no execution {execution_id!r} in the store {self.path}")
            seq = int(conn.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE execution_id = ?",
                (execution_id,),
            ).fetchone()[0])
            conn.execute(
                "INSERT INTO events (execution_id, seq, ts, kind, data) VALUES (?, ?, ?, ?, ?)",
                (execution_id, seq, self._now(), kind, encoded),
            )
            return seq

        return self._transaction(body)

    def events(
        self, execution_id: str, after_seq: int = 0, limit: int | None = None
    ) -> list[EventRecord]:
        """Events of an execution with ``seq > after_seq``, in order."""
        page = _check_page(limit, 0)

        def body(conn: sqlite3.Connection) -> list[EventRecord]:
            rows = conn.execute(
                "SELECT * FROM events WHERE execution_id = ? AND seq > ? ORDER BY seq "
                "LIMIT ?",
                (execution_id, after_seq, page),
            ).fetchall()
            return [
                EventRecord(row["execution_id"], row["seq"], row["ts"], row["kind"],
                            _load(row["data"]))
                for row in rows
            ]
        return self._transaction(body, write=False)
