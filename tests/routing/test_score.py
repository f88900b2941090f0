"""Scoring terms: each value, its normalisation, and how a breakdown adds up."""

from __future__ import annotations

import math

import pytest
from hypothesis import given

from routing import TERMS, FleetWeights, select_factory
from routing.score import breakdown, term_values, total
from tests.routing.builders import CTX, MAX_AGE_S, PROPERTY, cases, factory, job, weights


def values(request=None, view=None):
    return term_values(request or job(), view or factory(), CTX)


def test_every_term_in_order():
    assert tuple(values()) == TERMS


@pytest.mark.parametrize(
    ("capabilities", "preferred", "labels", "expected"),
    [
        ((), (), (), 1.0),
        ((), (), ("gpu", "macos", "big"), 1 / 4),
        (("gpu",), (), ("gpu",), 1.0),
        (("gpu",), (), ("gpu", "macos"), 2 / 3),
        (("gpu",), ("big",), ("gpu", "big"), 1.0),  # a preferred label is not "extra"
    ],
)
def test_capability_fit_prefers_a_tight_fit(capabilities, preferred, labels, expected):
    request = job(capabilities=capabilities, preferred=preferred)
    assert values(request, factory(labels=labels))["capability_fit"] == pytest.approx(expected)


def test_a_job_without_needs_leaves_the_specialised_factory_free():
    fleet = [factory("gpu-box", labels=["gpu", "big"]), factory("plain")]
    assert select_factory(job(), fleet, CTX, FleetWeights()).factory_id == "plain"


@pytest.mark.parametrize(
    ("slots", "reserved", "expected"), [(4, 0, 0.75), (4, 1, 0.5), (4, 3, 0.0), (1, 0, 0.0)]
)
def test_load_is_the_share_of_slots_free_after_placement(slots, reserved, expected):
    view = factory(slots=slots, reserved=reserved)
    assert values(view=view)["load"] == pytest.approx(expected)


@pytest.mark.parametrize(("age", "expected"), [(0, 1.0), (3, 0.8), (15, 0.0), (-3, 1.0)])
def test_health_falls_with_heartbeat_age(age, expected):
    assert values(view=factory(heartbeat_age_s=age))["health"] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("preferred", "previous", "expected"),
    [
        ((), None, 0.0),
        (("gpu", "big"), None, 0.5),
        ((), "f1", 1.0),
        ((), "other", 0.0),
        (("gpu", "big"), "f1", 0.75),
    ],
)
def test_affinity_is_the_mean_of_the_hints_given(preferred, previous, expected):
    request = job(preferred=preferred, previous=previous)
    view = factory("f1", labels=["gpu"])
    assert values(request, view)["affinity"] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("rate", "expected"), [(0.0, 1.0), (1.0, 0.5), (3.0, 0.25), (-2.0, 1.0), (math.nan, 0.0)]
)
def test_cost_rate_prefers_cheaper(rate, expected):
    assert values(view=factory(cost=rate))["cost_rate"] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("waited", "expected"),
    [(None, 0.0), (0, 0.0), (MAX_AGE_S / 2, 0.5), (MAX_AGE_S * 3, 1.0), (-60, 0.0)],
)
def test_age_grows_up_to_a_cap(waited, expected):
    assert values(job(waited_s=waited))["age"] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("priority", "expected"), [("low", 0.25), ("normal", 0.5), ("high", 0.75), ("critical", 1.0)]
)
def test_priority_values(priority, expected):
    assert values(job(priority=priority))["priority"] == expected


def test_contribution_is_value_times_weight():
    terms = breakdown(job(waited_s=900), factory(slots=4, reserved=1), CTX, FleetWeights())
    assert [t.term for t in terms] == list(TERMS)
    for t in terms:
        assert t.weight == FleetWeights().weight(t.term)
        assert t.contribution == t.value * t.weight


@PROPERTY
@given(case=cases, w=weights)
def test_breakdown_sums_to_the_score_and_values_are_normalised(case, w):
    request, fleet = case
    for candidate in select_factory(request, fleet, CTX, w).candidates:
        contributions = [t.contribution for t in candidate.breakdown]
        assert candidate.score == math.fsum(contributions) == total(candidate.breakdown)
        assert candidate.score == pytest.approx(sum(contributions))
        for t in candidate.breakdown:
            assert 0.0 <= t.value <= 1.0
            assert t.contribution == t.value * t.weight
