"""A factory that loses a run's lease is skipped until it heartbeats again, on the real dev
server with factories as processes: a frozen factory swallows no further runs."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from launch.devserver import TemporalDevServer
from tests.e2e.conftest import fleet_settings, open_fleet
from tests.e2e.harness import Fleet, unique_label
from tests.e2e.test_leaf_jobs import sim

pytestmark = pytest.mark.temporal


async def _factory_until(
    fleet: Fleet, factory_id: str, ok: Any, what: str, timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = await fleet.get(f"/fleet/factories/{factory_id}")
        if ok(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"factory {factory_id} never {what}: {body}")
        await asyncio.sleep(0.2)


async def test_a_frozen_factory_gets_no_new_run_until_it_heartbeats_again(
    temporal_server: TemporalDevServer, tmp_path: Path
) -> None:
    # A heartbeat counts as fresh for 30 s here (20 s by default), far longer than the 3 s
    # lease: without the rule the requeued job went straight back to the frozen factory,
    # whose free slot looked best, and was lost there again.
    settings = fleet_settings(temporal_server.address, tmp_path, factory_unhealthy_after_s=30)
    async with open_fleet(settings) as fleet:
        label = unique_label()
        zombie = await fleet.start_factory(engines=["sim"], labels=[label], subprocess_=True)
        first = await fleet.submit(sim(label, duration=8))
        assert (await fleet.wait_for(first["id"], ["running"]))["factoryId"] == zombie.id
        other = await fleet.start_factory(engines=["sim"], labels=[label], subprocess_=True)
        second = await fleet.submit(sim(label, duration=6))
        assert (await fleet.wait_for(second["id"], ["running"]))["factoryId"] == other.id

        zombie.freeze()
        try:
            skipped = await _factory_until(
                fleet, zombie.id, lambda f: f["leaseLostAt"] is not None, "lost a lease"
            )
            assert skipped["healthy"] is False
            assert "stopped heartbeating" in skipped["leaseLostReason"]
            done = await fleet.wait_for(first["id"], ["succeeded"], timeout=90)
        finally:
            zombie.thaw()
        # The job waited for the other factory rather than going back to the frozen one.
        runs = await fleet.runs(first["id"])
        assert [(r["epoch"], r["factoryId"], r["outcome"]) for r in runs] == [
            (1, zombie.id, "lost"),
            (2, other.id, "succeeded"),
        ]
        assert done["factoryId"] == other.id

        # Thawed, it heartbeats: trusted again, and it runs the next job.
        await _factory_until(
            fleet,
            zombie.id,
            lambda f: f["healthy"] and f["leaseLostAt"] is None,
            "became healthy again",
        )
        # With the other factory cordoned, only the thawed one can take the next job.
        r = await fleet.http.post(f"/fleet/factories/{other.id}/cordon", headers=fleet.auth())
        assert r.status_code == 200, r.text
        last = await fleet.submit(sim(label, duration=0.5))
        ran = await fleet.wait_for(last["id"], ["succeeded"], timeout=60)
        assert ran["factoryId"] == zombie.id
