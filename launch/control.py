"""A control-plane process: the worker of every workflow and control activity, and the
dispatch reconciler beside it. Any number may run against one Temporal and one store."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType

from temporalio.client import Client
from temporalio.worker import Worker

from gigafactory.services import Services
from gigafactory.settings import Settings
from gigafactory.store.fleet_store import FleetStore
from launch.workers import control_worker

__all__ = ["ControlPlane"]

logger = logging.getLogger(__name__)


class ControlPlane:
    """`start()` runs the worker and the reconciler until `stop()`."""

    def __init__(self, client: Client, store: FleetStore, settings: Settings) -> None:
        self.settings = settings
        self.services = Services(store, client, settings)
        self.worker: Worker = control_worker(client, store, settings, services=self.services)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self.worker.run(), name="control-worker"),
            asyncio.create_task(self._reconcile_forever(), name="reconciler"),
        ]

    async def _reconcile_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reconcile_s)
            try:
                await self.services.dispatcher.reconcile()
            except Exception:  # one failed pass must not stop the next
                logger.exception("dispatch reconciliation failed; retrying")

    async def stop(self) -> None:
        """Stop reconciling, then shut the worker down (in-flight tasks finish first)."""
        for task in self._tasks[1:]:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.worker.shutdown(), 30)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        self._tasks = []

    async def __aenter__(self) -> ControlPlane:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
