"""Pure routing: which factory runs a job, which waiting job takes a freed slot, and which
running jobs to evict when an urgent job finds no slot.

Pure means standard library only, no I/O, no clock (`RoutingContext.now`), no environment
and no randomness, so every decision can be replayed and tested exhaustively.

Two ways to decide, with the same picks: `select_factory` and `select_with_preemption`
(`routing.reference`) score and explain every factory on every call; a `FleetIndex` with a
`RunningIndex`, kept current by the caller, finds the same picks without visiting the whole
fleet and explains only the best rows (docs/decisions/0012-routing-index.md).
"""

from routing.explain import explain
from routing.filters import heartbeat_is_fresh, is_healthy
from routing.fleet_index import FleetIndex
from routing.model import (
    PRIORITY_VALUES,
    Candidate,
    Decision,
    Exclusion,
    ExclusionCount,
    FactoryView,
    FleetSummary,
    JobChoice,
    JobRequest,
    RoutingContext,
    ScoreTerm,
)
from routing.preemption import (
    PreemptionCandidate,
    PreemptionPlan,
    PreemptionPolicy,
    RunningJob,
    VictimCheck,
)
from routing.reference import select_factory, select_with_preemption
from routing.running_index import RunningIndex
from routing.select import rank_jobs, select_job
from routing.weights import TERMS, FleetWeights, WeightsError, resolve_weights

__all__ = [
    "PRIORITY_VALUES",
    "TERMS",
    "Candidate",
    "Decision",
    "Exclusion",
    "ExclusionCount",
    "FactoryView",
    "FleetIndex",
    "FleetSummary",
    "FleetWeights",
    "JobChoice",
    "JobRequest",
    "PreemptionCandidate",
    "PreemptionPlan",
    "PreemptionPolicy",
    "RoutingContext",
    "RunningIndex",
    "RunningJob",
    "ScoreTerm",
    "VictimCheck",
    "WeightsError",
    "explain",
    "heartbeat_is_fresh",
    "is_healthy",
    "rank_jobs",
    "resolve_weights",
    "select_factory",
    "select_job",
    "select_with_preemption",
]
