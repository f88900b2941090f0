"""The FastAPI application: one store, one blob store and one Temporal client per process.

`create_app` takes what the caller already has (tests and the dev stack share their store
and client) and opens the rest in the lifespan, closing only what it opened.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from temporalio.client import Client

from api.deps import BOOTSTRAP_KEY_ID, Clock, utcnow
from api.errors import install_error_handlers
from api.routes import artifacts, budgets, dag, factories, health, jobs, keys, routing
from gigafactory.models import ApiKey, Role
from gigafactory.security import hash_token
from gigafactory.settings import Settings
from gigafactory.store import open_blobs, open_store
from gigafactory.store.backend import NotFound
from gigafactory.store.blobs import BlobStore
from gigafactory.store.fleet_store import FleetStore
from gigafactory.temporal_client import connect_temporal

__all__ = ["create_app", "ensure_bootstrap_key", "serve"]

logger = logging.getLogger(__name__)

DESCRIPTION = """\
The control plane of a fleet of AI coding agents.

Authenticate with `Authorization: Bearer <API key>` (factories: their factory token).
Errors are `{"error": {"code", "message", "field"?}}`.
"""


async def ensure_bootstrap_key(store: FleetStore, admin_key: str, clock: Clock = utcnow) -> None:
    """Store `admin_key` as the admin key "bootstrap" (all products), hashed.

    A key already stored with the same hash is left alone, so an admin's revocation sticks;
    a different configured key replaces the hash and is active again.
    """
    key_hash = hash_token(admin_key)
    try:
        existing = await store.get_api_key(BOOTSTRAP_KEY_ID)
    except NotFound:
        await store.create_api_key(
            ApiKey(
                id=BOOTSTRAP_KEY_ID,
                name="bootstrap admin (FLEET_ADMIN_KEY)",
                role=Role.ADMIN,
                products=["*"],
                key_hash=key_hash,
                created_at=clock(),
            )
        )
        logger.info("stored the bootstrap admin key")
        return
    if existing.key_hash == key_hash:
        return

    def replace(key: ApiKey) -> ApiKey:
        key.key_hash = key_hash
        key.role = Role.ADMIN
        key.products = ["*"]
        key.revoked_at = None
        return key

    await store.update_api_key(BOOTSTRAP_KEY_ID, replace)
    logger.info("replaced the bootstrap admin key (FLEET_ADMIN_KEY changed)")


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
            app.state.store = app_store
            app.state.temporal = app_temporal
            app.state.blobs = blobs if blobs is not None else open_blobs(settings)
            if settings.admin_key:
                await ensure_bootstrap_key(app_store, settings.admin_key, clock)
            yield

    app = FastAPI(
        title="Gigafactory",
        description=DESCRIPTION,
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.clock = clock
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(artifacts.router)
    app.include_router(factories.router)
    app.include_router(keys.router)
    app.include_router(routing.router)
    app.include_router(dag.router)
    app.include_router(budgets.router)
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
