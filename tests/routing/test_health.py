"""The one health rule (`heartbeat_is_fresh`, `is_healthy`) and the filter that uses it."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing import RoutingContext, heartbeat_is_fresh, is_healthy
from routing.filters import factory_exclusion
from tests.routing.builders import CTX, LIMIT_S, NOW, PROPERTY, factory

US = timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("at", "fresh"),
    [
        (NOW, True),
        (NOW - timedelta(seconds=LIMIT_S), True),  # exactly at the limit: still fresh
        (NOW - timedelta(seconds=LIMIT_S) - US, False),  # one microsecond past it
        (NOW - timedelta(seconds=LIMIT_S) + US, True),
        (NOW + timedelta(hours=1), True),  # a clock skewed into the future
        (None, False),
    ],
)
def test_a_heartbeat_is_fresh_up_to_and_including_the_limit(at, fresh):
    assert heartbeat_is_fresh(at, NOW, LIMIT_S) is fresh


def test_a_fractional_limit_has_the_same_boundary():
    limit = 15.25
    assert heartbeat_is_fresh(NOW - timedelta(seconds=limit), NOW, limit)
    assert not heartbeat_is_fresh(NOW - timedelta(seconds=limit) - US, NOW, limit)


@pytest.mark.parametrize(
    ("view", "healthy"),
    [
        (factory(heartbeat_age_s=LIMIT_S), True),
        (factory(heartbeat_age_s=LIMIT_S + 1e-6), False),
        (factory(heartbeat_age_s=0, healthy=False), False),
        (factory(heartbeat_age_s=None), False),
        (factory(status="cordoned"), True),  # health only: the status is another filter
        (factory(heartbeat_age_s=0, lease_lost="lost the lease of job j"), False),
    ],
)
def test_is_healthy_needs_the_report_and_a_fresh_heartbeat(view, healthy):
    assert is_healthy(view, CTX) is healthy


# Ages around the limit, down to the microsecond, and a few far from it.
ages_us = st.integers(-2_000_000, 40_000_000) | st.sampled_from(
    [int(LIMIT_S * 1e6) + d for d in (-1, 0, 1)]
)


@PROPERTY
@given(
    age_us=ages_us,
    reported=st.booleans(),
    lost=st.none() | st.just("lost the lease of job j"),
    limit=st.sampled_from((LIMIT_S, 15.25, 0.1)) | st.floats(1e-3, 60),
)
def test_the_filter_excludes_for_health_exactly_when_is_healthy_says_so(
    age_us, reported, lost, limit
):
    ctx = RoutingContext(now=NOW, unhealthy_after_s=limit)
    view = dataclasses.replace(
        factory(healthy=reported, lease_lost=lost),
        last_heartbeat_at=NOW - timedelta(microseconds=age_us),
    )
    assert (factory_exclusion(view, ctx) is None) == is_healthy(view, ctx)
    assert is_healthy(view, ctx) == (reported and lost is None and age_us / 1e6 <= limit)


def test_a_factory_that_lost_a_lease_is_excluded_with_the_reason_until_its_next_heartbeat():
    view = factory(heartbeat_age_s=0, lease_lost="lost the lease of job j at 12:00:00")
    excluded = factory_exclusion(view, CTX)
    assert excluded is not None
    assert excluded.kind == "unhealthy"
    assert excluded.because == (
        "lost the lease of job j at 12:00:00; skipped until its next heartbeat"
    )
