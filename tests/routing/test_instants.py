"""Instants in microseconds: the same ages and the same boundaries as datetime arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from routing.filters import seconds_since
from routing.instants import age_s, fresh_age_us, micros, min_age_us
from tests.routing.builders import NOW, PROPERTY

deltas = st.integers(-(10**12), 10**12).map(lambda us: timedelta(microseconds=us))
limits = st.floats(1e-6, 1e7) | st.sampled_from((15.0, 15.25, 0.1, 1e-6, 86400.0))


def test_aware_and_naive_instants():
    assert micros(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    assert micros(datetime(1970, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))) == 0
    assert micros(datetime(1970, 1, 1, 0, 0, 1, 5)) == 1_000_005


@PROPERTY
@given(delta=deltas)
def test_an_age_is_the_float_seconds_since_computes(delta):
    then = NOW - delta
    assert age_s(micros(NOW), micros(then)) == seconds_since(NOW, then)


@PROPERTY
@given(limit=limits)
def test_the_fresh_age_is_the_last_one_within_the_limit(limit):
    age = fresh_age_us(limit)
    assert age_s(age, 0) <= limit < age_s(age + 1, 0)


@PROPERTY
@given(minimum=limits | st.just(0.0))
def test_the_minimum_age_is_the_first_one_at_or_over_the_minimum(minimum):
    age = min_age_us(minimum)
    if minimum == 0:
        assert age < -(10**12)  # every age counts, a start in the future included
    else:
        assert age_s(age - 1, 0) < minimum <= age_s(age, 0)
