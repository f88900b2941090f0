"""The routing micro-benchmark, run tiny: its report's shape and the validity of every decision.

No timing assertions: the figures depend on the machine and its load; only their presence
and the decisions' correctness are checked here.
"""

from __future__ import annotations

import dataclasses

import pytest

from bench.routing import (
    OPERATIONS,
    RoutingBenchReport,
    build_scenario,
    check_job_choice,
    check_placement,
    check_preemption,
    fifo,
    first_fit,
    first_victim,
    render_routing_report,
    run_routing_bench,
    same_placement,
    same_plan,
)
from routing import FleetIndex, FleetWeights, select_factory, select_job
from routing.filters import check, factory_exclusion, job_exclusion

W = FleetWeights()
FACTORIES = 50
DECISIONS = 4


@pytest.fixture(scope="module")
def report() -> RoutingBenchReport:
    return run_routing_bench(
        factory_counts=(FACTORIES,),
        decisions=DECISIONS,
        seed=0,
        waiting_jobs=60,
        repeats=2,
        warmup=1,
        min_run_s=0.0,
    )


def expected_operations(report: RoutingBenchReport) -> list[str]:
    skipped = any(note.startswith("select_with_preemption") for note in report.skipped)
    return [op for op in OPERATIONS if not (skipped and op == "select_with_preemption")]


def test_the_report_has_every_operation_with_positive_rates(report):
    assert [r.operation for r in report.results] == expected_operations(report)
    for r in report.results:
        assert r.factories == FACTORIES
        for rates in (r.ours, r.naive, r.filtered):
            assert rates.inputs == DECISIONS
            assert rates.passes >= 1
            assert rates.decisions_per_run == DECISIONS * rates.passes
            assert len(rates.per_run) == 2
            assert all(rate > 0 for rate in rates.per_run)
            assert rates.median > 0
        assert r.ratio > 0
        assert r.filtered_ratio > 0
    assert report.result("select_job", FACTORIES).baseline == "FIFO"
    with pytest.raises(KeyError):
        report.result("select_job", 7)


def test_every_routing_decision_was_valid(report):
    assert report.all_valid
    for r in report.results:
        assert r.checked == DECISIONS
        assert r.valid == DECISIONS, r.problems
        assert r.problems == ()
        assert 0 <= r.naive_unsafe <= DECISIONS
    assert sum(r.placed for r in report.results) > 0


def test_the_fleet_is_described(report):
    [fleet] = report.fleets
    assert fleet.factories == FACTORIES
    assert 0 < fleet.schedulable <= FACTORIES
    assert fleet.schedulable + fleet.cordoned + fleet.revoked + fleet.unhealthy == FACTORIES
    assert 0 <= fleet.free_slots <= fleet.slots
    if not report.skipped:
        assert fleet.running == fleet.slots


def test_the_rendering_names_every_operation_and_the_baselines(report):
    text = render_routing_report(report)
    for op in expected_operations(report):
        label, baseline = OPERATIONS[op]
        assert label in text
        assert f"({baseline})" in text
    assert f"{DECISIONS}/{DECISIONS}" in text
    assert "INVALID" not in text
    assert "VS NAIVE" in text


def test_the_scenario_is_deterministic_and_depends_on_the_seed():
    a = build_scenario(FACTORIES, decisions=DECISIONS, waiting_jobs=30, seed=1)
    b = build_scenario(FACTORIES, decisions=DECISIONS, waiting_jobs=30, seed=1)
    c = build_scenario(FACTORIES, decisions=DECISIONS, waiting_jobs=30, seed=2)
    assert a == b
    assert a.fleet != c.fleet
    assert len(a.fleet) == FACTORIES and len(a.jobs) == DECISIONS and len(a.waiting) == 30
    assert len({f.id for f in a.fleet}) == FACTORIES
    assert all(1 <= f.slots <= 8 and 0 <= f.reserved <= f.slots for f in a.fleet)
    assert all(f.reserved == f.slots for f in a.full_fleet)
    waited = [j.waiting_since for j in a.waiting if j.waiting_since is not None]
    assert len(waited) == 30 and waited == sorted(waited)  # a FIFO queue: oldest first
    assert all(factory_exclusion(f, a.ctx) is None for f in a.freed)
    assert all(j.priority == "critical" for j in a.critical)


