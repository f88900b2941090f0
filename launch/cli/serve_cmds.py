"""`gigafactory serve api` and `gigafactory serve control`: the control plane's processes."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from launch.cli.context import configure_logging, handles_errors, settings_from

__all__ = ["serve_app"]

serve_app = typer.Typer(
    help="Run one process of the control plane (any number of each may run).",
    no_args_is_help=True,
)


@serve_app.command("api")
@handles_errors
def api(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Listen address (FLEET_API_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (FLEET_API_PORT).")] = None,
) -> None:
    """The HTTP API (and the web UI) until SIGINT or SIGTERM."""
    settings = settings_from(ctx, api_host=host, api_port=port)
    configure_logging(settings.log_level, http=settings.log_http)
    from launch.serve import serve_api

    serve_api(settings)


@serve_app.command("control")
@handles_errors
def control(ctx: typer.Context) -> None:
    """The control-plane worker (every workflow, the control activities) and the dispatch
    reconciler, until SIGINT or SIGTERM."""
    settings = settings_from(ctx)
    configure_logging(settings.log_level, http=settings.log_http)
    from launch.serve import serve_control

    asyncio.run(serve_control(settings))
