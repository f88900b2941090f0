"""The one place a job's stage moves: idempotent writes, guarded operator transitions."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gigafactory.contracts import FinishRunInput, TransitionInput
from gigafactory.models import RunOutcome, Stage, WaitReason
from gigafactory.services.errors import Conflict
from gigafactory.services.lifecycle import Lifecycle
from gigafactory.store import FleetStore, NotFound
from tests.services.conftest import NOW
from tests.store.conftest import make_job


async def test_create_writes_the_job_and_its_queued_event_and_remove_undoes_both(
    store: FleetStore,
) -> None:
    lifecycle = Lifecycle(store)
    job = make_job("j1", submitted_by="api:k1")
    await lifecycle.create(job, reason="submitted")
    events, _ = await store.list_events("j1", "acme")
    assert [(e.kind, e.stage, e.actor, e.reason) for e in events] == [
        ("stage", Stage.QUEUED, "api:k1", "submitted")
    ]
    await lifecycle.remove(job)
    await lifecycle.remove(job)  # what is gone already is fine
    with pytest.raises(NotFound):
        await store.get_job("j1", "acme")
    assert (await store.list_events("j1", "acme"))[0] == []


async def test_a_transition_retried_with_its_event_id_is_recorded_once(store: FleetStore) -> None:
    lifecycle = Lifecycle(store)
    await lifecycle.create(make_job("j1"), reason="submitted")
    inp = TransitionInput(
        job_id="j1", product_id="acme", event_id="e1", at=NOW, stage=Stage.WAITING,
        wait_reason=WaitReason.CAPACITY, reason="all factories are full",
    )  # fmt: skip
    await lifecycle.transition(inp)
    await lifecycle.transition(inp)
    job = await store.get_job("j1", "acme")
    assert (job.stage, job.wait_reason, job.stage_reason) == (
        Stage.WAITING,
        WaitReason.CAPACITY,
        "all factories are full",
    )
    events, _ = await store.list_events("j1", "acme")
    waiting = [e for e in events if e.id == "e1"]
    assert len(waiting) == 1 and waiting[0].from_stage == Stage.QUEUED


async def test_ship_only_from_succeeded_and_only_once(store: FleetStore) -> None:
    lifecycle = Lifecycle(store)
    queued = await lifecycle.create(make_job("j1"), reason="submitted")
    with pytest.raises(Conflict, match="job j1 is queued; only a succeeded job can be shipped"):
        await lifecycle.ship(queued, actor="api:k1", note=None, at=NOW)
    done = await lifecycle.create(make_job("j2", stage="succeeded"), reason="submitted")
    shipped = await lifecycle.ship(done, actor="api:k1", note="release 1.2", at=NOW)
    assert (shipped.stage, shipped.stage_reason) == (Stage.SHIPPED, "release 1.2")
    with pytest.raises(Conflict, match="is shipped"):
        await lifecycle.ship(done, actor="api:k2", note=None, at=NOW)
    events, _ = await store.list_events("j2", "acme")
    assert [(e.stage, e.from_stage, e.actor) for e in events if e.stage == Stage.SHIPPED] == [
        (Stage.SHIPPED, Stage.SUCCEEDED, "api:k1")
    ]


async def test_a_run_recorded_twice_counts_its_spend_once(store: FleetStore) -> None:
    lifecycle = Lifecycle(store)
    await lifecycle.create(make_job("j1"), reason="submitted")
    runs = [
        FinishRunInput(
            job_id="j1",
            product_id="acme",
            epoch=epoch,
            factory_id="f1",
            engine="sim",
            started_at=NOW,
            finished_at=NOW + timedelta(seconds=epoch),
            outcome=outcome,
            cost_usd=cost,
        )  # fmt: skip
        for epoch, outcome, cost in ((1, RunOutcome.LOST, 0.25), (2, RunOutcome.SUCCEEDED, 0.5))
    ]
    first = await lifecycle.record_run(runs[0])
    again = await lifecycle.record_run(runs[0])
    second = await lifecycle.record_run(runs[1])
    assert (first.new_spend, again.new_spend, second.new_spend) == (True, False, True)
    assert second.job_cost_usd == pytest.approx(0.75)
    assert (await store.get_job("j1", "acme")).cost_usd == pytest.approx(0.75)
    assert sorted(r.usd for r in await store.list_spend("acme")) == [0.25, 0.5]
