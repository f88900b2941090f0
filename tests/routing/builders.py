"""Builders and hypothesis strategies for routing tests: small fleets, readable defaults."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from hypothesis import settings
from hypothesis import strategies as st

from routing import FactoryView, FleetWeights, JobRequest, RoutingContext

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LIMIT_S = 15.0
MAX_AGE_S = 3600.0
CTX = RoutingContext(now=NOW, unhealthy_after_s=LIMIT_S, max_age_s=MAX_AGE_S)

ENGINES = ("claude", "codex", "devin")
LABELS = ("gpu", "macos", "linux", "big")
PRIORITIES = ("low", "normal", "high", "critical")


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def factory(
    id: str = "f1",
    *,
    engines: Iterable[str] = ("claude",),
    labels: Iterable[str] = (),
    slots: int = 2,
    reserved: int = 0,
    status: str = "active",
    heartbeat_age_s: float | None = 0.0,
    healthy: bool = True,
    cost: float = 1.0,
    lease_lost: str | None = None,
) -> FactoryView:
    return FactoryView(
        id=id,
        engines=frozenset(engines),
        labels=frozenset(labels),
        slots=slots,
        reserved=reserved,
        status=status,
        last_heartbeat_at=None if heartbeat_age_s is None else ago(heartbeat_age_s),
        reported_healthy=healthy,
        cost_rate_usd_per_hour=cost,
        lease_lost=lease_lost,
    )


def job(
    job_id: str = "j1",
    *,
    engine: str = "claude",
    capabilities: Iterable[str] = (),
    priority: str = "normal",
    waited_s: float | None = 0.0,
    preferred: Iterable[str] = (),
    previous: str | None = None,
) -> JobRequest:
    return JobRequest(
        job_id=job_id,
        engine=engine,
        capabilities=frozenset(capabilities),
        priority=priority,
        waiting_since=None if waited_s is None else ago(waited_s),
        preferred_labels=frozenset(preferred),
        previous_factory_id=previous,
    )


ids = st.text(alphabet="abcdef0123", min_size=1, max_size=4)
weights = st.builds(
    FleetWeights,
    **{
        term: st.floats(min_value=0, max_value=10, allow_nan=False)
        for term in FleetWeights().as_dict()
    },
)


@st.composite
def factory_views(draw: st.DrawFn, id: str | None = None) -> FactoryView:
    return factory(
        id if id is not None else draw(ids),
        engines=draw(st.frozensets(st.sampled_from(ENGINES), max_size=3)),
        labels=draw(st.frozensets(st.sampled_from(LABELS), max_size=4)),
        slots=draw(st.integers(0, 4)),
        reserved=draw(st.integers(0, 5)),
        status=draw(st.sampled_from(("active", "active", "active", "cordoned", "revoked"))),
        heartbeat_age_s=draw(st.none() | st.floats(-5, 2 * LIMIT_S, allow_nan=False)),
        healthy=draw(st.sampled_from((True, True, True, False))),
        cost=draw(st.floats(0, 10, allow_nan=False)),
    )


fleets = st.lists(factory_views(), max_size=6, unique_by=lambda f: f.id)


@st.composite
def job_requests(draw: st.DrawFn, job_id: str | None = None) -> JobRequest:
    return job(
        job_id if job_id is not None else draw(ids),
        engine=draw(st.sampled_from(ENGINES)),
        capabilities=draw(st.frozensets(st.sampled_from(LABELS), max_size=2)),
        priority=draw(st.sampled_from(PRIORITIES)),
        waited_s=draw(st.none() | st.floats(-10, 2 * MAX_AGE_S, allow_nan=False)),
        preferred=draw(st.frozensets(st.sampled_from(LABELS), max_size=2)),
        previous=draw(st.none() | ids),
    )


waiting_lists = st.lists(job_requests(), max_size=8, unique_by=lambda j: j.job_id)


@st.composite
def placeable(draw: st.DrawFn) -> tuple[JobRequest, list[FactoryView]]:
    """A job and a fleet in which at least one factory can take it, the rest random."""
    request = draw(job_requests())
    fleet = draw(fleets)
    for n in range(draw(st.integers(1, 4))):
        view = draw(factory_views(id=f"z{n}"))  # "z" is outside `ids`: still unique
        slots = max(1, view.slots)
        fitting = dataclasses.replace(
            view,
            engines=view.engines | {request.engine},
            labels=view.labels | request.capabilities,
            status="active",
            reported_healthy=True,
            last_heartbeat_at=ago(draw(st.floats(0, LIMIT_S))),
            slots=slots,
            reserved=draw(st.integers(0, slots - 1)),
        )
        fleet.insert(draw(st.integers(0, len(fleet))), fitting)
    return request, fleet


# Half the cases can place the job, half are random fleets (mostly "no placement").
cases = st.one_of(placeable(), st.tuples(job_requests(), fleets))

# Property tests: enough examples to find edge cases, few enough to keep the suite fast.
PROPERTY = settings(max_examples=100, deadline=None)
