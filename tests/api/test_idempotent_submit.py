"""Idempotent submits: a retried submit with the same Idempotency-Key returns the job the
first one made (200, `Idempotent-Replayed`), never a second job or workflow."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError

from gigafactory.contracts import job_workflow_id
from gigafactory.models import Job, Stage
from gigafactory.services.idempotency import IN_PROGRESS_WAIT_S, job_id_for
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


async def _orphan_of(
    api: Api,
    template_key: str,
    key: str,
    age_s: float,
    stage: Stage = Stage.QUEUED,
    **fields: Any,
) -> Job:
    """The projection a submit with `key` writes before it starts the job's workflow, as if
    its API process had been killed right there, `age_s` ago (copied from a real submit
    with `template_key`, so it has the digest of the same request)."""
    made = await _submit(api, template_key, **fields)
    assert made.status_code == 201, made.text
    template = await api.store.get_job(made.json()["id"], api.product)
    job_id = job_id_for("bootstrap", api.product, key)
    at = datetime.now(UTC) - timedelta(seconds=age_s)
    orphan = template.model_copy(
        update={
            "id": job_id,
            "workflow_id": job_workflow_id(api.product, job_id),
            "idempotency_key": key,
            "stage": stage,
            "created_at": at,
            "updated_at": at,
        }
    )
    return await api.store.create_job(orphan)


async def test_a_repeat_finishes_a_submit_that_died_half_way(api: Api) -> None:
    children = [
        {"id": "a", "engine": "sim", "prompt": "p"},
        {"id": "b", "engine": "sim", "prompt": "p", "dependsOn": ["a"]},
    ]
    orphan = await _orphan_of(api, "template-1", "died-1", age_s=60, children=children)
    # It died after writing the first child's projection (copied from the template's).
    template_child = await api.store.get_job(
        f"{job_id_for('bootstrap', api.product, 'template-1')}.a", api.product
    )
    await api.store.create_job(
        template_child.model_copy(
            update={
                "id": f"{orphan.id}.a",
                "workflow_id": job_workflow_id(api.product, f"{orphan.id}.a"),
                "parent_id": orphan.id,
            }
        )
    )
    with pytest.raises(RPCError):
        await api.client.get_workflow_handle(orphan.workflow_id).describe()

    again = await _submit(api, "died-1", children=children)
    assert again.status_code == 200, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == orphan.id
    desc = await api.client.get_workflow_handle(orphan.workflow_id).describe()
    assert desc.status == WorkflowExecutionStatus.RUNNING
    for child_id in ("a", "b"):
        child = await api.store.get_job(f"{orphan.id}.{child_id}", api.product)
        assert child.parent_id == orphan.id
    # Repeated once more: the job as it is, nothing started twice.
    assert (await _submit(api, "died-1", children=children)).status_code == 200
    assert await _workflows_of(api, orphan.id) == 1


async def test_a_repeat_while_the_first_submit_is_still_starting_is_told_to_retry(
    api: Api,
) -> None:
    orphan = await _orphan_of(api, "template-2", "starting-1", age_s=0)
    began = time.monotonic()
    r = await _submit(api, "starting-1")
    assert r.status_code == 503, r.text
    assert f"is still starting job {orphan.id}; retry in a few seconds" in r.text
    assert time.monotonic() - began >= IN_PROGRESS_WAIT_S  # it waited for that submit first
    with pytest.raises(RPCError):  # and started nothing itself
        await api.client.get_workflow_handle(orphan.workflow_id).describe()


async def test_a_repeat_long_after_the_job_finished_starts_nothing(api: Api) -> None:
    # The job ran and finished; its workflow's history is gone with the namespace's
    # retention. A repeat of its submit returns it as it is: it is not run again.
    done = await _orphan_of(api, "template-3", "long-ago", age_s=3 * 86400, stage=Stage.SUCCEEDED)
    r = await _submit(api, "long-ago")
    assert r.status_code == 200, r.text
    assert r.json()["stage"] == "succeeded"
    with pytest.raises(RPCError):
        await api.client.get_workflow_handle(done.workflow_id).describe()
