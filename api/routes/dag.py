"""Job DAGs: add children to an open parent, and the subtree view with cost roll-up."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CallerDep, ServicesDep
from api.schemas import AddChildrenIn, JobOut
from gigafactory.services.job_tree import DagNode

__all__ = ["router"]

router = APIRouter(prefix="/fleet/jobs", tags=["dag"])


@router.get("/{job_id}/dag", response_model=DagNode)
async def get_dag(job_id: str, key: CallerDep, services: ServicesDep) -> DagNode:
    """The job and its descendants as a tree, each with stage, dependencies, factory, cost
    (its own and rolled up) and times."""
    return await services.tree.dag(key, job_id)


@router.post("/{job_id}/children", status_code=201, response_model=JobOut)
async def add_children(
    job_id: str, body: AddChildrenIn, key: CallerDep, services: ServicesDep
) -> JobOut:
    """Add children to a parent that is still running its children; the whole DAG is
    validated again, and nothing is created when it is refused."""
    children = [child.as_child() for child in body.children]
    return JobOut.of(await services.tree.add_children(key, job_id, children))
