"""Two control processes and two API processes on one store and one Temporal namespace,
coordinating through nothing else: every invariant still holds.

The stack is `gigafactory dev`'s own (DevStack in process mode): `serve control` x2 (each
with its dispatcher and reconciler racing the other for every freed slot), `serve api` x2
(jobs submitted to both; factories report to one each), three `factory run` processes.
The evidence is what the factories reported (runs with their start and end) and the
store's ledger, read back through the API after the run.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from launch.devserver import TemporalDevServer, free_port
from launch.stack import DevStack, LocalFactory
from tests.support.stacks import process_stack_settings

pytestmark = pytest.mark.temporal

JOBS = 48
LOCKED = 10  # of which share one lock
SLOTS = 2
COST = 0.01


def overlaps(intervals: list[tuple[datetime, datetime]]) -> int:
    """The most intervals open at one instant (an end and a start at the same instant do
    not overlap)."""
    edges = sorted(
        itertools.chain.from_iterable(((a, 1), (b, -1)) for a, b in intervals),
        key=lambda e: (e[0], e[1]),
    )
    most = open_now = 0
    for _, step in edges:
        open_now += step
        most = max(most, open_now)
    return most


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_two_control_and_two_api_processes_keep_every_invariant(
    temporal_server: TemporalDevServer, tmp_path: Path
) -> None:
    product = f"mp{free_port()}"
    settings = process_stack_settings(temporal_server, tmp_path, "mp", reconcile_s=0.5)
    stack = DevStack(
        settings,
        factories=[LocalFactory(id=f"mp-{i}", engines=("sim",), slots=SLOTS) for i in range(3)],
        fallback_ports=True,
        ui=False,
        control_processes=2,
        api_processes=2,
    )
    async with stack:
        assert len(stack.api_urls) == 2
        assert sum(p.name.startswith("control-") for p in stack.processes) == 2
        headers = {"Authorization": f"Bearer {stack.admin_key}"}
        apis = [httpx.AsyncClient(base_url=u, headers=headers, timeout=60) for u in stack.api_urls]
        try:
            r = await apis[0].put(
                f"/fleet/budgets/{product}", json={"ceilingUsd": 100.0, "window": "none"}
            )
            assert r.status_code == 200, r.text

            async def submit(n: int) -> str:
                body: dict[str, Any] = {
                    "engine": "sim",
                    "prompt": f"job {n}",
                    "productId": product,
                    "priority": ("low", "normal", "high")[n % 3],
                    "params": {"durationS": 0.2 + (n % 4) * 0.1, "costUsd": COST},
                }
                if n < LOCKED:
                    body["lock"] = f"{product}-lock"
                r = await apis[n % 2].post("/fleet/jobs", json=body)
                assert r.status_code == 201, r.text
                return str(r.json()["id"])

            ids = await asyncio.gather(*(submit(n) for n in range(JOBS)))

            deadline = time.monotonic() + 240
            jobs: dict[str, dict[str, Any]] = {}
            while time.monotonic() < deadline:
                page = (
                    await apis[1].get("/fleet/jobs", params={"productId": product, "limit": 200})
                ).json()
                jobs = {j["id"]: j for j in page["items"]}
                if len(jobs) == JOBS and all(
                    j["stage"] in ("succeeded", "failed", "cancelled") for j in jobs.values()
                ):
                    break
                await asyncio.sleep(0.5)

            # Nothing lost, nothing stuck: every job succeeded.
            stages = {j["stage"] for j in jobs.values()}
            assert set(jobs) == set(ids) and stages == {"succeeded"}, stages

            runs: dict[str, list[dict[str, Any]]] = {}
            for n, job_id in enumerate(ids):
                r = await apis[n % 2].get(f"/fleet/jobs/{job_id}/runs")
                runs[job_id] = r.json()["items"]
            # One successful run per job: no slot was handed to a job twice.
            for job_id, its_runs in runs.items():
                succeeded = [r for r in its_runs if r["outcome"] == "succeeded"]
                assert len(succeeded) == 1, (job_id, its_runs)
            every = [r for its_runs in runs.values() for r in its_runs]
            # Slots never exceeded on any factory.
            for factory_id in {r["factoryId"] for r in every}:
                on_it = [
                    (when(r["startedAt"]), when(r["finishedAt"]))
                    for r in every
                    if r["factoryId"] == factory_id
                ]
                assert overlaps(on_it) <= SLOTS, factory_id
            # The lock's holders never overlapped, wherever they ran.
            locked = [job_id for job_id, j in jobs.items() if j["spec"].get("lock")]
            assert len(locked) == LOCKED
            held = [
                (when(r["startedAt"]), when(r["finishedAt"]))
                for job_id in locked
                for r in runs[job_id]
            ]
            assert overlaps(held) == 1
            # Spend counted once: the budget's ledger is the sum of the runs.
            budget = (await apis[0].get(f"/fleet/budgets/{product}")).json()
            total = sum(r["costUsd"] for r in every)
            assert total == pytest.approx(JOBS * COST)
            assert budget["spentUsd"] == pytest.approx(total)
            # Nothing left reserved or queued.
            for factory_id in {r["factoryId"] for r in every}:
                factory = (await apis[0].get(f"/fleet/factories/{factory_id}")).json()
                assert factory["slotsInUse"] == 0, factory
        finally:
            for api in apis:
                await api.aclose()
