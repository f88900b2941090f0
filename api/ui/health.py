"""Is Temporal reachable? Asked at most every few seconds per process, never per poll.

Pages show a banner while it is not; they read the store, so they keep working. The check
runs in the background once its answer is stale, so no request waits for a server that
does not answer (only the very first one waits, at most the health check's timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from gigafactory.services.health import HealthReport, HealthService

__all__ = ["HealthCache"]

logger = logging.getLogger(__name__)

FRESH_FOR_S = 10.0


@dataclass
class HealthCache:
    """The last health report and when it was taken."""

    service: HealthService
    fresh_for_s: float = FRESH_FOR_S
    _report: HealthReport | None = None
    _taken: float = 0.0
    _refresh: asyncio.Task[None] | None = field(default=None, repr=False)

    async def report(self) -> HealthReport:
        """The last report; stale ones are refreshed in the background."""
        if self._report is None:
            await self._take()
        elif time.monotonic() - self._taken > self.fresh_for_s and (
            self._refresh is None or self._refresh.done()
        ):
            self._refresh = asyncio.create_task(self._take())
        assert self._report is not None
        return self._report

    async def _take(self) -> None:
        self._report = await self.service.check()
        self._taken = time.monotonic()

    async def close(self) -> None:
        """Stop a refresh under way (the app is shutting down)."""
        if self._refresh is not None and not self._refresh.done():
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh
