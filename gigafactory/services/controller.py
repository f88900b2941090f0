"""A product's controller workflow, seen from outside workflows (API, activities): started
with the stored budget when it is missing, then signalled, updated or queried."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from gigafactory.budgets import (
    QUERY_BUDGET_STATE,
    UPDATE_ADMIT,
    AdmissionRequest,
    AdmissionResult,
    BudgetConfig,
    BudgetState,
    ProductControllerInput,
)
from gigafactory.contracts import (
    PRODUCT_CONTROLLER_WORKFLOW,
    BudgetAdmitInput,
    product_workflow_id,
)
from gigafactory.store.fleet_store import FleetStore

__all__ = ["ControllerClient", "controller_summary"]


def controller_summary(product_id: str) -> str:
    """The Temporal UI's one line for a product's controller."""
    return f"budget controller of product {product_id}"


@dataclass
class ControllerClient:
    """Signals, updates and queries of product controllers, starting them when missing."""

    store: FleetStore
    temporal: Client
    task_queue: str
    # A controller continues as new at this many history events (FLEET_BUDGET_CONTROLLER_
    # MAX_EVENTS), so that replaying it after a restart stays short however busy it is.
    max_events: int | None = None

    async def stored_config(self, product_id: str) -> BudgetConfig:
        """The product's budget as operators set it (the defaults: no ceiling)."""
        stored = await self.store.get_budget(product_id)
        return BudgetConfig.model_validate(stored.config) if stored else BudgetConfig()

    def _start_input(self, product_id: str, config: BudgetConfig) -> ProductControllerInput:
        return ProductControllerInput(
            product_id=product_id, config=config, continue_as_new_after_events=self.max_events
        )

    async def signal(self, product_id: str, signal: str, arg: Any) -> None:
        """Signal the product's controller, starting it (with the stored budget) if missing."""
        config = await self.stored_config(product_id)
        await self.temporal.start_workflow(
            PRODUCT_CONTROLLER_WORKFLOW,
            self._start_input(product_id, config),
            id=product_workflow_id(product_id),
            task_queue=self.task_queue,
            start_signal=signal,
            start_signal_args=[arg],
            static_summary=controller_summary(product_id),
        )

    async def admit(self, inp: BudgetAdmitInput) -> AdmissionResult:
        """Ask the controller (update-with-start) to admit one attempt of a job; a job with
        no estimate of its own is admitted with the product's default estimate."""
        product_id = inp.product_id
        config = await self.stored_config(product_id)
        request = AdmissionRequest(
            job_id=inp.job_id,
            workflow_id=inp.workflow_id,
            priority=inp.priority,
            estimate_usd=(
                config.default_estimate_usd if inp.estimate_usd is None else inp.estimate_usd
            ),
            requested_at=inp.requested_at,
        )
        start: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
            PRODUCT_CONTROLLER_WORKFLOW,
            self._start_input(product_id, config),
            id=product_workflow_id(product_id),
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=controller_summary(product_id),
        )
        result: AdmissionResult = await self.temporal.execute_update_with_start_workflow(
            UPDATE_ADMIT, request, start_workflow_operation=start, result_type=AdmissionResult
        )
        return result

    async def state(self, product_id: str) -> BudgetState | None:
        """The controller's live state, None when the product has no controller yet."""
        try:
            state: BudgetState = await self.temporal.get_workflow_handle(
                product_workflow_id(product_id)
            ).query(QUERY_BUDGET_STATE, result_type=BudgetState)
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            return None
        return state
