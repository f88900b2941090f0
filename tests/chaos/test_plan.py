"""The chaos run's schedule: deterministic for a seed, every fault kind early, sane jobs."""

from __future__ import annotations

import pytest

from launch.chaos.plan import (
    BUDGET_PRODUCT,
    DAG_SIZE,
    FaultKind,
    plan_faults,
    plan_jobs,
)

FACTORIES = ["f1", "f2", "f3"]


def test_the_same_seed_gives_the_same_faults_and_another_seed_others() -> None:
    a = plan_faults(7, every_s=3, count=40, factories=FACTORIES, freeze_s=10)
    b = plan_faults(7, every_s=3, count=40, factories=FACTORIES, freeze_s=10)
    c = plan_faults(8, every_s=3, count=40, factories=FACTORIES, freeze_s=10)
    assert a == b
    assert a != c


def test_every_kind_comes_first_and_offsets_grow_about_every_s() -> None:
    faults = plan_faults(1, every_s=3, count=30, factories=FACTORIES, freeze_s=10)
    assert {f.kind for f in faults[: len(FaultKind)]} == set(FaultKind)
    for n, fault in enumerate(faults):
        assert 3 * (n + 1) <= fault.at_s <= 3 * (n + 1) + 0.75
    for fault in faults:
        factory_fault = fault.kind in (FaultKind.KILL_FACTORY, FaultKind.FREEZE_FACTORY)
        assert (fault.target in FACTORIES) if factory_fault else fault.target is None


def test_a_frozen_factory_is_never_the_target_of_another_fault() -> None:
    faults = plan_faults(3, every_s=1, count=200, factories=FACTORIES, freeze_s=7)
    frozen: dict[str, float] = {}
    for fault in faults:
        if fault.target is not None:
            assert frozen.get(fault.target, -1.0) < fault.at_s, fault
        if fault.kind is FaultKind.FREEZE_FACTORY:
            assert fault.target is not None and fault.hold_s == 7
            frozen[fault.target] = fault.at_s + fault.hold_s


def test_one_factory_frozen_turns_its_factory_faults_into_api_restarts() -> None:
    faults = plan_faults(0, every_s=1, count=50, factories=["only"], freeze_s=100)
    freeze = next(f for f in faults if f.kind is FaultKind.FREEZE_FACTORY)
    later = [f for f in faults if f.at_s > freeze.at_s]
    assert later and all(f.target is None for f in later)


def test_with_several_control_processes_each_restart_targets_one_of_them() -> None:
    one = plan_faults(4, every_s=2, count=120, factories=FACTORIES, freeze_s=10)
    three = plan_faults(4, every_s=2, count=120, factories=FACTORIES, freeze_s=10, controls=3)
    restarts = [f.target for f in three if f.kind is FaultKind.RESTART_CONTROL]
    assert set(restarts) == {"control-1", "control-2", "control-3"}
    # The schedule is the one a single control process gets: only the targets differ.
    assert [(f.at_s, f.kind, f.hold_s) for f in three] == [(f.at_s, f.kind, f.hold_s) for f in one]
    assert [f.target for f in three if f.kind is not FaultKind.RESTART_CONTROL] == [
        f.target for f in one if f.kind is not FaultKind.RESTART_CONTROL
    ]


def test_bad_fault_plans_are_refused() -> None:
    with pytest.raises(ValueError, match="factory"):
        plan_faults(0, every_s=1, count=1, factories=[], freeze_s=1)
    with pytest.raises(ValueError, match="every_s"):
        plan_faults(0, every_s=0, count=1, factories=FACTORIES, freeze_s=1)
    with pytest.raises(ValueError, match="at least one control process"):
        plan_faults(0, every_s=1, count=1, factories=FACTORIES, freeze_s=1, controls=0)
    with pytest.raises(ValueError, match="at least one job"):
        plan_jobs(0, 0)


def test_jobs_mix_products_priorities_locks_a_dag_and_a_budget_that_is_reached() -> None:
    plan = plan_jobs(5, 60)
    assert plan == plan_jobs(5, 60)
    assert plan.total_jobs == 60
    assert plan.dag is not None and len(plan.dag["children"]) == DAG_SIZE - 1
    assert len(plan.leaves) == 60 - DAG_SIZE
    assert {b["productId"] for b in plan.leaves} == set(plan.products)
    assert {b["priority"] for b in plan.leaves} == {"low", "normal", "high", "critical"}
    assert {b.get("lock") for b in plan.leaves} >= {None, *plan.locks}
    assert len({b["labels"]["chaosRef"] for b in plan.leaves}) == len(plan.leaves)
    budgeted = [b for b in plan.leaves if b["productId"] == BUDGET_PRODUCT]
    # The ceiling is below what the product's jobs cost together: it is reached.
    assert 0 < plan.budget_ceiling_usd < sum(b["params"]["costUsd"] for b in budgeted)


def test_the_ci_run_puts_a_job_of_the_budget_product_under_a_lock() -> None:
    # A job waiting on the ceiling must not hold its lock (it is admitted first): the CI
    # run (seed 12, 30 jobs) has one such job for the invariants to catch it if it did.
    plan = plan_jobs(12, 30)
    budgeted = [b for b in plan.leaves if b["productId"] == BUDGET_PRODUCT]
    assert [b["lock"] for b in budgeted if "lock" in b]


def test_a_small_run_has_no_dag() -> None:
    plan = plan_jobs(0, 2 * DAG_SIZE - 1)
    assert plan.dag is None and plan.total_jobs == len(plan.leaves) == 2 * DAG_SIZE - 1
