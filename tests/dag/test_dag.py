"""The job DAG: validation errors, topological order and the parent's plan and outcome."""

from __future__ import annotations

import ast
import json
import pickle
import sys
from pathlib import Path

import pytest

import gigafactory.dag
from gigafactory.dag import (
    DagError,
    DagLimits,
    FailurePolicy,
    Plan,
    parent_outcome,
    plan,
    validate_dag,
)
from gigafactory.models import ChildSpec, DependencyKind, JobSpec, Stage
from tests.conftest import EXAMPLES_DIR

FAIL_FAST = FailurePolicy("fail-fast")
FAIL_FAST_CANCEL = FailurePolicy("fail-fast", cancel_running=True)
CONTINUE = FailurePolicy("continue")

S = Stage.SUCCEEDED
F = Stage.FAILED
R = Stage.RUNNING
Q = Stage.QUEUED
X = Stage.CANCELLED
B = Stage.BLOCKED


def child(id_: str, *deps: str, kind: str = "succeeded") -> ChildSpec:
    return ChildSpec(
        id=id_,
        depends_on=list(deps),
        dependency_kind=DependencyKind(kind),
        spec=JobSpec(engine="sim", prompt=f"do {id_}"),
    )


def diamond() -> list[ChildSpec]:
    return [child("a"), child("b", "a"), child("c", "a"), child("d", "b", "c")]


def dag_error(children: list[ChildSpec], **kwargs: object) -> DagError:
    with pytest.raises(DagError) as caught:
        validate_dag(children, **kwargs)  # type: ignore[arg-type]
    return caught.value


# --- validation ------------------------------------------------------------------------------
def test_the_shared_diamond_example_validates():
    doc = json.loads((EXAMPLES_DIR / "dag-diamond.json").read_text())
    children = [
        ChildSpec(
            id=c["id"],
            depends_on=c.get("dependsOn", []),
            spec=JobSpec(engine=c["engine"], prompt=c["prompt"], params=c.get("params", {})),
        )
        for c in doc["children"]
    ]
    assert validate_dag(children) == ["design", "impl", "tests", "review"]


def test_topological_order_breaks_ties_by_declaration_order():
    children = [child("z"), child("y", "x"), child("x"), child("w", "z")]
    assert validate_dag(children) == ["z", "x", "y", "w"]
    assert validate_dag([]) == []


def test_repeated_dependency_counts_once():
    assert validate_dag([child("a"), child("b", "a", "a")]) == ["a", "b"]
    assert plan([child("a"), child("b", "a", "a")], {"a": S}, FAIL_FAST).start == ["b"]


@pytest.mark.parametrize("bad", ["", "a b", "a/b", "é", "x" * 65, "a\n"])
def test_invalid_id_shape(bad):
    err = dag_error([child("ok"), child(bad)])
    assert str(err).startswith(f"invalid child id {bad!r}: use 1 to 64 letters")
    assert err.ids == (bad,)


def test_valid_id_shapes():
    ids = ["a", "A-1", "impl_2", "v1.2", "x" * 64]
    assert validate_dag([child(i) for i in ids]) == ids


def test_duplicate_id():
    err = dag_error([child("a"), child("b"), child("a")])
    assert str(err) == "duplicate child id 'a'"
    assert err.ids == ("a",)


def test_duplicate_of_an_existing_child():
    err = dag_error([child("b"), child("a")], existing=[child("a")])
    assert str(err) == "duplicate child id 'a' (already a child of this parent)"
    assert err.ids == ("a",)


def test_self_edge():
    err = dag_error([child("b"), child("a", "b", "a")])
    assert str(err) == "child 'a' depends on itself"
    assert err.ids == ("a",)


def test_unknown_id():
    err = dag_error([child("a"), child("b", "a", "x")])
    assert str(err) == "child 'b' depends on unknown id 'x'"
    assert err.ids == ("b", "x")


def test_cycle_reports_a_real_path():
    # a after c, b after a, c after b: a -> b -> c -> a in run order.
    err = dag_error([child("root"), child("a", "c"), child("b", "a"), child("c", "b", "root")])
    assert str(err) == "cycle: a -> b -> c -> a (each child depends on the one before it)"
    assert err.ids == ("a", "b", "c")


