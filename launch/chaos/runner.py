"""A chaos run: a dev stack of processes, seeded jobs and faults, a drain, the invariants.

The run has three phases. Chaos: jobs are submitted at a steady rate while the planned
faults are done at their offsets; it lasts until every job is submitted, every kind of
fault was done at least once, and no job is left in flight but those waiting on the
budget product's ceiling (or `max_faults` were done). Drain: the ceiling is raised so the
jobs waiting on it run, and no more faults are done; it ends when every job is terminal
and every job workflow closed, or at the drain deadline. Evidence: the store, Temporal,
the controllers, the factories' logs and the sim trace are read and checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from activities.engines.sim_agent import TRACE_ENV
from bench.fleet import percentile
from gigafactory.models import Job, WaitReason
from gigafactory.services.idempotency import HEADER as IDEMPOTENCY_HEADER
from gigafactory.settings import Settings
from gigafactory.store import open_store
from gigafactory.store.fleet_store import FleetStore
from launch.chaos.evidence import gather_evidence, list_product_jobs, workflow_status
from launch.chaos.faults import FaultRecord, do_fault
from launch.chaos.invariants import TERMINAL, Check, check_all, stale_reports_fenced
from launch.chaos.plan import BUDGET_PRODUCT, Fault, FaultKind, JobPlan, plan_faults, plan_jobs
from launch.chaos.records import Evidence
from launch.devserver import free_port
from launch.stack import DevStack, LocalFactory

__all__ = ["ChaosError", "ChaosOptions", "ChaosReport", "run_chaos"]

logger = logging.getLogger(__name__)

# Timers of the chaos stack: short leases and health windows, so a killed or frozen
# factory's jobs are requeued within seconds (the e2e tests use the same order of values).
CHAOS_TIMERS: dict[str, float] = {
    "factory_heartbeat_interval_s": 1.0,
    "factory_unhealthy_after_s": 6.0,
    "lease_heartbeat_timeout_s": 5.0,
    "dispatch_timeout_s": 10.0,
    "stop_grace_s": 2.0,
    "log_chunk_interval_s": 0.5,
}
# A fault every few seconds on a handful of factories meets most attempts: a job can find
# five faulted factories in a row, which the default limit (5) rightly treats as a job that
# takes its factories down. The chaos stack checks that no job is lost, so it allows more.
CHAOS_MAX_LOST_ATTEMPTS = 20
# What the budget product's ceiling is raised to for the drain.
_RAISED_CEILING_USD = 1_000_000.0
_SUBMIT_CONCURRENCY = 8
_SUBMIT_GIVE_UP_S = 180.0
_POLL_S = 2.0


class ChaosError(RuntimeError):
    """The run could not be carried out (not an invariant broken: a bad option, a refusal)."""


@dataclass(frozen=True)
class ChaosOptions:
    """The size and pace of a run; see `gigafactory chaos --help`."""

    jobs: int = 30
    factories: int = 3
    slots: int = 2
    seed: int = 0
    every_s: float = 3.0
    freeze_s: float = 12.0
    submit_rate: float | None = None  # jobs/s; None: spread over the first faults
    max_faults: int = 1000
    drain_timeout_s: float = 300.0
    data_dir: Path | None = None
    control_processes: int = 1


@dataclass
class ChaosReport:
    """What a run did and found."""

    options: ChaosOptions
    faults: list[FaultRecord]
    checks: list[Check]
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "options": {
                k: str(v) if isinstance(v, Path) else v for k, v in asdict(self.options).items()
            },
            "faults": [
                {"kind": f.kind.value, "target": f.target, "at": f.at, "error": f.error}
                for f in self.faults
            ],
            "checks": [
                {
                    "name": c.name,
                    "value": c.value,
                    "expected": c.expected,
                    "ok": c.ok,
                    "detail": c.detail,
                }
                for c in self.checks
            ],  # fmt: skip
            "figures": self.figures,
        }


@dataclass
class _Submissions:
    accepted: dict[str, float] = field(default_factory=dict)  # job id -> submit wall time
    uncertain_retries: int = 0
    refused: list[str] = field(default_factory=list)


async def _submit(
    http: httpx.AsyncClient, body: dict[str, Any], subs: _Submissions, key: str
) -> None:
    """POST one job, retrying while the API or Temporal is down. Each job has its own
    Idempotency-Key, so a retry after an attempt whose answer was lost returns the job
    that attempt made instead of a second one (those retries are counted)."""
    deadline = time.monotonic() + _SUBMIT_GIVE_UP_S
    delay = 0.25
    while True:
        at = time.time()
        uncertain = False
        try:
            response = await http.post("/fleet/jobs", json=body, headers={IDEMPOTENCY_HEADER: key})
        except httpx.ConnectError:
            response = None
        except httpx.TransportError:
            response, uncertain = None, True
        if response is not None and response.status_code < 300:
            # A replayed answer keeps the time of the first attempt that was accepted.
            subs.accepted.setdefault(str(response.json()["id"]), at)
            return
        if response is not None and response.status_code < 500 and response.status_code != 429:
            raise ChaosError(
                f"the API refused a chaos job ({response.status_code}): {response.text}"
            )
        if response is not None and response.status_code >= 500:
            uncertain = True
        if time.monotonic() > deadline:
            subs.refused.append(str(body.get("labels", {}).get("chaosRef")))
            logger.warning("chaos: gave up submitting job %s", body.get("labels"))
            return
        subs.uncertain_retries += uncertain
        await asyncio.sleep(delay)
        delay = min(delay * 2, 4.0)


async def _submit_all(
    http: httpx.AsyncClient, plan: JobPlan, rate: float, subs: _Submissions, run_id: str
) -> None:
    bodies = list(plan.leaves) + ([plan.dag] if plan.dag is not None else [])
    gate = asyncio.Semaphore(_SUBMIT_CONCURRENCY)
    begun = time.monotonic()

    async def one(n: int, body: dict[str, Any]) -> None:
        await asyncio.sleep(max(0.0, begun + n / rate - time.monotonic()) if rate > 0 else 0.0)
        async with gate:
            await _submit(http, body, subs, f"chaos-{run_id}-{n}")

    await asyncio.gather(*(one(n, b) for n, b in enumerate(bodies)))


def _in_flight(jobs: list[Job]) -> list[Job]:
    """Jobs not terminal and not waiting on the budget ceiling."""
    return [j for j in jobs if j.stage.value not in TERMINAL and j.wait_reason != WaitReason.BUDGET]


async def _chaos_phase(
    stack: DevStack,
    store: FleetStore,
    faults: list[Fault],
    submitting: asyncio.Task[None],
    options: ChaosOptions,
    products: list[str],
) -> list[FaultRecord]:
    """Do the faults at their offsets until the chaos phase is over (module docstring)."""
    begun = time.monotonic()
    tasks: list[asyncio.Task[FaultRecord]] = []
    kinds_done: set[FaultKind] = set()
    for fault in faults[: options.max_faults]:
        await asyncio.sleep(max(0.0, begun + fault.at_s - time.monotonic()))
        if submitting.done() and kinds_done >= set(FaultKind):
            jobs = await list_product_jobs(store, products)
            if not _in_flight(jobs):
                break
        kinds_done.add(fault.kind)
        tasks.append(asyncio.create_task(do_fault(stack, fault)))
    await submitting
    return list(await asyncio.gather(*tasks))


async def _drain(stack: DevStack, store: FleetStore, products: list[str], timeout_s: float) -> bool:
    """Until every job is terminal and every job workflow closed; False at the deadline."""
    assert stack.client is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        jobs = await list_product_jobs(store, products)
        if all(j.stage.value in TERMINAL for j in jobs):
            statuses = [await workflow_status(stack.client, j.workflow_id) for j in jobs]
            if "RUNNING" not in statuses:
                return True
        await asyncio.sleep(_POLL_S)
    return False


def _figures(
    ev: Evidence,
    plan: JobPlan,
    subs: _Submissions,
    faults: list[FaultRecord],
    started_at: dict[str, datetime],
    extra: dict[str, Any],
) -> dict[str, Any]:
    # Jobs of the budget product wait on its ceiling, by design, until the drain.
    to_start = [
        started_at[j].timestamp() - at
        for j, at in subs.accepted.items()
        if j in started_at and ev.jobs[j].product_id != BUDGET_PRODUCT
    ]
    stages = Counter(j.stage for j in ev.jobs.values())
    runs = [r for j in ev.jobs.values() for r in j.runs]
    outcomes = Counter(r.outcome or "open" for r in runs)
    stale_sent, stale_fenced, _ = stale_reports_fenced(ev)
    return {
        "jobs planned": plan.total_jobs,
        "submissions accepted": len(subs.accepted),
        "jobs in the store": sum(j.stage is not None for j in ev.jobs.values()),
        "submits retried after a lost answer (idempotent)": subs.uncertain_retries,
        "submits given up": len(subs.refused),
        "jobs succeeded": stages.get("succeeded", 0),
        "runs": len(runs),
        "runs lost (factory gone) and re-run": outcomes.get("lost", 0),
        "most runs of one job lost": max(
            (sum(r.outcome == "lost" for r in j.runs) for j in ev.jobs.values()), default=0
        ),
        "runs preempted": outcomes.get("preempted", 0),
        "runs by outcome": dict(sorted(outcomes.items())),
        "jobs with more than one run": sum(len(j.runs) > 1 for j in ev.jobs.values()),
        "sim agents traced": len(ev.intervals),
        "ledger usd": round(sum(s.usd for s in ev.spend), 6),
        "faults": dict(sorted(Counter(f.kind.value for f in faults).items())),
        "faults that failed": sum(f.error is not None for f in faults),
        "stale reports sent": stale_sent,
        "stale reports fenced": stale_fenced,
        "submit-to-start p50 s": round(percentile(to_start, 50), 3),
        "submit-to-start p99 s": round(percentile(to_start, 99), 3),
        **extra,
    }


async def run_chaos(settings: Settings, options: ChaosOptions) -> ChaosReport:
    """Run the whole thing on a fresh stack in `options.data_dir` (a temporary directory
    when None) and return the report; the stack is stopped on every exit path."""
    if options.jobs < 1 or options.factories < 1 or options.slots < 1 or options.every_s <= 0:
        raise ChaosError("jobs, factories and slots must be >= 1 and events-every > 0")
    with contextlib.ExitStack() as cleanup:
        data_dir = options.data_dir
        if data_dir is None:
            data_dir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="gf-chaos-")))
        return await _run(settings, options, data_dir)


async def _run(settings: Settings, options: ChaosOptions, data_dir: Path) -> ChaosReport:
    plan = plan_jobs(options.seed, options.jobs)
    factory_ids = [f"chaos-{i + 1}" for i in range(options.factories)]
    kinds = len(FaultKind)
    faults = plan_faults(
        options.seed,
        every_s=options.every_s,
        count=options.max_faults,
        factories=factory_ids,
        freeze_s=options.freeze_s,
        controls=options.control_processes,
    )
    rate = options.submit_rate or plan.total_jobs / (options.every_s * kinds)
    trace_file = data_dir / "sim-trace.jsonl"
    chaos_settings = settings.model_copy(
        update={
            "data_dir": data_dir,
            # Ports of its own: a `gigafactory dev` started meanwhile keeps the usual ones.
            "api_port": free_port(settings.api_host),
            "temporal_port": free_port(),
            "temporal_address": None,
            "rate_submit_per_s": 0,
            "budgets": True,
            "preemption": True,
            "max_lost_attempts": CHAOS_MAX_LOST_ATTEMPTS,
            **CHAOS_TIMERS,
        }
    )
    stack = DevStack(
        chaos_settings,
        factories=[LocalFactory(id=f, engines=("sim",), slots=options.slots) for f in factory_ids],
        fallback_ports=True,
        ui=False,
        env={TRACE_ENV: str(trace_file)},
        control_processes=options.control_processes,
    )
    products = list(plan.products)
    began = time.monotonic()
    async with stack, contextlib.AsyncExitStack() as scope:
        assert stack.client is not None
        store = await open_store(stack.settings)
        scope.push_async_callback(store.close)
        http = await scope.enter_async_context(
            httpx.AsyncClient(
                base_url=stack.api_url,
                headers={"Authorization": f"Bearer {stack.admin_key}"},
                timeout=60,
            )
        )
        (await http.put(
            f"/fleet/budgets/{BUDGET_PRODUCT}", json={"ceilingUsd": plan.budget_ceiling_usd}
        )).raise_for_status()  # fmt: skip
        subs = _Submissions()
        submitting = asyncio.create_task(_submit_all(http, plan, rate, subs, uuid.uuid4().hex[:8]))
        done = await _chaos_phase(stack, store, faults, submitting, options, products)
        chaos_s = time.monotonic() - began
        jobs = await list_product_jobs(store, products)
        waiting_on_budget = sum(j.wait_reason == WaitReason.BUDGET for j in jobs)
        budget = (await http.get(f"/fleet/budgets/{BUDGET_PRODUCT}")).raise_for_status().json()
        (await http.put(
            f"/fleet/budgets/{BUDGET_PRODUCT}", json={"ceilingUsd": _RAISED_CEILING_USD}
        )).raise_for_status()  # fmt: skip
        drained = await _drain(stack, store, products, options.drain_timeout_s)
        ev = await gather_evidence(
            store=store,
            client=stack.client,
            http=http,
            accepted=list(subs.accepted),
            products=products,
            trace_file=trace_file,
            logs_dir=stack.settings.data_dir / "logs",
            slots=dict.fromkeys(factory_ids, options.slots),
            kills=[(f.target, f.at) for f in done if f.kind is FaultKind.KILL_FACTORY and f.target],
        )
        started_at: dict[str, datetime] = {}
        for job_id in subs.accepted:
            job = ev.jobs.get(job_id)
            if job is not None and job.stage is not None:
                runs = await store.list_runs(job_id, job.product_id)
                if runs:
                    started_at[job_id] = min(r.started_at for r in runs)
    extra = {
        "budget ceiling usd": plan.budget_ceiling_usd,
        "budget status at the end of the chaos": budget.get("status"),
        "jobs waiting on the budget at the end of the chaos": waiting_on_budget,
        "chaos phase s": round(chaos_s, 1),
        "drained": drained,
        "wall s": round(time.monotonic() - began, 1),
    }
    return ChaosReport(
        options, done, check_all(ev), _figures(ev, plan, subs, done, started_at, extra)
    )
