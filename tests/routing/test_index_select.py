"""FleetIndex.select against the reference select_factory: the same pick, score, reason and
best rows on random fleets, the exclusions counted right, and incremental updates that
leave the index as a fresh build would."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing import Decision, FleetIndex, FleetWeights, explain, select_factory
from routing.model import Exclusion
from tests.routing.builders import CTX, LIMIT_S, PROPERTY, factory, job
from tests.routing.fleet_strategies import (
    FACTORY_IDS,
    US,
    ZERO,
    fleets,
    requests,
    views,
    weight_sets,
)

W = FleetWeights()


def assert_same_as_reference(fast: Decision, reference: Decision, explain_top: int) -> None:
    """The pick, score and reason, the best rows, and the counts of everything else."""
    assert (fast.factory_id, fast.score, fast.reason) == (
        reference.factory_id,
        reference.score,
        reference.reason,
    )
    eligible = [c for c in reference.candidates if c.eligible]
    assert list(fast.candidates) == eligible[:explain_top]
    summary = fast.summary
    assert summary is not None
    assert summary.factories == len(reference.candidates)
    assert summary.eligible == len(eligible)
    excluded = [c for c in reference.candidates if not c.eligible]
    counts: dict[Exclusion, int] = {}
    for c in excluded:
        assert c.exclusion is not None
        counts[c.exclusion] = counts.get(c.exclusion, 0) + 1
    assert {e.kind: e.count for e in summary.exclusions} == counts
    assert [e.kind for e in summary.exclusions] == [k for k in Exclusion if k in counts]
    for e in summary.exclusions:
        assert 0 < len(e.examples) <= min(3, e.count)
        assert len({c.factory_id for c in e.examples}) == len(e.examples)
        assert all(c in excluded and c.exclusion == e.kind for c in e.examples)


@PROPERTY
@given(fleet=fleets(), request=requests(), w=weight_sets, explain_top=st.integers(0, 4))
def test_select_is_the_reference_pick_with_its_best_rows(fleet, request, w, explain_top):
    fast = FleetIndex(fleet).select(request, CTX, w, explain_top=explain_top)
    assert_same_as_reference(fast, select_factory(request, fleet, CTX, w), explain_top)


@PROPERTY
@given(data=st.data(), fleet=fleets(), request=requests(), w=weight_sets)
def test_the_decision_does_not_depend_on_the_order_factories_arrived_in(data, fleet, request, w):
    shuffled = data.draw(st.permutations(fleet))
    assert FleetIndex(fleet).select(request, CTX, w) == FleetIndex(shuffled).select(request, CTX, w)


# An operation on the index: a new or changed view, a removal, or new reservations.
operations = st.one_of(
    st.tuples(st.just("upsert"), st.sampled_from(FACTORY_IDS).flatmap(views)),
    st.tuples(st.just("remove"), st.sampled_from(FACTORY_IDS)),
    st.tuples(st.just("reserve"), st.sampled_from(FACTORY_IDS), st.integers(-1, 6)),
)


@PROPERTY
@given(
    fleet=fleets(),
    ops=st.lists(operations, max_size=12),
    request=requests(),
    w=weight_sets,
)
def test_incremental_updates_decide_as_a_fresh_build_and_the_reference(fleet, ops, request, w):
    index = FleetIndex(fleet)
    current = {f.id: f for f in fleet}
    for op in ops:
        if op[0] == "upsert":
            index.upsert(op[1])
            current[op[1].id] = op[1]
        elif op[1] in current:
            if op[0] == "remove":
                index.remove(op[1])
                del current[op[1]]
            else:
                index.set_reserved(op[1], op[2])
                current[op[1]] = dataclasses.replace(current[op[1]], reserved=op[2])
    assert sorted(index, key=lambda v: v.id) == sorted(current.values(), key=lambda v: v.id)
    fast = index.select(request, CTX, w)
    assert fast == FleetIndex(current.values()).select(request, CTX, w)
    assert_same_as_reference(fast, select_factory(request, list(current.values()), CTX, w), 5)


@pytest.mark.parametrize("seed", range(3))
def test_large_generated_fleets_pick_as_the_reference(seed):
    from bench.routing import build_scenario

    s = build_scenario(400, decisions=25, waiting_jobs=1, seed=seed)
    index = FleetIndex(s.fleet)
    for w in (W, ZERO, W.override({"costRate": 2.0, "load": 0.5, "affinity": 1.5})):
        for request in s.jobs:
            fast = index.select(request, s.ctx, w)
            assert_same_as_reference(fast, select_factory(request, s.fleet, s.ctx, w), 5)


def test_a_heartbeat_exactly_at_the_limit_is_eligible_and_one_microsecond_older_is_not():
    edge = factory("edge", heartbeat_age_s=LIMIT_S)
    older = dataclasses.replace(factory("older"), last_heartbeat_at=edge.last_heartbeat_at - US)
    decision = FleetIndex([edge, older]).select(job(), CTX, W)
    assert decision.factory_id == "edge"
    assert decision.summary is not None and decision.summary.eligible == 1
    [unhealthy] = decision.summary.exclusions
    assert unhealthy.kind == Exclusion.UNHEALTHY
    assert [c.factory_id for c in unhealthy.examples] == ["older"]


def test_a_factory_with_an_empty_id_decides_as_the_reference_previous_or_not():
    fleet = [factory("", slots=8, cost=0.0), factory("a", slots=8, cost=0.0, labels=["gpu"])]
    fleet += [factory(f"b{i}", slots=8, cost=0.0) for i in range(3)]
    for previous in (None, "", "a"):
        request = job(preferred=["gpu"], previous=previous)
        fast = FleetIndex(fleet).select(request, CTX, W, explain_top=2)
        assert_same_as_reference(fast, select_factory(request, fleet, CTX, W), 2)


def test_the_explanation_shows_the_best_rows_and_counts_the_rest():
    fleet = [factory(f"f{i}", slots=4, reserved=i % 4) for i in range(8)]
    fleet += [factory("off", status="cordoned"), factory("x", engines=["codex"])]
    decision = FleetIndex(fleet).select(job(), CTX, W, explain_top=2)
    lines = explain(decision)
    assert lines[0] == f"chose f0 (score {decision.score:.3f}), 8 of 10 factories eligible"
    assert lines[1].startswith("   1. f0: score ") and lines[2].startswith("   2. f4: score ")
    assert lines[3:] == [
        "   ... 6 more eligible, not shown",
        "   - 1 excluded (cordoned): off: cordoned by an operator",
        "   - 1 excluded (engine): x: does not offer engine claude",
    ]


def test_no_placement_explains_with_counts_only():
    fleet = [factory("a", reserved=2), factory("b", slots=1, reserved=1, heartbeat_age_s=1)]
    assert explain(FleetIndex(fleet).select(job(), CTX, W)) == [
        "no placement: all factories offering engine claude are full",
        "   - 2 excluded (full): a: all 2 slots taken; b: its only slot is taken",
    ]
    assert explain(FleetIndex().select(job(), CTX, W)) == ["no placement: no factories enrolled"]


def test_bad_calls_are_refused():
    with pytest.raises(ValueError, match="duplicate factory id 'a'"):
        FleetIndex([factory("a"), factory("a")])
    index = FleetIndex([factory("a")])
    with pytest.raises(KeyError):
        index.remove("nope")
    with pytest.raises(KeyError):
        index.set_reserved("nope", 1)
    with pytest.raises(ValueError, match="explain_top must be >= 0"):
        index.select(job(), CTX, W, explain_top=-1)


def test_the_index_reads_like_a_collection():
    index = FleetIndex([factory("a"), factory("b", status="revoked")])
    assert len(index) == 2 and "a" in index and "z" not in index
    index.set_reserved("a", 1)
    assert index.get("a") == factory("a", reserved=1)
    index.remove("b")
    assert [v.id for v in index] == ["a"] and index.get("b") is None
