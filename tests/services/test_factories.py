"""Factories: one health rule, shared with routing, exact at its boundary."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gigafactory.contracts import FinishRunInput
from gigafactory.models import Factory, Role, RunOutcome, Stage
from gigafactory.services import Services
from gigafactory.services.errors import Forbidden
from gigafactory.services.factories import Beat
from tests.services.conftest import NOW, Clock, key, place

LIMIT = 20.0  # factory_unhealthy_after_s of the services fixture


@pytest.mark.parametrize(
    ("age", "healthy"),
    [(0.0, True), (LIMIT - 0.001, True), (LIMIT, True), (LIMIT + 0.001, False), (60.0, False)],
    ids=["fresh", "just-under", "exactly-at-the-limit", "just-over", "stale"],
)
async def test_the_api_and_routing_agree_on_health_at_the_boundary(
    services: Services, clock: Clock, age: float, healthy: bool
) -> None:
    await services.store.create_factory(
        Factory(id="f1", engines=["sim"], slots=1, enrolled_at=NOW, last_heartbeat_at=NOW)
    )
    clock.now = NOW + timedelta(seconds=age)
    state = await services.factories.get(key(), "f1")
    assert state.healthy is healthy
    routed = await place(services, "j1")
    assert (routed.factory_id == "f1") is healthy
    if not healthy:
        assert routed.waiting_reason == "no healthy factory"


async def test_factory_operations_need_an_operator(services: Services) -> None:
    submitter = key(Role.SUBMITTER, ["acme"])
    for call in (
        services.factories.list_states(submitter),
        services.factories.enrollment_token(submitter),
        services.factories.cordon(submitter, "f1"),
        services.factories.revoke(submitter, "f1"),
    ):
        with pytest.raises(Forbidden):
            await call


def _finish(job_id: str, factory_id: str, *, unresponsive: bool) -> FinishRunInput:
    return FinishRunInput(
        job_id=job_id,
        product_id="acme",
        epoch=1,
        factory_id=factory_id,
        engine="sim",
        started_at=NOW,
        finished_at=NOW + timedelta(seconds=5),
        outcome=RunOutcome.LOST,
        reason=f"factory {factory_id} stopped heartbeating (lease of 5s expired)",
        factory_unresponsive=unresponsive,
        stage=Stage.QUEUED,
    )


@pytest.mark.parametrize("unresponsive", [True, False], ids=["lease-lost", "answered"])
async def test_a_factory_that_lost_a_lease_gets_no_job_until_its_next_heartbeat(
    services: Services, clock: Clock, unresponsive: bool
) -> None:
    for factory_id in ("f1", "f2"):
        await services.store.create_factory(
            Factory(id=factory_id, engines=["sim"], slots=1, enrolled_at=NOW, last_heartbeat_at=NOW)
        )
    running = [(await place(services, job_id)).factory_id for job_id in ("j1", "j2")]
    assert sorted(running) == ["f1", "f2"]
    lost_on = running[0]
    assert (await place(services, "j3")).factory_id is None  # queued: the fleet is full
    assert [e.job_id for e in await services.store.queue_entries()] == ["j3"]

    clock.now = NOW + timedelta(seconds=5)  # the lease ran out; the heartbeat is still fresh
    await services.attempts.finish(_finish("j1", lost_on, unresponsive=unresponsive))

    state = await services.factories.get(key(), lost_on)
    assert state.reservations == []  # j1's slot is freed either way
    queued = [e.job_id for e in await services.store.queue_entries()]
    if not unresponsive:
        # A factory that answered for the run keeps its place: the slot goes to j3 at once
        # (whose workflow does not run here, so the hand-off is given back).
        assert state.healthy and queued == []
        (run,) = await services.store.list_runs("j3", "acme")
        assert run.factory_id == lost_on
        return
    assert not state.healthy
    assert state.factory.lease_lost_at == clock.now
    assert state.factory.lease_lost_reason == (
        f"lost a run's lease at 12:00:05 UTC: factory {lost_on} stopped heartbeating "
        "(lease of 5s expired)"
    )
    assert queued == ["j3"]  # the slot the loss freed is not handed to anyone
    routed = await place(services, "j4")
    assert routed.factory_id is None
    explained = {c.factory_id: c.excluded_because for c in routed.candidates}
    assert "skipped until its next heartbeat" in (explained[lost_on] or "")

    # Its next heartbeat says it is alive: it is trusted again and j3 is handed its slot.
    clock.now = NOW + timedelta(seconds=6)
    factory = await services.store.get_factory(lost_on)
    healthy = await services.factories.heartbeat(factory, Beat(engines=["sim"], slots=1))
    assert healthy.healthy and healthy.factory.lease_lost_at is None
    # Both waiting jobs were handed the slot in turn (each given back: no workflow runs).
    assert await services.store.queue_entries() == []
    for job_id in ("j3", "j4"):
        (run,) = await services.store.list_runs(job_id, "acme")
        assert (run.factory_id, run.reason) == (lost_on, "never started: its workflow had ended")


async def test_a_heartbeat_after_the_loss_already_shows_the_factory_alive(
    services: Services, clock: Clock
) -> None:
    later = NOW + timedelta(seconds=10)
    await services.store.create_factory(
        Factory(id="f1", engines=["sim"], slots=1, enrolled_at=NOW, last_heartbeat_at=later)
    )
    assert not await services.factories.lease_lost("f1", NOW, "lost a run's lease")
    assert (await services.store.get_factory("f1")).lease_lost_at is None
    assert not await services.factories.lease_lost("gone", NOW, "lost a run's lease")
