"""Factory enrollment, heartbeats, token rotation and revocation, cordoning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType

from gigafactory.models import EnrollmentToken, QueueEntry, Stage, WaitReason
from gigafactory.security import hash_token, mint
from gigafactory.services.queue import Queue
from tests.api.conftest import Api

pytestmark = pytest.mark.temporal

BEAT = {"engines": ["shell"], "labels": ["gpu"], "slots": 2, "healthy": True, "running": 0}


async def test_enrollment_token_works_once(api: Api) -> None:
    r = await api.http.post("/fleet/factories/enrollment-tokens", headers=api.admin)
    assert r.status_code == 201
    token = r.json()["token"]
    assert token.startswith("gfe_")
    expires = datetime.fromisoformat(r.json()["expiresAt"])
    assert expires - datetime.now(UTC) > timedelta(minutes=59)

    body = {"enrollmentToken": token, "factoryId": "f-once", "engines": ["shell"], "slots": 1}
    r = await api.http.post("/fleet/factories/enroll", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["factoryId"] == "f-once"
    assert r.json()["factoryToken"].startswith("gff_")

    r = await api.http.post("/fleet/factories/enroll", json={**body, "factoryId": "f-twice"})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "enrollment_refused"
    assert "already used" in r.json()["error"]["message"]
    r = await api.http.get("/fleet/factories/f-twice", headers=api.admin)
    assert r.status_code == 404


async def test_enrollment_refusals(api: Api) -> None:
    body = {"factoryId": "f-x", "engines": ["shell"], "slots": 1}
    r = await api.http.post("/fleet/factories/enroll", json={**body, "enrollmentToken": "x"})
    assert r.status_code == 401
    r = await api.http.post(
        "/fleet/factories/enroll", json={**body, "enrollmentToken": api.admin_key}
    )
    assert r.status_code == 401
    # Expired.
    token_id, token = mint("gfe")
    now = datetime.now(UTC)
    await api.store.create_enrollment(
        EnrollmentToken(
            id=token_id,
            token_hash=hash_token(token),
            created_at=now - timedelta(hours=2),
            expires_at=now - timedelta(hours=1),
            created_by="test",
        )
    )
    r = await api.http.post("/fleet/factories/enroll", json={**body, "enrollmentToken": token})
    assert r.status_code == 401
    assert "expired" in r.json()["error"]["message"]
    # Bad factory id and engine are 422 naming the field (the token is not consumed).
    r = await api.http.post("/fleet/factories/enrollment-tokens", headers=api.admin)
    fresh = r.json()["token"]
    r = await api.http.post(
        "/fleet/factories/enroll", json={**body, "enrollmentToken": fresh, "factoryId": "F_X!"}
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "factoryId"
    r = await api.http.post(
        "/fleet/factories/enroll", json={**body, "enrollmentToken": fresh, "engines": ["vim"]}
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "engines"
    r = await api.http.post("/fleet/factories/enroll", json={**body, "enrollmentToken": fresh})
    assert r.status_code == 201


async def test_heartbeat_rotate_revoke(api: Api) -> None:
    factory_id, token = await api.enroll()
    view = (await api.http.get(f"/fleet/factories/{factory_id}", headers=api.admin)).json()
    assert view["lastHeartbeatAt"] is None and view["healthy"] is False
    assert (view["engines"], view["labels"], view["slots"]) == (["shell", "sim"], ["gpu"], 2)

    r = await api.http.post("/fleet/factories/heartbeat", json=BEAT, headers=api.auth(token))
    assert r.status_code == 200, r.text
    assert r.json()["healthy"] is True
    listed = (await api.http.get("/fleet/factories", headers=api.admin)).json()["items"]
    mine = next(f for f in listed if f["id"] == factory_id)
    assert mine["healthy"] is True and mine["slotsInUse"] == 0
    assert mine["engines"] == ["shell"] and mine["status"] == "active"
    assert "tokenHash" not in mine and "tokenId" not in mine

    # Reported unhealthy -> not healthy.
    r = await api.http.post(
        "/fleet/factories/heartbeat", json={**BEAT, "healthy": False}, headers=api.auth(token)
    )
    assert r.json()["healthy"] is False and r.json()["reportedHealthy"] is False

    # The factory rotates its own token: the old one is refused at once.
    r = await api.http.post(f"/fleet/factories/{factory_id}/token/rotate", headers=api.auth(token))
    assert r.status_code == 200, r.text
    new_token = r.json()["factoryToken"]
    r = await api.http.post("/fleet/factories/heartbeat", json=BEAT, headers=api.auth(token))
    assert r.status_code == 401
    r = await api.http.post("/fleet/factories/heartbeat", json=BEAT, headers=api.auth(new_token))
    assert r.status_code == 200

    # Another factory may not rotate it; a submitter neither; an operator may.
    _, other_token = await api.enroll()
    r = await api.http.post(
        f"/fleet/factories/{factory_id}/token/rotate", headers=api.auth(other_token)
    )
    assert r.status_code == 403
    submitter = await api.key("submitter")
    r = await api.http.post(
        f"/fleet/factories/{factory_id}/token/rotate", headers=api.auth(submitter)
    )
    assert r.status_code == 403
    operator = await api.key("operator")
    r = await api.http.post(
        f"/fleet/factories/{factory_id}/token/rotate", headers=api.auth(operator)
    )
    assert r.status_code == 200
    newest = r.json()["factoryToken"]
    r = await api.http.post("/fleet/factories/heartbeat", json=BEAT, headers=api.auth(new_token))
    assert r.status_code == 401

    # Revoke: refused at once, shown revoked, not healthy.
    r = await api.http.post(
        f"/fleet/factories/{factory_id}/token/revoke", headers=api.auth(operator)
    )
    assert r.status_code == 200
    assert r.json()["status"] == "revoked" and r.json()["healthy"] is False
    r = await api.http.post("/fleet/factories/heartbeat", json=BEAT, headers=api.auth(newest))
    assert r.status_code == 401
    assert "enroll the factory again" in r.json()["error"]["message"]
    stored = await api.store.get_factory(factory_id)
    assert stored.token_hash is None

    # Enrolling again with a fresh enrollment token brings it back.
    _, again = await api.enroll(factory_id)
    r = await api.http.post("/fleet/factories/heartbeat", json=BEAT, headers=api.auth(again))
    assert r.status_code == 200 and r.json()["status"] == "active"


async def test_cordon_and_uncordon(api: Api) -> None:
    factory_id, token = await api.enroll()
    submitter = await api.key("submitter")
    r = await api.http.post(f"/fleet/factories/{factory_id}/cordon", headers=api.auth(submitter))
    assert r.status_code == 403
    r = await api.http.post(f"/fleet/factories/{factory_id}/cordon", headers=api.admin)
    assert r.status_code == 200 and r.json()["status"] == "cordoned"
    # A cordoned factory still heartbeats, and stays cordoned.
    r = await api.http.post("/fleet/factories/heartbeat", json=BEAT, headers=api.auth(token))
    assert r.status_code == 200 and r.json()["status"] == "cordoned"
    r = await api.http.post(f"/fleet/factories/{factory_id}/uncordon", headers=api.admin)
    assert r.status_code == 200 and r.json()["status"] == "active"
    r = await api.http.post("/fleet/factories/nope/cordon", headers=api.admin)
    assert r.status_code == 404
    assert r.json()["error"]["message"] == "factory nope not found"


async def _signals(api: Api, workflow_id: str) -> list[str]:
    history = await api.client.get_workflow_handle(workflow_id).fetch_history()
    return [
        e.workflow_execution_signaled_event_attributes.signal_name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]


async def _queued(api: Api) -> dict[str, Any]:
    """A job waiting in the queue, as its workflow would have left it (no worker runs)."""
    job = await api.submit()
    await api.set_job(job["id"], stage=Stage.WAITING, wait_reason=WaitReason.CAPACITY)
    await Queue(api.store).enqueue(
        QueueEntry(
            id=job["workflowId"],
            lane="",
            job_id=job["id"],
            job_product_id=api.product,
            workflow_id=job["workflowId"],
            epoch=1,
            engine="shell",
            waiting_since=datetime.now(UTC),
        )  # fmt: skip
    )
    return job


async def test_capacity_that_appears_is_handed_to_jobs_waiting_for_it(api: Api) -> None:
    """A factory back to health, with more slots, or uncordoned hands its slots to waiting
    jobs at once (slot granted, lease open); a plain heartbeat or a cordon does not."""
    first = await _queued(api)
    factory_id, token = await api.enroll()  # not heard from yet: it takes nothing
    assert await _signals(api, first["workflowId"]) == []

    # First heartbeat: healthy now, so its free slot goes to the waiting job.
    await api.http.post(
        "/fleet/factories/heartbeat", json={**BEAT, "slots": 1}, headers=api.auth(token)
    )
    assert await _signals(api, first["workflowId"]) == ["slot_granted"]
    assert (await api.store.get_job(first["id"])).stage == Stage.DISPATCHED

    second = await _queued(api)
    await api.http.post(
        "/fleet/factories/heartbeat", json={**BEAT, "slots": 1}, headers=api.auth(token)
    )
    assert await _signals(api, second["workflowId"]) == []  # a plain heartbeat: still full
    await api.http.post(
        "/fleet/factories/heartbeat", json={**BEAT, "slots": 4}, headers=api.auth(token)
    )
    assert await _signals(api, second["workflowId"]) == ["slot_granted"]  # more slots

    await api.http.post(f"/fleet/factories/{factory_id}/cordon", headers=api.admin)
    third = await _queued(api)
    await api.http.post(
        "/fleet/factories/heartbeat", json={**BEAT, "slots": 4}, headers=api.auth(token)
    )
    assert await _signals(api, third["workflowId"]) == []  # cordoned: nothing
    await api.http.post(f"/fleet/factories/{factory_id}/uncordon", headers=api.admin)
    assert await _signals(api, third["workflowId"]) == ["slot_granted"]
    held = [r.job_id for r in (await api.store.get_slots(factory_id)).reservations]
    assert sorted(held) == sorted([first["id"], second["id"], third["id"]])
