"""A leaf job end to end on the real dev server: API -> workflow -> routing -> factory."""

from __future__ import annotations

import asyncio
import stat
from collections import defaultdict
from pathlib import Path

import pytest

from gigafactory.contracts import QUERY_LOCK_STATE, SIGNAL_SLOT_GRANTED, SlotGrant
from tests.conftest import EXAMPLES_DIR
from tests.e2e.harness import Fleet, max_overlap, parse_time, unique_label
from tests.replay.recording import record_history

pytestmark = pytest.mark.temporal


def sim(
    label: str, *, duration: float = 0.5, cost: float = 0.0, **extra: object
) -> dict[str, object]:
    params: dict[str, object] = {"durationS": duration, "costUsd": cost}
    params.update(extra)
    return {
        "engine": "sim",
        "prompt": "simulate",
        "productId": "e2e",
        "capabilities": [label],
        "params": params,
    }


async def test_shell_job_succeeds_with_run_events_and_log(fleet: Fleet, tmp_path: Path) -> None:
    label = unique_label()
    factory = await fleet.start_factory(engines=["shell"], labels=[label])
    spec = (EXAMPLES_DIR / "shell-hello.md").read_text()
    job = await fleet.submit(
        {"spec": spec, "productId": "e2e", "capabilities": [label], "cwd": str(tmp_path)}
    )
    done = await fleet.wait_for(job["id"], ["succeeded"])
    assert done["leaseEpoch"] == 1
    assert done["factoryId"] == factory.id
    assert done["exitCode"] == 0

    runs = await fleet.runs(job["id"])
    assert len(runs) == 1
    run = runs[0]
    assert (run["factoryId"], run["epoch"], run["outcome"]) == (factory.id, 1, "succeeded")
    assert run["costUsd"] == 0
    assert parse_time(run["startedAt"]) <= parse_time(run["finishedAt"])

    events = await fleet.events(job["id"])
    stages = [e["stage"] for e in events if e["kind"] == "stage"]
    # The lock column makes it wait for its lock first.
    assert stages[0] == "queued"
    assert stages[-3:] == ["dispatched", "running", "succeeded"]
    times = [parse_time(e["at"]) for e in events]
    assert times == sorted(times)
    dispatched = next(e for e in events if e["stage"] == "dispatched")
    assert dispatched["data"]["candidates"][0]["factoryId"] == factory.id
    assert dispatched["data"]["candidates"][0]["breakdown"], "routing breakdown recorded"

    artifacts = await fleet.get(f"/fleet/jobs/{job['id']}/artifacts")
    items = artifacts["items"] if isinstance(artifacts, dict) else artifacts
    log = next(a for a in items if a["name"] == "agent.log")
    content = await fleet.http.get(
        f"/fleet/jobs/{job['id']}/artifacts/{log['id']}/content", headers=fleet.auth()
    )
    assert content.status_code == 200
    assert "hello from a factory" in content.text


async def test_sim_job_reports_cost_and_failing_shell_names_exit_code(fleet: Fleet) -> None:
    label = unique_label()
    await fleet.start_factory(engines=["shell", "sim"], labels=[label], slots=2)
    ok = await fleet.submit(sim(label, duration=0.3, cost=0.25))
    bad = await fleet.submit(
        {
            "engine": "shell",
            "prompt": "echo about to fail\nexit 3",
            "productId": "e2e",
            "capabilities": [label],
        }
    )
    done = await fleet.wait_for(ok["id"], ["succeeded"])
    assert done["costUsd"] == pytest.approx(0.25)
    failed = await fleet.wait_for(bad["id"], ["failed"])
    assert "exit code 3" in failed["stageReason"]
    assert failed["exitCode"] == 3
    await record_history(fleet.client, "leaf-succeeded", done["workflowId"])
    await record_history(fleet.client, "leaf-failed", failed["workflowId"])


async def test_phase3_job_waits_for_missing_engine_then_runs(fleet: Fleet, tmp_path: Path) -> None:
    label = unique_label()
    await fleet.start_factory(engines=["shell", "sim"], labels=[label])
    spec = (EXAMPLES_DIR / "phase3-job.md").read_text()
    # The spec's cwd is a path on the old system's laptop: the submitter points it here.
    job = await fleet.submit(
        {"spec": spec, "productId": "e2e", "capabilities": [label], "cwd": str(tmp_path)}
    )
    assert job["spec"]["engine"] == "devin"
    assert job["spec"]["timeoutS"] == 36000
    assert job["spec"]["lock"] == "common-plat-phase3"
    waiting = await fleet.wait_for(job["id"], ["waiting"], reason_contains="devin")
    assert waiting["waitReason"] == "capacity"
    assert "no factory offers engine devin" in waiting["stageReason"]

    # A factory that has the devin CLI enrolls: the job runs there.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "devin"
    fake.write_text('#!/bin/sh\necho "devin ran with $# arguments"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    devin = await fleet.start_factory(
        engines=["devin"], labels=[label], subprocess_=True, extra_path=bin_dir
    )
    done = await fleet.wait_for(job["id"], ["succeeded"], timeout=60)
    assert done["factoryId"] == devin.id


