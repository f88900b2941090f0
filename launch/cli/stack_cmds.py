"""`gigafactory dev`, `demo` and `bench`: the whole stack in one process."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from launch.cli.client import CliError, write_stack_file
from launch.cli.context import configure_logging, handles_errors, settings_from
from launch.cli.factory_cmds import split_list

if TYPE_CHECKING:
    from launch.stack import DevStack

__all__ = ["register"]

ApiPort = Annotated[int | None, typer.Option(help="API port (FLEET_API_PORT).")]
TemporalPort = Annotated[int | None, typer.Option(help="Temporal port (FLEET_TEMPORAL_PORT).")]
UiPort = Annotated[int | None, typer.Option(help="Temporal UI port (FLEET_UI_PORT).")]
DataDir = Annotated[Path | None, typer.Option(help="Data directory (FLEET_DATA_DIR).")]


def stack_banner(stack: DevStack) -> str:
    lines = [
        f"API        {stack.api_url}   (OpenAPI docs: {stack.api_url}/docs)",
        f"Web UI     {stack.web_url}   (sign in with an API key, e.g. the admin key)",
        f"Temporal   {stack.temporal_address}",
    ]
    if stack.ui_url:
        lines.append(f"Temporal UI {stack.ui_url}")
    return "\n".join(lines)


@handles_errors
def dev(
    ctx: typer.Context,
    factories: Annotated[int, typer.Option(min=0, help="Local factories to run.")] = 2,
    slots: Annotated[int, typer.Option(min=1, help="Slots per local factory.")] = 2,
    engines: Annotated[
        str | None, typer.Option(help="Engines of the local factories (default: all found).")
    ] = None,
    api_port: ApiPort = None,
    temporal_port: TemporalPort = None,
    ui_port: UiPort = None,
    data_dir: DataDir = None,
    store: Annotated[str | None, typer.Option(help="sqlite | cosmos (FLEET_STORE).")] = None,
    control_processes: Annotated[
        int, typer.Option(min=1, help="How many `serve control` processes.")
    ] = 1,
    api_processes: Annotated[
        int,
        typer.Option(min=1, help="How many `serve api` processes (factories use each in turn)."),
    ] = 1,
    in_process: Annotated[
        bool,
        typer.Option("--in-process", help="Control plane, API and factories in this process."),
    ] = False,
    metrics: Annotated[
        bool,
        typer.Option(
            "--metrics", help="Every process serves its metrics and the SDK's on a free port."
        ),
    ] = False,
    tracing: Annotated[
        str | None, typer.Option(help="off | file | otlp (FLEET_TRACING); file: <data>/traces.")
    ] = None,
) -> None:
    """Start Temporal, the control plane, the API and local factories until Ctrl-C.

    Each part runs as its own process (`serve control`, `serve api`, `factory run`), as in
    a deployment; logs go to <data dir>/logs.
    """
    settings = settings_from(
        ctx,
        api_port=api_port,
        temporal_port=temporal_port,
        ui_port=ui_port,
        data_dir=data_dir,
        store=store,
        tracing=tracing,
    )
    configure_logging(settings.log_level, http=settings.log_http)
    # Imported here: the stack pulls in the API and Temporal, which `--help` needs not.
    from launch.stack import DevStack, LocalFactory, PortInUse, StackStartError

    local = [
        LocalFactory(id=f"local-{i + 1}", engines=split_list(engines), slots=slots)
        for i in range(factories)
    ]
    generated = settings.admin_key is None

    async def run() -> None:
        stack = DevStack(
            settings,
            factories=local,
            in_process=in_process,
            control_processes=control_processes,
            api_processes=api_processes,
            metrics=metrics,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if not await stack.start_unless(stop):
            typer.echo("stopped while starting; everything it had started is stopped")
            return
        async with stack.stopping():
            write_stack_file(
                stack.settings,
                {
                    "apiUrl": stack.api_url,
                    "temporalAddress": stack.temporal_address,
                    "uiUrl": stack.ui_url,
                    "metricsUrls": stack.metrics_urls,
                },  # fmt: skip
                stack.admin_key,
            )
            typer.echo(stack_banner(stack))
            typer.echo(f"Factories  {', '.join(f.id for f in local) or 'none'}")
            if stack.processes:
                logs = stack.settings.data_dir / "logs"
                names = ", ".join(p.name for p in stack.processes)
                typer.echo(f"Processes  {names} (logs: {logs})")
            typer.echo(f"Metrics    {stack.api_url}/metrics   (the fleet; operator key)")
            for name, url in stack.metrics_urls.items():
                typer.echo(f"           {url}   ({name})")
            if stack.settings.tracing == "file":
                typer.echo(f"Traces     {stack.settings.resolved_tracing_dir} (JSON lines)")
            if generated:
                typer.echo(
                    f"Admin key  {stack.admin_key}   (generated; set FLEET_ADMIN_KEY to fix)"
                )
            typer.echo(
                f"The CLI in another shell finds this stack through {stack.settings.data_dir}; "
                "Ctrl-C stops everything."
            )
            await stop.wait()
            typer.echo("stopping...")

    try:
        asyncio.run(run())
    except PortInUse as err:
        raise CliError(str(err), code=2) from None
    except StackStartError as err:
        raise CliError(f"the dev stack did not start: {err}") from None


@handles_errors
def demo(
    ctx: typer.Context,
    keep_running: Annotated[
        bool, typer.Option("--keep-running", help="Leave the stack up after the summary.")
    ] = False,
    api_port: ApiPort = None,
    temporal_port: TemporalPort = None,
    ui_port: UiPort = None,
    data_dir: DataDir = None,
) -> None:
    """Start the stack, run a handful of jobs on two factories, print a summary."""
    from launch.demo import run_demo

    settings = settings_from(
        ctx, api_port=api_port, temporal_port=temporal_port, ui_port=ui_port, data_dir=data_dir
    )
    configure_logging("WARNING" if settings.log_level.upper() == "INFO" else settings.log_level)
    raise typer.Exit(asyncio.run(run_demo(settings, keep_running=keep_running)))


@handles_errors
def bench(
    ctx: typer.Context,
    jobs: Annotated[int, typer.Option(min=1, help="Sim jobs to run.")] = 200,
    factories: Annotated[int, typer.Option(min=1, help="Local sim factories.")] = 2,
    slots: Annotated[int, typer.Option(min=1, help="Slots per factory.")] = 2,
    duration: Annotated[float, typer.Option(min=0, help="Simulated work per job (s).")] = 0.0,
    routing: Annotated[
        bool, typer.Option("--routing", help="Benchmark the pure routing module (no stack).")
    ] = False,
    fleets: Annotated[
        str, typer.Option(help="With --routing: fleet sizes, comma-separated.")
    ] = "1000,10000",
    decisions: Annotated[
        int, typer.Option(min=1, help="With --routing: distinct decisions per pass.")
    ] = 20,
    seed: Annotated[int, typer.Option(help="With --routing: the fleet generator's seed.")] = 0,
    preemption: Annotated[
        bool,
        typer.Option("--preemption", help="Critical submit-to-start on a fleet full of low jobs."),
    ] = False,
    control_processes: Annotated[
        int, typer.Option(min=1, help="The control plane in N `serve control` processes.")
    ] = 1,
    api_processes: Annotated[
        int, typer.Option(min=1, help="The API in N `serve api` processes.")
    ] = 1,
    in_process: Annotated[
        bool, typer.Option("--in-process", help="The whole fleet in this one process.")
    ] = False,
    ui: Annotated[
        bool,
        typer.Option("--ui", help="The API process's CPU with five web UI pages polling it."),
    ] = False,
    ui_seconds: Annotated[
        float, typer.Option(min=5, help="With --ui: the length of each measured window (s).")
    ] = 60.0,
) -> None:
    """Throughput and latency of N sim jobs beside a bare Temporal workflow baseline.

    With --routing: decisions/s of the pure routing module beside a naive scheduler.
    With --ui: the API process's CPU with five web UI pages open on a fleet of 50 jobs.
    """
    if ui:
        from bench.ui import render_ui_report, run_ui_bench

        configure_logging("WARNING")
        try:
            ui_report = asyncio.run(run_ui_bench(measure_s=ui_seconds))
        except RuntimeError as err:
            raise CliError(str(err)) from None
        typer.echo(render_ui_report(ui_report))
        return
    if routing:
        from bench.routing import render_routing_report, run_routing_bench

        try:
            sizes = tuple(int(n) for n in split_list(fleets) or [])
            routing_report = run_routing_bench(sizes, decisions=decisions, seed=seed)
        except ValueError as err:
            raise CliError(f"--fleets/--decisions: {err}") from None
        typer.echo(render_routing_report(routing_report))
        if not routing_report.all_valid:
            raise CliError("a routing decision failed its validity check")
        return
    from bench.fleet import render_report, run_bench
    from bench.preemption import render_preemption_report, run_preemption_bench

    if preemption:
        configure_logging("WARNING")
        preempt_report = asyncio.run(
            run_preemption_bench(settings_from(ctx), factories=factories, slots=slots)
        )
        typer.echo(render_preemption_report(preempt_report))
        return

    settings = settings_from(ctx)
    configure_logging("WARNING")
    report = asyncio.run(
        run_bench(
            settings,
            jobs=jobs,
            factories=factories,
            slots=slots,
            duration_s=duration,
            control_processes=control_processes,
            api_processes=api_processes,
            in_process=in_process,
        )
    )
    typer.echo(render_report(report))
    if report.fleet.succeeded != jobs or report.baseline.succeeded != jobs:
        raise CliError("not every benchmark job succeeded")


def register(app: typer.Typer) -> None:
    app.command()(dev)
    app.command()(demo)
    app.command()(bench)
