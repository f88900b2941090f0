"""The benchmark baseline's activity: note the start time, sleep, return."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from temporalio import activity

from gigafactory.contracts import BaselineInput, BaselineResult
from workflows.baseline import BASELINE_ACTIVITY

__all__ = ["baseline_activity"]


@activity.defn(name=BASELINE_ACTIVITY)
async def baseline_activity(inp: BaselineInput) -> BaselineResult:
    started = datetime.now(UTC)
    if inp.duration_s > 0:
        await asyncio.sleep(inp.duration_s)
    return BaselineResult(started_at=started)
