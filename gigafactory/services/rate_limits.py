"""Rate limits: a token bucket per API key on submits, and per factory on its reports.

Each bucket holds up to `burst` requests and refills at `per_s` a second; a request finding
it empty is refused with `RateLimited`, which says when one more would be accepted (the API
answers 429 with `Retry-After`). Buckets live in the process: with several API processes
each limits on its own, so a caller may reach N times the rate through N processes (put the
API behind one load balancer with sticky routing per key, or divide the settings by N).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gigafactory.services.errors import RateLimited
from gigafactory.settings import Settings

__all__ = ["RateLimiter", "RateLimits"]

# Buckets kept at most; past this, full (idle) ones are forgotten (they would be full again).
_MAX_BUCKETS = 10_000


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class RateLimiter:
    """Token buckets of one kind of request, one per caller.

    Args:
        per_s: Refill rate in requests a second; 0 means no limit.
        burst: The most requests accepted at once.
        what: The kind of request, named in refusals ("submits").
        setting: The setting to raise, named in refusals ("FLEET_RATE_SUBMIT_PER_S").
        monotonic: The clock (seconds); tests pass their own.
    """

    per_s: float
    burst: int
    what: str
    setting: str
    monotonic: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def take(self, caller: str) -> None:
        """Spend one request of `caller`'s bucket.

        Raises:
            RateLimited: the bucket is empty; `retry_after_s` says when it holds one again.
        """
        if self.per_s <= 0:
            return
        now = self.monotonic()
        bucket = self._buckets.get(caller)
        if bucket is None:
            self._forget_idle(now)
            bucket = self._buckets[caller] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.per_s)
        bucket.at = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return
        wait = (1 - bucket.tokens) / self.per_s
        raise RateLimited(
            f"too many {self.what} from {caller}: at most {self.per_s:g} a second with bursts "
            f"of {self.burst} ({self.setting}); retry in {math.ceil(wait)} s",
            retry_after_s=wait,
        )

    def _forget_idle(self, now: float) -> None:
        if len(self._buckets) < _MAX_BUCKETS:
            return
        full = [
            caller
            for caller, b in self._buckets.items()
            if b.tokens + (now - b.at) * self.per_s >= self.burst
        ]
        for caller in full:
            del self._buckets[caller]


@dataclass
class RateLimits:
    """The limits of one API process: submits per API key, reports per factory."""

    submits: RateLimiter
    reports: RateLimiter

    @classmethod
    def from_settings(
        cls, settings: Settings, monotonic: Callable[[], float] = time.monotonic
    ) -> RateLimits:
        return cls(
            submits=RateLimiter(
                settings.rate_submit_per_s,
                settings.rate_submit_burst,
                "submits",
                "FLEET_RATE_SUBMIT_PER_S, FLEET_RATE_SUBMIT_BURST",
                monotonic,
            ),
            reports=RateLimiter(
                settings.rate_report_per_s,
                settings.rate_report_burst,
                "reports",
                "FLEET_RATE_REPORT_PER_S, FLEET_RATE_REPORT_BURST",
                monotonic,
            ),
        )
