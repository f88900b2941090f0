"""ProductControllerWorkflow on the real dev server: admission, spend, pause/resume,
ceiling changes, concurrency, preemption forwarding, continue-as-new and worker restarts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError
from temporalio.worker import Worker

from gigafactory.budgets import (
    AdmissionResult,
    BudgetConfig,
    BudgetState,
    JobFinished,
    LedgerEntry,
    PauseRequest,
    PreemptRequest,
    ProductControllerInput,
    ResumeRequest,
)
from gigafactory.contracts import product_workflow_id
from gigafactory.models import Priority
from tests.budgets.support import StubHandle, StubJobWorkflow, eventually, request, start_stub
from tests.replay.recording import record_history
from workflows.product import ProductControllerWorkflow

pytestmark = pytest.mark.temporal


class Harness:
    """One product's controller plus the stub jobs of a test, cleaned up afterwards."""

    def __init__(self, client: Client, task_queue: str) -> None:
        self.client = client
        self.task_queue = task_queue
        self.product = f"p{uuid.uuid4().hex[:10]}"
        self.handles: list[WorkflowHandle[Any, Any]] = []
        self.controller: WorkflowHandle[Any, Any] = client.get_workflow_handle(
            product_workflow_id(self.product)
        )

    def worker(self) -> Worker:
        return Worker(
            self.client,
            task_queue=self.task_queue,
            workflows=[ProductControllerWorkflow, StubJobWorkflow],
        )

    async def start(
        self, config: BudgetConfig, continue_as_new_after_events: int | None = None
    ) -> WorkflowHandle[ProductControllerWorkflow, None]:
        handle = await self.client.start_workflow(
            ProductControllerWorkflow.run,
            ProductControllerInput(
                product_id=self.product,
                config=config,
                continue_as_new_after_events=continue_as_new_after_events,
            ),
            id=product_workflow_id(self.product),
            task_queue=self.task_queue,
        )
        self.handles.append(handle)
        return handle

    async def stub(self, job: str) -> StubHandle:
        handle = await start_stub(self.client, self.task_queue, f"job-{self.product}-{job}")
        self.handles.append(handle)
        return handle

    async def admit(
        self, job: str, estimate: float = 1.0, priority: Priority = Priority.NORMAL
    ) -> AdmissionResult:
        return await self.controller.execute_update(
            ProductControllerWorkflow.admit, request(self.product, job, estimate, priority)
        )

    async def state(self) -> BudgetState:
        return await self.controller.query(ProductControllerWorkflow.state)

    async def spend(self, run: str, job: str, usd: float) -> None:
        await self.controller.signal(
            ProductControllerWorkflow.record_spend,
            LedgerEntry(run_id=run, job_id=job, usd=usd, at=datetime.now(UTC)),
        )

    async def cleanup(self) -> None:
        for handle in self.handles:
            try:
                await handle.terminate("test over")
            except RPCError:
                pass  # already closed


@pytest.fixture
async def h(client: Client, task_queue: str) -> AsyncIterator[Harness]:
    harness = Harness(client, task_queue)
    try:
        yield harness
    finally:
        await harness.cleanup()


async def admitted(stub: StubHandle) -> list[AdmissionResult]:
    return await asyncio.wait_for(stub.result(), timeout=15)


async def test_admission_under_and_over_the_ceiling(h: Harness) -> None:
    async with h.worker():
        await h.start(BudgetConfig(ceiling_usd=10.0))
        stub_b = await h.stub("b")
        first = await h.admit("a", 6.0)
        assert first.admitted and first.job_id == "a"
        second = await h.admit("b", 6.0)
        assert not second.admitted and second.position == 1
        assert second.reason == (
            "budget: spent $0.00 + reserved $6.00 + estimate $6.00 would exceed the $10.00 ceiling"
        )
        state = await h.state()
        assert state.reservations == {"a": 6.0} and [r.job_id for r in state.waiting] == ["b"]

        # a ends without a recorded spend: its reservation frees room for b.
        await h.controller.signal(ProductControllerWorkflow.job_finished, JobFinished(job_id="a"))
        got = await admitted(stub_b)
        assert [(r.admitted, r.job_id) for r in got] == [(True, "b")]
        state = await h.state()
        assert state.reservations == {"b": 6.0} and state.waiting == []
        assert state.notify == []
        # The Temporal UI shows the budget at a glance.
        meta = await h.controller.query(
            "__temporal_workflow_metadata", result_type=WorkflowMetadata
        )
        assert "| $0.00 | $10.00 | $6.00 | $4.00 | 0 |" in meta.current_details
        assert f"product `{h.product}`: **active**" in meta.current_details


