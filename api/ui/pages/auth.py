"""Signing in with an API key, and out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.deps import ServicesDep, SettingsDep
from api.ui.outcome import message_of
from api.ui.render import page
from api.ui.session import COOKIE, PostDep, UiRefused, safe_next, same_origin
from gigafactory.services.errors import Unauthorized

__all__ = ["router"]

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_page(next: str | None = None, reason: str | None = None) -> HTMLResponse:
    """The sign-in form."""
    return page(None, "sign_in.html", {"next": safe_next(next), "error": reason})


@router.post("/sign-in")
async def sign_in(
    request: Request,
    services: ServicesDep,
    settings: SettingsDep,
    api_key: Annotated[str, Form(alias="apiKey", max_length=4096)] = "",
    next: Annotated[str, Form()] = "/ui",
) -> Response:
    """Check the key and open a session: a cookie only this site's pages send."""
    # No session yet, so no CSRF token: a sign-in from another site's page is refused by
    # its Origin (login CSRF would sign the victim in as the attacker).
    if not same_origin(request):
        raise UiRefused(403, "this sign-in came from another site (its Origin): refused")
    try:
        signed = await services.sessions.sign_in(api_key)
    except Unauthorized as err:
        context = {"next": safe_next(next), "error": message_of(err)}
        return page(None, "sign_in.html", context, status=401)
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        COOKIE,
        signed.secret,
        max_age=int(settings.ui_session_ttl_s),
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=settings.ui_secure_cookie or request.url.scheme == "https",
    )
    return response


@router.post("/sign-out")
async def sign_out(request: Request, ui: PostDep, services: ServicesDep) -> Response:
    """End the session here and on the server."""
    await services.sessions.sign_out(request.cookies.get(COOKIE))
    response = RedirectResponse("/ui/sign-in", status_code=303)
    response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")
    return response
