"""A factory process: enrollment, the heartbeat loop and its Temporal worker.

The factory talks to the control plane only through the API (factory token) and to
Temporal only through its own task queue, so it can run on any machine that reaches both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from activities.engines.registry import ENGINES, available_engines
from activities.factory import FactoryActivities
from activities.reporter import HttpReporter
from activities.workspace import Workspaces
from gigafactory.pricing import parse_model_prices
from gigafactory.settings import Settings
from launch.workers import factory_workers

__all__ = [
    "FactoryRevoked",
    "FactoryRuntime",
    "agent_models",
    "enroll_factory",
    "factory_workspaces",
    "token_path",
]

logger = logging.getLogger(__name__)


class FactoryRevoked(Exception):
    """The control plane refused this factory's token (revoked or rotated away)."""


def token_path(settings: Settings, factory_id: str) -> Path:
    """Where `factory enroll` keeps a factory's token for `factory run`."""
    return settings.data_dir / "factories" / f"{factory_id}.token"


async def enroll_factory(
    api_url: str,
    enrollment_token: str,
    *,
    factory_id: str,
    engines: Sequence[str],
    labels: Sequence[str],
    slots: int,
    cost_rate_usd_per_hour: float = 0.0,
) -> str:
    """Exchange a one-time enrollment token for a factory token.

    Raises:
        RuntimeError: the API refused, with its message.
    """
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        response = await http.post(
            "/fleet/factories/enroll",
            json={
                "enrollmentToken": enrollment_token,
                "factoryId": factory_id,
                "engines": list(engines),
                "labels": list(labels),
                "slots": slots,
                "hostname": socket.gethostname(),
                "costRateUsdPerHour": cost_rate_usd_per_hour,
            },
        )
    if response.status_code >= 400:
        raise RuntimeError(f"enrollment refused ({response.status_code}): {_message(response)}")
    token = response.json()["factoryToken"]
    assert isinstance(token, str)
    return token


def _message(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
        return str(body.get("error", {}).get("message") or body)
    except ValueError:
        return response.text


def agent_models(settings: Settings) -> dict[str, str]:
    """`FLEET_AGENT_MODELS`: the model each engine runs with when a job names none.

    Raises:
        ValueError: the setting is not a JSON object of strings.
    """
    if not settings.agent_models:
        return {}
    try:
        value = json.loads(settings.agent_models)
    except ValueError as err:
        raise ValueError(f"FLEET_AGENT_MODELS is not valid JSON: {err}") from None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError('FLEET_AGENT_MODELS must be a JSON object {"engine": "model"}')
    return value


def factory_workspaces(settings: Settings, factory_id: str) -> Workspaces:
    """The worktrees and mirrors of one factory, as the settings configure them."""
    return Workspaces(
        settings.mirror_dir / factory_id,
        settings.workspace_dir / factory_id,
        work_remote=settings.work_remote,
        ship_remote=settings.ship_remote,
        forge_command=settings.forge_command,
    )


class FactoryRuntime:
    """Runs one factory: heartbeats capacity and health, and polls `factory-<id>`."""

    def __init__(
        self,
        settings: Settings,
        client: Client,
        *,
        factory_id: str,
        token: str,
        engines: Sequence[str] | None,
        labels: Sequence[str],
        slots: int,
        api_url: str | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.factory_id = factory_id
        self.token = token
        self.engines = available_engines(engines, os.environ.get("PATH"))
        self.labels = list(labels)
        self.slots = slots
        self.api_url = api_url or settings.resolved_api_url
        # Set when the API refuses the token, at a heartbeat or at any report of a run.
        self.revoked = asyncio.Event()
        self.revoked_reason = ""
        self.activities = FactoryActivities(
            factory_id,
            HttpReporter(self.api_url, token, on_unauthorized=self._refused),
            settings.workspace_dir / factory_id,
            log_chunk_interval_s=settings.log_chunk_interval_s,
            stop_grace_s=settings.stop_grace_s,
            engines={name: ENGINES[name] for name in self.engines},
            stop_interrupt_s=settings.stop_interrupt_s,
            agent_home=settings.agent_home_dir / factory_id,
            prices=parse_model_prices(settings.model_prices),
            agent_models=agent_models(settings),
            workspaces=factory_workspaces(settings, factory_id),
        )

    def _refused(self, message: str) -> None:
        if not self.revoked.is_set():
            logger.warning(
                "factory %s: the control plane refused its token: %s", self.factory_id, message
            )
            self.revoked_reason = message
            self.revoked.set()

    async def heartbeat(self, http: httpx.AsyncClient) -> None:
        """Report engines, labels, slots and health once.

        Raises:
            FactoryRevoked: the token is no longer accepted.
        """
        response = await http.post(
            "/fleet/factories/heartbeat",
            headers={"Authorization": f"Bearer {self.token}"},
            json={
                "engines": self.engines,
                "labels": self.labels,
                "slots": self.slots,
                "healthy": True,
                "running": 0,
            },
        )
        if response.status_code == 401:
            self._refused(_message(response))
            raise FactoryRevoked(f"factory {self.factory_id}: {_message(response)}")
        response.raise_for_status()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until `stop` is set (or forever); heartbeat failures other than 401 are retried.

        A refused token (revoked or rotated away), seen at a heartbeat or at any report of a
        run, shuts the worker down at once: it polls no more tasks, and its running agents
        are stopped and handed back with their checkpoints (the jobs are requeued elsewhere).

        Raises:
            FactoryRevoked: the control plane refused the token.
        """
        stop = stop or asyncio.Event()
        workers = factory_workers(
            self.client,
            self.factory_id,
            self.slots,
            self.activities,
            cancel_check_s=self.settings.cancel_check_s,
        )
        logger.info(
            "factory %s: engines %s, labels %s, %d slots",
            self.factory_id,
            ",".join(self.engines),
            ",".join(self.labels) or "-",
            self.slots,
        )
        async with contextlib.AsyncExitStack() as running:
            http = await running.enter_async_context(
                httpx.AsyncClient(base_url=self.api_url, timeout=10)
            )
            for worker in workers:
                await running.enter_async_context(worker)
            while not stop.is_set() and not self.revoked.is_set():
                try:
                    await self.heartbeat(http)
                except httpx.HTTPError as err:
                    logger.warning("factory %s: heartbeat failed: %s", self.factory_id, err)
                await self._pause(stop)
        if self.revoked.is_set():
            raise FactoryRevoked(f"factory {self.factory_id}: {self.revoked_reason}")

    async def _pause(self, stop: asyncio.Event) -> None:
        """Until the next heartbeat, or sooner when stopped or revoked."""
        waits = [asyncio.ensure_future(e.wait()) for e in (stop, self.revoked)]
        try:
            await asyncio.wait(
                waits,
                timeout=self.settings.factory_heartbeat_interval_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for wait in waits:
                wait.cancel()
