"""Submitting a job: the one place a job is created.

The API calls this (the CLI goes through the API). A job is two things that must agree:
its projection in the store and its JobWorkflow in Temporal. The projection is written
first, so the workflow's first transition always finds it; if the workflow cannot be
started, the projection and its event are removed again, so nothing is left half-written.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from gigafactory.contracts import (
    CONTROL_TASK_QUEUE,
    JOB_WORKFLOW,
    JobTiming,
    JobWorkflowInput,
    child_job_id,
    job_workflow_id,
)
from gigafactory.models import ChildSpec, Event, Job, JobSpec, Stage, WaitReason
from gigafactory.store.backend import NotFound
from gigafactory.store.fleet_store import FleetStore
from gigafactory.workflow_view import (
    initial_search_attributes,
    new_job_id,
    temporal_priority,
    workflow_details,
    workflow_summary,
)

__all__ = ["create_child_jobs", "new_job_id", "remove_child_jobs", "submit_job"]

logger = logging.getLogger(__name__)


async def submit_job(
    store: FleetStore,
    client: Client,
    spec: JobSpec,
    *,
    submitted_by: str,
    now: datetime,
    parent_id: str | None = None,
    job_id: str | None = None,
    task_queue: str = CONTROL_TASK_QUEUE,
    timing: JobTiming | None = None,
) -> Job:
    """Create a job: its projection (stage queued), its first event and its JobWorkflow.

    Args:
        store: The fleet store.
        client: A Temporal client (pydantic data converter).
        spec: The validated job spec; `spec.product_id` is the job's product.
        submitted_by: The actor recorded on the job and its `queued` event ("api:<keyId>").
        now: The submit time.
        parent_id: The parent job's id, for children of a DAG.
        job_id: A given id (children, tests); a fresh one otherwise.
        task_queue: The control plane's task queue the workflow runs on.
        timing: Lease and re-check timeouts for the workflow (from settings).

    Returns:
        The stored job projection.

    Raises:
        AlreadyExists: a job with this id already exists in the product.
        WorkflowAlreadyStartedError: a workflow with the job's id exists (nothing is kept).
        RPCError: Temporal refused the start (nothing is kept).
        RuntimeError: a lazy client could not connect to Temporal (nothing is kept).
    """
    job_id = job_id or new_job_id()
    product_id = spec.product_id
    workflow_id = job_workflow_id(product_id, job_id)
    job = await store.create_job(
        Job(
            id=job_id,
            product_id=product_id,
            workflow_id=workflow_id,
            spec=spec,
            stage=Stage.QUEUED,
            parent_id=parent_id,
            submitted_by=submitted_by,
            created_at=now,
            updated_at=now,
        )
    )
    # A deterministic id, so the rollback below can find the event again.
    event_id = f"{job_id}.submitted"
    children: list[Job] = []
    try:
        # A parent's children (and theirs) exist from the start, waiting for their turn, so
        # the DAG view is whole at once and every child workflow finds its projection.
        children = await create_child_jobs(store, job, submitted_by=submitted_by, now=now)
        await store.append_event(
            Event(
                id=event_id,
                job_id=job_id,
                product_id=product_id,
                at=now,
                kind="stage",
                actor=submitted_by,
                stage=Stage.QUEUED,
                reason="submitted",
            )
        )
        await client.start_workflow(
            JOB_WORKFLOW,
            JobWorkflowInput(
                job_id=job_id,
                product_id=product_id,
                spec=spec,
                timing=timing or JobTiming(),
            ),
            id=workflow_id,
            task_queue=task_queue,
            # One workflow per job, ever: a job id is never reused for a second run.
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=initial_search_attributes(spec),
            static_summary=workflow_summary(job_id, spec),
            static_details=workflow_details(job_id, spec),
            priority=temporal_priority(spec),
        )
    except BaseException as err:
        logger.warning("submit of job %s rolled back: %s", workflow_id, err)
        if not isinstance(err, WorkflowAlreadyStartedError):
            # The start may have reached the server before the call failed (a timeout): a
            # workflow with this fresh id can only be ours, so stop it rather than leave it
            # running without its projection.
            await _terminate_quietly(client, workflow_id)
        await remove_child_jobs(store, children)
        await _rollback(store, job_id, product_id, event_id)
        raise
    logger.info("submitted job %s (%s)", workflow_id, workflow_summary(job_id, spec))
    return job


async def create_child_jobs(
    store: FleetStore,
    parent: Job,
    *,
    submitted_by: str,
    now: datetime,
    children: Sequence[ChildSpec] | None = None,
) -> list[Job]:
    """Write the projections of a parent's children, and theirs, each `queued` and waiting
    for its dependencies; their workflows are started by the parent's.

    On a failure, what this call wrote is removed again and the error re-raised.

    Returns:
        The jobs written, parents before their children.
    """
    written: list[Job] = []
    try:
        pending = [(parent, list(children if children is not None else parent.spec.children))]
        while pending:
            owner, specs = pending.pop(0)
            for child in specs:
                job_id = child_job_id(owner.id, child.id)
                waits = ", ".join(child.depends_on)
                job = await store.create_job(
                    Job(
                        id=job_id,
                        product_id=owner.product_id,
                        workflow_id=job_workflow_id(owner.product_id, job_id),
                        spec=child.spec,
                        stage=Stage.QUEUED,
                        wait_reason=WaitReason.DEPS,
                        stage_reason=f"waiting for {waits}" if waits else "waiting for its parent",
                        parent_id=owner.id,
                        submitted_by=submitted_by,
                        created_at=now,
                        updated_at=now,
                    )
                )
                written.append(job)
                await store.append_event(
                    Event(
                        id=f"{job_id}.submitted",
                        job_id=job_id,
                        product_id=owner.product_id,
                        at=now,
                        kind="stage",
                        actor=submitted_by,
                        stage=Stage.QUEUED,
                        reason=f"submitted as child {child.id!r} of job {owner.id}",
                    )
                )
                if child.spec.children:
                    pending.append((job, list(child.spec.children)))
    except BaseException:
        await remove_child_jobs(store, written)
        raise
    return written


async def remove_child_jobs(store: FleetStore, jobs: Sequence[Job]) -> None:
    """Undo `create_child_jobs`: remove the projections and their first events."""
    for job in reversed(jobs):
        await _rollback(store, job.id, job.product_id, f"{job.id}.submitted")


async def _terminate_quietly(client: Client, workflow_id: str) -> None:
    try:
        await client.get_workflow_handle(workflow_id).terminate(
            reason="submit rolled back", rpc_timeout=timedelta(seconds=5)
        )
    except Exception as err:  # best effort: usually there is no such workflow (NOT_FOUND)
        logger.debug("rollback of %s: terminate: %s", workflow_id, err)


async def _rollback(store: FleetStore, job_id: str, product_id: str, event_id: str) -> None:
    """Remove the submitted event and the projection; what is already gone is fine."""
    with contextlib.suppress(NotFound):
        # FleetStore has no event deletion (events are append-only for everyone else).
        await store.backend.delete("events", product_id, event_id)
    with contextlib.suppress(NotFound):
        await store.delete_job(job_id, product_id)
