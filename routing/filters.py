"""Hard filters: what makes a factory unable to take a job, with a sentence saying why.

They run in a fixed order (status, health, engine, capabilities, capacity) and the first
failure wins, so a factory is excluded for the most fundamental reason. That order is also
the funnel `routing.candidates` walks to explain why nothing was placed.

`heartbeat_is_fresh` is the fleet's one health rule (a heartbeat at most `unhealthy_after_s`
old is fresh, the limit included), exported so that the API reports health exactly as
routing filters on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from routing.model import (
    ACTIVE,
    CORDONED,
    REVOKED,
    Exclusion,
    FactoryView,
    JobRequest,
    RoutingContext,
)

__all__ = [
    "Excluded",
    "capacity_exclusion",
    "check",
    "factory_exclusion",
    "heartbeat_is_fresh",
    "is_healthy",
    "job_exclusion",
    "seconds_since",
    "standing_exclusion",
]


@dataclass(frozen=True, slots=True)
class Excluded:
    """A failed filter: which one, and the sentence shown to people."""

    kind: Exclusion
    because: str


def seconds_since(now: datetime, then: datetime) -> float:
    """Elapsed seconds, never negative: a clock skewed into the future counts as fresh."""
    return max(0.0, (now - then).total_seconds())


def heartbeat_is_fresh(
    last_heartbeat_at: datetime | None, now: datetime, unhealthy_after_s: float
) -> bool:
    """Whether a factory's last heartbeat still counts: the fleet's one health rule.

    Args:
        last_heartbeat_at: when the factory last reported, None if it never did.
        now: the time of the decision.
        unhealthy_after_s: how old a heartbeat may be and still count.

    Returns:
        True when the heartbeat is at most `unhealthy_after_s` old: exactly at the limit is
        still fresh, and one from the future (a skewed clock) is fresh. False when none was
        ever sent.
    """
    if last_heartbeat_at is None:
        return False
    return seconds_since(now, last_heartbeat_at) <= unhealthy_after_s


def is_healthy(factory: FactoryView, ctx: RoutingContext) -> bool:
    """Reports itself healthy and its heartbeat is fresh (`heartbeat_is_fresh`).

    The status (cordoned, revoked) is a separate filter: see `factory_exclusion`.
    """
    return (
        factory.reported_healthy
        and factory.lease_lost is None
        and heartbeat_is_fresh(factory.last_heartbeat_at, ctx.now, ctx.unhealthy_after_s)
    )


def standing_exclusion(factory: FactoryView) -> Excluded | None:
    """Status and self-reported health: what excludes a factory whatever the time."""
    if factory.status == REVOKED:
        return Excluded(Exclusion.REVOKED, "revoked")
    if factory.status == CORDONED:
        return Excluded(Exclusion.CORDONED, "cordoned by an operator")
    if factory.status != ACTIVE:
        return Excluded(Exclusion.INACTIVE, f"status {factory.status} is not active")
    if not factory.reported_healthy:
        return Excluded(Exclusion.UNHEALTHY, "reports itself unhealthy")
    if factory.last_heartbeat_at is None:
        return Excluded(Exclusion.UNHEALTHY, "has never sent a heartbeat")
    if factory.lease_lost is not None:
        return Excluded(
            Exclusion.UNHEALTHY, f"{factory.lease_lost}; skipped until its next heartbeat"
        )
    return None


def factory_exclusion(factory: FactoryView, ctx: RoutingContext) -> Excluded | None:
    """Status and health: the filters that do not depend on the job."""
    standing = standing_exclusion(factory)
    if standing is not None or factory.last_heartbeat_at is None:  # standing covers None
        return standing
    if not heartbeat_is_fresh(factory.last_heartbeat_at, ctx.now, ctx.unhealthy_after_s):
        age = seconds_since(ctx.now, factory.last_heartbeat_at)
        limit = _seconds(ctx.unhealthy_after_s)
        return Excluded(Exclusion.UNHEALTHY, f"no heartbeat for {_seconds(age)}s (limit {limit}s)")
    return None


def job_exclusion(job: JobRequest, factory: FactoryView) -> Excluded | None:
    """Engine and capabilities: can this factory run this job at all."""
    if job.engine not in factory.engines:
        return Excluded(Exclusion.ENGINE, f"does not offer engine {job.engine}")
    missing = job.capabilities - factory.labels
    if missing:
        return Excluded(Exclusion.CAPABILITIES, f"lacks capabilities {', '.join(sorted(missing))}")
    return None


def capacity_exclusion(factory: FactoryView) -> Excluded | None:
    """A factory with every slot reserved; checked last, as it is the one a job can wait out."""
    if factory.reserved < factory.slots:
        return None
    if factory.slots <= 0:
        return Excluded(Exclusion.FULL, "has no slots")
    if factory.slots == 1:
        return Excluded(Exclusion.FULL, "its only slot is taken")
    return Excluded(Exclusion.FULL, f"all {factory.slots} slots taken")


def check(
    job: JobRequest, factory: FactoryView, ctx: RoutingContext, *, capacity: bool = True
) -> Excluded | None:
    """The first failing filter, or None when the factory can take the job.

    `capacity=False` skips the slot check, for a slot that is being handed out as it frees.
    """
    return (
        factory_exclusion(factory, ctx)
        or job_exclusion(job, factory)
        or (capacity_exclusion(factory) if capacity else None)
    )


def _seconds(value: float) -> str:
    """42.0 -> "42", 15.25 -> "15.2": whole seconds read better, tenths still matter."""
    return f"{value:.1f}".removesuffix(".0")
