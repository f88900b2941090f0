"""select_factory: ranking, tie-breaks, weight overrides, and properties over random fleets."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from routing import FleetWeights, select_factory
from routing.filters import check
from routing.score import term_values
from tests.routing.builders import CTX, PROPERTY, cases, factory, job, placeable, weights

W = FleetWeights()
ZERO = FleetWeights(**dict.fromkeys(FleetWeights().as_dict(), 0.0))
FACTORY_TERMS = ("capability_fit", "load", "health", "affinity", "cost_rate")


def ranking(decision):
    return [c.factory_id for c in decision.candidates if c.eligible]


def test_candidates_are_ranked_eligible_first_then_excluded_in_input_order():
    fleet = [
        factory("x", status="cordoned"),
        factory("busy", slots=4, reserved=3),
        factory("w", engines=["codex"]),
        factory("idle", slots=4),
    ]
    decision = select_factory(job(), fleet, CTX, W)
    assert decision.factory_id == "idle"
    assert [c.factory_id for c in decision.candidates] == ["idle", "busy", "x", "w"]
    assert decision.score == decision.candidates[0].score


def test_zero_weights_make_every_eligible_factory_equal_and_ids_break_the_tie():
    fleet = [
        factory("c", cost=0.0),
        factory("a", slots=4, reserved=3, cost=9.0),
        factory("b", heartbeat_age_s=14),
    ]
    decision = select_factory(job(), fleet, CTX, ZERO)
    assert ranking(decision) == ["a", "b", "c"]
    assert {c.score for c in decision.candidates} == {0.0}


def test_making_cost_rate_dominant_picks_the_cheapest():
    fleet = [factory("roomy", slots=8, cost=4.0), factory("cheap", slots=2, reserved=1, cost=0.1)]
    assert select_factory(job(), fleet, CTX, W).factory_id == "roomy"
    cheap_first = W.override({"costRate": 100.0})
    assert select_factory(job(), fleet, CTX, cheap_first).factory_id == "cheap"


def test_affinity_for_the_previous_factory_can_outweigh_load():
    fleet = [factory("old", slots=4, reserved=2), factory("new", slots=4)]
    request = job(previous="old")
    assert select_factory(request, fleet, CTX, W).factory_id == "new"
    sticky = W.override({"affinity": 5.0})
    assert select_factory(request, fleet, CTX, sticky).factory_id == "old"


def test_duplicate_factory_ids_are_rejected():
    with pytest.raises(ValueError, match="duplicate factory id 'a'"):
        select_factory(job(), [factory("a"), factory("a")], CTX, W)


@PROPERTY
@given(case=cases, w=weights)
def test_never_selects_an_ineligible_factory(case, w):
    request, fleet = case
    decision = select_factory(request, fleet, CTX, w)
    assert sorted(c.factory_id for c in decision.candidates) == sorted(f.id for f in fleet)
    by_id = {f.id: f for f in fleet}
    for c in decision.candidates:
        assert c.eligible == (check(request, by_id[c.factory_id], CTX) is None)
        assert (c.excluded_because is None) == c.eligible
    if decision.factory_id is None:
        assert not any(c.eligible for c in decision.candidates)
        assert decision.reason
    else:
        assert decision.reason is None
        assert decision.candidates[0].factory_id == decision.factory_id
        assert check(request, by_id[decision.factory_id], CTX) is None


@PROPERTY
@given(data=st.data(), case=cases, w=weights)
def test_selection_is_invariant_under_permutation(data, case, w):
    request, fleet = case
    shuffled = data.draw(st.permutations(fleet))
    a = select_factory(request, fleet, CTX, w)
    b = select_factory(request, shuffled, CTX, w)
    assert (a.factory_id, a.score, a.reason) == (b.factory_id, b.score, b.reason)
    assert [c for c in a.candidates if c.eligible] == [c for c in b.candidates if c.eligible]


@PROPERTY
@given(data=st.data(), case=placeable(), w=weights)
def test_more_free_slots_never_rank_lower(data, case, w):
    request, fleet = case
    eligible = [f for f in fleet if check(request, f, CTX) is None and f.reserved > 0]
    assume(eligible)
    target = data.draw(st.sampled_from(eligible))
    freer = dataclasses.replace(target, reserved=target.reserved - 1)
    before = ranking(select_factory(request, fleet, CTX, w)).index(target.id)
    fleet_after = [freer if f.id == target.id else f for f in fleet]
    after = ranking(select_factory(request, fleet_after, CTX, w)).index(target.id)
    assert after <= before


@PROPERTY
@given(case=placeable(), term=st.sampled_from(FACTORY_TERMS))
def test_a_term_alone_picks_the_factory_with_its_highest_value(case, term):
    request, fleet = case
    only = dataclasses.replace(ZERO, **{term: 1.0})
    decision = select_factory(request, fleet, CTX, only)
    eligible = [f for f in fleet if check(request, f, CTX) is None]
    best = max(term_values(request, f, CTX)[term] for f in eligible)
    winners = sorted(f.id for f in eligible if term_values(request, f, CTX)[term] == best)
    assert decision.factory_id == winners[0]
