"""Instants as whole microseconds, so that indexes can sort and bisect them exactly.

`datetime` has microsecond resolution, and `timedelta.total_seconds()` divides whole
microseconds by 10**6 with one correct rounding. So an age computed here from two integers
is the very float `routing.filters.seconds_since` computes from two datetimes, and a limit
in seconds turns into an exact integer threshold: "at most `limit_s` old" is "at most
`fresh_age_us(limit_s)` microseconds old", with the same answer at the boundary.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

__all__ = ["age_s", "fresh_age_us", "micros", "min_age_us"]

_EPOCH_AWARE = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_US = timedelta(microseconds=1)
_PER_S = 1_000_000
# Beyond any difference of two datetimes (about 3.2e17 us), so "no limit" in practice.
_UNBOUNDED_US = 10**19


def micros(at: datetime) -> int:
    """Whole microseconds since the epoch (UTC for an aware datetime, as-is for a naive one)."""
    epoch = _EPOCH_NAIVE if at.utcoffset() is None else _EPOCH_AWARE
    return (at - epoch) // _US


def age_s(now_us: int, then_us: int) -> float:
    """Seconds from `then_us` to `now_us`, never negative: `seconds_since` on microseconds."""
    return max(0.0, (now_us - then_us) / _PER_S)


def fresh_age_us(limit_s: float) -> int:
    """The greatest age in microseconds whose `age_s` is at most `limit_s` (finite, > 0)."""
    if limit_s * _PER_S >= _UNBOUNDED_US:
        return _UNBOUNDED_US
    age = math.floor(limit_s * _PER_S)
    while (age + 1) / _PER_S <= limit_s:
        age += 1
    while age / _PER_S > limit_s:
        age -= 1
    return age


def min_age_us(minimum_s: float) -> int:
    """The least age in microseconds whose `age_s` is at least `minimum_s` (finite, >= 0).

    For a minimum of 0 every age counts, a start in the future (age 0) included.
    """
    if minimum_s <= 0:
        return -_UNBOUNDED_US
    if minimum_s * _PER_S >= _UNBOUNDED_US:
        return _UNBOUNDED_US
    age = math.ceil(minimum_s * _PER_S)
    while (age - 1) / _PER_S >= minimum_s:
        age -= 1
    while age / _PER_S < minimum_s:
        age += 1
    return age
