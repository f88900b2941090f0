"""The FastAPI application: one `Services` (one store, one blob store, one Temporal client)
per process.

`create_app` takes what the caller already has (tests and the dev stack share their store
and client) and opens the rest in the lifespan, closing only what it opened.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from temporalio.client import Client

from api.body_limit import BodyLimit, limit_for
from api.errors import ERROR_RESPONSES, install_error_handlers
from api.routes import (
    artifacts,
    audit,
    budgets,
    dag,
    factories,
    health,
    jobs,
    keys,
    metrics,
    routing,
)
from api.ui import install_ui
from gigafactory.services import Services
from gigafactory.services.clock import Clock, utcnow
from gigafactory.settings import Settings
from gigafactory.store import open_store
from gigafactory.store.blobs import BlobStore
from gigafactory.store.fleet_store import FleetStore
from gigafactory.temporal_client import connect_temporal

__all__ = ["create_app", "serve"]

logger = logging.getLogger(__name__)

DESCRIPTION = """\
The control plane of a fleet of AI coding agents.

Authenticate with `Authorization: Bearer <API key>` (factories: their factory token).
Errors are `{"error": {"code", "message", "field"?}}`. The web control plane is at `/ui`.
"""


def create_app(
    settings: Settings,
    *,
    store: FleetStore | None = None,
    blobs: BlobStore | None = None,
    temporal: Client | None = None,
    clock: Clock = utcnow,
) -> FastAPI:
    """The API application.

    Args:
        settings: Validated settings.
        store: An open store to use; opened from settings (and closed) when None.
        blobs: The artifact blob store; from settings when None.
        temporal: A connected client; connected from settings when None.
        clock: The current time (tests may pin it).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            app_store = store
            if app_store is None:
                app_store = await open_store(settings)
                stack.push_async_callback(app_store.close)
            app_temporal = temporal
            if app_temporal is None:
                # Lazy: the API starts (and /healthz reports it) while Temporal is down.
                app_temporal = await connect_temporal(settings, lazy=True)
            services = Services(app_store, app_temporal, settings, blobs=blobs, clock=clock)
            app.state.services = services
            if settings.admin_key:
                await services.auth.ensure_bootstrap_key(settings.admin_key, clock())
            yield

    app = FastAPI(
        title="Gigafactory",
        description=DESCRIPTION,
        version="0.1.0",
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry: a server span per request, continuing the caller's
        # `traceparent` (a factory's reports join their run's trace), current while the
        # route runs so what it starts in Temporal joins too. Off with tracing; our metrics
        # are Prometheus (/metrics), our logs the standard library's.
        telemetry={
            "tracing": settings.tracing != "off",
            "metrics": False,
            "logs": False,
            "operation_spans": False,
        },
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=limit_for(settings))
    app.include_router(health.router)
    for module in (jobs, artifacts, factories, keys, routing, dag, budgets, audit, metrics):
        app.include_router(module.router, responses=ERROR_RESPONSES)
    install_ui(app)
    return app


def serve(settings: Settings) -> None:
    """Run the API with uvicorn on `settings.api_host:api_port` until interrupted."""
    import uvicorn

    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
    )
