"""Attempts: a job's runs on factories, from the slot it holds to the run it records.

`begin` opens a lease epoch (older reports are fenced from then on); `finish` records the
run and its spend, raises the budget alert when the run crosses the soft threshold, frees
the slot and wakes the jobs waiting for one; `fence` records a stale report.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from gigafactory.contracts import BeginAttemptInput, FenceInput, FinishRunInput
from gigafactory.services.budgets import BudgetService
from gigafactory.services.errors import Fenced
from gigafactory.services.lifecycle import Lifecycle
from gigafactory.services.waiting import WaitingJobs
from gigafactory.store.fleet_store import FleetStore

__all__ = ["AttemptService"]

logger = logging.getLogger(__name__)


@dataclass
class AttemptService:
    """The attempts of jobs, for the JobWorkflow's activities."""

    store: FleetStore
    lifecycle: Lifecycle
    budgets: BudgetService
    waiting: WaitingJobs

    async def begin(self, inp: BeginAttemptInput) -> None:
        """Open lease `inp.epoch` on the routed factory."""
        await self.lifecycle.begin_attempt(inp)

    async def finish(self, inp: FinishRunInput) -> None:
        """Record how an attempt ended, free its slot and wake jobs waiting for one."""
        recorded = await self.lifecycle.record_run(inp)
        if recorded.new_spend:
            await self.budgets.alert_if_crossed(inp)
        if await self.store.release_slot(inp.factory_id, inp.job_id, inp.epoch):
            # One slot freed: wake the best two waiting jobs (a spare in case the first
            # no longer fits); a job missed here re-routes on its recheck timer.
            await self.waiting.wake(f"slot freed on {inp.factory_id}", limit=2)

    async def fence(self, inp: FenceInput) -> None:
        """Record a stale report (counted, with a `fenced` event)."""
        try:
            await self.lifecycle.check_report(
                inp.job_id, inp.product_id, inp.epoch, actor=inp.actor, what=inp.what, at=inp.at
            )
        except Fenced:
            pass
