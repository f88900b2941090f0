"""Timing for the micro-benchmarks: calibrated runs, interleaved, with the collector paused.

Each measured callable makes one pass over its inputs. One timed pass sets how many passes
make a run last at least `min_run_s`; then every callable runs once per round, `repeats`
rounds, so that a change in the machine's load hits all of them alike. The garbage collector
is paused during each run (as `timeit` does).
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Rates", "Timing", "measure", "paired_ratio", "timed"]


@dataclass(frozen=True)
class Rates:
    """One measured callable: `per_run` decisions/s over `repeats` runs of `passes` passes."""

    inputs: int
    passes: int
    per_run: tuple[float, ...]

    @property
    def decisions_per_run(self) -> int:
        return self.inputs * self.passes

    @property
    def median(self) -> float:
        return statistics.median(self.per_run) if self.per_run else 0.0


@dataclass(frozen=True)
class Timing:
    """How long and how often to measure: see the module docstring."""

    repeats: int
    warmup: int
    min_run_s: float


def timed(run: Callable[[], object], passes: int) -> float:
    """Seconds for `passes` calls of `run`, the garbage collector paused (as timeit does)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(passes):
            run()
        return time.perf_counter() - start
    finally:
        if was_enabled:
            gc.enable()


def paired_ratio(a: Rates, b: Rates) -> float:
    """The median of the per-run ratios of `a`'s rate to `b`'s."""
    pairs = [x / y for x, y in zip(a.per_run, b.per_run, strict=False) if y > 0]
    return statistics.median(pairs) if pairs else 0.0


def measure(passes: Sequence[tuple[Callable[[], object], int]], timing: Timing) -> list[Rates]:
    """Rates of each `(one pass, decisions in it)`, calibrated, then timed interleaved."""
    counts = []
    for run, _ in passes:
        one = timed(run, 1)
        counts.append(max(1, min(1_000_000, math.ceil(timing.min_run_s / one))) if one > 0 else 1)
    seconds: list[list[float]] = [[] for _ in passes]
    for _ in range(timing.repeats):
        for i, (run, _) in enumerate(passes):
            seconds[i].append(timed(run, counts[i]))
    return [
        Rates(inputs, n, tuple(inputs * n / s for s in secs if s > 0))
        for (_, inputs), n, secs in zip(passes, counts, seconds, strict=True)
    ]
