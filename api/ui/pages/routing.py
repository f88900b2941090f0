"""Routing (`/ui/routing`): a product's weights and preemption policy, editable by
operators, and the dry-run plan of a pasted job spec."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from api.deps import ServicesDep
from api.ui.forms import FORM_ERROR, SubmitForm, errors_at_fields
from api.ui.outcome import ACCESS_REFUSALS, REFUSALS, act, refused, status_for, to_page
from api.ui.render import is_htmx, page
from api.ui.session import PostDep, UiDep
from gigafactory.models import PreemptionSettings, Priority
from gigafactory.services.specs import Submission

__all__ = ["router"]

router = APIRouter(prefix="/ui/routing", include_in_schema=False)


def _here(product: str | None) -> str:
    return "/ui/routing" + (f"?product={quote(product, safe='')}" if product else "")


@router.get("")
async def routing_page(
    ui: UiDep,
    services: ServicesDep,
    product: str | None = None,
    notice: str | None = None,
    error: str | None = None,
) -> Response:
    """A product's weights (defaults, its overrides, effective) and preemption policy."""
    chosen = (product or "").strip() or (ui.products[0] if len(ui.products) == 1 else None)
    context: dict[str, object] = {
        "product": chosen,
        "weights": None,
        "notice": notice,
        "error": error,
        "priorities": [p.value for p in Priority],
        "plan": None,
        "form": SubmitForm(),
    }
    if chosen:
        try:
            context["weights"] = await services.routing.get_weights(ui.key, chosen)
        except REFUSALS as err:
            return refused(ui, err, back_to="/ui/routing")
    return page(ui, "routing.html", context)


def _optional_seconds(text: str) -> float | None:
    value = text.strip()
    return float(value) if value else None


@router.post("/{product_id}")
async def save_routing(
    request: Request, product_id: str, ui: PostDep, services: ServicesDep
) -> Response:
    """Replace the product's weight overrides and its preemption policy (operators)."""
    form = await request.form()
    weights: dict[str, float] = {}
    try:
        for name, value in form.multi_items():
            if name.startswith("w.") and isinstance(value, str) and value.strip():
                weights[name[2:]] = float(value)
        policy = PreemptionSettings(
            preempting_priorities=[Priority(str(p)) for p in form.getlist("preempting") if str(p)]
            or None,
            min_runtime_s=_optional_seconds(str(form.get("minRuntimeS") or "")),
            grace_s=_optional_seconds(str(form.get("graceS") or "")),
        )
    except ValueError as err:
        return to_page(_here(product_id), error=f"not a number: {err}")
    saving = services.routing.put_weights(ui.key, product_id, weights, policy)
    return await act(ui, saving, back_to=_here(product_id), notice=f"routing of {product_id} saved")


@router.post("/plan/dry-run")
async def dry_run(
    request: Request,
    ui: PostDep,
    services: ServicesDep,
    spec: Annotated[str, Form(max_length=1_000_000)] = "",
    product: Annotated[str, Form(alias="productId", max_length=200)] = "",
) -> Response:
    """What routing would decide for a pasted job spec now (nothing is reserved)."""
    form = SubmitForm(values={"spec": spec, "productId": product}, spec_text=spec or None)
    fields = {"productId": product.strip()} if product.strip() else {}
    context: dict[str, object] = {"form": form, "plan": None, "product": product or None}
    status = 200
    if not spec.strip():
        form.errors = {"spec": "paste a job spec to plan"}
        status = 422
    else:
        try:
            context["plan"] = await services.routing.dry_run(
                ui.key, Submission(fields=fields, spec_text=spec)
            )
        except (*REFUSALS, ValueError) as err:
            form.errors = errors_at_fields(err, form)
            status = status_for(err) if isinstance(err, ACCESS_REFUSALS) else 422
    if is_htmx(request):
        return page(ui, "fragments/plan.html", context, status=status)
    context.update(weights=None, priorities=[p.value for p in Priority], notice=None)
    context["error"] = form.errors.get(FORM_ERROR)
    return page(ui, "routing.html", context, status=status)
