"""Hypothesis strategies for comparing the indexed path with the reference: small fleets
built to hit the edges (ties, the exact health boundary, NaN and infinite costs, no slots,
over-reserved factories, unknown statuses, previous factories, preferred labels), and
weights from all-zero to huge."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import timedelta

from hypothesis import strategies as st

from routing import FactoryView, FleetWeights, JobRequest, resolve_weights
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
