"""`gigafactory factory enroll` and `factory run`: what runs on a factory machine."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer

from gigafactory.durations import format_duration, parse_duration
from gigafactory.files import write_private
from gigafactory.temporal_client import connect_temporal
from launch.cli.admin import factory_app
from launch.cli.client import CliError, resolve_api_url
from launch.cli.context import configure_logging, handles_errors, settings_from
from launch.factory_runtime import (
    FactoryRevoked,
    FactoryRuntime,
    enroll_factory,
    factory_workspaces,
    token_path,
)

__all__ = ["split_list"]


def split_list(value: str | None) -> list[str] | None:
    """`a,b, c` -> ['a', 'b', 'c']; None stays None (meaning: not given)."""
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


EnginesOpt = Annotated[
    str | None,
    typer.Option(help="Comma-separated engines to offer (default: every engine found)."),
]
LabelsOpt = Annotated[str, typer.Option(help="Comma-separated labels (capabilities).")]
SlotsOpt = Annotated[int, typer.Option(min=0, max=1024, help="Concurrent agents.")]


@factory_app.command("enroll")
@handles_errors
def factory_enroll(
    ctx: typer.Context,
    factory_id: Annotated[str, typer.Option("--id", help="This factory's id.")],
    token: Annotated[str, typer.Option("--token", help="The one-time enrollment token.")],
    engines: EnginesOpt = None,
    labels: LabelsOpt = "",
    slots: SlotsOpt = 1,
    cost_rate: Annotated[float, typer.Option(help="USD per hour this machine costs.")] = 0.0,
) -> None:
    """Exchange an enrollment token for a factory token (kept in the data dir, mode 0600)."""
    settings = settings_from(ctx)
    try:
        factory_token = asyncio.run(
            enroll_factory(
                resolve_api_url(settings),
                token,
                factory_id=factory_id,
                engines=split_list(engines) or [],
                labels=split_list(labels) or [],
                slots=slots,
                cost_rate_usd_per_hour=cost_rate,
            )
        )
    except RuntimeError as err:
        raise CliError(str(err)) from None
    path = token_path(settings, factory_id)
    write_private(path, factory_token)
    typer.echo(f"factory {factory_id} enrolled; token saved to {path}")


@factory_app.command("run")
@handles_errors
def factory_run(
    ctx: typer.Context,
    factory_id: Annotated[str, typer.Option("--id", help="This factory's id.")],
    engines: EnginesOpt = None,
    labels: LabelsOpt = "",
    slots: SlotsOpt = 1,
) -> None:
    """Poll `factory-<id>` with N slots and heartbeat until Ctrl-C (or SIGTERM).

    The token comes from FLEET_FACTORY_TOKEN or the file `factory enroll` saved.
    """
    settings = settings_from(ctx)
    configure_logging(settings.log_level, http=settings.log_http)
    token = settings.factory_token
    if not token:
        try:
            token = token_path(settings, factory_id).read_text().strip()
        except OSError:
            raise CliError(
                f"factory {factory_id} has no token: run `gigafactory factory enroll --id "
                f"{factory_id} --token <enrollment token>` or set FLEET_FACTORY_TOKEN",
                code=2,
            ) from None

    from gigafactory.observability.process import start_process_observability

    start_process_observability(settings, "factory")

    async def run() -> None:
        client = await connect_temporal(settings)
        runtime = FactoryRuntime(
            settings,
            client,
            factory_id=factory_id,
            token=token,
            engines=split_list(engines),
            labels=split_list(labels) or [],
            slots=slots,
            api_url=resolve_api_url(settings),
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await runtime.run(stop)

    try:
        asyncio.run(run())
    except FactoryRevoked as err:
        raise CliError(f"{err}; enroll again with a new enrollment token") from None


@factory_app.command("cleanup")
@handles_errors
def factory_cleanup(
    ctx: typer.Context,
    factory_id: Annotated[str, typer.Option("--id", help="This factory's id.")],
    older_than: Annotated[
        str | None,
        typer.Option(help="Unused for longer than this (default FLEET_WORKSPACE_RETENTION_S)."),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Only list what would be removed.")] = False,
) -> None:
    """Remove the job worktrees (and local branches) this factory has not used for a while.

    A worktree is kept after its job ends, so the job can be shipped; the control plane
    removes it when the job is shipped or cancelled, and this command removes the rest.
    """
    settings = settings_from(ctx)
    configure_logging(settings.log_level, http=settings.log_http)
    try:
        retention = parse_duration(older_than) if older_than else settings.workspace_retention_s
    except ValueError as err:
        raise CliError(f"--older-than: {err}", code=2) from None
    workspaces = factory_workspaces(settings, factory_id)
    expired = workspaces.expired(retention)
    for product_id, job_id in expired:
        if not dry_run:
            workspaces.remove(job_id=job_id, product_id=product_id, repo=None)
        typer.echo(f"{'would remove' if dry_run else 'removed'} {product_id}/{job_id}")
    typer.echo(
        f"{len(expired)} worktree(s) unused for more than {format_duration(retention)}"
        f"{' (dry run)' if dry_run else ''}"
    )
