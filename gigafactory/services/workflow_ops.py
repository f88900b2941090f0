"""Temporal operations the control plane's workflows cannot do themselves: signal-with-start
a named lock's workflow, and ask whether a workflow is still running."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from gigafactory.contracts import (
    LOCK_WORKFLOW,
    SIGNAL_LOCK_ACQUIRE,
    LockWorkflowInput,
    RequestLockInput,
    lock_workflow_id,
)

__all__ = ["WorkflowOps"]


@dataclass
class WorkflowOps:
    """Lock requests and workflow status, over a Temporal client."""

    temporal: Client
    task_queue: str

    async def request_lock(self, inp: RequestLockInput) -> None:
        """Signal-with-start the lock's workflow (workflows cannot signal-with-start)."""
        await self.temporal.start_workflow(
            LOCK_WORKFLOW,
            LockWorkflowInput(lock=inp.lock),
            id=lock_workflow_id(inp.lock),
            task_queue=self.task_queue,
            start_signal=SIGNAL_LOCK_ACQUIRE,
            start_signal_args=[inp.request],
            static_summary=f"named lock {inp.lock}",
        )

    async def is_open(self, workflow_id: str) -> bool:
        """Whether a workflow is still running (a lock held by a closed one is released)."""
        try:
            description = await self.temporal.get_workflow_handle(workflow_id).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return description.status == WorkflowExecutionStatus.RUNNING
