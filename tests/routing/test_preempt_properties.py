"""select_with_preemption over generated fleets and running sets, checked against an oracle.

The oracle re-derives victim eligibility and, by brute force over every set of victims,
the least disruptive eviction, so the greedy pick in `routing.preempt` is checked rather
than restated.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

from hypothesis import event, given
from hypothesis import strategies as st

from routing import (
    FactoryView,
    JobRequest,
    PreemptionPolicy,
    RunningJob,
    select_factory,
    select_with_preemption,
)
from routing.filters import check, seconds_since
from tests.routing.builders import (
    CTX,
    LIMIT_S,
    PRIORITIES,
    PROPERTY,
    ago,
    factory_views,
    fleets,
    job_requests,
    weights,
)

RANK = {p: i for i, p in enumerate(PRIORITIES)}

# Half the policies are the default, so that most generated cases may preempt at all.
policies = st.just(PreemptionPolicy()) | st.builds(
    PreemptionPolicy,
    preempting=st.frozensets(st.sampled_from(PRIORITIES)),
    never_preempt=st.frozensets(st.sampled_from(PRIORITIES), max_size=2),
    min_runtime_s=st.just(0.0) | st.floats(0, 900, allow_nan=False),
)
# Running priorities lean low and job priorities high, so that victims are often eligible.
victim_priorities = st.sampled_from(("low", "low", "normal", "normal", "high", "critical"))
urgent_priorities = st.sampled_from(("critical", "critical", "high", "normal"))
# Built once: a strategy built inside a composite is validated again on every draw.
runtimes = st.sampled_from((0.0, 60.0, 600.0)) | st.floats(-10, 2e3)
preemptible = st.sampled_from((True, True, True, False))
# Mostly the policy's minimum runtime; sometimes the job's own, longer or shorter.
own_minimum = st.sampled_from((None, None, None, 0.0, 60.0, 900.0))
small = st.integers(0, 3)
heartbeats = st.floats(0, LIMIT_S)


@st.composite
def contended(draw: st.DrawFn) -> tuple[JobRequest, list[FactoryView]]:
    """A job and a fleet with factories that fit it but are full, the rest random."""
    request = dataclasses.replace(draw(job_requests()), priority=draw(urgent_priorities))
    fleet = draw(fleets)
    for n in range(1 + draw(small)):
        view = draw(factory_views(id=f"z{n}"))  # "z" is outside `ids`: still unique
        slots = draw(small)
        fitting = dataclasses.replace(
            view,
            engines=view.engines | {request.engine},
            labels=view.labels | request.capabilities,
            status="active",
            reported_healthy=True,
            last_heartbeat_at=ago(draw(heartbeats)),
            slots=slots,
            reserved=slots + draw(small) % 3,
        )
        fleet.insert(draw(st.integers(0, len(fleet))), fitting)
    return request, fleet


# Two thirds contended fleets, where preemption is in play; a third fully random.
fleet_cases = st.one_of(contended(), contended(), st.tuples(job_requests(), fleets))


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[JobRequest, list[RunningJob], list[FactoryView]]:
    """A job, the jobs running on the fleet (a few on unknown factories) and the fleet."""
    request, fleet = draw(fleet_cases)
    running: list[RunningJob] = []
    for f in [*fleet, None]:
        fid = f.id if f is not None else "gone"
        most = f.reserved + 1 if f is not None else 2
        # Mostly as many running jobs as reservations (or one more or less), else fewer.
        offset = draw(small)
        count = max(0, most - offset) if offset < 3 else draw(st.integers(0, most))
        for i in range(count):
            running.append(
                RunningJob(
                    job_id=f"{fid}-{i}",  # "-" is outside `ids`: unique across factories
                    factory_id=fid,
                    priority=draw(victim_priorities),
                    started_at=ago(draw(runtimes)),
                    preemptible=draw(preemptible),
                    min_runtime_s=draw(own_minimum),
                )
            )
    return request, running, fleet


def eligible(request: JobRequest, r: RunningJob, policy: PreemptionPolicy) -> bool:
    return (
        RANK[r.priority] < RANK[request.priority]
        and r.priority not in policy.never_preempt
        and r.preemptible
        and seconds_since(CTX.now, r.started_at) >= r.min_runtime(policy)
    )


def disruption(victims: tuple[RunningJob, ...]) -> tuple[int, int, int, float]:
    ranks = [RANK[v.priority] for v in victims]
    work = math.fsum(seconds_since(CTX.now, v.started_at) for v in victims)
    return (len(victims), max(ranks), sum(ranks), work)


def least_disruption(request, running, fleet, policy) -> dict[str, tuple[int, int, int, float]]:
    """Per factory that can be freed, its least disruptive eviction, by brute force."""
    best = {}
    for f in fleet:
        if check(request, f, CTX, capacity=False) is not None or f.slots <= 0:
            continue
        needed = f.reserved - f.slots + 1
        pool = [r for r in running if r.factory_id == f.id and eligible(request, r, policy)]
        options = [disruption(c) for c in itertools.combinations(pool, needed)]
        if options:
            best[f.id] = min(options)
    return best


def plan_of(case, w, policy):
    request, running, fleet = case
    return select_with_preemption(request, running, fleet, CTX, w, policy)


# Two tests, not one per property: generating a scenario is what costs, so each test
# checks every property its scenario can show and the suite stays fast.


@PROPERTY
@given(case=scenarios(), w=weights, policy=policies)
def test_a_plan_evicts_only_eligible_victims_and_frees_a_slot(case, w, policy):
    request, running, fleet = case
    plan = plan_of(case, w, policy)
    fits = select_factory(request, fleet, CTX, w).factory_id is not None
    if fits or request.priority not in policy.preempting:
        assert plan is None  # (3) no preemption when the job fits, or may not preempt
    event("plan" if plan is not None else "no plan")
    if plan is None:
        return
    event(f"{len(plan.evict)} victims, {sum(c.feasible for c in plan.breakdown)} feasible")
    by_id = {r.job_id: r for r in running}
    assert plan.evict and len(set(plan.evict)) == len(plan.evict)
    for job_id in plan.evict:
        victim = by_id[job_id]
        assert RANK[victim.priority] < RANK[request.priority]  # (1)
        assert victim.preemptible  # (2)
        assert victim.priority not in policy.never_preempt
        assert seconds_since(CTX.now, victim.started_at) >= victim.min_runtime(policy)
        assert victim.factory_id == plan.factory_id

    chosen = next(f for f in fleet if f.id == plan.factory_id)
    assert check(request, chosen, CTX, capacity=False) is None
    freed = dataclasses.replace(chosen, reserved=chosen.reserved - len(plan.evict))
    assert freed.reserved < freed.slots  # (4)
    assert freed.reserved == freed.slots - 1  # and not one victim more than needed
    assert check(request, freed, CTX) is None
    assert plan.breakdown[0].chosen and plan.breakdown[0].factory_id == plan.factory_id
    assert sum(c.chosen for c in plan.breakdown) == 1
    assert all(c.rejected_because for c in plan.breakdown if not c.chosen)


@PROPERTY
@given(data=st.data(), case=scenarios(), w=weights, policy=policies)
def test_the_plan_is_the_least_disruptive_whatever_the_input_order(data, case, w, policy):
    request, running, fleet = case
    plan = plan_of(case, w, policy)
    assert plan == plan_of(case, w, policy)  # (6) deterministic
    shuffled = (request, data.draw(st.permutations(running)), data.draw(st.permutations(fleet)))
    assert plan_of(shuffled, w, policy) == plan  # breakdown included

    if request.priority not in policy.preempting:
        return
    if select_factory(request, fleet, CTX, w).factory_id is not None:
        return
    best = least_disruption(request, running, fleet, policy)
    if not best:
        assert plan is None
        return
    assert plan is not None
    by_id = {r.job_id: r for r in running}
    chosen = disruption(tuple(by_id[j] for j in plan.evict))
    assert chosen[0] == min(b[0] for b in best.values())  # (5) fewest victims
    assert chosen == min(best.values())  # then lowest priority, then least work lost
    assert chosen == best[plan.factory_id]
    assert {c.factory_id for c in plan.breakdown if c.feasible} == set(best)
