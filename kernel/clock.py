"""Virtual time for deterministic runs: consumes a run's timers and task waits, produces
`now()` and timer expiry that move only when every task of the run is waiting.

A run uses real time unless it is given a ``VirtualClock`` (``evaluate(..., clock=...)``,
``prism run --virtual-time``, ``// clock: virtual`` in golden tests). On the virtual
clock ``now()`` starts at the wall time of the clock's creation and advances only by
jumping: when no task of the run can make progress — each one is sleeping, or awaiting
another task of the run — time jumps to the earliest pending timer and wakes its
sleepers. ``sleep(5000)`` therefore costs no wall time, and the order in which timers
fire is fixed by their due times, not by the machine's load.

Waiting on anything outside the run (an agent call answered by the host, an HTTP
request) keeps the waiter counted as runnable: time stands still while real work is
in flight, so a timeout can never fire merely because an agent was slow to answer.
The sandbox's wall-clock deadline and cancellation stay real: they are checked every
50 ms of real waiting. Busy-waiting (``while (now() < t) {}``) never advances virtual
time — only waiting does — so such a loop ends in the step or time limit.
"""

from __future__ import annotations

import heapq
import threading
import time
from concurrent.futures import Future
from typing import Any


class _Waiter:
    """A thread waiting on the clock (``fn`` None), or an event scheduled on it."""
    __slots__ = ("blocked", "fn")

    def __init__(self, fn: Any = None) -> None:
        self.blocked = True
        self.fn = fn


class VirtualClock:
    """Deterministic time shared by a run, its tasks and its ``eval_pattern`` children."""

    def __init__(self, start_ms: float | None = None) -> None:
        self.epoch_ms = time.time() * 1000.0 if start_ms is None else float(start_ms)
        self.t = 0.0                  # virtual seconds since the clock was created
        self._cond = threading.Condition()
        self._runnable = 1            # the thread that starts the run
        self._timers: list[tuple[float, int, _Waiter]] = []
        self._seq = 0

    # ---- reading
    def now_ms(self) -> float:
        return self.epoch_ms + self.t * 1000.0

    def due_in(self, seconds: float) -> float:
        """The virtual instant ``seconds`` from now (the ``due`` of a timer)."""
        return self.t + seconds

    def advance(self, seconds: float) -> None:
        """Move time on by ``seconds`` while nothing runs on the clock (e.g. a host step
        that waited for simulated work before the run started)."""
        with self._cond:
            self.t += max(0.0, seconds)
            self._advance()

    def call_at(self, due: float, fn: Any) -> None:
        """Run ``fn()`` when virtual time reaches ``due`` (with the clock's lock held; it
        may settle futures, which wakes their waiters). How host work that takes simulated
        time — a simulated agent's answer — happens at the right virtual instant."""
        with self._cond:
            self._seq += 1
            heapq.heappush(self._timers, (due, self._seq, _Waiter(fn)))
            self._advance()

    # ---- task accounting (spawn)
    def task_started(self) -> None:
        with self._cond:
            self._runnable += 1

    def task_finished(self) -> None:
        with self._cond:
            self._runnable -= 1
            self._advance()

    # ---- waiting
    def wait(self, budget: Any, due: float | None, futures: list[Future], internal: bool) -> None:
        """Return once virtual time reaches ``due`` or one of ``futures`` is done.

        ``internal``: every future belongs to a task of this run, so the waiter may
        count as idle; otherwise it stays runnable and time cannot move meanwhile.
        Raises what ``budget.check_time()`` raises (deadline, cancellation)."""
        if due is not None and due == float("inf"):
            due = None                  # never: only a future, the deadline or a cancel ends it
        if not internal:
            self._wait_external(budget, due, futures)
            return
        w = _Waiter()
        cond = self._cond

        def wake(_f: Future | None = None) -> None:
            with cond:
                if w.blocked:
                    w.blocked = False
                    self._runnable += 1
                    cond.notify_all()

        with cond:
            if (due is not None and self.t >= due) or any(f.done() for f in futures):
                return
            self._runnable -= 1
            if due is not None:
                self._seq += 1
                heapq.heappush(self._timers, (due, self._seq, w))
        for f in futures:
            f.add_done_callback(wake)
        with cond:
            self._advance()
        try:
            while True:
                with cond:
                    if not w.blocked:
                        return
                    cond.wait(0.05)
                    if not w.blocked:
                        return
                budget.check_time()
        except BaseException:
            wake()
            raise

    def _wait_external(self, budget: Any, due: float | None, futures: list[Future]) -> None:
        from concurrent.futures import FIRST_COMPLETED
        from concurrent.futures import wait as futures_wait
        while True:
            budget.check_time()
            if (due is not None and self.t >= due) or any(f.done() for f in futures):
                return
            if futures:
                futures_wait(futures, timeout=0.05, return_when=FIRST_COMPLETED)
            else:                      # only a timer, and this thread keeps time still
                with self._cond:
                    self._cond.wait(0.05)

    def _advance(self) -> None:
        """With the lock held: when nobody can run, jump to the earliest live timer and
        fire everything due by then (waiters become runnable, events run)."""
        timers = self._timers
        woke = False
        while self._runnable <= 0 and timers:
            due, _, w = heapq.heappop(timers)
            if not w.blocked:
                continue                # woken by its future already
            if due > self.t:
                self.t = due
            woke = self._fire(w) or woke
            while timers and timers[0][0] <= self.t:
                _, _, w2 = heapq.heappop(timers)
                if w2.blocked:
                    woke = self._fire(w2) or woke
        if woke:
            self._cond.notify_all()

    def _fire(self, w: _Waiter) -> bool:
        w.blocked = False
        if w.fn is None:
            self._runnable += 1
            return True
        w.fn()                          # an event; the waiters it wakes notify for themselves
        return False
