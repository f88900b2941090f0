"""The web control plane, served by the API process under `/ui`.

Server-rendered (Jinja2, autoescaped) with htmx (vendored in `static/`, with its licence)
polling small fragments for live panels; no JavaScript build step. Every page is one
router module in `pages/` that parses, makes one service call and maps what it refuses;
what they share lives beside them (`session`, `render`, `forms`, `outcome`, `format`).
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from api.ui.pages import auth, budgets, fleet, job, jobs, routing
from api.ui.render import STATIC_DIR, is_htmx, page
from api.ui.session import SignInRequired, UiRefused

__all__ = ["install_ui"]


async def _sign_in(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)
    params = {"next": exc.next_url, **({"reason": exc.message} if exc.message else {})}
    target = f"/ui/sign-in?{urlencode(params)}"
    if is_htmx(request):  # a polled fragment: send the whole page to the sign-in form
        return Response(status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, UiRefused)
    context = {"status": exc.status, "message": exc.message, "back_to": "/ui"}
    return page(None, "error.html", context, status=exc.status)


def install_ui(app: FastAPI) -> None:
    """Serve the web control plane on `app` under /ui."""
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="ui-static")
    app.add_exception_handler(SignInRequired, _sign_in)
    app.add_exception_handler(UiRefused, _refused)
    for module in (auth, fleet, jobs, job, budgets, routing):
        app.include_router(module.router)
