"""The benchmark's baseline: a bare workflow that runs one activity and returns.

It is what a job would cost on Temporal with no control plane at all, measured on the same
server in the same run as the real jobs (`gigafactory bench`). Workflow, activity and their
types live together here because nothing but the benchmark uses them.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from temporalio import activity, workflow

from gigafactory.models import CamelModel

__all__ = [
    "BASELINE_ACTIVITY",
    "BASELINE_WORKFLOW",
    "BaselineInput",
    "BaselineResult",
    "BaselineWorkflow",
    "baseline_activity",
]

BASELINE_WORKFLOW = "BaselineWorkflow"
BASELINE_ACTIVITY = "bench.baseline_activity"


class BaselineInput(CamelModel):
    """One bare job: the activity's task queue and how long it sleeps."""

    task_queue: str
    duration_s: float = 0.0


class BaselineResult(CamelModel):
    """When the baseline activity started (its worker's clock)."""

    started_at: datetime


@activity.defn(name=BASELINE_ACTIVITY)
async def baseline_activity(inp: BaselineInput) -> BaselineResult:
    """Note the start time, sleep, return."""
    started = datetime.now(UTC)
    if inp.duration_s > 0:
        await asyncio.sleep(inp.duration_s)
    return BaselineResult(started_at=started)


@workflow.defn(name=BASELINE_WORKFLOW)
class BaselineWorkflow:
    """Run the one activity on the given queue and return its result."""

    @workflow.run
    async def run(self, inp: BaselineInput) -> BaselineResult:
        return await workflow.execute_activity(
            baseline_activity,
            inp,
            task_queue=inp.task_queue,
            start_to_close_timeout=timedelta(seconds=inp.duration_s + 60),
        )
