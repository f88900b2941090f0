"""The audit log: who did what to which target, when, and how it ended.

Every operator and admin action (and the few submitter ones that change what others see:
cancel) runs inside `AuditLog.action(...)`, which records one `AuditEvent` when the block
ends: outcome "ok", or the refusal's code ("forbidden", "not_found", "conflict"...) with its
message. Unauthenticated calls are not recorded (they would let anyone fill the log): they
never reach a service, and an enrollment with a token nobody issued is one of them.

Ordering: the store has no multi-document transactions (Cosmos DB), so the action is done
first and its record written right after. A record that cannot be written is logged at
ERROR level with every field (the log line is the record of last resort) and the action's
own result stands: the caller is never told that a change it made failed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gigafactory.models import FLEET_PARTITION, ApiKey, AuditEvent, Role
from gigafactory.services.access import Principal, require_role
from gigafactory.services.clock import Clock
from gigafactory.services.errors import ServiceError
from gigafactory.services.limits import check_page_size, continuation_checked
from gigafactory.settings import Settings
from gigafactory.store.fleet_store import AuditPage, EnrollmentRefused, FleetStore

__all__ = ["Actor", "AuditEntry", "AuditLog"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Actor:
    """Who acts, as the audit log names them."""

    name: str  # "api:<keyId>", "factory:<id>", "enrollment:<tokenId>"
    role: str  # submitter, operator, admin, factory, enrollment

    @classmethod
    def of(cls, caller: Principal | ApiKey) -> Actor:
        """The actor of an API key or of a principal (a key or a factory)."""
        if isinstance(caller, ApiKey):
            return cls(f"api:{caller.id}", caller.role.value)
        if caller.key is not None:
            return cls.of(caller.key)
        return cls(caller.actor, "factory")


@dataclass
class AuditEntry:
    """What the block learns while it runs: the product concerned, more detail."""

    target: str
    product_id: str = FLEET_PARTITION
    reason: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class AuditLog:
    """Records actions and reads them back (admins)."""

    store: FleetStore
    settings: Settings
    clock: Clock

    @asynccontextmanager
    async def action(
        self,
        actor: Actor | Principal | ApiKey,
        action: str,
        target: str,
        *,
        product_id: str | None = None,
        reason: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> AsyncIterator[AuditEntry]:
        """Run an action and record it when the block ends, however it ends.

        The block may set `entry.product_id` once it knows the product (a job's, found by
        id), and add to `entry.data`.
        """
        who = actor if isinstance(actor, Actor) else Actor.of(actor)
        entry = AuditEntry(
            target=target,
            product_id=product_id or FLEET_PARTITION,
            reason=reason,
            data=dict(data or {}),
        )
        try:
            yield entry
        except ServiceError as err:
            await self._write(who, action, entry, err.code, err.message)
            raise
        except EnrollmentRefused as err:
            # A token nobody issued is an unauthenticated call: not recorded (see above).
            if err.token_known:
                await self._write(who, action, entry, "enrollment_refused", str(err))
            raise
        except Exception as err:
            await self._write(who, action, entry, "error", f"{type(err).__name__}: {err}")
            raise
        await self._write(who, action, entry, "ok", None)

    def product_action(
        self,
        key: ApiKey,
        action: str,
        product_id: str,
        *,
        reason: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> AbstractAsyncContextManager[AuditEntry]:
        """`action` for a change to a product's settings: recorded in that product's log
        when the key may see it; an attempt on a product it may not see stays fleet-wide
        (its admins must not learn of products they cannot see)."""
        visible = product_id if key.may_see(product_id) else None
        return self.action(
            key, action, f"product:{product_id}", product_id=visible, reason=reason, data=data
        )

    async def _write(
        self, who: Actor, action: str, entry: AuditEntry, outcome: str, refusal: str | None
    ) -> None:
        event = AuditEvent(
            id=uuid.uuid4().hex[:20],
            product_id=entry.product_id,
            at=self.clock(),
            actor=who.name,
            role=who.role,
            action=action,
            target=entry.target,
            outcome=outcome,
            reason=refusal if refusal is not None else entry.reason,
            data=entry.data,
        )
        try:
            await self.store.record_audit(event)
        except Exception as err:  # noqa: BLE001 - see the module docstring
            logger.error("audit record not written (%s): %s", err, event.model_dump_json())

    async def list_events(
        self,
        key: ApiKey,
        *,
        action: str | None = None,
        actor: str | None = None,
        target: str | None = None,
        product_id: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
        continuation: str | None = None,
    ) -> AuditPage:
        """Audit events newest first (admins): those of the key's products, and the
        fleet-wide ones (factories, keys) for an admin of every product.

        Raises:
            Forbidden: the key is not an admin.
            InvalidInput: the continuation token is not one this listing returned.
        """
        require_role(key, Role.ADMIN, "reading the audit log")
        check_page_size(self.settings, limit)
        partitions = _partitions(key, product_id)
        if partitions == []:
            return AuditPage([], None)
        with continuation_checked():
            return await self.store.list_audit(
                partitions=partitions,
                action=action,
                actor=actor,
                target=target,
                since=since,
                limit=limit,
                continuation=continuation,
            )


def _partitions(key: ApiKey, product_id: str | None) -> Sequence[str] | None:
    """The partitions `key` may read: None for all ("*"), else its products (fleet-wide
    records need every product: they name factories and keys of all products)."""
    everything = "*" in key.products
    if product_id is not None:
        if product_id == FLEET_PARTITION:
            return [FLEET_PARTITION] if everything else []
        return [product_id] if key.may_see(product_id) else []
    return None if everything else list(key.products)
