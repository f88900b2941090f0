"""Factories: one health rule, shared with routing, exact at its boundary."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gigafactory.models import Factory, Role
from gigafactory.services import Services
from gigafactory.services.errors import Forbidden
from tests.services.conftest import NOW, Clock, key, place

LIMIT = 20.0  # factory_unhealthy_after_s of the services fixture


@pytest.mark.parametrize(
    ("age", "healthy"),
    [(0.0, True), (LIMIT - 0.001, True), (LIMIT, True), (LIMIT + 0.001, False), (60.0, False)],
    ids=["fresh", "just-under", "exactly-at-the-limit", "just-over", "stale"],
)
async def test_the_api_and_routing_agree_on_health_at_the_boundary(
    services: Services, clock: Clock, age: float, healthy: bool
) -> None:
    await services.store.create_factory(
        Factory(id="f1", engines=["sim"], slots=1, enrolled_at=NOW, last_heartbeat_at=NOW)
    )
    clock.now = NOW + timedelta(seconds=age)
    state = await services.factories.get(key(), "f1")
    assert state.healthy is healthy
    routed = await place(services, "j1")
    assert (routed.factory_id == "f1") is healthy
    if not healthy:
        assert routed.waiting_reason == "no healthy factory"


async def test_factory_operations_need_an_operator(services: Services) -> None:
    submitter = key(Role.SUBMITTER, ["acme"])
    for call in (
        services.factories.list_states(submitter),
        services.factories.enrollment_token(submitter),
        services.factories.cordon(submitter, "f1"),
        services.factories.revoke(submitter, "f1"),
    ):
        with pytest.raises(Forbidden):
            await call
