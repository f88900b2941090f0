"""Every page, its empty state, and what it shows of a job (escaped)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gigafactory.models import Factory, Stage
from tests.ui.conftest import Browser, UiApp

pytestmark = pytest.mark.temporal

PAGES = ["/ui", "/ui/jobs", "/ui/budgets", "/ui/routing"]


@pytest.mark.parametrize("path", PAGES)
async def test_pages_send_a_browser_without_a_session_to_sign_in(ui: UiApp, path: str) -> None:
    browser = ui.browser()
    r = await browser.http.get(path)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/ui/sign-in?next=")
    # A polled fragment asks htmx to load the sign-in page instead of swapping an error in.
    r = await browser.http.get("/ui/fleet/cards", headers={"HX-Request": "true"})
    assert r.status_code == 401 and r.headers["HX-Redirect"].startswith("/ui/sign-in")


async def test_empty_states(ui: UiApp, admin: Browser) -> None:
    fleet = await admin.http.get("/ui")
    assert fleet.status_code == 200
    assert "No factories yet" in fleet.text
    jobs = await admin.http.get("/ui/jobs")
    assert "No jobs yet" in jobs.text
    filtered = await admin.http.get("/ui/jobs", params={"title": "nothing"})
    assert "No jobs match" in filtered.text
    budgets = await admin.http.get("/ui/budgets")
    assert "No products yet" in budgets.text
    assert "Budgets are not enforced" in budgets.text  # FLEET_BUDGETS is off here
    routing = await admin.http.get("/ui/routing")
    assert "Choose a product" in routing.text
    assert "Preemption is off" in routing.text


async def test_a_job_page_shows_the_job_and_escapes_what_users_typed(
    ui: UiApp, admin: Browser
) -> None:
    hostile = "<script>alert('x')</script>"
    job = await ui.submit(title=hostile, prompt=f"prompt {hostile}", labels={"k": hostile})
    await ui.store.append_event(
        (await ui.store.list_events(job["id"], ui.product))[0][0].model_copy(
            update={"id": "e-hostile", "kind": "info", "reason": hostile}
        )
    )
    for path in ("/ui/jobs", f"/ui/jobs/{job['id']}", f"/ui/jobs/{job['id']}/live"):
        r = await admin.http.get(path)
        assert r.status_code == 200, (path, r.text)
        assert hostile not in r.text
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in r.text
    page = await admin.http.get(f"/ui/jobs/{job['id']}")
    assert "Cancel job" in page.text
    assert f"http://temporal-ui.test/namespaces/default/workflows/{job['workflowId']}" in page.text
    assert "not routed yet" in page.text


async def test_the_fleet_map_shows_each_factory(ui: UiApp, admin: Browser) -> None:
    for factory_id, labels in (("f-one", ["gpu"]), ("f-two", ["<b>bold</b>"])):
        await ui.store.create_factory(
            Factory(
                id=factory_id,
                engines=["sim"],
                labels=labels,
                slots=2,
                hostname="host-1",
                enrolled_at=datetime.now(UTC),
            )
        )
    r = await admin.http.get("/ui")
    assert 'data-factory="f-one"' in r.text and 'data-factory="f-two"' in r.text
    assert "<b>bold</b>" not in r.text and "&lt;b&gt;bold&lt;/b&gt;" in r.text
    assert "Cordon" in r.text and "Revoke" in r.text and "host-1" in r.text
    cards = await admin.http.get("/ui/fleet/cards")
    assert cards.status_code == 200 and "ETag" in cards.headers
    again = await admin.http.get(
        "/ui/fleet/cards", headers={"If-None-Match": cards.headers["ETag"]}
    )
    assert again.status_code == 304 and again.content == b""


async def test_a_factory_that_lost_a_lease_shows_why_it_gets_no_jobs(
    ui: UiApp, admin: Browser
) -> None:
    now = datetime.now(UTC)
    await ui.store.create_factory(
        Factory(
            id="f-frozen",
            engines=["sim"],
            slots=1,
            enrolled_at=now,
            last_heartbeat_at=now,
            lease_lost_at=now,
            lease_lost_reason="lost a run's lease at 12:00:05 UTC: <i>stopped</i> heartbeating",
        )
    )
    r = await admin.http.get("/ui")
    card = r.text.split('data-factory="f-frozen"', 1)[1]
    assert ">unhealthy<" in card
    assert (
        "lost a run&#39;s lease at 12:00:05 UTC: &lt;i&gt;stopped&lt;/i&gt; heartbeating; "
        "no jobs until its next heartbeat"
    ) in card


async def test_a_finished_job_stops_its_polling(ui: UiApp, admin: Browser) -> None:
    job = await ui.submit()
    live = await admin.http.get(f"/ui/jobs/{job['id']}/live")
    assert live.status_code == 200
    await ui.set_job(job["id"], stage=Stage.FAILED, stage_reason="exit code 3")
    live = await admin.http.get(f"/ui/jobs/{job['id']}/live")
    assert live.status_code == 286
    assert "exit code 3" in live.text
    log = await admin.http.get(f"/ui/jobs/{job['id']}/log", params={"epoch": 0, "after": -1})
    assert log.status_code == 286


async def test_an_unknown_job_is_a_not_found_page(admin: Browser) -> None:
    r = await admin.http.get("/ui/jobs/nope")
    assert r.status_code == 404
    assert "job nope not found" in r.text and "<html" in r.text
