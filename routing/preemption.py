"""Preemption choice: which running jobs to evict so that an urgent job can start.

Only the choice lives here; signalling the victims, checkpointing them and fencing their
attempts is the caller's business (docs/decisions/0007-preemption-choice.md).

A job may preempt when its priority is in `PreemptionPolicy.preempting`, no factory that
passes its hard filters has a free slot, and some such factory can be freed by evicting
eligible victims only. A victim is eligible when it runs on that factory, its priority is
strictly lower than the job's and not in `never_preempt`, it is marked preemptible and it
has run at least its minimum runtime: its own `RunningJob.min_runtime_s` when set (a product
may protect its jobs longer, or shorter), else the policy's `min_runtime_s`. By default only
critical jobs preempt.

A factory with `reserved` of `slots` taken needs `reserved - slots + 1` victims (every
reservation counts, including those without a known running job). On each factory the
cheapest victims are the lowest priority, then the shortest running, then by id; that
greedy pick minimises the plan order below on that factory. Factories are then ordered by
what the eviction disturbs, least first:

1. fewest victims;
2. lowest priority: the highest victim priority, then the sum of victim priorities;
3. least work lost: the sum of the victims' runtimes (`now - started_at`);
4. the factory's routing score, higher first (capacity ignored; the load term is 0 for
   every full factory, so this compares fit, health, affinity and cost);
5. factory id.

Every input is ordered before use, so the same inputs in any order give the same plan.

This module holds the types and the evaluation of one factory (`consider`) and assembles a
plan from evaluated factories (`assemble_plan`). Which factories get evaluated is the
caller's: `routing.reference.select_with_preemption` evaluates every one,
`routing.fast_preempt` (behind `FleetIndex.plan_preemption`) only those that can make the
top rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from routing.filters import _seconds, check, seconds_since
from routing.model import (
    PRIORITY_VALUES,
    Exclusion,
    FactoryView,
    FleetSummary,
    JobRequest,
    RoutingContext,
)
from routing.score import breakdown, rank_score, total
from routing.weights import FleetWeights

__all__ = [
    "PRIORITY_RANK",
    "PlanKey",
    "PreemptionCandidate",
    "PreemptionPlan",
    "PreemptionPolicy",
    "RunningJob",
    "VictimCheck",
    "assemble_plan",
    "consider",
]

# Priorities from lowest to highest; a rank is a priority's index here.
_ORDER: tuple[str, ...] = tuple(sorted(PRIORITY_VALUES, key=PRIORITY_VALUES.__getitem__))
PRIORITY_RANK: dict[str, int] = {p: i for i, p in enumerate(_ORDER)}


def _check_priorities(field: str, values: frozenset[str]) -> None:
    unknown = sorted(str(v) for v in values if v not in PRIORITY_VALUES)
    if unknown:
        names = ", ".join(repr(u) for u in unknown)
        raise ValueError(f"{field}: unknown priorities {names} (known: {', '.join(_ORDER)})")


def _check_seconds(field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{field} must be a number, got {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{field} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class RunningJob:
    """A job holding a slot on a factory, as the caller snapshotted it.

    `min_runtime_s`, when set, replaces `PreemptionPolicy.min_runtime_s` for this job.
    """

    job_id: str
    factory_id: str
    priority: str
    started_at: datetime
    preemptible: bool = True
    min_runtime_s: float | None = None

    def __post_init__(self) -> None:
        _check_priorities(f"running job {self.job_id}", frozenset({self.priority}))
        if self.min_runtime_s is not None:
            _check_seconds(f"running job {self.job_id}: min_runtime_s", self.min_runtime_s)

    def min_runtime(self, policy: PreemptionPolicy) -> float:
        """How long this job must have run before it may be evicted under `policy`."""
        return self.min_runtime_s if self.min_runtime_s is not None else policy.min_runtime_s


@dataclass(frozen=True, slots=True)
class PreemptionPolicy:
    """Who may preempt and who may be evicted.

    `preempting`: the priorities whose jobs may evict others, critical only by default (add
    high by setting). `never_preempt`: the priorities whose jobs are never evicted.
    `min_runtime_s`: a job that has run less than this is not evicted (it has barely
    started, and evicting it would thrash), unless the job sets its own minimum.
    """

    preempting: frozenset[str] = frozenset({"critical"})
    never_preempt: frozenset[str] = frozenset()
    min_runtime_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("preempting", "never_preempt"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise ValueError(f"{name} must be a set of priorities, got the string {value!r}")
            value = frozenset(value)
            object.__setattr__(self, name, value)
            _check_priorities(f"PreemptionPolicy.{name}", value)
        _check_seconds("min_runtime_s", self.min_runtime_s)


@dataclass(frozen=True, slots=True)
class VictimCheck:
    """One running job considered on a factory: could it be evicted, and was it picked."""

    job_id: str
    priority: str
    runtime_s: float
    eligible: bool
    ineligible_because: str | None
    evicted: bool


@dataclass(frozen=True, slots=True)
class PreemptionCandidate:
    """How one factory fared as a place to preempt.

    `needed` is how many victims it takes to free a slot (0 when a hard filter excluded it).
    `victims` are the ones this factory would evict when `feasible`, cheapest first;
    `considered` lists every running job on it. `rejected_because` says why it was not
    chosen (None for the chosen one); `exclusion` is set when a hard filter excluded it.
    """

    factory_id: str
    chosen: bool
    feasible: bool
    needed: int
    victims: tuple[str, ...]
    work_lost_s: float
    score: float
    considered: tuple[VictimCheck, ...]
    rejected_because: str | None
    exclusion: Exclusion | None = None


@dataclass(frozen=True, slots=True)
class PreemptionPlan:
    """Evict `evict` (job ids) on `factory_id` and the job fits there.

    From `select_with_preemption`, `breakdown` holds every factory: the feasible ones best
    first (the chosen one first), then the infeasible ones by id; `summary` is None. From
    `FleetIndex.plan_preemption`, `breakdown` holds only the best feasible ones, and
    `summary` counts the factories that could be freed (`eligible`) and those a hard filter
    excluded.
    """

    factory_id: str
    evict: tuple[str, ...]
    reason: str
    breakdown: tuple[PreemptionCandidate, ...]
    summary: FleetSummary | None = None


# (victims, highest victim rank, sum of victim ranks, work lost, -score, factory id)
PlanKey = tuple[int, int, int, float, float, str]


def assemble_plan(
    job: JobRequest,
    feasible: Sequence[tuple[PlanKey, PreemptionCandidate]],
    infeasible: Sequence[PreemptionCandidate],
    no_slot: str | None,
) -> PreemptionPlan | None:
    """The plan evicting on the feasible factory with the least key, or None if none is.

    `feasible` holds the factories that can be freed with their keys, in any order;
    `infeasible` the rows shown after them (already in their order). `no_slot` says why the
    job found no free slot, for the plan's reason.
    """
    if not feasible:
        return None
    ordered = sorted(feasible, key=lambda pair: pair[0])
    best_key, best = ordered[0]
    ranked = [replace(best, chosen=True)]
    for key, candidate in ordered[1:]:
        because = _lost_to(key, best_key, candidate, best)
        ranked.append(replace(candidate, rejected_because=because))
    return PreemptionPlan(
        factory_id=best.factory_id,
        evict=best.victims,
        reason=_plan_reason(job, best, best_key, no_slot),
        breakdown=tuple(ranked) + tuple(infeasible),
    )


def consider(
    job: JobRequest,
    factory: FactoryView,
    running: Iterable[RunningJob],
    ctx: RoutingContext,
    weights: FleetWeights,
    policy: PreemptionPolicy,
) -> tuple[PlanKey | None, PreemptionCandidate]:
    """One factory: its sort key when it can be freed (else None), and its breakdown row."""
    checks = [_victim_check(job, r, ctx, policy) for r in running]
    eligible = sorted(
        (c for c in checks if c.eligible),
        key=lambda c: (PRIORITY_RANK[c.priority], c.runtime_s, c.job_id),
    )
    ineligible = sorted((c for c in checks if not c.eligible), key=lambda c: c.job_id)
    considered = tuple(eligible + ineligible)

    out = check(job, factory, ctx, capacity=False)
    if out is not None:
        return None, _row(factory, 0, considered, f"excluded: {out.because}", out.kind)
    if factory.slots <= 0:
        return None, _row(factory, 0, considered, "has no slots", Exclusion.FULL)

    # >= 1: a factory passing every filter with a free slot would have placed the job.
    needed = factory.reserved - factory.slots + 1
    if len(eligible) < needed:
        because = _too_few(needed, len(eligible), len(checks))
        return None, _row(factory, needed, considered, because, None)

    picked = eligible[:needed]
    considered = tuple([replace(c, evicted=True) for c in picked] + eligible[needed:] + ineligible)
    work = math.fsum(c.runtime_s for c in picked)
    score = total(breakdown(job, factory, ctx, weights))
    ranks = [PRIORITY_RANK[c.priority] for c in picked]
    key: PlanKey = (needed, max(ranks), sum(ranks), work, -rank_score(score), factory.id)
    victims = tuple(c.job_id for c in picked)
    row = PreemptionCandidate(
        factory_id=factory.id,
        chosen=False,
        feasible=True,
        needed=needed,
        victims=victims,
        work_lost_s=work,
        score=score,
        considered=considered,
        rejected_because=None,
    )
    return key, row


def _victim_check(
    job: JobRequest, r: RunningJob, ctx: RoutingContext, policy: PreemptionPolicy
) -> VictimCheck:
    runtime = seconds_since(ctx.now, r.started_at)
    minimum = r.min_runtime(policy)
    because: str | None = None
    if PRIORITY_RANK[r.priority] >= PRIORITY_RANK[job.priority]:
        because = f"priority {r.priority} is not lower than {job.priority}"
    elif r.priority in policy.never_preempt:
        because = f"priority {r.priority} is never preempted"
    elif not r.preemptible:
        because = "not preemptible"
    elif runtime < minimum:
        because = f"running {_seconds(runtime)}s, under the minimum {_seconds(minimum)}s"
    return VictimCheck(r.job_id, r.priority, runtime, because is None, because, evicted=False)


def _row(
    factory: FactoryView,
    needed: int,
    considered: tuple[VictimCheck, ...],
    because: str,
    exclusion: Exclusion | None,
) -> PreemptionCandidate:
    """An infeasible factory's row."""
    return PreemptionCandidate(
        factory_id=factory.id,
        chosen=False,
        feasible=False,
        needed=needed,
        victims=(),
        work_lost_s=0.0,
        score=0.0,
        considered=considered,
        rejected_because=because,
        exclusion=exclusion,
    )


