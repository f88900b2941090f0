"""select_with_preemption: who is evicted for an urgent job, and why the others were not."""

from __future__ import annotations

import math

import pytest

from routing import (
    Exclusion,
    FleetWeights,
    PreemptionPolicy,
    RunningJob,
    select_with_preemption,
)
from tests.routing.builders import CTX, ago, factory, job

W = FleetWeights()
DEFAULT = PreemptionPolicy()
HIGH_TOO = PreemptionPolicy(preempting=frozenset({"high", "critical"}))


def running(
    job_id, factory_id="f1", *, priority="low", ran_s=600.0, preemptible=True, min_runtime_s=None
):
    return RunningJob(job_id, factory_id, priority, ago(ran_s), preemptible, min_runtime_s)


def plan_for(request, jobs, fleet, policy=DEFAULT):
    return select_with_preemption(request, jobs, fleet, CTX, W, policy)


def by_factory(plan):
    return {c.factory_id: c for c in plan.breakdown}


CRITICAL = job("urgent", priority="critical")
HIGH = job("urgent", priority="high")


def test_a_critical_job_evicts_the_low_job_on_a_full_single_slot_factory():
    plan = plan_for(CRITICAL, [running("l1")], [factory("f1", slots=1, reserved=1)])
    assert plan is not None
    assert plan.factory_id == "f1"
    assert plan.evict == ("l1",)
    assert "critical job urgent preempts 1 job on f1 (l1" in plan.reason
    assert "all factories offering engine claude are full" in plan.reason
    [row] = plan.breakdown
    assert row.chosen and row.feasible and row.needed == 1
    assert row.rejected_because is None
    assert row.work_lost_s == 600.0
    assert [(v.job_id, v.evicted) for v in row.considered] == [("l1", True)]


def test_high_never_evicts_high_or_critical():
    fleet = [factory("f1", slots=2, reserved=2)]
    jobs = [running("h1", priority="high"), running("c1", priority="critical")]
    assert plan_for(HIGH, jobs, fleet, HIGH_TOO) is None


def test_only_strictly_lower_priorities_are_victims():
    fleet = [factory("f1", slots=2, reserved=2)]
    jobs = [running("h1", priority="high"), running("n1", priority="normal")]
    plan = plan_for(HIGH, jobs, fleet, HIGH_TOO)
    assert plan is not None and plan.evict == ("n1",)
    [row] = plan.breakdown
    rejected = {v.job_id: v.ineligible_because for v in row.considered if not v.eligible}
    assert rejected == {"h1": "priority high is not lower than high"}


@pytest.mark.parametrize("priority", ["low", "normal"])
def test_a_non_preempting_priority_never_evicts(priority):
    fleet = [factory("f1", slots=1, reserved=1)]
    assert plan_for(job(priority=priority), [running("l1", priority="low")], fleet) is None


def test_by_default_only_critical_preempts():
    fleet = [factory("f1", slots=1, reserved=1)]
    assert plan_for(HIGH, [running("l1")], fleet) is None
    assert plan_for(HIGH, [running("l1")], fleet, HIGH_TOO) is not None
    plan = plan_for(CRITICAL, [running("l1")], fleet)
    assert plan is not None and plan.evict == ("l1",)


def test_the_policy_decides_which_priorities_preempt():
    fleet = [factory("f1", slots=1, reserved=1)]
    only_critical = PreemptionPolicy(preempting=frozenset({"critical"}))
    assert plan_for(HIGH, [running("l1")], fleet, only_critical) is None
    assert plan_for(CRITICAL, [running("l1")], fleet, only_critical) is not None
    normal_too = PreemptionPolicy(preempting=frozenset({"normal", "high", "critical"}))
    plan = plan_for(job(priority="normal"), [running("l1")], fleet, normal_too)
    assert plan is not None and plan.evict == ("l1",)


