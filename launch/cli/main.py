"""The `gigafactory` command: `gigafactory --help` lists everything."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from launch.cli import factory_cmds as _factory_cmds  # noqa: F401  (registers commands)
from launch.cli import jobs as jobs_cmds
from launch.cli import stack_cmds
from launch.cli.admin import audit, factory_app, key_app
from launch.cli.budget_cmds import budget_app
from launch.cli.chaos_cmds import chaos
from launch.cli.routing_cmds import route_app
from launch.cli.serve_cmds import serve_app

__all__ = ["app", "main"]

app = typer.Typer(
    help="Gigafactory: a control plane for a fleet of AI coding agents, on Temporal.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _global(
    ctx: typer.Context,
    api_url: Annotated[str | None, typer.Option(help="The API (FLEET_API_URL).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Data directory (FLEET_DATA_DIR).")] = None,
) -> None:
    """Settings come from FLEET_* environment variables; these flags override them."""
    obj: dict[str, Any] = {}
    if api_url is not None:
        obj["api_url"] = api_url
    if data_dir is not None:
        obj["data_dir"] = data_dir
    ctx.obj = obj


jobs_cmds.register(app)
app.command("audit")(audit)
app.command("chaos")(chaos)
stack_cmds.register(app)
app.add_typer(factory_app, name="factory")
app.add_typer(key_app, name="key")
app.add_typer(route_app, name="route")
app.add_typer(budget_app, name="budget")
app.add_typer(serve_app, name="serve")


def main() -> None:
    # SIGTERM unwinds like Ctrl-C (KeyboardInterrupt), so a command that started processes
    # (bench, demo) stops them on its way out; long-running commands (dev, serve, factory
    # run) install their own handlers on their event loop.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    app()


if __name__ == "__main__":
    main()
