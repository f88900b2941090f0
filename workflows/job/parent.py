"""A DAG parent: its children run as child JobWorkflows in dependency order.

Each child is a full JobWorkflow (routed, locked, preemptible like any job), started as a
child workflow once its dependencies are satisfied (`gigafactory.dag.plan` decides what to
start, block and cancel). Parent close policy REQUEST_CANCEL: a parent that ends early
(cancelled, terminated, timed out) asks its open children to cancel, so nothing runs on for
a parent that is gone.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError, CancelledError, ChildWorkflowError
from temporalio.workflow import ChildWorkflowHandle, ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from gigafactory.contracts import (
        JOB_WORKFLOW,
        RECORD_TRANSITION,
        JobWorkflowInput,
        JobWorkflowResult,
        TransitionInput,
        child_job_id,
        job_workflow_id,
    )
    from gigafactory.dag import FailurePolicy, parent_outcome, plan
    from gigafactory.job_rules import child_stage, children_summary
    from gigafactory.models import ChildSpec, Stage, WaitReason
    from gigafactory.workflow_view import (
        initial_search_attributes,
        temporal_priority,
        workflow_details,
        workflow_summary,
    )

from workflows.job.record import JobRecord, call_local

__all__ = ["ParentStep"]


class ParentStep:
    """Runs a parent's children to their terminal stages; the add-children update feeds it."""

    def __init__(self, record: JobRecord) -> None:
        self.record = record
        self.children: list[ChildSpec] = list(record.inp.spec.children)
        self.stages: dict[str, Stage | None] = {}
        self._tasks: dict[str, asyncio.Task[Stage]] = {}
        self._handles: dict[str, ChildWorkflowHandle[Any, Any]] = {}
        self.open = False
        self._changed = False

    # --- the add-children update --------------------------------------------------------------
    def add(self, children: list[ChildSpec]) -> int:
        """More children (the services validated the whole DAG and wrote their projections)."""
        self.children.extend(children)
        self._changed = True
        return len(self.children)

    def validate_add(self, children: list[ChildSpec]) -> None:
        """Refuse children once the parent no longer runs its children, or duplicate ids."""
        if not self.open:
            raise ApplicationError(
                "the parent is no longer waiting for children: it has finished them, or it "
                "has none (a job becomes a parent only when submitted with children)",
                non_retryable=True,
            )
        known = {c.id for c in self.children}
        if clash := [c.id for c in children if c.id in known]:
            raise ApplicationError(f"duplicate child id {clash[0]!r}", non_retryable=True)

    # --- running the children -----------------------------------------------------------------
    async def run(self) -> bool:
        """Run the children in dependency order; True when the parent may go on to its own
        step (every child as the failure policy wants it)."""
        rec = self.record
        spec = rec.inp.spec
        policy = FailurePolicy(spec.failure_policy, spec.cancel_running_on_failure)
        self.open = True
        try:
            while True:
                self._changed = False
                step = plan(self.children, self.stages, policy)
                for child_id, why in step.block.items():
                    await self._never_started(child_id, Stage.BLOCKED, why)
                for child_id in step.cancel:
                    self._handles[child_id].cancel()
                for child_id in step.start:
                    await self._start(child_id)
                done, total = step.progress
                if step.done:
                    break
                reason = f"children: {done} of {total} done"
                if rec.stage != Stage.WAITING or rec.reason != reason:
                    await rec.transition(Stage.WAITING, wait_reason=WaitReason.DEPS, reason=reason)
                await workflow.wait_condition(
                    lambda: self._changed or any(t.done() for t in self._tasks.values())
                )
                for child_id, task in list(self._tasks.items()):
                    if task.done():
                        self.stages[child_id] = task.result()
                        del self._tasks[child_id]
        finally:
            self.open = False
        outcome, failure = parent_outcome(self.children, self.stages, policy)
        if outcome != Stage.SUCCEEDED:
            await rec.transition(outcome, reason=failure)
            return False
        await rec.transition(Stage.QUEUED, reason=self.summary(), kind="children")
        return True

    def summary(self) -> str:
        return children_summary(self.children, self.stages)

    async def cancel_unstarted(self, why: str) -> None:
        """The parent was cancelled: children never started are cancelled too."""
        for child in self.children:
            if self.stages.get(child.id) is None:
                await self._never_started(child.id, Stage.CANCELLED, why)

    async def _start(self, child_id: str) -> None:
        rec = self.record
        child = next(c for c in self.children if c.id == child_id)
        job_id = child_job_id(rec.job_id, child_id)
        handle = await workflow.start_child_workflow(
            JOB_WORKFLOW,
            JobWorkflowInput(
                job_id=job_id,
                product_id=rec.product_id,
                spec=child.spec,
                timing=rec.inp.timing,
                parent_workflow_id=workflow.info().workflow_id,
            ),
            id=job_workflow_id(rec.product_id, job_id),
            task_queue=workflow.info().task_queue,
            parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
            search_attributes=initial_search_attributes(child.spec),
            static_summary=workflow_summary(job_id, child.spec),
            static_details=workflow_details(job_id, child.spec),
            priority=temporal_priority(child.spec),
            result_type=JobWorkflowResult,
        )
        self._handles[child_id] = handle
        self.stages[child_id] = Stage.QUEUED
        self._tasks[child_id] = asyncio.create_task(_child_end(handle))

    async def _never_started(self, child_id: str, stage: Stage, why: str) -> None:
        """Record a stage for a child that never started (its workflow would otherwise)."""
        rec = self.record
        await call_local(
            RECORD_TRANSITION,
            TransitionInput(
                job_id=child_job_id(rec.job_id, child_id),
                product_id=rec.product_id,
                event_id=str(workflow.uuid4()),
                at=workflow.now(),
                stage=stage,
                reason=why,
            ),
        )
        self.stages[child_id] = stage


async def _child_end(handle: ChildWorkflowHandle[Any, Any]) -> Stage:
    """The child's terminal stage (a cancelled or crashed child workflow included)."""
    try:
        result: JobWorkflowResult = await handle
    except ChildWorkflowError as err:
        return child_stage(None, cancelled=isinstance(err.cause, CancelledError))
    return child_stage(result.stage, cancelled=False)
