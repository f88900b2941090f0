"""Factories: enrollment, heartbeats, token rotation and revocation, cordoning, listing.

Factories serve every product, so these operations are fleet-wide (operator role), except
what a factory does for itself with its own token (heartbeat, rotate). Health is the one
rule routing uses (`routing.heartbeat_is_fresh`), so the API never calls healthy a factory
that routing skips, nor the other way round.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from gigafactory.models import (
    KNOWN_ENGINES,
    ApiKey,
    EnrollmentToken,
    Factory,
    FactoryStatus,
    Role,
    SlotReservation,
    SlotTable,
)
from gigafactory.security import ENROLLMENT_TOKEN, FACTORY_TOKEN, hash_token, mint, parse_token
from gigafactory.services.access import Principal, require_role
from gigafactory.services.audit import Actor, AuditLog
from gigafactory.services.clock import Clock
from gigafactory.services.dispatch import Dispatcher
from gigafactory.services.errors import Conflict, Forbidden, InvalidInput, NotFoundError
from gigafactory.services.factory_queues import FactoryQueues
from gigafactory.services.limits import check_labels
from gigafactory.services.rate_limits import RateLimits
from gigafactory.settings import Settings
from gigafactory.store.backend import AlreadyExists, NotFound
from gigafactory.store.fleet_store import EnrollmentRefused, FleetStore
from routing import heartbeat_is_fresh

__all__ = ["Beat", "Enrollment", "FactoryService", "FactoryState", "is_healthy"]

logger = logging.getLogger(__name__)


def is_healthy(factory: Factory, now: datetime, unhealthy_after_s: float) -> bool:
    """Not revoked, reported healthy, no lease lost since its last heartbeat, at a
    heartbeat routing still counts as fresh."""
    return (
        factory.status != FactoryStatus.REVOKED
        and factory.healthy
        and factory.lease_lost_at is None
        and heartbeat_is_fresh(factory.last_heartbeat_at, now, unhealthy_after_s)
    )


@dataclass(frozen=True)
class FactoryState:
    """A factory with its reserved slots and its health now."""

    factory: Factory
    reservations: list[SlotReservation]
    healthy: bool
    heartbeat_age_s: float | None

    @property
    def slots_in_use(self) -> int:
        return len(self.reservations)


@dataclass(frozen=True)
class Enrollment:
    """What a new factory presents: its one-time token and what it offers."""

    enrollment_token: str
    factory_id: str
    engines: Sequence[str] = ()
    labels: Sequence[str] = ()
    slots: int = 1
    hostname: str | None = None
    cost_rate_usd_per_hour: float = 0.0


@dataclass(frozen=True)
class Beat:
    """What a factory reports at each heartbeat."""

    engines: Sequence[str] = ()
    labels: Sequence[str] = ()
    slots: int = 1
    healthy: bool = True
    running: int = 0


def _check_engines(engines: Sequence[str]) -> None:
    unknown = [e for e in engines if e not in KNOWN_ENGINES]
    if unknown:
        raise InvalidInput(
            f"unknown engine(s) {', '.join(unknown)}; known engines: {', '.join(KNOWN_ENGINES)}",
            field="engines",
        )


@dataclass
class FactoryService:
    """The fleet's machines."""

    store: FleetStore
    settings: Settings
    dispatcher: Dispatcher
    clock: Clock
    audit: AuditLog
    queues: FactoryQueues
    rates: RateLimits

    # --- reading ------------------------------------------------------------------------------
    def _state(self, factory: Factory, table: SlotTable | None, now: datetime) -> FactoryState:
        age = (
            max(0.0, (now - factory.last_heartbeat_at).total_seconds())
            if factory.last_heartbeat_at
            else None
        )
        return FactoryState(
            factory=factory,
            reservations=list(table.reservations) if table else [],
            healthy=is_healthy(factory, now, self.settings.factory_unhealthy_after_s),
            heartbeat_age_s=age,
        )

    def state_at(self, factory: Factory, table: SlotTable | None, now: datetime) -> FactoryState:
        """The factory's state from its slot table, with its health at `now`."""
        return self._state(factory, table, now)

    async def _factory(self, factory_id: str) -> Factory:
        try:
            return await self.store.get_factory(factory_id)
        except NotFound:
            raise NotFoundError(f"factory {factory_id} not found") from None

    async def state_of(self, factory: Factory) -> FactoryState:
        return self._state(factory, await self.store.get_slots(factory.id), self.clock())

    async def list_states(self, key: ApiKey) -> list[FactoryState]:
        """Every factory with its slots in use and computed health (operators)."""
        require_role(key, Role.OPERATOR, "listing factories")
        now = self.clock()
        tables = {t.factory_id: t for t in await self.store.list_slot_tables()}
        return [self._state(f, tables.get(f.id), now) for f in await self.store.list_factories()]

    async def get(self, key: ApiKey, factory_id: str) -> FactoryState:
        """One factory (operators)."""
        require_role(key, Role.OPERATOR, "reading factories")
        return await self.state_of(await self._factory(factory_id))

    # --- enrollment ---------------------------------------------------------------------------
    async def enrollment_token(self, key: ApiKey) -> tuple[str, datetime]:
        """A one-time token a new factory exchanges for its factory token (shown once).

        Returns:
            The token and when it expires.
        """
        async with self.audit.action(key, "factory.enrollment_token", "enrollment:new") as entry:
            require_role(key, Role.OPERATOR, "creating enrollment tokens")
            token_id, token = mint(ENROLLMENT_TOKEN)
            entry.target = f"enrollment:{token_id}"
            now = self.clock()
            stored = await self.store.create_enrollment(
                EnrollmentToken(
                    id=token_id,
                    token_hash=hash_token(token),
                    created_at=now,
                    expires_at=now + timedelta(seconds=self.settings.enrollment_ttl_s),
                    created_by=f"api:{key.id}",
                )
            )
        return token, stored.expires_at

    async def enroll(self, enrollment: Enrollment) -> str:
        """Exchange an enrollment token for a factory token.

        Re-enrolling an existing factory id replaces its token; a revoked factory becomes
        active again, a cordoned one stays cordoned.

        Returns:
            The new factory token (shown once).

        Raises:
            EnrollmentRefused: the token is malformed, unknown, expired or used.
            InvalidInput: an unknown engine.
        """
        _check_engines(enrollment.engines)
        check_labels(self.settings, enrollment.labels, "labels")
        try:
            kind, token_id = parse_token(enrollment.enrollment_token)
        except ValueError:
            raise EnrollmentRefused("malformed enrollment token") from None
        if kind != ENROLLMENT_TOKEN:
            raise EnrollmentRefused(f"a {kind} token is not an enrollment token (gfe_...)")
        actor = Actor(f"enrollment:{token_id}", "enrollment")
        data = {"engines": list(enrollment.engines), "labels": list(enrollment.labels)}
        target = f"factory:{enrollment.factory_id}"
        async with self.audit.action(actor, "factory.enroll", target, data=data) as entry:
            factory_token, was_revoked = await self._enroll(token_id, enrollment)
            if was_revoked:
                entry.data["taskQueue"] = await self._resume_queue(enrollment.factory_id)
        await self._fill(enrollment.factory_id, "enrolled")
        return factory_token

    async def _enroll(self, token_id: str, enrollment: Enrollment) -> tuple[str, bool]:
        """Consume the token and write the factory; its token, and whether it was revoked."""
        now = self.clock()
        was_revoked = False
        await self.store.consume_enrollment(
            token_id, hash_token(enrollment.enrollment_token), enrollment.factory_id, now
        )
        factory_token_id, factory_token = mint(FACTORY_TOKEN)
        factory = Factory(
            id=enrollment.factory_id,
            engines=list(enrollment.engines),
            labels=list(enrollment.labels),
            slots=enrollment.slots,
            token_id=factory_token_id,
            token_hash=hash_token(factory_token),
            hostname=enrollment.hostname,
            enrolled_at=now,
            cost_rate_usd_per_hour=enrollment.cost_rate_usd_per_hour,
        )
        try:
            await self.store.create_factory(factory)
        except AlreadyExists:

            def reenroll(f: Factory) -> Factory:
                f.engines = list(enrollment.engines)
                f.labels = list(enrollment.labels)
                f.slots = enrollment.slots
                f.hostname = enrollment.hostname
                f.cost_rate_usd_per_hour = enrollment.cost_rate_usd_per_hour
                f.token_id = factory_token_id
                f.token_hash = hash_token(factory_token)
                f.enrolled_at = now
                if f.status == FactoryStatus.REVOKED:
                    nonlocal was_revoked
                    was_revoked = True
                    f.status = FactoryStatus.ACTIVE
                return f

            await self.store.update_factory(enrollment.factory_id, reenroll)
            logger.info("factory %s re-enrolled; its previous token is void", factory.id)
        else:
            logger.info("factory %s enrolled", factory.id)
        return factory_token, was_revoked

    async def _resume_queue(self, factory_id: str) -> str:
        """Lift the pause a revocation put on the factory's task queue."""
        refused = await self.queues.resume(factory_id, "factory enrolled")
        return "resumed" if refused is None else f"not resumed: {refused}"

    # --- a factory's own reports --------------------------------------------------------------
    async def heartbeat(self, factory: Factory, beat: Beat) -> FactoryState:
        """A factory reports its engines, labels, slots and health; capacity that appears
        (healthy again, more slots, a new engine) is handed to queued jobs.

        Raises:
            RateLimited: the factory reported more than FLEET_RATE_REPORT_* allows.
        """
        self.rates.reports.take(f"factory:{factory.id}")
        _check_engines(beat.engines)
        check_labels(self.settings, beat.labels, "labels")
        now = self.clock()
        before: list[Factory] = []

        def update(f: Factory) -> Factory:
            before.append(f.model_copy())
            f.engines = list(beat.engines)
            f.labels = list(beat.labels)
            f.slots = beat.slots
            f.healthy = beat.healthy
            f.running = beat.running
            f.last_heartbeat_at = now
            # Alive and talking again: what a lost lease held against it is cleared.
            f.lease_lost_at = f.lease_lost_reason = None
            return f

        updated = await self.store.update_factory(factory.id, update)
        previous = before[-1]
        limit = self.settings.factory_unhealthy_after_s
        reasons = []
        if not is_healthy(previous, now, limit) and is_healthy(updated, now, limit):
            reasons.append("is healthy again")
        if updated.slots > previous.slots:
            reasons.append(f"has {updated.slots} slots")
        if new_engines := set(updated.engines) - set(previous.engines):
            reasons.append(f"offers {', '.join(sorted(new_engines))}")
        if updated.status == FactoryStatus.ACTIVE and reasons:
            await self._fill(factory.id, " and ".join(reasons))
        return await self.state_of(updated)

    async def lease_lost(self, factory_id: str, at: datetime, reason: str) -> bool:
        """A run's lease on the factory was lost at `at` (it stopped heartbeating the run,
        or never picked it up): routing skips it until its next heartbeat, so neither the
        requeued job nor the slot the loss freed is sent back to a factory that may be
        frozen or gone. A heartbeat received after `at` already shows it alive: nothing is
        held against it then. Returns whether the factory is now skipped.
        """

        def update(f: Factory) -> Factory | None:
            if f.last_heartbeat_at is not None and f.last_heartbeat_at > at:
                return None
            if f.lease_lost_at is not None and f.lease_lost_at >= at:
                return None
            f.lease_lost_at, f.lease_lost_reason = at, reason
            return f

        try:
            updated = await self.store.update_factory(factory_id, update)
        except NotFound:
            return False
        if updated.lease_lost_at != at:
            return False
        logger.warning("factory %s is skipped until its next heartbeat: %s", factory_id, reason)
        return True

    async def rotate(self, caller: Principal, factory_id: str) -> str:
        """A new token for the factory (itself, or an operator); the old one is refused at
        once.

        Raises:
            Forbidden: another factory, or a key below operator.
            Conflict: the factory is revoked (it must enroll again).
        """
        async with self.audit.action(caller, "factory.rotate", f"factory:{factory_id}"):
            if caller.factory is not None:
                if caller.factory.id != factory_id:
                    raise Forbidden("a factory may rotate only its own token")
            else:
                assert caller.key is not None
                require_role(caller.key, Role.OPERATOR, "rotating a factory token")
            factory = await self._factory(factory_id)
            if factory.status == FactoryStatus.REVOKED:
                raise Conflict(
                    f"factory {factory_id} is revoked: enroll it again with a new enrollment token"
                )
            token_id, token = mint(FACTORY_TOKEN)

            def rotate(f: Factory) -> Factory:
                f.token_id = token_id
                f.token_hash = hash_token(token)
                return f

            await self.store.update_factory(factory_id, rotate)
        logger.info("factory %s: token rotated by %s", factory_id, caller.actor)
        return token

    # --- operators ----------------------------------------------------------------------------
    async def revoke(self, key: ApiKey, factory_id: str) -> FactoryState:
        """Revoke the factory: its token is refused at once, routing skips it, and Temporal
        dispatches nothing more to its task queue (docs/security.md)."""
        async with self.audit.action(key, "factory.revoke", f"factory:{factory_id}") as entry:
            require_role(key, Role.OPERATOR, "revoking a factory")
            await self._factory(factory_id)

            def revoke(f: Factory) -> Factory:
                f.status = FactoryStatus.REVOKED
                f.token_id = None
                f.token_hash = None
                return f

            updated = await self.store.update_factory(factory_id, revoke)
            refused = await self.queues.pause(factory_id, f"factory revoked by api:{key.id}")
            entry.data["taskQueue"] = "paused" if refused is None else f"not paused: {refused}"
        logger.info("factory %s revoked by api:%s", factory_id, key.id)
        return await self.state_of(updated)

    async def cordon(self, key: ApiKey, factory_id: str) -> FactoryState:
        """Stop routing new jobs to the factory; running ones finish."""
        async with self.audit.action(key, "factory.cordon", f"factory:{factory_id}"):
            updated = await self._set_status(key, factory_id, FactoryStatus.CORDONED)
        logger.info("factory %s cordoned by api:%s", factory_id, key.id)
        return await self.state_of(updated)

    async def uncordon(self, key: ApiKey, factory_id: str) -> FactoryState:
        """Route jobs to the factory again, and hand its free slots to queued jobs."""
        async with self.audit.action(key, "factory.uncordon", f"factory:{factory_id}"):
            updated = await self._set_status(key, factory_id, FactoryStatus.ACTIVE)
        logger.info("factory %s uncordoned by api:%s", factory_id, key.id)
        await self._fill(factory_id, "uncordoned")
        return await self.state_of(updated)

    async def _fill(self, factory_id: str, why: str) -> None:
        """Capacity appeared: hand it to waiting jobs now. Best effort: the request that
        made it appear succeeded, and the reconciler fills what this misses."""
        try:
            filled = await self.dispatcher.fill(factory_id)
        except Exception as err:  # noqa: BLE001 - see the docstring
            logger.warning("factory %s %s; filling its slots failed: %s", factory_id, why, err)
            return
        if filled.granted:
            logger.info("factory %s %s: %d job(s) started", factory_id, why, len(filled.granted))

    async def _set_status(self, key: ApiKey, factory_id: str, status: FactoryStatus) -> Factory:
        require_role(key, Role.OPERATOR, "cordoning factories")
        factory = await self._factory(factory_id)
        if factory.status == FactoryStatus.REVOKED:
            raise Conflict(f"factory {factory_id} is revoked: enroll it again first")

        def change(f: Factory) -> Factory | None:
            if f.status == FactoryStatus.REVOKED:
                return None
            f.status = status
            return f

        return await self.store.update_factory(factory_id, change)
