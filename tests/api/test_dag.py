"""DAG validation at submit: 422 naming the edge or id, and nothing created."""

from __future__ import annotations

import json

import pytest

from tests.api.conftest import Api
from tests.conftest import EXAMPLES_DIR

pytestmark = pytest.mark.temporal


def child(child_id: str, *deps: str) -> dict[str, object]:
    return {"id": child_id, "engine": "sim", "prompt": "p", "dependsOn": list(deps)}


@pytest.mark.parametrize(
    ("children", "named"),
    [
        ([child("a", "b"), child("b", "a")], "cycle: a -> b -> a"),
        ([child("a", "a")], "child 'a' depends on itself"),
        ([child("a", "x")], "child 'a' depends on unknown id 'x'"),
        ([child("a"), child("a")], "duplicate child id 'a'"),
    ],
)
async def test_bad_dags_are_422_naming_them_and_create_nothing(
    api: Api, children: list[dict[str, object]], named: str
) -> None:
    before = await api.store.list_jobs(products=[api.product], limit=200)
    r = await api.http.post(
        "/fleet/jobs",
        json={"productId": api.product, "engine": "sim", "prompt": "p", "children": children},
        headers=api.admin,
    )
    assert r.status_code == 422, r.text
    assert named in r.json()["error"]["message"]
    assert r.json()["error"]["field"] == "children"
    after = await api.store.list_jobs(products=[api.product], limit=200)
    assert [j.id for j in after.items] == [j.id for j in before.items]


async def test_width_limit_is_enforced(api: Api) -> None:
    limit = api.settings.dag_max_children
    r = await api.http.post(
        "/fleet/jobs",
        json={
            "productId": api.product,
            "engine": "sim",
            "prompt": "p",
            "children": [child(f"c{i}") for i in range(limit + 1)],
        },
        headers=api.admin,
    )
    assert r.status_code == 422
    assert f"the limit is {limit}" in r.json()["error"]["message"]


async def test_the_diamond_example_creates_parent_and_children(api: Api) -> None:
    body = json.loads((EXAMPLES_DIR / "dag-diamond.json").read_text())
    body["productId"] = api.product
    r = await api.http.post("/fleet/jobs", json=body, headers=api.admin)
    assert r.status_code == 201, r.text
    parent = r.json()
    assert [c["id"] for c in parent["spec"]["children"]] == ["design", "impl", "tests", "review"]
    # Children inherit what they leave out, and wait for their dependencies.
    impl = await api.store.get_job(f"{parent['id']}.impl", api.product)
    assert impl.parent_id == parent["id"]
    assert impl.spec.product_id == api.product and impl.spec.engine == "sim"
    assert impl.stage.value == "queued" and impl.stage_reason == "waiting for design"
    dag = (await api.http.get(f"/fleet/jobs/{parent['id']}/dag", headers=api.admin)).json()
    assert [n["childId"] for n in dag["children"]] == ["design", "impl", "tests", "review"]
    assert dag["children"][3]["dependsOn"] == ["impl", "tests"]


async def test_children_may_not_change_product(api: Api) -> None:
    r = await api.http.post(
        "/fleet/jobs",
        json={
            "productId": api.product,
            "engine": "sim",
            "prompt": "p",
            "children": [{**child("a"), "spec": {"productId": "elsewhere"}}],
        },
        headers=api.admin,
    )
    assert r.status_code == 422
    assert "parent's product" in r.json()["error"]["message"]


async def test_children_from_a_job_spec_file(api: Api) -> None:
    text = (
        "| engine | product | failurePolicy |\n|---|---|---|\n"
        f"| sim | {api.product} | continue |\n\nIntegrate.\n\n## Children\n\n"
        "| id | dependsOn | dependencyKind | prompt |\n|---|---|---|---|\n"
        "| build | | | Build it. |\n| fix | build | failed | Fix the build. |\n"
    )
    r = await api.http.post("/fleet/jobs", json={"spec": text}, headers=api.admin)
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["spec"]["failurePolicy"] == "continue"
    fix = await api.store.get_job(f"{job['id']}.fix", api.product)
    assert fix.spec.engine == "sim" and fix.stage_reason == "waiting for build"
    bad = text.replace("| fix | build |", "| fix | fix |")
    r = await api.http.post("/fleet/jobs", json={"spec": bad}, headers=api.admin)
    assert r.status_code == 422 and "child 'fix' depends on itself" in r.text
