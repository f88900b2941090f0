"""The fleet map (`/ui`): a live card per factory; cordon, uncordon and revoke."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.deps import ServicesDep
from api.ui.outcome import REFUSALS, act, refused
from api.ui.render import fragment, page
from api.ui.session import PostDep, UiDep

__all__ = ["router"]

router = APIRouter(prefix="/ui", include_in_schema=False)

_DONE = {"cordon": "cordoned", "uncordon": "uncordoned", "revoke": "revoked"}


@router.get("")
async def fleet_page(
    ui: UiDep, services: ServicesDep, notice: str | None = None, error: str | None = None
) -> Response:
    """Every factory: health, heartbeat, slots, the jobs running there, lease state."""
    try:
        fleet = await services.overview.fleet_map(ui.key)
    except REFUSALS as err:
        return refused(ui, err)
    return page(ui, "fleet.html", {"fleet": fleet, "notice": notice, "error": error})


@router.get("/fleet/cards")
async def fleet_cards(request: Request, ui: UiDep, services: ServicesDep) -> Response:
    """The cards alone, polled by the page."""
    try:
        fleet = await services.overview.fleet_map(ui.key)
    except REFUSALS as err:
        return refused(ui, err)
    return fragment(request, ui, "fragments/fleet_cards.html", {"fleet": fleet})


@router.post("/factories/{factory_id}/{action}")
async def change_factory(
    factory_id: str,
    action: Literal["cordon", "uncordon", "revoke"],
    ui: PostDep,
    services: ServicesDep,
) -> Response:
    """Cordon, uncordon or revoke a factory (operators; the service refuses anyone else)."""
    operation = {
        "cordon": services.factories.cordon,
        "uncordon": services.factories.uncordon,
        "revoke": services.factories.revoke,
    }[action]
    notice = f"factory {factory_id} {_DONE[action]}"
    return await act(ui, operation(ui.key, factory_id), back_to="/ui", notice=notice)
