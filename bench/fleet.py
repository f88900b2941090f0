"""`gigafactory bench`: throughput and latency of sim jobs against a bare Temporal baseline.

Both sides run in the same process on the same Temporal dev server, one after the other,
with the same capacity (K workers x S slots) and the same simulated work per job, so the
ratio between them is what the control plane costs (routing, slot reservation, the store,
the API, the agent subprocess, lease heartbeats), independent of the machine.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.worker import Worker

from bench.baseline import BaselineInput, BaselineWorkflow, baseline_activity
from gigafactory.settings import Settings
from launch.cli.render import table
from launch.stack import DevStack, LocalFactory

__all__ = [
    "BenchReport",
    "Latency",
    "PreemptionBenchReport",
    "SideResult",
    "percentile",
    "render_preemption_report",
    "render_report",
    "run_bench",
    "run_preemption_bench",
]

_SUBMIT_CONCURRENCY = 32
_HISTORY_SAMPLE = 20
_TERMINAL = {"succeeded", "failed", "cancelled", "blocked"}


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Latency:
    p50: float
    p99: float
    mean: float

    @classmethod
    def of(cls, values: list[float]) -> Latency:
        mean = statistics.fmean(values) if values else 0.0
        return cls(percentile(values, 50), percentile(values, 99), mean)


@dataclass(frozen=True)
class SideResult:
    """One side of the benchmark (the fleet or the baseline)."""

    name: str
    jobs: int
    succeeded: int
    wall_s: float
    to_start: Latency
    to_finish: Latency
    history_events: float

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.wall_s if self.wall_s > 0 else 0.0


@dataclass(frozen=True)
class BenchReport:
    jobs: int
    factories: int
    slots: int
    duration_s: float
    fleet: SideResult
    baseline: SideResult


def _since(start: datetime, end_iso: str | None) -> float | None:
    if not end_iso:
        return None
    return (datetime.fromisoformat(end_iso.replace("Z", "+00:00")) - start).total_seconds()


async def _history_events(client: Client, workflow_ids: list[str]) -> float:
    counts = []
    for workflow_id in workflow_ids[:_HISTORY_SAMPLE]:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        counts.append(len(history.events))
    return statistics.fmean(counts) if counts else 0.0


async def bench_fleet(stack: DevStack, jobs: int, duration_s: float) -> SideResult:
    """Submit `jobs` sim jobs through the API and wait for all of them."""
    assert stack.client is not None
    headers = {"Authorization": f"Bearer {stack.admin_key}"}
    product = f"bench{uuid.uuid4().hex[:6]}"
    body = {
        "engine": "sim",
        "prompt": "benchmark",
        "productId": product,
        "params": {"durationS": duration_s},
    }
    submitted: dict[str, datetime] = {}
    workflow_ids: list[str] = []
    gate = asyncio.Semaphore(_SUBMIT_CONCURRENCY)
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=60) as http:

        async def submit() -> None:
            async with gate:
                at = datetime.now(UTC)
                r = await http.post("/fleet/jobs", json=body)
                r.raise_for_status()
                submitted[r.json()["id"]] = at
                workflow_ids.append(r.json()["workflowId"])

        first = datetime.now(UTC)
        await asyncio.gather(*(submit() for _ in range(jobs)))
        final: dict[str, dict[str, Any]] = {}
        while len(final) < jobs:
            await asyncio.sleep(0.25)
            continuation = None
            while True:
                params: dict[str, Any] = {"productId": product, "limit": 200}
                if continuation:
                    params["continuation"] = continuation
                page = (await http.get("/fleet/jobs", params=params)).raise_for_status().json()
                for job in page["items"]:
                    if job["stage"] in _TERMINAL:
                        final[job["id"]] = job
                continuation = page.get("continuation")
                if not continuation:
                    break
        to_start: list[float] = []
        for job_id in submitted:
            runs = (await http.get(f"/fleet/jobs/{job_id}/runs")).raise_for_status().json()
            if runs["items"] and (s := _since(submitted[job_id], runs["items"][-1]["startedAt"])):
                to_start.append(s)
    to_finish = [
        s for job_id, job in final.items() if (s := _since(submitted[job_id], job["finishedAt"]))
    ]
    last = max(
        datetime.fromisoformat(j["finishedAt"].replace("Z", "+00:00")) for j in final.values()
    )
    return SideResult(
        name="gigafactory",
        jobs=jobs,
        succeeded=sum(1 for j in final.values() if j["stage"] == "succeeded"),
        wall_s=(last - first).total_seconds(),
        to_start=Latency.of(to_start),
        to_finish=Latency.of(to_finish),
        history_events=await _history_events(stack.client, workflow_ids),
    )


async def bench_baseline(
    client: Client, jobs: int, factories: int, slots: int, duration_s: float
) -> SideResult:
    """The same load as bare workflows, each running one activity, same capacity.

    Like factories, each activity worker has its own queue; workflows go round-robin.
    """
    run = uuid.uuid4().hex[:8]
    wf_queue = f"bench-wf-{run}"
    act_queues = [f"bench-act-{run}-{i}" for i in range(factories)]
    workers = [Worker(client, task_queue=wf_queue, workflows=[BaselineWorkflow])] + [
        Worker(
            client,
            task_queue=queue,
            activities=[baseline_activity],
            max_concurrent_activities=slots,
        )
        for queue in act_queues
    ]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    gate = asyncio.Semaphore(_SUBMIT_CONCURRENCY)
    to_start: list[float] = []
    to_finish: list[float] = []
    workflow_ids: list[str] = []
    try:

        async def one(i: int) -> None:
            async with gate:
                at = datetime.now(UTC)
                handle = await client.start_workflow(
                    BaselineWorkflow.run,
                    BaselineInput(task_queue=act_queues[i % factories], duration_s=duration_s),
                    id=f"bench-{run}-{i}",
                    task_queue=wf_queue,
                )
                workflow_ids.append(handle.id)
            result = await handle.result()
            to_start.append((result.started_at - at).total_seconds())
            to_finish.append((datetime.now(UTC) - at).total_seconds())

        began = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(jobs)))
        wall = time.monotonic() - began
        events = await _history_events(client, workflow_ids)
    finally:
        for worker in workers:
            await worker.shutdown()
        for task in tasks:
            task.cancel()
    return SideResult(
        name="bare Temporal",
        jobs=jobs,
        succeeded=len(to_finish),
        wall_s=wall,
        to_start=Latency.of(to_start),
        to_finish=Latency.of(to_finish),
        history_events=events,
    )


async def run_bench(
    settings: Settings,
    *,
    jobs: int,
    factories: int,
    slots: int = 2,
    duration_s: float = 0.0,
) -> BenchReport:
    """Start a fresh stack (no UI) in a temporary data dir and measure both sides."""
    with tempfile.TemporaryDirectory(prefix="gigafactory-bench-") as tmp:
        stack = DevStack(
            settings.model_copy(update={"data_dir": Path(tmp), "temporal_address": None}),
            factories=[
                LocalFactory(id=f"bench-{i + 1}", engines=("sim",), slots=slots)
                for i in range(factories)
            ],
            fallback_ports=True,
            ui=False,
        )
        async with stack:
            assert stack.client is not None
            baseline = await bench_baseline(stack.client, jobs, factories, slots, duration_s)
            fleet = await bench_fleet(stack, jobs, duration_s)
    return BenchReport(jobs, factories, slots, duration_s, fleet, baseline)


def render_report(report: BenchReport) -> str:
    """The benchmark as a table, with the fleet/baseline ratios."""

    def row(side: SideResult) -> list[str]:
        return [
            side.name,
            f"{side.succeeded}/{side.jobs}",
            f"{side.jobs_per_s:.1f}",
            f"{side.to_start.p50:.3f}",
            f"{side.to_start.p99:.3f}",
            f"{side.to_finish.p50:.3f}",
            f"{side.to_finish.p99:.3f}",
            f"{side.history_events:.0f}",
        ]

    f, b = report.fleet, report.baseline

    def ratio(a: float, c: float) -> str:
        return f"{a / c:.1f}x" if c > 0 else "-"

    ratios = [
        "ratio",
        "",
        ratio(f.jobs_per_s, b.jobs_per_s),
        ratio(f.to_start.p50, b.to_start.p50),
        ratio(f.to_start.p99, b.to_start.p99),
        ratio(f.to_finish.p50, b.to_finish.p50),
        ratio(f.to_finish.p99, b.to_finish.p99),
        ratio(f.history_events, b.history_events),
    ]
    head = (
        f"{report.jobs} jobs, {report.factories} factories x {report.slots} slots, "
        f"{report.duration_s:g}s of simulated work each (latencies in seconds)"
    )
    return (
        head
        + "\n"
        + table(
            ["", "ok", "jobs/s", "start p50", "start p99", "finish p50", "finish p99", "events"],
            [row(f), row(b), ratios],
        )
    )


@dataclass(frozen=True)
class PreemptionBenchReport:
    """Submit-to-start of a critical job: idle fleet vs a fleet full of low jobs."""

    factories: int
    slots: int
    idle: Latency
    full: Latency
    evictions: int

    @property
    def ratio(self) -> float:
        return self.full.p50 / self.idle.p50 if self.idle.p50 > 0 else 0.0


async def _time_to_start(http: httpx.AsyncClient, body: dict[str, Any]) -> tuple[str, float]:
    """Submit a job and return the seconds until its agent was running (its `running`
    event: the factory started the agent, after any victims stopped)."""
    at = datetime.now(UTC)
    r = await http.post("/fleet/jobs", json=body)
    r.raise_for_status()
    job_id = str(r.json()["id"])
    await _wait_terminal(http, job_id)
    events = (await http.get(f"/fleet/jobs/{job_id}/events")).raise_for_status().json()["items"]
    running = next(e["at"] for e in events if e.get("stage") == "running")
    started = _since(at, running)
    assert started is not None
    return job_id, started


async def run_preemption_bench(
    settings: Settings, *, factories: int = 2, slots: int = 2, repeats: int = 5
) -> PreemptionBenchReport:
    """A critical job's submit-to-start, idle fleet first, then with every slot held by a
    low job (FLEET_PREEMPTION on: it evicts one), `repeats` times each, same stack."""
    with tempfile.TemporaryDirectory(prefix="gigafactory-bench-") as tmp:
        stack = DevStack(
            settings.model_copy(
                update={"data_dir": Path(tmp), "temporal_address": None, "preemption": True}
            ),
            factories=[
                LocalFactory(id=f"bench-{i + 1}", engines=("sim",), slots=slots)
                for i in range(factories)
            ],
            fallback_ports=True,
            ui=False,
        )
        async with stack:
            headers = {"Authorization": f"Bearer {stack.admin_key}"}
            async with httpx.AsyncClient(
                base_url=stack.api_url, headers=headers, timeout=60
            ) as http:
                product = f"bench{uuid.uuid4().hex[:6]}"

                def job(priority: str, duration: float) -> dict[str, Any]:
                    return {
                        "engine": "sim",
                        "prompt": "benchmark",
                        "productId": product,
                        "priority": priority,
                        "params": {"durationS": duration},
                    }

                idle: list[float] = []
                for _ in range(repeats):
                    critical, took = await _time_to_start(http, job("critical", 0))
                    idle.append(took)
                    await _wait_terminal(http, critical)
                full: list[float] = []
                evictions = 0
                for _ in range(repeats):
                    lows = [
                        (await http.post("/fleet/jobs", json=job("low", 600))).json()["id"]
                        for _ in range(factories * slots)
                    ]
                    for low in lows:
                        await _wait_stage(http, low, {"running"})
                    critical, took = await _time_to_start(http, job("critical", 0))
                    full.append(took)
                    await _wait_terminal(http, critical)
                    for low in lows:
                        events = (await http.get(f"/fleet/jobs/{low}/events")).json()["items"]
                        evictions += sum(1 for e in events if e["kind"] == "preempted")
                        await http.patch(f"/fleet/jobs/{low}", json={"action": "cancel"})
                    for low in lows:
                        await _wait_terminal(http, low)
    return PreemptionBenchReport(factories, slots, Latency.of(idle), Latency.of(full), evictions)


async def _wait_stage(http: httpx.AsyncClient, job_id: str, stages: set[str]) -> str:
    while True:
        stage = str((await http.get(f"/fleet/jobs/{job_id}")).raise_for_status().json()["stage"])
        if stage in stages:
            return stage
        await asyncio.sleep(0.1)


async def _wait_terminal(http: httpx.AsyncClient, job_id: str) -> str:
    return await _wait_stage(http, job_id, _TERMINAL)


def render_preemption_report(report: PreemptionBenchReport) -> str:
    head = (
        f"critical job submit-to-start, {report.factories} factories x {report.slots} slots "
        f"(seconds; {report.evictions} evictions)"
    )
    rows = [
        ("idle fleet (baseline)", f"{report.idle.p50:.3f}", f"{report.idle.p99:.3f}"),
        ("fleet full of low jobs", f"{report.full.p50:.3f}", f"{report.full.p99:.3f}"),
        ("ratio", f"{report.ratio:.1f}x", ""),
    ]
    return head + "\n" + table(["", "p50", "p99"], rows)
