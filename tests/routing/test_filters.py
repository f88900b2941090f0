"""Hard filters: each exclusion, its sentence, and the order they run in."""

from __future__ import annotations

import pytest

from routing import Exclusion, FleetWeights, select_factory
from routing.filters import check
from tests.routing.builders import CTX, LIMIT_S, factory, job


@pytest.mark.parametrize(
    ("view", "kind", "because"),
    [
        (factory(status="revoked"), Exclusion.REVOKED, "revoked"),
        (factory(status="cordoned"), Exclusion.CORDONED, "cordoned by an operator"),
        (factory(status="draining"), Exclusion.INACTIVE, "status draining is not active"),
        (factory(healthy=False), Exclusion.UNHEALTHY, "reports itself unhealthy"),
        (factory(heartbeat_age_s=None), Exclusion.UNHEALTHY, "has never sent a heartbeat"),
        (factory(heartbeat_age_s=42), Exclusion.UNHEALTHY, "no heartbeat for 42s (limit 15s)"),
        (
            factory(heartbeat_age_s=15.25),
            Exclusion.UNHEALTHY,
            "no heartbeat for 15.2s (limit 15s)",
        ),
        (factory(engines=["codex"]), Exclusion.ENGINE, "does not offer engine claude"),
        (factory(slots=2, reserved=2), Exclusion.FULL, "all 2 slots taken"),
        (factory(slots=2, reserved=3), Exclusion.FULL, "all 2 slots taken"),
        (factory(slots=1, reserved=1), Exclusion.FULL, "its only slot is taken"),
        (factory(slots=0), Exclusion.FULL, "has no slots"),
    ],
)
def test_each_filter_excludes_with_its_sentence(view, kind, because):
    out = check(job(), view, CTX)
    assert out is not None
    assert (out.kind, out.because) == (kind, because)


def test_missing_capabilities_are_listed_sorted():
    out = check(job(capabilities=["macos", "gpu", "linux"]), factory(labels=["linux"]), CTX)
    assert out is not None
    assert out.kind == Exclusion.CAPABILITIES
    assert out.because == "lacks capabilities gpu, macos"


def test_a_heartbeat_exactly_at_the_limit_is_still_healthy():
    assert check(job(), factory(heartbeat_age_s=LIMIT_S), CTX) is None


def test_a_heartbeat_from_the_future_counts_as_fresh():
    assert check(job(), factory(heartbeat_age_s=-30), CTX) is None


def test_a_factory_that_passes_every_filter_is_eligible():
    view = factory(engines=["claude", "codex"], labels=["gpu"], slots=2, reserved=1)
    assert check(job(capabilities=["gpu"]), view, CTX) is None


@pytest.mark.parametrize(
    ("view", "kind"),
    [
        (factory(status="revoked", healthy=False, engines=[]), Exclusion.REVOKED),
        (factory(status="cordoned", heartbeat_age_s=None), Exclusion.CORDONED),
        (factory(healthy=False, engines=[]), Exclusion.UNHEALTHY),
        (factory(engines=[], reserved=2), Exclusion.ENGINE),
        (factory(reserved=2), Exclusion.FULL),
    ],
)
def test_the_first_failing_filter_wins(view, kind):
    out = check(job(), view, CTX)
    assert out is not None and out.kind == kind


def test_lacking_capabilities_is_reported_before_full():
    out = check(job(capabilities=["gpu"]), factory(reserved=2), CTX)
    assert out is not None and out.kind == Exclusion.CAPABILITIES


def test_capacity_can_be_skipped_for_a_slot_being_handed_out():
    assert check(job(), factory(reserved=2), CTX, capacity=False) is None


def test_excluded_candidates_carry_the_sentence_and_kind():
    decision = select_factory(job(), [factory("a", status="cordoned")], CTX, FleetWeights())
    (candidate,) = decision.candidates
    assert not candidate.eligible
    assert candidate.excluded_because == "cordoned by an operator"
    assert candidate.exclusion == Exclusion.CORDONED
    assert (candidate.score, candidate.breakdown) == (0.0, ())
