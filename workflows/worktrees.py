"""Removing a job's git worktree from a factory, from workflow code (best effort)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from gigafactory.contracts import (
        REMOVE_WORKSPACE,
        RemoveWorkspaceInput,
        factory_ops_task_queue,
    )
    from gigafactory.policies import WORKSPACE_RETRY

__all__ = ["remove_worktree"]

# A factory that is down keeps its worktree: `factory cleanup` removes it once expired.
REMOVE_TIMEOUT = timedelta(seconds=60)


async def remove_worktree(factory_id: str, job_id: str, product_id: str, repo: str) -> None:
    """Remove the job's worktree (and local branch) on `factory_id`; log when it cannot."""
    try:
        await workflow.execute_activity(
            REMOVE_WORKSPACE.name,
            RemoveWorkspaceInput(job_id=job_id, product_id=product_id, repo=repo),
            result_type=REMOVE_WORKSPACE.result_type,
            task_queue=factory_ops_task_queue(factory_id),
            schedule_to_close_timeout=REMOVE_TIMEOUT,
            retry_policy=WORKSPACE_RETRY,
        )
    except ActivityError as err:
        workflow.logger.warning(
            "job %s: worktree on factory %s not removed: %s", job_id, factory_id, err.cause
        )
