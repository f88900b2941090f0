"""The submit dialog, the budget and routing forms: what is accepted, and refusals shown at
the field they name."""

from __future__ import annotations

import re

import pytest

from tests.ui.conftest import Browser, UiApp

pytestmark = pytest.mark.temporal

HTMX = {"HX-Request": "true"}


def error_at(html: str, field: str) -> str:
    match = re.search(
        rf'<p class="field-error" id="err-{field}" role="alert">(.*?)</p>', html, re.S
    )
    assert match, f"no error at {field}: {html}"
    return match.group(1)


async def test_submit_from_fields_goes_to_the_new_job(ui: UiApp, admin: Browser) -> None:
    data = {
        "productId": ui.product,
        "engine": "sim",
        "title": "From the dialog",
        "prompt": "simulate",
        "params": '{"durationS": 1, "costUsd": 0.01}',
        "estimatedCostUsd": "0.05",
        "capabilities": "x, y",
    }
    r = await admin.post("/ui/jobs", data, headers=HTMX)
    assert r.status_code == 204
    target = r.headers["HX-Redirect"]
    job = await ui.store.get_job(target.rsplit("/", 1)[1])
    assert job.spec.title == "From the dialog" and job.spec.params == {
        "durationS": 1,
        "costUsd": 0.01,
    }
    assert job.spec.capabilities == ["x", "y"] and job.spec.estimated_cost_usd == 0.05
    # Without htmx: a redirect to the job.
    r = await admin.post("/ui/jobs", data)
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/jobs/")


async def test_a_spec_file_upload_with_a_field_overriding_it(ui: UiApp, admin: Browser) -> None:
    spec = (
        f"# Uploaded\n\n| engine | product | priority |\n|---|---|---|\n"
        f"| sim | {ui.product} | low |\nGo.\n"
    )
    r = await admin.post(
        "/ui/jobs",
        {"priority": "high"},
        files={"specFile": ("job.md", spec.encode(), "text/markdown")},
        headers=HTMX,
    )
    assert r.status_code == 204, r.text
    job = await ui.store.get_job(r.headers["HX-Redirect"].rsplit("/", 1)[1])
    assert job.spec.title == "Uploaded" and job.spec.priority.value == "high"


async def test_refusals_appear_at_the_field_they_name(ui: UiApp, admin: Browser) -> None:
    bad_spec = (
        f"| engine | product | timeout |\n|---|---|---|\n| sim | {ui.product} | forever |\nGo."
    )
    r = await admin.post("/ui/jobs", {"spec": bad_spec}, headers=HTMX)
    assert r.status_code == 422
    assert "column &#39;timeout&#39;: bad duration &#39;forever&#39;" in error_at(r.text, "spec")
    # The same value typed in the timeout field is shown there.
    r = await admin.post(
        "/ui/jobs",
        {"spec": bad_spec.replace("forever", "1h"), "timeout": "forever"},
        headers=HTMX,
    )
    assert "bad duration" in error_at(r.text, "timeout")
    # Fields only: the validation error names the engine.
    r = await admin.post(
        "/ui/jobs", {"productId": ui.product, "engine": "", "prompt": "x"}, headers=HTMX
    )
    assert r.status_code == 422 and "engine" in r.text
    r = await admin.post(
        "/ui/jobs", {"productId": ui.product, "engine": "sim", "prompt": ""}, headers=HTMX
    )
    assert r.status_code == 422
    r = await admin.post(
        "/ui/jobs",
        {"productId": "no-dash", "engine": "sim", "prompt": "x"},
        headers=HTMX,
    )
    assert "invalid productId" in error_at(r.text, "productId")
    r = await admin.post(
        "/ui/jobs",
        {"productId": ui.product, "engine": "sim", "prompt": "x", "params": "{nope"},
        headers=HTMX,
    )
    assert "not JSON" in error_at(r.text, "params")
    # What was typed is kept, escaped.
    r = await admin.post(
        "/ui/jobs",
        {
            "productId": ui.product,
            "engine": "sim",
            "prompt": "<b>x</b>",
            "estimatedCostUsd": "lots",
        },
        headers=HTMX,
    )
    assert "is not a number" in error_at(r.text, "estimatedCostUsd")
    assert "&lt;b&gt;x&lt;/b&gt;</textarea>" in r.text
    # Without htmx: the whole page, the dialog open on the errors.
    r = await admin.post("/ui/jobs", {"spec": bad_spec})
    assert r.status_code == 422 and "data-open" in r.text and "bad duration" in r.text


