"""The routing activity on a real store: weights layers, the shadow weight set, and free
slots going to the best job waiting in the queue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import Client

from activities.control import ControlActivities
from gigafactory.contracts import RouteInput
from gigafactory.models import (
    Factory,
    Job,
    JobSpec,
    Priority,
    QueueEntry,
    RoutingWeights,
    RunOutcome,
    Stage,
    WaitReason,
)
from gigafactory.services import Services
from gigafactory.services.queue import Queue
from gigafactory.services.routing import parse_shadow_weights as shadow_weights
from gigafactory.settings import Settings
from gigafactory.store import FleetStore, SQLiteBackend
from routing import FleetWeights

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FleetStore]:
    fleet = FleetStore(SQLiteBackend(tmp_path / "fleet.sqlite3"))
    await fleet.open()
    for job_id in ("j1", "j2"):
        await fleet.create_job(_job(job_id, "normal", Stage.QUEUED))
    for factory_id, labels in (("fa", ["gpu"]), ("fb", ["cpu"])):
        await fleet.create_factory(
            Factory(
                id=factory_id,
                engines=["sim"],
                labels=labels,
                slots=1,
                enrolled_at=NOW,
                last_heartbeat_at=NOW,
            )
        )
    try:
        yield fleet
    finally:
        await fleet.close()


def _control(
    store: FleetStore,
    client: Client,
    *,
    shadow_weights: FleetWeights | None = None,
) -> ControlActivities:
    """The control activities over services with the test's settings and a pinned clock."""
    settings = Settings()
    services = Services(store, client, settings, shadow_weights=shadow_weights, clock=lambda: NOW)
    return ControlActivities(services)


def _route(**extra: object) -> RouteInput:
    return RouteInput.model_validate(
        {"jobId": "j1", "productId": "p1", "epoch": 1, "engine": "sim", **extra}
    )


async def test_shadow_set_is_recorded_not_acted_on(store: FleetStore, client: Client) -> None:
    control = _control(
        store,
        client,
        shadow_weights=FleetWeights().override({"affinity": 0, "capability_fit": 0}),
    )
    result = await control.route_job(
        _route(preferredLabels=["cpu"], weightsOverride={"affinity": 40})
    )
    assert result.factory_id == "fb"  # the acting weights prefer the cpu factory
    assert result.weights["affinity"] == 40
    assert result.shadow is not None
    assert result.shadow["weights"]["affinity"] == 0
    assert result.shadow["factoryId"] == "fa"  # label terms off: a tie, first by id
    assert result.shadow["differs"] is True
    slots = {t.factory_id: t.reservations for t in await store.list_slot_tables()}
    assert [r.job_id for r in slots["fb"]] == ["j1"] and not slots.get("fa")


async def test_without_shadow_nothing_extra_is_recorded(store: FleetStore, client: Client) -> None:
    control = _control(store, client)
    result = await control.route_job(_route())
    assert result.shadow is None
    assert result.weights == FleetWeights().as_dict()


async def test_product_override_then_request_override(store: FleetStore, client: Client) -> None:
    await store.put_routing_weights(
        RoutingWeights(
            product_id="p1", weights={"load": 9, "health": 0}, updated_at=NOW, updated_by="test"
        )  # fmt: skip
    )
    control = _control(store, client)
    product = await control.route_job(_route())
    assert (product.weights["load"], product.weights["health"]) == (9, 0)
    request = await control.route_job(_route(jobId="j2", weightsOverride={"load": 1}))
    assert (request.weights["load"], request.weights["health"]) == (1, 0)


def test_shadow_setting_is_validated() -> None:
    assert shadow_weights(Settings()) is None
    assert shadow_weights(Settings(routing_shadow='{"load": 0}')) == FleetWeights().override(
        {"load": 0}
    )
    for bad, named in (("{load}", "not JSON"), ("[1]", "JSON object"), ('{"x": 1}', "x")):
        with pytest.raises(ValueError, match=named):
            shadow_weights(Settings(routing_shadow=bad))


def _job(job_id: str, priority: str, stage: Stage) -> Job:
    return Job(
        id=job_id,
        product_id="p1",
        workflow_id=f"job-p1-{job_id}",
        spec=JobSpec(engine="sim", prompt="p", product_id="p1", priority=priority),
        stage=stage,
        wait_reason=WaitReason.CAPACITY if stage == Stage.WAITING else None,
        created_at=NOW - timedelta(minutes=5),
        updated_at=NOW - timedelta(minutes=1),
    )


async def _waiting_job(
    store: FleetStore, client: Client, job_id: str, priority: str, *, alive: bool
) -> None:
    """A job queued a minute ago; `alive`: its workflow runs (started on a queue no worker
    polls), so a slot grant reaches it; else it is gone and cannot take one."""
    job = _job(job_id, priority, Stage.WAITING)
    await store.create_job(job)
    if alive:
        handle = await client.start_workflow(
            "JobWorkflow", id=job.workflow_id, task_queue=f"nobody-{job.workflow_id}", args=[]
        )
        assert handle.id == job.workflow_id
    entry = QueueEntry(
        id=job.workflow_id, lane="", job_id=job_id, job_product_id="p1",
        workflow_id=job.workflow_id, epoch=1, engine="sim", priority=Priority(priority),
        waiting_since=NOW - timedelta(minutes=1),
    )  # fmt: skip
    await Queue(store).enqueue(entry)


async def test_a_free_slot_goes_to_the_better_waiting_job(
    store: FleetStore, client: Client
) -> None:
    control = _control(store, client)
    # Two free slots (fa, fb), two better jobs waiting in the queue: nothing for a normal one,
    # and the slots are handed to them at once (their lease open, their workflows told).
    await _waiting_job(store, client, "hi1", "critical", alive=True)
    await _waiting_job(store, client, "hi2", "high", alive=True)
    held = await control.route_job(_route(jobId="j1", priority="normal", workflowId="job-p1-j1"))
    assert held.factory_id is None and held.queued
    assert "higher-ranked waiting jobs" in (held.waiting_reason or "")
    slots = {
        t.factory_id: [r.job_id for r in t.reservations] for t in await store.list_slot_tables()
    }
    assert sorted(j for held_by in slots.values() for j in held_by) == ["hi1", "hi2"]
    for job_id in ("hi1", "hi2"):
        granted = await store.get_job(job_id, "p1")
        assert (granted.stage, granted.lease_epoch) == (Stage.DISPATCHED, 1)
        events = await client.get_workflow_handle(f"job-p1-{job_id}").fetch_history()
        assert any(e.workflow_execution_signaled_event_attributes.signal_name == "slot_granted"
                   for e in events.events)  # fmt: skip
        await client.get_workflow_handle(f"job-p1-{job_id}").terminate(reason="test cleanup")
    assert (await store.queued("job-p1-j1")) is not None, "the normal job waits in the queue"


async def test_a_gone_competitor_holds_nothing(store: FleetStore, client: Client) -> None:
    control = _control(store, client)
    await _waiting_job(store, client, "ghost", "critical", alive=False)
    placed = await control.route_job(_route(jobId="j1", priority="low", workflowId="job-p1-j1"))
    assert placed.factory_id is not None, "the ghost could not take the slot, so j1 did"
    ghost = await store.get_run("ghost.1", "p1")
    assert ghost.outcome == RunOutcome.CANCELLED and "never started" in (ghost.reason or "")
    assert await store.queued("job-p1-ghost") is None
    slots = {
        t.factory_id: [r.job_id for r in t.reservations] for t in await store.list_slot_tables()
    }
    assert [j for held_by in slots.values() for j in held_by] == ["j1"]