def test_a_victim_younger_than_the_minimum_runtime_is_not_evicted():
    fleet = [factory("f1", slots=1, reserved=1)]
    policy = PreemptionPolicy(min_runtime_s=60)
    assert plan_for(CRITICAL, [running("l1", ran_s=30)], fleet, policy) is None
    assert plan_for(CRITICAL, [running("l1", ran_s=60)], fleet, policy) is not None


def test_a_victims_own_minimum_runtime_overrides_the_policys():
    fleet = [factory("f1", slots=1, reserved=1)]
    policy = PreemptionPolicy(min_runtime_s=60)
    protected = running("l1", ran_s=600, min_runtime_s=900)
    assert plan_for(CRITICAL, [protected], fleet, policy) is None
    assert plan_for(CRITICAL, [running("l1", ran_s=900, min_runtime_s=900)], fleet, policy)
    eager = running("l1", ran_s=30, min_runtime_s=0)
    plan = plan_for(CRITICAL, [eager], fleet, policy)
    assert plan is not None and plan.evict == ("l1",)


def test_the_minimum_runtime_the_breakdown_names_is_the_victims_own():
    fleet = [factory("f1", slots=2, reserved=2)]
    jobs = [running("l1", ran_s=600, min_runtime_s=900), running("l2", ran_s=30)]
    plan = plan_for(CRITICAL, jobs, fleet, PreemptionPolicy(min_runtime_s=10))
    assert plan is not None and plan.evict == ("l2",)
    [row] = plan.breakdown
    reasons = {v.job_id: v.ineligible_because for v in row.considered}
    assert reasons == {"l1": "running 600s, under the minimum 900s", "l2": None}


def test_a_victims_minimum_runtime_is_validated():
    with pytest.raises(ValueError, match="running job r1: min_runtime_s must be a finite"):
        running("r1", min_runtime_s=-1.0)
    with pytest.raises(ValueError, match="running job r1: min_runtime_s must be a number"):
        running("r1", min_runtime_s=True)
    assert running("r1").min_runtime(PreemptionPolicy(min_runtime_s=5)) == 5
    assert running("r1", min_runtime_s=0).min_runtime(PreemptionPolicy(min_runtime_s=5)) == 0


def test_non_preemptible_jobs_and_never_preempt_priorities_are_not_evicted():
    fleet = [factory("f1", slots=3, reserved=3)]
    jobs = [
        running("pinned", preemptible=False),
        running("n1", priority="normal"),
        running("h1", priority="high"),
    ]
    policy = PreemptionPolicy(never_preempt=frozenset({"normal"}))
    plan = plan_for(CRITICAL, jobs, fleet, policy)
    assert plan is not None and plan.evict == ("h1",)
    [row] = plan.breakdown
    reasons = {v.job_id: v.ineligible_because for v in row.considered}
    assert reasons == {
        "h1": None,
        "n1": "priority normal is never preempted",
        "pinned": "not preemptible",
    }


def test_fits_without_preemption_returns_none():
    fleet = [factory("f1", slots=1, reserved=1), factory("f2", slots=2, reserved=1)]
    assert plan_for(CRITICAL, [running("l1"), running("l2", "f2")], fleet) is None


def test_picks_the_factory_needing_fewer_victims():
    fleet = [factory("a", slots=2, reserved=3), factory("b", slots=2, reserved=2)]
    jobs = [running("a1", "a"), running("a2", "a"), running("a3", "a")]
    jobs += [running("b1", "b", priority="normal"), running("b2", "b", priority="normal")]
    plan = plan_for(CRITICAL, jobs, fleet)
    assert plan is not None
    assert (plan.factory_id, plan.evict) == ("b", ("b1",))  # b1 and b2 tie: by id
    assert by_factory(plan)["a"].needed == 2
    assert by_factory(plan)["a"].rejected_because == "needs 2 jobs evicted, b needs 1"


def test_at_equal_count_the_lower_priority_victims_win():
    fleet = [factory("a", slots=1, reserved=1), factory("b", slots=1, reserved=1)]
    jobs = [running("a1", "a", priority="normal"), running("b1", "b", priority="low")]
    plan = plan_for(CRITICAL, jobs, fleet)
    assert plan is not None and plan.evict == ("b1",)
    assert by_factory(plan)["a"].rejected_because == "would evict priority normal, b at most low"


def test_at_equal_highest_priority_the_lower_sum_wins():
    fleet = [factory("a", slots=2, reserved=3), factory("b", slots=2, reserved=3)]
    jobs = [running(f"a{i}", "a", priority="normal") for i in range(3)]
    jobs += [running("b0", "b", priority="normal"), running("b1", "b", priority="low")]
    jobs += [running("b2", "b", priority="high")]
    plan = plan_for(CRITICAL, jobs, fleet)
    assert plan is not None
    assert (plan.factory_id, plan.evict) == ("b", ("b1", "b0"))
    assert "higher priorities in total than b" in by_factory(plan)["a"].rejected_because


def test_the_highest_victim_priority_counts_before_the_sum():
    # a: three normal victims (sum 3, at most normal); b: low, low, high (sum 2, up to high).
    fleet = [factory("a", slots=1, reserved=3), factory("b", slots=1, reserved=3)]
    jobs = [running(f"a{i}", "a", priority="normal") for i in range(3)]
    jobs += [running("b0", "b"), running("b1", "b"), running("b2", "b", priority="high")]
    plan = plan_for(CRITICAL, jobs, fleet)
    assert plan is not None and plan.factory_id == "a"
    assert by_factory(plan)["b"].rejected_because == "would evict priority high, a at most normal"


def test_at_equal_priority_the_least_work_lost_wins():
    fleet = [factory("a", slots=1, reserved=1), factory("b", slots=1, reserved=1)]
    jobs = [running("a1", "a", ran_s=300), running("b1", "b", ran_s=900)]
    plan = plan_for(CRITICAL, jobs, fleet)
    assert plan is not None and plan.evict == ("a1",)
    assert by_factory(plan)["b"].rejected_because == "would lose 900s of work, a 300s"


def test_on_one_factory_the_shortest_running_victim_is_evicted():
    fleet = [factory("f1", slots=2, reserved=2)]
    jobs = [running("old", ran_s=3600), running("young", ran_s=60)]
    plan = plan_for(CRITICAL, jobs, fleet)
    assert plan is not None and plan.evict == ("young",)


def test_at_equal_disruption_the_better_scoring_factory_wins_then_the_id():
    fleet = [factory("a", slots=1, reserved=1, cost=9.0), factory("b", slots=1, reserved=1)]
    jobs = [running("a1", "a"), running("b1", "b")]
    plan = plan_for(CRITICAL, jobs, fleet)
    assert plan is not None and plan.factory_id == "b"
    assert by_factory(plan)["a"].rejected_because.startswith("scores ")
    twins = [factory("b", slots=1, reserved=1), factory("a", slots=1, reserved=1)]
    plan = plan_for(CRITICAL, jobs, twins)
    assert plan is not None and plan.factory_id == "a"
    assert by_factory(plan)["b"].rejected_because == "ties with a, which sorts first by id"


def test_hard_filters_hold_even_for_a_factory_full_of_low_jobs():
    fleet = [
        factory("codex", engines=["codex"], slots=1, reserved=1),
        factory("cordoned", slots=1, reserved=1, status="cordoned"),
        factory("stale", slots=1, reserved=1, heartbeat_age_s=60),
        factory("plain", slots=1, reserved=1),
        factory("gpu", labels=["gpu"], slots=2, reserved=3),
    ]
    jobs = [running(f"{f.id}-1", f.id) for f in fleet] + [running("gpu-2", "gpu")]
    request = job("urgent", priority="critical", capabilities=["gpu"])
    plan = plan_for(request, jobs, fleet)
    assert plan is not None and plan.factory_id == "gpu"
    assert len(plan.evict) == 2
    rows = by_factory(plan)
    assert rows["codex"].exclusion == Exclusion.ENGINE
    assert rows["codex"].rejected_because == "excluded: does not offer engine claude"
    assert rows["cordoned"].exclusion == Exclusion.CORDONED
    assert rows["stale"].exclusion == Exclusion.UNHEALTHY
    assert rows["plain"].exclusion == Exclusion.CAPABILITIES
    assert not any(r.feasible for r in plan.breakdown if r.factory_id != "gpu")


