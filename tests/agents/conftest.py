"""Real agent CLIs run by real factories on the session's Temporal dev server, against the
fake model server: one control plane for the module (preemption on, the fake model priced),
a fake server and the CLIs' environment per test."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from launch.devserver import TemporalDevServer
from tests.e2e.conftest import fleet_settings, open_fleet
from tests.e2e.harness import Fleet
from tests.support.agents import MODELS, PRICES, FakeLlm, agent_env, fake_llm


@pytest.fixture(scope="module")
async def agents_fleet(
    temporal_server: TemporalDevServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Fleet]:
    settings = fleet_settings(
        temporal_server.address,
        tmp_path_factory.mktemp("agents-fleet"),
        preemption=True,
        model_prices=json.dumps(PRICES),
        agent_models=json.dumps(MODELS),
        stop_interrupt_s=3,
    ).model_copy(
        # Agent CLIs take seconds to start and to stop: a lease and a grace to match.
        update={"lease_heartbeat_timeout_s": 15, "stop_grace_s": 8}
    )
    async with open_fleet(settings) as fleet:
        yield fleet


@pytest.fixture
async def fleet(agents_fleet: Fleet) -> AsyncIterator[Fleet]:
    """The module's control plane; factories a test starts are stopped after it."""
    before = len(agents_fleet.factories)
    yield agents_fleet
    started = agents_fleet.factories[before:]
    del agents_fleet.factories[before:]
    for factory in started:
        await factory.stop()


@pytest.fixture
def llm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLlm]:
    """A fake model server of the test's own, and the environment (the in-process
    factories' and so their agents') pointing every CLI at it."""
    with fake_llm(tmp_path) as server:
        for name, value in agent_env(server).items():
            monkeypatch.setenv(name, value)
        yield server
