"""Talking to a product's controller workflow from outside workflows (API, activities):
start it with the stored budget when it is missing, and signal or update it."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from gigafactory.budgets import BudgetConfig, ProductControllerInput
from gigafactory.contracts import PRODUCT_CONTROLLER_WORKFLOW, product_workflow_id
from gigafactory.store.fleet_store import FleetStore

__all__ = ["controller_start", "controller_summary", "signal_controller", "stored_config"]


def controller_summary(product_id: str) -> str:
    """The Temporal UI's one line for a product's controller."""
    return f"budget controller of product {product_id}"


async def stored_config(store: FleetStore, product_id: str) -> BudgetConfig:
    """The product's budget as operators set it (the defaults: no ceiling)."""
    stored = await store.get_budget(product_id)
    return BudgetConfig.model_validate(stored.config) if stored else BudgetConfig()


def controller_start(
    product_id: str, config: BudgetConfig, task_queue: str
) -> WithStartWorkflowOperation[Any, Any]:
    """Start the product's controller unless it runs (for update-with-start)."""
    return WithStartWorkflowOperation(
        PRODUCT_CONTROLLER_WORKFLOW,
        ProductControllerInput(product_id=product_id, config=config),
        id=product_workflow_id(product_id),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary=controller_summary(product_id),
    )


async def signal_controller(
    client: Client, store: FleetStore, product_id: str, task_queue: str, signal: str, arg: Any
) -> None:
    """Signal the product's controller, starting it (with the stored budget) if missing."""
    config = await stored_config(store, product_id)
    await client.start_workflow(
        PRODUCT_CONTROLLER_WORKFLOW,
        ProductControllerInput(product_id=product_id, config=config),
        id=product_workflow_id(product_id),
        task_queue=task_queue,
        start_signal=signal,
        start_signal_args=[arg],
        static_summary=controller_summary(product_id),
    )
