"""Per-product budgets: the settings, the controller's live counts, pause and resume.

Operators only, and product-scoped (404 for a product the key may not see). The settings
are stored (so a controller started later, or after a restart, gets them) and sent to the
product's controller workflow with signal-with-start.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import Field
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.deps import ClockDep, OperatorDep, SettingsDep, StoreDep, TemporalDep
from api.errors import ApiError
from api.schemas import RequestModel
from gigafactory.budgets import (
    QUERY_BUDGET_STATE,
    SIGNAL_PAUSE,
    SIGNAL_RESUME,
    SIGNAL_SET_BUDGET,
    BudgetConfig,
    BudgetState,
    BudgetWindow,
    PauseRequest,
    ResumeRequest,
    next_reset,
    remaining_usd,
    window_start,
)
from gigafactory.contracts import product_workflow_id
from gigafactory.controller_client import signal_controller, stored_config
from gigafactory.models import ApiKey, CamelModel, SpendRecord, StoredBudget
from gigafactory.settings import Settings
from gigafactory.store.fleet_store import FleetStore

__all__ = ["router"]

router = APIRouter(prefix="/fleet/budgets", tags=["budgets"])

_LEDGER_SHOWN = 20


class BudgetIn(RequestModel):
    """A product's budget: a ceiling (null: unlimited) over a window, a soft threshold."""

    ceiling_usd: float | None = Field(default=None, ge=0)
    window: BudgetWindow = "none"
    soft_threshold: float = Field(default=0.8, ge=0, le=1)
    default_estimate_usd: float = Field(
        default=0.0, ge=0, description="The estimate of a job that gives none."
    )


class PauseIn(RequestModel):
    reason: str = Field(default="paused by operator", max_length=500)


class BudgetView(CamelModel):
    """Where a product stands against its budget."""

    product_id: str
    enforced: bool = Field(description="FLEET_BUDGETS: off means nothing waits or pauses.")
    config: BudgetConfig
    spent_usd: float
    reserved_usd: float
    remaining_usd: float | None
    overspent_usd: float = Field(
        default=0.0,
        description="Spent beyond the ceiling: in-flight runs whose cost exceeded their estimate.",
    )
    status: str
    reason: str | None = None
    soft_alert: bool = False
    window_started_at: datetime | None = None
    resets_at: datetime | None = None
    waiting: int = 0
    source: str = Field(description="controller (live counts) or store (ledger sums)")
    ledger: list[dict[str, Any]] = Field(default_factory=list)


def _over(spent: float, ceiling: float | None) -> float:
    return 0.0 if ceiling is None else max(0.0, spent - ceiling)


def _scoped(key: ApiKey, product_id: str) -> None:
    if not key.may_see(product_id):
        raise ApiError(404, "not_found", f"product {product_id} not found", field="productId")


async def _view(
    store: FleetStore, temporal: Client, settings: Settings, product_id: str, now: datetime
) -> BudgetView:
    ledger = await store.list_spend(product_id, limit=_LEDGER_SHOWN)
    shown = [r.model_dump(by_alias=True, mode="json") for r in ledger]
    if not settings.budgets:
        # Not enforced: no controller counts anything; the ledger has every run.
        return await _from_store(store, settings, product_id, now, shown)
    try:
        state: BudgetState = await temporal.get_workflow_handle(
            product_workflow_id(product_id)
        ).query(QUERY_BUDGET_STATE, result_type=BudgetState)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        return await _from_store(store, settings, product_id, now, shown)
    return BudgetView(
        product_id=product_id,
        enforced=settings.budgets,
        config=state.config,
        spent_usd=state.spent_usd,
        reserved_usd=state.reserved_usd,
        remaining_usd=remaining_usd(state),
        overspent_usd=_over(state.spent_usd, state.config.ceiling_usd),
        status=state.status,
        reason=state.reason_text,
        soft_alert=state.soft_alerted,
        window_started_at=state.window_started_at,
        resets_at=state.resets_at,
        waiting=len(state.waiting),
        source="controller",
        ledger=shown,
    )


