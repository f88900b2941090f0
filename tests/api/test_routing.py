"""Routing weights per product and per request, and the routing explanation endpoint."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api, new_product

pytestmark = pytest.mark.temporal


async def test_product_weights_defaults_override_and_reset(api: Api) -> None:
    path = f"/fleet/routing/weights/{api.product}"
    r = await api.http.get(path, headers=api.admin)
    assert r.status_code == 200
    body = r.json()
    assert body["overrides"] == {} and body["effective"] == body["defaults"]
    assert body["defaults"]["load"] == 2.0 and "cost_rate" in body["terms"]

    operator = await api.key("operator")
    r = await api.http.put(
        path, json={"weights": {"load": 5, "costRate": 0}}, headers=api.auth(operator)
    )
    assert r.status_code == 200, r.text
    assert r.json()["overrides"] == {"load": 5.0, "cost_rate": 0.0}
    assert r.json()["effective"]["load"] == 5.0
    assert r.json()["effective"]["health"] == body["defaults"]["health"]
    stored = (await api.http.get(path, headers=api.admin)).json()
    assert stored["overrides"] == {"load": 5.0, "cost_rate": 0.0}
    assert stored["updatedBy"].startswith("api:")

    r = await api.http.put(path, json={"weights": {}}, headers=api.auth(operator))
    assert r.json()["overrides"] == {} and r.json()["effective"] == body["defaults"]


async def test_bad_weights_are_422_naming_the_term_and_change_nothing(api: Api) -> None:
    path = f"/fleet/routing/weights/{api.product}"
    for weights, named in (({"speed": 1}, "speed"), ({"load": -1}, "load")):
        r = await api.http.put(path, json={"weights": weights}, headers=api.admin)
        assert r.status_code == 422, r.text
        assert named in r.json()["error"]["message"]
    assert (await api.http.get(path, headers=api.admin)).json()["overrides"] == {}


async def test_weights_are_product_scoped_and_for_operators(api: Api) -> None:
    submitter = await api.key("submitter")
    path = f"/fleet/routing/weights/{api.product}"
    assert (await api.http.get(path, headers=api.auth(submitter))).status_code == 200
    r = await api.http.put(path, json={"weights": {"load": 1}}, headers=api.auth(submitter))
    assert r.status_code == 403
    other = f"/fleet/routing/weights/{new_product()}"
    assert (await api.http.get(other, headers=api.auth(submitter))).status_code == 404
    operator = await api.key("operator")
    r = await api.http.put(other, json={"weights": {"load": 1}}, headers=api.auth(operator))
    assert r.status_code == 404


async def test_request_weights_are_validated_at_submit(api: Api) -> None:
    r = await api.http.post(
        "/fleet/jobs",
        json={
            "productId": api.product,
            "engine": "sim",
            "prompt": "p",
            "routingWeights": {"lod": 2},
        },
        headers=api.admin,
    )
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "routingWeights"
    assert "lod" in r.json()["error"]["message"]
    job = await api.submit(
        engine="sim", prompt="p", routingWeights={"load": 3}, preferredLabels=["gpu"]
    )
    assert job["spec"]["routingWeights"] == {"load": 3.0}
    assert job["spec"]["preferredLabels"] == ["gpu"]


async def test_routing_explanation_of_an_unrouted_and_a_hidden_job(api: Api) -> None:
    job = await api.submit(engine="devin", prompt="p")
    r = await api.http.get(f"/fleet/jobs/{job['id']}/routing", headers=api.admin)
    assert r.status_code == 200
    # No worker runs in the API tests: the job was never routed.
    assert (r.json()["reason"], r.json()["candidates"]) == ("not routed yet", [])
    outsider = await api.key("submitter", [new_product()])
    r = await api.http.get(f"/fleet/jobs/{job['id']}/routing", headers=api.auth(outsider))
    assert r.status_code == 404
