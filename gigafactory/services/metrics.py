"""The fleet's figures for metrics: what the store says now, the same from every process.

Jobs by stage and by what the waiting ones wait for, the queue, every factory's slots and
health, and per product the spend in its ledger, the fenced reports and the preemptions.
They are counts and sums the store computes (no document is read whole), reused for
`FLEET_METRICS_CACHE_S` so that a scrape every few seconds costs the store little.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from gigafactory.models import ApiKey, Role, Stage, WaitReason
from gigafactory.services.access import require_role
from gigafactory.services.clock import Clock
from gigafactory.services.factories import is_healthy
from gigafactory.settings import Settings
from gigafactory.store.fleet_store import FleetStore

__all__ = ["FactoryFigures", "FleetFigures", "MetricsService", "ProductFigures"]


@dataclass(frozen=True)
class FactoryFigures:
    """One factory's slots and state."""

    factory_id: str
    slots: int
    used: int
    healthy: bool
    status: str


@dataclass(frozen=True)
class ProductFigures:
    """One product's spend (USD, its whole ledger), fenced reports and preemptions."""

    product_id: str
    spent_usd: float
    fenced_reports: int
    preemptions: int


@dataclass(frozen=True)
class FleetFigures:
    """The fleet at `at`."""

    at: datetime
    jobs_by_stage: dict[str, int]
    waiting_by_reason: dict[str, int]
    queued_for_slot: int
    factories: list[FactoryFigures]
    products: list[ProductFigures] = field(default_factory=list)

    def for_key(self, key: ApiKey) -> FleetFigures:
        """What `key` may see: its products only; fleet-wide figures stay."""
        return FleetFigures(
            self.at,
            self.jobs_by_stage,
            self.waiting_by_reason,
            self.queued_for_slot,
            self.factories,
            [p for p in self.products if key.may_see(p.product_id)],
        )


@dataclass
class MetricsService:
    """Reads the fleet's figures for `/metrics` (operators)."""

    store: FleetStore
    settings: Settings
    clock: Clock
    _cached: FleetFigures | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def figures(self, key: ApiKey) -> FleetFigures:
        """The fleet now (at most `FLEET_METRICS_CACHE_S` old), as `key` may see it.

        Raises:
            Forbidden: the key is not an operator.
        """
        require_role(key, Role.OPERATOR, "reading the fleet's metrics")
        async with self._lock:  # one store read at a time, however many scrapers
            now = self.clock()
            cached = self._cached
            if cached is None or (now - cached.at).total_seconds() >= self.settings.metrics_cache_s:
                cached = self._cached = await self._read(now)
        return cached.for_key(key)

    async def _read(self, now: datetime) -> FleetFigures:
        store = self.store
        stages = {s.value: await store.count_jobs(stage=s) for s in Stage}
        reasons = {
            r.value: await store.count_jobs(stage=Stage.WAITING, wait_reason=r) for r in WaitReason
        }
        tables = {t.factory_id: t for t in await store.list_slot_tables()}
        limit = self.settings.factory_unhealthy_after_s
        factories = [
            FactoryFigures(
                factory_id=f.id,
                slots=f.slots,
                used=len(tables[f.id].reservations) if f.id in tables else 0,
                healthy=is_healthy(f, now, limit),
                status=f.status.value,
            )
            for f in sorted(await store.list_factories(), key=lambda f: f.id)
        ]
        products = [
            ProductFigures(
                product_id=p,
                spent_usd=await store.spent(p),
                fenced_reports=await store.count_events("fenced", p),
                preemptions=await store.count_events("preempted", p),
            )
            for p in await store.list_products()
        ]
        return FleetFigures(now, stages, reasons, await store.queue_depth(), factories, products)
