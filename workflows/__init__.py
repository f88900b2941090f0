"""Temporal workflows of the control plane. Deterministic: they import no I/O code."""

from workflows.job import JobWorkflow
from workflows.lock import LockWorkflow

__all__ = ["JobWorkflow", "LockWorkflow", "WORKFLOWS"]

WORKFLOWS: list[type] = [JobWorkflow, LockWorkflow]