def test_no_plan_when_no_factory_passing_the_filters_can_be_freed():
    fleet = [
        factory("codex", engines=["codex"], slots=1, reserved=1),
        factory("f1", slots=1, reserved=1),
    ]
    jobs = [running("c1", "codex"), running("h1", "f1", priority="critical")]
    assert plan_for(CRITICAL, jobs, fleet) is None


def test_the_breakdown_says_why_each_factory_was_rejected():
    fleet = [
        factory("best", slots=1, reserved=1),
        factory("more", slots=1, reserved=2),
        factory("few", slots=2, reserved=3),
        factory("empty", slots=1, reserved=1),
        factory("none", slots=0, reserved=0),
        factory("down", slots=1, reserved=1, healthy=False),
    ]
    jobs = [running("b1", "best"), running("m1", "more"), running("m2", "more")]
    jobs += [running("f1", "few"), running("f2", "few", priority="critical")]
    plan = plan_for(CRITICAL, jobs, fleet)
    assert plan is not None and plan.factory_id == "best"
    order = [r.factory_id for r in plan.breakdown]
    assert order == ["best", "more", "down", "empty", "few", "none"]  # feasible, then by id
    reasons = {r.factory_id: r.rejected_because for r in plan.breakdown}
    assert reasons == {
        "best": None,
        "more": "needs 2 jobs evicted, best needs 1",
        "down": "excluded: reports itself unhealthy",
        "empty": "needs 1 job evicted, but no known job runs on it",
        "few": "needs 2 jobs evicted, only 1 of its 2 running may be",
        "none": "has no slots",
    }
    assert [r.chosen for r in plan.breakdown] == [True] + [False] * 5


def test_reservations_without_a_known_job_still_count():
    # Three reservations on two slots, one of them still starting: two victims needed.
    fleet = [factory("f1", slots=2, reserved=3)]
    assert plan_for(CRITICAL, [running("l1")], fleet) is None
    plan = plan_for(CRITICAL, [running("l1"), running("l2")], fleet)
    assert plan is not None and plan.evict == ("l1", "l2")


def test_jobs_running_on_other_or_unknown_factories_are_not_victims():
    fleet = [factory("f1", slots=1, reserved=1), factory("f2", engines=["codex"])]
    jobs = [running("elsewhere", "f2"), running("ghost", "gone")]
    assert plan_for(CRITICAL, jobs, fleet) is None


def test_duplicate_running_job_ids_are_rejected():
    with pytest.raises(ValueError, match="duplicate running job id 'l1'"):
        plan_for(CRITICAL, [running("l1"), running("l1", "f2")], [factory("f1")])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"preempting": frozenset({"urgent", "high"})}, "preempting: unknown priorities 'urgent'"),
        ({"never_preempt": frozenset({"x", "y"})}, "never_preempt: unknown priorities 'x', 'y'"),
        ({"preempting": "critical"}, "must be a set of priorities"),
        ({"min_runtime_s": -1.0}, "min_runtime_s must be a finite number >= 0"),
        ({"min_runtime_s": math.nan}, "min_runtime_s must be a finite number >= 0"),
        ({"min_runtime_s": True}, "min_runtime_s must be a number"),
    ],
)
def test_policy_is_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PreemptionPolicy(**kwargs)


def test_policy_defaults_and_set_coercion():
    policy = PreemptionPolicy()
    assert policy.preempting == frozenset({"critical"})
    assert policy.never_preempt == frozenset()
    assert policy.min_runtime_s == 0.0
    assert PreemptionPolicy(never_preempt={"low"}).never_preempt == frozenset({"low"})  # type: ignore[arg-type]


def test_running_job_priority_is_validated():
    with pytest.raises(ValueError, match="running job r1: unknown priorities 'urgent'"):
        running("r1", priority="urgent")
