"""Factories: enrollment, heartbeats, token rotation and revocation, cordoning, listing."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CallerDep, FactoryDep, PrincipalDep, ServicesDep
from api.schemas import (
    EnrollmentTokenOut,
    EnrollRequest,
    FactoryList,
    FactoryOut,
    FactoryTokenOut,
    HeartbeatRequest,
)
from gigafactory.services.factories import Beat, Enrollment

__all__ = ["router"]

router = APIRouter(prefix="/fleet/factories", tags=["factories"])


@router.post("/enrollment-tokens", status_code=201, response_model=EnrollmentTokenOut)
async def create_enrollment_token(key: CallerDep, services: ServicesDep) -> EnrollmentTokenOut:
    """A one-time token a new factory exchanges for its factory token (shown once)."""
    token, expires_at = await services.factories.enrollment_token(key)
    return EnrollmentTokenOut(token=token, expires_at=expires_at)


@router.post("/enroll", status_code=201, response_model=FactoryTokenOut)
async def enroll(body: EnrollRequest, services: ServicesDep) -> FactoryTokenOut:
    """Exchange an enrollment token for a factory token (no bearer: the body carries it).

    Re-enrolling an existing factory id replaces its token; a revoked factory becomes
    active again, a cordoned one stays cordoned.
    """
    token = await services.factories.enroll(
        Enrollment(
            enrollment_token=body.enrollment_token,
            factory_id=body.factory_id,
            engines=body.engines,
            labels=body.labels,
            slots=body.slots,
            hostname=body.hostname,
            cost_rate_usd_per_hour=body.cost_rate_usd_per_hour,
        )
    )
    return FactoryTokenOut(factory_id=body.factory_id, factory_token=token)


@router.post("/heartbeat", response_model=FactoryOut)
async def heartbeat(
    body: HeartbeatRequest, factory: FactoryDep, services: ServicesDep
) -> FactoryOut:
    """A factory reports its engines, labels, slots and health; it may wake waiting jobs."""
    beat = Beat(
        engines=body.engines,
        labels=body.labels,
        slots=body.slots,
        healthy=body.healthy,
        running=body.running,
    )
    return FactoryOut.of(await services.factories.heartbeat(factory, beat))


@router.post("/{factory_id}/token/rotate", response_model=FactoryTokenOut)
async def rotate_token(
    factory_id: str, caller: PrincipalDep, services: ServicesDep
) -> FactoryTokenOut:
    """A new token for the factory (itself or an operator); the old one is refused at once."""
    token = await services.factories.rotate(caller, factory_id)
    return FactoryTokenOut(factory_id=factory_id, factory_token=token)


@router.post("/{factory_id}/token/revoke", response_model=FactoryOut)
async def revoke_token(factory_id: str, key: CallerDep, services: ServicesDep) -> FactoryOut:
    """Revoke the factory: its token is refused at once and routing skips it."""
    return FactoryOut.of(await services.factories.revoke(key, factory_id))


@router.post("/{factory_id}/cordon", response_model=FactoryOut)
async def cordon(factory_id: str, key: CallerDep, services: ServicesDep) -> FactoryOut:
    """Stop routing new jobs to the factory; running ones finish."""
    return FactoryOut.of(await services.factories.cordon(key, factory_id))


@router.post("/{factory_id}/uncordon", response_model=FactoryOut)
async def uncordon(factory_id: str, key: CallerDep, services: ServicesDep) -> FactoryOut:
    """Route jobs to the factory again, and wake jobs waiting for capacity."""
    return FactoryOut.of(await services.factories.uncordon(key, factory_id))


@router.get("", response_model=FactoryList)
async def list_factories(key: CallerDep, services: ServicesDep) -> FactoryList:
    """Every factory with its slots in use and computed health."""
    return FactoryList(items=[FactoryOut.of(s) for s in await services.factories.list_states(key)])


@router.get("/{factory_id}", response_model=FactoryOut)
async def get_factory(factory_id: str, key: CallerDep, services: ServicesDep) -> FactoryOut:
    """One factory."""
    return FactoryOut.of(await services.factories.get(key, factory_id))
