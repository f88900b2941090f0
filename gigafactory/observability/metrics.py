"""This process's own Prometheus metrics, and the endpoint that serves them.

They count what this process did (each control or API process its own share); Prometheus
sums them across processes. What the fleet *is* (jobs by stage, slots, spend) comes from
the store instead: `gigafactory.services.metrics`.
"""

from __future__ import annotations

import logging

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server

from gigafactory.settings import Settings

__all__ = [
    "FENCED_REPORTS",
    "PREEMPTIONS",
    "ROUTING_DECISIONS",
    "SLOT_HANDOFFS",
    "serve_process_metrics",
]

logger = logging.getLogger(__name__)

ROUTING_DECISIONS = Histogram(
    "gigafactory_routing_decision_seconds",
    "How long one routing decision took (plan and placement), by what it decided.",
    ["outcome"],  # placed, preempting, queued
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
SLOT_HANDOFFS = Counter(
    "gigafactory_slot_handoffs_total",
    "Free slots this process handed to a queued job.",
)
PREEMPTIONS = Counter(
    "gigafactory_preemptions_total",
    "Jobs this process ordered preempted to make room for a more urgent one.",
)
FENCED_REPORTS = Counter(
    "gigafactory_fenced_reports_total",
    "Reports from a stale lease epoch this process refused.",
)


def serve_process_metrics(settings: Settings) -> int | None:
    """Serve this process's metrics on `FLEET_METRICS_HOST:FLEET_METRICS_PORT` (None: off).

    Returns:
        The port served, or None.
    """
    if settings.metrics_port is None:
        return None
    start_http_server(settings.metrics_port, addr=settings.metrics_host, registry=REGISTRY)
    logger.info("metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)
    return settings.metrics_port
