"""Turn on what the settings ask for in a long-running process: its traces and its metrics."""

from __future__ import annotations

from gigafactory.observability.metrics import serve_process_metrics
from gigafactory.observability.tracing import configure_tracing
from gigafactory.settings import Settings

__all__ = ["start_process_observability"]


def start_process_observability(settings: Settings, service: str) -> None:
    """Install the tracer provider as `gigafactory-<service>` and serve this process's
    metrics (each only when its setting is on). The Temporal SDK's own metrics and the
    tracing interceptor come with the client (`connect_temporal`)."""
    configure_tracing(settings, service)
    serve_process_metrics(settings)
