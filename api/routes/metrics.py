"""`GET /metrics`: Prometheus text for operators.

Two kinds of series in one scrape: this process's own counters and histograms (routing
decisions, slot hand-offs, preemptions, fenced reports; `gigafactory.observability.metrics`)
and the fleet's state as the store has it (`MetricsService`), the same from every API process.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from api.deps import CallerDep, ServicesDep
from gigafactory.services.metrics import FleetFigures

__all__ = ["fleet_exposition", "router"]

router = APIRouter(tags=["metrics"])


class _FleetCollector(Collector):
    """The fleet's figures as gauge families (read once, per scrape, from the service)."""

    def __init__(self, figures: FleetFigures) -> None:
        self.figures = figures

    def collect(self) -> Iterator[GaugeMetricFamily]:
        f = self.figures
        jobs = GaugeMetricFamily("gigafactory_jobs", "Jobs by stage.", labels=["stage"])
        for stage, n in sorted(f.jobs_by_stage.items()):
            jobs.add_metric([stage], n)
        yield jobs
        waiting = GaugeMetricFamily(
            "gigafactory_jobs_waiting", "Waiting jobs by what they wait for.", labels=["reason"]
        )
        for reason, n in sorted(f.waiting_by_reason.items()):
            waiting.add_metric([reason], n)
        yield waiting
        yield GaugeMetricFamily(
            "gigafactory_queue_depth", "Jobs queued for a slot.", value=f.queued_for_slot
        )
        slots = GaugeMetricFamily("gigafactory_factory_slots", "Slots.", labels=["factory"])
        used = GaugeMetricFamily(
            "gigafactory_factory_slots_used", "Slots held by a lease.", labels=["factory"]
        )
        healthy = GaugeMetricFamily(
            "gigafactory_factory_healthy",
            "1 when the factory is active and its heartbeat is recent.",
            labels=["factory", "status"],
        )
        for factory in f.factories:
            slots.add_metric([factory.factory_id], factory.slots)
            used.add_metric([factory.factory_id], factory.used)
            healthy.add_metric([factory.factory_id, factory.status], int(factory.healthy))
        yield from (slots, used, healthy)
        spend = GaugeMetricFamily(
            "gigafactory_spend_usd", "USD in the product's ledger.", labels=["product"]
        )
        fenced = GaugeMetricFamily(
            "gigafactory_product_fenced_reports",
            "Stale reports fenced for the product's jobs.",
            labels=["product"],
        )
        preempted = GaugeMetricFamily(
            "gigafactory_product_preemptions",
            "Preemptions of the product's jobs.",
            labels=["product"],
        )
        for product in f.products:
            spend.add_metric([product.product_id], product.spent_usd)
            fenced.add_metric([product.product_id], product.fenced_reports)
            preempted.add_metric([product.product_id], product.preemptions)
        yield from (spend, fenced, preempted)


def fleet_exposition(figures: FleetFigures) -> bytes:
    """The process's own series followed by the fleet's, in Prometheus text format."""
    fleet = CollectorRegistry(auto_describe=False)
    fleet.register(_FleetCollector(figures))
    return generate_latest(REGISTRY) + generate_latest(fleet)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
)
async def metrics(key: CallerDep, services: ServicesDep) -> Response:
    """Prometheus metrics (operators): this process's routing and dispatch counters, and the
    fleet as the store has it: jobs by stage, waits, queue, slots, health; spend, fenced
    reports and preemptions of the key's products. Fleet figures may be up to
    `FLEET_METRICS_CACHE_S` old."""
    figures = await services.metrics.figures(key)
    return Response(fleet_exposition(figures), media_type=CONTENT_TYPE_LATEST)
