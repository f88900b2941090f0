"""Why nothing was placed: the furthest point any factory reached in the filter funnel."""

from __future__ import annotations

import pytest

from routing import FleetWeights, select_factory
from tests.routing.builders import CTX, factory, job

W = FleetWeights()


def reason(fleet, request=None):
    decision = select_factory(request or job(), fleet, CTX, W)
    assert decision.factory_id is None
    assert decision.score == 0.0
    return decision.reason


def test_empty_fleet():
    assert reason([]) == "no factories enrolled"


@pytest.mark.parametrize(
    "fleet",
    [
        [factory("a", status="cordoned")],
        [factory("a", status="revoked"), factory("b", heartbeat_age_s=60)],
        [factory("a", healthy=False), factory("b", heartbeat_age_s=None)],
    ],
)
def test_no_healthy_factory(fleet):
    assert reason(fleet) == "no healthy factory"


def test_no_factory_offers_the_engine():
    fleet = [factory("a", engines=["claude"]), factory("b", engines=["codex"])]
    assert reason(fleet, job(engine="devin")) == "no factory offers engine devin"


def test_the_engine_on_an_unhealthy_or_cordoned_factory_does_not_count():
    fleet = [
        factory("a", engines=["devin"], status="cordoned"),
        factory("b", engines=["devin"], heartbeat_age_s=None),
        factory("c", engines=["claude"]),
    ]
    assert reason(fleet, job(engine="devin")) == "no factory offers engine devin"


def test_no_factory_with_the_engine_has_the_capabilities():
    fleet = [factory("a", labels=["gpu"]), factory("b", engines=["codex"], labels=["macos"])]
    request = job(capabilities=["macos", "gpu"])
    assert reason(fleet, request) == "no factory with engine claude has capabilities gpu, macos"


def test_all_fitting_factories_are_full():
    fleet = [
        factory("a", reserved=2),
        factory("b", slots=1, reserved=1),
        factory("c", engines=["codex"]),
        factory("d", status="cordoned"),
    ]
    assert reason(fleet) == "all factories offering engine claude are full"


def test_full_beats_lacking_capabilities():
    fleet = [factory("a", labels=["gpu"], reserved=2), factory("b")]
    request = job(capabilities=["gpu"])
    assert reason(fleet, request) == "all factories offering engine claude are full"


def test_a_placement_has_no_reason():
    decision = select_factory(job(), [factory("a", status="cordoned"), factory("b")], CTX, W)
    assert (decision.factory_id, decision.reason) == ("b", None)
