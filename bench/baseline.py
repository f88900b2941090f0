"""The benchmark's baseline: the types and the activity of a bare workflow
(`bench.baseline_workflow`) that runs one activity and returns.

It is what a job would cost on Temporal with no control plane at all, measured on the same
server in the same run as the real jobs (`gigafactory bench`).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from temporalio import activity

from gigafactory.models import CamelModel

__all__ = [
    "BASELINE_ACTIVITY",
    "BASELINE_WORKFLOW",
    "BaselineInput",
    "BaselineResult",
    "baseline_activity",
]

BASELINE_WORKFLOW = "BaselineWorkflow"
BASELINE_ACTIVITY = "bench.baseline_activity"


class BaselineInput(CamelModel):
    """One bare job: the activity's task queue and how long it sleeps."""

    task_queue: str
    duration_s: float = 0.0


class BaselineResult(CamelModel):
    """When the baseline activity started and finished (its worker's clock)."""

    started_at: datetime
    finished_at: datetime


@activity.defn(name=BASELINE_ACTIVITY)
async def baseline_activity(inp: BaselineInput) -> BaselineResult:
    """Note the start time, sleep, return."""
    started = datetime.now(UTC)
    if inp.duration_s > 0:
        await asyncio.sleep(inp.duration_s)
    return BaselineResult(started_at=started, finished_at=datetime.now(UTC))
