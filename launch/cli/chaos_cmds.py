"""`gigafactory chaos`: sim jobs on a dev stack while its processes are killed and frozen."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Annotated

import typer

from launch.cli.client import CliError
from launch.cli.context import configure_logging, handles_errors, settings_from

__all__ = ["chaos"]


@handles_errors
def chaos(
    ctx: typer.Context,
    jobs: Annotated[
        int, typer.Option(min=1, help="Sim jobs (a DAG of 6 among them from 12).")
    ] = 30,
    factories: Annotated[int, typer.Option(min=1, help="Local sim factories.")] = 3,
    slots: Annotated[int, typer.Option(min=1, help="Slots per factory.")] = 2,
    seed: Annotated[int, typer.Option(help="Seed of the jobs and the fault schedule.")] = 0,
    events_every: Annotated[
        float, typer.Option(min=0.5, help="Seconds between faults (each jittered).")
    ] = 3.0,
    freeze: Annotated[
        float, typer.Option(min=0.5, help="Seconds a frozen factory stays frozen.")
    ] = 12.0,
    submit_rate: Annotated[
        float | None,
        typer.Option(min=0.01, help="Jobs submitted per second (default: over the first faults)."),
    ] = None,
    max_faults: Annotated[int, typer.Option(min=5, help="Stop the faults after this many.")] = 1000,
    drain_timeout: Annotated[
        float, typer.Option(min=1, help="Seconds the drain may take after the faults.")
    ] = 300.0,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Keep the run's stack, logs and sim trace here (default: a temp dir)."),
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="Also write the report as JSON to this file.")
    ] = None,
    control_processes: Annotated[
        int,
        typer.Option(
            min=1, help="`serve control` processes; each restart-control kills one of them."
        ),
    ] = 1,
) -> None:
    """Run N sim jobs on a dev stack of processes while factories are SIGKILLed and frozen
    and the control process, the API and Temporal are killed and restarted; then check
    every invariant. Exits 1 when one is broken. See docs/reliability.md.
    """
    from launch.chaos.report import render_report
    from launch.chaos.runner import ChaosError, ChaosOptions, run_chaos

    settings = settings_from(ctx)
    configure_logging("WARNING" if settings.log_level.upper() == "INFO" else settings.log_level)
    if data_dir is not None and data_dir.exists() and any(data_dir.iterdir()):
        raise CliError(f"{data_dir} is not empty: a chaos run needs a fresh one", code=2)
    options = ChaosOptions(
        jobs=jobs,
        factories=factories,
        slots=slots,
        seed=seed,
        every_s=events_every,
        freeze_s=freeze,
        submit_rate=submit_rate,
        max_faults=max_faults,
        drain_timeout_s=drain_timeout,
        data_dir=data_dir,
        control_processes=control_processes,
    )
    # SIGTERM stops the run as Ctrl-C does: the stack is stopped, nothing is left running.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        result = asyncio.run(run_chaos(settings, options))
    except ChaosError as err:
        raise CliError(str(err)) from None
    typer.echo(render_report(result))
    if report is not None:
        report.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    raise typer.Exit(0 if result.ok else 1)
