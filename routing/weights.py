"""Scoring weights: fixed defaults, layered overrides, and their validation.

Overrides arrive as JSON from products and requests, so keys may be camelCase and values
must be checked here: a negative or non-finite weight would turn "prefer" into "avoid" or
make every score NaN.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

__all__ = ["TERMS", "FleetWeights", "WeightsError", "resolve_weights"]

# Every scoring term, in the order breakdowns list them.
TERMS: tuple[str, ...] = (
    "capability_fit",
    "load",
    "health",
    "affinity",
    "cost_rate",
    "age",
    "priority",
)


class WeightsError(ValueError):
    """An invalid weight override; `term` and `layer` say which, when known."""

    def __init__(self, message: str, *, term: str | None = None, layer: str | None = None):
        super().__init__(message)
        self.term = term
        self.layer = layer


@dataclass(frozen=True, slots=True)
class FleetWeights:
    """One non-negative weight per scoring term (see `routing.score` for the terms)."""

    capability_fit: float = 1.0
    load: float = 2.0
    health: float = 0.5
    affinity: float = 0.5
    cost_rate: float = 0.25
    age: float = 1.0
    priority: float = 1.0

    def __post_init__(self) -> None:
        for term in TERMS:
            _check_value(term, getattr(self, term), layer=None)

    @classmethod
    def from_mapping(cls, m: Mapping[str, float], *, layer: str = "weights") -> FleetWeights:
        """The defaults with the terms in `m` replaced; unknown or bad terms raise."""
        return cls().override(m, layer=layer)

    def override(self, m: Mapping[str, float], *, layer: str = "override") -> FleetWeights:
        """A copy with the terms in `m` replaced; `layer` names `m` in error messages."""
        return replace(self, **_parse(m, layer))

    def as_dict(self) -> dict[str, float]:
        """Term name (snake_case) to weight, in `TERMS` order."""
        return {term: float(getattr(self, term)) for term in TERMS}

    def weight(self, term: str) -> float:
        """The weight of one term by name."""
        if term not in TERMS:
            raise WeightsError(_unknown(term, None), term=term)
        return float(getattr(self, term))


def resolve_weights(
    defaults: FleetWeights,
    product: Mapping[str, float] | None,
    request: Mapping[str, float] | None,
) -> FleetWeights:
    """Layer defaults -> product override -> request override, validating each layer."""
    weights = defaults
    if product:
        weights = weights.override(product, layer="product override")
    if request:
        weights = weights.override(request, layer="request override")
    return weights


def _parse(m: Mapping[str, float], layer: str) -> dict[str, float]:
    parsed: dict[str, float] = {}
    for key, value in m.items():
        term = _term_name(key)
        if term is None:
            raise WeightsError(_unknown(key, layer), term=str(key), layer=layer)
        if term in parsed:
            raise WeightsError(f"{layer}: weight {term!r} given twice", term=term, layer=layer)
        parsed[term] = _check_value(term, value, layer=layer)
    return parsed


def _term_name(key: object) -> str | None:
    if not isinstance(key, str):
        return None
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()
    for name in (key, snake):
        if name in TERMS:
            return name
    return None


def _check_value(term: str, value: object, *, layer: str | None) -> float:
    prefix = f"{layer}: " if layer else ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WeightsError(
            f"{prefix}weight {term!r} must be a number, got {value!r}", term=term, layer=layer
        )
    if not math.isfinite(value) or value < 0:
        raise WeightsError(
            f"{prefix}weight {term!r} must be a finite number >= 0, got {value!r}",
            term=term,
            layer=layer,
        )
    return float(value)


def _unknown(key: object, layer: str | None) -> str:
    prefix = f"{layer}: " if layer else ""
    return f"{prefix}unknown weight term {key!r} (known: {', '.join(TERMS)})"