async def _from_store(
    store: FleetStore,
    settings: Settings,
    product_id: str,
    now: datetime,
    shown: list[dict[str, Any]],
) -> BudgetView:
    """Budgets not enforced, or no controller yet: sum the ledger of the current window."""
    config = await stored_config(store, product_id)
    since = window_start(config.window, now)
    spent = sum(r.usd for r in await _all_spend(store, product_id, since))
    ceiling = config.ceiling_usd
    return BudgetView(
        product_id=product_id,
        enforced=settings.budgets,
        config=config,
        spent_usd=spent,
        reserved_usd=0.0,
        remaining_usd=None if ceiling is None else max(0.0, ceiling - spent),
        overspent_usd=_over(spent, ceiling),
        status="active",
        soft_alert=ceiling is not None and spent >= ceiling * config.soft_threshold,
        window_started_at=since,
        resets_at=next_reset(config.window, now),
        source="store",
        ledger=shown,
    )


async def _all_spend(
    store: FleetStore, product_id: str, since: datetime | None
) -> list[SpendRecord]:
    return await store.list_spend(product_id, since=since, limit=10_000)


@dataclass
class _Budgets:
    """What every budget route needs: the caller's product scope and the services."""

    key: ApiKey
    store: FleetStore
    temporal: Client
    settings: Settings
    now: datetime

    def scoped(self, product_id: str) -> None:
        _scoped(self.key, product_id)

    async def signal(self, product_id: str, name: str, arg: Any) -> None:
        await signal_controller(
            self.temporal, self.store, product_id, self.settings.control_task_queue, name, arg
        )

    async def view(self, product_id: str) -> BudgetView:
        return await _view(self.store, self.temporal, self.settings, product_id, self.now)


def _budgets(
    key: OperatorDep,
    store: StoreDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> _Budgets:
    return _Budgets(key, store, temporal, settings, clock())


BudgetsDep = Annotated[_Budgets, Depends(_budgets)]


@router.get("/{product_id}", response_model=BudgetView)
async def get_budget(product_id: str, ops: BudgetsDep) -> BudgetView:
    """Spent, reserved, remaining, status and why, the window's reset, the last ledger entries."""
    ops.scoped(product_id)
    return await ops.view(product_id)


@router.put("/{product_id}", response_model=BudgetView)
async def put_budget(product_id: str, body: BudgetIn, ops: BudgetsDep) -> BudgetView:
    """Set the ceiling, window and soft threshold; a raised ceiling wakes waiting jobs."""
    ops.scoped(product_id)
    config = BudgetConfig.model_validate(body.model_dump())
    await ops.store.put_budget(
        StoredBudget(
            product_id=product_id,
            config=config.model_dump(by_alias=True),
            updated_at=ops.now,
            updated_by=f"api:{ops.key.id}",
        )
    )
    await ops.signal(product_id, SIGNAL_SET_BUDGET, config)
    return await ops.view(product_id)


@router.post("/{product_id}/pause", status_code=202, response_model=BudgetView)
async def pause(product_id: str, ops: BudgetsDep, body: PauseIn | None = None) -> BudgetView:
    """Pause the product's dispatch: new attempts wait, running ones finish."""
    ops.scoped(product_id)
    request = PauseRequest(reason=(body or PauseIn()).reason, actor=f"api:{ops.key.id}")
    await ops.signal(product_id, SIGNAL_PAUSE, request)
    return await ops.view(product_id)


@router.post("/{product_id}/resume", status_code=202, response_model=BudgetView)
async def resume(product_id: str, ops: BudgetsDep) -> BudgetView:
    """Resume dispatch; waiting jobs start in priority order (a ceiling pause needs a raise)."""
    ops.scoped(product_id)
    await ops.signal(product_id, SIGNAL_RESUME, ResumeRequest(actor=f"api:{ops.key.id}"))
    return await ops.view(product_id)
