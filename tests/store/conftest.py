"""Store fixtures: every contract test runs once per backend in `BACKENDS`.

`backend_factory` makes unopened backends; calling it twice gives two backends on the same
data (two processes, in effect). SQLite gets a file in the test's tmp_path; Cosmos DB a fresh
database on the session's local Cosmos DB API server (`tests.support.cosmos`), dropped after
the test. Cosmos cases carry the `cosmos` marker.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gigafactory.models import Job, JobSpec
from gigafactory.store import DocumentBackend, FleetStore, SQLiteBackend
from tests.support.cosmos import CosmosServer, cosmos_backend, drop_database

__all__ = ["BACKENDS", "T0", "TEST_ORDER_FIELDS", "make_job"]

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("cosmos", id="cosmos", marks=pytest.mark.cosmos),
]

# Fields the backend contract tests order by, besides the fleet store's (Cosmos DB needs a
# composite index for each).
TEST_ORDER_FIELDS = {"jobs": ("n", "t"), "events": ("k",)}

T0 = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
async def backend_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[[], DocumentBackend]]:
    """Makes (unopened) backends sharing this test's data."""
    if request.param == "sqlite":
        yield lambda: SQLiteBackend(tmp_path / "fleet.sqlite3")
        return
    server: CosmosServer = request.getfixturevalue("cosmos_server")
    database = f"test-{uuid.uuid4().hex[:12]}"
    yield lambda: cosmos_backend(server, database, order_fields=TEST_ORDER_FIELDS)
    await drop_database(server, database)


@pytest.fixture
async def store(backend_factory: Callable[[], DocumentBackend]) -> AsyncIterator[FleetStore]:
    """An open fleet store on a fresh backend."""
    fleet = FleetStore(backend_factory())
    await fleet.open()
    try:
        yield fleet
    finally:
        await fleet.close()


@pytest.fixture
def backend(store: FleetStore) -> DocumentBackend:
    """The open backend under `store`."""
    return store.backend


def make_job(
    job_id: str,
    product_id: str = "acme",
    *,
    minutes: int = 0,
    **fields: object,
) -> Job:
    """A queued job created `minutes` after T0; `fields` override Job fields."""
    spec_fields = {k: fields.pop(k) for k in ("priority", "engine", "title") if k in fields}
    spec = JobSpec.model_validate(
        {"engine": "sim", "prompt": "do it", "productId": product_id, **spec_fields}
    )
    at = T0 + timedelta(minutes=minutes)
    return Job.model_validate(
        {
            "id": job_id,
            "productId": product_id,
            "workflowId": f"job-{product_id}-{job_id}",
            "spec": spec,
            "createdAt": at,
            "updatedAt": at,
            **fields,
        }
    )
