"""Domain errors: what a fleet operation refuses, with a message a person can act on.

Services raise these; each adapter maps them once (the API to HTTP statuses, the web UI to
messages beside the field they name, the CLI to exit codes). `code` is stable and
machine-readable; `field` names the input at fault, when there is one.
"""

from __future__ import annotations

__all__ = [
    "Conflict",
    "Fenced",
    "Forbidden",
    "InvalidInput",
    "NotFoundError",
    "RateLimited",
    "ServiceError",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "temporal_unreachable",
]


class ServiceError(Exception):
    """Base of every refusal a service reports to its caller as is."""

    code = "error"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code


class InvalidInput(ServiceError):
    """The request is malformed or breaks a rule (a bad spec, a cyclic DAG, bad weights)."""

    code = "invalid_request"


class TooLarge(ServiceError):
    """The request carries more than a configured limit allows."""

    code = "too_large"


class NotFoundError(ServiceError):
    """No such thing, or the caller may not see it (the two are indistinguishable)."""

    code = "not_found"


class Unauthorized(ServiceError):
    """Missing, unknown, rotated or revoked credentials."""

    code = "unauthorized"


class Forbidden(ServiceError):
    """The caller is known but its role (or identity) may not do this."""

    code = "forbidden"


class Conflict(ServiceError):
    """The thing is in a state that refuses the operation (cancel a finished job...)."""

    code = "conflict"


class Fenced(ServiceError):
    """A report from a superseded lease epoch: the attempt must stop reporting."""

    code = "fenced"

    def __init__(self, message: str, *, job_id: str, reported: int, current: int) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.reported = reported
        self.current = current


class Unavailable(ServiceError):
    """A dependency (Temporal, the store) cannot be reached now; try again."""

    code = "unavailable"


def temporal_unreachable(err: BaseException) -> bool:
    """Whether `err` says Temporal cannot be reached now (as opposed to refusing a call)."""
    from temporalio.service import RPCError, RPCStatusCode

    if isinstance(err, RPCError):
        return err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED)
    # A lazily connected client reports a server it cannot reach this way.
    return isinstance(err, RuntimeError) and str(err).startswith("Failed client connect")


class RateLimited(ServiceError):
    """The caller sent more requests of a kind than its rate limit allows; retry later."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
