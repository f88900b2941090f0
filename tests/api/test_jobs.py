"""Submitting, listing, cancelling and shipping jobs through the API."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.app import create_app
from gigafactory.contracts import JOB_WORKFLOW, JobWorkflowInput, job_workflow_id
from gigafactory.models import JobSpec, Stage
from gigafactory.search_attributes import (
    FLEET_ENGINE,
    FLEET_PRIORITY,
    FLEET_PRODUCT_ID,
    FLEET_STAGE,
)
from gigafactory.services import Services
from gigafactory.store import NotFound
from launch.devserver import free_port
from tests.api.conftest import MAX_SPEC_BYTES, Api, new_product
from tests.conftest import EXAMPLES_DIR

pytestmark = pytest.mark.temporal


async def test_submit_fields_starts_a_named_searchable_workflow(api: Api) -> None:
    job = await api.submit(
        engine="sim",
        prompt="refactor the parser\nthen run the tests",
        priority="high",
        timeout="15m",
        capabilities=["gpu"],
        labels={"team": "core"},
        estimatedCostUsd=1.5,
        params={"durationS": 1},
    )
    assert job["stage"] == "queued"
    assert job["productId"] == api.product
    assert job["workflowId"] == job_workflow_id(api.product, job["id"])
    assert job["spec"]["timeoutS"] == 900
    assert job["spec"]["priority"] == "high"
    assert job["submittedBy"] == "api:bootstrap"

    desc = await api.client.get_workflow_handle(job["workflowId"]).describe()
    assert desc.workflow_type == JOB_WORKFLOW
    assert desc.task_queue == api.settings.control_task_queue
    attrs = desc.typed_search_attributes
    assert attrs.get(FLEET_PRODUCT_ID) == api.product
    assert attrs.get(FLEET_STAGE) == "queued"
    assert attrs.get(FLEET_PRIORITY) == "high"
    assert attrs.get(FLEET_ENGINE) == "sim"
    summary = await desc.static_summary()
    assert summary == f"high sim job {job['id']} for {api.product}: refactor the parser"
    details = await desc.static_details()
    assert details is not None and "| engine | sim |" in details and "refactor" in details

    events = (await api.http.get(f"/fleet/jobs/{job['id']}/events", headers=api.admin)).json()
    assert [(e["kind"], e["stage"], e["reason"]) for e in events["items"]] == [
        ("stage", "queued", "submitted")
    ]
    assert events["items"][0]["actor"] == "api:bootstrap"

    got = (await api.http.get(f"/fleet/jobs/{job['id']}", headers=api.admin)).json()
    assert got == job


async def test_submit_spec_text_with_overrides(api: Api) -> None:
    text = (EXAMPLES_DIR / "shell-hello.md").read_text()
    job = await api.submit(spec=text, cwd="/tmp/work")
    spec = job["spec"]
    assert (spec["engine"], spec["lock"], spec["timeoutS"], spec["yolo"]) == (
        "shell",
        "hello-lock",
        120,
        False,
    )
    assert spec["cwd"] == "/tmp/work"
    assert "hello from a factory" in spec["prompt"]
    desc = await api.client.get_workflow_handle(job["workflowId"]).describe()
    assert "hello from a factory" in (await desc.static_summary() or "")


async def test_submitter_with_one_product_may_leave_it_out(api: Api) -> None:
    key = await api.key("submitter")
    r = await api.http.post(
        "/fleet/jobs", json={"engine": "shell", "prompt": "true"}, headers=api.auth(key)
    )
    assert r.status_code == 201, r.text
    assert r.json()["productId"] == api.product
    # A key of several products must say which.
    multi = await api.key("submitter", [api.product, new_product()])
    r = await api.http.post(
        "/fleet/jobs", json={"engine": "shell", "prompt": "true"}, headers=api.auth(multi)
    )
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "productId"
    # A product the key may not see is "not found", not "forbidden".
    stranger = new_product()
    r = await api.http.post(
        "/fleet/jobs",
        json={"engine": "shell", "prompt": "true", "productId": stranger},
        headers=api.auth(key),
    )
    assert r.status_code == 404
    assert r.json()["error"]["message"] == f"product {stranger} not found"


async def test_bad_spec_names_column_and_value(api: Api) -> None:
    text = "| engine | timeout |\n|---|---|\n| shell | forever |\n\necho hi\n"
    r = await api.http.post(
        "/fleet/jobs", json={"spec": text, "productId": api.product}, headers=api.admin
    )
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["field"] == "timeout"
    assert "timeout" in error["message"] and "forever" in error["message"]
    assert await api.store.list_jobs() is not None
    assert (await api.store.list_jobs()).items == []


async def test_bad_fields_name_the_field(api: Api) -> None:
    cases = [
        ({"engine": "emacs"}, "engine", "emacs"),
        ({"yolo": "maybe"}, "yolo", "boolean"),
        ({"timeout": "soon"}, "timeout", "soon"),
        ({"priority": "urgent"}, "priority", "urgent"),
        ({"engin": "shell"}, "engin", "unknown field"),
        ({"productId": "has-dash"}, "productId", "has-dash"),
    ]
    for fields, field, mentioned in cases:
        body = {"engine": "shell", "prompt": "true", "productId": api.product, **fields}
        r = await api.http.post("/fleet/jobs", json=body, headers=api.admin)
        assert r.status_code == 422, (fields, r.text)
        error = r.json()["error"]
        assert error["field"] == field, (fields, error)
        assert mentioned in error["message"], (fields, error)
    r = await api.http.post(
        "/fleet/jobs", json={"engine": "shell", "productId": api.product}, headers=api.admin
    )
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "prompt"


async def test_children_in_the_nested_spec_form_are_accepted(api: Api) -> None:
    # Children were refused (422 "unsupported") until DAGs landed; tests/api/test_dag.py
    # covers their validation.
    r = await api.http.post(
        "/fleet/jobs",
        json={
            "engine": "shell",
            "prompt": "true",
            "productId": api.product,
            "children": [{"id": "a", "spec": {"engine": "shell", "prompt": "true"}}],
        },
        headers=api.admin,
    )
    assert r.status_code == 201, r.text
    assert [c["id"] for c in r.json()["spec"]["children"]] == ["a"]
    child = await api.store.get_job(f"{r.json()['id']}.a", api.product)
    assert child.parent_id == r.json()["id"]


async def test_oversized_spec_is_413_with_the_size(api: Api) -> None:
    text = "| engine |\n|---|\n| shell |\n\n" + "echo x\n" * MAX_SPEC_BYTES
    r = await api.http.post(
        "/fleet/jobs", json={"spec": text, "productId": api.product}, headers=api.admin
    )
    assert r.status_code == 413
    message = r.json()["error"]["message"]
    assert str(len(text.encode())) in message and str(MAX_SPEC_BYTES) in message


async def test_submit_rolls_back_when_the_workflow_id_is_taken(api: Api) -> None:
    """A real start failure: the job's workflow id already exists, so Temporal refuses."""
    job_id = uuid.uuid4().hex[:12]
    spec = JobSpec(engine="shell", prompt="true", product_id=api.product)
    squatter = await api.client.start_workflow(
        JOB_WORKFLOW,
        JobWorkflowInput(job_id=job_id, product_id=api.product, spec=spec),
        id=job_workflow_id(api.product, job_id),
        task_queue=api.settings.control_task_queue,
    )
    try:
        with pytest.raises(WorkflowAlreadyStartedError):
            await Services(api.store, api.client, api.settings).jobs.create(
                spec, submitted_by="api:test", job_id=job_id
            )
        with pytest.raises(NotFound):
            await api.store.get_job(job_id, api.product)
        events, _ = await api.store.list_events(job_id, api.product)
        assert events == []
        # The existing workflow is someone else's: it was not terminated.
        assert (await squatter.describe()).status is not None
        assert (await squatter.describe()).close_time is None
    finally:
        await squatter.terminate(reason="test cleanup")


