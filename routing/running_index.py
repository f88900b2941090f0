"""RunningIndex: the jobs holding slots, kept indexed between preemption decisions.

Two keys:

- factory, then priority rank: every job, so that one factory's victims are found without
  looking at the others (its rows in a plan, or its cheapest victims);
- priority rank, then the job's own minimum runtime (None: the policy's): the preemptible
  jobs sorted by start, so that the jobs of one priority that have run their minimum come
  out shortest running first, the order in which eviction is cheapest.

Start times are whole microseconds (`routing.instants`), so "has run its minimum" is a
bisection with the same answer as `seconds_since(...) >= minimum`. `add` and `remove` cost
O(log n).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from routing.instants import micros, min_age_us
from routing.preemption import PRIORITY_RANK, PreemptionPolicy, RunningJob
from routing.sorted_keys import SortedKeys

__all__ = ["Held", "RunningIndex"]

Start = tuple[int, str]  # (started_at in microseconds since the epoch, job id)


@dataclass(frozen=True, slots=True)
class Held:
    """A running job with its start in microseconds."""

    job: RunningJob
    started_us: int


class RunningIndex:
    """The running jobs indexed for preemption; see the module docstring."""

    __slots__ = ("_by_start", "_jobs", "_on")

    def __init__(self, jobs: Iterable[RunningJob] = ()) -> None:
        """Index `jobs`.

        Raises:
            ValueError: two jobs share an id.
        """
        self._jobs: dict[str, Held] = {}
        self._on: dict[str, dict[int, dict[str, Held]]] = {}
        self._by_start: dict[int, dict[float | None, SortedKeys[Start]]] = {}
        for job in jobs:
            self.add(job)

    def __len__(self) -> int:
        return len(self._jobs)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs

    def __iter__(self) -> Iterator[RunningJob]:
        return (held.job for held in self._jobs.values())

    def add(self, job: RunningJob) -> None:
        """Index a job that took a slot.

        Raises:
            ValueError: a job with that id is already indexed.
        """
        if job.job_id in self._jobs:
            raise ValueError(f"duplicate running job id {job.job_id!r}")
        held = Held(job, micros(job.started_at))
        rank = PRIORITY_RANK[job.priority]
        self._jobs[job.job_id] = held
        self._on.setdefault(job.factory_id, {}).setdefault(rank, {})[job.job_id] = held
        if job.preemptible:
            starts = self._by_start.setdefault(rank, {})
            starts.setdefault(job.min_runtime_s, SortedKeys()).add((held.started_us, job.job_id))

    def remove(self, job_id: str) -> None:
        """Forget a job that released its slot.

        Raises:
            KeyError: no job has that id.
        """
        held = self._jobs.pop(job_id)
        job = held.job
        rank = PRIORITY_RANK[job.priority]
        on = self._on[job.factory_id]
        del on[rank][job_id]
        if not on[rank]:
            del on[rank]
        if not on:
            del self._on[job.factory_id]
        if job.preemptible:
            starts = self._by_start[rank]
            starts[job.min_runtime_s].remove((held.started_us, job_id))
            if not starts[job.min_runtime_s]:
                del starts[job.min_runtime_s]

    def on(self, factory_id: str) -> list[RunningJob]:
        """Every job running on a factory."""
        ranks = self._on.get(factory_id, {})
        return [held.job for jobs in ranks.values() for held in jobs.values()]

    def on_by_rank(self, factory_id: str) -> dict[int, dict[str, Held]]:
        """A factory's jobs by priority rank (read only)."""
        return self._on.get(factory_id, {})

    def due_victims(self, rank: int, now_us: int, policy: PreemptionPolicy) -> Iterator[Held]:
        """The preemptible jobs of `rank` that have run their minimum, shortest running first.

        Jobs that started at the same microsecond come out by id, descending.
        """
        streams = []
        for own, starts in self._by_start.get(rank, {}).items():
            minimum = own if own is not None else policy.min_runtime_s
            latest = now_us - min_age_us(minimum)
            streams.append(starts.descending_below((latest + 1, "")))
        for _, job_id in heapq.merge(*streams, reverse=True):
            yield self._jobs[job_id]
