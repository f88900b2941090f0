"""FleetIndex.plan_preemption against the reference select_with_preemption: the same plan
(factory, victims, reason) and best rows on random fleets and running sets, whichever
search (walk or scan) the index takes, and a RunningIndex kept current incrementally."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing import (
    Exclusion,
    FleetIndex,
    FleetWeights,
    PreemptionPlan,
    PreemptionPolicy,
    RunningIndex,
    select_with_preemption,
)
from routing.fast_preempt import plan_top
from routing.fleet_tables import FleetTables
from tests.routing.builders import CTX, PROPERTY, ago, factory, job
from tests.routing.fleet_strategies import (
    contended,
    fleets,
    policies,
    requests,
    running_sets,
    urgent,
    weight_sets,
)

W = FleetWeights()
# The walk always, the walk with a tiny budget (so it gives up for the scan), the scan always.
SEARCHES = ({"scan_below": -1}, {"scan_below": -1, "walk_budget": 2}, {"scan_below": 10**9})


def assert_same_plan(fast: PreemptionPlan | None, reference: PreemptionPlan | None, top: int):
    """The same plan and best rows; the summary counts what the reference's rows show."""
    if reference is None:
        assert fast is None
        return
    assert fast is not None
    assert (fast.factory_id, fast.evict, fast.reason) == (
        reference.factory_id,
        reference.evict,
        reference.reason,
    )
    assert list(fast.breakdown) == [r for r in reference.breakdown if r.feasible][:top]
    summary = fast.summary
    assert summary is not None
    assert summary.factories == len(reference.breakdown)
    assert summary.eligible == sum(1 for r in reference.breakdown if r.exclusion is None)
    counts: dict[Exclusion, int] = {}
    for row in reference.breakdown:
        if row.exclusion is not None:
            counts[row.exclusion] = counts.get(row.exclusion, 0) + 1
    assert {e.kind: e.count for e in summary.exclusions} == counts
    rows = {r.factory_id: r for r in reference.breakdown}
    for e in summary.exclusions:
        for example in e.examples:
            assert rows[example.factory_id].exclusion == e.kind


def tables_of(fleet) -> FleetTables:
    tables = FleetTables()
    for view in fleet:
        tables.upsert(view)
    return tables


@st.composite
def scenarios(draw: st.DrawFn):
    request = draw(requests(urgent))
    fleet = draw(st.one_of(contended(request), contended(request), fleets()))
    return request, draw(running_sets(fleet)), fleet


@PROPERTY
@given(
    case=scenarios(),
    w=weight_sets,
    policy=policies,
    top=st.integers(0, 3),
    search=st.sampled_from(SEARCHES),
)
def test_the_plan_is_the_references_whichever_search_finds_it(case, w, policy, top, search):
    request, running, fleet = case
    reference = select_with_preemption(request, running, fleet, CTX, w, policy)
    fast = plan_top(tables_of(fleet), RunningIndex(running), request, CTX, w, policy, top, **search)
    assert_same_plan(fast, reference, top)


@PROPERTY
@given(case=scenarios(), policy=policies, data=st.data())
def test_a_running_index_kept_current_plans_as_a_fresh_one(case, policy, data):
    request, running, fleet = case
    index = RunningIndex()
    mask = data.draw(st.lists(st.booleans(), min_size=len(running), max_size=len(running)))
    ended = [r for r, end in zip(running, mask, strict=True) if end]
    for r in data.draw(st.permutations(running)):
        index.add(r)
    for r in ended:
        index.remove(r.job_id)
    still = [r for r in running if r not in ended]
    assert sorted(r.job_id for r in index) == sorted(r.job_id for r in still)
    fast = FleetIndex(fleet).plan_preemption(request, index, CTX, W, policy)
    assert fast == FleetIndex(fleet).plan_preemption(request, still, CTX, W, policy)
    assert_same_plan(fast, select_with_preemption(request, still, fleet, CTX, W, policy), 5)


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("search", SEARCHES)
def test_large_generated_fleets_plan_as_the_reference(seed, search):
    from bench.routing import build_scenario

    s = build_scenario(300, decisions=12, waiting_jobs=1, seed=seed)
    tables, index = tables_of(s.full_fleet), RunningIndex(s.running)
    for policy in (
        PreemptionPolicy(min_runtime_s=300.0),
        PreemptionPolicy(never_preempt=frozenset({"low"}), min_runtime_s=1800.0),
    ):
        for request in s.critical:
            reference = select_with_preemption(request, s.running, s.full_fleet, s.ctx, W, policy)
            fast = plan_top(tables, index, request, s.ctx, W, policy, 5, **search)
            assert_same_plan(fast, reference, 5)


def running(job_id, factory_id="f1", *, priority="low", ran_s=600.0, **kwargs):
    from routing import RunningJob

    return RunningJob(job_id, factory_id, priority, ago(ran_s), **kwargs)


def test_a_plan_shows_its_best_rows_and_counts_the_rest():
    fleet = [factory(f"f{i}", slots=1, reserved=1) for i in range(4)]
    fleet += [factory("none", slots=0), factory("off", slots=1, reserved=1, status="cordoned")]
    jobs = [running(f"j{i}", f"f{i}", ran_s=100.0 * (i + 1)) for i in range(4)]
    plan = FleetIndex(fleet).plan_preemption(job(priority="critical"), jobs, CTX, W, explain_top=2)
    assert plan is not None and (plan.factory_id, plan.evict) == ("f0", ("j0",))
    assert [r.factory_id for r in plan.breakdown] == ["f0", "f1"]
    assert plan.summary is not None
    assert (plan.summary.factories, plan.summary.eligible) == (6, 4)
    assert [(e.kind, e.count) for e in plan.summary.exclusions] == [
        (Exclusion.CORDONED, 1),
        (Exclusion.FULL, 1),
    ]
    assert plan.summary.exclusions[1].examples[0].excluded_because == "has no slots"


def test_a_running_index_reads_like_a_collection_and_refuses_duplicates():
    index = RunningIndex([running("a"), running("b", "f2", preemptible=False)])
    assert len(index) == 2 and "a" in index and "z" not in index
    assert [r.job_id for r in index.on("f1")] == ["a"] and index.on("nope") == []
    with pytest.raises(ValueError, match="duplicate running job id 'a'"):
        index.add(running("a", "f3"))
    index.remove("b")
    assert [r.job_id for r in index] == ["a"]
    with pytest.raises(KeyError):
        index.remove("b")
    with pytest.raises(ValueError, match="explain_top must be >= 0"):
        FleetIndex([factory(reserved=2)]).plan_preemption(
            job(priority="critical"), index, CTX, W, explain_top=-1
        )
