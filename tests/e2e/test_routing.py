"""Tunable routing on the real dev server: product and request weights change the pick,
and the decision is explained term by term (API and CLI)."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.harness import Fleet, unique_label
from tests.e2e.test_cli import cli

pytestmark = pytest.mark.temporal


def _job(label: str, product: str, **extra: object) -> dict[str, object]:
    body: dict[str, object] = {
        "engine": "sim",
        "prompt": "route me",
        "productId": product,
        "capabilities": [label],
        "params": {"durationS": 0.2},
    }
    body.update(extra)
    return body


async def test_affinity_weight_moves_the_job_and_explain_shows_why(fleet: Fleet) -> None:
    label = unique_label()
    product = f"r{uuid.uuid4().hex[:8]}"
    a = await fleet.start_factory(engines=["sim"], labels=[label, f"a-{label}"])
    b = await fleet.start_factory(engines=["sim"], labels=[label, f"b-{label}"])
    await fleet.start_factory(engines=["shell"], labels=[label])  # filtered: no sim

    for target in (a, b):
        tag = f"a-{label}" if target is a else f"b-{label}"
        job = await fleet.submit(
            _job(label, product, preferredLabels=[tag], routingWeights={"affinity": 50})
        )
        done = await fleet.wait_for(job["id"], ["succeeded"])
        assert done["factoryId"] == target.id

        explained = await fleet.get(f"/fleet/jobs/{job['id']}/routing")
        assert explained["factoryId"] == target.id
        assert explained["weights"]["affinity"] == 50
        by_id = {c["factoryId"]: c for c in explained["candidates"]}
        assert by_id[target.id]["eligible"] and by_id[target.id]["breakdown"]
        affinity = next(t for t in by_id[target.id]["breakdown"] if t["term"] == "affinity")
        assert affinity["weight"] == 50 and affinity["contribution"] > 0
        excluded = [c for c in explained["candidates"] if not c["eligible"]]
        assert any("sim" in (c["excludedBecause"] or "") for c in excluded)

    shown = await cli(fleet, "route", "explain", job["id"])
    assert shown.returncode == 0, shown.stderr
    assert b.id in shown.stdout and "affinity=50" in shown.stdout
    assert "excluded" in shown.stdout


async def test_product_override_is_used_and_a_request_override_wins(fleet: Fleet) -> None:
    label = unique_label()
    product = f"r{uuid.uuid4().hex[:8]}"
    await fleet.start_factory(engines=["sim"], labels=[label])
    r = await fleet.http.put(
        f"/fleet/routing/weights/{product}",
        json={"weights": {"load": 7, "health": 0}},
        headers=fleet.auth(),
    )
    assert r.status_code == 200, r.text

    plain = await fleet.submit(_job(label, product))
    own = await fleet.submit(_job(label, product, routingWeights={"load": 3}))
    for job, load in ((plain, 7), (own, 3)):
        await fleet.wait_for(job["id"], ["succeeded"])
        weights = (await fleet.get(f"/fleet/jobs/{job['id']}/routing"))["weights"]
        assert (weights["load"], weights["health"]) == (load, 0)

    listed = await cli(fleet, "route", "weights", product)
    assert listed.returncode == 0, listed.stderr
    assert any(line.split()[:4] == ["load", "2", "7", "7"] for line in listed.stdout.splitlines())
    reset = await cli(fleet, "route", "weights", product, "--reset")
    assert reset.returncode == 0
    assert any(line.split()[:4] == ["load", "2", "-", "2"] for line in reset.stdout.splitlines())