def test_cycle_behind_an_acyclic_child():
    # 'tail' is stuck behind the cycle but is not in it; the reported path is the loop.
    err = dag_error([child("tail", "q"), child("p", "q"), child("q", "p")])
    assert str(err) == "cycle: p -> q -> p (each child depends on the one before it)"
    assert err.ids == ("p", "q")


def test_checks_run_in_order():
    # duplicate before self-edge before unknown before cycle before width before depth
    dup = [child("a", "a"), child("a"), child("b", "x")]
    assert str(dag_error(dup)).startswith("duplicate")
    self_edge = [child("a", "x"), child("b", "b")]
    assert str(dag_error(self_edge)).endswith("depends on itself")
    unknown = [child("a", "b"), child("b", "a"), child("c", "x")]
    assert "unknown id" in str(dag_error(unknown))
    cyclic = [child(f"c{i}", f"c{i - 1}") if i else child("c0", "c9") for i in range(10)]
    assert str(dag_error(cyclic, limits=DagLimits(max_children=2, max_depth=1))).startswith(
        "cycle: c0 -> c1"
    )
    wide_and_deep = [child("a"), child("b", "a"), child("c", "b")]
    err = dag_error(wide_and_deep, limits=DagLimits(max_children=2, max_depth=2))
    assert str(err) == "3 children; the limit is 2"


def test_width_limit():
    limits = DagLimits(max_children=40, max_depth=10)
    assert len(validate_dag([child(f"c{i}") for i in range(40)], limits)) == 40
    err = dag_error([child(f"c{i}") for i in range(42)], limits=limits)
    assert str(err) == "42 children; the limit is 40"
    assert err.ids == ()


def test_width_counts_existing_children():
    limits = DagLimits(max_children=40)
    existing = [child(f"e{i}") for i in range(30)]
    err = dag_error([child(f"n{i}") for i in range(12)], limits=limits, existing=existing)
    assert str(err) == "42 children; the limit is 40 (30 existing, 12 new)"


def test_depth_limit():
    chain = [child("c0")] + [child(f"c{i}", f"c{i - 1}") for i in range(1, 12)]
    assert len(validate_dag(chain[:10], DagLimits(max_depth=10))) == 10
    err = dag_error(chain, limits=DagLimits(max_depth=10))
    assert str(err) == (
        "the DAG is 12 levels deep; the limit is 10 "
        "(longest chain: c0 -> c1 -> c2 -> ... -> c9 -> c10 -> c11)"
    )
    assert err.ids == tuple(f"c{i}" for i in range(12))


def test_depth_is_the_longest_chain_in_nodes():
    # The diamond is 3 deep (a, b|c, d); a short chain beside it does not matter.
    children = [*diamond(), child("e", "a")]
    validate_dag(children, DagLimits(max_depth=3))
    err = dag_error(children, limits=DagLimits(max_depth=2))
    assert str(err) == "the DAG is 3 levels deep; the limit is 2 (longest chain: a -> b -> d)"
    assert err.ids == ("a", "b", "d")


def test_depth_counts_existing_children():
    existing = [child("a"), child("b", "a")]
    err = dag_error([child("c", "b")], limits=DagLimits(max_depth=2), existing=existing)
    assert err.ids == ("a", "b", "c")


def test_new_children_may_depend_on_existing_ones():
    existing = diamond()
    new = [child("e", "d"), child("f", "a", "e")]
    assert validate_dag(new, existing=existing) == ["a", "b", "c", "d", "e", "f"]
    assert validate_dag([], existing=existing) == ["a", "b", "c", "d"]
    err = dag_error([child("e", "nope")], existing=existing)
    assert str(err) == "child 'e' depends on unknown id 'nope'"


def test_existing_children_are_not_checked_for_id_shape():
    # Only what is submitted now is checked for shape; existing ids were accepted before.
    assert validate_dag([child("b", "legacy id")], existing=[child("legacy id")]) == [
        "legacy id",
        "b",
    ]


def test_a_200_child_fan_out_validates_and_plans():
    # Speed is the benchmark's business (docs/performance.md), not a test's.
    children = [child("root")] + [child(f"leaf{i}", "root") for i in range(199)]
    children.append(child("join", *(f"leaf{i}" for i in range(199))))
    order = validate_dag(children)
    stages: dict[str, Stage | None] = {"root": S, **{f"leaf{i}": S for i in range(150)}}
    fan = plan(children, stages, FAIL_FAST)
    assert order[0] == "root" and order[-1] == "join" and len(order) == 201
    assert fan.start == [f"leaf{i}" for i in range(150, 199)]


