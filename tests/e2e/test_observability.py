"""Metrics and traces from a dev stack of real processes, read the way a user reads them.

`serve api`, `serve control` and two `factory run` processes with `metrics=True` and
`FLEET_TRACING=file`: Prometheus scrapes of the API's `/metrics`, of each process's own
endpoint and of the Temporal SDK's; then the JSON-lines spans every process wrote, joined
into the trace of one job from its submit to its factory's reports.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gigafactory.observability.span_file import read_spans
from launch.devserver import TemporalDevServer, free_port
from launch.stack import DevStack, LocalFactory
from tests.support.stacks import process_stack_settings

pytestmark = pytest.mark.temporal

JOBS = 10
SLOTS = 2
COST = 0.02

Samples = dict[str, list[tuple[dict[str, str], float]]]


def samples(text: str) -> Samples:
    """Every sample of a Prometheus text page, by sample name."""
    found: Samples = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name].append((sample.labels, sample.value))
    return found


def total(found: Samples, name: str, **labels: str) -> float:
    return sum(
        value
        for got, value in found.get(name, [])
        if all(got.get(k) == v for k, v in labels.items())
    )


async def scrape(url: str, headers: dict[str, str] | None = None) -> Samples:
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.get(url, headers=headers or {})
    assert r.status_code == 200, (url, r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("text/plain")
    return samples(r.text)


async def test_metrics_and_traces_of_a_stack_of_processes(
    temporal_server: TemporalDevServer, tmp_path: Path
) -> None:
    product = f"obs{free_port()}"
    settings = process_stack_settings(
        temporal_server, tmp_path, "obs", metrics_cache_s=0, tracing="file"
    )
    stack = DevStack(
        settings,
        factories=[LocalFactory(id=f"obs-{i}", engines=("sim",), slots=SLOTS) for i in range(2)],
        fallback_ports=True,
        ui=False,
        metrics=True,
    )
    async with stack:
        headers = {"Authorization": f"Bearer {stack.admin_key}"}
        fleet_url = f"{stack.api_url}/metrics"
        async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=60) as api:
            ids = []
            for n in range(JOBS):
                r = await api.post(
                    "/fleet/jobs",
                    json={
                        "engine": "sim",
                        "prompt": f"job {n}",
                        "productId": product,
                        "params": {"durationS": 0.5, "costUsd": COST},
                    },
                )
                assert r.status_code == 201, r.text
                ids.append(r.json()["id"])

            # Scraped while jobs run: the stages account for every job, slots are never
            # over-used, and the unhealthy count is zero.
            deadline = time.monotonic() + 180
            saw_running = False
            while True:
                fleet = await scrape(fleet_url, headers)
                assert total(fleet, "gigafactory_jobs") == JOBS
                for labels, used in fleet["gigafactory_factory_slots_used"]:
                    assert used <= total(fleet, "gigafactory_factory_slots", **labels)
                assert total(fleet, "gigafactory_factory_healthy") == 2
                saw_running |= total(fleet, "gigafactory_jobs", stage="running") > 0
                if total(fleet, "gigafactory_jobs", stage="succeeded") == JOBS:
                    break
                assert time.monotonic() < deadline, fleet["gigafactory_jobs"]
                await asyncio.sleep(0.3)
            assert saw_running

            # Spend is the ledger's: each run's cost once.
            assert total(fleet, "gigafactory_spend_usd", product=product) == pytest.approx(
                JOBS * COST
            )
            assert total(fleet, "gigafactory_queue_depth") == 0
            assert total(fleet, "gigafactory_factory_slots_used") == 0

            # What a submitter may not scrape.
            r = await api.post(
                "/fleet/keys", json={"name": "s", "role": "submitter", "products": [product]}
            )
            submitter = {"Authorization": f"Bearer {r.json()['key']}"}
            assert (await api.get("/metrics", headers=submitter)).status_code == 403

        # Every job was decided once by some process (placed, or queued then handed a slot);
        # the counters live in the process that decided, so they are summed over processes.
        decided: dict[str, float] = defaultdict(float)
        handoffs = 0.0
        per_process = {
            name: url for name, url in stack.metrics_urls.items() if "Temporal SDK" not in name
        }
        assert {"control-1", "api", "factory-obs-0", "factory-obs-1"} <= set(per_process)
        for url in per_process.values():
            own = await scrape(url)
            for labels, value in own.get("gigafactory_routing_decision_seconds_count", []):
                decided[labels["outcome"]] += value
            handoffs += total(own, "gigafactory_slot_handoffs_total")
        assert sum(decided.values()) >= JOBS, decided
        assert decided["placed"] + handoffs >= JOBS, (decided, handoffs)
        assert decided["placed"] + handoffs <= JOBS + decided["queued"], (decided, handoffs)

        # The Temporal SDK's own metrics, per process.
        sdk = await scrape(stack.metrics_urls["control-1 (Temporal SDK)"])
        assert any(name.startswith("temporal_") for name in sdk), sorted(sdk)[:20]
        assert total(sdk, "temporal_workflow_completed_total") >= JOBS

    # One trace per job, across the processes: the API's request, the workflow in the
    # control process, the agent's run on a factory, and the factory's reports to the API.
    spans = read_spans(settings.resolved_tracing_dir)
    services = {s["service"] for s in spans}
    assert {"gigafactory-api", "gigafactory-control", "gigafactory-factory"} <= services
    submits = [s for s in spans if s["name"] == "POST /fleet/jobs" and s["kind"] == "SERVER"]
    assert len(submits) == JOBS
    by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for span in spans:
        by_trace[span["traceId"]].append(span)
    for submit in submits:
        trace = by_trace[submit["traceId"]]
        names = {(s["service"], s["name"]) for s in trace}
        assert ("gigafactory-api", "StartWorkflow:JobWorkflow") in names, names
        assert ("gigafactory-control", "RunWorkflow:JobWorkflow") in names, names
        assert ("gigafactory-factory", "RunActivity:factory.run_agent") in names, names
        reports = [s for s in trace if s["service"] == "gigafactory-api" and s is not submit]
        assert any(s["name"].startswith("POST /fleet/jobs/{job_id}/") for s in reports), names
        # Every span but the submit has its parent in the same trace.
        ids = {s["spanId"] for s in trace}
        assert all(s["parentId"] in ids for s in trace if s is not submit), names
