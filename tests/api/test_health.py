"""Health and the OpenAPI documents (no authentication)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from api.app import create_app
from gigafactory.security import mint
from tests.api.conftest import Api

pytestmark = pytest.mark.temporal


async def test_healthz_without_auth(api: Api) -> None:
    r = await api.http.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "store": "ok", "temporal": "ok"}


async def test_openapi_and_docs(api: Api) -> None:
    r = await api.http.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    for path in (
        "/fleet/jobs",
        "/fleet/jobs/{job_id}",
        "/fleet/jobs/{job_id}/events",
        "/fleet/jobs/{job_id}/log",
        "/fleet/jobs/{job_id}/artifacts",
        "/fleet/jobs/{job_id}/artifacts/{artifact_id}/content",
        "/fleet/factories/enroll",
        "/fleet/factories/heartbeat",
        "/fleet/factories/{factory_id}/token/rotate",
        "/fleet/keys",
        "/healthz",
    ):
        assert path in paths, path
    submit = r.json()["components"]["schemas"]["SubmitJob"]["properties"]
    assert "productId" in submit and "estimatedCostUsd" in submit
    docs = await api.http.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


async def test_unknown_route_is_a_json_404(api: Api) -> None:
    r = await api.http.get("/fleet/nothing", headers=api.admin)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


async def test_app_opens_and_closes_its_own_store_and_keeps_the_bootstrap_key(
    api: Api, tmp_path: Path
) -> None:
    settings = api.settings.model_copy(update={"data_dir": tmp_path / "own"})
    for round_ in range(2):
        app = create_app(settings, temporal=api.client)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as http,
        ):
            r = await http.get("/fleet/keys", headers=api.admin)
            assert r.status_code == (200 if round_ == 0 else 401), r.text
            if round_ == 0:
                # An admin revokes the bootstrap key: a restart with the same key keeps it so.
                r = await http.delete("/fleet/keys/bootstrap", headers=api.admin)
                assert r.status_code == 204
    assert settings.resolved_sqlite_path.exists()

    # A different configured admin key replaces the old one and is active.
    _, new_admin = mint("gfk")
    app = create_app(settings.model_copy(update={"admin_key": new_admin}), temporal=api.client)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as http,
    ):
        assert (await http.get("/fleet/keys", headers=api.auth(new_admin))).status_code == 200
        assert (await http.get("/fleet/keys", headers=api.admin)).status_code == 401
