"""Hypothesis strategies for comparing the indexed path with the reference: small fleets
built to hit the edges (ties, the exact health boundary, NaN and infinite costs, no slots,
over-reserved factories, unknown statuses, previous factories, preferred labels), and
weights from all-zero to huge."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import timedelta

from hypothesis import strategies as st

from routing import (
    FactoryView,
    FleetWeights,
    JobRequest,
    PreemptionPolicy,
    RunningJob,
    resolve_weights,
)
from tests.routing.builders import (
    ENGINES,
    LABELS,
    LIMIT_S,
    MAX_AGE_S,
    NOW,
    PRIORITIES,
    factory,
    job,
    weights,
)

US = timedelta(microseconds=1)
ZERO = FleetWeights(**dict.fromkeys(FleetWeights().as_dict(), 0.0))
FACTORY_IDS = tuple(f"f{i}" for i in range(12))

# Few distinct values, so that equal terms and equal scores are common.
heartbeats = st.one_of(
    st.none(),
    st.sampled_from(
        (
            NOW,
            NOW - timedelta(seconds=3),
            NOW - timedelta(seconds=LIMIT_S),  # exactly at the limit: fresh
            NOW - timedelta(seconds=LIMIT_S) - US,  # one microsecond past: stale
            NOW - timedelta(seconds=LIMIT_S) + US,
            NOW + timedelta(seconds=5),  # from the future: fresh, health 1
        )
    ),
    st.floats(0, 2 * LIMIT_S).map(lambda s: NOW - timedelta(seconds=s)),
)
costs = st.sampled_from((0.0, 1.0, 1.0, 2.5, math.nan, math.inf, -1.0)) | st.floats(0, 10)
statuses = st.sampled_from(("active",) * 6 + ("cordoned", "revoked", "draining"))


@st.composite
def views(draw: st.DrawFn, factory_id: str) -> FactoryView:
    """One factory with every field drawn from edge-heavy values."""
    slots = draw(st.integers(0, 4))
    view = factory(
        factory_id,
        engines=draw(st.frozensets(st.sampled_from(ENGINES), max_size=3)),
        labels=draw(st.frozensets(st.sampled_from(LABELS), max_size=3)),
        slots=slots,
        reserved=draw(st.integers(0, slots + 2)),
        status=draw(statuses),
        healthy=draw(st.sampled_from((True,) * 5 + (False,))),
        cost=draw(costs),
        lease_lost=draw(st.sampled_from((None,) * 7 + ("lost the lease of job j at 12:00:00",))),
    )
    return replace(view, last_heartbeat_at=draw(heartbeats))


@st.composite
def fleets(draw: st.DrawFn, max_size: int = 10) -> list[FactoryView]:
    """A fleet of unique ids, in a drawn order."""
    ids = draw(st.lists(st.sampled_from(FACTORY_IDS), max_size=max_size, unique=True))
    return [draw(views(i)) for i in ids]


any_priority = st.sampled_from(PRIORITIES)
waits = st.none() | st.sampled_from((0.0, MAX_AGE_S)) | st.floats(-10, 2 * MAX_AGE_S)


@st.composite
def requests(draw: st.DrawFn, priorities: st.SearchStrategy[str] = any_priority) -> JobRequest:
    """A job whose engine is mostly offered and whose previous factory is sometimes real."""
    return job(
        "j",
        engine=draw(st.sampled_from(ENGINES)),
        capabilities=draw(st.frozensets(st.sampled_from(LABELS), max_size=2)),
        priority=draw(priorities),
        waited_s=draw(
            st.none() | st.sampled_from((0.0, MAX_AGE_S)) | st.floats(-10, 2 * MAX_AGE_S)
        ),
        preferred=draw(st.frozensets(st.sampled_from(LABELS), max_size=2)),
        previous=draw(st.none() | st.sampled_from(FACTORY_IDS[:4])),
    )


huge = st.sampled_from((0.0, 0.5, 1.0, 1e9))
weight_sets = st.one_of(
    st.just(FleetWeights()),
    st.just(ZERO),
    st.just(resolve_weights(FleetWeights(), {"costRate": 2, "load": 0.5, "affinity": 1.5}, None)),
    weights,
    st.builds(FleetWeights, **dict.fromkeys(FleetWeights().as_dict(), huge)),
)


urgent = st.sampled_from(("critical", "critical", "critical", "high", "normal"))
victim_priorities = st.sampled_from(("low", "low", "normal", "normal", "high", "critical"))
# Runtimes on and around the minimums the policies use, and a start in the future.
runtimes = st.sampled_from((0.0, 60.0, 60.0 - 1e-6, 300.0, 600.0, 600.0, -5.0)) | st.floats(0, 2e3)
own_minimums = st.sampled_from((None, None, None, 0.0, 60.0, 900.0))
# Two thirds fixed policies under which the urgent jobs mostly may preempt, a third random.
policies = st.one_of(
    st.sampled_from(
        (
            PreemptionPolicy(),
            PreemptionPolicy(preempting=frozenset({"high", "critical"}), min_runtime_s=60.0),
        )
    ),
    st.sampled_from((PreemptionPolicy(min_runtime_s=300.0),)),
    st.builds(
        PreemptionPolicy,
        preempting=st.frozensets(st.sampled_from(PRIORITIES)),
        never_preempt=st.frozensets(st.sampled_from(PRIORITIES), max_size=2),
        min_runtime_s=st.sampled_from((0.0, 60.0, 300.0)) | st.floats(0, 900),
    ),
)


@st.composite
def full_fleets(draw: st.DrawFn) -> list[FactoryView]:
    """A fleet in which every slot is taken, on some factories more than every slot."""
    fleet = draw(fleets())
    extra = st.sampled_from((0, 0, 0, 1, 2))
    return [replace(f, reserved=max(f.reserved, f.slots) + draw(extra)) for f in fleet]


@st.composite
def contended(draw: st.DrawFn, request: JobRequest) -> list[FactoryView]:
    """A fleet with 1 to 4 full factories that pass the job's other filters, the rest random.

    So that most cases have something to preempt, and often several places to compare.
    """
    fleet = draw(st.one_of(full_fleets(), fleets(max_size=6)))
    for n in range(draw(st.integers(1, 4))):
        view = draw(views(f"z{n}"))
        fleet.append(
            replace(
                view,
                engines=view.engines | {request.engine},
                labels=view.labels | request.capabilities,
                status="active",
                reported_healthy=True,
                lease_lost=None,
                last_heartbeat_at=draw(heartbeats.filter(lambda at: at is not None)),
                reserved=view.slots + draw(st.sampled_from((0, 0, 1))),
            )
        )
    return draw(st.permutations(fleet))


@st.composite
def running_sets(draw: st.DrawFn, fleet: list[FactoryView]) -> list[RunningJob]:
    """Jobs running on the fleet, about one per reservation, and a few on unknown factories."""
    jobs = []
    for factory_id, reserved in [(f.id, f.reserved) for f in fleet] + [("gone", 1)]:
        for n in range(draw(st.integers(max(0, reserved - 1), reserved + 1))):
            jobs.append(
                RunningJob(
                    job_id=f"{factory_id}-{n}",
                    factory_id=factory_id,
                    priority=draw(victim_priorities),
                    started_at=NOW - timedelta(seconds=draw(runtimes)),
                    preemptible=draw(st.sampled_from((True, True, True, False))),
                    min_runtime_s=draw(own_minimums),
                )
            )
    return jobs
