"""Building the two kinds of Temporal worker: the control plane's and a factory's."""

from __future__ import annotations

import json

from temporalio.client import Client
from temporalio.worker import Worker

from activities.control import ControlActivities
from activities.factory import FactoryActivities
from gigafactory.contracts import factory_task_queue
from gigafactory.settings import Settings
from gigafactory.store.fleet_store import FleetStore
from routing import FleetWeights, PreemptionPolicy, WeightsError
from workflows import WORKFLOWS

__all__ = ["control_worker", "factory_worker", "preemption_policy", "shadow_weights"]


def preemption_policy(settings: Settings) -> PreemptionPolicy:
    """Who may evict whom (FLEET_PREEMPTING_PRIORITIES, FLEET_PREEMPTION_MIN_RUNTIME_S).

    Raises:
        ValueError: a priority name is unknown.
    """
    names = frozenset(p.strip() for p in settings.preempting_priorities.split(",") if p.strip())
    try:
        return PreemptionPolicy(preempting=names, min_runtime_s=settings.preemption_min_runtime_s)
    except ValueError as err:
        raise ValueError(f"FLEET_PREEMPTING_PRIORITIES: {err}") from None


def shadow_weights(settings: Settings) -> FleetWeights | None:
    """The weight set `FLEET_ROUTING_SHADOW` names: a JSON object of term -> weight.

    Raises:
        ValueError: the setting is not a JSON object of known terms and valid weights.
    """
    text = settings.routing_shadow
    if not text:
        return None
    try:
        mapping = json.loads(text)
    except ValueError as err:
        raise ValueError(f"FLEET_ROUTING_SHADOW is not JSON ({err}): {text!r}") from None
    if not isinstance(mapping, dict):
        raise ValueError(
            f"FLEET_ROUTING_SHADOW must be a JSON object of term -> weight, not {text!r}"
        )
    try:
        return FleetWeights.from_mapping(mapping, layer="FLEET_ROUTING_SHADOW")
    except WeightsError as err:
        raise ValueError(str(err)) from None


def control_worker(
    client: Client,
    store: FleetStore,
    settings: Settings,
    *,
    task_queue: str | None = None,
) -> Worker:
    """The worker that runs every workflow and the control-plane activities."""
    task_queue = task_queue or settings.control_task_queue
    activities = ControlActivities(
        store,
        client,
        unhealthy_after_s=settings.factory_unhealthy_after_s,
        shadow_weights=shadow_weights(settings),
        capacity_recheck_s=settings.capacity_recheck_s,
        preemption_policy=preemption_policy(settings),
        task_queue=task_queue,
    )
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=activities.all(),
    )


def factory_worker(
    client: Client, factory_id: str, slots: int, activities: FactoryActivities
) -> Worker:
    """A factory's worker: its own task queue, exactly `slots` concurrent agents."""
    return Worker(
        client,
        task_queue=factory_task_queue(factory_id),
        activities=[activities.run_agent],
        max_concurrent_activities=slots,
    )
