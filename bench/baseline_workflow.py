"""The benchmark's bare workflow: run one activity on the given queue, return its result.

Its types and activity are imported through the sandbox's pass-through, as every workflow
of the fleet imports its own, so the baseline pays what a well-made workflow pays.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from bench.baseline import BASELINE_WORKFLOW, BaselineInput, BaselineResult, baseline_activity

__all__ = ["BaselineWorkflow"]


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
