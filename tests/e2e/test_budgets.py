"""Per-product budgets on the real dev server (FLEET_BUDGETS on): admission against the
ceiling, pause at the ceiling while other products run, manual pause and resume in priority
order; and with the flag off, nothing waits."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.service import RPCError, RPCStatusCode

from gigafactory.contracts import product_workflow_id
from launch.devserver import TemporalDevServer
from tests.e2e.conftest import fleet_settings, open_fleet
from tests.e2e.harness import Fleet, parse_time, unique_label
from tests.e2e.test_cli import cli
from tests.replay.recording import record_history

pytestmark = pytest.mark.temporal


@pytest.fixture(scope="module")
async def budget_fleet(
    temporal_server: TemporalDevServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Fleet]:
    data_dir: Path = tmp_path_factory.mktemp("budget-fleet")
    async with open_fleet(fleet_settings(temporal_server.address, data_dir, budgets=True)) as f:
        yield f


def product() -> str:
    return f"b{uuid.uuid4().hex[:8]}"


def sim(label: str, product_id: str, *, estimate: float, cost: float, **extra: Any) -> dict:
    body: dict[str, Any] = {
        "engine": "sim",
        "prompt": "spend",
        "productId": product_id,
        "capabilities": [label],
        "estimatedCostUsd": estimate,
        "params": {"durationS": 0.3, "costUsd": cost},
    }
    body.update(extra)
    return body


async def set_budget(fleet: Fleet, product_id: str, **config: Any) -> dict[str, Any]:
    r = await fleet.http.put(f"/fleet/budgets/{product_id}", json=config, headers=fleet.auth())
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def budget(fleet: Fleet, product_id: str) -> dict[str, Any]:
    body: dict[str, Any] = await fleet.get(f"/fleet/budgets/{product_id}")
    return body


async def test_ceiling_admits_waits_and_pauses_one_product_only(budget_fleet: Fleet) -> None:
    fleet = budget_fleet
    label = unique_label()
    await fleet.start_factory(engines=["sim"], labels=[label], slots=2)
    p, other = product(), product()
    await set_budget(fleet, p, ceilingUsd=1.0)

    first = await fleet.submit(sim(label, p, estimate=0.5, cost=0.7))
    await fleet.wait_for(first["id"], ["succeeded"])
    second = await fleet.submit(sim(label, p, estimate=0.5, cost=0.1))
    waiting = await fleet.wait_for(second["id"], ["waiting"], reason_contains="exceed")
    assert "$1.00 ceiling" in waiting["stageReason"]
    assert waiting["waitReason"] == "budget"

    # Another product is not affected.
    free = await fleet.submit(sim(label, other, estimate=100, cost=1))
    await fleet.wait_for(free["id"], ["succeeded"])

    # A small one still fits; its spend crosses the ceiling and pauses the product.
    third = await fleet.submit(sim(label, p, estimate=0.2, cost=0.4))
    await fleet.wait_for(third["id"], ["succeeded"])
    view = await budget(fleet, p)
    assert view["spentUsd"] == pytest.approx(1.1)
    assert (view["status"], view["source"]) == ("paused", "controller")
    assert view["overspentUsd"] == pytest.approx(0.1), "the in-flight estimate was $0.20 short"
    assert "ceiling" in view["reason"]
    assert {e["id"] for e in view["ledger"]} == {f"{first['id']}.1", f"{third['id']}.1"}
    assert (await fleet.job(second["id"]))["stage"] == "waiting"
    # The run that crossed the soft threshold (80% of $1.00) carries the alert.
    assert not [e for e in await fleet.events(first["id"]) if e["kind"] == "budget_alert"]
    alerts = [e for e in await fleet.events(third["id"]) if e["kind"] == "budget_alert"]
    assert len(alerts) == 1 and "$1.10 of its $1.00 ceiling" in alerts[0]["reason"]
    assert view["softAlert"] is True

    # Raising the ceiling lets the waiting job run.
    raised = await set_budget(fleet, p, ceilingUsd=5.0)
    assert raised["config"]["ceilingUsd"] == 5.0
    waited = await fleet.wait_for(second["id"], ["succeeded"])
    await record_history(fleet.client, "leaf-budget-waited", waited["workflowId"])
    controller = product_workflow_id(p)
    await record_history(fleet.client, "product-budget-waiting", controller, closed=False)
    view = await budget(fleet, p)
    assert view["status"] == "active"
    assert view["spentUsd"] == pytest.approx(1.2)
    assert view["remainingUsd"] == pytest.approx(3.8)

    shown = await cli(fleet, "budget", "show", p)
    assert shown.returncode == 0, shown.stderr
    assert f"product {p}: active" in shown.stdout and "spent $1.20" in shown.stdout
    paused = await cli(fleet, "budget", "pause", p, "--reason", "audit")
    assert paused.returncode == 0, paused.stderr
    for _ in range(50):  # the signal is applied asynchronously
        view = await budget(fleet, p)
        if view["status"] == "paused":
            break
        await asyncio.sleep(0.1)
    assert (view["status"], view["reason"]) == ("paused", "audit")


async def test_manual_pause_then_resume_starts_waiting_jobs_by_priority(
    budget_fleet: Fleet,
) -> None:
    fleet = budget_fleet
    label = unique_label()
    await fleet.start_factory(engines=["sim"], labels=[label], slots=1)
    p = product()
    await set_budget(fleet, p, ceilingUsd=100.0)
    running = await fleet.submit(sim(label, p, estimate=0.1, cost=0.1, params={"durationS": 4}))
    await fleet.wait_for(running["id"], ["running"])
    r = await fleet.http.post(
        f"/fleet/budgets/{p}/pause", json={"reason": "maintenance"}, headers=fleet.auth()
    )
    assert r.status_code == 202, r.text
    low = await fleet.submit(sim(label, p, estimate=0.1, cost=0.1, priority="low"))
    critical = await fleet.submit(sim(label, p, estimate=0.1, cost=0.1, priority="critical"))
    for job in (low, critical):
        waiting = await fleet.wait_for(job["id"], ["waiting"], reason_contains="paused")
        assert "maintenance" in waiting["stageReason"]
        assert waiting["waitReason"] == "budget"
    assert (await fleet.job(running["id"]))["stage"] == "running", "a running job goes on"

    # Resumed while the one slot is still busy: both are admitted and then wait for it,
    # and the freed slot goes to the better job, not the first to ask.
    r = await fleet.http.post(f"/fleet/budgets/{p}/resume", headers=fleet.auth())
    assert r.status_code == 202, r.text
    for job in (low, critical):
        await fleet.wait_for(job["id"], ["waiting"], reason_contains="full")
    await fleet.wait_for(running["id"], ["succeeded"])
    ends = {}
    for job in (low, critical):
        await fleet.wait_for(job["id"], ["succeeded"])
        ends[job["id"]] = parse_time((await fleet.runs(job["id"]))[0]["startedAt"])
    assert ends[critical["id"]] < ends[low["id"]], "critical first on the one slot"


async def test_a_job_waiting_on_its_budget_holds_no_lock(budget_fleet: Fleet) -> None:
    """A paused product's job must not keep a lock from another product's job: it is
    admitted by its budget before it takes the lock."""
    fleet = budget_fleet
    label = unique_label()
    lock = f"lock-{label}"
    await fleet.start_factory(engines=["sim"], labels=[label], slots=2)
    paused, other = product(), product()
    await set_budget(fleet, paused, ceilingUsd=100.0)
    r = await fleet.http.post(
        f"/fleet/budgets/{paused}/pause", json={"reason": "audit"}, headers=fleet.auth()
    )
    assert r.status_code == 202, r.text

    held_back = await fleet.submit(sim(label, paused, estimate=0.1, cost=0.1, lock=lock))
    waiting = await fleet.wait_for(held_back["id"], ["waiting"], reason_contains="paused")
    assert waiting["waitReason"] == "budget"
    free = await fleet.submit(sim(label, other, estimate=0.1, cost=0.1, lock=lock))
    done = await fleet.wait_for(free["id"], ["succeeded"], timeout=30)
    assert done["productId"] == other
    assert (await fleet.job(held_back["id"]))["stage"] == "waiting"

    r = await fleet.http.post(f"/fleet/budgets/{paused}/resume", headers=fleet.auth())
    assert r.status_code == 202, r.text
    finished = await fleet.wait_for(held_back["id"], ["succeeded"], timeout=30)
    events = await fleet.events(held_back["id"])
    order = [e["kind"] for e in events if e["kind"] in ("budget", "lock")]
    assert order == ["budget", "lock"], order  # admitted, then the lock
    await record_history(fleet.client, "leaf-admitted-before-lock", finished["workflowId"])


async def test_budget_endpoints_are_for_operators_of_the_product(budget_fleet: Fleet) -> None:
    fleet = budget_fleet
    p = product()
    r = await fleet.http.post(
        "/fleet/keys",
        json={"name": "sub", "role": "submitter", "products": [p]},
        headers=fleet.auth(),
    )
    submitter = r.json()["key"]
    r = await fleet.http.get(f"/fleet/budgets/{p}", headers=fleet.auth(submitter))
    assert r.status_code == 403
    r = await fleet.http.post(
        "/fleet/keys",
        json={"name": "op", "role": "operator", "products": [product()]},
        headers=fleet.auth(),
    )
    operator = r.json()["key"]
    r = await fleet.http.put(
        f"/fleet/budgets/{p}", json={"ceilingUsd": 1}, headers=fleet.auth(operator)
    )
    assert r.status_code == 404
    r = await fleet.http.put(f"/fleet/budgets/{p}", json={"ceilingUsd": -1}, headers=fleet.auth())
    assert r.status_code == 422


async def test_flag_off_nothing_waits_and_spend_is_still_recorded(fleet: Fleet) -> None:
    label = unique_label()
    await fleet.start_factory(engines=["sim"], labels=[label])
    p = product()
    await set_budget(fleet, p, ceilingUsd=0.0)
    job = await fleet.submit(sim(label, p, estimate=5, cost=0.25))
    await fleet.wait_for(job["id"], ["succeeded"])
    events = await fleet.events(job["id"])
    assert not [e for e in events if e.get("stage") == "waiting"]
    view = await budget(fleet, p)
    assert (view["enforced"], view["source"], view["status"]) == (False, "store", "active")
    assert view["spentUsd"] == pytest.approx(0.25)
    assert view["remainingUsd"] == 0
    assert [(e["id"], e["usd"]) for e in view["ledger"]] == [(f"{job['id']}.1", 0.25)]


async def test_flag_off_a_stored_ceiling_admits_pauses_and_alerts_nothing(fleet: Fleet) -> None:
    """FLEET_BUDGETS off: a product with a ceiling (and a soft threshold its runs cross) gets
    no admission, no pause and no budget_alert; no controller workflow is even started."""
    label = unique_label()
    await fleet.start_factory(engines=["sim"], labels=[label])
    p = product()
    await set_budget(fleet, p, ceilingUsd=1.0, softThreshold=0.5)
    for _ in range(2):  # one after the other: a wait here could only be the budget's
        job = await fleet.submit(sim(label, p, estimate=0.1, cost=0.75))
        await fleet.wait_for(job["id"], ["succeeded"])
        events = await fleet.events(job["id"])
        assert not [e for e in events if e.get("stage") == "waiting"], events
        assert not [e for e in events if e["kind"] == "budget_alert"], events
    view = await budget(fleet, p)
    assert view["spentUsd"] == pytest.approx(1.5)  # past the ceiling: nothing held it back
    assert (view["enforced"], view["status"], view["reason"]) == (False, "active", None)
    with pytest.raises(RPCError) as missing:
        await fleet.client.get_workflow_handle(f"product-{p}").describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND
