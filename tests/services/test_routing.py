"""One routing pipeline: the dry run shows exactly what routing then does, stored weights
that no longer validate included; the product's preemption policy; the shadow report."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import Client

from gigafactory.models import (
    Factory,
    PreemptionSettings,
    Priority,
    Role,
    RoutingWeights,
    SlotReservation,
)
from gigafactory.services import Services
from gigafactory.services.errors import Forbidden, InvalidInput
from gigafactory.services.fleet_view import job_request
from gigafactory.services.routing import RoutePlan
from gigafactory.services.specs import Submission
from gigafactory.store import FleetStore
from routing import FleetWeights
from tests.services.conftest import NOW, Clock, key, make_services, place

# Two factories that differ in what each term prefers: "cheap" is cheaper and less loaded,
# "fit" matches the job's preferred label.
FACTORIES = (
    Factory(id="cheap", engines=["sim"], labels=["x86"], slots=4, enrolled_at=NOW,
            last_heartbeat_at=NOW, cost_rate_usd_per_hour=0.0),
    Factory(id="fit", engines=["sim"], labels=["gpu"], slots=2, enrolled_at=NOW,
            last_heartbeat_at=NOW, cost_rate_usd_per_hour=9.0),
)  # fmt: skip

WEIGHTS = [
    pytest.param(None, id="defaults"),
    pytest.param({"affinity": 20.0}, id="valid-product-weights"),
    pytest.param({"cost_rate": 0.0, "load": 0.0, "affinity": 5.0}, id="other-valid-weights"),
    # Written before a term was renamed: no longer validates, so routing uses the defaults.
    pytest.param({"speed": 3.0, "affinity": 20.0}, id="stored-weights-no-longer-valid"),
]


async def _fleet(store: FleetStore) -> None:
    for factory in FACTORIES:
        await store.create_factory(factory)


@pytest.mark.parametrize("stored", WEIGHTS)
@pytest.mark.parametrize("preferred", [[], ["gpu"]], ids=["no-preference", "prefers-gpu"])
async def test_the_dry_run_picks_what_routing_then_reserves(
    services: Services, stored: dict[str, float] | None, preferred: list[str]
) -> None:
    await _fleet(services.store)
    if stored is not None:
        await services.store.put_routing_weights(
            RoutingWeights(product_id="acme", weights=stored, updated_at=NOW, updated_by="t")
        )
    fields = {"engine": "sim", "prompt": "go", "productId": "acme", "preferredLabels": preferred}
    plan = await services.routing.dry_run(key(), Submission(fields=fields))
    routed = await place(services, "j1", preferred_labels=preferred)
    # The inputs matter: a label preference alone wins "fit" under every valid weight set
    # here, and without one the defaults keep the cheaper, emptier factory.
    if preferred:
        assert plan.factory_id == "fit"
    elif stored is None or "speed" in stored:
        assert plan.factory_id == "cheap"
    assert routed.factory_id == plan.factory_id
    assert routed.weights == plan.weights
    if stored and "speed" in stored:
        assert plan.weights == FleetWeights().as_dict()
    reserved = {t.factory_id: [r.job_id for r in t.reservations]
                for t in await services.store.list_slot_tables()}  # fmt: skip
    assert reserved == {plan.factory_id: ["j1"]}


async def test_the_dry_run_waits_like_routing_when_nothing_fits(services: Services) -> None:
    await _fleet(services.store)
    fields = {"engine": "codex", "prompt": "go", "productId": "acme"}
    plan = await services.routing.dry_run(key(), Submission(fields=fields))
    routed = await place(services, "j1", engine="codex")
    assert plan.factory_id is None and routed.factory_id is None
    assert plan.reason == routed.waiting_reason == "no factory offers engine codex"


async def test_a_products_preemption_policy_overlays_the_fleets(services: Services) -> None:
    view = await services.routing.get_weights(key(), "acme")
    assert view.effective_preemption.preempting_priorities == [Priority.CRITICAL]
    with pytest.raises(Forbidden):
        await services.routing.put_weights(
            key(Role.SUBMITTER, ["acme"]), "acme", {}, PreemptionSettings(min_runtime_s=5)
        )
    with pytest.raises(InvalidInput, match="unknown weight term 'speed'"):
        await services.routing.put_weights(key(), "acme", {"speed": 1})
    own = PreemptionSettings(
        preempting_priorities=[Priority.HIGH, Priority.CRITICAL], min_runtime_s=60, grace_s=3
    )
    view = await services.routing.put_weights(key(), "acme", {"load": 3}, own)
    assert view.effective_preemption == PreemptionSettings(
        preempting_priorities=[Priority.HIGH, Priority.CRITICAL], min_runtime_s=60, grace_s=3
    )
    policy = await services.routing.policy_for("acme")
    assert policy.preempting == {"high", "critical"}
    assert policy.min_runtime_s == services.settings.preemption_min_runtime_s  # per victim
    assert await services.routing.grace_for("acme") == 3
    assert await services.routing.grace_for("beta") == services.settings.stop_grace_s
    # New weights without a policy keep the policy.
    kept = await services.routing.put_weights(key(), "acme", {"load": 1})
    assert kept.preemption == own and kept.overrides == {"load": 1.0}


async def test_the_shadow_report_counts_placements_and_how_they_differ(
    store: FleetStore, client: Client, tmp_path: Path, clock: Clock
) -> None:
    # The shadow ignores the label preference: it would put "prefers-gpu" jobs on "cheap".
    shadow = '{"affinity": 0, "capabilityFit": 0}'
    services = make_services(store, client, tmp_path, clock, routing_shadow=shadow)
    await _fleet(store)
    for n, preferred in enumerate((["gpu"], ["gpu"], [])):
        await place(
            services, f"j{n}", preferred_labels=preferred, weights_override={"affinity": 20}
        )
    clock.now = NOW + timedelta(minutes=5)
    report = await services.routing.shadow_report(key(), "acme", window=timedelta(hours=1))
    assert (report.enabled, report.decisions, report.differing) == (True, 3, 2)
    assert report.differing_share == pytest.approx(2 / 3)
    assert [(p.factory_id, p.shadow_factory_id, p.count) for p in report.pairs] == [
        ("fit", "cheap", 2)
    ]
    assert report.mean_score_gap > 0  # following the shadow would score worse, live
    later = await services.routing.shadow_report(key(), "acme", window=timedelta(minutes=1))
    assert later.decisions == 0
    with pytest.raises(InvalidInput):
        await services.routing.shadow_report(key(), "acme", window=timedelta(0))


async def one_slot_factories(services: Services, *ids: str) -> None:
    """Healthy one-slot sim factories."""
    for factory_id in ids:
        await services.store.create_factory(
            Factory(
                id=factory_id, engines=["sim"], slots=1, enrolled_at=NOW, last_heartbeat_at=NOW
            )  # fmt: skip
        )


async def plan_critical(services: Services) -> RoutePlan:
    """The routing plan of a critical `acme` sim job that may preempt."""
    return await services.routing.plan(
        job_request("urgent", engine="sim", capabilities=[], priority=Priority.CRITICAL,
                    preferred_labels=[], waiting_since=NOW),  # fmt: skip
        "acme", None, await services.routing.snapshot(), now=NOW, may_preempt=True,
    )  # fmt: skip


async def test_a_victims_own_product_decides_how_long_it_is_protected(services: Services) -> None:
    """Two one-slot factories, each running a low job of another product; `a` would be the
    victim (it sorts first), but its product protects its jobs for ten minutes."""
    await one_slot_factories(services, "a", "b")
    for factory_id, product in (("a", "safe"), ("b", "open")):
        reservation = SlotReservation(
            job_id=f"{product}-job", product_id=product, epoch=1, priority=Priority.LOW,
            reserved_at=NOW - timedelta(seconds=20),  # young: the reaper leaves it alone
        )  # fmt: skip
        assert await services.store.reserve_slot(factory_id, 1, reservation)
    unprotected = await plan_critical(services)
    assert unprotected.preemption is not None and unprotected.preemption.evict == ("safe-job",)
    await services.routing.put_weights(key(), "safe", {}, PreemptionSettings(min_runtime_s=600))
    routed = await place(services, "urgent", priority=Priority.CRITICAL, preemption=True)
    assert (routed.factory_id, routed.evicted) == ("b", ["open-job"])


async def test_a_job_still_holding_its_lost_leases_slot_is_planned_once(
    services: Services,
) -> None:
    """A factory killed mid-run leaves its reservation until it is given back or reaped,
    while the job's next lease holds a slot elsewhere: routing a critical job meanwhile must
    plan with the job where its newest lease is (it once failed: duplicate running job id)."""
    await one_slot_factories(services, "lost", "a", "b")
    for factory_id, job_id, epoch, age in (
        ("lost", "moved", 1, 60), ("a", "moved", 2, 20), ("b", "other", 1, 30),
    ):  # fmt: skip
        reservation = SlotReservation(
            job_id=job_id, product_id="beta", epoch=epoch, priority=Priority.LOW,
            reserved_at=NOW - timedelta(seconds=age),
        )  # fmt: skip
        assert await services.store.reserve_slot(factory_id, 1, reservation)
    plan = await plan_critical(services)
    assert plan.preemption is not None
    # The victim is one job on one factory, never the lost lease's stale slot.
    assert len(plan.preemption.evict) == 1
    assert (plan.preemption.factory_id, plan.preemption.evict) in {
        ("a", ("moved",)),
        ("b", ("other",)),
    }
