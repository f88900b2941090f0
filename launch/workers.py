"""Building the two kinds of Temporal worker: the control plane's and a factory's."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.control import ControlActivities
from activities.factory import FactoryActivities
from gigafactory.contracts import factory_ops_task_queue, factory_task_queue
from gigafactory.services import Services
from gigafactory.settings import Settings
from gigafactory.store.fleet_store import FleetStore
from workflows.registry import SANDBOX_PASSTHROUGH, WORKFLOWS

__all__ = ["control_worker", "factory_workers", "workflow_runner"]

# Ships and worktree removals a factory runs at once (git on its disk).
WORKSPACE_OPERATIONS_AT_ONCE = 2


def control_worker(
    client: Client,
    store: FleetStore,
    settings: Settings,
    *,
    task_queue: str | None = None,
    services: Services | None = None,
) -> Worker:
    """The worker that runs every workflow and the control-plane activities."""
    if task_queue is not None:
        settings = settings.model_copy(update={"control_task_queue": task_queue})
    activities = ControlActivities(services or Services(store, client, settings))
    return Worker(
        client,
        task_queue=settings.control_task_queue,
        workflows=WORKFLOWS,
        activities=activities.all(),
        workflow_runner=workflow_runner(),
    )


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandbox the control worker runs workflows in (the replay tests use it too)."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*SANDBOX_PASSTHROUGH)
    )


def factory_workers(
    client: Client,
    factory_id: str,
    slots: int,
    activities: FactoryActivities,
    *,
    cancel_check_s: float = 2.0,
) -> list[Worker]:
    """A factory's two workers: its agents (task queue `factory-<id>`, exactly `slots` at a
    time) and its workspace operations (`factory-<id>-ops`: ship, remove), which must not
    wait behind agents for a slot.

    Heartbeats reach the server at least every `cancel_check_s` (the SDK otherwise
    throttles them to 80% of the lease timeout), because a cancellation or preemption
    reaches a running activity only with a heartbeat's answer.
    """
    agents = Worker(
        client,
        task_queue=factory_task_queue(factory_id),
        activities=activities.agent_activities(),
        max_concurrent_activities=slots,
        max_heartbeat_throttle_interval=timedelta(seconds=cancel_check_s),
        default_heartbeat_throttle_interval=timedelta(seconds=cancel_check_s),
    )
    operations = Worker(
        client,
        task_queue=factory_ops_task_queue(factory_id),
        activities=activities.workspace_activities(),
        max_concurrent_activities=WORKSPACE_OPERATIONS_AT_ONCE,
    )
    return [agents, operations]