def test_dag_error_is_a_value_error_and_pickles():
    err = DagError("child 'b' depends on unknown id 'x'", ("b", "x"))
    assert isinstance(err, ValueError)
    back = pickle.loads(pickle.dumps(err))
    assert (str(back), back.ids) == (str(err), err.ids)
    assert DagError("plain").ids == ()


def test_limits_and_policy_are_checked():
    with pytest.raises(ValueError, match="at least 1"):
        DagLimits(max_children=0)
    with pytest.raises(ValueError, match="unknown failure policy 'stop'"):
        FailurePolicy("stop")  # type: ignore[arg-type]
    assert DagLimits() == DagLimits(max_children=500, max_depth=50)


# --- planning: the diamond -------------------------------------------------------------------
@pytest.mark.parametrize("policy", [FAIL_FAST, FAIL_FAST_CANCEL, CONTINUE])
def test_diamond_runs_in_waves(policy):
    kids = diamond()
    assert plan(kids, {}, policy) == Plan(
        start=["a"], block={}, cancel=[], done=False, failed=[], progress=(0, 4)
    )
    assert plan(kids, {"a": R}, policy).start == []
    p = plan(kids, {"a": S}, policy)
    assert (p.start, p.progress) == (["b", "c"], (1, 4))
    assert plan(kids, {"a": S, "b": S, "c": R}, policy).start == []
    p = plan(kids, {"a": S, "b": S, "c": S}, policy)
    assert (p.start, p.done) == (["d"], False)
    p = plan(kids, {"a": S, "b": S, "c": S, "d": S}, policy)
    assert p == Plan(start=[], block={}, cancel=[], done=True, failed=[], progress=(4, 4))
    assert parent_outcome(kids, {"a": S, "b": S, "c": S, "d": S}, policy) == (S, None)


def test_shipped_counts_as_succeeded():
    kids = diamond()
    stages = {"a": Stage.SHIPPED, "b": Stage.SHIPPED, "c": S}
    assert plan(kids, stages, FAIL_FAST).start == ["d"]
    assert parent_outcome(kids, {**stages, "d": Stage.SHIPPED}, FAIL_FAST) == (S, None)


def test_fail_fast_blocks_what_has_not_started():
    kids = diamond()
    stages: dict[str, Stage | None] = {"a": S, "b": F, "c": None}
    p = plan(kids, stages, FAIL_FAST)
    assert p.start == []
    assert p.block == {"c": "fail-fast: child 'b' failed", "d": "dependency 'b' failed"}
    assert (p.cancel, p.done, p.failed, p.progress) == ([], True, ["b", "c", "d"], (4, 4))
    assert parent_outcome(kids, stages, FAIL_FAST) == (F, "child 'b' failed")


def test_fail_fast_lets_running_children_finish():
    kids = diamond()
    p = plan(kids, {"a": S, "b": F, "c": R}, FAIL_FAST)
    assert (p.start, p.block, p.cancel, p.done) == ([], {"d": "dependency 'b' failed"}, [], False)
    with pytest.raises(ValueError, match="not done: 3 of 4 ended"):
        parent_outcome(kids, {"a": S, "b": F, "c": R}, FAIL_FAST)
    done = {"a": S, "b": F, "c": S, "d": B}
    assert plan(kids, done, FAIL_FAST).done
    assert parent_outcome(kids, done, FAIL_FAST) == (F, "child 'b' failed")


def test_fail_fast_can_cancel_running_children():
    kids = diamond()
    p = plan(kids, {"a": S, "b": F, "c": Q}, FAIL_FAST_CANCEL)
    assert (p.cancel, p.block, p.done) == (["c"], {"d": "dependency 'b' failed"}, False)
    stages = {"a": S, "b": F, "c": X, "d": B}
    assert plan(kids, stages, FAIL_FAST_CANCEL).cancel == []
    assert parent_outcome(kids, stages, FAIL_FAST_CANCEL) == (
        F,
        "child 'b' failed; child 'c' was cancelled",
    )