async def test_fifty_jobs_never_exceed_factory_slots(fleet: Fleet) -> None:
    label = unique_label()
    factories = [
        await fleet.start_factory(engines=["sim"], labels=[label], slots=2) for _ in range(2)
    ]
    jobs = await asyncio.gather(*(fleet.submit(sim(label, duration=0.4)) for _ in range(50)))
    for job in jobs:
        await fleet.wait_for(job["id"], ["succeeded"], timeout=180)
    per_factory: dict[str, list[tuple[object, object]]] = defaultdict(list)
    for job in jobs:
        for run in await fleet.runs(job["id"]):
            per_factory[run["factoryId"]].append(
                (parse_time(run["startedAt"]), parse_time(run["finishedAt"]))
            )
    assert set(per_factory) <= {f.id for f in factories}
    assert sum(len(v) for v in per_factory.values()) == 50
    for factory_id, intervals in per_factory.items():
        assert max_overlap(intervals) <= 2, factory_id  # type: ignore[arg-type]
    # Both factories took work, and each ran two at a time at some point.
    assert len(per_factory) == 2


async def test_killed_factory_job_finishes_elsewhere_with_epoch_two(fleet: Fleet) -> None:
    label = unique_label()
    first = await fleet.start_factory(engines=["sim"], labels=[label], subprocess_=True)
    job = await fleet.submit(sim(label, duration=6))
    running = await fleet.wait_for(job["id"], ["running"])
    assert running["factoryId"] == first.id
    second = await fleet.start_factory(engines=["sim"], labels=[label], subprocess_=True)
    first.kill()

    done = await fleet.wait_for(job["id"], ["succeeded"], timeout=90)
    assert done["leaseEpoch"] == 2
    assert done["factoryId"] == second.id
    runs = await fleet.runs(job["id"])
    assert [(r["epoch"], r["factoryId"], r["outcome"]) for r in runs] == [
        (1, first.id, "lost"),
        (2, second.id, "succeeded"),
    ]
    events = await fleet.events(job["id"])
    requeued = [e for e in events if e["kind"] == "requeued"]
    assert requeued and "stopped heartbeating" in requeued[0]["reason"]
    await record_history(fleet.client, "leaf-lease-lost", done["workflowId"])


async def test_frozen_factory_is_fenced_after_thaw(fleet: Fleet) -> None:
    label = unique_label()
    zombie = await fleet.start_factory(engines=["sim"], labels=[label], subprocess_=True)
    job = await fleet.submit(sim(label, duration=8))
    await fleet.wait_for(job["id"], ["running"])
    other = await fleet.start_factory(engines=["sim"], labels=[label], subprocess_=True)
    zombie.freeze()
    try:
        done = await fleet.wait_for(job["id"], ["succeeded"], timeout=90)
    finally:
        zombie.thaw()
    assert done["leaseEpoch"] == 2
    assert done["factoryId"] == other.id

    # The thawed zombie still believes it holds lease 1: its next report is refused.
    for _ in range(100):
        events = await fleet.events(job["id"])
        fenced = [e for e in events if e["kind"] == "fenced"]
        if fenced:
            break
        await asyncio.sleep(0.2)
    assert fenced, "the zombie's stale report was not recorded"
    assert fenced[0]["epoch"] == 1
    assert f"factory:{zombie.id}" == fenced[0]["actor"]
    assert (await fleet.job(job["id"]))["fencedReports"] >= 1
    runs = await fleet.runs(job["id"])
    assert [r["outcome"] for r in runs].count("succeeded") == 1


async def test_jobs_with_the_same_lock_never_overlap(fleet: Fleet) -> None:
    label = unique_label()
    lock = f"lock-{label}"
    await fleet.start_factory(engines=["sim"], labels=[label], slots=3)
    jobs = [await fleet.submit({**sim(label, duration=1), "lock": lock}) for _ in range(3)]
    intervals = []
    for job in jobs:
        await fleet.wait_for(job["id"], ["succeeded"], timeout=60)
        run = (await fleet.runs(job["id"]))[0]
        intervals.append((parse_time(run["startedAt"]), parse_time(run["finishedAt"])))
    assert max_overlap(intervals) == 1
    # The lock workflow ends up free: the last holder releases it after its job reads
    # succeeded (release follows the finish, so a queued job never overlaps a finishing one).
    handle = fleet.client.get_workflow_handle(f"lock-{lock}")
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        state = await handle.query(QUERY_LOCK_STATE)
        holder = state.holder if hasattr(state, "holder") else state["holder"]
        if holder is None or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.1)
    assert holder is None, f"lock {lock} still held by {holder}"
    await record_history(fleet.client, "lock", f"lock-{lock}", closed=False)
    await record_history(fleet.client, "leaf-lock-waiter", jobs[-1]["workflowId"])


