"""Submitter commands: submit, jobs, job (with --follow), cancel, ship."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from gigafactory.models import TERMINAL_STAGES
from launch.cli.client import ApiClient, CliError
from launch.cli.context import api, existing_file, handles_errors
from launch.cli.render import ago, short_time, table

__all__ = ["register"]

_TERMINAL = {s.value for s in TERMINAL_STAGES}


def parse_params(values: list[str] | None) -> dict[str, Any] | None:
    """`key=value` pairs; values parse as JSON when they can (numbers, booleans...)."""
    if not values:
        return None
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise CliError(f"--param {item!r}: use key=value", code=2)
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


def spec_body(file: Path, **overrides: Any) -> dict[str, Any]:
    """A submit body: the job-spec file's text and the fields given (None: not given)."""
    text = sys.stdin.read() if str(file) == "-" else existing_file(file).read_text("utf-8")
    return {"spec": text, **{k: v for k, v in overrides.items() if v is not None}}


@handles_errors
def submit(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A job-spec Markdown file ('-' for stdin).")],
    product: Annotated[str | None, typer.Option("--product", help="productId")] = None,
    priority: Annotated[str | None, typer.Option(help="low | normal | high | critical")] = None,
    engine: Annotated[str | None, typer.Option(help="Override the spec's engine.")] = None,
    cwd: Annotated[str | None, typer.Option(help="Working directory on the factory.")] = None,
    lock: Annotated[str | None, typer.Option(help="Named lock (one holder at a time).")] = None,
    timeout: Annotated[str | None, typer.Option(help="e.g. 90s, 15m, 10h")] = None,
    title: Annotated[str | None, typer.Option()] = None,
    capability: Annotated[
        list[str] | None, typer.Option("--capability", "-c", help="Required factory label.")
    ] = None,
    cost: Annotated[float | None, typer.Option("--cost", help="Estimated cost in USD.")] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Engine param key=value.")
    ] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream until it ends.")] = False,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            help="Makes the submit safe to repeat: the same key (for this API key and "
            "product) returns the job it made instead of a new one.",
        ),
    ] = None,
) -> None:
    """Submit a job-spec file; flags override the file's columns."""
    body = spec_body(
        file,
        productId=product,
        priority=priority,
        engine=engine,
        cwd=cwd,
        lock=lock,
        timeout=timeout,
        title=title,
        capabilities=capability or None,
        estimatedCostUsd=cost,
        params=parse_params(param),
    )
    with api(ctx) as client:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}
        job, answer = client.answer("POST", "/fleet/jobs", json=body, headers=headers)
        replayed = answer.get("Idempotent-Replayed") == "true"
        verb = "already submitted as" if replayed else "submitted"
        typer.echo(f"{verb} job {job['id']} ({job['productId']}, {job['spec']['priority']})")
        if follow:
            raise typer.Exit(_follow(client, job["id"]))


@handles_errors
def jobs(
    ctx: typer.Context,
    product: Annotated[str | None, typer.Option("--product")] = None,
    stage: Annotated[str | None, typer.Option()] = None,
    priority: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 50,
) -> None:
    """List jobs, newest first."""
    with api(ctx) as client:
        page = client.get(
            "/fleet/jobs", productId=product, stage=stage, priority=priority, limit=limit
        )
    rows = [
        (
            j["id"],
            j["productId"],
            j["spec"]["priority"],
            j["spec"]["engine"],
            j["stage"],
            j.get("factoryId"),
            f"{j['costUsd']:.2f}",
            short_time(j["createdAt"]),
            (j.get("stageReason") or "")[:60],
        )
        for j in page["items"]
    ]
    headers = ["id", "product", "priority", "engine", "stage", "factory", "usd", "created"]
    typer.echo(table([*headers, "reason"], rows))


@handles_errors
def job(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job id.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream until it ends.")] = False,
    tail: Annotated[int, typer.Option(help="Log lines to show.")] = 20,
    dag: Annotated[bool, typer.Option("--dag", help="The job and its children as a tree.")] = False,
) -> None:
    """A job's stage, runs, events and log tail."""
    with api(ctx) as client:
        if dag:
            typer.echo(render_dag(client.get(f"/fleet/jobs/{job_id}/dag")))
            return
        if follow:
            raise typer.Exit(_follow(client, job_id))
        typer.echo(describe_job(client, job_id, tail))


def render_dag(root: dict[str, Any]) -> str:
    """A DAG as an indented tree: stage, factory, own and rolled-up cost, dependencies."""
    lines: list[str] = []

    def walk(node: dict[str, Any], prefix: str, last: bool, top: bool) -> None:
        name = node["childId"] or node["id"]
        deps = f" after {', '.join(node['dependsOn'])}" if node["dependsOn"] else ""
        kind = node.get("dependencyKind")
        if deps and kind and kind != "succeeded":
            deps += f" ({kind})"
        cost = f"${node['costUsd']:.2f}"
        if node["children"]:
            cost += f" (tree ${node['rollupCostUsd']:.2f}, {node['progress']})"
        where = f" on {node['factoryId']}" if node.get("factoryId") else ""
        reason = f": {node['stageReason']}" if node.get("stageReason") else ""
        branch = "" if top else ("└─ " if last else "├─ ")
        lines.append(f"{prefix}{branch}{name}  {node['stage']}{where}  {cost}{deps}{reason}")
        inner = prefix if top else prefix + ("   " if last else "│  ")
        for i, child in enumerate(node["children"]):
            walk(child, inner, i == len(node["children"]) - 1, False)

    walk(root, "", True, True)
    return "\n".join(lines)