def test_continue_keeps_independent_branches_running():
    kids = diamond()
    p = plan(kids, {"a": S, "b": F}, CONTINUE)
    assert (p.start, p.block, p.done) == (["c"], {"d": "dependency 'b' failed"}, False)
    assert plan(kids, {"a": S, "b": F, "c": R}, FAIL_FAST_CANCEL).cancel == ["c"]
    assert plan(kids, {"a": S, "b": F, "c": R}, FailurePolicy("continue", True)).cancel == []
    stages = {"a": S, "b": F, "c": S, "d": B}
    p = plan(kids, stages, CONTINUE)
    assert (p.done, p.failed) == (True, ["b", "d"])
    assert parent_outcome(kids, stages, CONTINUE) == (F, "child 'b' failed")


def test_blocks_cascade_within_one_call():
    kids = [child("a"), child("b", "a"), child("c", "b"), child("d", "c", kind="finished")]
    p = plan(kids, {"a": X}, CONTINUE)
    assert p.block == {"b": "dependency 'a' cancelled", "c": "dependency 'b' blocked"}
    assert p.start == ["d"]  # finished: a blocked dependency has ended too
    assert p.progress == (3, 4)


# --- fix-ups (dependency kind failed) and finished -------------------------------------------
def fixup_dag() -> list[ChildSpec]:
    return [child("tests"), child("fix", "tests", kind="failed")]


@pytest.mark.parametrize("policy", [FAIL_FAST, CONTINUE])
def test_fixup_is_blocked_without_failing_the_parent_when_not_needed(policy):
    kids = fixup_dag()
    p = plan(kids, {"tests": S}, policy)
    assert p.block == {"fix": "dependency 'tests' succeeded; this child runs only if it failed"}
    assert (p.start, p.done, p.failed) == ([], True, [])
    assert parent_outcome(kids, {"tests": S}, policy) == (S, None)
    assert parent_outcome(kids, {"tests": S, "fix": B}, policy) == (S, None)


@pytest.mark.parametrize("policy", [FAIL_FAST, FAIL_FAST_CANCEL, CONTINUE])
def test_fixup_runs_when_its_dependency_failed_and_handles_the_failure(policy):
    kids = fixup_dag()
    p = plan(kids, {"tests": F}, policy)
    assert (p.start, p.block, p.failed) == (["fix"], {}, ["tests"])
    assert plan(kids, {"tests": F, "fix": R}, policy).cancel == []
    assert parent_outcome(kids, {"tests": F, "fix": S}, policy) == (S, None)
    assert parent_outcome(kids, {"tests": F, "fix": F}, policy) == (
        F,
        "children 'tests' and 'fix' failed",
    )


def test_fixup_is_not_run_for_a_cancelled_dependency():
    kids = fixup_dag()
    p = plan(kids, {"tests": X}, CONTINUE)
    assert p.block == {"fix": "dependency 'tests' cancelled; this child runs only if it failed"}
    assert parent_outcome(kids, {"tests": X}, CONTINUE) == (F, "child 'tests' was cancelled")


def test_a_pending_fixup_holds_off_fail_fast():
    kids = [*fixup_dag(), child("other"), child("later", "other")]
    # tests failed, but its fix-up may still handle it: the other branch goes on.
    p = plan(kids, {"tests": F, "other": S}, FAIL_FAST)
    assert (p.start, p.block) == (["fix", "later"], {})
    # the fix-up failed too: nothing handles the failure now, so fail-fast blocks the rest.
    p = plan(kids, {"tests": F, "fix": F, "other": S}, FAIL_FAST)
    assert (p.start, p.block) == ([], {"later": "fail-fast: child 'tests' failed"})


def test_a_child_after_an_unneeded_fixup_does_not_fail_the_parent():
    kids = [*fixup_dag(), child("verify", "fix")]
    p = plan(kids, {"tests": S}, FAIL_FAST)
    assert p.block == {
        "fix": "dependency 'tests' succeeded; this child runs only if it failed",
        "verify": "dependency 'fix' blocked",
    }
    assert (p.done, p.failed) == (True, [])
    assert parent_outcome(kids, {"tests": S}, FAIL_FAST) == (S, None)


