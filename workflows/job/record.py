"""A JobWorkflow's own state and its bookkeeping: typed local-activity calls, and the one
way its stage changes (projection and event in the store, search attributes, UI details).

Shared by the leaf attempts, the DAG parent and the signal handlers of one workflow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from temporalio import workflow
from temporalio.exceptions import ActivityError, CancelledError

with workflow.unsafe.imports_passed_through():
    from gigafactory.budgets import PreemptRequest
    from gigafactory.contracts import (
        RECORD_TRANSITION,
        ActivityDef,
        JobWorkflowInput,
        SlotGrant,
        TransitionInput,
    )
    from gigafactory.job_rules import FINAL_STAGES, stage_label
    from gigafactory.models import CamelModel, Stage, WaitReason
    from gigafactory.policies import (
        CONTROL_RETRY,
        CONTROL_SCHEDULE_TO_CLOSE,
        CONTROL_START_TO_CLOSE,
    )
    from gigafactory.search_attributes import FLEET_FACTORY_ID, FLEET_STAGE

__all__ = ["JobRecord", "call_local", "despite_cancel"]

InT = TypeVar("InT", bound=CamelModel)
OutT = TypeVar("OutT")


async def call_local(defn: ActivityDef[InT, OutT], arg: InT) -> OutT:
    """Run a control-plane activity as a local activity, typed by its definition.

    A workflow cancel that lands while a local activity is in flight surfaces as "Local
    Activity cancelled", not as CancelledError: it is turned into one, so the cancellation
    path (record `cancelled`, free the lock) runs.
    """
    result_type: type | None = defn.result_type
    try:
        result = await workflow.execute_local_activity(
            defn.name,
            arg,
            result_type=None if result_type is type(None) else result_type,
            start_to_close_timeout=CONTROL_START_TO_CLOSE,
            schedule_to_close_timeout=CONTROL_SCHEDULE_TO_CLOSE,
            retry_policy=CONTROL_RETRY,
        )
    except ActivityError as err:
        if isinstance(err.cause, CancelledError):
            raise asyncio.CancelledError() from err
        raise
    return cast(OutT, result)


async def despite_cancel(step: Callable[[], Awaitable[None]], attempts: int = 3) -> None:
    """Run a clean-up step after the workflow was cancelled, even if a cancellation reaches
    the step too (a second cancel request, or one that raced the first step's activity)."""
    for attempt in range(attempts):
        try:
            await step()
            return
        except asyncio.CancelledError:
            if attempt == attempts - 1:
                raise


@dataclass
class JobRecord:
    """What one JobWorkflow knows of its job, and how it records a change of stage."""

    inp: JobWorkflowInput
    stage: Stage = Stage.QUEUED
    wait_reason: WaitReason | None = None
    reason: str | None = None
    epoch: int = 0
    factory_id: str | None = None
    cost_usd: float = 0.0
    exit_code: int | None = None
    # Factories an attempt of a job with a repository ran on (each may hold its worktree).
    worktree_factories: list[str] = field(default_factory=list)
    # Signals that the main coroutine waits for.
    grant: SlotGrant | None = None
    awaiting_grant: bool = False
    lock_granted: bool = False
    budget_admitted: bool = False
    preempt: PreemptRequest | None = None
    # Serialises transitions between the main coroutine and async signal handlers.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.epoch = self.inp.lease_epoch

    @property
    def job_id(self) -> str:
        return self.inp.job_id

    @property
    def product_id(self) -> str:
        return self.inp.product_id

    async def transition(
        self,
        stage: Stage,
        *,
        reason: str | None,
        wait_reason: WaitReason | None = None,
        epoch: int | None = None,
        kind: str = "stage",
        data: dict[str, Any] | None = None,
    ) -> None:
        """Move the job to `stage`: projection and event (store), search attributes, UI."""
        async with self.lock:
            await call_local(
                RECORD_TRANSITION,
                TransitionInput(
                    job_id=self.job_id,
                    product_id=self.product_id,
                    event_id=str(workflow.uuid4()),
                    at=workflow.now(),
                    stage=stage,
                    wait_reason=wait_reason,
                    reason=reason,
                    epoch=epoch if epoch is not None else (self.epoch or None),
                    factory_id=self.factory_id,
                    cost_usd=self.cost_usd if stage in FINAL_STAGES else None,
                    exit_code=self.exit_code if stage in FINAL_STAGES else None,
                    kind=kind,
                    data=data or {},
                ),
            )
            self.show(stage, wait_reason, reason)

    def show(self, stage: Stage, wait_reason: WaitReason | None, reason: str | None) -> None:
        """The stage as the workflow holds it and as the Temporal UI shows it."""
        self.stage = stage
        self.wait_reason = wait_reason
        self.reason = reason
        workflow.upsert_search_attributes(
            [
                FLEET_STAGE.value_set(stage.value),
                FLEET_FACTORY_ID.value_set(self.factory_id or ""),
            ]
        )
        workflow.set_current_details(
            f"**{stage_label(stage, wait_reason)}** — {reason or ''}\n\n"
            f"lease epoch {self.epoch}, factory {self.factory_id or '-'}, "
            f"cost ${self.cost_usd:.4f}"
        )
