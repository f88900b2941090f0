"""Selection of a waiting job: the best one for a freed slot on a factory.

It applies the job filters, scores the survivors with the same pair score as factory
selection, and breaks ties deterministically, so the same inputs in any order give the same
answer. Factory selection lives in `routing.reference` (every factory scored and explained),
re-exported here at its first import path.
"""

from __future__ import annotations

from collections.abc import Sequence

from routing.candidates import require_unique
from routing.filters import factory_exclusion, job_exclusion, seconds_since
from routing.model import FactoryView, JobChoice, JobRequest, RoutingContext
from routing.reference import select_factory
from routing.score import breakdown, rank_score, total
from routing.weights import FleetWeights

__all__ = ["rank_jobs", "select_factory", "select_job"]


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
    require_unique("job", (j.job_id for j in waiting))
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