def test_routing_decisions_pass_the_hard_filters_independently_of_the_bench():
    s = build_scenario(FACTORIES, decisions=10, waiting_jobs=60, seed=3)
    for job in s.jobs:
        decision = select_factory(job, s.fleet, s.ctx, W)
        if decision.factory_id is None:
            assert all(check(job, f, s.ctx) is not None for f in s.fleet)
        else:
            [chosen] = [f for f in s.fleet if f.id == decision.factory_id]
            assert check(job, chosen, s.ctx) is None
    for factory in s.freed:
        choice = select_job(s.waiting, factory, s.ctx, W)
        assert choice is not None
        [picked] = [j for j in s.waiting if j.job_id == choice.job_id]
        assert job_exclusion(picked, factory) is None


def test_the_placement_check_catches_a_bad_choice():
    s = build_scenario(FACTORIES, decisions=10, waiting_jobs=10, seed=0)
    job = next(j for j in s.jobs if select_factory(j, s.fleet, s.ctx, W).factory_id is not None)
    good = select_factory(job, s.fleet, s.ctx, W)
    assert check_placement(job, s.fleet, s.ctx, W, good) is None
    excluded = next(c for c in good.candidates if not c.eligible)
    bad = dataclasses.replace(good, factory_id=excluded.factory_id)
    assert "excluded" in (check_placement(job, s.fleet, s.ctx, W, bad) or "")
    missed = dataclasses.replace(good, factory_id=None)
    assert "not placed" in (check_placement(job, s.fleet, s.ctx, W, missed) or "")
    other = FleetWeights(load=9.0)
    assert "weights" in (check_placement(job, s.fleet, s.ctx, other, good) or "")


def test_the_job_choice_check_catches_a_job_the_factory_cannot_run():
    s = build_scenario(FACTORIES, decisions=4, waiting_jobs=60, seed=0)
    factory = s.freed[0]
    choice = select_job(s.waiting, factory, s.ctx, W)
    assert check_job_choice(s.waiting, factory, s.ctx, choice) is None
    assert choice is not None
    wrong = next(j for j in s.waiting if job_exclusion(j, factory) is not None)
    bad = dataclasses.replace(choice, job_id=wrong.job_id)
    assert "cannot run" in (check_job_choice(s.waiting, factory, s.ctx, bad) or "")
    assert "picked nothing" in (check_job_choice(s.waiting, factory, s.ctx, None) or "")


def test_the_preemption_check_catches_a_bad_plan():
    preempt = pytest.importorskip("routing.preempt")
    s = build_scenario(FACTORIES, decisions=10, waiting_jobs=10, seed=0)
    policy = preempt.PreemptionPolicy(min_runtime_s=300.0)
    plans = [
        (job, preempt.select_with_preemption(job, s.running, s.full_fleet, s.ctx, W, policy))
        for job in s.critical
    ]
    job, plan = next((j, p) for j, p in plans if p is not None)
    assert check_preemption(job, s.running, s.full_fleet, s.ctx, policy, plan) is None
    elsewhere = next(r for r in s.running if r.factory_id != plan.factory_id)
    moved = dataclasses.replace(plan, evict=(elsewhere.job_id,) * len(plan.evict))
    assert check_preemption(job, s.running, s.full_fleet, s.ctx, policy, moved)
    protected = next(r for r in s.running if not r.preemptible)
    nothing_evicted = dataclasses.replace(plan, factory_id=protected.factory_id, evict=())
    assert check_preemption(job, s.running, s.full_fleet, s.ctx, policy, nothing_evicted)
    problem = check_preemption(job, s.running, s.full_fleet, s.ctx, policy, None)
    assert "no plan" in (problem or "")


