"""Factories: enrollment, heartbeats, token rotation and revocation, cordoning, listing.

Factories serve every product, so these operations are fleet-wide (operator role), except
what a factory does for itself with its own token (heartbeat, rotate).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from fastapi import APIRouter
from temporalio.client import Client

from api.deps import (
    ROLE_RANK,
    ClockDep,
    FactoryDep,
    OperatorDep,
    PrincipalDep,
    SettingsDep,
    StoreDep,
    TemporalDep,
)
from api.errors import ApiError
from api.schemas import (
    EnrollmentTokenOut,
    EnrollRequest,
    FactoryList,
    FactoryOut,
    FactoryTokenOut,
    HeartbeatRequest,
)
from gigafactory.models import (
    KNOWN_ENGINES,
    EnrollmentToken,
    Factory,
    FactoryStatus,
    Role,
    SlotTable,
)
from gigafactory.security import ENROLLMENT_TOKEN, FACTORY_TOKEN, hash_token, mint, parse_token
from gigafactory.settings import Settings
from gigafactory.store.backend import AlreadyExists, NotFound
from gigafactory.store.fleet_store import EnrollmentRefused, FleetStore
from gigafactory.wake import wake_waiting_jobs

__all__ = ["router"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/fleet/factories", tags=["factories"])


def is_healthy(factory: Factory, now: datetime, unhealthy_after_s: float) -> bool:
    """Reported healthy at a heartbeat younger than `unhealthy_after_s`, and not revoked."""
    if factory.status == FactoryStatus.REVOKED or factory.last_heartbeat_at is None:
        return False
    age = (now - factory.last_heartbeat_at).total_seconds()
    return factory.healthy and age < unhealthy_after_s


def factory_out(
    factory: Factory, slots: SlotTable | None, now: datetime, settings: Settings
) -> FactoryOut:
    """The API view of a factory (never its token hash)."""
    return FactoryOut(
        id=factory.id,
        engines=factory.engines,
        labels=factory.labels,
        slots=factory.slots,
        slots_in_use=len(slots.reservations) if slots is not None else 0,
        status=factory.status,
        hostname=factory.hostname,
        enrolled_at=factory.enrolled_at,
        last_heartbeat_at=factory.last_heartbeat_at,
        healthy=is_healthy(factory, now, settings.factory_unhealthy_after_s),
        reported_healthy=factory.healthy,
        running=factory.running,
        cost_rate_usd_per_hour=factory.cost_rate_usd_per_hour,
    )


def _check_engines(engines: list[str]) -> None:
    unknown = [e for e in engines if e not in KNOWN_ENGINES]
    if unknown:
        raise ApiError(
            422,
            "invalid_request",
            f"unknown engine(s) {', '.join(unknown)}; known engines: {', '.join(KNOWN_ENGINES)}",
            field="engines",
        )


async def _factory(store: FleetStore, factory_id: str) -> Factory:
    try:
        return await store.get_factory(factory_id)
    except NotFound:
        raise ApiError(404, "not_found", f"factory {factory_id} not found") from None


async def _view(
    store: FleetStore, factory: Factory, now: datetime, settings: Settings
) -> FactoryOut:
    return factory_out(factory, await store.get_slots(factory.id), now, settings)


async def _wake(store: FleetStore, temporal: Client, reason: str) -> None:
    """Wake jobs waiting for capacity; a failure only delays them until their re-check."""
    try:
        woken = await wake_waiting_jobs(store, temporal, reason)
    except Exception as err:  # the request succeeded; waking is best effort
        logger.warning("waking waiting jobs (%s) failed: %s", reason, err)
        return
    if woken:
        logger.info("woke %d waiting job(s): %s", len(woken), reason)


@router.post("/enrollment-tokens", status_code=201, response_model=EnrollmentTokenOut)
async def create_enrollment_token(
    key: OperatorDep, store: StoreDep, settings: SettingsDep, clock: ClockDep
) -> EnrollmentTokenOut:
    """A one-time token a new factory exchanges for its factory token (shown once)."""
    token_id, token = mint(ENROLLMENT_TOKEN)
    now = clock()
    stored = await store.create_enrollment(
        EnrollmentToken(
            id=token_id,
            token_hash=hash_token(token),
            created_at=now,
            expires_at=now + timedelta(seconds=settings.enrollment_ttl_s),
            created_by=f"api:{key.id}",
        )
    )
    return EnrollmentTokenOut(token=token, expires_at=stored.expires_at)


@router.post("/enroll", status_code=201, response_model=FactoryTokenOut)
async def enroll(
    body: EnrollRequest, store: StoreDep, temporal: TemporalDep, clock: ClockDep
) -> FactoryTokenOut:
    """Exchange an enrollment token for a factory token (no bearer: the body carries it).

    Re-enrolling an existing factory id replaces its token; a revoked factory becomes
    active again, a cordoned one stays cordoned.
    """
    _check_engines(body.engines)
    try:
        kind, token_id = parse_token(body.enrollment_token)
    except ValueError:
        raise EnrollmentRefused("malformed enrollment token") from None
    if kind != ENROLLMENT_TOKEN:
        raise EnrollmentRefused(f"a {kind} token is not an enrollment token (gfe_...)")
    now = clock()
    await store.consume_enrollment(
        token_id, hash_token(body.enrollment_token), body.factory_id, now
    )
    factory_token_id, factory_token = mint(FACTORY_TOKEN)
    factory = Factory(
        id=body.factory_id,
        engines=body.engines,
        labels=body.labels,
        slots=body.slots,
        token_id=factory_token_id,
        token_hash=hash_token(factory_token),
        hostname=body.hostname,
        enrolled_at=now,
        cost_rate_usd_per_hour=body.cost_rate_usd_per_hour,
    )
    try:
        await store.create_factory(factory)
    except AlreadyExists:

        def reenroll(f: Factory) -> Factory:
            f.engines = body.engines
            f.labels = body.labels
            f.slots = body.slots
            f.hostname = body.hostname
            f.cost_rate_usd_per_hour = body.cost_rate_usd_per_hour
            f.token_id = factory_token_id
            f.token_hash = hash_token(factory_token)
            f.enrolled_at = now
            if f.status == FactoryStatus.REVOKED:
                f.status = FactoryStatus.ACTIVE
            return f

        await store.update_factory(body.factory_id, reenroll)
        logger.info("factory %s re-enrolled; its previous token is void", body.factory_id)
    else:
        logger.info("factory %s enrolled", body.factory_id)
    await _wake(store, temporal, f"factory {body.factory_id} enrolled")
    return FactoryTokenOut(factory_id=body.factory_id, factory_token=factory_token)


@router.post("/heartbeat", response_model=FactoryOut)
async def heartbeat(
    body: HeartbeatRequest,
    factory: FactoryDep,
    store: StoreDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> FactoryOut:
    """A factory reports its engines, labels, slots and health; it may wake waiting jobs."""
    _check_engines(body.engines)
    now = clock()
    before: list[Factory] = []

    def beat(f: Factory) -> Factory:
        before.append(f.model_copy())
        f.engines = body.engines
        f.labels = body.labels
        f.slots = body.slots
        f.healthy = body.healthy
        f.running = body.running
        f.last_heartbeat_at = now
        return f

    updated = await store.update_factory(factory.id, beat)
    previous = before[-1]
    reasons = []
    if not is_healthy(previous, now, settings.factory_unhealthy_after_s) and is_healthy(
        updated, now, settings.factory_unhealthy_after_s
    ):
        reasons.append("is healthy again")
    if updated.slots > previous.slots:
        reasons.append(f"has {updated.slots} slots")
    if set(updated.engines) - set(previous.engines):
        reasons.append(f"offers {', '.join(sorted(set(updated.engines) - set(previous.engines)))}")
    if updated.status == FactoryStatus.ACTIVE and reasons:
        await _wake(store, temporal, f"factory {factory.id} {' and '.join(reasons)}")
    return await _view(store, updated, now, settings)


@router.post("/{factory_id}/token/rotate", response_model=FactoryTokenOut)
async def rotate_token(factory_id: str, caller: PrincipalDep, store: StoreDep) -> FactoryTokenOut:
    """A new token for the factory (itself or an operator); the old one is refused at once."""
    if caller.factory is not None:
        if caller.factory.id != factory_id:
            raise ApiError(403, "forbidden", "a factory may rotate only its own token")
    else:
        assert caller.key is not None
        if ROLE_RANK[caller.key.role] < ROLE_RANK[Role.OPERATOR]:
            raise ApiError(
                403,
                "forbidden",
                f"rotating a factory token needs the operator role; "
                f"API key {caller.key.id} is a {caller.key.role.value}",
            )
    factory = await _factory(store, factory_id)
    if factory.status == FactoryStatus.REVOKED:
        raise ApiError(
            409,
            "conflict",
            f"factory {factory_id} is revoked: enroll it again with a new enrollment token",
        )
    token_id, token = mint(FACTORY_TOKEN)

    def rotate(f: Factory) -> Factory:
        f.token_id = token_id
        f.token_hash = hash_token(token)
        return f

    await store.update_factory(factory_id, rotate)
    logger.info("factory %s: token rotated by %s", factory_id, caller.actor)
    return FactoryTokenOut(factory_id=factory_id, factory_token=token)


@router.post("/{factory_id}/token/revoke", response_model=FactoryOut)
async def revoke_token(
    factory_id: str, key: OperatorDep, store: StoreDep, settings: SettingsDep, clock: ClockDep
) -> FactoryOut:
    """Revoke the factory: its token is refused at once and routing skips it."""
    await _factory(store, factory_id)

    def revoke(f: Factory) -> Factory:
        f.status = FactoryStatus.REVOKED
        f.token_id = None
        f.token_hash = None
        return f

    updated = await store.update_factory(factory_id, revoke)
    logger.info("factory %s revoked by api:%s", factory_id, key.id)
    return await _view(store, updated, clock(), settings)


async def _set_status(store: FleetStore, factory_id: str, status: FactoryStatus) -> Factory:
    factory = await _factory(store, factory_id)
    if factory.status == FactoryStatus.REVOKED:
        raise ApiError(409, "conflict", f"factory {factory_id} is revoked: enroll it again first")

    def change(f: Factory) -> Factory | None:
        if f.status == FactoryStatus.REVOKED:
            return None
        f.status = status
        return f

    return await store.update_factory(factory_id, change)


@router.post("/{factory_id}/cordon", response_model=FactoryOut)
async def cordon(
    factory_id: str, key: OperatorDep, store: StoreDep, settings: SettingsDep, clock: ClockDep
) -> FactoryOut:
    """Stop routing new jobs to the factory; running ones finish."""
    updated = await _set_status(store, factory_id, FactoryStatus.CORDONED)
    logger.info("factory %s cordoned by api:%s", factory_id, key.id)
    return await _view(store, updated, clock(), settings)


@router.post("/{factory_id}/uncordon", response_model=FactoryOut)
async def uncordon(
    factory_id: str,
    key: OperatorDep,
    store: StoreDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> FactoryOut:
    """Route jobs to the factory again, and wake jobs waiting for capacity."""
    updated = await _set_status(store, factory_id, FactoryStatus.ACTIVE)
    logger.info("factory %s uncordoned by api:%s", factory_id, key.id)
    await _wake(store, temporal, f"factory {factory_id} uncordoned")
    return await _view(store, updated, clock(), settings)


@router.get("", response_model=FactoryList)
async def list_factories(
    key: OperatorDep, store: StoreDep, settings: SettingsDep, clock: ClockDep
) -> FactoryList:
    """Every factory with its slots in use and computed health."""
    now = clock()
    tables = {t.factory_id: t for t in await store.list_slot_tables()}
    return FactoryList(
        items=[
            factory_out(f, tables.get(f.id), now, settings) for f in await store.list_factories()
        ]
    )


@router.get("/{factory_id}", response_model=FactoryOut)
async def get_factory(
    factory_id: str, key: OperatorDep, store: StoreDep, settings: SettingsDep, clock: ClockDep
) -> FactoryOut:
    """One factory."""
    return await _view(store, await _factory(store, factory_id), clock(), settings)
