"""Per-product budgets: the settings, where a product stands, pause and resume, and the
soft-threshold alert.

Operators only, and product-scoped. The settings are stored (so a controller started
later, or after a restart, gets them) and sent to the product's controller workflow with
signal-with-start. Every figure comes from the rules of `gigafactory.budgets`, whether it
is the controller's live state or the ledger replayed (budgets off, or no controller
yet), so the view and the controller never disagree. With `FLEET_BUDGETS` off nothing
waits, pauses or alerts: the view says `enforced: false`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import Field
from temporalio.service import RPCError

from gigafactory.budgets import (
    SIGNAL_PAUSE,
    SIGNAL_RESUME,
    SIGNAL_SET_BUDGET,
    BudgetConfig,
    BudgetState,
    LedgerEntry,
    PauseRequest,
    ResumeRequest,
    crosses_soft_threshold,
    ledger_state,
    overspent_usd,
    remaining_usd,
)
from gigafactory.contracts import FinishRunInput
from gigafactory.models import ApiKey, CamelModel, Role, SpendRecord, StoredBudget
from gigafactory.services.access import require_product, require_role
from gigafactory.services.audit import AuditLog
from gigafactory.services.clock import Clock
from gigafactory.services.controller import ControllerClient
from gigafactory.services.errors import Conflict, temporal_unreachable
from gigafactory.services.lifecycle import Lifecycle, run_id
from gigafactory.settings import Settings
from gigafactory.store.fleet_store import FleetStore

__all__ = ["BudgetService", "BudgetView"]

logger = logging.getLogger(__name__)

_LEDGER_SHOWN = 20
# The most ledger entries one window's figures are summed from.
_LEDGER_WINDOW_MAX = 10_000


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
    note: str | None = Field(
        default=None, description="Why the figures are not the controller's, when they should be."
    )
    ledger: list[dict[str, Any]] = Field(default_factory=list)


def _entry(record: SpendRecord) -> LedgerEntry:
    return LedgerEntry(
        run_id=record.id, **record.model_dump(include={"job_id", "usd", "estimated", "at"})
    )


@dataclass
class BudgetService:
    """Budgets of products."""

    store: FleetStore
    settings: Settings
    controllers: ControllerClient
    lifecycle: Lifecycle
    clock: Clock
    audit: AuditLog

    def _scoped(self, key: ApiKey, product_id: str) -> None:
        require_role(key, Role.OPERATOR, "budgets")
        require_product(key, product_id)

    def _enforced(self, doing: str) -> None:
        if not self.settings.budgets:
            raise Conflict(
                f"budgets are not enforced (FLEET_BUDGETS is off): {doing} a product would "
                "change nothing; turn FLEET_BUDGETS on first"
            )

    async def _ledger_state(self, product_id: str, config: BudgetConfig) -> BudgetState:
        records = await self.store.list_spend(product_id, limit=_LEDGER_WINDOW_MAX)
        return ledger_state(product_id, config, [_entry(r) for r in records], self.clock())

    async def view(self, key: ApiKey, product_id: str) -> BudgetView:
        """Spent, reserved, remaining, status and why, the window, the last ledger entries."""
        self._scoped(key, product_id)
        return await self._view(product_id)

    async def list_views(self, key: ApiKey) -> list[BudgetView]:
        """The budget of every product the key may see."""
        require_role(key, Role.OPERATOR, "budgets")
        products = [p for p in await self.store.list_products() if key.may_see(p)]
        return [await self._view(p) for p in products]

    async def _view(self, product_id: str) -> BudgetView:
        ledger = await self.store.list_spend(product_id, limit=_LEDGER_SHOWN)
        shown = [r.model_dump(by_alias=True, mode="json") for r in ledger]
        state: BudgetState | None = None
        note = None
        if self.settings.budgets:
            try:
                state = await self.controllers.state(product_id)
            except (RPCError, RuntimeError) as err:
                if not temporal_unreachable(err):
                    raise
                logger.warning("budget view of %s: Temporal unreachable: %s", product_id, err)
                note = (
                    "Temporal is unreachable: spent is replayed from the ledger; the "
                    "controller's pause, reservations and waiting jobs are unknown"
                )
        source = "controller"
        if state is None:
            # Not enforced, or no controller yet: the ledger replayed by the same rules.
            config = await self.controllers.stored_config(product_id)
            state = await self._ledger_state(product_id, config)
            source = "store"
        enforced = self.settings.budgets
        return BudgetView(
            product_id=product_id,
            enforced=enforced,
            config=state.config,
            spent_usd=state.spent_usd,
            reserved_usd=state.reserved_usd,
            remaining_usd=remaining_usd(state),
            overspent_usd=overspent_usd(state),
            status=state.status if enforced else "active",
            reason=state.reason_text if enforced else None,
            soft_alert=state.soft_alerted,
            window_started_at=state.window_started_at,
            resets_at=state.resets_at,
            waiting=len(state.waiting),
            source=source,
            note=note,
            ledger=shown,
        )

    async def set(self, key: ApiKey, product_id: str, config: BudgetConfig) -> BudgetView:
        """Set the ceiling, window and soft threshold; a raised ceiling admits waiting jobs."""
        data = {"config": config.model_dump(mode="json", by_alias=True)}
        async with self.audit.product_action(key, "budget.set", product_id, data=data):
            self._scoped(key, product_id)
            await self.store.put_budget(
                StoredBudget(
                    product_id=product_id,
                    config=config.model_dump(by_alias=True),
                    updated_at=self.clock(),
                    updated_by=f"api:{key.id}",
                )
            )
            await self.store.touch_product(product_id, self.clock())
            if self.settings.budgets:
                # Off, the settings wait in the store for a controller started once it is on.
                await self.controllers.signal(product_id, SIGNAL_SET_BUDGET, config)
        return await self._view(product_id)

    async def pause(self, key: ApiKey, product_id: str, reason: str) -> BudgetView:
        """Pause the product's dispatch: new attempts wait, running ones finish."""
        async with self.audit.product_action(key, "budget.pause", product_id, reason=reason):
            self._scoped(key, product_id)
            self._enforced("pausing")
            request = PauseRequest(reason=reason, actor=f"api:{key.id}")
            await self.controllers.signal(product_id, SIGNAL_PAUSE, request)
        return await self._view(product_id)

    async def resume(self, key: ApiKey, product_id: str) -> BudgetView:
        """Resume dispatch; waiting jobs start in priority order (a ceiling pause needs a
        raise)."""
        async with self.audit.product_action(key, "budget.resume", product_id):
            self._scoped(key, product_id)
            self._enforced("resuming")
            await self.controllers.signal(
                product_id, SIGNAL_RESUME, ResumeRequest(actor=f"api:{key.id}")
            )
        return await self._view(product_id)

    async def alert_if_crossed(self, inp: FinishRunInput) -> None:
        """Record a `budget_alert` event on the job whose run crossed the product's soft
        threshold (only where budgets are enforced for the job)."""
        if not inp.budgets_enforced or inp.cost_usd <= 0:
            return
        config = await self.controllers.stored_config(inp.product_id)
        if not config.ceiling_usd:
            return
        rid = run_id(inp.job_id, inp.epoch)
        records = await self.store.list_spend(inp.product_id, limit=_LEDGER_WINDOW_MAX)
        before = ledger_state(
            inp.product_id,
            config,
            [_entry(r) for r in records if r.id != rid],
            inp.finished_at,
        )
        entry = LedgerEntry(
            run_id=rid, job_id=inp.job_id, usd=inp.cost_usd, estimated=inp.cost_estimated,
            at=inp.finished_at,
        )  # fmt: skip
        if not crosses_soft_threshold(before, entry):
            return
        spent = before.spent_usd + inp.cost_usd
        ceiling = config.ceiling_usd
        await self.lifecycle.record_event(
            inp.job_id,
            inp.product_id,
            kind="budget_alert",
            actor="control",
            at=inp.finished_at,
            reason=(
                f"product {inp.product_id} has spent ${spent:.2f} of its ${ceiling:.2f} "
                f"ceiling ({spent / ceiling:.0%}; soft threshold {config.soft_threshold:.0%})"
            ),
            data={"spentUsd": spent, "ceilingUsd": ceiling},
            event_id=f"{inp.job_id}.{inp.epoch}.budget-alert",
        )
