"""The request-size guard: a body larger than its limit is refused with 413 before any of it
reaches a route, so nothing of it is parsed or stored.

A declared `Content-Length` over the limit is refused without reading a byte; a body sent
without one (chunked) is counted as it arrives and refused the moment it passes the limit.
Artifact uploads may be as large as `FLEET_MAX_ARTIFACT_BYTES`; every other body as large
as `FLEET_MAX_REQUEST_BYTES`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gigafactory.settings import Settings

__all__ = ["BodyLimit", "RequestTooLarge", "limit_for"]

_ARTIFACT_UPLOAD = re.compile(r"^/fleet/jobs/[^/]+/artifacts/?$")


class RequestTooLarge(HTTPException):
    """A request body over its limit (413); raised while the body is read."""

    def __init__(self, limit: int, setting: str) -> None:
        super().__init__(
            413, f"request body exceeds the limit of {limit} bytes ({setting}); nothing was stored"
        )


def limit_for(settings: Settings) -> Callable[[Scope], tuple[int, str]]:
    """The limit of a request's body, and the setting that gives it."""

    def limit(scope: Scope) -> tuple[int, str]:
        if scope.get("method") == "POST" and _ARTIFACT_UPLOAD.match(scope.get("path", "")):
            return settings.max_artifact_bytes, "FLEET_MAX_ARTIFACT_BYTES"
        return settings.max_request_bytes, "FLEET_MAX_REQUEST_BYTES"

    return limit


class BodyLimit:
    """ASGI middleware: refuse request bodies over `limit(scope)` with 413."""

    def __init__(self, app: ASGIApp, limit: Callable[[Scope], tuple[int, str]]) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self.limit(scope)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, RequestTooLarge(limit, setting))
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise RequestTooLarge(limit, setting)
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except RequestTooLarge as err:
            # Read outside a route's error handlers (middleware, a streaming response).
            if started:
                raise
            await _refuse(send, err)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


async def _refuse(send: Send, err: RequestTooLarge) -> None:
    body = json.dumps({"error": {"code": "too_large", "message": err.detail}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
