"""Revoking a factory, end to end (docs/security.md): its token is refused, Temporal hands
its task queue nothing more, its process stops its worker and hands the running job back,
and the job finishes elsewhere."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError, TimeoutError, TimeoutType
from temporalio.worker import Worker

from gigafactory.contracts import factory_task_queue
from tests.e2e.harness import Fleet, unique_label

pytestmark = pytest.mark.temporal


def sim(label: str, duration: float) -> dict[str, object]:
    return {
        "engine": "sim",
        "prompt": "simulate",
        "productId": "e2e",
        "capabilities": [label],
        "params": {"durationS": duration},
    }


async def wait_exit(process: object, timeout: float = 60) -> int:
    """The exit code of a factory process, once it has exited by itself."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = process.poll()  # type: ignore[attr-defined]
        if code is not None:
            return int(code)
        await asyncio.sleep(0.2)
    raise AssertionError(f"the factory process did not exit within {timeout}s")


async def test_a_revoked_factory_stops_and_its_job_finishes_elsewhere(fleet: Fleet) -> None:
    label = unique_label()
    revoked = await fleet.start_factory(engines=["sim"], labels=[label], subprocess_=True)
    job = await fleet.submit(sim(label, duration=20))
    running = await fleet.wait_for(job["id"], ["running"])
    assert running["factoryId"] == revoked.id

    r = await fleet.http.post(f"/fleet/factories/{revoked.id}/token/revoke", headers=fleet.auth())
    assert r.status_code == 200 and r.json()["status"] == "revoked"

    # The factory learns of it (its next report is refused), stops its worker and exits,
    # saying why.
    assert revoked.process is not None and revoked.log_path is not None
    assert await wait_exit(revoked.process) == 1
    log = revoked.log_path.read_text()
    assert "refused" in log and "enroll again" in log, log[-2000:]

    # Its running job was handed back and waits: no other factory offers the capability.
    waiting = await fleet.wait_for(job["id"], ["waiting"], timeout=60)
    assert waiting["leaseEpoch"] == 1
    # A job submitted now is not sent to the revoked factory either.
    later = await fleet.submit(sim(label, duration=0.2))
    await fleet.wait_for(later["id"], ["waiting"])

    other = await fleet.start_factory(engines=["sim"], labels=[label])
    for job_id in (job["id"], later["id"]):
        done = await fleet.wait_for(job_id, ["succeeded"], timeout=90)
        assert done["factoryId"] == other.id
    runs = await fleet.runs(job["id"])
    assert [(r["epoch"], r["factoryId"], r["outcome"]) for r in runs] == [
        (1, revoked.id, "lost"),
        (2, other.id, "succeeded"),
    ]
    assert "shut down" in (runs[0]["reason"] or "")
    assert all(r["factoryId"] == other.id for r in await fleet.runs(later["id"]))


@activity.defn(name="probe")
async def probe(note: str) -> str:
    return f"ran {note}"


@workflow.defn(name="revoke-probe", sandboxed=False)
class Probe:
    """Runs one `probe` activity on the queue it is given."""

    @workflow.run
    async def run(self, queue: str) -> str:
        return str(
            await workflow.execute_activity(
                "probe",
                "on the factory's queue",
                task_queue=queue,
                schedule_to_start_timeout=timedelta(seconds=4),
                start_to_close_timeout=timedelta(seconds=10),
            )
        )


async def test_temporal_dispatches_nothing_to_a_revoked_factorys_queue(fleet: Fleet) -> None:
    """A factory keeps its Temporal credentials after revocation: a worker polling its queue
    (one that ignores the API's refusals) still gets no task, until it enrolls again."""
    factory_id = f"f-{uuid.uuid4().hex[:8]}"
    await fleet.enroll(factory_id, ["sim"], [], 1)
    r = await fleet.http.post(f"/fleet/factories/{factory_id}/token/revoke", headers=fleet.auth())
    assert r.status_code == 200
    control = f"probe-{uuid.uuid4().hex[:8]}"
    queue = factory_task_queue(factory_id)
    async with (
        Worker(fleet.client, task_queue=control, workflows=[Probe]),
        Worker(fleet.client, task_queue=queue, activities=[probe]),
    ):
        with pytest.raises(WorkflowFailureError) as refused:
            await fleet.client.execute_workflow(
                Probe.run, queue, id=f"probe-{uuid.uuid4().hex}", task_queue=control
            )
        cause = refused.value.cause
        assert isinstance(cause, ActivityError) and isinstance(cause.cause, TimeoutError)
        assert cause.cause.type == TimeoutType.SCHEDULE_TO_START

        # Enrolled again (a new token from an operator), it gets work at once.
        await fleet.enroll(factory_id, ["sim"], [], 1)
        result = await fleet.client.execute_workflow(
            Probe.run, queue, id=f"probe-{uuid.uuid4().hex}", task_queue=control
        )
        assert result == "ran on the factory's queue"
