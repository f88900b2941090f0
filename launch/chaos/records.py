"""The evidence a chaos run's invariants are checked against, as plain records.

Gathered by `evidence` from four independent sources: the store (jobs, runs, events, the
spend ledger), Temporal (each job workflow's status), the budget controllers (what each
counted as spent), the factories' logs (stale reports they were told were fenced) and the
sim agents' trace (what actually ran, where and when, and what it cost).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = [
    "Evidence",
    "FencedReport",
    "JobRecord",
    "RunRecord",
    "SimInterval",
    "SpendEntry",
    "intervals_from_trace",
]


@dataclass(frozen=True)
class RunRecord:
    """One attempt of a job as the store recorded it."""

    epoch: int
    factory_id: str
    outcome: str | None
    cost_usd: float


@dataclass(frozen=True)
class FencedReport:
    """A `fenced` event: the stale lease epoch, the factory that sent it, when (epoch s)."""

    epoch: int
    factory_id: str
    at: float


@dataclass(frozen=True)
class JobRecord:
    """One job: its store projection (None stage: not in the store), its workflow's status
    in Temporal (None: no such workflow), its lock, runs and fenced reports."""

    id: str
    product_id: str
    stage: str | None
    workflow_status: str | None
    cost_usd: float = 0.0
    lock: str | None = None
    is_parent: bool = False
    runs: tuple[RunRecord, ...] = ()
    fenced: tuple[FencedReport, ...] = ()
    stage_reason: str | None = None


@dataclass(frozen=True)
class SpendEntry:
    """One entry of a product's spend ledger (its id is the run id, `<job>.<epoch>`)."""

    run_id: str
    job_id: str
    product_id: str
    usd: float
    estimated: bool


@dataclass(frozen=True)
class SimInterval:
    """One sim agent process from the trace: from its start record to its stop record, or
    to its last tick when it was killed before it could write one (`how` is then None)."""

    job_id: str
    epoch: int
    factory_id: str
    pid: int
    start: float
    end: float
    how: str | None
    cost_usd: float | None


@dataclass
class Evidence:
    """Everything a chaos run's invariants look at.

    `accepted` are the job ids the API acknowledged (201); `jobs` every job of the run's
    products (children and duplicates of retried submissions included), by id. From the
    factories' logs, by (job, epoch): `stale_answered` the reports answered "fenced" (409),
    `abandoned` those given up while in flight. `kills` are the (factory, wall time) of
    every SIGKILL of a factory process.
    """

    accepted: list[str]
    jobs: dict[str, JobRecord]
    spend: list[SpendEntry]
    controller_spend: dict[str, float]
    intervals: list[SimInterval]
    slots: dict[str, int]
    stale_answered: dict[tuple[str, int], int]
    abandoned: dict[tuple[str, int], int]
    kills: list[tuple[str, float]] = field(default_factory=list)
    locks: dict[str, str] = field(default_factory=dict)


def intervals_from_trace(lines: Iterable[str]) -> list[SimInterval]:
    """The sim intervals of a trace file's lines (blank or torn lines are skipped)."""
    open_: dict[int, dict[str, object]] = {}
    done: list[SimInterval] = []

    def close(rec: dict[str, object], end: float, how: str | None, cost: float | None) -> None:
        done.append(
            SimInterval(
                job_id=str(rec["job"]),
                epoch=int(str(rec["epoch"])),
                factory_id=str(rec["factory"]),
                pid=int(str(rec["pid"])),
                start=float(str(rec["at"])),
                end=end,
                how=how,
                cost_usd=cost,
            )
        )

    last_seen: dict[int, float] = {}
    for line in lines:
        try:
            rec = json.loads(line)
            pid, at, event = int(rec["pid"]), float(rec["at"]), str(rec["event"])
        except (ValueError, KeyError, TypeError):
            continue
        if event == "start":
            if pid in open_:  # a reused pid: the earlier process died without a stop record
                close(open_.pop(pid), last_seen[pid], None, None)
            open_[pid] = rec
            last_seen[pid] = at
        elif pid in open_:
            last_seen[pid] = at
            if event == "stop":
                cost = rec.get("costUsd")
                close(
                    open_.pop(pid), at, str(rec.get("how")), None if cost is None else float(cost)
                )
    for pid, rec in open_.items():
        close(rec, last_seen[pid], None, None)
    return done
