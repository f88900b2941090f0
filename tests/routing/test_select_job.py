"""select_job: which waiting job takes a freed slot; priority first, aging so none starves."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing import FleetWeights, rank_jobs, select_job
from routing.filters import check
from tests.routing.builders import (
    CTX,
    MAX_AGE_S,
    PROPERTY,
    factory,
    factory_views,
    job,
    waiting_lists,
)

W = FleetWeights()


def pick(waiting, view=None, weights=W):
    choice = select_job(waiting, view or factory(), CTX, weights)
    return choice.job_id if choice else None


def test_higher_priority_wins_at_equal_age():
    waiting = [job("n", priority="normal", waited_s=60), job("h", priority="high", waited_s=60)]
    assert pick(waiting) == "h"


def test_an_old_low_job_beats_a_fresh_critical_one_once_aged_to_the_cap():
    low = job("low", priority="low", waited_s=2 * MAX_AGE_S)
    assert pick([low, job("crit", priority="critical", waited_s=0)]) == "low"


def test_before_the_cap_a_fresh_critical_job_still_wins():
    low = job("low", priority="low", waited_s=MAX_AGE_S / 2)
    assert pick([low, job("crit", priority="critical", waited_s=0)]) == "crit"


def test_equal_scores_go_to_the_longest_waiting_then_the_lowest_id():
    no_aging = W.override({"age": 0})
    assert pick([job("a", waited_s=10), job("b", waited_s=20)], weights=no_aging) == "b"
    assert pick([job("b", waited_s=10), job("a", waited_s=10)], weights=no_aging) == "a"


def test_jobs_the_factory_cannot_run_are_skipped():
    waiting = [
        job("devin", engine="devin", priority="critical"),
        job("gpu", capabilities=["gpu"], priority="critical"),
        job("ok", priority="low"),
    ]
    assert pick(waiting, factory(labels=["linux"])) == "ok"
    assert [c.job_id for c in rank_jobs(waiting, factory(labels=["gpu"]), CTX, W)] == [
        "gpu",
        "ok",
    ]


def test_the_freed_slot_is_handed_out_even_if_the_view_still_counts_it():
    assert pick([job("a")], factory(slots=1, reserved=1)) == "a"


@pytest.mark.parametrize(
    "view",
    [factory(status="cordoned"), factory(status="revoked"), factory(heartbeat_age_s=None)],
)
def test_an_unusable_factory_takes_nothing(view):
    assert pick([job("a")], view) is None


def test_no_waiting_job():
    assert select_job([], factory(), CTX, W) is None


def test_the_choice_carries_its_breakdown():
    choice = select_job([job("a", priority="high")], factory(), CTX, W)
    assert choice is not None
    assert {t.term: t.value for t in choice.breakdown}["priority"] == 0.75
    assert choice.score == pytest.approx(sum(t.contribution for t in choice.breakdown))


def test_duplicate_job_ids_are_rejected():
    with pytest.raises(ValueError, match="duplicate job id 'a'"):
        select_job([job("a"), job("a")], factory(), CTX, W)


@PROPERTY
@given(data=st.data(), waiting=waiting_lists, view=factory_views())
def test_picks_a_runnable_job_whatever_the_order(data, waiting, view):
    choice = select_job(waiting, view, CTX, W)
    shuffled = select_job(data.draw(st.permutations(waiting)), view, CTX, W)
    assert choice == shuffled
    runnable = [j for j in waiting if check(j, view, CTX, capacity=False) is None]
    assert (choice is None) == (not runnable)
    if choice is not None:
        assert choice.job_id in {j.job_id for j in runnable}
        assert choice.score == pytest.approx(max(c.score for c in rank_jobs(waiting, view, CTX, W)))
