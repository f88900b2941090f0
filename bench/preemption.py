"""`gigafactory bench --preemption`: a critical job's submit-to-start on an idle fleet and on
a fleet full of low jobs (FLEET_PREEMPTION on), in the same run."""

from __future__ import annotations

import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.fleet import Latency, since, wait_stage, wait_terminal
from gigafactory.settings import Settings
from launch.cli.render import table
from launch.stack import DevStack, LocalFactory

__all__ = ["PreemptionBenchReport", "render_preemption_report", "run_preemption_bench"]


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
    await wait_terminal(http, job_id)
    events = (await http.get(f"/fleet/jobs/{job_id}/events")).raise_for_status().json()["items"]
    running = next(e["at"] for e in events if e.get("stage") == "running")
    started = since(at, running)
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
                    await wait_terminal(http, critical)
                full: list[float] = []
                evictions = 0
                for _ in range(repeats):
                    lows = [
                        (await http.post("/fleet/jobs", json=job("low", 600))).json()["id"]
                        for _ in range(factories * slots)
                    ]
                    for low in lows:
                        await wait_stage(http, low, {"running"})
                    critical, took = await _time_to_start(http, job("critical", 0))
                    full.append(took)
                    await wait_terminal(http, critical)
                    for low in lows:
                        events = (await http.get(f"/fleet/jobs/{low}/events")).json()["items"]
                        evictions += sum(1 for e in events if e["kind"] == "preempted")
                        await http.patch(f"/fleet/jobs/{low}", json={"action": "cancel"})
                    for low in lows:
                        await wait_terminal(http, low)
    return PreemptionBenchReport(factories, slots, Latency.of(idle), Latency.of(full), evictions)


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
