"""Fixtures for the factory activity: a recording reporter and an activity environment."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

from activities.engines.base import Engine
from activities.factory import FactoryActivities
from activities.reporter import RecordingReporter
from gigafactory.contracts import AgentCheckpoint, RunAgentInput, RunAgentResult
from gigafactory.models import JobSpec


def job(
    engine: str = "shell",
    prompt: str = "echo hi",
    *,
    job_id: str = "j1",
    epoch: int = 1,
    checkpoint: dict[str, Any] | None = None,
    **spec: Any,
) -> RunAgentInput:
    """A run_agent input for product `p1`."""
    return RunAgentInput(
        job_id=job_id,
        product_id="p1",
        epoch=epoch,
        spec=JobSpec(engine=engine, prompt=prompt, product_id="p1", **spec),
        checkpoint=checkpoint,
    )


def pid_running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie waiting to be reaped is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll until `predicate()` holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


@dataclass
class Factory:
    """A FactoryActivities under an ActivityEnvironment, with what it reported."""

    acts: FactoryActivities
    reporter: RecordingReporter
    env: ActivityEnvironment
    workspace: Path
    beats: list[AgentCheckpoint] = field(default_factory=list)

    async def run(self, inp: RunAgentInput) -> RunAgentResult:
        return await self.env.run(self.acts.run_agent, inp)

    def start(self, inp: RunAgentInput) -> asyncio.Task[RunAgentResult]:
        return asyncio.ensure_future(self.env.run(self.acts.run_agent, inp))

    def progress(self) -> dict[str, Any]:
        return self.beats[-1].progress if self.beats else {}


@pytest.fixture
def make_factory(tmp_path: Path) -> Callable[..., Factory]:
    """Build a factory with fast intervals; keyword arguments override them."""

    def make(
        engines: Mapping[str, Engine] | None = None,
        env: ActivityEnvironment | None = None,
        **options: Any,
    ) -> Factory:
        reporter = RecordingReporter()
        workspace = tmp_path / "ws"
        settings: dict[str, Any] = {
            "log_chunk_interval_s": 0.1,
            "stop_grace_s": 1.0,
            "heartbeat_interval_s": 0.1,
        }
        settings.update(options)
        acts = FactoryActivities("f1", reporter, workspace, engines=engines, **settings)
        factory = Factory(acts, reporter, env or ActivityEnvironment(), workspace)
        factory.env.on_heartbeat = lambda *details: factory.beats.append(details[0])
        return factory

    return make


@pytest.fixture
def factory(make_factory: Callable[..., Factory]) -> Factory:
    return make_factory()
