"""The fleet as the routing module sees it: store documents -> pure routing inputs, and
routing outputs -> what events and the API record."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from gigafactory.contracts import CandidateScore, ScoreTerm
from gigafactory.models import Factory, Job, Priority, SlotReservation, SlotTable
from routing import Candidate, FactoryView, FleetSummary, JobRequest, PreemptionPlan, RunningJob

__all__ = [
    "candidate_wire",
    "factory_view",
    "job_request",
    "plan_wire",
    "request_of_job",
    "summary_wire",
    "running_jobs",
]


def job_request(
    job_id: str,
    *,
    engine: str,
    capabilities: Iterable[str],
    priority: Priority,
    preferred_labels: Iterable[str],
    waiting_since: datetime | None,
    previous_factory_id: str | None = None,
) -> JobRequest:
    """A job asking for a slot, as routing sees it."""
    return JobRequest(
        job_id=job_id,
        engine=engine,
        capabilities=frozenset(capabilities),
        priority=priority.value,
        waiting_since=waiting_since,
        preferred_labels=frozenset(preferred_labels),
        previous_factory_id=previous_factory_id,
    )


def request_of_job(job: Job) -> JobRequest:
    """A stored job (one waiting for a slot) as routing sees it."""
    return job_request(
        job.id,
        engine=job.spec.engine,
        capabilities=job.spec.capabilities,
        priority=job.spec.priority,
        preferred_labels=job.spec.preferred_labels,
        waiting_since=job.updated_at,
    )


def factory_view(factory: Factory, table: SlotTable | None, job_id: str) -> FactoryView:
    """A factory with its reserved slots; the job's own reservation does not count."""
    reserved = sum(1 for r in (table.reservations if table else []) if r.job_id != job_id)
    return FactoryView(
        id=factory.id,
        engines=frozenset(factory.engines),
        labels=frozenset(factory.labels),
        slots=factory.slots,
        reserved=reserved,
        status=factory.status.value,
        last_heartbeat_at=factory.last_heartbeat_at,
        reported_healthy=factory.healthy,
        cost_rate_usd_per_hour=factory.cost_rate_usd_per_hour,
        lease_lost=factory.lease_lost_reason if factory.lease_lost_at is not None else None,
    )


def running_jobs(
    tables: dict[str, SlotTable],
    exclude: str,
    min_runtime_s: Mapping[str, float] | None = None,
) -> list[RunningJob]:
    """Every slot holder but `exclude`; one already being evicted is not preemptible. A
    product in `min_runtime_s` protects its jobs that long (others: the policy's minimum).

    A job holds one slot per lease, but a lost lease's reservation (a killed factory's)
    stays until it is given back or reaped while the next lease holds another: the job runs
    where its newest lease is, so that one alone stands for it.
    """
    protect = min_runtime_s or {}
    newest: dict[str, tuple[str, SlotReservation]] = {}
    for factory_id, table in tables.items():
        for r in table.reservations:
            if r.job_id == exclude:
                continue
            seen = newest.get(r.job_id)
            if seen is None or (r.epoch, r.reserved_at) > (seen[1].epoch, seen[1].reserved_at):
                newest[r.job_id] = (factory_id, r)
    return [
        RunningJob(
            job_id=r.job_id,
            factory_id=factory_id,
            priority=r.priority.value,
            started_at=r.reserved_at,
            preemptible=r.evicted_by is None,
            min_runtime_s=protect.get(r.product_id),
        )
        for factory_id, r in newest.values()
    ]


def candidate_wire(c: Candidate) -> CandidateScore:
    """The routing module's candidate as the wire type events record."""
    return CandidateScore(
        factory_id=c.factory_id,
        eligible=c.eligible,
        score=c.score,
        breakdown=[
            ScoreTerm(term=t.term, value=t.value, weight=t.weight, contribution=t.contribution)
            for t in c.breakdown
        ],
        excluded_because=c.excluded_because,
    )


def summary_wire(summary: FleetSummary | None) -> dict[str, Any] | None:
    """How many factories a decision considered, and how many each filter excluded."""
    if summary is None:
        return None
    return {
        "factories": summary.factories,
        "eligible": summary.eligible,
        "excluded": {e.kind.value: e.count for e in summary.exclusions},
    }


def plan_wire(plan: PreemptionPlan) -> dict[str, Any]:
    """A preemption plan as events and the API show it."""
    return {
        "factoryId": plan.factory_id,
        "evict": list(plan.evict),
        "reason": plan.reason,
        "candidates": [
            {
                "factoryId": c.factory_id,
                "chosen": c.chosen,
                "feasible": c.feasible,
                "victims": list(c.victims),
                "workLostS": c.work_lost_s,
                "rejectedBecause": c.rejected_because,
            }
            for c in plan.breakdown
        ],
    }
