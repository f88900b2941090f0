"""Services over a real SQLite store (per test) and the session's real Temporal dev server.

No worker polls the test's control task queue, so nothing a service starts runs: tests
look at what was written and started.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from gigafactory.contracts import RouteInput, RouteResult
from gigafactory.models import ApiKey, Role
from gigafactory.services import Services
from gigafactory.settings import Settings
from gigafactory.store import FleetStore, NotFound, SQLiteBackend
from tests.store.conftest import make_job

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def key(role: Role = Role.ADMIN, products: list[str] | None = None, key_id: str = "k1") -> ApiKey:
    """An API key as the services receive it from authentication."""
    return ApiKey(
        id=key_id,
        name=key_id,
        role=role,
        products=products if products is not None else ["*"],
        key_hash="-",
        created_at=NOW,
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FleetStore]:
    fleet = FleetStore(SQLiteBackend(tmp_path / "fleet.sqlite3"))
    await fleet.open()
    try:
        yield fleet
    finally:
        await fleet.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_services(
    store: FleetStore, client: Client, tmp_path: Path, clock: Clock, **settings: Any
) -> Services:
    base: dict[str, Any] = {
        "data_dir": tmp_path,
        "control_task_queue": f"svc-{uuid.uuid4().hex[:8]}",
        "factory_unhealthy_after_s": 20.0,
    }
    return Services(store, client, Settings(**{**base, **settings}), clock=clock)


@pytest.fixture
def services(store: FleetStore, client: Client, tmp_path: Path, clock: Clock) -> Services:
    return make_services(store, client, tmp_path, clock)


async def place(services: Services, job_id: str, **fields: Any) -> RouteResult:
    """Place an attempt of a job (its projection written first, as submit would have)."""
    product = fields.pop("product_id", "acme")
    try:
        await services.store.get_job(job_id, product)
    except NotFound:
        await services.store.create_job(make_job(job_id, product))
    return await services.dispatcher.place(
        RouteInput(
            job_id=job_id,
            product_id=product,
            epoch=fields.pop("epoch", 1),
            workflow_id=f"job-{product}-{job_id}",
            engine=fields.pop("engine", "sim"),
            **fields,
        )
    )
