"""The routing activity on a real store: weights layers and the shadow weight set."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.client import Client

from activities.control import ControlActivities
from gigafactory.contracts import RouteInput
from gigafactory.models import Factory, RoutingWeights
from gigafactory.settings import Settings
from gigafactory.store import FleetStore, SQLiteBackend
from gigafactory.workers import shadow_weights
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


def _route(**extra: object) -> RouteInput:
    return RouteInput.model_validate(
        {"jobId": "j1", "productId": "p1", "epoch": 1, "engine": "sim", **extra}
    )


async def test_shadow_set_is_recorded_not_acted_on(store: FleetStore, client: Client) -> None:
    control = ControlActivities(
        store,
        client,
        shadow_weights=FleetWeights().override({"affinity": 0, "capability_fit": 0}),
        clock=lambda: NOW,
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
    control = ControlActivities(store, client, clock=lambda: NOW)
    result = await control.route_job(_route())
    assert result.shadow is None
    assert result.weights == FleetWeights().as_dict()


async def test_product_override_then_request_override(store: FleetStore, client: Client) -> None:
    await store.put_routing_weights(
        RoutingWeights(
            product_id="p1", weights={"load": 9, "health": 0}, updated_at=NOW, updated_by="test"
        )  # fmt: skip
    )
    control = ControlActivities(store, client, clock=lambda: NOW)
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
