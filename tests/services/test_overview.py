"""The web control plane's views: the fleet map names only the key's jobs."""

from __future__ import annotations

from datetime import timedelta

from gigafactory.models import Factory, FactoryStatus, Priority, Role, SlotReservation
from gigafactory.services import Services
from tests.services.conftest import NOW, Clock, key
from tests.store.conftest import make_job


async def test_the_fleet_map_counts_other_products_jobs_without_naming_them(
    services: Services, clock: Clock
) -> None:
    await services.store.create_factory(
        Factory(
            id="f1",
            engines=["sim"],
            labels=["gpu"],
            slots=3,
            hostname="build-07",
            enrolled_at=NOW,
            last_heartbeat_at=NOW,
        )
    )
    await services.store.create_factory(
        Factory(id="f2", engines=["shell"], slots=1, enrolled_at=NOW, status=FactoryStatus.CORDONED)
    )
    for job_id, product, priority in (("a1", "acme", "high"), ("b1", "beta", "low")):
        await services.store.create_job(make_job(job_id, product, title=f"job {job_id}"))
        assert await services.store.reserve_slot(
            "f1",
            3,
            SlotReservation(
                job_id=job_id,
                product_id=product,
                epoch=1,
                priority=Priority(priority),
                reserved_at=NOW,
            ),
        )
    clock.now = NOW + timedelta(seconds=90)

    submitter = await services.overview.fleet_map(key(Role.SUBMITTER, ["acme"]))
    f1, f2 = submitter.cards
    assert [j.job_id for j in f1.jobs] == ["a1"]
    assert f1.jobs[0].headline == "job a1" and f1.jobs[0].runtime_s == 90
    assert f1.hidden_jobs == 1 and f1.slots_used == 2 and f1.slots_total == 3
    assert f1.hostname is None  # host names are for operators
    assert f2.state.factory.status is FactoryStatus.CORDONED and not f2.state.healthy
    assert (submitter.slots_used, submitter.slots_total, submitter.healthy) == (2, 4, 0)

    operator = await services.overview.fleet_map(key(Role.OPERATOR, ["*"]))
    assert [j.job_id for j in operator.cards[0].jobs] == ["a1", "b1"]
    assert operator.cards[0].hidden_jobs == 0
    assert operator.cards[0].hostname == "build-07"
