"""The fleet's figures for /metrics: counted by the store, cached, and scoped to the key."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gigafactory.models import (
    Event,
    Factory,
    FactoryStatus,
    Priority,
    Role,
    SlotReservation,
    SpendRecord,
    Stage,
    WaitReason,
)
from gigafactory.services import Services
from gigafactory.services.errors import Forbidden
from tests.services.conftest import NOW, Clock, key
from tests.store.conftest import make_job


async def _fleet(services: Services) -> None:
    store = services.store
    await store.create_factory(
        Factory(id="f1", engines=["sim"], slots=2, enrolled_at=NOW, last_heartbeat_at=NOW)
    )
    await store.create_factory(
        Factory(id="f2", engines=["sim"], slots=1, enrolled_at=NOW, status=FactoryStatus.CORDONED)
    )
    stages = [
        ("a1", "acme", Stage.RUNNING, None),
        ("a2", "acme", Stage.WAITING, WaitReason.CAPACITY),
        ("a3", "acme", Stage.WAITING, WaitReason.BUDGET),
        ("b1", "beta", Stage.SUCCEEDED, None),
        ("b2", "beta", Stage.WAITING, WaitReason.CAPACITY),
    ]
    for job_id, product, stage, reason in stages:
        await store.create_job(make_job(job_id, product, stage=stage, waitReason=reason))
        await store.touch_product(product, NOW)
    assert await store.reserve_slot(
        "f1",
        2,
        SlotReservation(
            job_id="a1", product_id="acme", epoch=1, priority=Priority.NORMAL, reserved_at=NOW
        ),
    )
    for run, product, usd in (("a1.1", "acme", 0.25), ("a1.2", "acme", 0.5), ("b1.1", "beta", 2)):
        await store.record_spend(
            SpendRecord(id=run, product_id=product, job_id=run[:2], usd=usd, at=NOW)
        )
    for n, (kind, product) in enumerate(
        [("fenced", "acme"), ("fenced", "acme"), ("preempted", "beta"), ("stage", "beta")]
    ):
        await store.append_event(
            Event(id=f"e{n}", job_id="x", product_id=product, at=NOW, kind=kind, actor="workflow")
        )


async def test_figures_count_what_the_store_holds(services: Services) -> None:
    await _fleet(services)
    figures = await services.metrics.figures(key(Role.OPERATOR))

    assert figures.jobs_by_stage[Stage.RUNNING.value] == 1
    assert figures.jobs_by_stage[Stage.WAITING.value] == 3
    assert figures.jobs_by_stage[Stage.SUCCEEDED.value] == 1
    assert sum(figures.jobs_by_stage.values()) == 5
    assert figures.waiting_by_reason[WaitReason.CAPACITY.value] == 2
    assert figures.waiting_by_reason[WaitReason.BUDGET.value] == 1
    f1, f2 = figures.factories
    assert (f1.factory_id, f1.slots, f1.used, f1.healthy) == ("f1", 2, 1, True)
    assert (f2.factory_id, f2.used, f2.healthy, f2.status) == ("f2", 0, False, "cordoned")
    by_product = {p.product_id: p for p in figures.products}
    assert by_product["acme"].spent_usd == pytest.approx(0.75)
    assert by_product["beta"].spent_usd == pytest.approx(2)
    assert (by_product["acme"].fenced_reports, by_product["acme"].preemptions) == (2, 0)
    assert (by_product["beta"].fenced_reports, by_product["beta"].preemptions) == (0, 1)


async def test_figures_name_only_the_keys_products(services: Services) -> None:
    await _fleet(services)
    figures = await services.metrics.figures(key(Role.OPERATOR, ["beta"]))
    assert [p.product_id for p in figures.products] == ["beta"]
    # What the fleet is (its jobs and factories) is not a product's secret at this role.
    assert sum(figures.jobs_by_stage.values()) == 5


async def test_figures_are_for_operators(services: Services) -> None:
    with pytest.raises(Forbidden):
        await services.metrics.figures(key(Role.SUBMITTER))


async def test_figures_are_reused_until_the_cache_ages(services: Services, clock: Clock) -> None:
    await _fleet(services)
    first = await services.metrics.figures(key(Role.OPERATOR))
    await services.store.create_job(make_job("a9", "acme", stage=Stage.RUNNING))

    clock.now = NOW + timedelta(seconds=services.settings.metrics_cache_s / 2)
    assert (await services.metrics.figures(key(Role.OPERATOR))).at == first.at
    clock.now = NOW + timedelta(seconds=services.settings.metrics_cache_s)
    again = await services.metrics.figures(key(Role.OPERATOR))
    assert again.jobs_by_stage[Stage.RUNNING.value] == 2
