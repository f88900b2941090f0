"""Gathering a chaos run's evidence from where it really is: the store, Temporal, the
budget controllers (through the API), the factories' logs and the sim agents' trace."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.reporter import REPORT_ABANDONED, STALE_REPORT_FENCED
from gigafactory.models import Job
from gigafactory.store.fleet_store import FleetStore
from launch.chaos.records import (
    Evidence,
    FencedReport,
    JobRecord,
    RunRecord,
    SpendEntry,
    intervals_from_trace,
)

__all__ = ["factory_reports", "gather_evidence", "list_product_jobs", "workflow_status"]

_PAGE = 500
_LEDGER_MAX = 1_000_000


async def list_product_jobs(store: FleetStore, products: list[str]) -> list[Job]:
    """Every job of `products`, children and all."""
    jobs: list[Job] = []
    continuation: str | None = None
    while True:
        page = await store.list_jobs(products=products, limit=_PAGE, continuation=continuation)
        jobs.extend(page.items)
        continuation = page.continuation
        if not continuation:
            return jobs


async def workflow_status(client: Client, workflow_id: str) -> str | None:
    """The workflow's status name (RUNNING, COMPLETED, ...), None when Temporal has none."""
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return description.status.name if description.status is not None else None


_REPORT_LINE = re.compile(
    rf"({re.escape(STALE_REPORT_FENCED)}|{re.escape(REPORT_ABANDONED)}) job=(\S+) epoch=(\d+)"
)


def factory_reports(
    lines: list[str],
) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
    """From factory log lines, by (job, epoch): reports answered "fenced", and reports
    abandoned in flight."""
    answered: Counter[tuple[str, int]] = Counter()
    abandoned: Counter[tuple[str, int]] = Counter()
    for line in lines:
        match = _REPORT_LINE.search(line)
        if match is not None:
            key = (match.group(2), int(match.group(3)))
            (answered if match.group(1) == STALE_REPORT_FENCED else abandoned)[key] += 1
    return dict(answered), dict(abandoned)


async def _controller_spend(http: httpx.AsyncClient, products: list[str]) -> dict[str, float]:
    spend: dict[str, float] = {}
    for product in products:
        response = await http.get(f"/fleet/budgets/{product}")
        if response.status_code == 404:
            continue
        body: dict[str, Any] = response.raise_for_status().json()
        if body.get("source") == "controller":
            spend[product] = float(body["spentUsd"])
    return spend


async def _record(store: FleetStore, client: Client, job: Job) -> JobRecord:
    runs = await store.list_runs(job.id, job.product_id)
    fenced: list[FencedReport] = []
    continuation: str | None = None
    while True:
        events, continuation = await store.list_events(
            job.id, job.product_id, continuation=continuation
        )
        fenced += [
            FencedReport(e.epoch or 0, e.actor.removeprefix("factory:"), e.at.timestamp())
            for e in events
            if e.kind == "fenced"
        ]
        if not continuation:
            break
    return JobRecord(
        id=job.id,
        product_id=job.product_id,
        stage=job.stage.value,
        workflow_status=await workflow_status(client, job.workflow_id),
        cost_usd=job.cost_usd,
        stage_reason=job.stage_reason,
        lock=job.spec.lock,
        is_parent=bool(job.spec.children),
        runs=tuple(
            RunRecord(
                r.epoch,
                r.factory_id,
                r.outcome.value if r.outcome is not None else None,
                r.cost_usd,
            )
            for r in runs
        ),
        fenced=tuple(fenced),
    )


async def gather_evidence(
    *,
    store: FleetStore,
    client: Client,
    http: httpx.AsyncClient,
    accepted: list[str],
    products: list[str],
    trace_file: Path,
    logs_dir: Path,
    slots: dict[str, int],
    kills: list[tuple[str, float]],
) -> Evidence:
    """Read everything the invariants need (the stack still running)."""
    jobs = {
        job.id: await _record(store, client, job)
        for job in await list_product_jobs(store, products)
    }
    for job_id in accepted:
        if job_id not in jobs:
            jobs[job_id] = JobRecord(job_id, "", None, None)
    spend = [
        SpendEntry(r.id, r.job_id, r.product_id, r.usd, r.estimated)
        for product in products
        for r in await store.list_spend(product, limit=_LEDGER_MAX)
    ]
    trace = trace_file.read_text(errors="replace").splitlines() if trace_file.exists() else []
    log_lines = [
        line
        for path in sorted(logs_dir.glob("factory-*.log"))
        for line in path.read_text(errors="replace").splitlines()
    ]
    answered, abandoned = factory_reports(log_lines)
    return Evidence(
        accepted=list(accepted),
        jobs=jobs,
        spend=spend,
        controller_spend=await _controller_spend(http, products),
        intervals=intervals_from_trace(trace),
        slots=slots,
        stale_answered=answered,
        abandoned=abandoned,
        kills=kills,
        locks={j.id: j.lock for j in jobs.values() if j.lock is not None},
    )
