"""The fleet as the routing module sees it: store documents -> pure routing inputs, and
routing outputs -> what events and the API record. Shared by the routing activity and the
API's dry-run plan."""

from __future__ import annotations

from typing import Any

from gigafactory.contracts import CandidateScore, ScoreTerm
from gigafactory.models import Factory, SlotTable
from routing import Candidate, FactoryView, PreemptionPlan, RunningJob

__all__ = ["candidate_wire", "factory_view", "plan_wire", "running_jobs"]


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
    )


def running_jobs(tables: dict[str, SlotTable], exclude: str) -> list[RunningJob]:
    """Every slot holder but `exclude`; one already being evicted is not preemptible."""
    return [
        RunningJob(
            job_id=r.job_id,
            factory_id=factory_id,
            priority=r.priority.value,
            started_at=r.reserved_at,
            preemptible=r.evicted_by is None,
        )
        for factory_id, table in tables.items()
        for r in table.reservations
        if r.job_id != exclude
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
