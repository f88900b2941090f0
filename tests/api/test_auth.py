"""Authentication, roles and product visibility (Invariant 7)."""

from __future__ import annotations

import pytest

from gigafactory.security import mint
from tests.api.conftest import Api, new_product

pytestmark = pytest.mark.temporal


async def test_missing_and_bad_credentials_are_401_with_a_message(api: Api) -> None:
    r = await api.http.get("/fleet/jobs")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    assert "Authorization: Bearer" in r.json()["error"]["message"]
    assert r.headers["www-authenticate"] == "Bearer"

    for token in ("nonsense", mint("gfk")[1], api.admin_key + "x"):
        r = await api.http.get("/fleet/jobs", headers=api.auth(token))
        assert r.status_code == 401, token
        assert "invalid API key" in r.json()["error"]["message"]


async def test_revoked_key_is_refused_at_once(api: Api) -> None:
    key = await api.key("submitter")
    assert (await api.http.get("/fleet/jobs", headers=api.auth(key))).status_code == 200
    key_id = key.split("_")[1]
    r = await api.http.delete(f"/fleet/keys/{key_id}", headers=api.admin)
    assert r.status_code == 204
    r = await api.http.get("/fleet/jobs", headers=api.auth(key))
    assert r.status_code == 401
    assert "revoked" in r.json()["error"]["message"]
    listed = (await api.http.get("/fleet/keys", headers=api.admin)).json()["items"]
    mine = next(k for k in listed if k["id"] == key_id)
    assert mine["revokedAt"] is not None
    assert all("keyHash" not in k and "key" not in k for k in listed)


async def test_other_products_jobs_are_404_everywhere(api: Api) -> None:
    mine = await api.key("submitter")
    other = await api.key("operator", [new_product()])
    job = await api.submit(mine)
    job_id = job["id"]

    for method, path, body in [
        ("GET", f"/fleet/jobs/{job_id}", None),
        ("PATCH", f"/fleet/jobs/{job_id}", {"action": "cancel"}),
        ("GET", f"/fleet/jobs/{job_id}/events", None),
        ("GET", f"/fleet/jobs/{job_id}/runs", None),
        ("GET", f"/fleet/jobs/{job_id}/log", None),
        ("GET", f"/fleet/jobs/{job_id}/artifacts", None),
    ]:
        r = await api.http.request(method, path, json=body, headers=api.auth(other))
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["error"]["message"] == f"job {job_id} not found"
    # The same answer as for a job that does not exist at all.
    r = await api.http.get("/fleet/jobs/000000000000", headers=api.auth(other))
    assert r.json()["error"]["message"] == "job 000000000000 not found"

    listed = (await api.http.get("/fleet/jobs", headers=api.auth(other))).json()
    assert listed["items"] == []
    r = await api.http.get(
        "/fleet/jobs", params={"productId": api.product}, headers=api.auth(other)
    )
    assert r.status_code == 200 and r.json()["items"] == []
    # Its own key still sees it.
    r = await api.http.get(f"/fleet/jobs/{job_id}", headers=api.auth(mine))
    assert r.status_code == 200


async def test_roles_are_403(api: Api) -> None:
    submitter = await api.key("submitter")
    operator = await api.key("operator")
    body = {"name": "x", "role": "admin", "products": ["*"]}
    r = await api.http.post("/fleet/keys", json=body, headers=api.auth(submitter))
    assert r.status_code == 403
    assert "admin role" in r.json()["error"]["message"]
    r = await api.http.post("/fleet/keys", json=body, headers=api.auth(operator))
    assert r.status_code == 403
    assert (await api.http.get("/fleet/keys", headers=api.auth(operator))).status_code == 403
    r = await api.http.get("/fleet/factories", headers=api.auth(submitter))
    assert r.status_code == 403
    r = await api.http.post("/fleet/factories/enrollment-tokens", headers=api.auth(submitter))
    assert r.status_code == 403
    assert (await api.http.get("/fleet/factories", headers=api.auth(operator))).status_code == 200


async def test_admin_grants_only_products_it_sees(api: Api) -> None:
    scoped_admin = await api.key("admin")
    r = await api.http.post(
        "/fleet/keys",
        json={"name": "x", "role": "submitter", "products": [new_product()]},
        headers=api.auth(scoped_admin),
    )
    assert r.status_code == 404
    r = await api.http.post(
        "/fleet/keys",
        json={"name": "x", "role": "submitter", "products": ["*"]},
        headers=api.auth(scoped_admin),
    )
    assert r.status_code == 403
    r = await api.http.post(
        "/fleet/keys",
        json={"name": "x", "role": "submitter", "products": [api.product]},
        headers=api.auth(scoped_admin),
    )
    assert r.status_code == 201
    created = r.json()
    assert created["key"].startswith("gfk_")
    assert (created["role"], created["products"]) == ("submitter", [api.product])


async def test_factory_token_is_not_an_api_key(api: Api) -> None:
    _, token = await api.enroll()
    r = await api.http.get("/fleet/jobs", headers=api.auth(token))
    assert r.status_code == 401
    assert "not an API key" in r.json()["error"]["message"]
    r = await api.http.post("/fleet/factories/heartbeat", json={"slots": 1}, headers=api.admin)
    assert r.status_code == 401
    assert "not a factory token" in r.json()["error"]["message"]


async def test_key_products_must_be_valid_product_ids(api: Api) -> None:
    r = await api.http.post(
        "/fleet/keys",
        json={"name": "x", "role": "submitter", "products": ["has-dash"]},
        headers=api.admin,
    )
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "products"
    assert "has-dash" in r.json()["error"]["message"]
