"""explain: a decision as lines for people."""

from __future__ import annotations

from routing import TERMS, FleetWeights, explain, select_factory
from tests.routing.builders import CTX, factory, job


def test_a_placement_explains_every_candidate():
    fleet = [factory("busy", slots=4, reserved=3), factory("off", status="cordoned"), factory("a")]
    decision = select_factory(job(), fleet, CTX, FleetWeights())
    lines = explain(decision)
    assert lines[0] == f"chose a (score {decision.score:.3f}), 2 of 3 factories eligible"
    assert len(lines) == 1 + len(fleet)
    assert lines[1].startswith("   1. a: score ")
    assert lines[2].startswith("   2. busy: score ")
    assert all(term in lines[1] for term in TERMS)
    assert "load 0.500*2=1.000" in lines[1]
    assert lines[3] == "   - off: excluded, cordoned by an operator"


def test_no_placement_leads_with_the_reason():
    decision = select_factory(job(engine="devin"), [factory("a")], CTX, FleetWeights())
    assert explain(decision) == [
        "no placement: no factory offers engine devin",
        "   - a: excluded, does not offer engine devin",
    ]


def test_an_empty_fleet():
    decision = select_factory(job(), [], CTX, FleetWeights())
    assert explain(decision) == ["no placement: no factories enrolled"]
