"""Who is signed in to the web control plane, and the checks on what they send.

The session cookie holds a random secret (HttpOnly, SameSite=Strict, path /ui, Secure over
HTTPS or with FLEET_UI_SECURE_COOKIE): JavaScript cannot read it and no other site's page
can make the browser send it. The secret names a server-side session (`services.sessions`)
standing for one API key, which is checked again on every request.

Every POST must carry the session's CSRF token (a form field `csrf` or the header
`X-CSRF-Token`, which htmx sends) and, when the browser says where it comes from, come
from this site (`Origin`, else `Referer`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, cast
from urllib.parse import urlsplit

from fastapi import Depends, Request

from api.ui.health import HealthCache
from gigafactory.models import ApiKey, Role
from gigafactory.services import Services
from gigafactory.services.access import has_role
from gigafactory.services.errors import Forbidden, Unauthorized
from gigafactory.settings import Settings

__all__ = [
    "COOKIE",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "PostDep",
    "SignInRequired",
    "UiContext",
    "UiDep",
    "UiRefused",
    "safe_next",
    "same_origin",
]

COOKIE = "gf_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


class SignInRequired(Exception):
    """The request has no valid session: send the browser to the sign-in page."""

    def __init__(self, next_url: str, message: str | None = None) -> None:
        super().__init__(message or "sign in to continue")
        self.next_url = next_url
        self.message = message


class UiRefused(Exception):
    """A request the UI refuses before any service sees it (a failed CSRF check)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class UiContext:
    """The signed-in key and what every page shows around its content."""

    key: ApiKey
    csrf: str
    settings: Settings
    temporal_problem: str | None = None
    store_problem: str | None = None
    path: str = "/ui"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def operator(self) -> bool:
        """Whether the key may take operator actions (the services refuse them otherwise)."""
        return has_role(self.key, Role.OPERATOR)

    @property
    def products(self) -> list[str]:
        """The products the key names ([] for every product)."""
        return [] if "*" in self.key.products else list(self.key.products)

    def temporal_url(self, workflow_id: str) -> str | None:
        """The workflow's page in the Temporal UI, when its address is configured."""
        base = self.settings.temporal_ui_url
        if not base:
            return None
        namespace = self.settings.namespace or "default"
        return f"{base.rstrip('/')}/namespaces/{namespace}/workflows/{workflow_id}"

    def globals(self) -> Mapping[str, Any]:
        return {"ui": self}


def _services(request: Request) -> Services:
    return cast(Services, request.app.state.services)


def _health(request: Request, services: Services) -> HealthCache:
    cache = getattr(request.app.state, "ui_health", None)
    if cache is None:
        cache = request.app.state.ui_health = HealthCache(services.health)
    return cast(HealthCache, cache)


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path of this UI only (never another site)."""
    if not value or not value.startswith("/ui") or value.startswith("//"):
        return "/ui"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/ui"
    return value


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


async def _context(request: Request) -> UiContext:
    services = _services(request)
    secret = request.cookies.get(COOKIE)
    try:
        session = await services.sessions.resolve(secret)
    except Unauthorized as err:
        # A request htmx makes goes back to the page it came from after signing in.
        target = request.headers.get("hx-current-url") or _here(request)
        target = urlsplit(target)._replace(scheme="", netloc="").geturl()
        raise SignInRequired(safe_next(target), err.message if secret else None) from None
    report = await _health(request, services).report()
    return UiContext(
        key=session.key,
        csrf=session.csrf_token,
        settings=cast(Settings, request.app.state.settings),
        temporal_problem=None if report.temporal == "ok" else report.temporal,
        store_problem=None if report.store == "ok" else report.store,
        path=request.url.path,
    )


def same_origin(request: Request) -> bool:
    """Whether the browser says the request comes from this site (True if it says nothing)."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return source != "null"
    parts = urlsplit(source)
    host = request.headers.get("host", "")
    return parts.netloc == host and parts.scheme in ("http", "https")


async def _checked_post(request: Request) -> UiContext:
    """The signed-in context of a state-changing request that passed the CSRF checks."""
    ui = await _context(request)
    if not same_origin(request):
        raise UiRefused(403, "this request came from another site (its Origin): refused")
    presented = request.headers.get(CSRF_HEADER)
    if presented is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        presented = value if isinstance(value, str) else None
    try:
        _services(request).sessions.check_csrf(request.cookies.get(COOKIE, ""), presented)
    except Forbidden as err:
        raise UiRefused(403, err.message) from None
    return ui


UiDep = Annotated[UiContext, Depends(_context)]
PostDep = Annotated[UiContext, Depends(_checked_post)]
