"""Routing: per-product weight overrides and the explanation of a job's last decision."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import Field

from api.deps import CallerDep, ClockDep, OperatorDep, SettingsDep, StoreDep, visible_job
from api.errors import ApiError
from api.schemas import RequestModel, SubmitJob
from gigafactory.fleet_view import candidate_wire, factory_view, plan_wire, running_jobs
from gigafactory.models import CamelModel, RoutingWeights
from gigafactory.routing_settings import preemption_policy
from routing import (
    TERMS,
    FleetWeights,
    JobRequest,
    RoutingContext,
    WeightsError,
    resolve_weights,
    select_factory,
    select_with_preemption,
)

__all__ = ["check_weights", "router"]

router = APIRouter(tags=["routing"])


class WeightsIn(RequestModel):
    """A product's overrides: term -> weight (>= 0); terms left out keep the defaults."""

    weights: dict[str, float] = Field(default_factory=dict)


class WeightsOut(CamelModel):
    """The fleet defaults, the product's overrides and the weights its jobs route with."""

    product_id: str
    defaults: dict[str, float]
    overrides: dict[str, float]
    effective: dict[str, float]
    terms: list[str]
    updated_at: datetime | None = None
    updated_by: str | None = None


class RoutingExplanation(CamelModel):
    """A job's last routing decision: each candidate's score term by term, or exclusion."""

    job_id: str
    at: datetime | None = None
    stage: str | None = None
    reason: str | None = None
    factory_id: str | None = None
    score: float | None = None
    weights: dict[str, float] = Field(default_factory=dict)
    candidates: list[dict[str, Any]] = Field(default_factory=list)
    shadow: dict[str, Any] | None = None


def check_weights(weights: dict[str, float], *, layer: str, field: str) -> FleetWeights:
    """The defaults with `weights` applied, or a 422 naming the bad term."""
    try:
        return FleetWeights().override(weights, layer=layer)
    except WeightsError as err:
        raise ApiError(422, "invalid_request", str(err), field=field) from None


def _product_not_found(product_id: str) -> ApiError:
    return ApiError(404, "not_found", f"product {product_id} not found", field="productId")


def _out(product_id: str, stored: RoutingWeights | None) -> WeightsOut:
    overrides = stored.weights if stored else {}
    return WeightsOut(
        product_id=product_id,
        defaults=FleetWeights().as_dict(),
        overrides=overrides,
        effective=FleetWeights().override(overrides).as_dict() if overrides else {},
        terms=list(TERMS),
        updated_at=stored.updated_at if stored else None,
        updated_by=stored.updated_by if stored else None,
    )


@router.get("/fleet/routing/weights/{product_id}", response_model=WeightsOut)
async def get_weights(product_id: str, key: CallerDep, store: StoreDep) -> WeightsOut:
    """The routing weights of a product: defaults, its overrides, the effective set."""
    if not key.may_see(product_id):
        raise _product_not_found(product_id)
    out = _out(product_id, await store.get_routing_weights(product_id))
    if not out.effective:
        out.effective = out.defaults
    return out


@router.put("/fleet/routing/weights/{product_id}", response_model=WeightsOut)
async def put_weights(
    product_id: str, body: WeightsIn, key: OperatorDep, store: StoreDep, clock: ClockDep
) -> WeightsOut:
    """Replace a product's overrides (operators); `{}` goes back to the defaults."""
    if not key.may_see(product_id):
        raise _product_not_found(product_id)
    effective = check_weights(body.weights, layer="product override", field="weights")
    # Stored under the canonical (snake_case) term names.
    canonical = {_snake(term): float(weight) for term, weight in body.weights.items()}
    stored = await store.put_routing_weights(
        RoutingWeights(
            product_id=product_id,
            weights=canonical,
            updated_at=clock(),
            updated_by=f"api:{key.id}",
        )
    )
    out = _out(product_id, stored)
    out.effective = effective.as_dict()
    return out


def _snake(term: str) -> str:
    """`costRate` -> `cost_rate` (a validated term name in either spelling)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", term).lower()


class RoutingPlan(CamelModel):
    """What routing would decide for a job now (nothing is reserved, evicted or created)."""

    factory_id: str | None = None
    reason: str | None = None
    weights: dict[str, float]
    candidates: list[dict[str, Any]]
    preemption: dict[str, Any] | None = Field(
        default=None, description="The jobs it would evict when nothing fits (pure plan)."
    )
    preemption_enabled: bool = Field(description="FLEET_PREEMPTION: whether it would act.")


@router.post("/fleet/routing/plan", response_model=RoutingPlan)
async def plan_job(
    body: SubmitJob, key: CallerDep, store: StoreDep, settings: SettingsDep, clock: ClockDep
) -> RoutingPlan:
    """Dry-run routing for a job spec: the factory it would get, each candidate's score, and
    which running jobs it would preempt if nothing fits (like `nomad plan`)."""
    from api.routes.jobs import build_spec  # jobs imports this module's check_weights

    spec = build_spec(body, key, settings)
    now = clock()
    stored = await store.get_routing_weights(spec.product_id)
    try:
        weights = resolve_weights(
            FleetWeights(), stored.weights if stored else None, spec.routing_weights
        )
    except WeightsError as err:
        raise ApiError(422, "invalid_request", str(err), field="routingWeights") from None
    tables = {t.factory_id: t for t in await store.list_slot_tables()}
    views = [factory_view(f, tables.get(f.id), "") for f in await store.list_factories()]
    request = JobRequest(
        job_id="(plan)",
        engine=spec.engine,
        capabilities=frozenset(spec.capabilities),
        priority=spec.priority.value,
        waiting_since=now,
        preferred_labels=frozenset(spec.preferred_labels),
    )
    ctx = RoutingContext(now=now, unhealthy_after_s=settings.factory_unhealthy_after_s)
    decision = select_factory(request, views, ctx, weights)
    plan = None
    if decision.factory_id is None:
        plan = select_with_preemption(
            request, running_jobs(tables, exclude=""), views, ctx, weights,
            preemption_policy(settings),
        )  # fmt: skip
    return RoutingPlan(
        factory_id=decision.factory_id,
        reason=decision.reason,
        weights=weights.as_dict(),
        candidates=[candidate_wire(c).wire() for c in decision.candidates],
        preemption=plan_wire(plan) if plan else None,
        preemption_enabled=settings.preemption,
    )


@router.get("/fleet/jobs/{job_id}/routing", response_model=RoutingExplanation)
async def explain_job(job_id: str, key: CallerDep, store: StoreDep) -> RoutingExplanation:
    """The job's last routing decision: how every factory scored, why others were excluded."""
    job = await visible_job(store, key, job_id)
    continuation = None
    for _ in range(20):  # at most 20 pages of 100 events back
        events, continuation = await store.list_events(
            job.id, job.product_id, limit=100, continuation=continuation, newest_first=True
        )
        for event in events:
            if "candidates" in event.data:
                return RoutingExplanation(
                    job_id=job.id,
                    at=event.at,
                    stage=event.stage.value if event.stage else None,
                    reason=event.reason,
                    factory_id=event.data.get("factoryId"),
                    score=event.data.get("score"),
                    weights=event.data.get("weights") or {},
                    candidates=event.data["candidates"],
                    shadow=event.data.get("shadow"),
                )
        if continuation is None:
            break
    return RoutingExplanation(job_id=job.id, reason="not routed yet")
