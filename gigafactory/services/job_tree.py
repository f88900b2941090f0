"""Job DAGs: add children to an open parent, and the subtree view with cost roll-up."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import Field
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError

from gigafactory.contracts import UPDATE_ADD_CHILDREN, AddChildren, child_job_id
from gigafactory.models import TERMINAL_STAGES, ApiKey, CamelModel, ChildSpec, Job
from gigafactory.services.errors import Conflict
from gigafactory.services.jobs import JobService
from gigafactory.services.limits import check_spec_sizes
from gigafactory.services.specs import check_dag, inherited_children
from gigafactory.settings import Settings
from gigafactory.store.backend import NotFound
from gigafactory.store.fleet_store import FleetStore

__all__ = ["DagNode", "JobTreeService"]

_TERMINAL = frozenset(s.value for s in TERMINAL_STAGES)


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


@dataclass
class JobTreeService:
    """Parents and their children."""

    store: FleetStore
    temporal: Client
    settings: Settings
    jobs: JobService

    async def dag(self, key: ApiKey, job_id: str) -> DagNode:
        """The job and its descendants as a tree, each with stage, dependencies, factory,
        cost (its own and rolled up) and times."""
        return await self._node(await self.jobs.get(key, job_id), None)

    async def _node(self, job: Job, child: ChildSpec | None) -> DagNode:
        children: list[DagNode] = []
        for spec in job.spec.children:
            try:
                sub = await self.store.get_job(child_job_id(job.id, spec.id), job.product_id)
            except NotFound:  # added a moment ago and not yet written, or rolled back
                continue
            children.append(await self._node(sub, spec))
        ended = sum(1 for c in children if c.stage in _TERMINAL)
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

    async def add_children(
        self, key: ApiKey, job_id: str, children: Sequence[Mapping[str, Any]]
    ) -> Job:
        """Add children to a parent that is still running its children. The whole DAG is
        validated again, and nothing is created when it is refused.

        Args:
            key: The caller.
            job_id: The parent.
            children: Child fields as submitted (`{id, dependsOn, dependencyKind, spec}`).

        Raises:
            Conflict: the job is not an open parent, or its workflow refused the children.
            InvalidInput: the children break the DAG rules.
            RateLimited: the key submitted more than FLEET_RATE_SUBMIT_* allows.
        """
        self.jobs.rates.submits.take(f"api:{key.id}")
        parent = await self.jobs.get(key, job_id)
        if parent.stage in TERMINAL_STAGES or not parent.spec.children:
            raise Conflict(
                f"job {job_id} is not an open parent (stage {parent.stage.value}, "
                f"{len(parent.spec.children)} children): children can be added while its "
                "children run"
            )
        new = inherited_children(parent.spec, children)
        for child in new:
            check_spec_sizes(self.settings, child.spec, f"children.{child.id}.")
        check_dag(parent.spec, self.settings, children=new, existing=parent.spec.children)
        created = await self.jobs.create_children(parent, new, submitted_by=f"api:{key.id}")

        def extend(job: Job) -> Job:
            job.spec = job.spec.model_copy(update={"children": [*job.spec.children, *new]})
            return job

        try:
            updated = await self.store.update_job(parent.id, parent.product_id, extend)
            await self.temporal.get_workflow_handle(parent.workflow_id).execute_update(
                UPDATE_ADD_CHILDREN, AddChildren(children=new)
            )
        except (WorkflowUpdateFailedError, RPCError) as err:
            await self._undo(parent, new, created)
            message = str(err.cause) if isinstance(err, WorkflowUpdateFailedError) else str(err)
            raise Conflict(f"job {job_id} refused the children: {message}") from None
        except BaseException:
            await self._undo(parent, new, created)
            raise
        return updated

    async def _undo(self, parent: Job, new: list[ChildSpec], created: list[Job]) -> None:
        ids = {c.id for c in new}

        def shrink(job: Job) -> Job:
            kept = [c for c in job.spec.children if c.id not in ids]
            job.spec = job.spec.model_copy(update={"children": kept})
            return job

        await self.store.update_job(parent.id, parent.product_id, shrink)
        await self.jobs.remove_children(created)
