"""Attempts: how a job's run on a factory ends.

`finish` records the run and its spend and the job's next stage (one projection write and
one event), raises the budget alert when the run crosses the soft threshold, and frees the
slot, which the dispatcher hands to the best waiting job at once; `withdraw` takes a job
that stopped waiting out of the queue. (A lease is opened by whoever hands the slot over:
`gigafactory.services.dispatch`.)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from gigafactory.contracts import FinishRunInput, WithdrawInput
from gigafactory.services.budgets import BudgetService
from gigafactory.services.dispatch import Dispatcher
from gigafactory.services.factories import FactoryService
from gigafactory.services.jobs import JobService
from gigafactory.services.lifecycle import Lifecycle
from gigafactory.store.fleet_store import FleetStore

__all__ = ["AttemptService"]

logger = logging.getLogger(__name__)


@dataclass
class AttemptService:
    """The attempts of jobs, for the JobWorkflow's activities."""

    store: FleetStore
    lifecycle: Lifecycle
    budgets: BudgetService
    dispatcher: Dispatcher
    jobs: JobService
    factories: FactoryService

    async def finish(self, inp: FinishRunInput) -> None:
        """Record how an attempt ended and the job's next stage; free its slot for the best
        waiting job (on another factory, when this one stopped answering for the run)."""
        recorded = await self.lifecycle.record_run(inp)
        if recorded.new_spend:
            await self.budgets.alert_if_crossed(inp)
        if inp.factory_unresponsive:
            # Before the slot is freed, so the hand-off does not give it to another job.
            at = inp.finished_at
            await self.factories.lease_lost(
                inp.factory_id,
                at,
                # No job id: every role may read a factory, not every job.
                f"lost a run's lease at {at:%H:%M:%S} UTC: {inp.reason or 'no reason given'}",
            )
        await self.dispatcher.release(
            inp.factory_id, inp.job_id, inp.epoch, reason=f"{inp.job_id} ended its run"
        )

    async def stopped(
        self, factory_id: str, job_id: str, product_id: str | None, *, epoch: int
    ) -> None:
        """A factory's agent of lease `epoch` stopped: its slot goes to the next job now,
        before the run's record arrives through the workflow (which frees it too: releasing
        is idempotent)."""
        job = await self.jobs.assigned(factory_id, job_id, product_id, epoch, what="agent stopped")
        await self.dispatcher.release(factory_id, job.id, epoch, reason=f"{job.id} stopped")

    async def log(
        self,
        factory_id: str,
        job_id: str,
        product_id: str | None,
        *,
        epoch: int,
        seq: int,
        text: str,
        agent_stopped: bool = False,
    ) -> None:
        """A factory's log chunk; the last one may say that the agent stopped (its slot
        then goes to the next job at once)."""
        job = await self.jobs.append_log(
            factory_id, job_id, product_id, epoch=epoch, seq=seq, text=text
        )
        if agent_stopped:
            await self.dispatcher.release(factory_id, job.id, epoch, reason=f"{job.id} stopped")

    async def withdraw(self, inp: WithdrawInput) -> None:
        """A queued job stopped waiting: its entry leaves the queue."""
        await self.dispatcher.queue.withdraw(inp.workflow_id)
