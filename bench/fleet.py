"""`gigafactory bench`: throughput and latency of sim jobs against a bare Temporal baseline.

Both sides run on the same Temporal dev server, one after the other, with the same capacity
(K workers x S slots) and the same simulated work per job, so the ratio between them is
what the control plane costs (routing, slot hand-off, the store, the API, the agent
subprocess, lease heartbeats), independent of the machine. The fleet runs as a deployment
does: `serve control` (N processes), `serve api` and one `factory run` per factory, each a
process of its own (or all in this process with `in_process`); the baseline's workers run
in this process. Besides jobs/s and latencies it reports history events per job, the
longest workflow task, the control plane's CPU seconds per job and every process's memory
as the run went on.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import Worker

from bench.baseline import BaselineInput, baseline_activity
from bench.baseline_workflow import BaselineWorkflow
from bench.usage import ProcessUsage
from gigafactory.settings import Settings
from launch.cli.render import table
from launch.stack import DevStack, LocalFactory

__all__ = [
    "BenchReport",
    "Latency",
    "SideResult",
    "percentile",
    "render_report",
    "run_bench",
    "since",
    "wait_stage",
    "wait_terminal",
]

_SUBMIT_CONCURRENCY = 32
# Result long-polls open at once: the dev server refuses thousands of concurrent pollers.
_RESULT_CONCURRENCY = 64
_HISTORY_SAMPLE = 20
_TERMINAL = {"succeeded", "failed", "cancelled", "blocked"}
# Memory is compared between this many finished jobs (warm) and the end.
_WARM_JOBS = 200


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


@dataclass
class SideResult:
    """One side of the benchmark (the fleet or the baseline)."""

    name: str
    jobs: int
    succeeded: int
    wall_s: float
    to_start: Latency
    to_finish: Latency
    history_events: float
    # The longest workflow task of the sampled histories (started to completed).
    max_task_s: float = 0.0
    # CPU seconds of the control plane (fleet: API and control processes; baseline: this
    # process, whose workers are the baseline's control plane).
    cpu_s: float = 0.0
    processes: list[ProcessUsage] = field(default_factory=list)

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def cpu_ms_per_job(self) -> float:
        return 1000 * self.cpu_s / self.jobs if self.jobs else 0.0


@dataclass(frozen=True)
class BenchReport:
    jobs: int
    factories: int
    slots: int
    duration_s: float
    control_processes: int
    cores: int
    fleet: SideResult
    baseline: SideResult


def since(start: datetime, end_iso: str | None) -> float | None:
    """Seconds from `start` to an ISO time from the API (None when there is none)."""
    if not end_iso:
        return None
    return (datetime.fromisoformat(end_iso.replace("Z", "+00:00")) - start).total_seconds()


def history_sample(workflow_ids: list[str], size: int = _HISTORY_SAMPLE) -> list[str]:
    """`size` workflows spread evenly over the run, the first and the last included: the
    early ones placed at once, the late ones that waited longest in the queue."""
    if len(workflow_ids) <= size:
        return list(workflow_ids)
    step = (len(workflow_ids) - 1) / (size - 1)
    return [workflow_ids[round(i * step)] for i in range(size)]


async def _histories(client: Client, workflow_ids: list[str]) -> tuple[float, float]:
    """Mean history events and the longest workflow task over a sample of workflows."""
    counts: list[int] = []
    longest = 0.0
    for workflow_id in history_sample(workflow_ids):
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        counts.append(len(history.events))
        started: dict[int, datetime] = {}
        for event in history.events:
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                started[event.event_id] = event.event_time.ToDatetime()
            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                attrs = event.workflow_task_completed_event_attributes
                begun = started.get(attrs.started_event_id)
                if begun is not None:
                    took = (event.event_time.ToDatetime() - begun).total_seconds()
                    longest = max(longest, took)
    return (statistics.fmean(counts) if counts else 0.0), longest


def _usage(stack: DevStack) -> list[ProcessUsage]:
    usage = [
        ProcessUsage(p.name, p.pid, children=p.name.startswith("factory-"))
        for p in stack.processes
        if p.pid is not None
    ]
    server = stack.temporal_server.pid if stack.temporal_server else None
    if server is not None:
        usage.append(ProcessUsage("temporal", server))
    return usage


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
    usage = _usage(stack)
    own_cpu = time.process_time()
    for u in usage:
        u.begin()
    gate = asyncio.Semaphore(_SUBMIT_CONCURRENCY)
    urls = stack.api_urls or [stack.api_url]
    async with contextlib.AsyncExitStack() as clients:
        # Submits go to the API processes in turn.
        apis = [
            await clients.enter_async_context(
                httpx.AsyncClient(base_url=url, headers=headers, timeout=120)
            )
            for url in urls
        ]
        http = apis[0]

        async def submit(n: int) -> None:
            async with gate:
                at = datetime.now(UTC)
                r = await apis[n % len(apis)].post("/fleet/jobs", json=body)
                r.raise_for_status()
                submitted[r.json()["id"]] = at
                workflow_ids.append(r.json()["workflowId"])

        first = datetime.now(UTC)
        await asyncio.gather(*(submit(n) for n in range(jobs)))
        # Wait on the workflows themselves, as the baseline does (a bounded number of result
        # polls at once), so the measurement does not load the API it measures.
        finished = 0
        result_gate = asyncio.Semaphore(_RESULT_CONCURRENCY)
        client = stack.client

        async def result(workflow_id: str) -> None:
            nonlocal finished
            async with result_gate:
                await client.get_workflow_handle(workflow_id).result()
            finished += 1

        async def sample() -> None:
            while True:
                for u in usage:
                    u.sample(finished)
                await asyncio.sleep(1.0)

        sampler = asyncio.create_task(sample())
        await asyncio.gather(*(result(w) for w in workflow_ids))
        sampler.cancel()
        final: dict[str, dict[str, Any]] = {}
        continuation = None
        while True:
            params: dict[str, Any] = {"productId": product, "limit": 200}
            if continuation:
                params["continuation"] = continuation
            page = (await http.get("/fleet/jobs", params=params)).raise_for_status().json()
            final.update({job["id"]: job for job in page["items"]})
            continuation = page.get("continuation")
            if not continuation:
                break
        for u in usage:
            u.sample(finished)
            u.end()
        to_start: list[float] = []
        for job_id in submitted:
            runs = (await http.get(f"/fleet/jobs/{job_id}/runs")).raise_for_status().json()
            if runs["items"] and (s := since(submitted[job_id], runs["items"][-1]["startedAt"])):
                to_start.append(s)
    to_finish = [
        s for job_id, job in final.items() if (s := since(submitted[job_id], job["finishedAt"]))
    ]
    last = max(
        datetime.fromisoformat(j["finishedAt"].replace("Z", "+00:00")) for j in final.values()
    )
    events, longest = await _histories(stack.client, workflow_ids)
    control = [u for u in usage if u.name.startswith(("api", "control-"))]
    cpu = sum(u.cpu_s for u in control) if usage else time.process_time() - own_cpu
    return SideResult(
        name="gigafactory",
        jobs=jobs,
        succeeded=sum(1 for j in final.values() if j["stage"] == "succeeded"),
        wall_s=(last - first).total_seconds(),
        to_start=Latency.of(to_start),
        to_finish=Latency.of(to_finish),
        history_events=events,
        max_task_s=longest,
        cpu_s=cpu,
        processes=usage,
    )


async def bench_baseline(
    client: Client,
    jobs: int,
    factories: int,
    slots: int,
    duration_s: float,
    server_pid: int | None = None,
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
    start_gate = asyncio.Semaphore(_SUBMIT_CONCURRENCY)
    result_gate = asyncio.Semaphore(_RESULT_CONCURRENCY)
    to_start: list[float] = []
    to_finish: list[float] = []
    finished: list[datetime] = []
    workflow_ids: list[str] = []
    cpu = time.process_time()
    server = [ProcessUsage("temporal", server_pid)] if server_pid is not None else []
    for u in server:
        u.begin()
    try:

        async def one(i: int) -> None:
            async with start_gate:
                at = datetime.now(UTC)
                handle = await client.start_workflow(
                    BaselineWorkflow.run,
                    BaselineInput(task_queue=act_queues[i % factories], duration_s=duration_s),
                    id=f"bench-{run}-{i}",
                    task_queue=wf_queue,
                )
                workflow_ids.append(handle.id)
            async with result_gate:
                result = await handle.result()
            to_start.append((result.started_at - at).total_seconds())
            to_finish.append((result.finished_at - at).total_seconds())
            finished.append(result.finished_at)

        first = datetime.now(UTC)
        await asyncio.gather(*(one(i) for i in range(jobs)))
        cpu = time.process_time() - cpu
        for u in server:
            u.end()
        events, longest = await _histories(client, workflow_ids)
    finally:
        for worker in workers:
            await worker.shutdown()
        for task in tasks:
            task.cancel()
    return SideResult(
        name="bare Temporal",
        jobs=jobs,
        succeeded=len(to_finish),
        wall_s=(max(finished) - first).total_seconds(),
        to_start=Latency.of(to_start),
        to_finish=Latency.of(to_finish),
        history_events=events,
        max_task_s=longest,
        cpu_s=cpu,
        processes=server,
    )


async def run_bench(
    settings: Settings,
    *,
    jobs: int,
    factories: int,
    slots: int = 2,
    duration_s: float = 0.0,
    control_processes: int = 1,
    api_processes: int = 1,
    in_process: bool = False,
) -> BenchReport:
    """Start a fresh stack (no UI) in a temporary data dir and measure both sides."""
    with tempfile.TemporaryDirectory(prefix="gigafactory-bench-") as tmp:
        stack = DevStack(
            # Submits unthrottled: the benchmark measures the pipeline, not the rate limit.
            settings.model_copy(
                update={"data_dir": Path(tmp), "temporal_address": None, "rate_submit_per_s": 0}
            ),
            factories=[
                LocalFactory(id=f"bench-{i + 1}", engines=("sim",), slots=slots)
                for i in range(factories)
            ],
            fallback_ports=True,
            ui=False,
            in_process=in_process,
            control_processes=control_processes,
            api_processes=api_processes,
        )
        async with stack:
            assert stack.client is not None
            server = stack.temporal_server.pid if stack.temporal_server else None
            baseline = await bench_baseline(
                stack.client, jobs, factories, slots, duration_s, server_pid=server
            )
            fleet = await bench_fleet(stack, jobs, duration_s)
    cores = len(os.sched_getaffinity(0))
    return BenchReport(
        jobs, factories, slots, duration_s, control_processes, cores, fleet, baseline
    )


def render_report(report: BenchReport) -> str:
    """The benchmark as tables: both sides with their ratios, then every process."""

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
            f"{side.max_task_s:.3f}",
            f"{side.cpu_ms_per_job:.1f}",
        ]

    f, b = report.fleet, report.baseline

    def ratio(a: float, c: float) -> str:
        return f"{a / c:.2f}x" if c > 0 else "-"

    ratios = [
        "ratio",
        "",
        ratio(f.jobs_per_s, b.jobs_per_s),
        ratio(f.to_start.p50, b.to_start.p50),
        ratio(f.to_start.p99, b.to_start.p99),
        ratio(f.to_finish.p50, b.to_finish.p50),
        ratio(f.to_finish.p99, b.to_finish.p99),
        ratio(f.history_events, b.history_events),
        "",
        ratio(f.cpu_ms_per_job, b.cpu_ms_per_job),
    ]
    head = (
        f"{report.jobs} jobs, {report.factories} factories x {report.slots} slots, "
        f"{report.duration_s:g}s of simulated work each, {report.control_processes} control "
        f"process(es), {report.cores} cores (latencies in seconds)"
    )
    sides = table(
        [
            "",
            "ok",
            "jobs/s",
            "start p50",
            "start p99",
            "finish p50",
            "finish p99",
            "events",
            "max task",
            "cpu ms/job",
        ],  # fmt: skip
        [row(f), row(b), ratios],
    )
    parts = [head, sides]
    for side in (b,):
        for u in side.processes:
            parts.append(f"{side.name}: {u.name} process {u.cpu_s:.1f} CPU s")
    if f.processes:
        warm = min(_WARM_JOBS, report.jobs)
        parts.append(
            table(
                ["process", "cpu s", f"rss MB at {warm} done", "rss MB at the end"],
                [
                    (u.name, f"{u.cpu_s:.1f}", f"{u.rss_at(warm):.0f}", f"{u.rss_end:.0f}")
                    for u in f.processes
                ],
            )
        )
    return "\n".join(parts)


async def wait_stage(http: httpx.AsyncClient, job_id: str, stages: set[str]) -> str:
    """Poll the API until the job is in one of `stages`."""
    while True:
        stage = str((await http.get(f"/fleet/jobs/{job_id}")).raise_for_status().json()["stage"])
        if stage in stages:
            return stage
        await asyncio.sleep(0.1)


async def wait_terminal(http: httpx.AsyncClient, job_id: str) -> str:
    """Poll the API until the job has ended."""
    return await wait_stage(http, job_id, _TERMINAL)