def test_the_naive_baselines_do_what_they_say():
    s = build_scenario(FACTORIES, decisions=10, waiting_jobs=60, seed=0)
    for job in s.jobs:
        pick = first_fit(job, s.fleet)
        assert pick is not None
        assert job.engine in pick.engines and pick.reserved < pick.slots
        before = s.fleet[: s.fleet.index(pick)]
        assert not any(job.engine in f.engines and f.reserved < f.slots for f in before)
    for factory in s.freed:
        waiting = fifo(s.waiting, factory)
        assert waiting is not None and waiting.engine in factory.engines
    if s.running:
        by_id = {f.id: f for f in s.full_fleet}
        victim = first_victim(s.critical[0], s.running, by_id)
        assert victim is not None and victim.priority in ("low", "normal")
        assert s.critical[0].engine in by_id[victim.factory_id].engines


def test_the_fast_path_is_measured_beside_the_reference_and_decides_the_same(report):
    for r in report.results:
        if r.operation == "select_job":
            assert r.reference is None and r.same is None and r.reference_ratio == 0.0
            continue
        assert r.reference is not None
        assert r.reference.inputs == DECISIONS and all(rate > 0 for rate in r.reference.per_run)
        assert r.reference_ratio > 0
        assert r.same == DECISIONS


def test_index_updates_are_measured_beside_a_rebuild(report):
    [update] = report.updates
    assert update.factories == FACTORIES
    assert update.incremental.inputs == 2 * DECISIONS  # a reservation and its release each
    assert update.rebuild.inputs == 2
    for rates in (update.incremental, update.rebuild):
        assert len(rates.per_run) == 2 and all(rate > 0 for rate in rates.per_run)
    assert update.ratio > 0
    assert update.valid == update.checked == DECISIONS


def test_the_rendering_shows_the_reference_and_the_updates(report):
    text = render_routing_report(report)
    assert "VS REFERENCE" in text and "SAME" in text
    assert "set_reserved (reserve, release)" in text and "VS REBUILD" in text
    assert "DIFFERS" not in text


def test_the_placement_check_accepts_a_fast_decision_and_catches_a_bad_one():
    s = build_scenario(FACTORIES, decisions=10, waiting_jobs=10, seed=0)
    index = FleetIndex(s.fleet)
    job = next(j for j in s.jobs if index.select(j, s.ctx, W).factory_id is not None)
    fast = index.select(job, s.ctx, W)
    assert check_placement(job, s.fleet, s.ctx, W, fast) is None
    assert same_placement(fast, select_factory(job, s.fleet, s.ctx, W))
    assert fast.summary is not None
    excluded = fast.summary.exclusions[0].examples[0]
    bad = dataclasses.replace(fast, factory_id=excluded.factory_id)
    assert "excluded" in (check_placement(job, s.fleet, s.ctx, W, bad) or "")
    assert not same_placement(bad, select_factory(job, s.fleet, s.ctx, W))
    unrowed = dataclasses.replace(fast, candidates=())
    assert "without its row" in (check_placement(job, s.fleet, s.ctx, W, unrowed) or "")


def test_plans_are_the_same_only_when_factory_victims_reason_and_rows_are():
    preempt = pytest.importorskip("routing.preempt")
    s = build_scenario(FACTORIES, decisions=10, waiting_jobs=10, seed=0)
    policy = preempt.PreemptionPolicy(min_runtime_s=300.0)
    index = FleetIndex(s.full_fleet)
    job = s.critical[0]
    reference = preempt.select_with_preemption(job, s.running, s.full_fleet, s.ctx, W, policy)
    fast = index.plan_preemption(job, s.running, s.ctx, W, policy)
    assert fast is not None and same_plan(fast, reference)
    assert same_plan(None, None) and not same_plan(fast, None) and not same_plan(None, fast)
    assert not same_plan(dataclasses.replace(fast, evict=()), reference)
    other_row = (dataclasses.replace(fast.breakdown[0], score=-1.0),)
    assert not same_plan(dataclasses.replace(fast, breakdown=other_row), reference)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"factory_counts": ()},
        {"factory_counts": (0,)},
        {"decisions": 0},
        {"repeats": 0},
        {"waiting_jobs": 0},
        {"warmup": -1},
    ],
)
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(ValueError):
        run_routing_bench(**kwargs)
