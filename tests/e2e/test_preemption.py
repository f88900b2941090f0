"""Preemption on the real dev server (FLEET_PREEMPTION on): a critical job evicts a low one,
which resumes from its checkpoint under epoch 2 and succeeds; its stale report is fenced.
With the flag off the critical job waits and nothing is evicted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from launch.devserver import TemporalDevServer
from tests.e2e.conftest import fleet_settings, open_fleet
from tests.e2e.harness import Fleet, unique_label
from tests.e2e.test_cli import cli
from tests.replay.recording import record_history

pytestmark = pytest.mark.temporal


@pytest.fixture(scope="module")
async def preempting_fleet(
    temporal_server: TemporalDevServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Fleet]:
    settings = fleet_settings(
        temporal_server.address, tmp_path_factory.mktemp("preempt-fleet"), preemption=True
    )
    async with open_fleet(settings) as fleet:
        yield fleet


def sim(
    label: str, priority: str, duration: float, cost: float = 0.0, product: str = "preempt"
) -> dict[str, Any]:
    return {
        "engine": "sim",
        "prompt": f"{priority} work",
        "productId": product,
        "priority": priority,
        "capabilities": [label],
        "params": {"durationS": duration, "costUsd": cost},
    }


async def test_critical_evicts_low_which_resumes_from_its_checkpoint(
    preempting_fleet: Fleet,
) -> None:
    fleet = preempting_fleet
    label = unique_label()
    factory = await fleet.start_factory(engines=["sim"], labels=[label], slots=1)
    low = await fleet.submit(sim(label, "low", duration=4, cost=0.4))
    await fleet.wait_for(low["id"], ["running"])
    await fleet.wait_for_progress(low["id"], min_elapsed_s=1.0)

    critical = await fleet.submit(sim(label, "critical", duration=0.5))
    await fleet.wait_for(critical["id"], ["succeeded"], timeout=60)
    done = await fleet.wait_for(low["id"], ["succeeded"], timeout=60)
    assert done["leaseEpoch"] == 2

    events = await fleet.events(low["id"])
    preempted = [e for e in events if e["kind"] == "preempted"]
    assert len(preempted) == 1
    assert preempted[0]["data"]["preemptor"] == critical["id"]
    assert critical["id"] in preempted[0]["reason"]
    assert preempted[0]["stage"] == "queued"

    runs = await fleet.runs(low["id"])
    assert [(r["epoch"], r["outcome"]) for r in runs] == [(1, "preempted"), (2, "succeeded")]
    first, second = runs
    resumed_at = first["checkpoint"]["elapsedS"]
    assert resumed_at >= 1.0, "the checkpoint of the evicted run is kept"
    # Epoch 2 did only the rest of the work, and the total cost is counted once.
    assert done["costUsd"] == pytest.approx(0.4, abs=0.02)

    dispatched = next(
        e for e in await fleet.events(critical["id"]) if e.get("stage") == "dispatched"
    )
    assert dispatched["data"]["preemption"]["evict"] == [low["id"]]
    assert dispatched["data"]["factoryId"] == factory.id

    # The zombie of epoch 1 reports late: refused and recorded.
    r = await fleet.http.post(
        f"/fleet/jobs/{low['id']}/log",
        json={"productId": "preempt", "epoch": 1, "seq": 999, "text": "late line\n"},
        headers=fleet.auth(factory.token),
    )
    assert r.status_code == 409, r.text
    fenced = [e for e in await fleet.events(low["id"]) if e["kind"] == "fenced"]
    assert fenced and fenced[-1]["epoch"] == 1
    await record_history(fleet.client, "leaf-preempted", done["workflowId"])


async def high_may_preempt(fleet: Fleet, product: str) -> None:
    """Give `product` a preemption policy in which high jobs preempt too."""
    r = await fleet.http.put(
        f"/fleet/routing/weights/{product}",
        json={"weights": {}, "preemption": {"preemptingPriorities": ["high", "critical"]}},
        headers=fleet.auth(),
    )
    assert r.status_code == 200, r.text
    assert r.json()["effectivePreemption"]["preemptingPriorities"] == ["high", "critical"]


@pytest.mark.parametrize(
    ("running", "arriving", "product"),
    [("high", "high", "preempthigh"), ("low", "normal", "preempt"), ("low", "high", "preempt")],
    ids=["high-never-evicts-high", "normal-does-not-preempt", "high-does-not-by-default"],
)
async def test_no_eviction_of_equal_priority_or_by_a_non_preempting_one(
    preempting_fleet: Fleet, running: str, arriving: str, product: str
) -> None:
    fleet = preempting_fleet
    if product == "preempthigh":
        # High preempts in this product, so only "never an equal priority" holds it back.
        await high_may_preempt(fleet, product)
    label = unique_label()
    await fleet.start_factory(engines=["sim"], labels=[label], slots=1)
    first = await fleet.submit(sim(label, running, duration=2, product=product))
    await fleet.wait_for(first["id"], ["running"])
    second = await fleet.submit(sim(label, arriving, duration=0.2, product=product))
    await fleet.wait_for(second["id"], ["waiting"])
    done = await fleet.wait_for(first["id"], ["succeeded"], timeout=30)
    assert done["leaseEpoch"] == 1
    await fleet.wait_for(second["id"], ["succeeded"], timeout=30)
    assert [e for e in await fleet.events(first["id"]) if e["kind"] == "preempted"] == []


async def test_a_product_policy_lets_high_jobs_preempt(preempting_fleet: Fleet) -> None:
    """Only critical jobs preempt by default; a product may let its high jobs preempt too."""
    fleet = preempting_fleet
    await high_may_preempt(fleet, "preempthigh")
    label = unique_label()
    await fleet.start_factory(engines=["sim"], labels=[label], slots=1)
    low = await fleet.submit(sim(label, "low", duration=30, product="preempthigh"))
    await fleet.wait_for(low["id"], ["running"])
    high = await fleet.submit(sim(label, "high", duration=0.2, product="preempthigh"))
    await fleet.wait_for(high["id"], ["succeeded"], timeout=60)
    preempted = [e for e in await fleet.events(low["id"]) if e["kind"] == "preempted"]
    assert [e["data"]["preemptor"] for e in preempted] == [high["id"]]
    await fleet.http.patch(
        f"/fleet/jobs/{low['id']}", json={"action": "cancel"}, headers=fleet.auth()
    )
    await fleet.wait_for(low["id"], ["cancelled"], timeout=30)


async def test_flag_off_the_critical_job_waits(fleet: Fleet) -> None:
    label = unique_label()
    await fleet.start_factory(engines=["sim"], labels=[label], slots=1)
    low = await fleet.submit(sim(label, "low", duration=2))
    await fleet.wait_for(low["id"], ["running"])
    critical = await fleet.submit(sim(label, "critical", duration=0.2))
    waiting = await fleet.wait_for(critical["id"], ["waiting"])
    assert "full" in waiting["stageReason"]
    assert (await fleet.wait_for(low["id"], ["succeeded"], timeout=30))["leaseEpoch"] == 1
    await fleet.wait_for(critical["id"], ["succeeded"], timeout=30)
    assert [e for e in await fleet.events(low["id"]) if e["kind"] == "preempted"] == []


async def test_route_plan_dry_runs_preemption_without_acting(
    preempting_fleet: Fleet, tmp_path: Path
) -> None:
    fleet = preempting_fleet
    label = unique_label()
    factory = await fleet.start_factory(engines=["sim"], labels=[label], slots=1)
    low = await fleet.submit(sim(label, "low", duration=3))
    await fleet.wait_for(low["id"], ["running"])
    spec = tmp_path / "urgent.md"
    spec.write_text(
        f"| engine | priority | capabilities | product |\n|---|---|---|---|\n"
        f"| sim | critical | {label} | preempt |\n\nurgent\n"
    )
    r = await fleet.http.post(
        "/fleet/routing/plan",
        json={"spec": spec.read_text()},
        headers=fleet.auth(),
    )
    assert r.status_code == 200, r.text
    plan = r.json()
    assert plan["factoryId"] is None and plan["preemptionEnabled"] is True
    assert plan["preemption"]["evict"] == [low["id"]]
    assert plan["preemption"]["factoryId"] == factory.id

    shown = await cli(fleet, "route", "plan", str(spec))
    assert shown.returncode == 0, shown.stderr
    assert f"would preempt {low['id']} on {factory.id}" in shown.stdout

    # A dry run: the low job was not touched.
    done = await fleet.wait_for(low["id"], ["succeeded"], timeout=30)
    assert done["leaseEpoch"] == 1

    fits = await cli(fleet, "route", "plan", str(spec))
    assert f"plan -> {factory.id}" in fits.stdout and "preempt" not in fits.stdout
