"""Budgets: the view counts with the controller's own rules, and alerts only where budgets
are enforced."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import Client

from gigafactory.budgets import BudgetConfig
from gigafactory.contracts import FinishRunInput
from gigafactory.models import Role, RunOutcome, SpendRecord, StoredBudget
from gigafactory.services import Services
from gigafactory.services.errors import Conflict, Forbidden
from gigafactory.store import FleetStore
from tests.services.conftest import NOW, Clock, key, make_services
from tests.store.conftest import make_job


async def _spend(store: FleetStore, amounts: list[float]) -> None:
    for n, usd in enumerate(amounts):
        await store.record_spend(
            SpendRecord(
                id=f"j{n}.1",
                product_id="acme",
                job_id=f"j{n}",
                usd=usd,
                at=NOW - timedelta(minutes=n),
            )  # fmt: skip
        )


async def _ceiling(store: FleetStore, **config: float) -> None:
    await store.put_budget(
        StoredBudget(
            product_id="acme",
            config=BudgetConfig(**config).model_dump(by_alias=True),
            updated_at=NOW,
            updated_by="t",
        )  # fmt: skip
    )


async def test_ten_dimes_fill_a_dollar_exactly_as_the_controller_counts(
    services: Services,
) -> None:
    await _ceiling(services.store, ceiling_usd=1.0, soft_threshold=0.3)
    await _spend(services.store, [0.1] * 10)  # 0.9999999999999999 in binary floats
    view = await services.budgets.view(key(), "acme")
    assert view.remaining_usd == 0.0 and view.overspent_usd == 0.0
    assert view.soft_alert is True
    assert (view.enforced, view.status, view.source) == (False, "active", "store")


async def test_flag_off_set_stores_and_pause_resume_say_it_would_change_nothing(
    services: Services,
) -> None:
    view = await services.budgets.set(key(), "acme", BudgetConfig(ceiling_usd=2.0))
    assert view.config.ceiling_usd == 2.0 and view.enforced is False
    for call in (
        services.budgets.pause(key(), "acme", "why"),
        services.budgets.resume(key(), "acme"),
    ):
        with pytest.raises(Conflict, match="FLEET_BUDGETS is off"):
            await call
    with pytest.raises(Forbidden):
        await services.budgets.view(key(Role.SUBMITTER, ["acme"]), "acme")
    assert [v.product_id for v in await services.budgets.list_views(key())] == ["acme"]
    assert await services.budgets.list_views(key(Role.OPERATOR, ["beta"])) == []


@pytest.mark.parametrize("enforced", [True, False], ids=["budgets-on", "budgets-off"])
async def test_the_run_that_crosses_the_soft_threshold_alerts_only_when_enforced(
    store: FleetStore, client: Client, tmp_path: Path, clock: Clock, enforced: bool
) -> None:
    services = make_services(store, client, tmp_path, clock, budgets=enforced)
    await store.create_job(make_job("j9"))
    await _ceiling(store, ceiling_usd=1.0, soft_threshold=0.8)
    await _spend(store, [0.1] * 7)

    async def finish(epoch: int, usd: float) -> None:
        await services.attempts.finish(
            FinishRunInput(
                job_id="j9",
                product_id="acme",
                epoch=epoch,
                factory_id="f1",
                engine="sim",
                started_at=NOW,
                finished_at=NOW,
                outcome=RunOutcome.SUCCEEDED,
                cost_usd=usd,
                budgets_enforced=enforced,
            )  # fmt: skip
        )

    await finish(1, 0.05)  # 0.75: under the threshold
    await finish(2, 0.05)  # 0.80: crosses it (exactly, within the tolerance)
    await finish(3, 0.05)  # 0.85: already past
    events, _ = await store.list_events("j9", "acme")
    alerts = [e for e in events if e.kind == "budget_alert"]
    if enforced:
        assert [e.id for e in alerts] == ["j9.2.budget-alert"]
        assert "$0.80 of its $1.00 ceiling" in (alerts[0].reason or "")
    else:
        assert alerts == []
