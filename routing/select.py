"""Selection: the best factory for a job, and the best waiting job for a freed slot.

Both apply the hard filters, score the survivors with the same pair score, and break ties
deterministically, so the same inputs in any order give the same answer.

Why nothing was placed (`Decision.reason`) names the furthest point any factory reached in
the filter funnel, since that is the nearest thing to fix:
1. no factories at all: "no factories enrolled";
2. none active and healthy: "no healthy factory";
3. none of those offers the engine: "no factory offers engine X";
4. none of those has the capabilities: "no factory with engine X has capabilities a, b";
5. the ones that fit are full: "all factories offering engine X are full".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from routing.filters import check, factory_exclusion, job_exclusion, seconds_since
from routing.model import (
    Candidate,
    Decision,
    Exclusion,
    FactoryView,
    JobChoice,
    JobRequest,
    RoutingContext,
)
from routing.score import breakdown, rank_score, total
from routing.weights import FleetWeights

__all__ = ["rank_jobs", "select_factory", "select_job"]

_FUNNEL = tuple(Exclusion)  # the filters in the order they run


def select_factory(
    job: JobRequest,
    factories: Sequence[FactoryView],
    ctx: RoutingContext,
    weights: FleetWeights,
) -> Decision:
    """Rank every factory for `job`: eligible ones by score (then id), excluded ones after."""
    _require_unique("factory", (f.id for f in factories))
    eligible: list[Candidate] = []
    excluded: list[Candidate] = []
    for factory in factories:
        out = check(job, factory, ctx)
        if out is None:
            terms = breakdown(job, factory, ctx, weights)
            eligible.append(Candidate(factory.id, True, total(terms), terms, None))
        else:
            excluded.append(Candidate(factory.id, False, 0.0, (), out.because, out.kind))
    eligible.sort(key=lambda c: (-rank_score(c.score), c.factory_id))
    candidates = tuple(eligible + excluded)
    if eligible:
        return Decision(eligible[0].factory_id, eligible[0].score, candidates, None)
    return Decision(None, 0.0, candidates, _reason(job, excluded))


def rank_jobs(
    waiting: Sequence[JobRequest],
    factory: FactoryView,
    ctx: RoutingContext,
    weights: FleetWeights,
) -> tuple[JobChoice, ...]:
    """The waiting jobs `factory` can run, best first (score, then longest waiting, then id).

    The slot is taken to be free, so capacity is not checked. A cordoned or unhealthy
    factory runs nothing.
    """
    _require_unique("job", (j.job_id for j in waiting))
    if factory_exclusion(factory, ctx) is not None:
        return ()
    ranked: list[tuple[tuple[float, float, str], JobChoice]] = []
    for job in waiting:
        if job_exclusion(job, factory) is not None:
            continue
        terms = breakdown(job, factory, ctx, weights)
        score = total(terms)
        waited = seconds_since(ctx.now, job.waiting_since) if job.waiting_since is not None else 0.0
        key = (-rank_score(score), -waited, job.job_id)
        ranked.append((key, JobChoice(job.job_id, score, terms)))
    ranked.sort(key=lambda pair: pair[0])
    return tuple(choice for _, choice in ranked)


def select_job(
    waiting: Sequence[JobRequest],
    factory: FactoryView,
    ctx: RoutingContext,
    weights: FleetWeights,
) -> JobChoice | None:
    """The best waiting job for a slot freeing on `factory`, or None if it can run none."""
    ranked = rank_jobs(waiting, factory, ctx, weights)
    return ranked[0] if ranked else None


def _reason(job: JobRequest, excluded: Sequence[Candidate]) -> str:
    if not excluded:
        return "no factories enrolled"
    furthest = max(_FUNNEL.index(c.exclusion) for c in excluded if c.exclusion is not None)
    stage = _FUNNEL[furthest]
    if stage == Exclusion.FULL:
        return f"all factories offering engine {job.engine} are full"
    if stage == Exclusion.CAPABILITIES:
        wanted = ", ".join(sorted(job.capabilities))
        return f"no factory with engine {job.engine} has capabilities {wanted}"
    if stage == Exclusion.ENGINE:
        return f"no factory offers engine {job.engine}"
    return "no healthy factory"


def _require_unique(kind: str, ids: Iterable[str]) -> None:
    """Duplicate ids would make the order of the input decide ties."""
    seen: set[str] = set()
    for id_ in ids:
        if id_ in seen:
            raise ValueError(f"duplicate {kind} id {id_!r}")
        seen.add(id_)