async def test_budget_forms(ui: UiApp, admin: Browser) -> None:
    await ui.submit()
    r = await admin.post(
        f"/ui/budgets/{ui.product}",
        {
            "ceiling": "$12.50",
            "window": "day",
            "softThresholdPercent": "75",
            "defaultEstimate": "0.1",
        },
    )
    assert r.status_code == 303 and "saved" in r.headers["location"]
    page = (await admin.http.get("/ui/budgets")).text
    assert "$12.50" in page and "per day" in page and "75%" in page
    # Budgets are off here: pause is not offered, and refused with the reason when forged.
    assert ">Pause</button>" not in page
    r = await admin.post(f"/ui/budgets/{ui.product}/pause", {"reason": "x"})
    assert r.status_code == 303
    shown = await admin.http.get(r.headers["location"])
    assert "budgets are not enforced" in shown.text
    r = await admin.post(f"/ui/budgets/{ui.product}", {"ceiling": "-3"})
    shown = await admin.http.get(r.headers["location"])
    assert "greater than or equal to 0" in shown.text


async def test_routing_forms_and_the_dry_run(ui: UiApp, admin: Browser) -> None:
    page = await admin.http.get("/ui/routing", params={"product": ui.product})
    assert page.status_code == 200 and 'name="w.load"' in page.text
    r = await admin.post(
        f"/ui/routing/{ui.product}",
        {"w.load": "3", "preempting": ["critical", "high"], "minRuntimeS": "60", "graceS": ""},
    )
    assert r.status_code == 303 and "saved" in r.headers["location"]
    stored = await ui.store.get_routing_weights(ui.product)
    assert stored is not None and stored.weights == {"load": 3.0}
    assert [p.value for p in stored.preemption.preempting_priorities or []] == ["critical", "high"]
    assert stored.preemption.min_runtime_s == 60 and stored.preemption.grace_s is None
    r = await admin.post(f"/ui/routing/{ui.product}", {"w.nosuch": "1"})
    shown = await admin.http.get(r.headers["location"])
    assert "nosuch" in shown.text

    spec = f"| engine | product |\n|---|---|\n| sim | {ui.product} |\nGo."
    plan = await admin.post("/ui/routing/plan/dry-run", {"spec": spec}, headers=HTMX)
    assert plan.status_code == 200 and "It would wait" in plan.text
    bad = await admin.post(
        "/ui/routing/plan/dry-run", {"spec": "| engine |\n|---|\n| nope |\nGo."}, headers=HTMX
    )
    assert bad.status_code == 422 and "unknown engine" in error_at(bad.text, "spec")
    full = await admin.post("/ui/routing/plan/dry-run", {"spec": spec})
    assert full.status_code == 200 and "<html" in full.text and "It would wait" in full.text


async def test_the_same_dialog_submitted_twice_makes_one_job(ui: UiApp, admin: Browser) -> None:
    dialog = await admin.http.get("/ui/jobs")
    match = re.search(r'name="idempotencyKey" value="([0-9a-f]{32})"', dialog.text)
    assert match, "the submit dialog carries no idempotency key"
    key = match.group(1)
    again = await admin.http.get("/ui/jobs")
    assert key not in again.text  # each rendered dialog has its own
    data = {"productId": ui.product, "engine": "sim", "prompt": "once", "idempotencyKey": key}

    first = await admin.post("/ui/jobs", data)
    second = await admin.post("/ui/jobs", data)  # a double click, or a resend
    assert first.status_code == second.status_code == 303
    target, notice = first.headers["location"].split("?", 1)
    assert second.headers["location"].split("?", 1)[0] == target
    assert "submitted" in notice and "already+submitted" in second.headers["location"]
    job = await ui.store.get_job(target.rsplit("/", 1)[1])
    assert job.idempotency_key == key
    page = await ui.store.list_jobs(products=[ui.product], limit=50)
    assert [j.id for j in page.items] == [job.id]

    # The same dialog changed after it made its job: refused at the form, with a new key.
    changed = await admin.post("/ui/jobs", {**data, "prompt": "something else"}, headers=HTMX)
    assert changed.status_code == 409
    assert f"was used for a different request (job {job.id})" in changed.text
    fresh = re.search(r'name="idempotencyKey" value="([0-9a-f]{32})"', changed.text)
    assert fresh and fresh.group(1) != key
    resent = await admin.post(
        "/ui/jobs", {**data, "prompt": "something else", "idempotencyKey": fresh.group(1)}
    )
    assert resent.status_code == 303
    assert not resent.headers["location"].startswith(target + "?")
