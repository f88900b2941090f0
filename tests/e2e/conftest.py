"""One control plane per session (store, control worker, API) on the session's dev server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from gigafactory.devserver import TemporalDevServer, free_port
from gigafactory.security import mint
from gigafactory.settings import Settings
from gigafactory.store import open_store
from gigafactory.temporal_client import connect_temporal
from gigafactory.workers import control_worker
from tests.e2e.harness import ApiServer, Fleet


@pytest.fixture(scope="session")
async def fleet_session(
    temporal_server: TemporalDevServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Fleet]:
    data_dir = tmp_path_factory.mktemp("fleet")
    _, admin_key = mint("gfk")
    # Short leases and timers so crash and requeue paths finish in seconds.
    settings = Settings(
        data_dir=data_dir,
        temporal_address=temporal_server.address,
        api_port=free_port(),
        admin_key=admin_key,
        control_task_queue=f"fleet-control-e2e-{free_port()}",
        lease_heartbeat_timeout_s=3,
        dispatch_timeout_s=5,
        factory_unhealthy_after_s=4,
        factory_heartbeat_interval_s=0.5,
        capacity_recheck_s=2,
        stop_grace_s=2,
        log_chunk_interval_s=0.3,
    )
    store = await open_store(settings)
    client = await connect_temporal(settings)
    worker = control_worker(client, store, settings)
    worker_task = asyncio.create_task(worker.run())
    api = ApiServer(settings, store, client)
    await api.start()
    api_url = f"http://127.0.0.1:{settings.api_port}"
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        fleet = Fleet(settings, store, client, api_url, admin_key, http)
        try:
            yield fleet
        finally:
            for factory in fleet.factories:
                await factory.stop()
            await api.stop()
            await worker.shutdown()
            worker_task.cancel()
            await store.close()


@pytest.fixture
async def fleet(fleet_session: Fleet) -> AsyncIterator[Fleet]:
    """The session's control plane; factories a test starts are stopped after it."""
    before = len(fleet_session.factories)
    yield fleet_session
    started = fleet_session.factories[before:]
    del fleet_session.factories[before:]
    for factory in started:
        await factory.stop()
