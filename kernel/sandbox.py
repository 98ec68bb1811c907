"""Sandbox policy: the one place for limits and capabilities.

Consumes ``Limits``; produces ``Budget`` objects that the evaluator ticks at
every call and loop back-edge, and the size checks that run *before* an
allocation.  Policy table (every operation class a Prism program can perform):

| operation class                                   | policy   | bounded by                          |
|---------------------------------------------------|----------|-------------------------------------|
| arithmetic, comparison, logic, confidence ops     | allowed  | (constant time)                     |
| loops (every form), recursion, callbacks          | limited  | max_steps, timeout                  |
| function call depth (incl. builtin callbacks)     | limited  | max_depth                           |
| string building: +, repeat, padStart/End, join,   | limited  | max_string (checked before          |
|   interpolation, JSON.stringify, replace, concat  |          |   allocating)                       |
| array/object growth: literals, spread, push,      | limited  | max_items (checked before           |
|   concat, map/filter/flat/flatMap, Object.assign  |          |   allocating)                       |
| member access and indexing                        | allowed  | Prism objects, arrays, strings and  |
|                                                   |          |   per-type method tables only       |
| Python attributes, dunder names, host objects     | denied   | (no route exists)                   |
| mutation of the prelude (builtins, stdlib,        | denied   | frozen objects                      |
|   primitives)                                     |          |                                     |
| promises, async functions, agent calls            | limited  | max_tasks concurrent, timeout       |
| timers: delay/sleep                               | limited  | timeout (a sleep never outlives it) |
| waiting: await, wait_any, Promise.race            | limited  | timeout and cancellation (checked   |
|                                                   |          |   at least every 50 ms; also on the |
|                                                   |          |   virtual clock, kernel/clock.py)   |
| eval_pattern                                      | limited  | child budget carved from the        |
|                                                   |          |   caller's remaining budget         |
| eval_pattern with isolation "process",            | limited  | the same budget, plus RLIMIT_AS     |
|   evaluate_isolated (kernel/isolate.py)           |          |   (memory_mb), RLIMIT_CPU, at most  |
|                                                   |          |   isolate.MAX_CHILDREN at once      |
| source nesting                                    | limited  | parser.MAX_NESTING brackets,        |
|                                                   |          |   parser.MAX_WALK (bare lambdas)    |
| file system, network, processes, environment      | denied   | only via host-granted capabilities  |
|                                                   |          |   (agents, modules under the        |
|                                                   |          |   project's stdlib/ and primitives/ |
|                                                   |          |   and the importing file's folder)  |
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from .errors import PrismCancelled, PrismLimitError

CHUNK = 1000            # steps handed out between deadline checks


@dataclass(frozen=True)
class Limits:
    """Resource limits of one evaluation.  ``None`` means unlimited for that axis."""

    max_steps: int | None = 50_000_000
    timeout: float | None = 60.0
    max_depth: int = 1000
    max_items: int = 5_000_000
    max_string: int = 50_000_000
    max_tasks: int = 512

    def lowered(self, **kw: Any) -> "Limits":
        """A copy in which each given limit is the minimum of the old and new value."""
        changes = {}
        for key, val in kw.items():
            if val is None:
                continue
            cur = getattr(self, key)
            changes[key] = val if cur is None else min(cur, val)
        return replace(self, **changes)


DEFAULT_LIMITS = Limits()


class Budget:
    """Steps, deadline, cancellation and concurrency of one evaluation.

    The evaluator's hot path is ``b.n -= 1; if b.n < 0: b.refill()``; refill hands
    out another chunk, checks the deadline and cancellation, and charges the parent
    budget (the caller of ``eval_pattern``) so a child's work counts against it.
    """

    __slots__ = ("n", "remaining", "deadline", "limits", "parent", "cancelled", "tasks", "lock",
                 "max_depth", "max_items", "max_string", "owner", "consumed")

    def __init__(self, limits: Limits, parent: "Budget | None" = None):
        self.limits = limits
        self.parent = parent
        now = time.monotonic()
        deadline = now + limits.timeout if limits.timeout is not None else None
        if parent is not None and parent.deadline is not None:
            deadline = parent.deadline if deadline is None else min(deadline, parent.deadline)
        self.deadline = deadline
        steps = limits.max_steps
        if parent is not None and parent.remaining is not None:
            avail = parent.remaining + max(parent.n, 0)
            steps = avail if steps is None else min(steps, avail)
        self.remaining = steps
        self.n = 0
        self.cancelled = False
        self.tasks = 0
        self.lock = threading.Lock()
        self.max_depth = limits.max_depth
        self.max_items = limits.max_items
        self.max_string = limits.max_string
        self.owner: Any = None
        self.consumed = 0

    def reset(self) -> None:
        """Start a fresh allowance (a REPL runs each entry under the full limits)."""
        limits = self.limits
        self.deadline = time.monotonic() + limits.timeout if limits.timeout is not None else None
        self.remaining = limits.max_steps
        self.n = 0
        self.cancelled = False

    def refill(self) -> None:
        """Called when the current chunk is used up: charge, check, hand out more."""
        chunk = CHUNK
        if self.remaining is not None:
            if self.remaining <= 0:
                self.n = 0
                raise PrismLimitError(
                    f"step limit exceeded ({self.limits.max_steps:,} steps); "
                    "the program ran too long (an endless loop or recursion?)", limit="steps").owned(self)
            chunk = min(chunk, self.remaining)
            self.remaining -= chunk
        self.consumed += chunk
        if self.parent is not None:
            self.parent.charge(chunk)
        self.check_time()
        self.n = chunk - 1

    def steps_left(self) -> float:
        """Steps this budget can still hand out (its chunk in hand included)."""
        if self.remaining is None:
            return float("inf")
        return self.remaining + max(self.n, 0)

    def charge(self, steps: int) -> None:
        """Count ``steps`` done by a child against this budget (ancestors first: when
        several are exhausted at once, the error belongs to the outermost, which no
        program inside it may catch)."""
        self.consumed += steps
        if self.parent is not None:
            self.parent.charge(steps)
        if self.remaining is not None:
            self.remaining -= steps
            if self.remaining < 0:
                raise PrismLimitError(
                    f"step limit exceeded ({self.limits.max_steps:,} steps)", limit="steps").owned(self)

    def check_time(self) -> None:
        token = depth_counter.cancel
        if token is not None and token.is_set():
            raise PrismCancelled("the task was cancelled", limit="cancelled")
        b: Budget | None = self
        while b is not None:
            if b.cancelled:
                raise PrismCancelled("the run was cancelled", limit="cancelled").owned(b)
            b = b.parent
        if self.deadline is not None and time.monotonic() > self.deadline:
            owner = self._deadline_owner()
            raise PrismLimitError(f"time limit exceeded ({owner.limits.timeout:g} s)",
                                  limit="time").owned(owner)

    def _deadline_owner(self) -> "Budget":
        b = self
        while b.parent is not None and b.parent.deadline is not None and b.parent.deadline <= b.deadline:
            if b.limits.timeout is not None and b.deadline < b.parent.deadline:
                break
            b = b.parent
        return b

    def time_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def cancel(self) -> None:
        self.cancelled = True

    # ---- size checks, before allocating
    def check_string(self, length: int) -> None:
        if length > self.max_string:
            raise PrismLimitError(f"string too long ({length:,} characters; the limit is "
                                  f"{self.max_string:,})", limit="size").owned(self)

    def check_items(self, count: int) -> None:
        if count > self.max_items:
            raise PrismLimitError(f"collection too large ({count:,} elements; the limit is "
                                  f"{self.max_items:,})", limit="size").owned(self)

    def task_started(self) -> None:
        with self.lock:
            if self.tasks >= self.limits.max_tasks:
                raise PrismLimitError(f"too many concurrent tasks (the limit is {self.limits.max_tasks})",
                                      limit="tasks").owned(self)
            self.tasks += 1

    def task_finished(self) -> None:
        with self.lock:
            self.tasks -= 1


def _owned(self: PrismLimitError, budget: Budget) -> PrismLimitError:
    self.budget = budget
    return self


PrismLimitError.owned = _owned          # type: ignore[attr-defined]
PrismLimitError.budget = None           # type: ignore[attr-defined]


class DepthCounter(threading.local):
    """Per-thread state: Prism call depth, and the cancel token of a spawned task."""
    depth = 0
    cancel: "threading.Event | None" = None
    budget: "Budget | None" = None          # the budget of the Prism code running on this thread


depth_counter = DepthCounter()
