"""Idempotent submits: a retried submit with the same Idempotency-Key returns the job the
first one made (200, `Idempotent-Replayed`), never a second job or workflow."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus

from gigafactory.services.idempotency import job_id_for
from gigafactory.services.lifecycle import Lifecycle
from tests.api.conftest import Api

pytestmark = pytest.mark.temporal

BODY = {"engine": "sim", "prompt": "refactor the parser", "params": {"durationS": 1}}


async def _submit(api: Api, key: str | None, token: str | None = None, **fields: Any) -> Any:
    headers = api.auth(token) if token else dict(api.admin)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await api.http.post(
        "/fleet/jobs", json={"productId": api.product, **BODY, **fields}, headers=headers
    )


async def _workflows_of(api: Api, job_id: str) -> int:
    query = f"WorkflowId = '{(await api.store.get_job(job_id, api.product)).workflow_id}'"
    return len([w async for w in api.client.list_workflows(query)])


async def test_a_retried_submit_returns_the_first_job(api: Api) -> None:
    first = await _submit(api, "order-7f3a")
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    job = first.json()
    assert job["idempotencyKey"] == "order-7f3a"
    assert job["id"] == job_id_for("bootstrap", api.product, "order-7f3a")

    again = await _submit(api, "order-7f3a")
    assert again.status_code == 200, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == job["id"]
    assert again.json()["createdAt"] == job["createdAt"]

    page = await api.store.list_jobs(limit=50)
    assert [j.id for j in page.items if j.product_id == api.product] == [job["id"]]
    handle = api.client.get_workflow_handle(job["workflowId"])
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    events = (await api.http.get(f"/fleet/jobs/{job['id']}/events", headers=api.admin)).json()
    assert [e["reason"] for e in events["items"]] == ["submitted"]


async def test_concurrent_submits_with_one_key_make_one_job(api: Api) -> None:
    answers = await asyncio.gather(*(_submit(api, "burst-1") for _ in range(8)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * 7 + [201], [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    page = await api.store.list_jobs(limit=50)
    assert len([j for j in page.items if j.product_id == api.product]) == 1


async def test_the_same_key_with_another_request_is_refused(api: Api) -> None:
    assert (await _submit(api, "k-1")).status_code == 201
    other = await _submit(api, "k-1", prompt="something else entirely")
    assert other.status_code == 409, other.text
    message = other.json()["error"]["message"]
    assert "Idempotency-Key 'k-1' was used for a different request" in message
    page = await api.store.list_jobs(limit=50)
    assert len([j for j in page.items if j.product_id == api.product]) == 1


async def test_keys_are_scoped_to_the_api_key(api: Api) -> None:
    token = await api.key("submitter")
    mine = await _submit(api, "shared-name")
    theirs = await _submit(api, "shared-name", token=token)
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]


async def test_without_a_key_every_submit_is_a_new_job(api: Api) -> None:
    a, b = await _submit(api, None), await _submit(api, None)
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["id"] != b.json()["id"]
    assert a.json()["idempotencyKey"] is None


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("", "Idempotency-Key is empty"),
        ("x" * 256, "Idempotency-Key has 256 characters; at most 255"),
        ("has space", "visible ASCII characters only, not ' '"),
    ],
    ids=["empty", "too-long", "space"],
)
async def test_a_malformed_key_is_refused_and_nothing_is_made(
    api: Api, key: str, words: str
) -> None:
    r = await _submit(api, key)
    assert r.status_code == 422, r.text
    assert words in r.json()["error"]["message"]
    page = await api.store.list_jobs(limit=50)
    assert [j for j in page.items if j.product_id == api.product] == []


async def test_a_retry_after_a_rolled_back_submit_starts_the_job(api: Api) -> None:
    # The first submit's workflow start failed after reaching the server: the submit rolled
    # back (projection removed, workflow terminated). The retry may start the job again.
    job_id = job_id_for("bootstrap", api.product, "after-rollback")
    first = await _submit(api, "after-rollback")
    assert first.status_code == 201
    workflow_id = first.json()["workflowId"]
    await api.client.get_workflow_handle(workflow_id).terminate(reason="rolled back")
    await Lifecycle(api.store).remove(await api.store.get_job(job_id, api.product))
    again = await _submit(api, "after-rollback")
    assert again.status_code == 201, again.text
    assert again.json()["id"] == job_id
    desc = await api.client.get_workflow_handle(workflow_id).describe()
    assert desc.status == WorkflowExecutionStatus.RUNNING
    assert await _workflows_of(api, job_id) == 2
