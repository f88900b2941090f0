"""What a UI route answers after its service call: the next page, or the refusal shown.

Routes catch what their one service call refuses (`REFUSALS`) and hand it here: a refusal
a person can act on (a conflict, bad input, Temporal down) goes back to the page it came
from with the message; an access refusal (not found, forbidden) is an error page with its
status, so a forged request is refused as loudly as the API refuses it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final, TypeVar
from urllib.parse import urlencode, urlsplit

from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from api.errors import status_of
from api.ui.render import page
from api.ui.session import UiContext
from gigafactory.jobspec import JobSpecError
from gigafactory.services.errors import (
    Forbidden,
    NotFoundError,
    ServiceError,
    Unauthorized,
    temporal_unreachable,
)

__all__ = [
    "ACCESS_REFUSALS",
    "REFUSALS",
    "act",
    "back",
    "message_of",
    "refused",
    "status_for",
    "to_page",
]

T = TypeVar("T")

# Refusals about who asks (shown with their own status), not about what was asked.
ACCESS_REFUSALS: Final = (NotFoundError, Forbidden, Unauthorized)

# What a service call may refuse with, for the UI to show rather than crash on.
REFUSALS: Final = (ServiceError, JobSpecError, ValidationError, RuntimeError, OSError)

TEMPORAL_DOWN = "Temporal is unreachable, so this cannot be done now; try again shortly"


def message_of(err: Exception) -> str:
    """What to tell the person about `err`."""
    if isinstance(err, ServiceError):
        return err.message
    if isinstance(err, ValidationError):
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()]
        return "; ".join(problems) or "invalid input"
    if temporal_unreachable(err):
        return TEMPORAL_DOWN
    return str(err) or type(err).__name__


def status_for(err: Exception) -> int:
    """The status of a page showing `err`."""
    if isinstance(err, ServiceError):
        return status_of(err)
    if isinstance(err, JobSpecError | ValidationError):
        return 422
    if temporal_unreachable(err):
        return 503
    return 500


def to_page(url: str, *, notice: str | None = None, error: str | None = None) -> Response:
    """303 to a page of the UI, with a message to show at its top."""
    params = {k: v for k, v in (("notice", notice), ("error", error)) if v}
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return RedirectResponse(parts._replace(query=query).geturl(), status_code=303)


def refused(ui: UiContext | None, err: Exception, *, back_to: str = "/ui") -> HTMLResponse:
    """An error page for `err`, with its status and a way back."""
    if not isinstance(err, REFUSALS) or (
        isinstance(err, RuntimeError | OSError) and not temporal_unreachable(err)
    ):
        raise err
    status = status_for(err)
    return page(
        ui,
        "error.html",
        {"status": status, "message": message_of(err), "back_to": back_to},
        status=status,
    )


def back(ui: UiContext, err: Exception, back_to: str) -> Response:
    """After an action its service refused: access refusals as error pages, the rest back on
    the page with the message."""
    if isinstance(err, ACCESS_REFUSALS):
        return refused(ui, err, back_to=back_to)
    if not isinstance(err, ServiceError | JobSpecError | ValidationError) and not (
        temporal_unreachable(err)
    ):
        raise err
    return to_page(back_to, error=message_of(err))


async def act(
    ui: UiContext,
    action: Awaitable[T],
    *,
    back_to: str,
    notice: str | Callable[[T], str],
) -> Response:
    """Await a state-changing service call: back on the page with `notice` (or what it
    makes of the call's result), or with what the service refused (see `back`)."""
    try:
        result = await action
    except REFUSALS as err:
        return back(ui, err, back_to)
    return to_page(back_to, notice=notice if isinstance(notice, str) else notice(result))
