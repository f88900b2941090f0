"""Control-plane activities: the JobWorkflow's hands on the store and on Temporal.

They run on the control-plane worker, next to the workflows, as local activities, and
each is a thin adapter over one service operation (`gigafactory.services`). Every one is
idempotent (deterministic ids, compare-and-set), because Temporal retries them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import activity

from gigafactory.budgets import AdmissionResult
from gigafactory.contracts import (
    BUDGET_ADMIT,
    FINISH_RUN,
    RECORD_SHIP,
    RECORD_TRANSITION,
    REQUEST_LOCK,
    ROUTE_JOB,
    WITHDRAW,
    WORKFLOW_IS_OPEN,
    BudgetAdmitInput,
    FinishRunInput,
    RecordShipInput,
    RequestLockInput,
    RouteInput,
    RouteResult,
    TransitionInput,
    WithdrawInput,
    WorkflowIsOpenInput,
)
from gigafactory.services import Services

__all__ = ["ControlActivities"]


class ControlActivities:
    """Activities of the control-plane worker; built once with the process's services."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def all(self) -> list[Callable[..., Any]]:
        """Every activity, for worker registration."""
        return [
            self.route_job,
            self.record_transition,
            self.finish_run,
            self.withdraw,
            self.request_lock,
            self.workflow_is_open,
            self.budget_admit,
            self.record_ship,
        ]

    @activity.defn(name=ROUTE_JOB.name)
    async def route_job(self, inp: RouteInput) -> RouteResult:
        """Place an attempt: a slot and its lease, a preemption, or the queue."""
        return await self.services.dispatcher.place(inp)

    @activity.defn(name=RECORD_TRANSITION.name)
    async def record_transition(self, inp: TransitionInput) -> None:
        """Move the job's projection and append the event (both idempotent)."""
        await self.services.lifecycle.transition(inp)

    @activity.defn(name=FINISH_RUN.name)
    async def finish_run(self, inp: FinishRunInput) -> None:
        """Record how an attempt ended and the job's next stage; hand its slot on."""
        await self.services.attempts.finish(inp)

    @activity.defn(name=WITHDRAW.name)
    async def withdraw(self, inp: WithdrawInput) -> None:
        """A queued job stopped waiting: its queue entry goes."""
        await self.services.attempts.withdraw(inp)

    @activity.defn(name=RECORD_SHIP.name)
    async def record_ship(self, inp: RecordShipInput) -> None:
        """Record a ship's outcome: the job shipped with what was pushed, or why not."""
        await self.services.shipping.record(inp)

    @activity.defn(name=BUDGET_ADMIT.name)
    async def budget_admit(self, inp: BudgetAdmitInput) -> AdmissionResult:
        """Ask the product's controller (started with the stored budget if missing) to admit."""
        return await self.services.controllers.admit(inp)

    @activity.defn(name=REQUEST_LOCK.name)
    async def request_lock(self, inp: RequestLockInput) -> None:
        """Signal-with-start the lock's workflow (workflows cannot signal-with-start)."""
        await self.services.workflows.request_lock(inp)

    @activity.defn(name=WORKFLOW_IS_OPEN.name)
    async def workflow_is_open(self, inp: WorkflowIsOpenInput) -> bool:
        """Whether a workflow is still running (a lock held by a closed one is released)."""
        return await self.services.workflows.is_open(inp.workflow_id)