async def test_submit_with_temporal_unreachable_is_503_and_leaves_nothing(api: Api) -> None:
    """A client for a port where nothing listens: the start fails, nothing is kept."""
    dead = await Client.connect(
        f"127.0.0.1:{free_port()}", lazy=True, data_converter=pydantic_data_converter
    )
    app = create_app(api.settings, store=api.store, temporal=dead)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http,
    ):
        r = await http.post(
            "/fleet/jobs",
            json={"engine": "shell", "prompt": "true", "productId": api.product},
            headers=api.admin,
        )
        assert r.status_code == 503, r.text
        assert "Temporal is unreachable" in r.json()["error"]["message"]
        health = await http.get("/healthz")
        assert health.status_code == 503
        assert health.json()["store"] == "ok"
        assert health.json()["temporal"].startswith("unreachable")
    assert (await api.store.list_jobs(products=[api.product])).items == []


async def test_list_pages_and_filters(api: Api) -> None:
    ids = [(await api.submit(priority="low" if i % 2 else "high"))["id"] for i in range(5)]
    other = await api.submit(productId=new_product())  # the admin sees every product

    seen: list[str] = []
    continuation = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2, "productId": api.product}
        if continuation:
            params["continuation"] = continuation
        r = await api.http.get("/fleet/jobs", params=params, headers=api.admin)
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["items"]) <= 2
        seen += [j["id"] for j in body["items"]]
        pages += 1
        continuation = body["continuation"]
        if not continuation:
            break
    assert seen == list(reversed(ids))  # newest first
    assert pages == 3

    high = await api.http.get(
        "/fleet/jobs", params={"priority": "high", "productId": api.product}, headers=api.admin
    )
    assert {j["id"] for j in high.json()["items"]} == {ids[0], ids[2], ids[4]}
    await api.set_job(ids[1], stage=Stage.RUNNING)
    running = await api.http.get("/fleet/jobs", params={"stage": "running"}, headers=api.admin)
    assert [j["id"] for j in running.json()["items"]] == [ids[1]]
    everything = await api.http.get("/fleet/jobs", headers=api.admin)
    assert other["id"] in {j["id"] for j in everything.json()["items"]}

    bad: dict[str, Any]
    for bad in ({"limit": 0}, {"limit": 201}, {"stage": "sleeping"}):
        r = await api.http.get("/fleet/jobs", params=bad, headers=api.admin)
        assert r.status_code == 422, bad
        assert r.json()["error"]["field"] in bad
    r = await api.http.get("/fleet/jobs", params={"continuation": "garbage"}, headers=api.admin)
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "continuation"


