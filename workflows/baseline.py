"""The benchmark's baseline: a bare workflow that runs one activity and returns.

It is what a job would cost on Temporal with no control plane at all, measured on the same
server in the same run as the real jobs (`gigafactory bench`).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from gigafactory.contracts import BaselineInput, BaselineResult

__all__ = ["BASELINE_ACTIVITY", "BaselineWorkflow"]

BASELINE_ACTIVITY = "bench.baseline_activity"


@workflow.defn(name="BaselineWorkflow")
class BaselineWorkflow:
    @workflow.run
    async def run(self, inp: BaselineInput) -> BaselineResult:
        result: BaselineResult = await workflow.execute_activity(
            BASELINE_ACTIVITY,
            inp,
            result_type=BaselineResult,
            task_queue=inp.task_queue,
            start_to_close_timeout=timedelta(seconds=inp.duration_s + 60),
        )
        return result
