"""A factory's row in a decision, and the sentence for "nothing placed".

Shared by every way of choosing a factory (`routing.reference` is the exhaustive one), so
that all build the very same rows and reasons.

Why nothing was placed names the furthest point any factory reached in the filter funnel,
since that is the nearest thing to fix:
1. no factories at all: "no factories enrolled";
2. none active and healthy: "no healthy factory";
3. none of those offers the engine: "no factory offers engine X";
4. none of those has the capabilities: "no factory with engine X has capabilities a, b";
5. the ones that fit are full: "all factories offering engine X are full".
"""

from __future__ import annotations

from collections.abc import Iterable

from routing.filters import Excluded
from routing.model import Candidate, Exclusion, FactoryView, JobRequest, RoutingContext
from routing.score import breakdown, rank_score, total
from routing.weights import FleetWeights

__all__ = [
    "FUNNEL",
    "eligible_candidate",
    "excluded_candidate",
    "no_placement_reason",
    "rank_order",
    "require_unique",
]

FUNNEL: tuple[Exclusion, ...] = tuple(Exclusion)  # the filters in the order they run


def eligible_candidate(
    job: JobRequest, factory: FactoryView, ctx: RoutingContext, weights: FleetWeights
) -> Candidate:
    """The scored row of a factory that passes every hard filter."""
    terms = breakdown(job, factory, ctx, weights)
    return Candidate(factory.id, True, total(terms), terms, None)


def excluded_candidate(factory: FactoryView, out: Excluded) -> Candidate:
    """The row of a factory a hard filter excluded: no score, the sentence and the kind."""
    return Candidate(factory.id, False, 0.0, (), out.because, out.kind)


def rank_order(candidate: Candidate) -> tuple[float, str]:
    """How eligible candidates sort: the best score first, then the factory id."""
    return (-rank_score(candidate.score), candidate.factory_id)


def no_placement_reason(job: JobRequest, excluded: Iterable[Exclusion]) -> str:
    """The sentence for a job no factory could take, from the kinds that excluded them."""
    stages = [FUNNEL.index(kind) for kind in excluded]
    if not stages:
        return "no factories enrolled"
    stage = FUNNEL[max(stages)]
    if stage == Exclusion.FULL:
        return f"all factories offering engine {job.engine} are full"
    if stage == Exclusion.CAPABILITIES:
        wanted = ", ".join(sorted(job.capabilities))
        return f"no factory with engine {job.engine} has capabilities {wanted}"
    if stage == Exclusion.ENGINE:
        return f"no factory offers engine {job.engine}"
    return "no healthy factory"


def require_unique(kind: str, ids: Iterable[str]) -> None:
    """Duplicate ids would make the order of the input decide ties.

    Raises:
        ValueError: an id occurs twice.
    """
    seen: set[str] = set()
    for id_ in ids:
        if id_ in seen:
            raise ValueError(f"duplicate {kind} id {id_!r}")
        seen.add(id_)
