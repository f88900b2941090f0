"""Job DAGs on the real dev server: dependency order, failure policies, dependency kinds,
the DAG view with cost roll-up, children added later, cancelling a parent, a wide fan-out."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.e2e.harness import Fleet, parse_time, unique_label
from tests.e2e.test_cli import cli
from tests.replay.recording import record_history

pytestmark = pytest.mark.temporal


def sim_child(
    child_id: str,
    *deps: str,
    duration: float = 0.3,
    cost: float = 0.0,
    outcome: str = "succeeded",
    kind: str | None = None,
) -> dict[str, Any]:
    child: dict[str, Any] = {
        "id": child_id,
        "engine": "sim",
        "prompt": f"child {child_id}",
        "dependsOn": list(deps),
        "params": {"durationS": duration, "costUsd": cost, "outcome": outcome},
    }
    if kind:
        child["dependencyKind"] = kind
    return child


def parent(label: str, children: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "engine": "sim",
        "prompt": "integrate the children's work",
        "productId": "dag",
        "capabilities": [label],
        "params": {"durationS": 0.2, "costUsd": 0.05},
        "children": children,
    }
    body.update(extra)
    return body


async def runs_of(fleet: Fleet, job_id: str) -> list[dict[str, Any]]:
    return await fleet.runs(job_id)


async def span(fleet: Fleet, job_id: str) -> tuple[Any, Any, str]:
    run = (await runs_of(fleet, job_id))[-1]
    return parse_time(run["startedAt"]), parse_time(run["finishedAt"]), run["factoryId"]


async def test_diamond_runs_in_dependency_order_in_parallel_and_rolls_up_cost(
    fleet: Fleet,
) -> None:
    label = unique_label()
    await fleet.start_factory(engines=["sim"], labels=[label], slots=1)
    await fleet.start_factory(engines=["sim"], labels=[label], slots=1)
    job = await fleet.submit(
        parent(
            label,
            [
                sim_child("a", cost=0.1),
                sim_child("b", "a", duration=1.5, cost=0.2),
                sim_child("c", "a", duration=1.5, cost=0.3),
                sim_child("d", "b", "c", cost=0.4),
            ],
        )
    )
    done = await fleet.wait_for(job["id"], ["succeeded"], timeout=90)
    ids = {c: f"{job['id']}.{c}" for c in "abcd"}
    a, b, c, d = [await span(fleet, ids[x]) for x in "abcd"]
    own = await span(fleet, job["id"])
    assert a[1] <= b[0] and a[1] <= c[0]
    assert b[0] < c[1] and c[0] < b[1], "b and c overlap"
    assert b[2] != c[2], "b and c ran on the two factories"
    assert max(b[1], c[1]) <= d[0]
    assert d[1] <= own[0], "the parent's own step runs after the last child"
    assert done["costUsd"] == pytest.approx(0.05)

    dag = await fleet.get(f"/fleet/jobs/{job['id']}/dag")
    assert dag["stage"] == "succeeded" and dag["progress"] == "4 of 4 done"
    nodes = {n["childId"]: n for n in dag["children"]}
    assert nodes["d"]["dependsOn"] == ["b", "c"] and nodes["d"]["stage"] == "succeeded"
    assert all(n["factoryId"] and n["startedAt"] and n["finishedAt"] for n in nodes.values())
    every_run = [r for x in ids.values() for r in await runs_of(fleet, x)]
    every_run += await runs_of(fleet, job["id"])
    assert dag["rollupCostUsd"] == pytest.approx(sum(r["costUsd"] for r in every_run))
    assert dag["rollupCostUsd"] == pytest.approx(1.05)

    tree = await cli(fleet, "job", job["id"], "--dag")
    assert tree.returncode == 0, tree.stderr
    lines = tree.stdout.splitlines()
    assert lines[0].startswith(f"{job['id']}  succeeded") and "tree $1.05" in lines[0]
    assert lines[-1].startswith("└─ d  succeeded") and "after b, c" in lines[-1]

    child = await fleet.job(ids["b"])
    assert child["parentId"] == job["id"]
    assert child["workflowId"] == f"job-dag-{job['id']}.b"
    described = await fleet.client.get_workflow_handle(child["workflowId"]).describe()
    assert described.parent_id == job["workflowId"]
    await record_history(fleet.client, "dag-parent", job["workflowId"])


async def test_fail_fast_blocks_and_continue_lets_the_other_branch_finish(fleet: Fleet) -> None:
    label = unique_label()
    await fleet.start_factory(engines=["sim"], labels=[label], slots=2)
    children = [
        sim_child("bad", duration=0.1, outcome="failed"),
        sim_child("after_bad", "bad"),
        sim_child("prep", duration=1.5),
        sim_child("later", "prep"),
    ]
    fast = await fleet.submit(parent(label, children))
    ended = await fleet.wait_for(fast["id"], ["failed"], timeout=90)
    assert "child 'bad' failed" in ended["stageReason"]
    dag = await fleet.get(f"/fleet/jobs/{fast['id']}/dag")
    stages = {n["childId"]: n for n in dag["children"]}
    assert stages["bad"]["stage"] == "failed"
    assert stages["after_bad"]["stage"] == "blocked"
    assert "dependency 'bad' failed" in stages["after_bad"]["stageReason"]
    assert stages["prep"]["stage"] == "succeeded", "a running child finishes"
    assert stages["later"]["stage"] == "blocked"
    assert "fail-fast" in stages["later"]["stageReason"]
    assert await runs_of(fleet, f"{fast['id']}.later") == []

    cont = await fleet.submit(parent(label, children, failurePolicy="continue"))
    ended = await fleet.wait_for(cont["id"], ["failed"], timeout=90)
    dag = await fleet.get(f"/fleet/jobs/{cont['id']}/dag")
    stages = {n["childId"]: n for n in dag["children"]}
    assert stages["later"]["stage"] == "succeeded", "the independent branch still finishes"
    assert stages["after_bad"]["stage"] == "blocked"
    assert "child 'bad' failed" in ended["stageReason"]


async def test_failed_kind_runs_a_fix_up_only_when_its_dependency_failed(fleet: Fleet) -> None:
    label = unique_label()
    await fleet.start_factory(engines=["sim"], labels=[label], slots=2)
    job = await fleet.submit(
        parent(
            label,
            [
                sim_child("flaky", outcome="failed"),
                sim_child("fixup", "flaky", kind="failed"),
                sim_child("solid"),
                sim_child("not_needed", "solid", kind="failed"),
            ],
            prompt="",
        )
    )
    done = await fleet.wait_for(job["id"], ["succeeded"], timeout=90)
    assert done["stageReason"] == "children done: 1 failed, 2 succeeded, 1 blocked"
    dag = await fleet.get(f"/fleet/jobs/{job['id']}/dag")
    stages = {n["childId"]: n["stage"] for n in dag["children"]}
    assert stages == {
        "flaky": "failed",
        "fixup": "succeeded",
        "solid": "succeeded",
        "not_needed": "blocked",
    }
    assert await runs_of(fleet, job["id"]) == [], "a parent without a prompt has no own step"


async def test_children_added_later_run_and_cancelling_a_parent_cancels_them(
    fleet: Fleet,
) -> None:
    label = unique_label()
    await fleet.start_factory(engines=["sim"], labels=[label], slots=2)
    job = await fleet.submit(parent(label, [sim_child("first", duration=2)]))
    await fleet.wait_for(job["id"], ["waiting"], timeout=30)
    r = await fleet.http.post(
        f"/fleet/jobs/{job['id']}/children",
        json={"children": [sim_child("second", "first"), sim_child("third", "second")]},
        headers=fleet.auth(),
    )
    assert r.status_code == 201, r.text
    bad = await fleet.http.post(
        f"/fleet/jobs/{job['id']}/children",
        json={"children": [sim_child("loop", "loop")]},
        headers=fleet.auth(),
    )
    assert bad.status_code == 422 and "depends on itself" in bad.json()["error"]["message"]
    await fleet.wait_for(job["id"], ["succeeded"], timeout=90)
    dag = await fleet.get(f"/fleet/jobs/{job['id']}/dag")
    assert [(n["childId"], n["stage"]) for n in dag["children"]] == [
        ("first", "succeeded"),
        ("second", "succeeded"),
        ("third", "succeeded"),
    ]
    late = await fleet.http.post(
        f"/fleet/jobs/{job['id']}/children",
        json={"children": [sim_child("fourth")]},
        headers=fleet.auth(),
    )
    assert late.status_code == 409

    doomed = await fleet.submit(
        parent(label, [sim_child("long", duration=30), sim_child("next", "long")])
    )
    await fleet.wait_for(f"{doomed['id']}.long", ["running"], timeout=30)
    r = await fleet.http.patch(
        f"/fleet/jobs/{doomed['id']}", json={"action": "cancel"}, headers=fleet.auth()
    )
    assert r.status_code == 202
    await fleet.wait_for(doomed["id"], ["cancelled"], timeout=60)
    await fleet.wait_for(f"{doomed['id']}.long", ["cancelled"], timeout=60)
    await fleet.wait_for(f"{doomed['id']}.next", ["cancelled"], timeout=60)


async def test_wide_fan_out_completes(fleet: Fleet) -> None:
    label = unique_label()
    for _ in range(2):
        await fleet.start_factory(engines=["sim"], labels=[label], slots=8)
    product = f"fan{uuid.uuid4().hex[:6]}"
    job = await fleet.submit(
        parent(
            label,
            [sim_child(f"c{i:03d}", duration=0) for i in range(200)],
            prompt="",
            productId=product,
        )
    )
    done = await fleet.wait_for(job["id"], ["succeeded"], timeout=400)
    assert done["stageReason"] == "children done: 200 succeeded"
    dag = await fleet.get(f"/fleet/jobs/{job['id']}/dag")
    assert dag["progress"] == "200 of 200 done"
    history = await fleet.client.get_workflow_handle(job["workflowId"]).fetch_history()
    # Bounded per child (start, started, completed, plus the parent's own records): far
    # below Temporal's 50k-event limit; the figure is in docs/performance.md.
    assert len(history.events) < 200 * 12


async def test_a_child_that_is_itself_a_parent_runs_in_dependency_order(fleet: Fleet) -> None:
    """Two levels: `build` is a parent of its own (`lib` then `app`), `ship` waits for it.
    Every level runs in dependency order and the DAG view shows the whole subtree."""
    label = unique_label()
    await fleet.start_factory(engines=["sim"], labels=[label], slots=2)
    build = sim_child("build", cost=0.01)
    build["children"] = [sim_child("lib", cost=0.02), sim_child("app", "lib", cost=0.03)]
    body = parent(label, [sim_child("prep", cost=0.04), build, sim_child("ship", "build")])
    root = await fleet.submit(body)
    await fleet.wait_for(root["id"], ["succeeded"], timeout=120)

    ids = {name: f"{root['id']}.{name}" for name in ("prep", "build", "ship")}
    ids["lib"], ids["app"] = f"{ids['build']}.lib", f"{ids['build']}.app"
    spans = {name: await span(fleet, job_id) for name, job_id in ids.items()}
    # Inside the child parent: app after lib, then build's own step after both.
    assert spans["lib"][1] <= spans["app"][0]
    assert spans["app"][1] <= spans["build"][0]
    # Above it: ship only after build (its own step last) is done.
    assert spans["build"][1] <= spans["ship"][0]
    assert spans["ship"][1] <= (await span(fleet, root["id"]))[0]

    dag = await fleet.get(f"/fleet/jobs/{root['id']}/dag")

    def nodes(node: dict[str, Any]) -> dict[str, str]:
        out = {node["id"]: node["stage"]}
        for child in node["children"]:
            out.update(nodes(child))
        return out

    assert nodes(dag) == {root["id"]: "succeeded", **dict.fromkeys(ids.values(), "succeeded")}
    build_node = next(c for c in dag["children"] if c["id"] == ids["build"])
    assert [c["childId"] for c in build_node["children"]] == ["lib", "app"]
    assert build_node["rollupCostUsd"] == pytest.approx(0.01 + 0.02 + 0.03)
    assert dag["rollupCostUsd"] == pytest.approx(0.05 + 0.04 + 0.06 + 0.0)
