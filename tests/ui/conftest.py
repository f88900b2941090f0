"""The web control plane on the real API app (a real SQLite store per test and the session's
Temporal dev server), driven through httpx's ASGI transport as a browser would: a cookie
jar, forms, the CSRF token the pages carry.

No worker polls the test's control task queue: submitted jobs stay queued, so pages are
checked against projections the tests move by hand where they need another stage.
"""

from __future__ import annotations

import contextlib
import re
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

BASE = "http://ui.test"
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


def new_product() -> str:
    return f"p{uuid.uuid4().hex[:10]}"


@dataclass
class Browser:
    """One browser: its own cookie jar on the app."""

    http: httpx.AsyncClient
    csrf: str = ""

    async def sign_in(self, api_key: str) -> httpx.Response:
        r = await self.http.post("/ui/sign-in", data={"apiKey": api_key, "next": "/ui"})
        if r.status_code == 303:
            page = await self.http.get("/ui/jobs")
            assert page.status_code == 200, page.text
            match = _CSRF.search(page.text)
            assert match, "the page carries no CSRF token"
            self.csrf = match.group(1)
        return r

    async def post(
        self, path: str, data: dict[str, Any] | None = None, **kw: Any
    ) -> httpx.Response:
        return await self.http.post(path, data={"csrf": self.csrf, **(data or {})}, **kw)


@dataclass
class UiApp:
    """The app under test, its store and keys."""

    app: Any
    store: FleetStore
    client: Client
    settings: Settings
    admin_key: str
    product: str

    def browser(self) -> Browser:
        transport = httpx.ASGITransport(app=self.app)
        return Browser(httpx.AsyncClient(transport=transport, base_url=BASE))

    @property
    def api(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url=BASE,
            headers={"Authorization": f"Bearer {self.admin_key}"},
        )

    async def key(self, role: str, products: list[str] | None = None) -> str:
        async with self.api as api:
            r = await api.post(
                "/fleet/keys",
                json={"name": f"{role}-ui", "role": role, "products": products or [self.product]},
            )
        assert r.status_code == 201, r.text
        return str(r.json()["key"])

    async def submit(self, **fields: Any) -> dict[str, Any]:
        body = {"productId": self.product, "engine": "sim", "prompt": "do it", **fields}
        async with self.api as api:
            r = await api.post("/fleet/jobs", json=body)
        assert r.status_code == 201, r.text
        job: dict[str, Any] = r.json()
        return job

    async def set_job(self, job_id: str, **changes: Any) -> Job:
        return await set_job(self.store, job_id, **changes)


def ui_settings(tmp_path: Path, temporal_address: str, admin_key: str, **extra: Any) -> Settings:
    return Settings(
        data_dir=tmp_path,
        temporal_address=temporal_address,
        admin_key=admin_key,
        control_task_queue=f"fleet-control-ui-{uuid.uuid4().hex[:8]}",
        temporal_ui_url="http://temporal-ui.test",
        **extra,
    )


@contextlib.asynccontextmanager
async def ui_app(settings: Settings, client: Client) -> AsyncIterator[UiApp]:
    """The app for `settings` with its own store, the lifespan run."""
    assert settings.admin_key
    store = await open_store(settings)
    app = create_app(settings, store=store, temporal=client)
    try:
        async with app.router.lifespan_context(app):
            yield UiApp(app, store, client, settings, settings.admin_key, new_product())
    finally:
        page = await store.list_jobs(limit=200)
        for job in page.items:
            with contextlib.suppress(RPCError):
                await client.get_workflow_handle(job.workflow_id).terminate(reason="test cleanup")
        await store.close()


@pytest.fixture
async def ui(
    tmp_path: Path, temporal_server: TemporalDevServer, client: Client
) -> AsyncIterator[UiApp]:
    _, admin_key = mint("gfk")
    async with ui_app(ui_settings(tmp_path, temporal_server.address, admin_key), client) as app:
        yield app


@pytest.fixture
async def admin(ui: UiApp) -> AsyncIterator[Browser]:
    """A browser signed in with the admin key."""
    browser = ui.browser()
    r = await browser.sign_in(ui.admin_key)
    assert r.status_code == 303, r.text
    yield browser
    await browser.http.aclose()