def _too_few(needed: int, eligible: int, running: int) -> str:
    wanted = _jobs(needed)
    if running == 0:
        return f"needs {wanted} evicted, but no known job runs on it"
    return f"needs {wanted} evicted, only {eligible} of its {running} running may be"


def _lost_to(
    key: PlanKey, best: PlanKey, c: PreemptionCandidate, chosen: PreemptionCandidate
) -> str:
    """The first plan criterion on which `c` lost to the chosen factory."""
    name = chosen.factory_id
    if key[0] != best[0]:
        return f"needs {_jobs(key[0])} evicted, {name} needs {best[0]}"
    if key[1] != best[1]:
        return f"would evict priority {_ORDER[key[1]]}, {name} at most {_ORDER[best[1]]}"
    if key[2] != best[2]:
        return f"would evict higher priorities in total than {name}"
    if key[3] != best[3]:
        return f"would lose {_seconds(key[3])}s of work, {name} {_seconds(best[3])}s"
    if key[4] != best[4]:
        return f"scores {c.score:.3f}, {name} {chosen.score:.3f}"
    return f"ties with {name}, which sorts first by id"


def _plan_reason(
    job: JobRequest, best: PreemptionCandidate, key: PlanKey, no_slot: str | None
) -> str:
    victims = ", ".join(best.victims)
    return (
        f"{job.priority} job {job.job_id} preempts {_jobs(len(best.victims))} on "
        f"{best.factory_id} ({victims}; priority at most {_ORDER[key[1]]}, "
        f"{_seconds(best.work_lost_s)}s of work lost): {no_slot or 'no free slot'}"
    )


def _jobs(n: int) -> str:
    return f"{n} job" if n == 1 else f"{n} jobs"
