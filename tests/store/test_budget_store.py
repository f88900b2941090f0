"""Budget settings and the spend ledger, on every backend."""

from __future__ import annotations

from datetime import timedelta

from gigafactory.models import SpendRecord, StoredBudget
from gigafactory.store import FleetStore
from tests.store.conftest import T0


async def test_budget_settings_and_ledger_window(store: FleetStore) -> None:
    assert await store.get_budget("p1") is None
    saved = await store.put_budget(
        StoredBudget(product_id="p1", config={"ceilingUsd": 5}, updated_at=T0, updated_by="t")
    )
    assert (await store.get_budget("p1")) == saved
    for i, usd in enumerate((0.5, 1.0, 2.0)):
        record = SpendRecord(
            id=f"j.{i}", product_id="p1", job_id="j", usd=usd, at=T0 + timedelta(hours=i)
        )
        assert await store.record_spend(record)
    assert not await store.record_spend(record), "a run is written once"
    assert [r.usd for r in await store.list_spend("p1")] == [2.0, 1.0, 0.5]
    recent = await store.list_spend("p1", since=T0 + timedelta(minutes=30))
    assert [r.id for r in recent] == ["j.2", "j.1"]
    assert await store.list_spend("p2") == []
