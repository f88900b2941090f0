"""Factory reports (log, artifacts) under a lease epoch, fencing, and artifact access."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from gigafactory.models import Stage
from tests.api.conftest import MAX_ARTIFACT_BYTES, Api

pytestmark = pytest.mark.temporal


async def _running_job(api: Api, epoch: int = 2) -> tuple[dict[str, Any], str, str]:
    """A job whose lease `epoch` is held by a freshly enrolled factory."""
    factory_id, token = await api.enroll()
    job = await api.submit()
    await api.set_job(str(job["id"]), stage=Stage.RUNNING, lease_epoch=epoch, factory_id=factory_id)
    return job, factory_id, token


async def test_log_reports_current_epoch_accepted_stale_fenced(api: Api) -> None:
    job, factory_id, token = await _running_job(api)
    url = f"/fleet/jobs/{job['id']}/log"
    for seq, text in enumerate(["hello ", "world\n"]):
        r = await api.http.post(
            url,
            json={"productId": api.product, "epoch": 2, "seq": seq, "text": text},
            headers=api.auth(token),
        )
        assert r.status_code == 204, r.text
    log = (await api.http.get(url, headers=api.admin)).json()
    assert log["text"] == "hello world\n"
    assert [c["seq"] for c in log["items"]] == [0, 1]
    assert log["nextSeq"] == 1
    more = (await api.http.get(url, params={"epoch": 2, "afterSeq": 1}, headers=api.admin)).json()
    assert more == {"items": [], "text": "", "nextSeq": 1}

    r = await api.http.post(
        url,
        json={"productId": api.product, "epoch": 1, "seq": 5, "text": "zombie"},
        headers=api.auth(token),
    )
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "fenced"
    assert "epoch 1" in r.json()["error"]["message"]
    events = (await api.http.get(f"/fleet/jobs/{job['id']}/events", headers=api.admin)).json()
    fenced = [e for e in events["items"] if e["kind"] == "fenced"]
    assert len(fenced) == 1
    assert (fenced[0]["actor"], fenced[0]["epoch"]) == (f"factory:{factory_id}", 1)
    got = (await api.http.get(f"/fleet/jobs/{job['id']}", headers=api.admin)).json()
    assert got["fencedReports"] == 1
    assert "zombie" not in (await api.http.get(url, headers=api.admin)).json()["text"]


async def test_reports_from_a_factory_without_the_lease_are_refused(api: Api) -> None:
    job, _, _ = await _running_job(api)
    _, stranger = await api.enroll()
    r = await api.http.post(
        f"/fleet/jobs/{job['id']}/log",
        json={"productId": api.product, "epoch": 2, "seq": 0, "text": "x"},
        headers=api.auth(stranger),
    )
    assert r.status_code == 403
    r = await api.http.post(
        f"/fleet/jobs/{job['id']}/artifacts",
        params={"name": "x", "epoch": 2, "productId": api.product},
        content=b"x",
        headers=api.auth(stranger),
    )
    assert r.status_code == 403
    # Log reports need a factory token, not an API key.
    r = await api.http.post(
        f"/fleet/jobs/{job['id']}/log",
        json={"productId": api.product, "epoch": 2, "seq": 0, "text": "x"},
        headers=api.admin,
    )
    assert r.status_code == 401
    # A wrong product is 404.
    _, _, token = await _running_job(api)
    r = await api.http.post(
        f"/fleet/jobs/{job['id']}/log",
        json={"productId": "elsewhere", "epoch": 2, "seq": 0, "text": "x"},
        headers=api.auth(token),
    )
    assert r.status_code == 404


async def test_factory_artifact_upload_and_fencing(api: Api) -> None:
    job, factory_id, token = await _running_job(api)
    url = f"/fleet/jobs/{job['id']}/artifacts"
    data = b"agent output\n"
    params: dict[str, Any] = {"name": "agent.log", "epoch": 2, "productId": api.product}
    r = await api.http.post(
        url,
        params=params,
        content=data,
        headers={**api.auth(token), "Content-Type": "text/plain"},
    )
    assert r.status_code == 201, r.text
    artifact = r.json()
    assert artifact["sha256"] == hashlib.sha256(data).hexdigest()
    assert (artifact["size"], artifact["contentType"], artifact["epoch"]) == (
        len(data),
        "text/plain",
        2,
    )
    assert artifact["uploadedBy"] == f"factory:{factory_id}"
    # A retried upload of the same name under the same epoch replaces it.
    r = await api.http.post(url, params=params, content=data, headers=api.auth(token))
    assert r.json()["id"] == artifact["id"]

    r = await api.http.post(
        url, params={**params, "epoch": 1}, content=b"stale", headers=api.auth(token)
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "fenced"
    events = (await api.http.get(f"/fleet/jobs/{job['id']}/events", headers=api.admin)).json()
    fenced = [e for e in events["items"] if e["kind"] == "fenced"]
    assert fenced and fenced[0]["data"]["what"] == "artifact"
    r = await api.http.post(
        url, params={"name": "x", "productId": api.product}, content=b"x", headers=api.auth(token)
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "epoch"
    listed = (await api.http.get(url, headers=api.admin)).json()["items"]
    assert [a["name"] for a in listed] == ["agent.log"]


async def test_artifact_upload_list_get_delete_by_key(api: Api) -> None:
    submitter = await api.key("submitter")
    operator = await api.key("operator")
    job = await api.submit(submitter)
    url = f"/fleet/jobs/{job['id']}/artifacts"
    r = await api.http.post(
        url,
        params={"name": "report.json"},
        content=b'{"ok": true}',
        headers={**api.auth(submitter), "Content-Type": "application/json"},
    )
    assert r.status_code == 201, r.text
    artifact = r.json()
    assert artifact["epoch"] is None and artifact["uploadedBy"].startswith("api:")

    listed = (await api.http.get(url, headers=api.auth(submitter))).json()["items"]
    assert [a["id"] for a in listed] == [artifact["id"]]
    meta = await api.http.get(f"{url}/{artifact['id']}", headers=api.auth(submitter))
    assert meta.json() == artifact
    for path in (f"{url}/{artifact['id']}/content", f"{url}/{artifact['id']}?download=1"):
        content = await api.http.get(path, headers=api.auth(submitter))
        assert content.status_code == 200
        assert content.content == b'{"ok": true}'
        assert content.headers["content-type"] == "application/json"
        assert "report.json" in content.headers["content-disposition"]

    r = await api.http.delete(f"{url}/{artifact['id']}", headers=api.auth(submitter))
    assert r.status_code == 403
    r = await api.http.delete(f"{url}/{artifact['id']}", headers=api.auth(operator))
    assert r.status_code == 204
    assert (await api.http.get(url, headers=api.auth(submitter))).json()["items"] == []
    r = await api.http.get(f"{url}/{artifact['id']}/content", headers=api.auth(submitter))
    assert r.status_code == 404
    assert "has no artifact" in r.json()["error"]["message"]


async def test_artifact_too_big_is_413_and_stores_nothing(api: Api) -> None:
    job = await api.submit()
    url = f"/fleet/jobs/{job['id']}/artifacts"
    r = await api.http.post(
        url,
        params={"name": "big.bin"},
        content=b"x" * (MAX_ARTIFACT_BYTES + 1),
        headers=api.admin,
    )
    assert r.status_code == 413
    assert str(MAX_ARTIFACT_BYTES) in r.json()["error"]["message"]

    async def chunks():  # no Content-Length: the limit holds while streaming too
        for _ in range(3):
            yield b"y" * MAX_ARTIFACT_BYTES

    r = await api.http.post(url, params={"name": "big.bin"}, content=chunks(), headers=api.admin)
    assert r.status_code == 413
    assert (await api.http.get(url, headers=api.admin)).json()["items"] == []
    r = await api.http.post(
        url, params={"name": "ok.bin"}, content=b"x" * MAX_ARTIFACT_BYTES, headers=api.admin
    )
    assert r.status_code == 201
