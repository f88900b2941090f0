"""What the control-plane worker registers: every workflow, and the workflow modules its
sandbox may import once instead of once per run."""

from workflows.job import JobWorkflow
from workflows.lock import LockWorkflow
from workflows.product import ProductControllerWorkflow
from workflows.ship import ShipWorkflow

__all__ = [
    "JobWorkflow",
    "LockWorkflow",
    "ProductControllerWorkflow",
    "SANDBOX_PASSTHROUGH",
    "ShipWorkflow",
    "WORKFLOWS",
]

WORKFLOWS: list[type] = [JobWorkflow, LockWorkflow, ProductControllerWorkflow, ShipWorkflow]

# The JobWorkflow's modules, imported once per worker instead of once per workflow run: the
# sandbox re-imports a workflow's modules (and re-runs its class decorators) for every new
# run, which was the control plane's largest cost per job (~45% of its CPU). They hold no
# module state and call only `temporalio.workflow` for time, ids and I/O, which is what the
# sandbox would otherwise police; the replay tests and tests/test_layers.py (workflow code
# imports only pure modules) check what it no longer does for them.
SANDBOX_PASSTHROUGH: tuple[str, ...] = (
    "workflows.job",
    "workflows.job.workflow",
    "workflows.job.record",
    "workflows.job.leaf",
    "workflows.job.parent",
    "workflows.worktrees",
    # The tracing interceptor's workflow side (FLEET_TRACING): its context and span
    # machinery is shared with the worker, as Temporal's OpenTelemetry plugin does.
    "opentelemetry",
)
