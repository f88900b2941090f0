"""ShipWorkflow: push a succeeded job's branch from a factory, record it, drop the worktree.

Started by `gigafactory.services.shipping` (id `ship-<productId>-<jobId>`). The push runs on
the factory's workspace-operations queue, so it does not wait for a free agent slot; the
worktree is removed once the job is recorded shipped. A
refused push (or a factory that never picked the ship up) is recorded as an event and
returned, not raised: the job stays succeeded and the operator may ship again.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError

with workflow.unsafe.imports_passed_through():
    from gigafactory.contracts import (
        RECORD_SHIP,
        SHIP_BRANCH,
        SHIP_WORKFLOW,
        RecordShipInput,
        ShipBranchInput,
        ShipWorkflowInput,
        ShipWorkflowResult,
        factory_ops_task_queue,
    )
    from gigafactory.models import Shipment
    from gigafactory.policies import WORKSPACE_RETRY

from workflows.job.record import call_local
from workflows.worktrees import remove_worktree

__all__ = ["ShipWorkflow"]


@workflow.defn(name=SHIP_WORKFLOW)
class ShipWorkflow:
    """Ships one job's branch once."""

    @workflow.run
    async def run(self, inp: ShipWorkflowInput) -> ShipWorkflowResult:
        queue = factory_ops_task_queue(inp.factory_id)
        try:
            pushed = await workflow.execute_activity(
                SHIP_BRANCH.name,
                ShipBranchInput(
                    job_id=inp.job_id,
                    product_id=inp.product_id,
                    repo=inp.repo,
                    commit=inp.commit,
                    title=inp.title,
                ),
                result_type=SHIP_BRANCH.result_type,
                task_queue=queue,
                schedule_to_start_timeout=timedelta(seconds=inp.pickup_timeout_s),
                start_to_close_timeout=timedelta(seconds=inp.push_timeout_s),
                retry_policy=WORKSPACE_RETRY,
            )
        except ActivityError as err:
            reason = _refusal(err, inp)
            await call_local(RECORD_SHIP, self._record(inp, refused=reason))
            return ShipWorkflowResult(shipped=False, reason=reason)
        shipment = Shipment(
            branch=pushed.branch,
            commit=pushed.commit,
            remote=pushed.remote,
            factory_id=inp.factory_id,
            at=workflow.now(),
            url=pushed.url,
            output=pushed.output,
        )
        await call_local(RECORD_SHIP, self._record(inp, shipment=shipment))
        await remove_worktree(inp.factory_id, inp.job_id, inp.product_id, inp.repo)
        return ShipWorkflowResult(shipped=True, shipment=shipment)

    @staticmethod
    def _record(
        inp: ShipWorkflowInput, *, shipment: Shipment | None = None, refused: str | None = None
    ) -> RecordShipInput:
        return RecordShipInput(
            job_id=inp.job_id,
            product_id=inp.product_id,
            actor=inp.actor,
            note=inp.note,
            at=workflow.now(),
            event_id=str(workflow.uuid4()),
            shipment=shipment,
            refused=refused,
        )


def _refusal(err: ActivityError, inp: ShipWorkflowInput) -> str:
    """Why the push did not happen, in words an operator can act on."""
    cause = err.cause
    if isinstance(cause, TimeoutError):
        return (
            f"factory {inp.factory_id} did not pick the ship up within "
            f"{inp.pickup_timeout_s:g}s or did not finish the push within {inp.push_timeout_s:g}s"
        )
    if isinstance(cause, ApplicationError):
        return cause.message
    return str(cause or err)