async def test_list_by_engine_factory_and_title(api: Api) -> None:
    shell = await api.submit(title="Rotate the Certificates")
    sim = await api.submit(engine="sim", prompt="Rotate nothing\nsecond line")
    await api.set_job(sim["id"], factory_id="f-one")

    async def ids(**params: Any) -> list[str]:
        r = await api.http.get(
            "/fleet/jobs", params={"productId": api.product, **params}, headers=api.admin
        )
        assert r.status_code == 200, r.text
        return [j["id"] for j in r.json()["items"]]

    assert await ids(engine="sim") == [sim["id"]]
    assert await ids(factoryId="f-one") == [sim["id"]]
    assert await ids(title="certificates") == [shell["id"]]
    assert await ids(title="rotate") == [sim["id"], shell["id"]]
    assert await ids(title="second line") == []  # the headline is the first line only
    r = await api.http.get("/fleet/jobs", params={"engine": "devon"}, headers=api.admin)
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "engine"
    r = await api.http.get("/fleet/jobs", params={"title": "x" * 201}, headers=api.admin)
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "title"


async def test_cancel_requests_workflow_cancellation(api: Api) -> None:
    key = await api.key("submitter")
    job = await api.submit(key)
    r = await api.http.patch(
        f"/fleet/jobs/{job['id']}",
        json={"action": "cancel", "reason": "wrong repo"},
        headers=api.auth(key),
    )
    assert r.status_code == 202, r.text
    history = await api.client.get_workflow_handle(job["workflowId"]).fetch_history()
    assert any(
        e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED
        for e in history.events
    )
    events = (await api.http.get(f"/fleet/jobs/{job['id']}/events", headers=api.admin)).json()
    requested = [e for e in events["items"] if e["kind"] == "cancel_requested"]
    assert requested and requested[0]["reason"] == "wrong repo"
    assert requested[0]["actor"].startswith("api:")

    # A terminal job has nothing left to cancel.
    await api.set_job(job["id"], stage=Stage.SUCCEEDED)
    r = await api.http.patch(
        f"/fleet/jobs/{job['id']}", json={"action": "cancel"}, headers=api.auth(key)
    )
    assert r.status_code == 409
    assert "already succeeded" in r.json()["error"]["message"]


async def test_ship_needs_operator_and_a_succeeded_job(api: Api) -> None:
    submitter = await api.key("submitter")
    operator = await api.key("operator")
    job = await api.submit(submitter)
    url = f"/fleet/jobs/{job['id']}"
    r = await api.http.patch(url, json={"action": "ship"}, headers=api.auth(submitter))
    assert r.status_code == 403
    r = await api.http.patch(url, json={"action": "ship"}, headers=api.auth(operator))
    assert r.status_code == 409
    assert "is queued" in r.json()["error"]["message"]

    await api.set_job(job["id"], stage=Stage.SUCCEEDED)
    r = await api.http.patch(
        url, json={"action": "ship", "reason": "LGTM"}, headers=api.auth(operator)
    )
    assert r.status_code == 200, r.text  # done: nothing left under way
    assert r.json()["stage"] == "shipped"
    events = (await api.http.get(f"{url}/events", headers=api.admin)).json()["items"]
    shipped = events[-1]
    assert (shipped["stage"], shipped["fromStage"], shipped["reason"]) == (
        "shipped",
        "succeeded",
        "LGTM",
    )
    r = await api.http.patch(url, json={"action": "ship"}, headers=api.auth(operator))
    assert r.status_code == 409
    r = await api.http.patch(url, json={"action": "launch"}, headers=api.auth(operator))
    assert r.status_code == 422 and r.json()["error"]["field"] == "action"


async def test_runs_and_empty_log_of_a_fresh_job(api: Api) -> None:
    job = await api.submit()
    r = await api.http.get(f"/fleet/jobs/{job['id']}/runs", headers=api.admin)
    assert r.status_code == 200 and r.json() == {"items": []}
    r = await api.http.get(f"/fleet/jobs/{job['id']}/log", headers=api.admin)
    assert r.json() == {"items": [], "text": "", "nextSeq": -1}
