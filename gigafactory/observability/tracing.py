"""OpenTelemetry traces from the API through the workflows and activities to the factory.

`FLEET_TRACING=file|otlp` turns them on (off by default: no tracer, no interceptor, no
cost). Each process names itself (`gigafactory-api`, `-control`, `-factory`). Temporal's
`TracingInterceptor`, on every client (and so on every worker built from it), carries the
trace context in workflow, activity and signal headers; the API opens a span per request
(FastAPI's native telemetry) and a factory's reports carry `traceparent` back to the API.
"""

from __future__ import annotations

import logging

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from temporalio.client import Interceptor
from temporalio.contrib.opentelemetry import TracingInterceptor

from gigafactory.observability.span_file import JsonLinesSpanExporter
from gigafactory.settings import Settings

__all__ = ["configure_tracing", "tracer_provider", "tracing_interceptors"]

logger = logging.getLogger(__name__)

_provider: TracerProvider | None = None


def tracer_provider(settings: Settings, service: str) -> TracerProvider | None:
    """A tracer provider exporting as the settings say, or None when tracing is off."""
    if settings.tracing == "off":
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": f"gigafactory-{service}"}))
    processor: SpanProcessor
    if settings.tracing == "file":
        # Written at once: a process that is killed loses no span it finished.
        exporter = JsonLinesSpanExporter(settings.resolved_tracing_dir, service)
        processor = SimpleSpanProcessor(exporter)
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        processor = BatchSpanProcessor(OTLPSpanExporter())
    provider.add_span_processor(processor)
    return provider


def configure_tracing(settings: Settings, service: str) -> TracerProvider | None:
    """Install this process's tracer provider (once; later calls return the first)."""
    global _provider
    if _provider is None:
        _provider = tracer_provider(settings, service)
        if _provider is not None:
            trace.set_tracer_provider(_provider)
            logger.info("tracing on (%s) as gigafactory-%s", settings.tracing, service)
    return _provider


def tracing_interceptors(settings: Settings) -> list[Interceptor]:
    """The Temporal client interceptors that carry traces (none when tracing is off)."""
    if settings.tracing == "off":
        return []
    return [TracingInterceptor()]
