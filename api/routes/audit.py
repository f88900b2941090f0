"""The audit log of operator and admin actions (admins)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import CallerDep, ServicesDep
from api.schemas import AuditEventOut, AuditList

__all__ = ["router"]

router = APIRouter(prefix="/fleet/audit", tags=["audit"])


@router.get("", response_model=AuditList)
async def list_audit(
    key: CallerDep,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    action: Annotated[str | None, Query(max_length=100, description="e.g. factory.revoke")] = None,
    actor: Annotated[str | None, Query(max_length=200, description="e.g. api:<keyId>")] = None,
    target: Annotated[str | None, Query(max_length=300, description="e.g. job:<id>")] = None,
    product_id: Annotated[str | None, Query(alias="productId", max_length=200)] = None,
    since: Annotated[datetime | None, Query(description="Only events after this time.")] = None,
    continuation: Annotated[str | None, Query(max_length=2000)] = None,
) -> AuditList:
    """Who did what to which target, when, and how it ended; newest first. An admin sees the
    events of its products, and the fleet-wide ones (factories, keys) when it is an admin of
    every product."""
    page = await services.audit.list_events(
        key,
        action=action,
        actor=actor,
        target=target,
        product_id=product_id,
        since=since,
        limit=limit,
        continuation=continuation,
    )
    return AuditList(
        items=[AuditEventOut.model_validate(e.model_dump()) for e in page.items],
        continuation=page.continuation,
    )
