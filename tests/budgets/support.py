"""Test-only helpers for the controller tests: a stub job workflow and request builders.

The stub stands in for the JobWorkflow in these unit tests of the controller only: it
records the `budget_admitted` and `preempt` signals it gets and ends once admitted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from temporalio import workflow
from temporalio.client import Client, WorkflowHandle

from gigafactory.budgets import (
    SIGNAL_BUDGET_ADMITTED,
    SIGNAL_PREEMPT,
    AdmissionRequest,
    AdmissionResult,
    PreemptRequest,
)
from gigafactory.models import Priority

T = TypeVar("T")


@workflow.defn(name="BudgetStubJobWorkflow", sandboxed=False)
class StubJobWorkflow:
    """Waits for `budget_admitted` (or `preempt`) and returns what it got."""

    def __init__(self) -> None:
        self.admissions: list[AdmissionResult] = []
        self.preempts: list[PreemptRequest] = []

    @workflow.signal(name=SIGNAL_BUDGET_ADMITTED)
    def budget_admitted(self, result: AdmissionResult) -> None:
        self.admissions.append(result)

    @workflow.signal(name=SIGNAL_PREEMPT)
    def preempt(self, req: PreemptRequest) -> None:
        self.preempts.append(req)

    @workflow.query(name="admissions")
    def get_admissions(self) -> list[AdmissionResult]:
        return self.admissions

    @workflow.run
    async def run(self) -> list[AdmissionResult]:
        await workflow.wait_condition(lambda: bool(self.admissions or self.preempts))
        return self.admissions


StubHandle = WorkflowHandle[StubJobWorkflow, list[AdmissionResult]]


async def start_stub(client: Client, task_queue: str, workflow_id: str) -> StubHandle:
    return await client.start_workflow(StubJobWorkflow.run, id=workflow_id, task_queue=task_queue)


def request(
    product: str,
    job: str,
    estimate: float = 1.0,
    priority: Priority = Priority.NORMAL,
) -> AdmissionRequest:
    return AdmissionRequest(
        job_id=job,
        workflow_id=f"job-{product}-{job}",
        priority=priority,
        estimate_usd=estimate,
        requested_at=datetime.now(UTC),
    )


async def eventually(
    probe: Callable[[], Awaitable[T]], check: Callable[[T], bool], timeout: float = 10.0
) -> T:
    """Poll `probe()` until `check` holds on its value; fail with the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached in {timeout}s; last value: {value!r}")
        await asyncio.sleep(0.05)
