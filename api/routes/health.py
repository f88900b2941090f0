"""`GET /healthz`: is the store reachable, is Temporal reachable (no authentication)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ServicesDep
from api.schemas import Health

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    response_model=Health,
    responses={503: {"model": Health, "description": "The store or Temporal is unreachable."}},
)
async def healthz(services: ServicesDep) -> JSONResponse:
    """200 when the store and Temporal both answer, else 503 naming what does not."""
    report = await services.health.check()
    body = Health(
        status="ok" if report.healthy else "degraded",
        store=report.store,
        temporal=report.temporal,
    )
    return JSONResponse(body.wire(), status_code=200 if report.healthy else 503)
