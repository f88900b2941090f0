"""The value types: frozen, and checked where a bad value would silently skew routing."""

from __future__ import annotations

import dataclasses
import math

import pytest

from routing import RoutingContext
from tests.routing.builders import CTX, NOW, factory, job


def test_values_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        factory().reserved = 1  # type: ignore[misc]


def test_unknown_priority_is_rejected():
    with pytest.raises(ValueError, match="unknown priority 'urgent'"):
        job(priority="urgent")


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_context_limits_must_be_positive_and_finite(bad):
    with pytest.raises(ValueError, match="unhealthy_after_s must be"):
        RoutingContext(now=NOW, unhealthy_after_s=bad)
    with pytest.raises(ValueError, match="max_age_s must be"):
        RoutingContext(now=NOW, unhealthy_after_s=15, max_age_s=bad)


def test_context_defaults():
    assert RoutingContext(now=NOW, unhealthy_after_s=15).max_age_s == 3600.0
    assert CTX.now == NOW


def test_free_slots_never_negative():
    assert factory(slots=2, reserved=5).free == 0
    assert factory(slots=3, reserved=1).free == 2
