"""`gigafactory budget show|set|pause|resume PRODUCT` (operators)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from launch.cli.context import api, handles_errors
from launch.cli.render import short_time, table

__all__ = ["budget_app", "render_budget"]

budget_app = typer.Typer(help="Per-product USD budgets (operators).", no_args_is_help=True)


def _usd(value: float | None) -> str:
    return "unlimited" if value is None else f"${value:.2f}"


def render_budget(view: dict[str, Any]) -> str:
    """The budget at a glance, then the last ledger entries."""
    config = view["config"]
    status = view["status"] + (f" ({view['reason']})" if view.get("reason") else "")
    lines = [
        f"product {view['productId']}: {status}"
        + ("" if view["enforced"] else "  [FLEET_BUDGETS off: not enforced]"),
        f"  ceiling {_usd(config['ceilingUsd'])} per {config['window']} window"
        f"  soft alert at {config['softThreshold']:.0%}"
        + ("  ALERT" if view.get("softAlert") else ""),
        f"  spent {_usd(view['spentUsd'])}  reserved {_usd(view['reservedUsd'])}"
        f"  remaining {_usd(view['remainingUsd'])}  waiting jobs {view['waiting']}"
        + (f"  OVERSPENT {_usd(view['overspentUsd'])}" if view.get("overspentUsd") else ""),
        f"  window from {view.get('windowStartedAt') or '-'}, resets {view.get('resetsAt') or '-'}",
        "",
        table(
            ["run", "usd", "estimated", "at"],
            [
                (e["id"], f"{e['usd']:.4f}", "yes" if e["estimated"] else "", short_time(e["at"]))
                for e in view["ledger"]
            ],
        ),
    ]
    return "\n".join(lines)


@budget_app.command("show")
@handles_errors
def show(ctx: typer.Context, product: str) -> None:
    """Spent, reserved, remaining, status, window and the last ledger entries."""
    with api(ctx) as client:
        typer.echo(render_budget(client.get(f"/fleet/budgets/{product}")))


@budget_app.command("set")
@handles_errors
def set_(
    ctx: typer.Context,
    product: str,
    ceiling: Annotated[float | None, typer.Option(help="USD per window (omit: unlimited).")] = None,
    window: Annotated[str, typer.Option(help="none | day | week | month (UTC).")] = "none",
    soft: Annotated[float, typer.Option(help="Soft alert threshold, 0..1.")] = 0.8,
    default_estimate: Annotated[
        float, typer.Option(help="Estimate (USD) of a job that gives none.")
    ] = 0.0,
) -> None:
    """Set the product's budget; a raised ceiling wakes waiting jobs."""
    body = {
        "ceilingUsd": ceiling,
        "window": window,
        "softThreshold": soft,
        "defaultEstimateUsd": default_estimate,
    }
    with api(ctx) as client:
        typer.echo(render_budget(client.request("PUT", f"/fleet/budgets/{product}", json=body)))


@budget_app.command("pause")
@handles_errors
def pause(
    ctx: typer.Context,
    product: str,
    reason: Annotated[str, typer.Option(help="Shown to everyone whose job waits.")] = (
        "paused by operator"
    ),
) -> None:
    """Pause the product's dispatch (running jobs finish; new attempts wait)."""
    with api(ctx) as client:
        client.post(f"/fleet/budgets/{product}/pause", {"reason": reason})
    typer.echo(f"product {product} paused: {reason}")


@budget_app.command("resume")
@handles_errors
def resume(ctx: typer.Context, product: str) -> None:
    """Resume the product's dispatch; waiting jobs start in priority order."""
    with api(ctx) as client:
        client.post(f"/fleet/budgets/{product}/resume")
    typer.echo(f"product {product} resumed")
