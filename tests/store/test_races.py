"""Races on both backends: slots never exceed capacity, compare-and-set loses no update."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import UTC, datetime

from gigafactory.models import SlotReservation, SpendRecord
from gigafactory.store import DocumentBackend, FleetStore, PreconditionFailed
from gigafactory.store.backend import etag_of
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


async def test_50_concurrent_cas_replaces_lose_no_update(backend: DocumentBackend):
    # Each writer loops read -> replace-if-etag until its increment sticks.
    await backend.create("jobs", {"id": "counter", "productId": "acme", "n": 0})

    async def increment() -> int:
        attempts = 0
        while True:
            attempts += 1
            doc = await backend.read("jobs", "acme", "counter")
            try:
                await backend.replace("jobs", {**doc, "n": doc["n"] + 1}, etag=etag_of(doc))
                return attempts
            except PreconditionFailed:
                await asyncio.sleep(random.uniform(0, 0.002))

    attempts = await asyncio.gather(*(increment() for _ in range(50)))
    assert (await backend.read("jobs", "acme", "counter"))["n"] == 50
    assert max(attempts) > 1  # the writers did race


async def test_concurrent_spend_records_for_one_run_count_once(store: FleetStore) -> None:
    record = SpendRecord(
        id="job1.1", product_id="p1", job_id="job1", usd=0.25, at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    written = await asyncio.gather(*(store.record_spend(record) for _ in range(50)))
    assert written.count(True) == 1
    ledger = await store.list_spend("p1")
    assert [(r.id, r.usd) for r in ledger] == [("job1.1", 0.25)]
