"""Per-product budgets: the settings, where each product stands, pause and resume."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import Field

from api.deps import CallerDep, ServicesDep
from api.schemas import RequestModel
from gigafactory.budgets import BudgetConfig, BudgetWindow
from gigafactory.models import CamelModel
from gigafactory.services.budgets import BudgetView

__all__ = ["router"]

router = APIRouter(prefix="/fleet/budgets", tags=["budgets"])


class BudgetIn(RequestModel):
    """A product's budget: a ceiling (null: unlimited) over a window, a soft threshold."""

    ceiling_usd: float | None = Field(default=None, ge=0)
    window: BudgetWindow = "none"
    soft_threshold: float = Field(default=0.8, ge=0, le=1)
    default_estimate_usd: float = Field(
        default=0.0, ge=0, description="The estimate of a job that gives none."
    )


class PauseIn(RequestModel):
    reason: str = Field(default="paused by operator", max_length=500)


class BudgetList(CamelModel):
    """The budget of every product the key may see."""

    items: list[BudgetView]


@router.get("", response_model=BudgetList)
async def list_budgets(key: CallerDep, services: ServicesDep) -> BudgetList:
    """Every product the key may see, with where it stands against its budget."""
    return BudgetList(items=await services.budgets.list_views(key))


@router.get("/{product_id}", response_model=BudgetView)
async def get_budget(product_id: str, key: CallerDep, services: ServicesDep) -> BudgetView:
    """Spent, reserved, remaining, status and why, the window's reset, the last ledger entries."""
    return await services.budgets.view(key, product_id)


@router.put("/{product_id}", response_model=BudgetView)
async def put_budget(
    product_id: str, body: BudgetIn, key: CallerDep, services: ServicesDep
) -> BudgetView:
    """Set the ceiling, window and soft threshold; a raised ceiling wakes waiting jobs."""
    config = BudgetConfig.model_validate(body.model_dump())
    return await services.budgets.set(key, product_id, config)


@router.post("/{product_id}/pause", status_code=202, response_model=BudgetView)
async def pause(
    product_id: str, key: CallerDep, services: ServicesDep, body: PauseIn | None = None
) -> BudgetView:
    """Pause the product's dispatch: new attempts wait, running ones finish."""
    return await services.budgets.pause(key, product_id, (body or PauseIn()).reason)


@router.post("/{product_id}/resume", status_code=202, response_model=BudgetView)
async def resume(product_id: str, key: CallerDep, services: ServicesDep) -> BudgetView:
    """Resume dispatch; waiting jobs start in priority order (a ceiling pause needs a raise)."""
    return await services.budgets.resume(key, product_id)
