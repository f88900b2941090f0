"""The Temporal SDK's runtime metrics (task latencies, slots, polls, sticky cache...)."""

from __future__ import annotations

import functools

from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from gigafactory.settings import Settings

__all__ = ["temporal_runtime"]


@functools.cache
def _runtime(bind_address: str) -> Runtime:
    # One runtime per address: a runtime owns its threads and its HTTP server.
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=bind_address)))


def temporal_runtime(settings: Settings) -> Runtime | None:
    """A runtime serving the SDK's metrics on `FLEET_METRICS_HOST:FLEET_SDK_METRICS_PORT`,
    or None (the default runtime, no metrics) when the port is not set."""
    if settings.sdk_metrics_port is None:
        return None
    return _runtime(f"{settings.metrics_host}:{settings.sdk_metrics_port}")
