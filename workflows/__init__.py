"""Temporal workflows of the control plane. Deterministic: they import no I/O code."""

from workflows.job import JobWorkflow
from workflows.lock import LockWorkflow
from workflows.product import ProductControllerWorkflow

__all__ = ["JobWorkflow", "LockWorkflow", "ProductControllerWorkflow", "WORKFLOWS"]

WORKFLOWS: list[type] = [JobWorkflow, LockWorkflow, ProductControllerWorkflow]
