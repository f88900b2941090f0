"""The API on a real SQLite store (per test) and the session's real Temporal dev server.

No worker polls the API's control task queue here, so a submitted job's workflow stays
pending: tests look at it with describe / history and terminate it at the end.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.service import RPCError

from api.app import create_app
from gigafactory.models import Job
from gigafactory.security import mint
from gigafactory.settings import Settings
from gigafactory.store import FleetStore, open_store
from launch.devserver import TemporalDevServer
from tests.support.projections import set_job

pytestmark = pytest.mark.temporal

# Small limits so the size checks are cheap to exercise.
MAX_SPEC_BYTES = 4096
MAX_ARTIFACT_BYTES = 2048


def new_product() -> str:
    """A product id of its own for each test (no '-': it separates workflow id parts)."""
    return f"p{uuid.uuid4().hex[:10]}"


@dataclass
class Api:
    """The app under test and helpers to drive it."""

    http: httpx.AsyncClient
    store: FleetStore
    client: Client
    settings: Settings
    admin_key: str
    product: str
    app: Any = None

    @staticmethod
    def auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    @property
    def admin(self) -> dict[str, str]:
        return self.auth(self.admin_key)

    async def key(self, role: str = "submitter", products: list[str] | None = None) -> str:
        r = await self.http.post(
            "/fleet/keys",
            json={"name": f"{role}-test", "role": role, "products": products or [self.product]},
            headers=self.admin,
        )
        assert r.status_code == 201, r.text
        return str(r.json()["key"])

    async def submit(self, token: str | None = None, **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"productId": self.product}
        if "spec" not in fields:
            body.update(engine="shell", prompt="echo hi")
        body.update(fields)
        r = await self.http.post(
            "/fleet/jobs", json=body, headers=self.auth(token) if token else self.admin
        )
        assert r.status_code == 201, r.text
        job: dict[str, Any] = r.json()
        return job

    async def enroll(self, factory_id: str | None = None, **fields: Any) -> tuple[str, str]:
        r = await self.http.post("/fleet/factories/enrollment-tokens", headers=self.admin)
        assert r.status_code == 201, r.text
        factory_id = factory_id or f"f-{uuid.uuid4().hex[:8]}"
        body: dict[str, Any] = {
            "enrollmentToken": r.json()["token"],
            "factoryId": factory_id,
            "engines": ["shell", "sim"],
            "labels": ["gpu"],
            "slots": 2,
            "hostname": "test-host",
        }
        body.update(fields)
        r = await self.http.post("/fleet/factories/enroll", json=body)
        assert r.status_code == 201, r.text
        return factory_id, str(r.json()["factoryToken"])

    async def set_job(self, job_id: str, **changes: Any) -> Job:
        """Move a projection as the job's workflow would (no worker runs in these tests)."""
        return await set_job(self.store, job_id, **changes)


def make_settings(
    tmp_path: Path, server: TemporalDevServer, admin_key: str, **overrides: Any
) -> Settings:
    return Settings(
        data_dir=tmp_path,
        temporal_address=server.address,
        admin_key=admin_key,
        # A queue no worker polls: workflows stay pending, and never reach other tests.
        control_task_queue=f"fleet-control-api-{uuid.uuid4().hex[:8]}",
        max_spec_bytes=MAX_SPEC_BYTES,
        max_artifact_bytes=MAX_ARTIFACT_BYTES,
        **overrides,
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FleetStore]:
    store = await open_store(Settings(data_dir=tmp_path))
    try:
        yield store
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def running_api(
    tmp_path: Path,
    server: TemporalDevServer,
    client: Client,
    store: FleetStore,
    **overrides: Any,
) -> AsyncIterator[Api]:
    """The app on `store` with settings `overrides`, and every workflow its jobs started
    terminated at the end."""
    _, admin_key = mint("gfk")
    settings = make_settings(tmp_path, server, admin_key, **overrides)
    app = create_app(settings, store=store, temporal=client)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http,
    ):
        yield Api(http, store, client, settings, admin_key, new_product(), app)
    # Clean up every workflow this test's jobs started.
    page = await store.list_jobs(limit=200)
    for job in page.items:
        with contextlib.suppress(RPCError):
            await client.get_workflow_handle(job.workflow_id).terminate(reason="test cleanup")


@pytest.fixture
async def api(
    tmp_path: Path, temporal_server: TemporalDevServer, client: Client, store: FleetStore
) -> AsyncIterator[Api]:
    async with running_api(tmp_path, temporal_server, client, store) as api:
        yield api
