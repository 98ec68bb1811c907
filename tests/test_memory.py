"""Repeated evaluations in one process (the REPL, `prism serve`) do not accumulate memory:
the garbage of a run — including reference cycles between closures and their frames —
is reclaimed by the normal cyclic GC, without anybody calling gc.collect()."""

from __future__ import annotations

import gc

import kernel

# every call creates a closure that references its own frame: a reference cycle
CYCLES = "function f(n) { let g = () => n; return n < 1 ? 0 : f(n - 1) + g() }\nf(200)"


def test_garbage_cycles_of_many_runs_are_reclaimed() -> None:
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)                      # CPython's defaults (`prism serve` raises them)
    try:
        for _ in range(20):                            # warm-up: caches, grammar, modules
            kernel.evaluate(CYCLES)
        gc.collect()
        before = len(gc.get_objects())
        for _ in range(300):
            assert kernel.evaluate(CYCLES).value == 20100
        grown = len(gc.get_objects()) - before
    finally:
        gc.set_threshold(*saved)
    # one run leaves ~1,000 objects in cycles; 300 unreclaimed runs would leave ~300,000
    assert grown < 60_000, f"{grown} objects accumulated over 300 runs"
