"""Size limits and rate limits: 413, 422 or 429 with a message naming the setting, and
nothing stored on a refusal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from gigafactory.models import Stage
from gigafactory.store import FleetStore
from launch.devserver import TemporalDevServer
from tests.api.conftest import Api, running_api

pytestmark = pytest.mark.temporal

LIMITS: dict[str, Any] = {
    "max_prompt_bytes": 1000,
    "max_labels": 3,
    "max_label_bytes": 20,
    "max_log_chunk_bytes": 2048,
    "max_page_size": 50,
    "max_request_bytes": 16 * 1024,
}


@pytest.fixture
async def limited(
    tmp_path: Path, temporal_server: TemporalDevServer, client: Client, store: FleetStore
) -> AsyncIterator[Api]:
    async with running_api(tmp_path, temporal_server, client, store, **LIMITS) as api:
        yield api


async def nothing_stored(api: Api) -> None:
    assert (await api.store.list_jobs(limit=10)).items == []
    assert await api.store.list_products() == []


def refused(r: Any, status: int, setting: str, field: str | None = None) -> None:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert setting in error["message"], error
    if field is not None:
        assert error["field"] == field, error


async def submit(api: Api, **fields: Any) -> Any:
    body = {"productId": api.product, "engine": "shell", "prompt": "true", **fields}
    return await api.http.post("/fleet/jobs", json=body, headers=api.admin)


async def test_a_prompt_over_the_limit_is_413_and_stores_nothing(limited: Api) -> None:
    r = await submit(limited, prompt="x" * 1001)
    refused(r, 413, "FLEET_MAX_PROMPT_BYTES", "prompt")
    assert "1001 bytes" in r.json()["error"]["message"]
    spec = "| engine |\n|---|\n| shell |\n\n" + "é" * 600  # 1200 bytes of prompt in the file
    r = await submit(limited, spec=spec, engine=None, prompt=None)
    refused(r, 413, "FLEET_MAX_PROMPT_BYTES", "prompt")
    child = {"id": "a", "spec": {"prompt": "y" * 2000}}
    r = await submit(limited, children=[child])
    refused(r, 413, "FLEET_MAX_PROMPT_BYTES", "children.a.prompt")
    await nothing_stored(limited)


@pytest.mark.parametrize(
    ("fields", "status", "field"),
    [
        ({"labels": {f"k{i}": "v" for i in range(4)}}, 422, "labels"),
        ({"labels": {"team": "x" * 21}}, 413, "labels"),
        ({"labels": {"k" * 21: "v"}}, 413, "labels"),
        ({"capabilities": ["a", "b", "c", "d"]}, 422, "capabilities"),
        ({"preferredLabels": ["z" * 30]}, 413, "preferredLabels"),
        (
            {"children": [{"id": "c", "prompt": "p", "labels": {"t": "w" * 40}}]},
            413,
            "children.c.labels",
        ),
    ],
)
async def test_labels_over_the_limits_store_nothing(
    limited: Api, fields: dict[str, Any], status: int, field: str
) -> None:
    setting = "FLEET_MAX_LABELS" if status == 422 else "FLEET_MAX_LABEL_BYTES"
    refused(await submit(limited, **fields), status, setting, field)
    await nothing_stored(limited)


async def test_factory_labels_over_the_limits_change_nothing(limited: Api) -> None:
    r = await limited.http.post("/fleet/factories/enrollment-tokens", headers=limited.admin)
    token = r.json()["token"]
    body = {"enrollmentToken": token, "factoryId": "f1", "labels": ["a", "b", "c", "d"]}
    refused(await limited.http.post("/fleet/factories/enroll", json=body), 422, "FLEET_MAX_LABELS")
    assert await limited.store.list_factories() == []
    # The token was not spent on the refused enrollment.
    body["labels"] = ["gpu"]
    r = await limited.http.post("/fleet/factories/enroll", json=body)
    assert r.status_code == 201, r.text
    factory_token = r.json()["factoryToken"]
    beat = {"engines": ["shell"], "labels": ["l" * 21], "slots": 1}
    r = await limited.http.post(
        "/fleet/factories/heartbeat", json=beat, headers=limited.auth(factory_token)
    )
    refused(r, 413, "FLEET_MAX_LABEL_BYTES", "labels")
    [factory] = await limited.store.list_factories()
    assert factory.labels == ["gpu"] and factory.last_heartbeat_at is None


async def test_a_log_chunk_over_the_limit_is_413_and_not_stored(limited: Api) -> None:
    factory_id, token = await limited.enroll()
    job = await limited.submit()
    await limited.set_job(job["id"], stage=Stage.RUNNING, lease_epoch=1, factory_id=factory_id)
    body = {"productId": limited.product, "epoch": 1, "seq": 0, "text": "x" * 2049}
    r = await limited.http.post(
        f"/fleet/jobs/{job['id']}/log", json=body, headers=limited.auth(token)
    )
    refused(r, 413, "FLEET_MAX_LOG_CHUNK_BYTES", "text")
    assert await limited.store.read_log(job["id"], limited.product) == []
    body["text"] = "x" * 2048
    r = await limited.http.post(
        f"/fleet/jobs/{job['id']}/log", json=body, headers=limited.auth(token)
    )
    assert r.status_code == 204, r.text


async def test_an_artifact_over_the_limit_is_413_and_not_stored(api: Api) -> None:
    job = await api.submit()
    too_big = b"x" * (api.settings.max_artifact_bytes + 1)
    r = await api.http.post(
        f"/fleet/jobs/{job['id']}/artifacts",
        params={"name": "big.bin"},
        content=too_big,
        headers=api.admin,
    )
    refused(r, 413, "FLEET_MAX_ARTIFACT_BYTES")
    # Without a Content-Length, the body is counted as it arrives.

    async def chunks() -> AsyncIterator[bytes]:
        yield too_big[:1000]
        yield too_big[1000:]

    r = await api.http.post(
        f"/fleet/jobs/{job['id']}/artifacts",
        params={"name": "big.bin"},
        content=chunks(),
        headers=api.admin,
    )
    refused(r, 413, "FLEET_MAX_ARTIFACT_BYTES")
    assert await api.store.list_artifacts(job["id"], api.product) == []
    blobs = api.settings.blob_dir
    assert not blobs.exists() or not any(p.is_file() for p in blobs.rglob("*"))


async def test_a_body_over_the_request_limit_is_413_before_it_is_read(limited: Api) -> None:
    big = {"productId": limited.product, "engine": "shell", "prompt": "p", "title": "t" * 20_000}
    r = await limited.http.post("/fleet/jobs", json=big, headers=limited.admin)
    refused(r, 413, "FLEET_MAX_REQUEST_BYTES")
    assert r.json()["error"]["code"] == "too_large"

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"productId": "%s", "engine": "shell", "prompt": "' % limited.product.encode()
        for _ in range(20):
            yield b"p" * 1000
        yield b'"}'

    r = await limited.http.post(
        "/fleet/jobs",
        content=chunks(),
        headers={**limited.admin, "Content-Type": "application/json"},
    )
    refused(r, 413, "FLEET_MAX_REQUEST_BYTES")
    await nothing_stored(limited)


async def test_a_page_over_the_limit_is_422(limited: Api) -> None:
    job = await limited.submit()
    for path in ("/fleet/jobs", f"/fleet/jobs/{job['id']}/events", "/fleet/audit"):
        r = await limited.http.get(path, params={"limit": 51}, headers=limited.admin)
        refused(r, 422, "FLEET_MAX_PAGE_SIZE", "limit")
        r = await limited.http.get(path, params={"limit": 50}, headers=limited.admin)
        assert r.status_code == 200, (path, r.text)


# --- rate limits ------------------------------------------------------------------------------
@pytest.fixture
async def throttled(
    tmp_path: Path, temporal_server: TemporalDevServer, client: Client, store: FleetStore
) -> AsyncIterator[Api]:
    # Buckets of 3 that refill once in 1000 s: the fourth request is refused.
    rates = {
        "rate_submit_per_s": 0.001,
        "rate_submit_burst": 3,
        "rate_report_per_s": 0.001,
        "rate_report_burst": 3,
    }
    async with running_api(tmp_path, temporal_server, client, store, **rates) as api:
        yield api


async def test_submits_over_the_rate_are_429_per_key(throttled: Api) -> None:
    key = await throttled.key("submitter")
    for _ in range(3):
        await throttled.submit(key)
    r = await submit(throttled, productId=throttled.product)
    assert r.status_code == 201  # another key has its own bucket
    r = await throttled.http.post(
        "/fleet/jobs",
        json={"productId": throttled.product, "engine": "shell", "prompt": "true"},
        headers=throttled.auth(key),
    )
    refused(r, 429, "FLEET_RATE_SUBMIT_PER_S")
    assert r.json()["error"]["code"] == "rate_limited"
    assert int(r.headers["retry-after"]) >= 1
    assert len((await throttled.store.list_jobs(limit=10)).items) == 4
    # Adding children is a submit too.
    parent = (await throttled.store.list_jobs(limit=10)).items[0]
    r = await throttled.http.post(
        f"/fleet/jobs/{parent.id}/children",
        json={"children": [{"id": "x", "prompt": "p"}]},
        headers=throttled.auth(key),
    )
    refused(r, 429, "FLEET_RATE_SUBMIT_PER_S")


async def test_factory_reports_over_the_rate_are_429_per_factory(throttled: Api) -> None:
    _, token = await throttled.enroll()
    _, other = await throttled.enroll()
    beat = {"engines": ["shell"], "slots": 1}
    for _ in range(3):
        r = await throttled.http.post(
            "/fleet/factories/heartbeat", json=beat, headers=throttled.auth(token)
        )
        assert r.status_code == 200, r.text
    r = await throttled.http.post(
        "/fleet/factories/heartbeat", json=beat, headers=throttled.auth(token)
    )
    refused(r, 429, "FLEET_RATE_REPORT_PER_S")
    assert int(r.headers["retry-after"]) >= 1
    r = await throttled.http.post(
        "/fleet/factories/heartbeat", json=beat, headers=throttled.auth(other)
    )
    assert r.status_code == 200, r.text


async def test_a_continuation_token_that_is_not_one_is_422_everywhere(api: Api) -> None:
    """Found by the schema fuzzer: a bad token on a job's events was a 500."""
    job = await api.submit()
    for path in ("/fleet/jobs", f"/fleet/jobs/{job['id']}/events", "/fleet/audit"):
        r = await api.http.get(path, params={"continuation": "A\x8d\x7f"}, headers=api.admin)
        assert r.status_code == 422, (path, r.text)
        assert r.json()["error"]["field"] == "continuation"


async def test_a_body_that_is_not_utf8_is_422(api: Api) -> None:
    """Found by the schema fuzzer: FastAPI answers 400, which the API does not declare."""
    r = await api.http.post(
        "/fleet/jobs",
        content=b"\xff\xfe\xfd",
        headers={**api.admin, "Content-Type": "application/json"},
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "body" and "UTF-8" in r.json()["error"]["message"]


async def test_params_nested_too_deeply_are_422_and_store_nothing(limited: Api) -> None:
    """Found by the job-spec fuzzer: params 300 levels deep were accepted, then failed to
    serialise (a 500)."""
    params: dict[str, Any] = {"a": 1}
    for _ in range(300):
        params = {"a": params}
    r = await submit(limited, params=params)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "params" and "nested" in r.json()["error"]["message"]
    await nothing_stored(limited)
