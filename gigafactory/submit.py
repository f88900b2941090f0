"""Submitting a job: the one place a job is created.

The API calls this (the CLI goes through the API). A job is two things that must agree:
its projection in the store and its JobWorkflow in Temporal. The projection is written
first, so the workflow's first transition always finds it; if the workflow cannot be
started, the projection and its event are removed again, so nothing is left half-written.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from datetime import datetime, timedelta

from temporalio.client import Client
from temporalio.common import Priority as TemporalPriority
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from gigafactory.contracts import (
    CONTROL_TASK_QUEUE,
    JOB_WORKFLOW,
    JobTiming,
    JobWorkflowInput,
    job_workflow_id,
)
from gigafactory.models import Event, Job, JobSpec, Priority, Stage
from gigafactory.search_attributes import (
    FLEET_ENGINE,
    FLEET_PRIORITY,
    FLEET_PRODUCT_ID,
    FLEET_STAGE,
)
from gigafactory.store.backend import NotFound
from gigafactory.store.fleet_store import FleetStore

__all__ = [
    "TEMPORAL_PRIORITY_KEY",
    "new_job_id",
    "submit_job",
    "workflow_details",
    "workflow_summary",
]

logger = logging.getLogger(__name__)

# Temporal's task-queue priority: a lower key is served first (1 is the highest).
TEMPORAL_PRIORITY_KEY: dict[Priority, int] = {
    Priority.CRITICAL: 1,
    Priority.HIGH: 2,
    Priority.NORMAL: 3,
    Priority.LOW: 4,
}

_SUMMARY_MAX = 200
_PROMPT_EXCERPT = 600


def new_job_id() -> str:
    """A fresh job id (12 hex digits)."""
    return uuid.uuid4().hex[:12]


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def workflow_summary(job_id: str, spec: JobSpec) -> str:
    """The one-line summary the Temporal UI shows for a job's workflow."""
    what = spec.title or _first_line(spec.prompt)
    return f"{spec.priority.value} {spec.engine} job {job_id} for {spec.product_id}: {what}"[
        :_SUMMARY_MAX
    ]


def _cell(value: object) -> str:
    # Pipes and newlines would break the Markdown table.
    return str(value).replace("|", "\\|").replace("\n", " ")


def workflow_details(job_id: str, spec: JobSpec) -> str:
    """The Markdown details the Temporal UI shows for a job's workflow."""
    rows: list[tuple[str, object]] = [
        ("job", job_id),
        ("product", spec.product_id),
        ("engine", spec.engine),
        ("priority", spec.priority.value),
        ("cwd", spec.cwd),
        ("yolo", spec.yolo),
        ("lock", spec.lock or "-"),
        ("timeout", f"{spec.timeout_s:g}s"),
        ("capabilities", ", ".join(spec.capabilities) or "-"),
        ("labels", ", ".join(f"{k}={v}" for k, v in sorted(spec.labels.items())) or "-"),
        (
            "estimated cost",
            "-" if spec.estimated_cost_usd is None else f"${spec.estimated_cost_usd:.2f}",
        ),
    ]
    if spec.title:
        rows.insert(1, ("title", spec.title))
    table = "\n".join(f"| {name} | {_cell(value)} |" for name, value in rows)
    prompt = spec.prompt
    if len(prompt) > _PROMPT_EXCERPT:
        prompt = prompt[:_PROMPT_EXCERPT] + "\n..."
    return f"| field | value |\n|---|---|\n{table}\n\n**Prompt**\n\n```\n{prompt}\n```\n"


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
    try:
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
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(FLEET_PRODUCT_ID, product_id),
                    SearchAttributePair(FLEET_STAGE, Stage.QUEUED.value),
                    SearchAttributePair(FLEET_PRIORITY, spec.priority.value),
                    SearchAttributePair(FLEET_ENGINE, spec.engine),
                ]
            ),
            static_summary=workflow_summary(job_id, spec),
            static_details=workflow_details(job_id, spec),
            priority=TemporalPriority(priority_key=TEMPORAL_PRIORITY_KEY[spec.priority]),
        )
    except BaseException as err:
        logger.warning("submit of job %s rolled back: %s", workflow_id, err)
        if not isinstance(err, WorkflowAlreadyStartedError):
            # The start may have reached the server before the call failed (a timeout): a
            # workflow with this fresh id can only be ours, so stop it rather than leave it
            # running without its projection.
            await _terminate_quietly(client, workflow_id)
        await _rollback(store, job_id, product_id, event_id)
        raise
    logger.info("submitted job %s (%s)", workflow_id, workflow_summary(job_id, spec))
    return job


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