def describe_job(client: ApiClient, job_id: str, tail: int = 20) -> str:
    """The `gigafactory job ID` view."""
    j = client.get(f"/fleet/jobs/{job_id}")
    runs = client.get(f"/fleet/jobs/{job_id}/runs")["items"]
    events = client.get(f"/fleet/jobs/{job_id}/events", limit=500)["items"]
    log = client.get(f"/fleet/jobs/{job_id}/log", limit=5000)["text"]
    spec = j["spec"]
    lines = [
        f"job {j['id']}  {j['stage']}"
        + (f"  ({j['stageReason']})" if j.get("stageReason") else ""),
        f"  product {j['productId']}  priority {spec['priority']}  engine {spec['engine']}"
        f"  lock {spec.get('lock') or '-'}  epoch {j['leaseEpoch']}  cost ${j['costUsd']:.2f}",
        f"  workflow {j['workflowId']}",
        "",
        "runs:",
        table(
            ["epoch", "factory", "outcome", "exit", "usd", "started", "took", "reason"],
            [
                (
                    r["epoch"],
                    r["factoryId"],
                    r.get("outcome") or "running",
                    r.get("exitCode"),
                    f"{r['costUsd']:.2f}" + ("~" if r.get("costEstimated") else ""),
                    short_time(r["startedAt"]),
                    ago(r["startedAt"], r.get("finishedAt")),
                    (r.get("reason") or "")[:60],
                )
                for r in runs
            ],
        ),
        "",
        "events:",
        table(
            ["at", "kind", "stage", "actor", "reason"],
            [
                (short_time(e["at"]), e["kind"], e.get("stage"), e["actor"], e.get("reason"))
                for e in events
            ],
        ),
    ]
    log_lines = log.splitlines()[-tail:] if tail > 0 else []
    if log_lines:
        lines += ["", f"log (last {len(log_lines)} lines):", *("  " + x for x in log_lines)]
    return "\n".join(lines)


def _follow(client: ApiClient, job_id: str, poll_s: float = 0.5) -> int:
    """Print stage changes and the log as they happen; the exit code says how it ended."""
    stage = None
    epoch = -1
    seq = -1
    while True:
        j = client.get(f"/fleet/jobs/{job_id}")
        if j["leaseEpoch"] != epoch and j["leaseEpoch"] > 0:
            epoch, seq = j["leaseEpoch"], -1
        if epoch > 0:
            log = client.get(f"/fleet/jobs/{job_id}/log", epoch=epoch, afterSeq=seq)
            if log["items"]:
                typer.echo(log["text"], nl=False)
                seq = log["nextSeq"]
        if j["stage"] != stage:
            stage = j["stage"]
            reason = f": {j['stageReason']}" if j.get("stageReason") else ""
            where = f" on {j['factoryId']} (epoch {epoch})" if j.get("factoryId") else ""
            typer.echo(f"--- {stage}{where}{reason}", err=True)
        if stage in _TERMINAL:
            return 0 if stage == "succeeded" else 1
        time.sleep(poll_s)


def cancel(
    ctx: typer.Context,
    job_id: str,
    reason: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Cancel a job wherever it is (waiting, dispatched or running)."""
    _action(ctx, job_id, "cancel", reason)


def ship(
    ctx: typer.Context,
    job_id: str,
    note: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Ship a succeeded job (operators): a job with a repository has its branch pushed to
    the ship remote (or the forge command run) first."""
    _ship(ctx, job_id, note)


@handles_errors
def _ship(ctx: typer.Context, job_id: str, note: str | None) -> None:
    with api(ctx) as client:
        j = client.patch(f"/fleet/jobs/{job_id}", {"action": "ship", "reason": note})
    shipment = j.get("shipment")
    if j["stage"] != "shipped":
        typer.echo(f"ship of job {j['id']} under way (see `gigafactory job {j['id']}`)")
    elif shipment:
        url = f" ({shipment['url']})" if shipment.get("url") else ""
        typer.echo(
            f"job {j['id']} shipped: {shipment['branch']} at {shipment['commit'][:12]} "
            f"to {shipment['remote']}{url}"
        )
    else:
        typer.echo(f"job {j['id']} shipped")


@handles_errors
def _action(ctx: typer.Context, job_id: str, action: str, reason: str | None) -> None:
    with api(ctx) as client:
        j = client.patch(f"/fleet/jobs/{job_id}", {"action": action, "reason": reason})
    typer.echo(f"{action} requested for job {j['id']} (was {j['stage']})")


def register(app: typer.Typer) -> None:
    app.command()(submit)
    app.command()(jobs)
    app.command()(job)
    app.command()(cancel)
    app.command()(ship)
