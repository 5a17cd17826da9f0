"""The dashboard in a real browser: headless Debian Chromium driven by Playwright.

It opens the list, finds the running workflow, clicks through to its timeline, sends the
approval from the page and sees the workflow complete live; a screenshot is kept under the
test's tmp dir and in ``test-artifacts/`` at the repository root.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import shutil

import pytest

import flowcore
from flowcore import activity, workflow
from tests.helpers import assert_eventually

CHROMIUM = pathlib.Path("/usr/bin/chromium")
ARTIFACTS = pathlib.Path(__file__).parent.parent.parent / "test-artifacts"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
TIMEOUT_MS = 15_000


@activity
async def web_browser_reserve(sku: str) -> str:
    return f"res-{sku}"


@workflow
async def web_browser_order(sku: str) -> str:
    reservation = await web_browser_reserve(sku)
    flowcore.set_status("waiting for approval")
    approval = await flowcore.wait_event("approval")
    return f"{reservation} approved by {approval['approver']}"


@workflow
async def web_browser_quick(n: int) -> int:
    return n


@pytest.fixture
def chromium() -> pathlib.Path:
    if not CHROMIUM.exists():
        message = "Debian chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@contextlib.asynccontextmanager
async def browser_page(chromium):
    """A page in headless Debian Chromium; page errors collected in ``page.errors``."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(chromium), args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1200, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            yield page, errors
        finally:
            await browser.close()


async def approve_on_the_page(page, expect) -> None:
    await page.fill("#event-name", "approval")
    await page.fill("#event-payload", '{"approver": "pat"}')
    await page.click("#send")
    await expect(page.locator("#steer-result")).to_have_text("event approval: committed")
    await expect(page.locator('dd[data-field="status"] .status')).to_have_text("completed")
    await expect(page.locator("#live")).to_have_text("finished")
    await expect(page.locator('#journal li[data-kind="workflow_completed"]')).to_have_count(1)
    await expect(page.locator('dd[data-field="output"]')).to_contain_text("approved by pat")
    await expect(page.locator('#timeline .row[data-what="completed"]')).to_have_count(1)
    await expect(page.locator("#send")).to_be_disabled()


async def cancel_on_the_page(page, expect, url: str) -> None:
    await page.goto(url)
    await expect(page.locator("#live")).to_have_text("live")
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.fill("#cancel-reason", "out of stock")
    await page.click("#cancel-button")
    await expect(page.locator('dd[data-field="status"] .status')).to_have_text("canceled")
    rows = page.locator('#timeline .row[data-what="cancel_requested"]')
    await expect(rows).to_have_count(1)


_COUNT_API_CALLS = """() => { var api = flowcore.api; window.inFlight = 0;
  flowcore.api = async function () {
    window.inFlight++;
    try {
      var data = await api.apply(this, arguments);
      if (data && data.stale) { window.staleAnswered = true; }
      return data;
    } finally { window.inFlight--; }
  }; }"""
"""Wraps the page's API calls: ``window.inFlight`` counts those unanswered, and
``window.staleAnswered`` turns true once the page took an answer marked ``stale``."""


