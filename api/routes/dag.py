"""Job DAGs: add children to an open parent, and the subtree view with cost roll-up."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import Field
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from api.deps import CallerDep, ClockDep, SettingsDep, StoreDep, TemporalDep, visible_job
from api.errors import ApiError
from api.routes.jobs import check_dag, job_out
from api.schemas import AddChildrenIn, JobOut
from gigafactory.contracts import UPDATE_ADD_CHILDREN, AddChildren, child_job_id
from gigafactory.jobspec import inherit_child_fields
from gigafactory.models import TERMINAL_STAGES, CamelModel, ChildSpec, Job, JobSpec
from gigafactory.store.backend import NotFound
from gigafactory.store.fleet_store import FleetStore
from gigafactory.submit import create_child_jobs, remove_child_jobs

__all__ = ["router"]

router = APIRouter(prefix="/fleet/jobs", tags=["dag"])


class DagNode(CamelModel):
    """One job of a DAG: its stage, dependencies, factory, cost and times, and its children."""

    id: str
    child_id: str | None = None
    title: str | None = None
    engine: str
    priority: str
    stage: str
    stage_reason: str | None = None
    depends_on: list[str] = Field(default_factory=list)
    dependency_kind: str | None = None
    factory_id: str | None = None
    lease_epoch: int = 0
    cost_usd: float = Field(description="This job's own runs.")
    rollup_cost_usd: float = Field(description="Its runs and every descendant's, failed included.")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    progress: str | None = Field(default=None, description="For a parent: children done of all.")
    children: list[DagNode] = Field(default_factory=list)


async def _node(store: FleetStore, job: Job, child: ChildSpec | None) -> DagNode:
    children: list[DagNode] = []
    for spec in job.spec.children:
        try:
            sub = await store.get_job(child_job_id(job.id, spec.id), job.product_id)
        except NotFound:  # added a moment ago and not yet written, or rolled back
            continue
        children.append(await _node(store, sub, spec))
    ended = sum(1 for c in children if c.stage in {s.value for s in TERMINAL_STAGES})
    return DagNode(
        id=job.id,
        child_id=child.id if child else None,
        title=job.spec.title,
        engine=job.spec.engine,
        priority=job.spec.priority.value,
        stage=job.stage.value,
        stage_reason=job.stage_reason,
        depends_on=list(child.depends_on) if child else [],
        dependency_kind=child.dependency_kind.value if child else None,
        factory_id=job.factory_id,
        lease_epoch=job.lease_epoch,
        cost_usd=job.cost_usd,
        rollup_cost_usd=job.cost_usd + sum(c.rollup_cost_usd for c in children),
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        progress=f"{ended} of {len(children)} done" if children else None,
        children=children,
    )


@router.get("/{job_id}/dag", response_model=DagNode)
async def get_dag(job_id: str, key: CallerDep, store: StoreDep) -> DagNode:
    """The job and its descendants as a tree, each with stage, dependencies, factory, cost
    (its own and rolled up) and times."""
    job = await visible_job(store, key, job_id)
    return await _node(store, job, None)


@router.post("/{job_id}/children", status_code=201, response_model=JobOut)
async def add_children(
    job_id: str,
    body: AddChildrenIn,
    key: CallerDep,
    store: StoreDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> JobOut:
    """Add children to a parent that is still running its children; the whole DAG is
    validated again, and nothing is created when it is refused."""
    parent = await visible_job(store, key, job_id)
    if parent.stage in TERMINAL_STAGES or not parent.spec.children:
        raise ApiError(
            409,
            "conflict",
            f"job {job_id} is not an open parent (stage {parent.stage.value}, "
            f"{len(parent.spec.children)} children): children can be added while its "
            "children run",
        )
    inheritable = parent.spec.model_dump(
        by_alias=True, include={"engine", "cwd", "yolo", "timeout_s", "product_id"}
    )
    fields: dict[str, Any] = {
        **inheritable,
        "prompt": "-",
        "children": [child.as_child() for child in body.children],
    }
    new = JobSpec.model_validate(inherit_child_fields(fields)).children
    check_dag(parent.spec, settings, children=new, existing=parent.spec.children)
    actor = f"api:{key.id}"
    created = await create_child_jobs(store, parent, submitted_by=actor, now=clock(), children=new)

    def extend(job: Job) -> Job:
        job.spec = job.spec.model_copy(update={"children": [*job.spec.children, *new]})
        return job

    try:
        updated = await store.update_job(parent.id, parent.product_id, extend)
        await temporal.get_workflow_handle(parent.workflow_id).execute_update(
            UPDATE_ADD_CHILDREN, AddChildren(children=new)
        )
    except (WorkflowUpdateFailedError, RPCError) as err:
        await _undo(store, parent, new, created)
        message = str(err.cause) if isinstance(err, WorkflowUpdateFailedError) else str(err)
        raise ApiError(409, "conflict", f"job {job_id} refused the children: {message}") from None
    except BaseException:
        await _undo(store, parent, new, created)
        raise
    return job_out(updated)


async def _undo(store: FleetStore, parent: Job, new: list[ChildSpec], created: list[Job]) -> None:
    ids = {c.id for c in new}

    def shrink(job: Job) -> Job:
        kept = [c for c in job.spec.children if c.id not in ids]
        job.spec = job.spec.model_copy(update={"children": kept})
        return job

    await store.update_job(parent.id, parent.product_id, shrink)
    await remove_child_jobs(store, created)
