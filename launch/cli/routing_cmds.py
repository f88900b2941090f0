"""`gigafactory route`: explain a job's routing decision; show or set product weights."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from gigafactory.durations import parse_duration
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


def _seconds_opt(value: str | None, option: str) -> float | None:
    if value is None:
        return None
    if value.strip() in ("0", "0s"):
        return 0.0
    try:
        return parse_duration(value)
    except ValueError as err:
        raise CliError(f"{option} {value!r}: {err}", code=2) from None


@route_app.command("policy")
@handles_errors
def policy(
    ctx: typer.Context,
    product: str,
    preempting: Annotated[
        str | None,
        typer.Option(help="Priorities whose jobs may preempt, e.g. critical,high."),
    ] = None,
    min_runtime: Annotated[
        str | None, typer.Option(help="The product's jobs are not evicted before, e.g. 5m.")
    ] = None,
    grace: Annotated[
        str | None, typer.Option(help="How long its evicted agents get to stop, e.g. 30s.")
    ] = None,
    reset: Annotated[bool, typer.Option(help="Back to the fleet's policy.")] = False,
) -> None:
    """Show a product's preemption policy, or set it (operators); weights are kept."""
    path = f"/fleet/routing/weights/{product}"
    with api(ctx) as client:
        body = client.get(path)
        changes = (preempting, min_runtime, grace)
        if reset or any(v is not None for v in changes):
            own: dict[str, Any] = {} if reset else dict(body["preemption"])
            if preempting is not None:
                own["preemptingPriorities"] = [p for p in preempting.split(",") if p.strip()]
            if min_runtime is not None:
                own["minRuntimeS"] = _seconds_opt(min_runtime, "--min-runtime")
            if grace is not None:
                own["graceS"] = _seconds_opt(grace, "--grace")
            body = client.request(
                "PUT", path, json={"weights": body["overrides"], "preemption": own}
            )
    own, effective = body["preemption"], body["effectivePreemption"]
    rows = [
        (
            "preempting priorities",
            ", ".join(own["preemptingPriorities"]) if own.get("preemptingPriorities") else None,
            ", ".join(effective["preemptingPriorities"]) or "none",
        ),
        ("minimum runtime", _fmt_s(own.get("minRuntimeS")), _fmt_s(effective["minRuntimeS"])),
        ("grace", _fmt_s(own.get("graceS")), _fmt_s(effective["graceS"])),
    ]
    typer.echo(table(["setting", "product", "effective"], rows))


def _fmt_s(value: float | None) -> str | None:
    return None if value is None else f"{value:g}s"


@route_app.command("shadow")
@handles_errors
def shadow(
    ctx: typer.Context,
    product: str,
    window: Annotated[str, typer.Option(help="How far back, e.g. 1h, 24h, 7d.")] = "24h",
) -> None:
    """How often, and how, the shadow weights (FLEET_ROUTING_SHADOW) would have placed the
    product's jobs differently."""
    seconds = _seconds_opt(window, "--window")
    with api(ctx) as client:
        body = client.get(f"/fleet/routing/shadow/{product}", windowS=seconds)
    if not body["enabled"] and not body["decisions"]:
        typer.echo(f"no shadow weight set (FLEET_ROUTING_SHADOW) and no decisions for {product}")
        return
    typer.echo(
        f"product {product}, last {window}: {body['decisions']} placements, "
        f"{body['differing']} would differ ({body['differingShare']:.0%}); "
        f"mean score given up by following the shadow: {body['meanScoreGap']:.3f}"
    )
    if body["pairs"]:
        rows = [(p["factoryId"], p["shadowFactoryId"] or "none", p["count"]) for p in body["pairs"]]
        typer.echo(table(["live pick", "shadow pick", "times"], rows))
