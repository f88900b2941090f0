"""A leaf job end to end with the control plane on the Cosmos DB store (a real local
Cosmos DB API server), as `FLEET_STORE=cosmos` runs in production."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from launch.devserver import TemporalDevServer
from tests.e2e.conftest import fleet_settings, open_fleet
from tests.e2e.harness import unique_label
from tests.support.cosmos import KEY, CosmosServer, drop_database

pytestmark = [pytest.mark.temporal, pytest.mark.cosmos]


async def test_leaf_jobs_on_the_cosmos_store(
    temporal_server: TemporalDevServer, cosmos_server: CosmosServer, tmp_path: Path
) -> None:
    database = f"e2e-{uuid.uuid4().hex[:10]}"
    settings = fleet_settings(
        temporal_server.address,
        tmp_path,
        store="cosmos",
        cosmos_endpoint=cosmos_server.endpoint,
        cosmos_key=KEY,
        cosmos_database=database,
        cosmos_verify_tls=False,
    )
    try:
        async with open_fleet(settings) as fleet:
            label = unique_label()
            factory = await fleet.start_factory(engines=["shell", "sim"], labels=[label])
            ok = await fleet.submit(
                {
                    "engine": "sim",
                    "prompt": "on cosmos",
                    "productId": "cosmos",
                    "capabilities": [label],
                    "params": {"durationS": 0.5, "costUsd": 0.3},
                }
            )
            bad = await fleet.submit(
                {
                    "engine": "shell",
                    "prompt": "echo failing on cosmos\nexit 5",
                    "productId": "cosmos",
                    "capabilities": [label],
                    "cwd": str(tmp_path),
                }
            )
            done = await fleet.wait_for(ok["id"], ["succeeded"])
            failed = await fleet.wait_for(bad["id"], ["failed"])
            assert (done["factoryId"], done["leaseEpoch"], done["costUsd"]) == (factory.id, 1, 0.3)
            assert "5" in (failed["stageReason"] or "")
            runs = await fleet.runs(ok["id"])
            assert [(r["epoch"], r["outcome"]) for r in runs] == [(1, "succeeded")]
            events = await fleet.events(ok["id"])
            stages = [e["stage"] for e in events if e["kind"] == "stage"]
            assert stages == ["queued", "dispatched", "running", "succeeded"]
            artifacts = await fleet.get(f"/fleet/jobs/{bad['id']}/artifacts")
            assert any(a["name"] == "agent.log" for a in artifacts["items"])
            # The slot was given back on the Cosmos store too.
            view = await fleet.get(f"/fleet/factories/{factory.id}")
            assert view["slotsInUse"] == 0
    finally:
        await drop_database(cosmos_server, database)
