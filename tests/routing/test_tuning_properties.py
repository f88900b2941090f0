"""Properties the tuning work must keep (issue: smart routing): the defaults reproduce every
pick, an override moves a ranking the way its term says, and select_job prefers the higher
score and ages fairly."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from routing import FleetWeights, rank_jobs, resolve_weights, select_factory, select_job
from tests.routing.builders import (
    CTX,
    MAX_AGE_S,
    PROPERTY,
    cases,
    factory_views,
    job_requests,
    waiting_lists,
)

DEFAULTS = FleetWeights()


@PROPERTY
@given(case=cases)
def test_defaults_through_every_layer_reproduce_the_pick(case):
    job, fleet = case
    plain = select_factory(job, fleet, CTX, DEFAULTS)
    for layered in (
        resolve_weights(DEFAULTS, None, None),
        resolve_weights(DEFAULTS, {}, {}),
        resolve_weights(DEFAULTS, DEFAULTS.as_dict(), None),
        FleetWeights.from_mapping(DEFAULTS.as_dict()),
    ):
        again = select_factory(job, fleet, CTX, layered)
        assert (again.factory_id, again.score, again.reason) == (
            plain.factory_id,
            plain.score,
            plain.reason,
        )
        assert again.candidates == plain.candidates


@PROPERTY
@given(case=cases, term=st.sampled_from(["load", "health", "cost_rate", "capability_fit"]))
def test_raising_a_term_never_lowers_the_winner_on_that_term(case, term):
    job, fleet = case
    before = select_factory(job, fleet, CTX, DEFAULTS)
    after = select_factory(job, fleet, CTX, DEFAULTS.override({term: 1e9}))
    if before.factory_id is None or after.factory_id is None:
        return

    def value(decision, factory_id):
        cand = next(c for c in decision.candidates if c.factory_id == factory_id)
        return next(t.value for t in cand.breakdown if t.term == term)

    # The heavy term decides: the new winner is at least as good on it as the old one.
    assert value(after, after.factory_id) >= value(after, before.factory_id)


@PROPERTY
@given(waiting=waiting_lists, view=factory_views())
def test_select_job_takes_a_highest_scoring_runnable_job(waiting, view):
    ranked = rank_jobs(waiting, view, CTX, DEFAULTS)
    choice = select_job(waiting, view, CTX, DEFAULTS)
    if not ranked:
        assert choice is None
        return
    assert choice is not None
    assert choice.score == max(r.score for r in ranked)


@PROPERTY
@given(
    base=job_requests(),
    view=factory_views(),
    older=st.floats(min_value=1, max_value=MAX_AGE_S),
    younger=st.floats(min_value=0, max_value=MAX_AGE_S),
)
def test_of_two_equal_jobs_the_longer_waiting_one_is_chosen(base, view, older, younger):
    waited_more = max(older, younger + 1)
    first = dataclasses.replace(
        base, job_id="old", waiting_since=CTX.now - _seconds(min(waited_more, MAX_AGE_S))
    )
    second = dataclasses.replace(base, job_id="new", waiting_since=CTX.now - _seconds(younger))
    if younger >= min(waited_more, MAX_AGE_S):
        return
    choice = select_job([second, first], view, CTX, DEFAULTS)
    if choice is not None:
        assert choice.job_id == "old"


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)
