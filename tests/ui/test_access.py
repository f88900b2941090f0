"""Sign-in, sessions, CSRF and what a key may see or do on the web control plane."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gigafactory.models import Factory, FactoryStatus, Priority, SlotReservation, Stage
from gigafactory.security import hash_token
from tests.ui.conftest import Browser, UiApp, new_product

pytestmark = pytest.mark.temporal


async def test_sign_in_sets_a_strict_http_only_cookie_and_keeps_the_key_server_side(
    ui: UiApp,
) -> None:
    browser = ui.browser()
    bad = await browser.sign_in("gfk_000000000000_not-a-real-key-at-all")
    assert bad.status_code == 401 and "invalid API key" in bad.text
    r = await browser.http.post("/ui/sign-in", data={"apiKey": ui.admin_key, "next": "/ui/jobs"})
    assert r.status_code == 303 and r.headers["location"] == "/ui/jobs"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    secret = browser.http.cookies["gf_session"]
    assert ui.admin_key not in cookie
    assert (await ui.store.get_session(hash_token(secret))).key_id == "bootstrap"
    # Somewhere else after signing in is refused: only pages of this UI.
    r = await browser.http.post(
        "/ui/sign-in", data={"apiKey": ui.admin_key, "next": "https://evil.test/x"}
    )
    assert r.headers["location"] == "/ui"


async def test_sign_out_ends_the_session_on_the_server(ui: UiApp, admin: Browser) -> None:
    secret = admin.http.cookies["gf_session"]
    r = await admin.post("/ui/sign-out")
    assert r.status_code == 303
    assert (await admin.http.get("/ui")).status_code == 303
    # The old cookie, replayed, is worthless.
    replay = ui.browser()
    replay.http.cookies.set("gf_session", secret, path="/ui")
    assert (await replay.http.get("/ui")).status_code == 303


async def test_posts_without_the_csrf_token_or_from_another_site_are_refused(
    ui: UiApp, admin: Browser
) -> None:
    await ui.store.create_factory(
        Factory(id="f-csrf", engines=["sim"], enrolled_at=datetime.now(UTC))
    )
    no_token = await admin.http.post("/ui/factories/f-csrf/cordon")
    assert no_token.status_code == 403 and "CSRF" in no_token.text
    wrong = await admin.http.post("/ui/factories/f-csrf/cordon", data={"csrf": "0" * 64})
    assert wrong.status_code == 403
    elsewhere = await admin.post(
        "/ui/factories/f-csrf/cordon", headers={"Origin": "https://evil.test"}
    )
    assert elsewhere.status_code == 403 and "another site" in elsewhere.text
    assert (await ui.store.get_factory("f-csrf")).status is FactoryStatus.ACTIVE
    ok = await admin.post("/ui/factories/f-csrf/cordon", headers={"Origin": "http://ui.test"})
    assert ok.status_code == 303 and "cordoned" in ok.headers["location"]
    assert (await ui.store.get_factory("f-csrf")).status is FactoryStatus.CORDONED
    # htmx sends the token as a header.
    header = await admin.http.post(
        "/ui/factories/f-csrf/uncordon", headers={"X-CSRF-Token": admin.csrf}
    )
    assert header.status_code == 303
    # A sign-in posted from another site's page is refused too (login CSRF).
    other = await ui.browser().http.post(
        "/ui/sign-in", data={"apiKey": ui.admin_key}, headers={"Origin": "https://evil.test"}
    )
    assert other.status_code == 403


async def test_a_submitter_sees_only_its_products_and_no_operator_actions(ui: UiApp) -> None:
    other_product = new_product()
    mine = await ui.submit(title="mine")
    theirs = await ui.submit(title="theirs", productId=other_product)
    await ui.store.create_factory(
        Factory(
            id="f-shared",
            engines=["sim"],
            slots=2,
            hostname="secret-host",
            enrolled_at=datetime.now(UTC),
            last_heartbeat_at=datetime.now(UTC),
        )
    )
    for job, product in ((mine, ui.product), (theirs, other_product)):
        await ui.store.reserve_slot(
            "f-shared",
            2,
            SlotReservation(
                job_id=job["id"],
                product_id=product,
                epoch=1,
                priority=Priority.NORMAL,
                reserved_at=datetime.now(UTC),
            ),
        )
    browser = ui.browser()
    assert (await browser.sign_in(await ui.key("submitter"))).status_code == 303

    fleet = (await browser.http.get("/ui")).text
    assert "mine" in fleet and "theirs" not in fleet and theirs["id"] not in fleet
    assert "1 job of other products" in fleet
    assert "secret-host" not in fleet
    for action in ("Cordon", "Revoke", "Uncordon"):
        assert f">{action}</button>" not in fleet
    jobs = (await browser.http.get("/ui/jobs")).text
    assert mine["id"] in jobs and theirs["id"] not in jobs
    assert (await browser.http.get(f"/ui/jobs/{theirs['id']}")).status_code == 404
    await ui.set_job(mine["id"], stage=Stage.SUCCEEDED)
    page = (await browser.http.get(f"/ui/jobs/{mine['id']}")).text
    assert ">Ship</button>" not in page
    budgets = (await browser.http.get("/ui/budgets")).text
    assert "Budgets are for operators" in budgets

    # Forged: the actions it is not offered are refused, and change nothing.
    forged = await browser.post("/ui/factories/f-shared/cordon")
    assert forged.status_code == 403 and "operator" in forged.text
    assert (await ui.store.get_factory("f-shared")).status is FactoryStatus.ACTIVE
    ship = await browser.post(f"/ui/jobs/{mine['id']}/ship")
    assert ship.status_code == 403
    assert (await ui.store.get_job(mine["id"])).stage.value == "succeeded"
    other = await browser.post(f"/ui/jobs/{theirs['id']}/cancel")
    assert other.status_code == 404
    pause = await browser.post(f"/ui/budgets/{ui.product}/pause")
    assert pause.status_code == 403
    weights = await browser.post(f"/ui/routing/{ui.product}", data={"w.load": "3"})
    assert weights.status_code == 403
