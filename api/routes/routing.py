"""Routing: a product's weights and preemption policy, the dry-run plan, a job's last
decision, and the shadow weight set's report."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import Field

from api.deps import CallerDep, ServicesDep
from api.schemas import RequestModel, SubmitJob
from gigafactory.models import PreemptionSettings
from gigafactory.services.routing import (
    RoutingExplanation,
    RoutingPlanView,
    ShadowReport,
    WeightsView,
)

__all__ = ["router"]

router = APIRouter(tags=["routing"])


class WeightsIn(RequestModel):
    """A product's overrides: term -> weight (>= 0); terms left out keep the defaults.
    `preemption`, when given, replaces the product's preemption policy (left out: kept)."""

    weights: dict[str, float] = Field(default_factory=dict)
    preemption: PreemptionSettings | None = None


@router.get("/fleet/routing/weights/{product_id}", response_model=WeightsView)
async def get_weights(product_id: str, key: CallerDep, services: ServicesDep) -> WeightsView:
    """The routing settings of a product: defaults, its overrides, the effective weights,
    and its preemption policy."""
    return await services.routing.get_weights(key, product_id)


@router.put("/fleet/routing/weights/{product_id}", response_model=WeightsView)
async def put_weights(
    product_id: str, body: WeightsIn, key: CallerDep, services: ServicesDep
) -> WeightsView:
    """Replace a product's overrides (operators); `{}` goes back to the defaults."""
    return await services.routing.put_weights(key, product_id, body.weights, body.preemption)


@router.post("/fleet/routing/plan", response_model=RoutingPlanView)
async def plan_job(body: SubmitJob, key: CallerDep, services: ServicesDep) -> RoutingPlanView:
    """Dry-run routing for a job spec: the factory it would get, each candidate's score, and
    which running jobs it would preempt if nothing fits (like `nomad plan`)."""
    return await services.routing.dry_run(key, body.submission())


@router.get("/fleet/routing/shadow/{product_id}", response_model=ShadowReport)
async def shadow_report(
    product_id: str,
    key: CallerDep,
    services: ServicesDep,
    window_s: Annotated[float, Query(alias="windowS", gt=0, le=366 * 86400)] = 86400,
) -> ShadowReport:
    """How often, and how, the shadow weight set (FLEET_ROUTING_SHADOW) would have placed the
    product's jobs differently over the last `windowS` seconds."""
    return await services.routing.shadow_report(key, product_id, window=timedelta(seconds=window_s))


@router.get("/fleet/jobs/{job_id}/routing", response_model=RoutingExplanation)
async def explain_job(job_id: str, key: CallerDep, services: ServicesDep) -> RoutingExplanation:
    """The job's last routing decision: how every factory scored, why others were excluded."""
    return await services.routing.explain(key, job_id)
