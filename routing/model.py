"""The routing module's inputs and outputs: plain frozen values.

Statuses and priorities arrive as strings (the values of gigafactory's enums) so that this
package imports nothing from the rest of the fleet and stays pure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType

__all__ = [
    "ACTIVE",
    "CORDONED",
    "PRIORITY_VALUES",
    "REVOKED",
    "Candidate",
    "Decision",
    "Exclusion",
    "ExclusionCount",
    "FactoryView",
    "FleetSummary",
    "JobChoice",
    "JobRequest",
    "RoutingContext",
    "ScoreTerm",
]

# FactoryStatus values.
ACTIVE = "active"
CORDONED = "cordoned"
REVOKED = "revoked"

# A priority's value for the `priority` term; evenly spaced so that aging (capped at 1.0)
# can overtake every priority gap.
PRIORITY_VALUES: Mapping[str, float] = MappingProxyType(
    {"low": 0.25, "normal": 0.5, "high": 0.75, "critical": 1.0}
)


class Exclusion(StrEnum):
    """Which hard filter excluded a factory, in the order the filters run.

    Machine-readable beside the sentence, so callers (preemption looks for FULL) need not
    parse text.
    """

    REVOKED = "revoked"
    CORDONED = "cordoned"
    INACTIVE = "inactive"  # a status this module does not know
    UNHEALTHY = "unhealthy"
    ENGINE = "engine"
    CAPABILITIES = "capabilities"
    FULL = "full"


@dataclass(frozen=True, slots=True)
class FactoryView:
    """What routing needs to know about one factory, snapshotted by the caller."""

    id: str
    engines: frozenset[str]
    labels: frozenset[str]
    slots: int
    reserved: int
    status: str
    last_heartbeat_at: datetime | None
    reported_healthy: bool
    cost_rate_usd_per_hour: float
    # Why the control plane stopped trusting it (a run's lease on it was lost) until its
    # next heartbeat; None: nothing against it.
    lease_lost: str | None = None

    @property
    def free(self) -> int:
        """Slots not reserved (never negative)."""
        return max(0, self.slots - self.reserved)


@dataclass(frozen=True, slots=True)
class JobRequest:
    """One job asking for a slot.

    `capabilities` are hard (labels the factory must have); `preferred_labels` and
    `previous_factory_id` are soft (the affinity term). `estimated_cost_usd` is carried for
    budget-aware routing and is not scored yet.
    """

    job_id: str
    engine: str
    capabilities: frozenset[str]
    priority: str
    waiting_since: datetime | None
    preferred_labels: frozenset[str] = frozenset()
    previous_factory_id: str | None = None
    estimated_cost_usd: float | None = None

    def __post_init__(self) -> None:
        if self.priority not in PRIORITY_VALUES:
            known = ", ".join(PRIORITY_VALUES)
            raise ValueError(f"job {self.job_id}: unknown priority {self.priority!r} ({known})")


@dataclass(frozen=True, slots=True)
class RoutingContext:
    """Everything time- and policy-dependent, passed in so that routing stays pure."""

    now: datetime
    unhealthy_after_s: float
    max_age_s: float = 3600.0

    def __post_init__(self) -> None:
        for name in ("unhealthy_after_s", "max_age_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class ScoreTerm:
    """One term of a score: its value in [0, 1], its weight and `value * weight`."""

    term: str
    value: float
    weight: float
    contribution: float


@dataclass(frozen=True, slots=True)
class Candidate:
    """How one factory fared: a score with its breakdown, or why it was excluded.

    An excluded candidate has score 0.0 and an empty breakdown.
    """

    factory_id: str
    eligible: bool
    score: float
    breakdown: tuple[ScoreTerm, ...]
    excluded_because: str | None
    exclusion: Exclusion | None = None


@dataclass(frozen=True, slots=True)
class ExclusionCount:
    """How many factories one hard filter excluded, with a few of them as examples."""

    kind: Exclusion
    count: int
    examples: tuple[Candidate, ...]


@dataclass(frozen=True, slots=True)
class FleetSummary:
    """The whole fleet in counts, for a decision that explains only its top rows.

    `eligible` counts the factories that passed the filters that matter: for a placement,
    every hard filter; for a preemption plan, every one but capacity on a factory with
    slots. `exclusions` counts the others by the filter that excluded them, in funnel
    order, only the kinds that excluded some.
    """

    factories: int
    eligible: int
    exclusions: tuple[ExclusionCount, ...]


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of selecting a factory.

    From `select_factory`, `candidates` holds every factory: the eligible ones best first,
    then the excluded ones in input order, and `summary` is None. From `FleetIndex.select`,
    `candidates` holds only the best eligible ones, best first, and `summary` counts the
    rest. `reason` is a sentence for a person when `factory_id` is None.
    """

    factory_id: str | None
    score: float
    candidates: tuple[Candidate, ...]
    reason: str | None
    summary: FleetSummary | None = None


@dataclass(frozen=True, slots=True)
class JobChoice:
    """A waiting job picked for a factory's free slot, with the score that picked it."""

    job_id: str
    score: float
    breakdown: tuple[ScoreTerm, ...]
