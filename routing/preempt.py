"""The preemption API at its first import path: the types (`routing.preemption`) and the
exhaustive search (`routing.reference`)."""

from routing.preemption import (
    PreemptionCandidate,
    PreemptionPlan,
    PreemptionPolicy,
    RunningJob,
    VictimCheck,
)
from routing.reference import select_with_preemption

__all__ = [
    "PreemptionCandidate",
    "PreemptionPlan",
    "PreemptionPolicy",
    "RunningJob",
    "VictimCheck",
    "select_with_preemption",
]
