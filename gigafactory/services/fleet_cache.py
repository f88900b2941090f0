"""The fleet as routing reads it: factories and slot tables, with the routing index kept
current between decisions (`routing.FleetIndex`).

Each read diffs the store's documents against the index and updates only the factories that
changed, so a decision scores the best few factories, not all of them, and explains only
those (decision 0012). With `FLEET_ROUTING_SNAPSHOT_S` > 0 the documents themselves are
re-read at most that often: for fleets of thousands of factories, where reading every
factory for every decision would cost more than deciding. A stale read never breaks an
invariant (a slot is taken by compare-and-set on its own document); it can only make a
decision a little worse for that long.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gigafactory.models import Factory, SlotReservation, SlotTable
from gigafactory.services.fleet_view import factory_view
from gigafactory.store.fleet_store import FleetStore
from routing import FactoryView, FleetIndex

__all__ = ["FleetCache", "FleetSnapshot"]


@dataclass
class FleetSnapshot:
    """Factories and their slot tables as one decision sees them, with the index over them
    (every reservation counted)."""

    factories: dict[str, Factory]
    tables: dict[str, SlotTable]
    index: FleetIndex = field(default_factory=FleetIndex)

    def view(self, factory_id: str) -> FactoryView:
        """A factory as routing sees it."""
        view = self.index.get(factory_id)
        assert view is not None, factory_id
        return view


class FleetCache:
    """One process's view of the fleet, refreshed from the store."""

    def __init__(self, store: FleetStore, max_age_s: float = 0.0) -> None:
        self.store = store
        self.max_age_s = max_age_s
        self._snapshot = FleetSnapshot(factories={}, tables={})
        self._read_at: float | None = None

    async def snapshot(self) -> FleetSnapshot:
        """The fleet now (or as read at most `max_age_s` ago)."""
        now = time.monotonic()
        if self._read_at is not None and now - self._read_at < self.max_age_s:
            return self._snapshot
        factories = {f.id: f for f in await self.store.list_factories()}
        tables = {t.factory_id: t for t in await self.store.list_slot_tables()}
        index = self._snapshot.index
        for gone in [f.id for f in index if f.id not in factories]:
            index.remove(gone)
        for factory in factories.values():
            view = factory_view(factory, tables.get(factory.id), "")
            if index.get(factory.id) != view:
                index.upsert(view)
        self._snapshot = FleetSnapshot(factories=factories, tables=tables, index=index)
        self._read_at = now
        return self._snapshot

    def reserved(self, factory_id: str, reservation: SlotReservation) -> None:
        """This process took a slot: the next decision sees it before the next read."""
        self._update(factory_id, lambda held: [*held, reservation])

    def released(self, factory_id: str, job_id: str, epoch: int) -> None:
        """This process freed a slot."""
        self._update(
            factory_id, lambda held: [r for r in held if (r.job_id, r.epoch) != (job_id, epoch)]
        )

    def _update(
        self,
        factory_id: str,
        change: Callable[[list[SlotReservation]], list[SlotReservation]],
    ) -> None:
        snap = self._snapshot
        factory = snap.factories.get(factory_id)
        if factory is None:
            return
        table = snap.tables.get(factory_id) or SlotTable(
            id=f"slots-{factory_id}", factory_id=factory_id
        )
        table = table.model_copy(update={"reservations": change(list(table.reservations))})
        snap.tables[factory_id] = table
        snap.index.upsert(factory_view(factory, table, ""))
