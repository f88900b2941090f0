"""Routing settings as the routing module's types: the shadow weight set and the preemption
policy, validated with errors that name the setting."""

from __future__ import annotations

import json

from gigafactory.settings import Settings
from routing import FleetWeights, PreemptionPolicy, WeightsError

__all__ = ["preemption_policy", "shadow_weights"]


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
