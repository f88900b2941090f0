"""JSON errors: `{"error": {"code", "message", "field"?}}` with a message a person can act on.

Services refuse with domain errors (`gigafactory.services.errors`); routes let them, the
parser's and the store's through, and raise `ApiError` only for what is about HTTP itself.
The handlers here map each kind to one status code, so every route reports the same
failure the same way.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError, RPCStatusCode

from api.schemas import ErrorBody
from gigafactory.jobspec import JobSpecError
from gigafactory.services.errors import (
    Conflict,
    Fenced,
    Forbidden,
    InvalidInput,
    NotFoundError,
    RateLimited,
    ServiceError,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from gigafactory.store.backend import AlreadyExists, NotFound, PreconditionFailed
from gigafactory.store.fleet_store import EnrollmentRefused

__all__ = ["ERROR_RESPONSES", "ApiError", "error_body", "install_error_handlers", "status_of"]

logger = logging.getLogger(__name__)


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


# The error responses every operation may give (declared in the OpenAPI document, so clients
# and schema-driven tests know their shape): the handlers below produce each of them.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _error("Missing, unknown, rotated or revoked credentials."),
    403: _error("The caller's role (or identity) may not do this."),
    404: _error("No such thing, or the caller may not see it."),
    409: _error("The thing's state refuses the operation, or the report was fenced."),
    413: _error("The request carries more than a FLEET_MAX_* limit allows."),
    422: _error("The request is malformed or breaks a rule; `field` names the input."),
    429: _error("Over the caller's rate limit; retry after `Retry-After` seconds."),
    502: _error("Temporal refused the call."),
    503: _error("Temporal or the store is unreachable; try again."),
}


class ApiError(Exception):
    """An error a route reports to its caller as is."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """The JSON body of an error response."""
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return {"error": error}


def _json(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, field), status_code=status, headers=headers)


def _field_of(loc: Sequence[int | str]) -> str:
    """`("body", "spec", "engine")` -> "spec.engine"; the request part is not a field."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def _validation(errors: Sequence[Any]) -> JSONResponse:
    """422 naming the first invalid field, with every problem in the message."""
    problems: list[str] = []
    first_field: str | None = None
    for err in errors:
        field = _field_of(err.get("loc", ()))
        first_field = first_field or field
        msg = str(err.get("msg", "invalid"))
        if err.get("type") == "extra_forbidden":
            msg = "unknown field"
        elif err.get("type") == "missing":
            msg = "is required"
        elif (
            isinstance(err.get("input"), str | int | float | bool) and str(err["input"]) not in msg
        ):
            msg = f"{msg} (got {err['input']!r})"
        problems.append(f"{field}: {msg}")
    return _json(422, "invalid_request", "; ".join(problems) or "invalid request", first_field)


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _json(exc.status, exc.code, exc.message, exc.field, exc.headers)


async def _request_validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _validation(exc.errors())


async def _model_validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ValidationError)
    return _validation(exc.errors())


async def _job_spec(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, JobSpecError)
    column = getattr(exc, "column", None)
    return _json(422, "invalid_spec", str(exc), column)


async def _not_found(_: Request, exc: Exception) -> JSONResponse:
    return _json(404, "not_found", str(exc) or "not found")


async def _already_exists(_: Request, exc: Exception) -> JSONResponse:
    return _json(409, "conflict", str(exc) or "already exists")


async def _contended(_: Request, exc: Exception) -> JSONResponse:
    return _json(409, "contended", f"{exc}; try again")


# Each domain error's HTTP status; a subclass not listed takes its parent's.
_STATUS: dict[type[ServiceError], int] = {
    InvalidInput: 422,
    TooLarge: 413,
    NotFoundError: 404,
    RateLimited: 429,
    Unauthorized: 401,
    Forbidden: 403,
    Conflict: 409,
    Unavailable: 503,
}


def status_of(exc: ServiceError) -> int:
    """The HTTP status of a domain error (the API's and the web UI's)."""
    if isinstance(exc, Fenced):
        return 409
    return next((s for kind, s in _STATUS.items() if isinstance(exc, kind)), 400)


async def _service(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    if isinstance(exc, Fenced):
        return _fenced(exc)
    status = status_of(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
    return _json(status, exc.code, exc.message, exc.field, headers)


def _fenced(exc: Fenced) -> JSONResponse:
    return _json(
        409,
        "fenced",
        f"{exc}; this attempt was superseded: stop the agent and report nothing more for it",
    )


async def _enrollment_refused(_: Request, exc: Exception) -> JSONResponse:
    return _json(
        401,
        "enrollment_refused",
        f"{exc}: ask an operator for a new one (POST /fleet/factories/enrollment-tokens)",
    )


async def _temporal(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RPCError)
    logger.warning("Temporal call failed: %s", exc)
    if exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
        return _json(503, "temporal_unavailable", f"Temporal is unreachable: {exc}; try again")
    return _json(502, "temporal_error", f"Temporal refused the call: {exc}")


async def _runtime(_: Request, exc: Exception) -> JSONResponse:
    # A lazily connected Temporal client reports an unreachable server this way.
    if str(exc).startswith("Failed client connect"):
        logger.warning("Temporal unreachable: %s", exc)
        return _json(503, "temporal_unavailable", f"Temporal is unreachable: {exc}; try again")
    return await _internal(_, exc)


async def _internal(_: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled error", exc_info=exc)
    return _json(500, "internal", f"internal error ({type(exc).__name__}); see the API log")


async def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        # FastAPI's answer to a body it cannot decode (not UTF-8, say): a validation error.
        return _json(422, "invalid_request", f"{exc.detail}: send JSON encoded in UTF-8", "body")
    code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
        exc.status_code, "http_error"
    )
    headers = dict(exc.headers) if exc.headers else None
    return _json(exc.status_code, code, str(exc.detail), headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Register every error mapping on `app`."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(ValidationError, _model_validation)
    app.add_exception_handler(JobSpecError, _job_spec)
    app.add_exception_handler(ServiceError, _service)
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(AlreadyExists, _already_exists)
    app.add_exception_handler(PreconditionFailed, _contended)
    app.add_exception_handler(EnrollmentRefused, _enrollment_refused)
    app.add_exception_handler(RPCError, _temporal)
    app.add_exception_handler(RuntimeError, _runtime)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _internal)
