"""What every command shares: validated settings (env + global flags) and error exits."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import typer
from pydantic import ValidationError

from gigafactory.settings import Settings
from launch.cli.client import ApiClient, CliError

__all__ = ["HTTP_LOGGERS", "api", "configure_logging", "fail", "handles_errors", "settings_from"]

P = ParamSpec("P")
R = TypeVar("R")


def settings_from(ctx: typer.Context, **overrides: Any) -> Settings:
    """Settings from the environment, the global flags and the command's own flags."""
    base: dict[str, Any] = dict(ctx.obj or {})
    base.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**base)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in err.errors()
        )
        raise CliError(f"invalid settings: {problems}", code=2) from None


def api(ctx: typer.Context) -> ApiClient:
    """A client of the configured API with the CLI's key."""
    return ApiClient.from_settings(settings_from(ctx))


def fail(message: str, code: int = 1) -> None:
    """Print one error line and exit."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def handles_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn CliError (and a missing job-spec file) into one line on stderr and an exit code."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except CliError as err:
            fail(str(err), err.code)
        except FileNotFoundError as err:
            fail(f"no such file: {err.filename}", 2)
        raise AssertionError("unreachable")

    return wrapper


# Loggers of third-party HTTP clients and servers: the Azure SDK logs every request and its
# headers at INFO (a Cosmos DB store floods a log), httpx and httpcore one line per request
# (every heartbeat), uvicorn one per request served. Quiet unless FLEET_LOG_HTTP asks.
HTTP_LOGGERS = ("azure", "httpx", "httpcore", "uvicorn.access", "urllib3")


def configure_logging(level: str, *, http: bool = False) -> None:
    """Log to stderr at `level`; third-party HTTP logging at WARNING unless `http`."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Temporal's worker logs every poll error at WARNING while a server restarts; keep INFO.
    logging.getLogger("temporalio").setLevel(max(logging.INFO, logging.getLogger().level))
    for name in HTTP_LOGGERS:
        # NOTSET: the root's level, like every other logger.
        logging.getLogger(name).setLevel(logging.NOTSET if http else logging.WARNING)


def existing_file(path: Path) -> Path:
    if str(path) != "-" and not path.is_file():
        raise CliError(f"no such file: {path}", code=2)
    return path
