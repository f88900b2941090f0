"""The audit log: every operator and admin action is recorded (who, what, when, target,
outcome) and readable through `GET /fleet/audit` by admins, within their products."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from gigafactory.models import Stage
from tests.api.conftest import Api, new_product

pytestmark = pytest.mark.temporal

Action = Callable[[Api, dict[str, str]], Awaitable[str]]


async def _ok(r: Any, status: int) -> Any:
    assert r.status_code == status, r.text
    return r.json() if r.content else None


async def cancel(api: Api, who: dict[str, str]) -> str:
    job = await api.submit()
    await _ok(
        await api.http.patch(f"/fleet/jobs/{job['id']}", json={"action": "cancel"}, headers=who),
        202,
    )
    return f"job:{job['id']}"


async def ship(api: Api, who: dict[str, str]) -> str:
    job = await api.submit()
    await api.set_job(job["id"], stage=Stage.SUCCEEDED)
    await _ok(
        await api.http.patch(f"/fleet/jobs/{job['id']}", json={"action": "ship"}, headers=who), 200
    )
    return f"job:{job['id']}"


async def budget_set(api: Api, who: dict[str, str]) -> str:
    body = {"ceilingUsd": 10, "window": "day"}
    await _ok(await api.http.put(f"/fleet/budgets/{api.product}", json=body, headers=who), 200)
    return f"product:{api.product}"


async def weights(api: Api, who: dict[str, str]) -> str:
    body = {"weights": {"load": 2}}
    await _ok(
        await api.http.put(f"/fleet/routing/weights/{api.product}", json=body, headers=who), 200
    )
    return f"product:{api.product}"


async def enrollment_token(api: Api, who: dict[str, str]) -> str:
    out = await _ok(await api.http.post("/fleet/factories/enrollment-tokens", headers=who), 201)
    return f"enrollment:{out['token'].split('_')[1]}"


async def enroll(api: Api, who: dict[str, str]) -> str:
    factory_id, _ = await api.enroll()
    return f"factory:{factory_id}"


def factory_action(path: str) -> Action:
    async def act(api: Api, who: dict[str, str]) -> str:
        factory_id, _ = await api.enroll()
        await _ok(await api.http.post(f"/fleet/factories/{factory_id}/{path}", headers=who), 200)
        return f"factory:{factory_id}"

    return act


async def key_create(api: Api, who: dict[str, str]) -> str:
    body = {"name": "audited", "role": "submitter", "products": [api.product]}
    out = await _ok(await api.http.post("/fleet/keys", json=body, headers=who), 201)
    return f"key:{out['id']}"


async def key_revoke(api: Api, who: dict[str, str]) -> str:
    key_id = (await api.key()).split("_")[1]
    r = await api.http.delete(f"/fleet/keys/{key_id}", headers=who)
    assert r.status_code == 204, r.text
    return f"key:{key_id}"


async def artifact_delete(api: Api, who: dict[str, str]) -> str:
    job = await api.submit()
    r = await api.http.post(
        f"/fleet/jobs/{job['id']}/artifacts", params={"name": "a.txt"}, content=b"x", headers=who
    )
    artifact = await _ok(r, 201)
    r = await api.http.delete(f"/fleet/jobs/{job['id']}/artifacts/{artifact['id']}", headers=who)
    assert r.status_code == 204, r.text
    return f"job:{job['id']}/artifact:{artifact['id']}"


ACTIONS: dict[str, Action] = {
    "job.cancel": cancel,
    "job.ship": ship,
    "budget.set": budget_set,
    "routing.weights": weights,
    "factory.enrollment_token": enrollment_token,
    "factory.enroll": enroll,
    "factory.rotate": factory_action("token/rotate"),
    "factory.cordon": factory_action("cordon"),
    "factory.uncordon": factory_action("uncordon"),
    "factory.revoke": factory_action("token/revoke"),
    "key.create": key_create,
    "key.revoke": key_revoke,
    "artifact.delete": artifact_delete,
}


async def audit(api: Api, **params: Any) -> list[dict[str, Any]]:
    r = await api.http.get("/fleet/audit", params=params, headers=api.admin)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


@pytest.mark.parametrize("action", sorted(ACTIONS))
async def test_every_operator_and_admin_action_is_recorded(api: Api, action: str) -> None:
    before = datetime.now(UTC)
    target = await ACTIONS[action](api, api.admin)
    records = [e for e in await audit(api, action=action) if e["target"] == target]
    assert len(records) == 1, records
    record = records[0]
    # The enrollment itself is done by the factory, with its one-time token.
    if action == "factory.enroll":
        assert record["actor"].startswith("enrollment:") and record["role"] == "enrollment"
    else:
        assert record["actor"] == "api:bootstrap" and record["role"] == "admin"
    assert record["outcome"] == "ok" and record["reason"] is None
    assert datetime.fromisoformat(record["at"]) >= before
    job_scoped = action.startswith(("job.", "artifact.", "budget.", "routing."))
    assert record["productId"] == (api.product if job_scoped else "_fleet")


async def test_revoke_records_that_the_task_queue_was_paused(api: Api) -> None:
    target = await factory_action("token/revoke")(api, api.admin)
    [record] = await audit(api, action="factory.revoke", target=target)
    assert record["data"]["taskQueue"] == "paused"


async def test_a_refused_attempt_is_recorded_with_its_outcome(api: Api) -> None:
    submitter = await api.key("submitter")
    job = await api.submit()
    await api.set_job(job["id"], stage=Stage.SUCCEEDED)
    r = await api.http.patch(
        f"/fleet/jobs/{job['id']}", json={"action": "ship"}, headers=api.auth(submitter)
    )
    assert r.status_code == 403
    [record] = await audit(api, action="job.ship")
    assert record["actor"] == f"api:{submitter.split('_')[1]}"
    assert record["role"] == "submitter" and record["outcome"] == "forbidden"
    assert "operator role" in record["reason"]
    # A conflict is recorded as well (budgets are off: pausing changes nothing).
    r = await api.http.post(f"/fleet/budgets/{api.product}/pause", headers=api.admin)
    assert r.status_code == 409
    [record] = await audit(api, action="budget.pause")
    assert record["outcome"] == "conflict" and "FLEET_BUDGETS" in record["reason"]


async def test_a_cancel_reason_is_kept(api: Api) -> None:
    job = await api.submit()
    r = await api.http.patch(
        f"/fleet/jobs/{job['id']}",
        json={"action": "cancel", "reason": "wrong repo"},
        headers=api.admin,
    )
    assert r.status_code == 202
    [record] = await audit(api, action="job.cancel")
    assert record["reason"] == "wrong repo"


async def test_enrollment_replays_are_recorded_unknown_tokens_are_not(api: Api) -> None:
    r = await api.http.post("/fleet/factories/enrollment-tokens", headers=api.admin)
    token = r.json()["token"]
    body = {"enrollmentToken": token, "factoryId": "twice", "engines": ["shell"]}
    assert (await api.http.post("/fleet/factories/enroll", json=body)).status_code == 201
    assert (await api.http.post("/fleet/factories/enroll", json=body)).status_code == 401
    records = await audit(api, action="factory.enroll", target="factory:twice")
    assert [e["outcome"] for e in records] == ["enrollment_refused", "ok"]
    assert "already used" in records[0]["reason"]
    forged = "gfe_0123456789ab_" + "x" * 43
    body = {**body, "enrollmentToken": forged, "factoryId": "forged"}
    assert (await api.http.post("/fleet/factories/enroll", json=body)).status_code == 401
    assert await audit(api, target="factory:forged") == []


async def test_only_admins_read_it_and_only_their_products(api: Api) -> None:
    other = new_product()
    await budget_set(api, api.admin)  # a record of api.product
    r = await api.http.put(f"/fleet/budgets/{other}", json={"ceilingUsd": 1}, headers=api.admin)
    assert r.status_code == 200
    await enrollment_token(api, api.admin)  # a fleet-wide record

    for role in ("submitter", "operator"):
        key = await api.key(role)
        r = await api.http.get("/fleet/audit", headers=api.auth(key))
        assert r.status_code == 403 and "admin role" in r.json()["error"]["message"]

    scoped = await api.key("admin", [api.product])
    r = await api.http.get("/fleet/audit", headers=api.auth(scoped))
    assert r.status_code == 200
    seen = {(e["productId"], e["action"]) for e in r.json()["items"]}
    assert (api.product, "budget.set") in seen
    assert all(p == api.product for p, _ in seen), seen
    r = await api.http.get("/fleet/audit", params={"productId": other}, headers=api.auth(scoped))
    assert r.status_code == 200 and r.json()["items"] == []

    everything = {(e["productId"], e["action"]) for e in await audit(api)}
    assert {(other, "budget.set"), ("_fleet", "factory.enrollment_token")} <= everything


async def test_filters_and_paging_newest_first(api: Api) -> None:
    targets = [await enrollment_token(api, api.admin) for _ in range(5)]
    await budget_set(api, api.admin)
    pages: list[dict[str, Any]] = []
    params: dict[str, Any] = {"action": "factory.enrollment_token", "limit": 2}
    while True:
        r = await api.http.get("/fleet/audit", params=params, headers=api.admin)
        assert r.status_code == 200, r.text
        pages.extend(r.json()["items"])
        if r.json()["continuation"] is None:
            break
        params["continuation"] = r.json()["continuation"]
    assert [e["target"] for e in pages] == list(reversed(targets))
    since = pages[2]["at"]
    newer = await audit(api, action="factory.enrollment_token", since=since)
    assert [e["target"] for e in newer] == list(reversed(targets))[:2]
    mine = await audit(api, actor="api:bootstrap", action="budget.set")
    assert len(mine) == 1
    r = await api.http.get("/fleet/audit", params={"continuation": "nonsense"}, headers=api.admin)
    assert r.status_code == 422 and r.json()["error"]["field"] == "continuation"
