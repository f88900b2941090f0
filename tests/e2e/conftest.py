"""One control plane per session (store, control worker, API) on the session's dev server.

`open_fleet` builds one for given settings; the Cosmos DB end-to-end test uses it with
`FLEET_STORE=cosmos` settings on the local Cosmos DB API server.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gigafactory.security import mint
from gigafactory.settings import Settings
from gigafactory.store import open_store
from gigafactory.temporal_client import connect_temporal
from launch.control import ControlPlane
from launch.devserver import TemporalDevServer, free_port
from tests.e2e.harness import ApiServer, Fleet

__all__ = ["fleet_settings", "open_fleet"]


def fleet_settings(temporal_address: str, data_dir: Path, **extra: Any) -> Settings:
    """Short leases and timers, so crash and requeue paths finish in seconds (`extra`
    overrides any of them)."""
    _, admin_key = mint("gfk")
    timers: dict[str, Any] = {
        "lease_heartbeat_timeout_s": 3,
        "dispatch_timeout_s": 5,
        "factory_unhealthy_after_s": 4,
        "factory_heartbeat_interval_s": 0.5,
        "stop_grace_s": 2,
        "log_chunk_interval_s": 0.3,
    }
    return Settings(
        data_dir=data_dir,
        temporal_address=temporal_address,
        api_port=free_port(),
        admin_key=admin_key,
        control_task_queue=f"fleet-control-e2e-{free_port()}",
        **{**timers, **extra},
    )


@contextlib.asynccontextmanager
async def open_fleet(settings: Settings) -> AsyncIterator[Fleet]:
    """Store, control worker and API for `settings`; all stopped on exit."""
    assert settings.admin_key is not None
    store = await open_store(settings)
    client = await connect_temporal(settings)
    control = ControlPlane(client, store, settings)
    await control.start()
    api = ApiServer(settings, store, client)
    await api.start()
    api_url = f"http://127.0.0.1:{settings.api_port}"
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        fleet = Fleet(settings, store, client, api_url, settings.admin_key, http)
        try:
            yield fleet
        finally:
            for factory in fleet.factories:
                await factory.stop()
            await api.stop()
            await control.stop()
            await store.close()


@pytest.fixture(scope="session")
async def fleet_session(
    temporal_server: TemporalDevServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Fleet]:
    settings = fleet_settings(temporal_server.address, tmp_path_factory.mktemp("fleet"))
    async with open_fleet(settings) as fleet:
        yield fleet


@pytest.fixture
async def fleet(fleet_session: Fleet) -> AsyncIterator[Fleet]:
    """The session's control plane; factories a test starts are stopped after it."""
    before = len(fleet_session.factories)
    yield fleet_session
    started = fleet_session.factories[before:]
    del fleet_session.factories[before:]
    for factory in started:
        await factory.stop()
