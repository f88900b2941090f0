"""The exhaustive reference: every factory filtered, scored and explained on every decision.

`select_factory` and `select_with_preemption` are the definition of a correct pick. They
cost O(factories) (and O(running jobs) for preemption) per decision and explain every
factory.
"""

from __future__ import annotations

from collections.abc import Sequence

from routing.candidates import (
    eligible_candidate,
    excluded_candidate,
    no_placement_reason,
    rank_order,
    require_unique,
)
from routing.filters import check
from routing.model import Candidate, Decision, FactoryView, JobRequest, RoutingContext
from routing.preemption import (
    PlanKey,
    PreemptionCandidate,
    PreemptionPlan,
    PreemptionPolicy,
    RunningJob,
    assemble_plan,
    consider,
)
from routing.weights import FleetWeights

__all__ = ["select_factory", "select_with_preemption"]

_DEFAULT_POLICY = PreemptionPolicy()


def select_factory(
    job: JobRequest,
    factories: Sequence[FactoryView],
    ctx: RoutingContext,
    weights: FleetWeights,
) -> Decision:
    """Rank every factory for `job`: eligible ones by score (then id), excluded ones after.

    Args:
        job: the job asking for a slot.
        factories: the fleet, unique ids, in any order.
        ctx: the time and the health and aging limits.
        weights: the weight of each scoring term.

    Returns:
        The best eligible factory and every factory's row: the eligible ones best first,
        then the excluded ones in input order; a reason when nothing is eligible.

    Raises:
        ValueError: two factories share an id.
    """
    require_unique("factory", (f.id for f in factories))
    eligible: list[Candidate] = []
    excluded: list[Candidate] = []
    for factory in factories:
        out = check(job, factory, ctx)
        if out is None:
            eligible.append(eligible_candidate(job, factory, ctx, weights))
        else:
            excluded.append(excluded_candidate(factory, out))
    eligible.sort(key=rank_order)
    candidates = tuple(eligible + excluded)
    if eligible:
        return Decision(eligible[0].factory_id, eligible[0].score, candidates, None)
    reason = no_placement_reason(job, (c.exclusion for c in excluded if c.exclusion is not None))
    return Decision(None, 0.0, candidates, reason)


def select_with_preemption(
    job: JobRequest,
    running: Sequence[RunningJob],
    factories: Sequence[FactoryView],
    ctx: RoutingContext,
    weights: FleetWeights,
    policy: PreemptionPolicy = _DEFAULT_POLICY,
) -> PreemptionPlan | None:
    """The least disruptive eviction that lets `job` start, or None.

    None when the job's priority may not preempt, when some factory can take it without
    preemption (`select_factory` places it), or when no factory passing its hard filters
    can be freed by evicting eligible victims only.

    Args:
        job: the job that found no free slot.
        running: every job holding a slot, unique ids.
        factories: the fleet, unique ids.
        ctx: the time and the health and aging limits.
        weights: the weights of the routing score (a tie-break between plans).
        policy: who may preempt and who may be evicted.

    Returns:
        The plan, whose breakdown holds every factory: the feasible ones best first (the
        chosen one first), then the infeasible ones by id.

    Raises:
        ValueError: two factories or two running jobs share an id.
    """
    require_unique("factory", (f.id for f in factories))
    require_unique("running job", (r.job_id for r in running))
    if job.priority not in policy.preempting:
        return None
    decision = select_factory(job, factories, ctx, weights)
    if decision.factory_id is not None:
        return None

    on: dict[str, list[RunningJob]] = {}
    for r in running:
        on.setdefault(r.factory_id, []).append(r)

    feasible: list[tuple[PlanKey, PreemptionCandidate]] = []
    infeasible: list[PreemptionCandidate] = []
    for factory in sorted(factories, key=lambda f: f.id):
        key, candidate = consider(job, factory, on.get(factory.id, []), ctx, weights, policy)
        if key is None:
            infeasible.append(candidate)
        else:
            feasible.append((key, candidate))
    return assemble_plan(job, feasible, infeasible, decision.reason)
