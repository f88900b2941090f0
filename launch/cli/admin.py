"""Operator and admin commands: API keys and the factory registry."""

from __future__ import annotations

from typing import Annotated

import typer

from launch.cli.context import api, handles_errors
from launch.cli.render import short_time, table

__all__ = ["audit", "factory_app", "key_app"]

key_app = typer.Typer(help="API keys (admins): create, list, revoke.", no_args_is_help=True)
factory_app = typer.Typer(
    help="Factories: enrollment, running one, and the registry.", no_args_is_help=True
)


@key_app.command("create")
@handles_errors
def key_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="Who or what uses the key.")],
    role: Annotated[str, typer.Option(help="submitter | operator | admin")] = "submitter",
    product: Annotated[
        list[str] | None, typer.Option("--product", help="A product it may see ('*' = all).")
    ] = None,
) -> None:
    """Create an API key; the key is printed once."""
    with api(ctx) as client:
        key = client.post("/fleet/keys", {"name": name, "role": role, "products": product or ["*"]})
    typer.echo(f"key {key['id']} ({key['role']}, products {','.join(key['products'])}):")
    typer.echo(key["key"])


@key_app.command("list")
@handles_errors
def key_list(ctx: typer.Context) -> None:
    """Every API key (never the secrets)."""
    with api(ctx) as client:
        keys = client.get("/fleet/keys")["items"]
    rows = [
        (
            k["id"],
            k["name"],
            k["role"],
            ",".join(k["products"]),
            short_time(k["createdAt"]),
            "revoked" if k.get("revokedAt") else "active",
        )  # fmt: skip
        for k in keys
    ]
    typer.echo(table(["id", "name", "role", "products", "created", "status"], rows))


@key_app.command("revoke")
@handles_errors
def key_revoke(ctx: typer.Context, key_id: str) -> None:
    """Revoke an API key; it is refused from the next request on."""
    with api(ctx) as client:
        client.delete(f"/fleet/keys/{key_id}")
    typer.echo(f"revoked key {key_id}")


@handles_errors
def audit(
    ctx: typer.Context,
    action: Annotated[str | None, typer.Option(help="e.g. factory.revoke, key.create")] = None,
    actor: Annotated[str | None, typer.Option(help="e.g. api:<keyId>")] = None,
    target: Annotated[str | None, typer.Option(help="e.g. factory:<id>, job:<id>")] = None,
    product: Annotated[str | None, typer.Option(help="Only this product's events.")] = None,
    since: Annotated[str | None, typer.Option(help="ISO time, e.g. 2026-01-31T12:00Z")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
) -> None:
    """The audit log (admins): who did what to which target, when, and how it ended."""
    with api(ctx) as client:
        page = client.get(
            "/fleet/audit",
            action=action,
            actor=actor,
            target=target,
            productId=product,
            since=since,
            limit=limit,
        )
    rows = [
        (
            e["at"][:19].replace("T", " "),
            e["actor"],
            e["role"],
            e["action"],
            e["target"],
            e["outcome"],
            e.get("reason"),
        )
        for e in page["items"]
    ]
    typer.echo(table(["at", "actor", "role", "action", "target", "outcome", "reason"], rows))


@factory_app.command("token")
@handles_errors
def factory_token(ctx: typer.Context) -> None:
    """Create a one-time enrollment token (operators) to hand to a new factory."""
    with api(ctx) as client:
        token = client.post("/fleet/factories/enrollment-tokens")
    typer.echo(f"enrollment token (one use, expires {token['expiresAt']}):")
    typer.echo(token["token"])


@factory_app.command("list")
@handles_errors
def factory_list(ctx: typer.Context) -> None:
    """Every factory: status, health, slots in use, engines and labels."""
    with api(ctx) as client:
        items = client.get("/fleet/factories")["items"]
    rows = [
        (
            f["id"],
            f["status"],
            "healthy" if f["healthy"] else "unhealthy",
            f"{f['slotsInUse']}/{f['slots']}",
            ",".join(f["engines"]),
            ",".join(f["labels"]) or None,
            short_time(f.get("lastHeartbeatAt")),
        )
        for f in items
    ]
    typer.echo(table(["id", "status", "health", "slots", "engines", "labels", "heartbeat"], rows))


def _factory_action(ctx: typer.Context, factory_id: str, path: str, done: str) -> None:
    with api(ctx) as client:
        client.post(f"/fleet/factories/{factory_id}/{path}")
    typer.echo(f"factory {factory_id} {done}")


@factory_app.command("cordon")
@handles_errors
def factory_cordon(ctx: typer.Context, factory_id: str) -> None:
    """Stop routing new work to a factory (running jobs finish)."""
    _factory_action(ctx, factory_id, "cordon", "cordoned")


@factory_app.command("uncordon")
@handles_errors
def factory_uncordon(ctx: typer.Context, factory_id: str) -> None:
    """Route work to a cordoned factory again."""
    _factory_action(ctx, factory_id, "uncordon", "uncordoned")


@factory_app.command("revoke")
@handles_errors
def factory_revoke(ctx: typer.Context, factory_id: str) -> None:
    """Revoke a factory: its token is refused at once and it gets no work."""
    _factory_action(ctx, factory_id, "token/revoke", "revoked")


@factory_app.command("rotate")
@handles_errors
def factory_rotate(
    ctx: typer.Context,
    factory_id: str,
) -> None:
    """Give a factory a new token (the old one is refused at once); prints the new token."""
    with api(ctx) as client:
        out = client.post(f"/fleet/factories/{factory_id}/token/rotate")
    typer.echo(f"new token for factory {factory_id} (the old one no longer works):")
    typer.echo(out["factoryToken"])
