"""`GET /healthz`: is the store reachable, is Temporal reachable (no authentication)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import StoreDep, TemporalDep
from api.schemas import Health
from gigafactory.models import FLEET_PARTITION

__all__ = ["router"]

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

CHECK_TIMEOUT_S = 3.0


@router.get(
    "/healthz",
    response_model=Health,
    responses={503: {"model": Health, "description": "The store or Temporal is unreachable."}},
)
async def healthz(store: StoreDep, temporal: TemporalDep) -> JSONResponse:
    """200 when the store and Temporal both answer, else 503 naming what does not."""
    try:
        await asyncio.wait_for(store.backend.count("keys", FLEET_PARTITION, {}), CHECK_TIMEOUT_S)
        store_state = "ok"
    except Exception as err:  # any failure means "not reachable"; the reason is reported
        logger.warning("healthz: store: %s", err)
        store_state = f"unreachable: {err or type(err).__name__}"
    try:
        ok = await asyncio.wait_for(
            temporal.service_client.check_health(timeout=timedelta(seconds=CHECK_TIMEOUT_S)),
            CHECK_TIMEOUT_S + 1,
        )
        temporal_state = "ok" if ok else "not serving"
    except Exception as err:  # as above
        logger.warning("healthz: temporal: %s", err)
        temporal_state = f"unreachable: {err or type(err).__name__}"
    healthy = store_state == "ok" and temporal_state == "ok"
    body = Health(
        status="ok" if healthy else "degraded", store=store_state, temporal=temporal_state
    )
    return JSONResponse(body.wire(), status_code=200 if healthy else 503)
