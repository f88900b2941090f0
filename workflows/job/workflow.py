"""JobWorkflow: one job, from its children (a DAG parent) and its own step to a terminal
stage. This module holds its signal, update and query handlers and the order of its parts:

- `workflows.job.parent`: the children, in dependency order;
- `workflows.job.leaf`: the job's own step (lock, budget, routing, attempts);
- `workflows.job.record`: its state and how a stage change is recorded;
- `gigafactory.job_rules`: the pure decision rules, unit-tested.

Every store write is a local activity (fast, few history events); the workflow is the one
writer of its job's stage, so the projection, the events and the search attributes agree.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from gigafactory.budgets import (
        SIGNAL_BUDGET_ADMITTED,
        SIGNAL_PREEMPT,
        AdmissionResult,
        PreemptRequest,
    )
    from gigafactory.contracts import (
        JOB_WORKFLOW,
        QUERY_STATUS,
        SIGNAL_LOCK_GRANTED,
        SIGNAL_SLOT_GRANTED,
        UPDATE_ADD_CHILDREN,
        AddChildren,
        JobStatus,
        JobWorkflowInput,
        JobWorkflowResult,
        LockGranted,
        SlotGrant,
    )
    from gigafactory.models import Stage

from workflows.job.leaf import LeafStep
from workflows.job.parent import ParentStep
from workflows.job.record import JobRecord, despite_cancel

__all__ = ["JobWorkflow"]


@workflow.defn(name=JOB_WORKFLOW)
class JobWorkflow:
    """Runs one job to a terminal stage."""

    @workflow.init
    def __init__(self, inp: JobWorkflowInput) -> None:
        # Built from the input before any handler runs, so an early signal finds its state.
        self.record = JobRecord(inp)
        self.parent = ParentStep(self.record)
        self.leaf = LeafStep(self.record)

    # --- signals, updates, queries ------------------------------------------------------------
    @workflow.signal(name=SIGNAL_SLOT_GRANTED)
    def slot_granted(self, grant: SlotGrant) -> None:
        """A dispatcher handed the queued job a slot and opened its next lease (a repeated
        or outdated grant is ignored)."""
        rec = self.record
        if rec.awaiting_grant and rec.grant is None and grant.epoch == rec.epoch + 1:
            rec.grant = grant

    @workflow.signal(name=SIGNAL_LOCK_GRANTED)
    def lock_granted(self, grant: LockGranted) -> None:
        """The LockWorkflow gave us the lock."""
        self.record.lock_granted = True

    @workflow.signal(name=SIGNAL_BUDGET_ADMITTED)
    def budget_admitted(self, result: AdmissionResult) -> None:
        """The product's controller admitted the waiting attempt (resume, raise, reset)."""
        self.record.budget_admitted = True

    @workflow.signal(name=SIGNAL_PREEMPT)
    def preempt(self, req: PreemptRequest) -> None:
        """A more urgent job takes this one's slot: stop the agent, keep its checkpoint,
        requeue under the next lease epoch (ignored when no attempt is in flight)."""
        rec = self.record
        if rec.stage in (Stage.DISPATCHED, Stage.RUNNING) and rec.preempt is None:
            rec.preempt = req

    @workflow.update(name=UPDATE_ADD_CHILDREN)
    def add_children(self, inp: AddChildren) -> int:
        """More children for an open parent (the services validated the DAG and wrote them)."""
        return self.parent.add(inp.children)

    @add_children.validator
    def _validate_add_children(self, inp: AddChildren) -> None:
        self.parent.validate_add(inp.children)

    @workflow.query(name=QUERY_STATUS)
    def status(self) -> JobStatus:
        """The workflow's own view of the job."""
        rec = self.record
        return JobStatus(
            job_id=rec.job_id,
            stage=rec.stage,
            wait_reason=rec.wait_reason,
            reason=rec.reason,
            lease_epoch=rec.epoch,
            factory_id=rec.factory_id,
        )

    # --- main ---------------------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: JobWorkflowInput) -> JobWorkflowResult:
        rec = self.record
        try:
            if inp.spec.children:
                if not await self.parent.run():
                    return self._result()
                if not inp.spec.prompt.strip():
                    await rec.transition(Stage.SUCCEEDED, reason=self.parent.summary())
                    return self._result()
            await self.leaf.run()
        except asyncio.CancelledError:
            await despite_cancel(lambda: self.parent.cancel_unstarted("parent cancelled"))
            if rec.stage != Stage.CANCELLED:  # an attempt may have recorded it already
                await despite_cancel(lambda: rec.transition(Stage.CANCELLED, reason="cancelled"))
            await despite_cancel(self.leaf.remove_worktrees)
            raise
        finally:
            await self.leaf.clean_up()
            await workflow.wait_condition(workflow.all_handlers_finished)
        return self._result()

    def _result(self) -> JobWorkflowResult:
        rec = self.record
        return JobWorkflowResult(
            job_id=rec.job_id,
            product_id=rec.product_id,
            stage=rec.stage,
            reason=rec.reason,
            lease_epoch=rec.epoch,
            factory_id=rec.factory_id,
            exit_code=rec.exit_code,
            cost_usd=rec.cost_usd,
        )
