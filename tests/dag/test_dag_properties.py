"""Job DAG properties: random DAGs validate in a Kahn order, back-edges are reported as real
cycles, and simulated executions driven by ``plan`` always finish without breaking a rule."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gigafactory.dag import DagError, FailurePolicy, parent_outcome, plan, validate_dag
from gigafactory.models import TERMINAL_STAGES, ChildSpec, DependencyKind, JobSpec, Stage

PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SPEC = JobSpec(engine="sim", prompt="do it")
IDS = st.text(alphabet="abcdexyz019_.-", min_size=1, max_size=4)  # valid child ids
KINDS = st.sampled_from(
    [DependencyKind.SUCCEEDED] * 3 + [DependencyKind.FAILED, DependencyKind.FINISHED]
)
POLICIES = st.sampled_from(
    [
        FailurePolicy("fail-fast"),
        FailurePolicy("fail-fast", cancel_running=True),
        FailurePolicy("continue"),
    ]
)
SUCCESS = {Stage.SUCCEEDED, Stage.SHIPPED}
ENDINGS = [Stage.SUCCEEDED] * 4 + [Stage.SHIPPED, Stage.FAILED, Stage.FAILED, Stage.CANCELLED]
IN_FLIGHT = [Stage.QUEUED, Stage.WAITING, Stage.DISPATCHED, Stage.RUNNING, Stage.PREEMPTED]


def child(id_: str, deps: list[str], kind: DependencyKind = DependencyKind.SUCCEEDED) -> ChildSpec:
    return ChildSpec(id=id_, depends_on=deps, dependency_kind=kind, spec=SPEC)


@st.composite
def dags(draw: st.DrawFn, min_size: int = 0, max_size: int = 12) -> list[ChildSpec]:
    """An acyclic graph (edges only to earlier ids), declared in a random order."""
    ids = draw(st.lists(IDS, unique=True, min_size=min_size, max_size=max_size))
    children = []
    for index, id_ in enumerate(ids):
        deps = draw(st.lists(st.sampled_from(ids[:index]), max_size=4)) if index else []
        children.append(child(id_, deps, draw(KINDS)))
    return list(draw(st.permutations(children)))


def depends_on(children: list[ChildSpec]) -> dict[str, set[str]]:
    return {c.id: set(c.depends_on) for c in children}


def upstream(deps: dict[str, set[str]], id_: str) -> set[str]:
    """Every child ``id_`` depends on, directly or not."""
    seen: set[str] = set()
    todo = list(deps[id_])
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(deps[node])
    return seen


# --- validation ------------------------------------------------------------------------------
@PROPERTY
@given(dags())
def test_random_dags_validate_in_kahn_order(children):
    order = validate_dag(children)
    assert sorted(order) == sorted(c.id for c in children)
    position = {id_: index for index, id_ in enumerate(order)}
    deps = depends_on(children)
    assert all(position[d] < position[c] for c in deps for d in deps[c])
    # Kahn with ties broken by declaration order: each next id is the earliest-declared of
    # those whose dependencies are all placed.
    declared = [c.id for c in children]
    placed: set[str] = set()
    for id_ in order:
        ready = [c for c in declared if c not in placed and deps[c] <= placed]
        assert id_ == ready[0]
        placed.add(id_)
    assert validate_dag(children) == order


@PROPERTY
@given(dags(), st.data())
def test_existing_plus_new_is_the_same_graph(children, data):
    order = validate_dag(children)
    cut = data.draw(st.integers(0, len(order)))
    old = set(order[:cut])  # a prefix of a topological order: closed under dependencies
    existing = [c for c in children if c.id in old]
    new = [c for c in children if c.id not in old]
    assert validate_dag(new, existing=existing) == validate_dag([*existing, *new])
    if existing:
        with pytest.raises(DagError, match="already a child of this parent") as caught:
            validate_dag([*new, existing[-1]], existing=existing)
        assert caught.value.ids == (existing[-1].id,)


@PROPERTY
@given(dags(min_size=2), st.data())
def test_a_back_edge_is_reported_as_a_real_cycle(children, data):
    deps = depends_on(children)
    ids = [c.id for c in children]
    first, second = data.draw(st.permutations(ids))[:2]
    if first in upstream(deps, second):
        u, v = first, second  # v depends on u, directly or not
    elif second in upstream(deps, first):
        u, v = second, first
    else:  # unrelated: make v depend on u first (still acyclic)
        u, v = first, second
        deps[v].add(u)
    deps[u].add(v)  # the back-edge
    cyclic = [child(c.id, sorted(deps[c.id]), c.dependency_kind) for c in children]
    with pytest.raises(DagError) as caught:
        validate_dag(cyclic)
    loop = caught.value.ids
    assert len(loop) >= 2 and len(set(loop)) == len(loop)
    for before, after in zip(loop, loop[1:] + loop[:1], strict=True):
        assert before in deps[after]  # each depends on the one before it
    assert str(caught.value) == (
        f"cycle: {' -> '.join([*loop, loop[0]])} (each child depends on the one before it)"
    )
    assert loop[0] == min(loop, key=ids.index)


@PROPERTY
@given(dags(min_size=1), st.data())
def test_self_edges_and_unknown_ids_are_named(children, data):
    victim = data.draw(st.sampled_from(children))
    ghost = "ghost"  # longer than any generated id: unknown
    for extra, expected, named in [
        (victim.id, f"child {victim.id!r} depends on itself", (victim.id,)),
        (ghost, f"child {victim.id!r} depends on unknown id {ghost!r}", (victim.id, ghost)),
    ]:
        broken = [
            child(c.id, [*c.depends_on, extra], c.dependency_kind) if c is victim else c
            for c in children
        ]
        with pytest.raises(DagError) as caught:
            validate_dag(broken)
        assert (str(caught.value), caught.value.ids) == (expected, named)


# --- simulated executions --------------------------------------------------------------------
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags(), POLICIES, st.randoms(use_true_random=False))
def test_simulated_runs_finish_and_keep_the_rules(children, policy, rnd: random.Random):
    order = validate_dag(children)
    deps = depends_on(children)
    kinds = {c.id: c.dependency_kind for c in children}
    fixups = {
        i: [c for c in order if kinds[c] == DependencyKind.FAILED and i in deps[c]] for i in order
    }
    stages: dict[str, Stage | None] = {}
    started: set[str] = set()
    last = 0
    for _ in range(len(children) + 2):
        snapshot = dict(stages)
        p = plan(children, stages, policy)
        assert stages == snapshot and plan(children, snapshot, policy) == p  # pure
        # progress: the right total, never down
        assert p.progress[1] == len(children) and p.progress[0] >= last
        last = p.progress[0]
        assert not set(p.start) & set(p.block)
        for id_, reason in p.block.items():
            assert stages.get(id_) is None  # only children that have not started
            if reason.startswith("fail-fast: "):
                assert policy.mode == "fail-fast"
                assert Stage.FAILED in stages.values()
                assert kinds[id_] != DependencyKind.FINISHED
            else:
                assert reason.startswith("dependency ")
            stages[id_] = Stage.BLOCKED
        for id_ in p.block:
            if not p.block[id_].startswith("fail-fast: "):
                assert any(
                    stages.get(d) in TERMINAL_STAGES and not satisfies(kinds[id_], stages.get(d))
                    for d in deps[id_]
                )
        assert p.start == [i for i in order if i in p.start]
        for id_ in p.start:
            assert id_ not in started and stages.get(id_) is None  # never twice
            assert all(satisfies(kinds[id_], stages.get(d)) for d in deps[id_])  # deps ended
            started.add(id_)
            stages[id_] = rnd.choice(IN_FLIGHT)
        if p.done:
            assert not p.start and not p.cancel
            assert all(stages.get(i) in TERMINAL_STAGES for i in order)
            assert p.progress == (len(children), len(children))
            check_outcome(children, stages, policy, fixups, p.failed)
            return
        for id_ in p.cancel:
            assert policy.cancel_running and policy.mode == "fail-fast"
            assert id_ in started and stages[id_] not in TERMINAL_STAGES
            stages[id_] = Stage.CANCELLED
        running = [i for i in order if i in started and stages[i] not in TERMINAL_STAGES]
        assert running or p.cancel or p.block, "nothing runs and the plan is not done"
        if running:
            for id_ in rnd.sample(running, rnd.randint(1, len(running))):
                stages[id_] = rnd.choice(ENDINGS)
    pytest.fail("the children never finished")


def satisfies(kind: DependencyKind, stage: Stage | None) -> bool:
    if stage not in TERMINAL_STAGES:
        return False
    if kind == DependencyKind.SUCCEEDED:
        return stage in SUCCESS
    if kind == DependencyKind.FAILED:
        return stage == Stage.FAILED
    return True


def check_outcome(children, stages, policy, fixups, failed):
    outcome, reason = parent_outcome(children, stages, policy)
    assert (outcome == Stage.SUCCEEDED) == (not failed) == (reason is None)
    assert outcome in (Stage.SUCCEEDED, Stage.FAILED)
    ended = set(stages.values())
    if Stage.FAILED not in ended and Stage.CANCELLED not in ended:
        assert outcome == Stage.SUCCEEDED  # only unneeded fix-ups (and what follows) blocked
    if Stage.CANCELLED in ended:
        assert outcome == Stage.FAILED and reason is not None and "cancelled" in reason
    unhandled = [
        i
        for i in fixups
        if stages[i] == Stage.FAILED and not any(stages[f] in SUCCESS for f in fixups[i])
    ]
    if unhandled:
        assert outcome == Stage.FAILED and reason is not None
        assert reason.startswith((f"child {unhandled[0]!r} ", f"children {unhandled[0]!r}"))
    assert failed == expected_failures(children, stages, fixups)


def expected_failures(children, stages, fixups) -> list[str]:
    """The module docs' "counts as the parent's failure", written as a recursive definition."""
    deps = depends_on(children)
    kinds = {c.id: c.dependency_kind for c in children}

    def counts(id_: str) -> bool:
        stage, kind = stages[id_], kinds[id_]
        if stage == Stage.FAILED:  # unless a fix-up of it succeeded
            return not any(stages[f] in SUCCESS for f in fixups[id_])
        if stage == Stage.CANCELLED:
            return True
        if stage != Stage.BLOCKED or kind == DependencyKind.FAILED:
            return False
        unmet = [d for d in deps[id_] if not satisfies(kind, stages[d])]
        if not unmet:  # blocked by fail-fast
            return True
        return any(stages[d] in (Stage.FAILED, Stage.CANCELLED) or counts(d) for d in unmet)

    return [i for i in validate_dag(children) if counts(i)]
