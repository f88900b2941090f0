"""Rendering: the Jinja environment (autoescaped), pages, and cheap polled fragments.

A polled fragment carries a strong ETag of its body. The browser revalidates it (`no-cache`)
and gets a bodiless 304 when nothing changed; the page's script also skips swapping a
fragment whose ETag it already shows, so an unchanged panel never re-renders in the browser
(nor loses focus). A fragment that will never change again (a finished job) answers 286,
which tells htmx to stop polling it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from api.ui.format import FILTERS
from api.ui.session import UiContext

__all__ = [
    "SECURITY_HEADERS",
    "STATIC_DIR",
    "STOP_POLLING",
    "fragment",
    "is_htmx",
    "page",
    "render_text",
]

_HERE = Path(__file__).resolve().parent
STATIC_DIR = _HERE / "static"
TEMPLATE_DIR = _HERE / "templates"

# htmx stops polling an element whose request answers this status.
STOP_POLLING = 286

# Pages load only this site's script and styles (no inline script: htmx runs with
# allowEval off), and no other site may frame them (clickjacking).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

_env = Environment(
    loader=FileSystemLoader(TEMPLATE_DIR),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters.update(FILTERS)


def _static_version() -> str:
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.iterdir()):
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


# Static URLs carry the content's hash, so browsers may cache them for long.
_env.globals["static_version"] = _static_version()


def is_htmx(request: Request) -> bool:
    """Whether htmx made the request (it swaps the answer into the page)."""
    return request.headers.get("hx-request") == "true"


def render_text(template: str, context: Mapping[str, Any]) -> str:
    """A template rendered to text (every value escaped unless marked safe)."""
    return _env.get_template(template).render(**context)


def page(
    ui: UiContext | None,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """A whole page: the layout with the signed-in key, its CSRF token and the banners."""
    body = render_text(template, {**(ui.globals() if ui else {"ui": None}), **(context or {})})
    response = HTMLResponse(
        body, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})}
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def fragment(
    request: Request,
    ui: UiContext,
    template: str,
    context: Mapping[str, Any],
    *,
    final: bool = False,
    status: int = 200,
) -> Response:
    """A polled piece of a page, with an ETag (304 when the browser has it already).

    Args:
        final: It will not change again: answer 286 so htmx stops polling it.
    """
    body = render_text(template, {**ui.globals(), **context}).encode()
    etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
    headers = {
        **SECURITY_HEADERS,
        "ETag": etag,
        "Cache-Control": "private, no-cache",
        "Vary": "Cookie, HX-Request",
    }
    if final:
        status = STOP_POLLING
    elif status == 200 and etag in _etags(request.headers.get("if-none-match")):
        return Response(status_code=304, headers=headers)
    return HTMLResponse(body, status_code=status, headers=headers)


def _etags(header: str | None) -> set[str]:
    if not header:
        return set()
    return {part.strip().removeprefix("W/") for part in header.split(",")}