async def test_cancel_at_every_stage(fleet: Fleet) -> None:
    label = unique_label()
    # Waiting for capacity (no factory has the label yet).
    waiting = await fleet.submit(sim(label, duration=30))
    await fleet.wait_for(waiting["id"], ["waiting"])
    r = await fleet.http.patch(
        f"/fleet/jobs/{waiting['id']}", json={"action": "cancel"}, headers=fleet.auth()
    )
    assert r.status_code == 202, r.text
    await fleet.wait_for(waiting["id"], ["cancelled"])

    # Running: the agent is stopped and its slot is freed for the next job.
    await fleet.start_factory(engines=["sim"], labels=[label], slots=1)
    running = await fleet.submit(sim(label, duration=60))
    await fleet.wait_for(running["id"], ["running"])
    r = await fleet.http.patch(
        f"/fleet/jobs/{running['id']}", json={"action": "cancel"}, headers=fleet.auth()
    )
    assert r.status_code == 202
    cancelled = await fleet.wait_for(running["id"], ["cancelled"], timeout=30)
    runs = await fleet.runs(running["id"])
    assert runs[-1]["outcome"] == "cancelled"
    await record_history(fleet.client, "leaf-cancelled-running", cancelled["workflowId"])
    follower = await fleet.submit(sim(label, duration=0.2))
    await fleet.wait_for(follower["id"], ["succeeded"], timeout=30)

    # Waiting for a lock held by another job.
    lock = f"lock-{label}"
    holder = await fleet.submit({**sim(label, duration=5), "lock": lock})
    await fleet.wait_for(holder["id"], ["running"])
    queued = await fleet.submit({**sim(label, duration=0.2), "lock": lock})
    await fleet.wait_for(queued["id"], ["waiting"], reason_contains="lock")
    r = await fleet.http.patch(
        f"/fleet/jobs/{queued['id']}", json={"action": "cancel"}, headers=fleet.auth()
    )
    assert r.status_code == 202
    dequeued = await fleet.wait_for(queued["id"], ["cancelled"])
    await fleet.wait_for(holder["id"], ["succeeded"], timeout=30)
    await record_history(fleet.client, "leaf-cancelled-waiting-lock", dequeued["workflowId"])


async def test_auth_boundaries(fleet: Fleet) -> None:
    label = unique_label()
    job = await fleet.submit(sim(label, duration=0.1))
    assert (await fleet.http.get(f"/fleet/jobs/{job['id']}")).status_code == 401
    r = await fleet.http.post(
        "/fleet/keys",
        json={"name": "other", "role": "submitter", "products": ["other"]},
        headers=fleet.auth(),
    )
    assert r.status_code == 201, r.text
    other_key = r.json()["key"]
    r = await fleet.http.get(f"/fleet/jobs/{job['id']}", headers=fleet.auth(other_key))
    assert r.status_code == 404

    factory = await fleet.start_factory(engines=["sim"], labels=[label])
    r = await fleet.http.post(f"/fleet/factories/{factory.id}/token/revoke", headers=fleet.auth())
    assert r.status_code == 200, r.text
    r = await fleet.http.post(
        "/fleet/factories/heartbeat",
        json={"engines": ["sim"], "labels": [label], "slots": 1, "healthy": True, "running": 0},
        headers=fleet.auth(factory.token),
    )
    assert r.status_code == 401
    r = await fleet.http.patch(
        f"/fleet/jobs/{job['id']}", json={"action": "cancel"}, headers=fleet.auth()
    )
    assert r.status_code in (202, 409), r.text


async def test_cancel_racing_a_slot_grant_still_records_cancelled(fleet: Fleet) -> None:
    # A cancel in the same workflow task as a slot grant lands on the local activity that
    # gives the slot back (or on the attempt it would have started): the job must still
    # end `cancelled`.
    jobs = [
        await fleet.submit({"engine": "devin", "prompt": "wait", "productId": "e2e"})
        for _ in range(6)
    ]
    for job in jobs:
        await fleet.wait_for(job["id"], ["waiting"])

    async def race(job: dict[str, object]) -> None:
        handle = fleet.client.get_workflow_handle(str(job["workflowId"]))
        grant = SlotGrant(factory_id="nowhere", epoch=1)
        await asyncio.gather(handle.signal(SIGNAL_SLOT_GRANTED, grant), handle.cancel())

    await asyncio.gather(*(race(job) for job in jobs))
    for job in jobs:
        await fleet.wait_for(job["id"], ["cancelled"], timeout=30)
