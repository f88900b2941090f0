"""`gigafactory route`: explain a job's routing decision; show or set product weights."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from launch.cli.client import CliError
from launch.cli.context import api, handles_errors
from launch.cli.jobs import spec_body
from launch.cli.render import short_time, table

__all__ = ["route_app"]

route_app = typer.Typer(help="Routing: explain decisions, tune weights.", no_args_is_help=True)


def render_explanation(body: dict[str, Any]) -> str:
    """Each candidate with its score term by term (the `sprio` of the fleet)."""
    if not body["candidates"]:
        return f"job {body['jobId']}: {body.get('reason') or 'no routing decision yet'}"
    terms: list[str] = []
    for c in body["candidates"]:
        for t in c.get("breakdown", []):
            if t["term"] not in terms:
                terms.append(t["term"])
    rows = []
    for c in body["candidates"]:
        by_term = {t["term"]: t["contribution"] for t in c.get("breakdown", [])}
        rows.append(
            [
                c["factoryId"],
                f"{c['score']:.3f}" if c["eligible"] else "excluded",
                *(f"{by_term[t]:+.3f}" if t in by_term else "" for t in terms),
                c.get("excludedBecause") or "",
            ]
        )
    picked = body.get("factoryId") or "none"
    head = (
        f"job {body['jobId']} at {short_time(body.get('at'))}: {body.get('stage')} -> {picked}"
        f" ({body.get('reason') or ''})"
    )
    weights = ", ".join(f"{k}={v:g}" for k, v in body.get("weights", {}).items())
    lines = [head, f"weights: {weights}", table(["factory", "score", *terms, "why not"], rows)]
    shadow = body.get("shadow")
    if shadow:
        verdict = "differs" if shadow["differs"] else "agrees"
        lines.append(f"shadow weights would pick {shadow['factoryId']} ({verdict})")
    return "\n".join(lines)


@route_app.command("explain")
@handles_errors
def explain(ctx: typer.Context, job_id: str) -> None:
    """How every factory scored for the job's last routing decision, and why some were out."""
    with api(ctx) as client:
        typer.echo(render_explanation(client.get(f"/fleet/jobs/{job_id}/routing")))


def _weights(values: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in values:
        term, sep, raw = item.partition("=")
        try:
            out[term] = float(raw)
        except ValueError:
            sep = ""
        if not sep or not term:
            raise CliError(f"--set {item!r}: use term=number, e.g. load=4", code=2)
    return out


def render_plan(body: dict[str, Any]) -> str:
    """A dry-run: where the job would go, or what it would preempt."""
    explained = render_explanation(
        {
            "jobId": "(plan)",
            "stage": "plan",
            "factoryId": body.get("factoryId"),
            "reason": body.get("reason"),
            "weights": body["weights"],
            "candidates": body["candidates"],
        }
    )
    lines = [explained]
    plan = body.get("preemption")
    if plan:
        acting = "would" if body["preemptionEnabled"] else "would, with FLEET_PREEMPTION on,"
        lines.append(
            f"nothing fits: it {acting} preempt {', '.join(plan['evict'])} on "
            f"{plan['factoryId']} ({plan['reason']})"
        )
        lines.append(
            table(
                ["factory", "feasible", "victims", "work lost", "why not"],
                [
                    (
                        c["factoryId"],
                        "yes" if c["feasible"] else "no",
                        ", ".join(c["victims"]) or None,
                        f"{c['workLostS']:.0f}s",
                        ("chosen" if c["chosen"] else c.get("rejectedBecause")) or None,
                    )
                    for c in plan["candidates"]
                ],
            )
        )
    elif not body.get("factoryId"):
        lines.append("nothing fits, and nothing could be preempted for it")
    return "\n".join(lines)


@route_app.command("plan")
@handles_errors
def plan(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A job-spec Markdown file ('-' for stdin).")],
    product: Annotated[str | None, typer.Option("--product", help="productId")] = None,
    priority: Annotated[str | None, typer.Option(help="low | normal | high | critical")] = None,
    engine: Annotated[str | None, typer.Option(help="Override the spec's engine.")] = None,
    capability: Annotated[
        list[str] | None, typer.Option("--capability", "-c", help="Required factory label.")
    ] = None,
) -> None:
    """Dry-run routing for a job spec: the factory it would get, or whom it would preempt."""
    body = spec_body(
        file, productId=product, priority=priority, engine=engine, capabilities=capability
    )
    with api(ctx) as client:
        typer.echo(render_plan(client.post("/fleet/routing/plan", body)))


@route_app.command("weights")
@handles_errors
def weights(
    ctx: typer.Context,
    product: str,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="term=weight (replaces the overrides).")
    ] = None,
    reset: Annotated[bool, typer.Option(help="Back to the fleet defaults.")] = False,
) -> None:
    """Show a product's routing weights, or replace its overrides (operators)."""
    path = f"/fleet/routing/weights/{product}"
    with api(ctx) as client:
        if set_ or reset:
            body = client.request(
                "PUT", path, json={"weights": {} if reset else _weights(set_ or [])}
            )
        else:
            body = client.get(path)
    rows = [
        (t, f"{body['defaults'][t]:g}", _fmt(body["overrides"].get(t)), f"{body['effective'][t]:g}")
        for t in body["terms"]
    ]
    typer.echo(table(["term", "default", "override", "effective"], rows))


def _fmt(value: float | None) -> str | None:
    return None if value is None else f"{value:g}"
