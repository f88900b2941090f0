"""The routing activity on a real store: weights layers and the shadow weight set."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import Client

from activities.control import ControlActivities
from gigafactory.contracts import RouteInput
from gigafactory.models import Factory, Job, JobSpec, RoutingWeights, Stage, WaitReason
from gigafactory.services import Services
from gigafactory.services.routing import parse_shadow_weights as shadow_weights
from gigafactory.settings import Settings
from gigafactory.store import FleetStore, SQLiteBackend
from routing import FleetWeights

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FleetStore]:
    fleet = FleetStore(SQLiteBackend(tmp_path / "fleet.sqlite3"))
    await fleet.open()
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
    capacity_recheck_s: float = 15.0,
) -> ControlActivities:
    """The control activities over services with the test's settings and a pinned clock."""
    settings = Settings(capacity_recheck_s=capacity_recheck_s)
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


async def _waiting_job(
    store: FleetStore, job_id: str, priority: str, routed_at: datetime | None
) -> None:
    await store.create_job(
        Job(
            id=job_id,
            product_id="p1",
            workflow_id=f"job-p1-{job_id}",
            spec=JobSpec(engine="sim", prompt="p", product_id="p1", priority=priority),
            stage=Stage.WAITING,
            wait_reason=WaitReason.CAPACITY,
            created_at=NOW - timedelta(minutes=5),
            updated_at=NOW - timedelta(minutes=1),
            routed_at=routed_at,
        )
    )


async def test_a_free_slot_goes_to_the_better_waiting_job(
    store: FleetStore, client: Client
) -> None:
    control = _control(store, client, capacity_recheck_s=10)
    # Two free slots (fa, fb), two better jobs still competing: nothing for a normal one.
    await _waiting_job(store, "hi1", "critical", NOW - timedelta(seconds=5))
    await _waiting_job(store, "hi2", "high", NOW - timedelta(seconds=5))
    held = await control.route_job(_route(jobId="j1", priority="normal"))
    assert held.factory_id is None
    assert "higher-ranked waiting jobs" in (held.waiting_reason or "")
    # The better one takes a slot at once.
    assert (await control.route_job(_route(jobId="hi1", priority="critical"))).factory_id


async def test_a_silent_competitor_holds_nothing(store: FleetStore, client: Client) -> None:
    control = _control(store, client, capacity_recheck_s=10)
    await _waiting_job(store, "ghost", "critical", NOW - timedelta(seconds=31))
    await _waiting_job(store, "never", "critical", None)
    placed = await control.route_job(_route(jobId="j1", priority="low"))
    assert placed.factory_id is not None
    job = await store.get_job("ghost", "p1")
    assert job.routed_at == NOW - timedelta(seconds=31), "routing others leaves them alone"
