"""Routing: per-product weight overrides and the explanation of a job's last decision."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import Field

from api.deps import CallerDep, ClockDep, OperatorDep, StoreDep, visible_job
from api.errors import ApiError
from api.schemas import RequestModel
from gigafactory.models import CamelModel, RoutingWeights
from routing import TERMS, FleetWeights, WeightsError

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
