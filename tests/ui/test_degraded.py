"""With Temporal unreachable the pages still render from the store and say so; actions that
need Temporal answer why they cannot be done now."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from gigafactory.models import Job, JobSpec, Stage
from gigafactory.security import mint
from gigafactory.settings import Settings
from gigafactory.store import open_store
from launch.devserver import free_port
from tests.ui.conftest import BASE, Browser, new_product


@pytest.fixture
async def offline(tmp_path: Path) -> AsyncIterator[tuple[Browser, str, str]]:
    """A browser signed in to an API whose Temporal does not answer (budgets on)."""
    _, admin_key = mint("gfk")
    settings = Settings(
        data_dir=tmp_path,
        temporal_address=f"127.0.0.1:{free_port()}",  # nothing listens there
        admin_key=admin_key,
        budgets=True,
        preemption=True,
    )
    product = new_product()
    async with AsyncExitStack() as stack:
        store = await open_store(settings)
        stack.push_async_callback(store.close)
        now = datetime.now(UTC)
        await store.create_job(
            Job(
                id="j-offline",
                product_id=product,
                workflow_id=f"job-{product}-j-offline",
                spec=JobSpec(engine="sim", prompt="p", product_id=product, title="Offline job"),
                stage=Stage.RUNNING,
                created_at=now,
                updated_at=now,
            )
        )
        await store.touch_product(product, now)
        app = create_app(settings, store=store)  # the app connects lazily to Temporal itself
        await stack.enter_async_context(app.router.lifespan_context(app))
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)
        stack.push_async_callback(http.aclose)
        browser = Browser(http)
        assert (await browser.sign_in(admin_key)).status_code == 303
        yield browser, product, "j-offline"


async def test_pages_render_from_the_store_with_a_banner(
    offline: tuple[Browser, str, str],
) -> None:
    browser, product, job_id = offline
    for path in (
        "/ui",
        "/ui/jobs",
        f"/ui/jobs/{job_id}",
        "/ui/budgets",
        f"/ui/routing?product={product}",
    ):
        r = await browser.http.get(path)
        assert r.status_code == 200, (path, r.text)
        assert "Temporal is unreachable" in r.text, path
    assert "Offline job" in (await browser.http.get("/ui/jobs")).text
    budgets = (await browser.http.get("/ui/budgets")).text
    assert "spent is replayed from the ledger" in budgets  # the store's figures, said so
    assert "Preemption is off" not in (await browser.http.get("/ui/routing")).text


async def test_actions_that_need_temporal_say_so(offline: tuple[Browser, str, str]) -> None:
    browser, product, job_id = offline
    r = await browser.post(f"/ui/jobs/{job_id}/cancel")
    assert r.status_code == 303
    assert "Temporal is unreachable" in (await browser.http.get(r.headers["location"])).text
    r = await browser.post(
        "/ui/jobs",
        {"productId": product, "engine": "sim", "prompt": "x"},
        headers={"HX-Request": "true"},
    )
    assert r.status_code == 422 and "Temporal is unreachable" in r.text
    r = await browser.post(f"/ui/budgets/{product}/pause", {"reason": "x"})
    assert "Temporal is unreachable" in (await browser.http.get(r.headers["location"])).text
