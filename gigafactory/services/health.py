"""Is this process's control plane usable: does the store answer, does Temporal?"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta

from temporalio.client import Client

from gigafactory.store.fleet_store import FleetStore

__all__ = ["HealthReport", "HealthService"]

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class HealthReport:
    """ "ok", or what is wrong with each dependency."""

    store: str
    temporal: str

    @property
    def healthy(self) -> bool:
        return self.store == "ok" and self.temporal == "ok"


@dataclass
class HealthService:
    """Checks the store and Temporal, each within a few seconds."""

    store: FleetStore
    temporal: Client

    async def check(self) -> HealthReport:
        try:
            await asyncio.wait_for(self.store.ping(), CHECK_TIMEOUT_S)
            store_state = "ok"
        except Exception as err:  # any failure means "not reachable"; the reason is reported
            logger.warning("health: store: %s", err)
            store_state = f"unreachable: {err or type(err).__name__}"
        try:
            ok = await asyncio.wait_for(
                self.temporal.service_client.check_health(
                    timeout=timedelta(seconds=CHECK_TIMEOUT_S)
                ),
                CHECK_TIMEOUT_S + 1,
            )
            temporal_state = "ok" if ok else "not serving"
        except Exception as err:  # as above
            logger.warning("health: temporal: %s", err)
            temporal_state = f"unreachable: {err or type(err).__name__}"
        return HealthReport(store=store_state, temporal=temporal_state)
