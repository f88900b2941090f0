"""The budget panel (`/ui/budgets`): every product the key may see; set, pause, resume."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from api.deps import ServicesDep
from api.ui.outcome import REFUSALS, act, back, message_of, refused, to_page
from api.ui.render import fragment, page
from api.ui.session import PostDep, UiDep
from gigafactory.budgets import BudgetConfig, BudgetWindow
from gigafactory.services.errors import Forbidden

__all__ = ["router"]

router = APIRouter(prefix="/ui/budgets", include_in_schema=False)

WINDOWS: tuple[BudgetWindow, ...] = ("none", "day", "week", "month")


def _fraction(percent: str) -> float | str:
    """ "80" or "80%" -> 0.8; anything else is left for validation to name."""
    try:
        return float(percent.strip().removesuffix("%") or "80") / 100
    except ValueError:
        return percent


@router.get("")
async def budgets_page(
    ui: UiDep, services: ServicesDep, notice: str | None = None, error: str | None = None
) -> Response:
    """Where each product stands against its budget (operators)."""
    context: dict[str, object] = {"notice": notice, "error": error, "windows": WINDOWS}
    status = 200
    try:
        context["views"] = await services.budgets.list_views(ui.key)
    except Forbidden as err:
        context.update(views=None, refused=message_of(err))
        status = 403
    except REFUSALS as err:
        context.update(views=None, unavailable=message_of(err))
    return page(ui, "budgets.html", context, status=status)


@router.get("/rows")
async def budget_rows(request: Request, ui: UiDep, services: ServicesDep) -> Response:
    """The figures alone, polled by the page."""
    context: dict[str, object] = {"windows": WINDOWS}
    try:
        context["views"] = await services.budgets.list_views(ui.key)
    except Forbidden as err:
        return refused(ui, err, back_to="/ui")
    except REFUSALS as err:
        context.update(views=None, unavailable=message_of(err))
    return fragment(request, ui, "fragments/budget_rows.html", context)


@router.post("/{product_id}")
async def set_budget(
    product_id: str,
    ui: PostDep,
    services: ServicesDep,
    ceiling: Annotated[str, Form(max_length=40)] = "",
    window: Annotated[str, Form(max_length=10)] = "none",
    soft: Annotated[str, Form(alias="softThresholdPercent", max_length=10)] = "80",
    estimate: Annotated[str, Form(alias="defaultEstimate", max_length=40)] = "0",
) -> Response:
    """Set the ceiling (empty: none), window, soft threshold and default estimate."""
    try:
        config = BudgetConfig.model_validate(
            {
                "ceilingUsd": ceiling.strip().removeprefix("$") or None,
                "window": window,
                "softThreshold": _fraction(soft),
                "defaultEstimateUsd": estimate.strip().removeprefix("$") or "0",
            }
        )
        await services.budgets.set(ui.key, product_id, config)
    except REFUSALS as err:
        return back(ui, err, "/ui/budgets")
    return to_page("/ui/budgets", notice=f"budget of {product_id} saved")


@router.post("/{product_id}/pause")
async def pause(
    product_id: str,
    ui: PostDep,
    services: ServicesDep,
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Pause the product's dispatch: new attempts wait, running ones finish."""
    pausing = services.budgets.pause(ui.key, product_id, reason.strip() or "paused from the web UI")
    return await act(ui, pausing, back_to="/ui/budgets", notice=f"{product_id} paused")


@router.post("/{product_id}/resume")
async def resume(product_id: str, ui: PostDep, services: ServicesDep) -> Response:
    """Resume dispatch; waiting jobs start in priority order."""
    resuming = services.budgets.resume(ui.key, product_id)
    return await act(ui, resuming, back_to="/ui/budgets", notice=f"{product_id} resumed")
