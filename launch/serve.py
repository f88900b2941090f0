"""The long-running processes of a deployment: `serve api` and `serve control`.

Each runs against any Temporal (the dev server, a self-hosted cluster, Temporal Cloud with
TLS or an API key: `gigafactory.temporal_client`) and either store, until SIGINT or
SIGTERM. Any number of each may run at once: they coordinate only through Temporal and the
store (decision 0015).
"""

from __future__ import annotations

import asyncio
import logging
import signal

import uvicorn

from api.app import create_app
from gigafactory.observability.process import start_process_observability
from gigafactory.settings import Settings
from gigafactory.store import open_store
from gigafactory.temporal_client import connect_temporal
from launch.control import ControlPlane

__all__ = ["serve_api", "serve_control"]

logger = logging.getLogger(__name__)


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def serve_control(settings: Settings) -> None:
    """The control-plane worker and its dispatch reconciler, until SIGINT or SIGTERM."""
    start_process_observability(settings, "control")
    store = await open_store(settings)
    try:
        client = await connect_temporal(settings)
        async with ControlPlane(client, store, settings):
            logger.info(
                "control plane serving task queue %s (store %s)",
                settings.control_task_queue,
                settings.store,
            )
            await _until_stopped()
            logger.info("control plane stopping")
    finally:
        await store.close()


def serve_api(settings: Settings) -> None:
    """The HTTP API on `FLEET_API_HOST:FLEET_API_PORT`, until SIGINT or SIGTERM."""
    start_process_observability(settings, "api")
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level="warning" if settings.log_level.upper() == "INFO" else settings.log_level.lower(),
        access_log=settings.log_http,
    )