class TestDashboard:
    async def test_approve_from_the_timeline(self, web, chromium, tmp_path):
        """List -> running workflow -> timeline -> send approval -> completed, all in the page."""
        from playwright.async_api import expect

        for i in range(2):
            await web.runtime.start(web_browser_quick, i, id=f"quick-{i}")
        hostile = '<img src=x onerror="document.title=1">'
        await web.runtime.start(web_browser_order, hostile, id="order-7")
        await web.runtime.start(web_browser_order, "lamp", id="order-8")
        for i in range(2):
            await web.runtime.result(f"quick-{i}", timeout=10)
        shot = tmp_path / "dashboard-workflow.png"

        async with browser_page(chromium) as (page, errors):
            await page.goto(web.url + "/")
            running = page.locator('#filters button[data-filter="running"]')
            await expect(running).to_have_text("running 2")
            completed = page.locator('#filters button[data-filter="completed"]')
            await expect(completed).to_have_text("completed 2")
            await running.click()
            await expect(page.locator("#workflows tbody tr")).to_have_count(2)
            await page.locator('#workflows tbody tr[data-id="order-7"] a').click()

            await expect(page.locator("#title")).to_have_text("order-7")
            await expect(page.locator('#timeline .row[data-what="wait_event"]')).to_have_count(1)
            activity_row = page.locator('#timeline .row[data-what="activity"]')
            await expect(activity_row).to_have_attribute("data-state", "completed")
            await expect(page.locator("#live")).to_have_text("live")
            # the hostile input is shown as text, never parsed as HTML
            await expect(page.locator("#journal li").first).to_contain_text("<img src=x")
            assert await page.locator("main img").count() == 0

            await approve_on_the_page(page, expect)
            await page.screenshot(path=str(shot), full_page=True)
            assert await page.title() == "flowcore: order-7"  # no injected script ran

            await cancel_on_the_page(page, expect, web.url + "/workflow?id=order-8")
            assert errors == []

        assert shot.stat().st_size > 0
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(shot, ARTIFACTS / shot.name)
        assert await web.runtime.result("order-7", timeout=5) == f"res-{hostile} approved by pat"
        assert (await web.runtime.status("order-8")).status.value == "canceled"

    async def test_sign_in_with_a_token(self, web, chromium):
        """With a token, the browser gets the sign-in form; after it, the list loads."""
        from playwright.async_api import expect

        from flowcore.web import create_app
        from tests.web.conftest import serve

        await web.runtime.start(web_browser_quick, 1, id="signed")
        token = "browser-token-123"  # noqa: S105 - a test token
        app = create_app(web.runtime, token=token)
        async with serve(app) as url, browser_page(chromium) as (page, errors):
            response = await page.goto(url + "/")
            assert response is not None
            assert response.status == 401
            await page.fill("input[type=password]", "wrong")
            await page.click("button")
            await expect(page.locator("input[type=password]")).to_be_visible()
            await page.fill("input[type=password]", token)
            await page.click("button")
            await expect(page.locator('#workflows tbody tr[data-id="signed"]')).to_have_count(1)
            assert errors == []

    async def test_the_sign_in_cookie_is_secure_over_https(self, web, chromium):
        """Signed in on an HTTPS page, the token's cookie is marked Secure (never sent over
        plain HTTP); on a plain HTTP page (loopback) it cannot be, and is not."""
        from playwright.async_api import expect

        from flowcore.web import create_app
        from tests.web.conftest import serve

        token = "browser-token-456"  # noqa: S105 - a test token
        app = create_app(web.runtime, token=token)
        async with serve(app) as url, browser_page(chromium) as (page, errors):

            async def through_https(route):  # the real app, as if behind a TLS proxy
                real = route.request.url.replace("https://flowcore.test", url, 1)
                await route.fulfill(response=await route.fetch(url=real))

            await page.route("https://flowcore.test/**", through_https)
            for origin in ("https://flowcore.test", url):
                await page.goto(origin + "/")
                await page.fill("input[type=password]", token)
                await page.click("button")  # sets the cookie, then reloads: the list loads
                await expect(page.locator("#workflows")).to_be_attached()
            cookies = {c["domain"]: c for c in await page.context.cookies()}
            assert cookies["flowcore.test"]["secure"] is True
            assert cookies["127.0.0.1"]["secure"] is False
            assert errors == []

    async def test_a_late_answer_never_replaces_a_newer_timeline(self, web, chromium):
        """An older timeline answer that arrives after a newer one is not shown.

        Each stream message schedules a timeline refresh; when an earlier one was slow (a long
        history), its stale answer arrived after the final one and put a finished workflow
        back to 'running' on the page until the next commit (for a finished one: for good).
        """
        from playwright.async_api import expect

        await web.runtime.start(web_browser_order, "late", id="order-late")

        async def waiting() -> bool:
            history = await web.runtime.history("order-late")
            return any(e.kind == "event_wait_started" for e in history)

        await assert_eventually(waiting)
        held: list = []
        caught = asyncio.Event()

        async def hold_the_first(route):
            if not held:  # answered by the server now, handed to the page later
                held.append((route, await route.fetch()))
                caught.set()
            else:
                await route.continue_()

        async with browser_page(chromium) as (page, errors):
            await page.goto(web.url + "/workflow?id=order-late")
            await expect(page.locator("#live")).to_have_text("live")
            await page.evaluate(_COUNT_API_CALLS)
            await page.route("**/api/workflows/order-late/timeline", hold_the_first)
            await web.runtime.send_event("order-late", "noise", 1)  # a refresh, held
            async with asyncio.timeout(10):
                await caught.wait()
            await web.runtime.send_event("order-late", "approval", {"approver": "pat"})
            status = page.locator('dd[data-field="status"] .status')
            await expect(status).to_have_text("completed")
            await expect(page.locator("#live")).to_have_text("finished")
            # (polled: the page's CSP forbids the eval that wait_for_function uses)
            await assert_eventually(lambda: page.evaluate("window.inFlight === 1"))  # held one
            route, answer = held[0]
            stale = {**await answer.json(), "stale": True}
            assert stale["status"]["status"] == "running"
            await route.fulfill(response=answer, json=stale)
            await assert_eventually(lambda: page.evaluate("window.staleAnswered === true"))
            await page.evaluate("() => new Promise(resolve => setTimeout(resolve, 0))")
            assert await status.inner_text() == "completed"
            assert errors == []

    async def test_a_late_list_answer_never_replaces_the_filtered_list(self, web, chromium):
        """A list answer for the old filter, arriving after the new filter's, is not shown.

        The list reloads itself every 2 s; one of those reloads still in flight when a filter
        was clicked answered last and filled the table with the unfiltered rows under the
        new filter's button.
        """
        from playwright.async_api import expect

        for i in range(2):
            await web.runtime.start(web_browser_quick, i, id=f"done-{i}")
            await web.runtime.result(f"done-{i}", timeout=10)
        await web.runtime.start(web_browser_order, "open", id="open-1")
        held: list = []
        caught = asyncio.Event()

        async def hold_an_unfiltered_reload(route):
            if not held and "status=" not in route.request.url:
                held.append((route, await route.fetch()))
                caught.set()
            else:
                await route.continue_()

        async with browser_page(chromium) as (page, errors):
            await page.goto(web.url + "/")
            await expect(page.locator("#workflows tbody tr")).to_have_count(3)
            await page.evaluate(_COUNT_API_CALLS)
            await page.route("**/api/workflows?*", hold_an_unfiltered_reload)
            async with asyncio.timeout(10):
                await caught.wait()  # the next reload of the unfiltered list, held
            await page.locator('#filters button[data-filter="completed"]').click()
            rows = page.locator("#workflows tbody tr")
            await expect(rows).to_have_count(2)
            await assert_eventually(lambda: page.evaluate("window.inFlight === 1"))
            route, answer = held[0]
            stale = {**await answer.json(), "stale": True}
            assert len(stale["items"]) == 3
            await route.fulfill(response=answer, json=stale)
            await assert_eventually(lambda: page.evaluate("window.staleAnswered === true"))
            await page.evaluate("() => new Promise(resolve => setTimeout(resolve, 0))")
            assert await rows.count() == 2
            assert errors == []