def test_a_child_after_a_handled_failure_still_fails_the_parent():
    # The fix-up handled the failure of 'tests', but 'review' (after 'tests') never ran.
    kids = [*fixup_dag(), child("review", "tests")]
    stages = {"tests": F, "fix": S}
    p = plan(kids, stages, CONTINUE)
    assert (p.block, p.done, p.failed) == (
        {"review": "dependency 'tests' failed"},
        True,
        ["review"],
    )
    assert parent_outcome(kids, stages, CONTINUE) == (
        F,
        "child 'review' was blocked: dependency 'tests' failed",
    )
    recorded = {**stages, "review": B}
    assert parent_outcome(kids, recorded, CONTINUE) == (
        F,
        "child 'review' was blocked: dependency 'tests' failed",
    )


def test_fail_fast_spares_fixups_of_failed_children_and_finished_children():
    kids = [
        child("a"),
        child("b"),
        child("fix_a", "a", kind="failed"),
        child("fix_b", "b", kind="failed"),
        child("cleanup", "b", kind="finished"),
        child("after_b", "b"),
    ]
    # 'a' failed but its fix-up may handle it: no fail-fast yet, the fix-up starts.
    p = plan(kids, {"a": F, "b": R}, FAIL_FAST_CANCEL)
    assert (p.start, p.block, p.cancel) == (["fix_a"], {}, [])
    # 'b' failed and so did its fix-up: fail-fast, but the fix-up of 'a' and the cleanup of
    # 'b' still run.
    stages = {"a": F, "b": F, "fix_a": R, "fix_b": F}
    p = plan(kids, stages, FAIL_FAST_CANCEL)
    assert p.start == ["cleanup"]
    assert p.block == {"after_b": "dependency 'b' failed"}
    assert p.cancel == []  # fix_a is a fix-up of a failed child: not cancelled


def test_finished_children_still_run_under_fail_fast():
    kids = [child("a"), child("b", "a"), child("report", "b", kind="finished"), child("c")]
    p = plan(kids, {"a": F, "c": R}, FAIL_FAST_CANCEL)
    assert p.block == {"b": "dependency 'a' failed"}
    assert (p.start, p.cancel) == (["report"], ["c"])
    p = plan(kids, {"a": F, "b": B, "c": X, "report": R}, FAIL_FAST_CANCEL)
    assert (p.cancel, p.done) == ([], False)
    stages = {"a": F, "b": B, "c": X, "report": S}
    assert parent_outcome(kids, stages, FAIL_FAST_CANCEL) == (
        F,
        "child 'a' failed; child 'c' was cancelled",
    )


def test_fixups_not_yet_reachable_are_blocked_by_fail_fast():
    # 'fix' waits for 'slow', which has not failed (yet): not a fix-up of a failed child.
    kids = [child("boom"), child("slow"), child("fix", "slow", kind="failed")]
    p = plan(kids, {"boom": F, "slow": R}, FAIL_FAST)
    assert p.block == {"fix": "fail-fast: child 'boom' failed"}
    stages = {"boom": F, "slow": F, "fix": B}
    assert parent_outcome(kids, stages, FAIL_FAST) == (F, "children 'boom' and 'slow' failed")


def test_many_failed_children_are_named_briefly():
    kids = [child(f"c{i}") for i in range(6)]
    stages = {f"c{i}": F for i in range(6)}
    assert parent_outcome(kids, stages, CONTINUE) == (
        F,
        "children 'c0', 'c1', 'c2' and 3 more failed",
    )


def test_plan_rejects_a_broken_graph_and_ignores_unknown_stages():
    with pytest.raises(DagError, match="cycle: a -> b -> a"):
        plan([child("a", "b"), child("b", "a")], {}, CONTINUE)
    p = plan([child("a")], {"ghost": F}, FAIL_FAST)
    assert (p.start, p.block) == (["a"], {})


def test_empty_children_are_done_and_succeeded():
    assert plan([], {}, FAIL_FAST) == Plan([], {}, [], True, [], (0, 0))
    assert parent_outcome([], {}, FAIL_FAST) == (S, None)


# --- purity ----------------------------------------------------------------------------------
def test_dag_imports_only_the_standard_library_and_models():
    tree = ast.parse(Path(gigafactory.dag.__file__).read_text())
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module)
    for name in roots:
        top = name.split(".")[0]
        assert name == "gigafactory.models" or (
            top in sys.stdlib_module_names and top not in {"os", "time", "random", "io", "socket"}
        ), name
