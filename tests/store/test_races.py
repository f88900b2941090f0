"""Slot reservations under concurrency: a factory never exceeds its capacity."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from gigafactory.models import SlotReservation
from gigafactory.store import DocumentBackend, FleetStore
from tests.store.conftest import T0


def _reservation(i: int) -> SlotReservation:
    return SlotReservation(job_id=f"job{i}", product_id="acme", epoch=1, reserved_at=T0)


async def test_50_concurrent_reservations_capacity_2(store: FleetStore):
    results = await asyncio.gather(
        *(store.reserve_slot("f1", 2, _reservation(i)) for i in range(50))
    )
    assert sum(results) == 2
    held = {r.job_id for r in (await store.get_slots("f1")).reservations}
    assert held == {f"job{i}" for i, won in enumerate(results) if won}


async def test_concurrent_reservations_across_two_backends(
    backend_factory: Callable[[], DocumentBackend],
):
    # Two backends on the same data behave like the API and the worker process.
    stores = [FleetStore(backend_factory()), FleetStore(backend_factory())]
    for s in stores:
        await s.open()
    try:
        results = await asyncio.gather(
            *(stores[i % 2].reserve_slot("f1", 2, _reservation(i)) for i in range(50))
        )
        assert sum(results) == 2
        for s in stores:
            assert len((await s.get_slots("f1")).reservations) == 2
    finally:
        for s in stores:
            await s.close()
