"""`gigafactory dev --store cosmos --metrics`: the whole dev stack on the Cosmos DB store, as
a user runs it against an endpoint given in settings (here the local Cosmos DB API server),
scraped the way Prometheus would."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from azure.cosmos.aio import CosmosClient
from prometheus_client.parser import text_string_to_metric_families

from launch.devserver import free_port
from tests.e2e.harness import REPO_ROOT
from tests.support.cosmos import KEY, CosmosServer, drop_database

pytestmark = [pytest.mark.temporal, pytest.mark.cosmos]


async def test_dev_with_store_cosmos_runs_a_job(cosmos_server: CosmosServer, tmp_path: Path):
    database = f"dev-{uuid.uuid4().hex[:10]}"
    api_port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "FLEET_COSMOS_ENDPOINT": cosmos_server.endpoint,
            "FLEET_COSMOS_KEY": KEY,
            "FLEET_COSMOS_DATABASE": database,
            "FLEET_COSMOS_VERIFY_TLS": "false",
        }
    )
    env.pop("FLEET_ADMIN_KEY", None)  # the stack generates and prints one
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "launch.cli.main",
            "dev",
            "--store",
            "cosmos",
            "--factories",
            "1",
            "--engines",
            "sim",
            "--data-dir",
            str(tmp_path),
            "--api-port",
            str(api_port),
            "--temporal-port",
            str(free_port()),
            "--ui-port",
            str(free_port()),
            "--metrics",
        ],  # fmt: skip
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        key = await asyncio.to_thread(_admin_key_from, process)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{api_port}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        ) as http:
            health = (await http.get("/healthz")).json()
            assert health["status"] == "ok", health
            body = {"engine": "sim", "prompt": "p", "productId": "dev"}
            r = await http.post("/fleet/jobs", json={**body, "params": {"durationS": 0.2}})
            assert r.status_code == 201, r.text
            job_id = r.json()["id"]
            deadline = time.monotonic() + 60
            while (stage := (await http.get(f"/fleet/jobs/{job_id}")).json()["stage"]) not in (
                "succeeded",
                "failed",
            ):
                assert time.monotonic() < deadline, f"job stuck in {stage}"
                await asyncio.sleep(0.3)
            assert stage == "succeeded"
            # The fleet's figures come from the Cosmos store's own counts and sums.
            r = await http.get("/metrics")
            assert r.status_code == 200, r.text
            found = {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(r.text)
                for s in family.samples
            }
            assert found[("gigafactory_jobs", (("stage", "succeeded"),))] == 1
            assert found[("gigafactory_spend_usd", (("product", "dev"),))] >= 0
        # Each process serves its own metrics where stack.json says.
        urls = json.loads((tmp_path / "stack.json").read_text())["metricsUrls"]
        assert {"control-1", "api", "factory-local-1"} <= set(urls), urls
        async with httpx.AsyncClient(timeout=30) as plain:
            control = (await plain.get(urls["control-1"])).text
            assert "gigafactory_routing_decision_seconds_count" in control
            sdk = (await plain.get(urls["control-1 (Temporal SDK)"])).text
            assert "temporal_" in sdk
        # The job lives in the Cosmos DB database the settings named.
        async with CosmosClient(cosmos_server.endpoint, KEY, connection_verify=False) as cosmos:
            jobs = cosmos.get_database_client(database).get_container_client("jobs")
            stored = await jobs.read_item(job_id, partition_key="dev")
            assert stored["stage"] == "succeeded"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.to_thread(process.wait, 60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        await drop_database(cosmos_server, database)
    assert process.returncode == 0, "Ctrl-C stops the stack cleanly"
    # The Azure SDK's request logging (every request and its headers at INFO) stays quiet.
    logs = sorted((tmp_path / "logs").glob("*.log"))
    assert logs, "the stack's processes wrote no logs"
    for log in logs:
        assert "http_logging_policy" not in log.read_text(), log


def _admin_key_from(process: subprocess.Popen[str]) -> str:
    """The generated admin key the stack prints once it is up."""
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("Admin key"):
            return line.split()[2]
    raise AssertionError(f"the dev stack exited ({process.wait()}) before printing its key")