async def test_negative_estimate_is_rejected_by_the_validator(h: Harness) -> None:
    async with h.worker():
        await h.start(BudgetConfig(ceiling_usd=10.0))
        with pytest.raises(WorkflowUpdateFailedError):
            await h.admit("a", -1.0)
        state = await h.state()
        assert state.reservations == {} and state.waiting == []


async def test_duplicated_and_reordered_spend_is_counted_once(h: Harness) -> None:
    async with h.worker():
        await h.start(BudgetConfig(ceiling_usd=100.0))
        assert (await h.admit("a", 5.0)).admitted
        for run, usd in [("a:2", 2.0), ("a:1", 1.5), ("a:2", 2.0), ("a:1", 1.5), ("a:1", 1.5)]:
            await h.spend(run, "a", usd)
        state = await eventually(h.state, lambda s: len(s.ledger) == 2)
        assert state.spent_usd == 3.5
        assert [e.run_id for e in state.ledger] == ["a:2", "a:1"]
        assert state.reservations == {}
        await asyncio.sleep(0.3)  # late duplicates change nothing
        assert (await h.state()).spent_usd == 3.5


async def test_manual_pause_blocks_and_resume_wakes_in_priority_order(h: Harness) -> None:
    async with h.worker():
        await h.start(BudgetConfig(ceiling_usd=2.0))
        await h.controller.signal(
            ProductControllerWorkflow.pause, PauseRequest(reason="release freeze", actor="ops")
        )
        await eventually(h.state, lambda s: s.status == "paused")
        jobs = [("low", Priority.LOW), ("normal", Priority.NORMAL), ("crit", Priority.CRITICAL)]
        stubs = {job: await h.stub(job) for job, _ in jobs}
        for job, priority in jobs:
            result = await h.admit(job, 1.0, priority)
            assert not result.admitted
            assert result.reason == f"product {h.product} paused: release freeze"

        await h.controller.signal(ProductControllerWorkflow.resume, ResumeRequest(actor="ops"))
        # The ceiling fits two: the critical and the normal job, not the low one.
        assert (await admitted(stubs["crit"]))[0].admitted
        assert (await admitted(stubs["normal"]))[0].admitted
        state = await h.state()
        assert state.status == "active"
        assert [r.job_id for r in state.waiting] == ["low"]
        assert sorted(state.reservations) == ["crit", "normal"]
        assert await stubs["low"].query("admissions", result_type=list[AdmissionResult]) == []


async def test_raising_the_ceiling_wakes_a_ceiling_pause(h: Harness) -> None:
    async with h.worker():
        await h.start(BudgetConfig(ceiling_usd=1.0))
        await h.spend("x:1", "x", 1.25)
        state = await eventually(h.state, lambda s: s.status == "paused")
        assert state.paused_reason == "ceiling"
        stub = await h.stub("b")
        waiting = await h.admit("b", 2.0)
        assert not waiting.admitted and waiting.reason is not None
        assert waiting.reason.startswith(f"product {h.product} paused: ceiling $1.00 reached")

        # Resume cannot lift it: spent is over the ceiling.
        await h.controller.signal(ProductControllerWorkflow.resume, ResumeRequest())
        state = await eventually(h.state, lambda s: "raise the ceiling" in (s.reason_text or ""))
        assert state.status == "paused"

        await h.controller.signal(
            ProductControllerWorkflow.set_budget, BudgetConfig(ceiling_usd=5.0)
        )
        assert (await admitted(stub))[0].admitted
        state = await h.state()
        assert state.status == "active" and state.reservations == {"b": 2.0}


