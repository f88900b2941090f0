"""The web control plane in a real browser, against the real dev stack.

Sign in -> the fleet map shows both factories -> submit a job from the dialog -> open it ->
it finishes -> ship it -> it reads shipped; pause a product -> its new job waits with the
reason -> resume -> it runs; a parent's DAG shows every node; a submitter sees no other
product's job and no operator button; a bad spec shows the parser's message at the field.
Each scenario leaves a screenshot of its page in docs/ui/ (the README shows them).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from launch.stack import DevStack
from tests.browser.conftest import CHROMIUM_ARGS, SCREENSHOTS, chromium_path

pytestmark = [pytest.mark.temporal, pytest.mark.browser]

LAPTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
FINISH_S = 60_000  # ms: a one-second sim job, routed, run and recorded


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    path = chromium_path()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=path, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


async def open_page(browser: Browser, stack: DevStack, key: str, viewport: Any = None) -> Page:
    """A new browser context signed in with `key`."""
    context = await browser.new_context(viewport=viewport or LAPTOP)
    page = await context.new_page()
    watch_console(page)
    await page.goto(f"{stack.web_url}/jobs")
    await expect(page).to_have_url(f"{stack.web_url}/sign-in?next=%2Fui%2Fjobs")
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{stack.web_url}/jobs")
    return page


# Every control has an accessible name: a <label>, aria-label or its own text.
_UNLABELLED = """() => [...document.querySelectorAll(
    'input:not([type=hidden]), select, textarea, button, a[href], summary')]
  .filter(el => !((el.labels && el.labels.length) || el.getAttribute('aria-label')
                  || el.getAttribute('aria-labelledby') || el.textContent.trim()))
  .map(el => el.outerHTML.slice(0, 120))"""

_CONSOLE_ERRORS: dict[int, list[str]] = {}


def watch_console(page: Page) -> None:
    """Record the page's console errors (a CSP violation, a script error), not the failed
    loads that refusals (404, 422) are meant to be."""
    errors = _CONSOLE_ERRORS.setdefault(id(page), [])
    page.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type == "error" and "Failed to load resource" not in m.text
            else None
        ),
    )


async def shoot(page: Page, name: str) -> None:
    """Check the page (labels, no console error) and keep its screenshot for the docs."""
    assert await page.evaluate(_UNLABELLED) == [], f"unlabelled controls on {name}"
    assert _CONSOLE_ERRORS.get(id(page), []) == [], f"console errors on {name}"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def nav(page: Page, name: str) -> Any:
    """A link of the main navigation."""
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name)


def product() -> str:
    return f"ui{uuid.uuid4().hex[:8]}"


async def submit_sim(api: httpx.AsyncClient, product_id: str, **fields: Any) -> dict[str, Any]:
    body = {"productId": product_id, "engine": "sim", "prompt": "simulate", **fields}
    r = await api.post("/fleet/jobs", json=body)
    assert r.status_code == 201, r.text
    job: dict[str, Any] = r.json()
    return job


async def test_sign_in_submit_finish_and_ship(
    browser: Browser, stack: DevStack, api: httpx.AsyncClient
) -> None:
    context = await browser.new_context(viewport=LAPTOP)
    page = await context.new_page()
    watch_console(page)
    response = await page.goto(stack.web_url)
    assert response is not None
    assert "frame-ancestors 'none'" in (await response.all_headers())["content-security-policy"]
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await shoot(page, "sign-in")
    await page.get_by_label("API key").fill(stack.admin_key)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Fleet")).to_be_visible()

    for factory_id in ("factory-a", "factory-b"):
        card = page.locator(f'[data-factory="{factory_id}"]')
        await expect(card).to_be_visible()
        await expect(card.locator(".health")).to_have_text("healthy", timeout=15_000)
    await expect(page.get_by_role("button", name="Cordon")).to_have_count(2)
    await page.keyboard.press("Tab")  # the first stop is the skip link
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()

    await nav(page, "Jobs").click()
    await page.get_by_role("button", name="Submit a job").click()
    dialog = page.locator("#submit-dialog")
    await expect(dialog).to_be_visible()
    await page.keyboard.press("Escape")  # a dialog closes on Escape
    await expect(dialog).to_be_hidden()
    await page.get_by_role("button", name="Submit a job").click()
    await dialog.get_by_label("Title").fill("Render the release notes")
    await dialog.get_by_label("Product").fill("web")
    await dialog.get_by_label("Engine", exact=True).select_option("sim")
    await dialog.get_by_label("Prompt").fill("Write the release notes <for> 1.0")
    await dialog.get_by_label("Engine parameters (JSON)").fill(
        '{"durationS": 1.5, "costUsd": 0.02}'
    )
    await dialog.get_by_role("button", name="Submit", exact=True).click()

    await page.wait_for_url(re.compile(r".*/ui/jobs/[^/?]+$"))
    await expect(page.get_by_role("heading", name="Render the release notes")).to_be_visible()
    stage = page.locator("#job-stage .stage")
    await expect(stage).to_have_text("succeeded", timeout=FINISH_S)
    await expect(page.locator("#runs-title")).to_be_visible()
    await expect(page.locator("table").filter(has_text="Epoch")).to_contain_text("succeeded")
    await expect(page.get_by_role("link", name="agent.log")).to_be_visible(timeout=15_000)
    await expect(page.locator("#log-text")).to_contain_text("GF-COST")
    await expect(page.get_by_role("link", name="Workflow in Temporal UI")).to_have_attribute(
        "href", f"{stack.ui_url}/namespaces/default/workflows/job-web-" + page.url.rsplit("/", 1)[1]
    )
    await shoot(page, "job")

    await page.get_by_role("button", name="Ship").click()
    confirm = page.locator("#ship-dialog")
    await expect(confirm).to_be_visible()
    await confirm.get_by_label("Note (optional)").fill("released")
    await confirm.get_by_role("button", name="Ship").click()
    await expect(page.locator(".alert.ok")).to_have_text("shipped")
    await expect(stage).to_have_text("shipped")
    await expect(page.locator(".timeline")).to_contain_text("released")

    await nav(page, "Jobs").click()
    await expect(page.locator("table.jobs")).to_contain_text("Render the release notes")
    await shoot(page, "jobs")
    # A long job shows on the fleet map while it runs; then it is cancelled from its page.
    r = await api.post(
        "/fleet/jobs",
        json={
            "productId": "web",
            "engine": "sim",
            "title": "Migrate the <billing> tables",
            "prompt": "migrate",
            "priority": "high",
            "params": {"durationS": 120, "costUsd": 0.5},
        },
    )
    assert r.status_code == 201, r.text
    long_job = r.json()["id"]
    await nav(page, "Fleet").click()
    running = page.locator(".running").get_by_role("link", name="Migrate the <billing> tables")
    await expect(running).to_be_visible(timeout=30_000)
    await expect(page.locator(".summary")).to_contain_text("slots 1 of 4 in use")
    await shoot(page, "fleet")
    await page.set_viewport_size(PHONE)
    await shoot(page, "fleet-phone")
    await page.set_viewport_size(LAPTOP)
    await running.click()
    await page.wait_for_url(f"**/ui/jobs/{long_job}")
    await expect(page.locator("#job-stage .stage")).to_have_text("running")
    await expect(page.locator("#log-text")).to_contain_text("GF-PROGRESS", timeout=15_000)
    await page.get_by_role("button", name="Cancel job").click()
    cancel = page.locator("#cancel-dialog")
    await cancel.get_by_label("Reason (optional)").fill("not today")
    await cancel.get_by_role("button", name="Cancel job").click()
    await expect(page.locator(".alert.ok")).to_have_text("cancel requested")
    await expect(page.locator("#job-stage .stage")).to_have_text("cancelled", timeout=30_000)
    await expect(page.locator(".timeline")).to_contain_text("not today")
    await context.close()


async def test_a_bad_spec_shows_the_parsers_message_at_the_field(
    browser: Browser, stack: DevStack
) -> None:
    page = await open_page(browser, stack, stack.admin_key)
    await page.get_by_role("button", name="Submit a job").click()
    dialog = page.locator("#submit-dialog")
    await dialog.get_by_text("Job-spec file", exact=True).click()
    spec = "| engine | product | timeout |\n|---|---|---|\n| sim | web | forever |\nDo it."
    await dialog.get_by_label("Paste a job spec").fill(spec)
    await dialog.get_by_role("button", name="Submit", exact=True).click()
    error = dialog.locator("#err-spec")
    await expect(error).to_contain_text("column 'timeout': bad duration 'forever'")
    await expect(dialog.get_by_label("Paste a job spec")).to_have_attribute("aria-invalid", "true")
    await expect(dialog).to_be_visible()
    await shoot(page, "submit-error")
    await page.context.close()


async def test_a_paused_budget_holds_a_job_until_resumed(
    browser: Browser, stack: DevStack, api: httpx.AsyncClient
) -> None:
    held = product()
    first = await submit_sim(api, held, title="warm-up", params={"durationS": 0.2})
    page = await open_page(browser, stack, stack.admin_key)
    await page.goto(f"{stack.web_url}/jobs/{first['id']}")
    await expect(page.locator("#job-stage .stage")).to_have_text("succeeded", timeout=FINISH_S)

    await nav(page, "Budgets").click()
    card = page.locator(f'[data-product="{held}"]')
    await card.get_by_role("button", name="Pause").click()
    await card.get_by_label("Reason").fill("release freeze")
    await card.locator("dialog").get_by_role("button", name="Pause").click()
    card = page.locator(f'[data-product="{held}"]')
    await expect(card.locator(".budget-status")).to_have_text("paused")
    await expect(card).to_contain_text("release freeze")
    await shoot(page, "budgets")

    waiting = await submit_sim(api, held, title="held by the budget", params={"durationS": 0.2})
    await page.goto(f"{stack.web_url}/jobs/{waiting['id']}")
    await expect(page.locator("#job-stage .stage")).to_have_text("waiting (budget)", timeout=30_000)
    await expect(page.locator("#job-stage .reason")).to_contain_text("release freeze")

    await nav(page, "Budgets").click()
    card = page.locator(f'[data-product="{held}"]')
    await card.get_by_role("button", name="Resume").click()
    await card.locator("dialog").get_by_role("button", name="Resume").click()
    await expect(page.locator(f'[data-product="{held}"] .budget-status')).to_have_text("active")
    await page.goto(f"{stack.web_url}/jobs/{waiting['id']}")
    await expect(page.locator("#job-stage .stage")).to_have_text("succeeded", timeout=FINISH_S)
    await page.context.close()


async def test_a_parent_shows_every_node_of_its_dag(
    browser: Browser, stack: DevStack, api: httpx.AsyncClient
) -> None:
    children = [
        {"id": "design", "prompt": "design", "params": {"durationS": 0.2, "costUsd": 0.01}},
        {
            "id": "build",
            "prompt": "build",
            "dependsOn": ["design"],
            "params": {"durationS": 0.2, "costUsd": 0.03},
        },
        {"id": "test", "prompt": "test", "dependsOn": ["design"], "params": {"durationS": 0.2}},
        {"id": "ship", "prompt": "ship", "dependsOn": ["build", "test"]},
    ]
    parent = await submit_sim(api, "web", title="Release train", prompt="", children=children)
    page = await open_page(browser, stack, stack.admin_key)
    await page.goto(f"{stack.web_url}/jobs/{parent['id']}")
    nodes = page.locator(".dag [data-node]")
    await expect(nodes).to_have_count(5)
    for child in children:
        await expect(page.locator(".dag").get_by_role("link", name=child["id"])).to_be_visible()
    await expect(page.locator("#job-stage .stage")).to_have_text("succeeded", timeout=FINISH_S)
    await expect(page.locator("#dag-title")).to_contain_text("4 of 4 done")
    await shoot(page, "dag")
    await page.context.close()


async def test_a_submitter_sees_only_its_product_and_no_operator_buttons(
    browser: Browser, stack: DevStack, api: httpx.AsyncClient
) -> None:
    mine, theirs = product(), product()
    own = await submit_sim(api, mine, title="my own job", params={"durationS": 0.2})
    other = await submit_sim(api, theirs, title="somebody else's job", params={"durationS": 0.2})
    r = await api.post("/fleet/keys", json={"name": "dev", "role": "submitter", "products": [mine]})
    assert r.status_code == 201, r.text
    page = await open_page(browser, stack, r.json()["key"])
    table = page.locator("#job-rows")
    await expect(table).to_contain_text("my own job")
    await expect(table).not_to_contain_text("somebody else's job")
    await expect(page.locator(f'[data-job="{other["id"]}"]')).to_have_count(0)
    await shoot(page, "jobs-submitter")
    await nav(page, "Fleet").click()
    await expect(page.locator('[data-factory="factory-b"]')).to_be_visible()
    for name in ("Cordon", "Uncordon", "Revoke"):
        await expect(page.get_by_role("button", name=name)).to_have_count(0)
    await page.goto(f"{stack.web_url}/jobs/{own['id']}")
    await expect(page.locator("#job-stage .stage")).to_have_text("succeeded", timeout=FINISH_S)
    await expect(page.get_by_role("button", name="Ship")).to_have_count(0)
    await page.goto(f"{stack.web_url}/jobs/{other['id']}")
    await expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    await page.goto(f"{stack.web_url}/budgets")
    await expect(page.get_by_role("heading", name="Budgets are for operators")).to_be_visible()
    await page.context.close()


async def test_routing_weights_and_a_dry_run(browser: Browser, stack: DevStack) -> None:
    page = await open_page(browser, stack, stack.admin_key)
    await nav(page, "Routing").click()
    await page.get_by_label("Product", exact=True).fill("web")
    await page.get_by_role("button", name="Show").click()
    await page.get_by_label("load", exact=True).fill("2.5")
    await page.get_by_role("button", name="Save routing").click()
    await expect(page.locator(".alert.ok")).to_contain_text("routing of web saved")
    await page.get_by_label("Job spec").fill(
        "| engine | product |\n|---|---|\n| sim | web |\nPlan me."
    )
    await page.get_by_role("button", name="Plan").click()
    await expect(page.locator("#plan")).to_contain_text("It would run on factory-")
    await expect(page.locator("#plan table.breakdown")).to_contain_text("factory-a")
    await shoot(page, "routing")
    await page.context.close()
