"""Moving a job's projection directly, as its workflow would, for tests with no worker."""

from __future__ import annotations

from typing import Any

from gigafactory.models import Job
from gigafactory.store import FleetStore

__all__ = ["set_job"]


async def set_job(store: FleetStore, job_id: str, **changes: Any) -> Job:
    """Set fields of a job's projection (compare-and-set, as every writer does)."""
    job = await store.get_job(job_id)

    def mutate(j: Job) -> Job:
        for name, value in changes.items():
            setattr(j, name, value)
        return j

    return await store.update_job(job_id, job.product_id, mutate)