async def test_forty_concurrent_admissions_admit_exactly_what_fits(h: Harness) -> None:
    async with h.worker():
        await h.start(BudgetConfig(ceiling_usd=10.0))
        results = await asyncio.gather(*(h.admit(f"j{i}", 1.0) for i in range(40)))
        assert sum(r.admitted for r in results) == 10
        state = await h.state()
        assert state.reserved_usd == 10.0 and len(state.reservations) == 10
        assert len(state.waiting) == 30
        assert sorted(r.position or 0 for r in results if not r.admitted) == list(range(1, 31))


async def test_a_job_that_is_gone_is_dropped_and_preempt_is_forwarded(h: Harness) -> None:
    async with h.worker():
        await h.start(BudgetConfig(ceiling_usd=1.0))
        assert (await h.admit("a", 1.0)).admitted
        assert not (await h.admit("ghost", 1.0)).admitted  # no workflow behind it
        victim = await h.stub("a")
        await h.controller.signal(
            ProductControllerWorkflow.preempt,
            PreemptRequest(
                victim_job_id="a",
                victim_workflow_id=victim.id,
                preemptor_job_id="vip",
                reason="critical job needs the slot",
            ),
        )
        await asyncio.wait_for(victim.result(), timeout=15)
        # Signalling the ghost fails: its reservation must not leak.
        await h.controller.signal(ProductControllerWorkflow.job_finished, JobFinished(job_id="a"))
        state = await eventually(h.state, lambda s: not s.reservations)
        assert state.waiting == [] and state.notify == [] and state.reserved_usd == 0.0


async def test_state_survives_continue_as_new_and_a_worker_restart(h: Harness) -> None:
    async with h.worker():
        started = await h.start(
            BudgetConfig(ceiling_usd=10.0, window="month"), continue_as_new_after_events=12
        )
        assert (await h.admit("a", 4.0)).admitted
        await h.spend("a:1", "a", 3.0)
        assert (await h.admit("b", 5.0)).admitted
        assert not (await h.admit("c", 5.0)).admitted
        await h.controller.signal(ProductControllerWorkflow.pause, PauseRequest(reason="audit"))

        async def run_id() -> str | None:
            return (await h.controller.describe()).run_id

        await eventually(run_id, lambda r: r != started.result_run_id)
        state = await h.state()
        # The first run, which ends in continue-as-new.
        await record_history(
            h.client, "product-continue-as-new", h.controller.id, run_id=started.result_run_id
        )
    before = state.model_dump()
    assert state.spent_usd == 3.0 and state.reservations == {"b": 5.0}
    assert [r.job_id for r in state.waiting] == ["c"]
    assert state.status == "paused" and state.reason_text == "audit"
    assert list(state.counted_runs) == ["a:1"] and state.resets_at is not None

    # A new worker (nothing cached) replays the history and answers the same.
    async with h.worker():
        assert (await h.state()).model_dump() == before
        await h.spend("a:1", "a", 3.0)  # still a duplicate after continue-as-new
        await h.controller.signal(ProductControllerWorkflow.resume, ResumeRequest())
        state = await eventually(h.state, lambda s: s.status == "active")
        assert state.spent_usd == 3.0


async def test_a_busy_controller_keeps_continuing_as_new(h: Harness) -> None:
    """The history bound is carried over, so a controller that keeps admitting keeps its
    history short run after run (a restart replays at most that much)."""
    async with h.worker():
        started = await h.start(BudgetConfig(ceiling_usd=1000.0), continue_as_new_after_events=12)
        runs = {started.result_run_id}
        for n in range(12):
            assert (await h.admit(f"j{n}", 1.0)).admitted
            await h.spend(f"j{n}:1", f"j{n}", 0.5)
            runs.add((await h.controller.describe()).run_id)
        assert len(runs) >= 3, runs  # continued as new more than once
        state = await h.state()
        assert state.spent_usd == 6.0
        assert set(state.counted_runs) == {f"j{n}:1" for n in range(12)}
        history = await h.controller.fetch_history()
        assert len(history.events) <= 12 + 10  # one batch of handlers past the bound at most
