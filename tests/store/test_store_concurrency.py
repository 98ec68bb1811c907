"""Several threads and processes writing one store file at the same time lose nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from bootstrap.store import PatternRecord, PatternStore

REPO = Path(__file__).resolve().parents[2]
PER_WRITER = 50
THREADS = 8
PROCESSES = 2

CHILD = textwrap.dedent(
    """
    import sys
    from bootstrap.store import PatternRecord, PatternStore

    path, name, execution, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    with PatternStore(path) as store:
        print("ready", flush=True)
        sys.stdin.readline()  # wait for "go", so processes and threads overlap
        for i in range(count):
            store.put(PatternRecord(f"pat_{name}_{i}", "1", "{}", "builtin", "1"))
            store.append_event(execution, "write", {"writer": name, "i": i})
            store.touch(f"pat_{name}_{i}")
    """
)


def record(name: str, i: int) -> PatternRecord:
    return PatternRecord(f"pat_{name}_{i}", "1", "{}", "builtin", "1")


def test_threads_and_processes_write_concurrently(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    shared = PatternStore(path)
    execution = shared.create_execution(status="running").id
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")])
    )}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), f"proc{n}", execution, str(PER_WRITER)],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        for n in range(PROCESSES)
    ]
    for child in children:
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n", child.stderr
    start = threading.Barrier(THREADS + 1)
    failures: list[BaseException] = []

    def writer(n: int) -> None:
        # Half the threads share one store object, half open their own.
        own = PatternStore(path) if n % 2 else None
        store = own or shared
        try:
            start.wait()
            for i in range(PER_WRITER):
                store.put(record(f"thread{n}", i))
                store.append_event(execution, "write", {"writer": f"thread{n}", "i": i})
                store.touch(f"pat_thread{n}_{i}")
        except BaseException as exc:  # reported below; a thread cannot fail the test
            failures.append(exc)
        finally:
            if own is not None:
                own.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for child in children:
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        child.stdin.flush()
    start.wait()
    for thread in threads:
        thread.join()
    for child in children:
        _, err = child.communicate(timeout=60)
        assert child.returncode == 0, err.decode()
    assert failures == []

    writers = [f"thread{n}" for n in range(THREADS)] + [f"proc{n}" for n in range(PROCESSES)]
    expected = {f"pat_{w}_{i}" for w in writers for i in range(PER_WRITER)}
    with PatternStore(path) as check:
        patterns = check.list(limit=None)
        assert {p.id for p in patterns} == expected
        assert all(p.use_count == 1 for p in patterns)
        events = check.events(execution)
        assert [e.seq for e in events] == list(range(1, len(expected) + 1))
        seen = {(e.data["writer"], e.data["i"]) for e in events}
        assert seen == {(w, i) for w in writers for i in range(PER_WRITER)}
        journal = check._conn().execute("PRAGMA journal_mode").fetchone()[0]
        assert journal == "wal"
    shared.close()


def test_one_store_object_serves_many_threads(tmp_path: Path) -> None:
    with PatternStore(tmp_path / "s.db") as store:
        execution = store.create_execution().id
        threads = [
            threading.Thread(
                target=lambda: [store.append_event(execution, "tick") for _ in range(20)]
            )
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [e.seq for e in store.events(execution)] == list(range(1, 81))
