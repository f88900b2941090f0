"""Store fixtures: every contract test runs once per backend in `BACKENDS`.

A backend factory takes the test's tmp_path and returns an unopened backend; calling it
twice with the same path gives two backends on the same data (two processes, in effect).
To run the contract against Cosmos DB, append a `pytest.param(..., marks=pytest.mark.cosmos)`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gigafactory.models import Job, JobSpec
from gigafactory.store import DocumentBackend, FleetStore, SQLiteBackend

BackendFactory = Callable[[Path], DocumentBackend]


def sqlite_backend(tmp_path: Path) -> DocumentBackend:
    return SQLiteBackend(tmp_path / "fleet.sqlite3")


BACKENDS = [pytest.param(sqlite_backend, id="sqlite")]

T0 = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
def backend_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[[], DocumentBackend]:
    """Makes (unopened) backends sharing this test's data."""
    factory: BackendFactory = request.param
    return lambda: factory(tmp_path)


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
    spec_fields = {k: fields.pop(k) for k in ("priority", "engine") if k in fields}
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
