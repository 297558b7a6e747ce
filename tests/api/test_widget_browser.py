"""widget.js in headless Chromium: renders, escapes, reports events, and survives API outages.

A publisher page on one loopback origin embeds the widget served by the API on another, the
way a real site would. Chromium is Debian's package (`make browser`), driven by Playwright;
every request that is not for 127.0.0.1 is answered locally, so nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import pytest_asyncio

from api.render import initials, render_block_html, site_mark

try:  # tests/api may or may not become a package; the fixture module sits beside this file
    from tests.api.widget_fixture import (
        HOSTILE_ID,
        HOSTILE_TITLE,
        STATIC_DIR,
        publisher,
        widget_api,
    )
except ImportError:
    from widget_fixture import HOSTILE_ID, HOSTILE_TITLE, STATIC_DIR, publisher, widget_api

__all__ = ["publisher", "widget_api"]  # pytest finds fixtures by name in this module

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
STORY_STUB = "<!doctype html><title>story</title><p>story page</p>"
HOST_TEXT = "The host article stays exactly as it was."

pytestmark = [
    pytest.mark.browser,
    pytest.mark.asyncio(loop_scope="session"),
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (make browser)"
    ),
]


def host_page(api_base: str, *, spacer_px: int = 0, container_attrs: str = "") -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Host article</title>
<link rel="canonical" href="https://publisher.example/world/ceasefire-call">
<style>body{{font-family:Georgia,serif;max-width:860px;margin:2em auto}}
ul{{list-style:square}} a{{color:hotpink}}</style></head>
<body><article><h1>Host headline</h1><p id="host-text">{HOST_TEXT}</p></article>
<div id="spacer" style="height:{spacer_px}px"></div>
<div id="related" data-tidings-related {container_attrs}></div>
<footer id="host-footer">Host footer</footer>
<script async src="{api_base}/widget.js"></script></body></html>"""


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def browser() -> AsyncIterator:
    playwright_api = pytest.importorskip("playwright.async_api")
    async with playwright_api.async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser, widget_api):
    """A fresh page (fresh localStorage); off-loopback requests get a local stub page."""
    widget_api.outage = None
    widget_api.events.clear()
    widget_api.related_requests.clear()
    context = await browser.new_context(viewport={"width": 1100, "height": 800})

    async def keep_local(route):
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            await route.continue_()
        else:
            await route.fulfill(status=200, content_type="text/html", body=STORY_STUB)

    await context.route("**/*", keep_local)
    tab = await context.new_page()
    tab.page_errors = []
    tab.on("pageerror", lambda error: tab.page_errors.append(str(error)))
    try:
        yield tab
    finally:
        await context.close()


async def open_with_block(page, url: str):
    await page.goto(url)
    await page.wait_for_selector("[data-tidings-related] .tdg-card")
    return page.locator("[data-tidings-related] .tdg-card")


async def test_block_renders_expected_titles_cross_origin(page, widget_api, publisher):
    url = publisher.page("plain.html", host_page(widget_api.base_url))
    cards = await open_with_block(page, url)

    expected = [card["title"] for card in widget_api.cards[:4]]
    assert await cards.locator(".tdg-title").all_inner_texts() == expected
    section = page.locator("section.tdg-block")
    assert await section.get_attribute("aria-label") == "Related stories"
    # The API was asked about the page's canonical URL, for the default k of 4.
    assert widget_api.related_requests == ["https://publisher.example/world/ceasefire-call"]
    first = cards.nth(0)
    assert await first.locator("a.tdg-link").get_attribute("href") == widget_api.cards[0]["url"]
    assert await first.locator("img").get_attribute("alt") == ""
    assert await first.locator(".tdg-site").inner_text() == "BBC News"
    assert await first.locator(".tdg-avatar").inner_text() == initials(widget_api.cards[0]["author"])
    # The second author is "By Priya Shah, Political correspondent".
    assert await cards.nth(1).locator(".tdg-avatar").inner_text() == "PS"
    # The fourth story has no image: its thumbnail shows the site's mark instead.
    assert await cards.nth(3).locator("img").count() == 0
    assert await cards.nth(3).locator(".tdg-thumb-empty").inner_text() == site_mark("BBC News")
    assert await page.locator("#tdg-style").count() == 1
    assert await page.locator("#host-text").inner_text() == HOST_TEXT
    assert page.page_errors == []


async def test_hostile_card_renders_as_inert_text(page, widget_api, publisher):
    url = publisher.page("hostile.html", host_page(widget_api.base_url))
    await open_with_block(page, url)
    hostile = page.locator(f'[data-story-id="{HOSTILE_ID}"]')

    assert await hostile.locator(".tdg-title").inner_text() == HOSTILE_TITLE
    assert await page.evaluate("window.__pwned") is None
    # No markup from data: no script, img or svg inside the card, no event-handler attributes.
    assert await hostile.locator("script, svg, b, i").count() == 0
    assert await hostile.locator("img").count() == 0  # javascript: image URL dropped
    assert await hostile.locator("a").count() == 0  # javascript: story URL: no link at all
    handlers = await page.evaluate(
        """() => [...document.querySelectorAll('.tdg-block *')]
               .flatMap(e => [...e.attributes].map(a => a.name))
               .filter(n => n.startsWith('on'))"""
    )
    assert handlers == []
    await hostile.locator(".tdg-title").click()
    await hostile.hover()
    assert await page.evaluate("window.__pwned") is None
    assert page.page_errors == []


async def test_lazy_fetch_impression_and_click_events(page, widget_api, publisher):
    url = publisher.page("long.html", host_page(widget_api.base_url, spacer_px=4000))
    await page.goto(url)
    await page.wait_for_load_state("load")
    await asyncio.sleep(0.3)
    assert widget_api.related_requests == []  # far below the fold: not fetched yet
    assert widget_api.events == []

    await page.locator("#related").scroll_into_view_if_needed()
    await page.wait_for_selector(".tdg-card")
    await page.locator("section.tdg-block").scroll_into_view_if_needed()
    impressions = await widget_api.wait_for_events(4)
    reader = await page.evaluate("localStorage.getItem('tidings.reader')")
    assert re.fullmatch(r"[0-9a-f]{32}", reader)
    shown_ids = [card["id"] for card in widget_api.cards[:4]]
    assert [e["story_id"] for e in impressions] == shown_ids
    assert {e["type"] for e in impressions} == {"impression"}
    assert {e["reader"] for e in impressions} == {reader}

    async with page.expect_request("**/v1/events") as sent:
        await page.locator(".tdg-card a.tdg-link").first.click()
    beacon = json.loads((await sent.value).post_data)
    events = await widget_api.wait_for_events(5)
    clicks = [e for e in events if e["type"] == "click"]
    assert clicks == beacon["events"]
    assert [(c["story_id"], c["reader"]) for c in clicks] == [(shown_ids[0], reader)]
    assert clicks[0]["at"].endswith("Z")
    await page.wait_for_url(widget_api.cards[0]["url"])  # the link still opened the story


async def test_data_attributes_choose_url_k_and_api(page, widget_api, publisher):
    attrs = (f'data-api="{widget_api.base_url}/" data-k="2" data-theme="dark" '
             'data-url="https://publisher.example/a?b=1&amp;c=2"')
    html = host_page(widget_api.base_url, container_attrs=attrs).replace(
        f'<script async src="{widget_api.base_url}/widget.js"></script>', "")
    await page.goto(publisher.page("attrs.html", html))
    # Inlined, the script has no src of its own: only data-api can tell it where the API is.
    await page.add_script_tag(content=(STATIC_DIR / "widget.js").read_text(encoding="utf-8"))
    cards = page.locator(".tdg-card")
    await cards.first.wait_for()
    assert await cards.count() == 2
    assert widget_api.related_requests == ["https://publisher.example/a?b=1&c=2"]
    assert await page.locator("section.tdg-block").get_attribute("data-theme") == "dark"


@pytest.mark.parametrize("outage", ["500", "close", "garbage", "refused"])
async def test_api_outage_leaves_host_page_intact(page, widget_api, publisher, outage):
    api_base = widget_api.base_url
    if outage == "refused":
        api_base = "http://127.0.0.1:9"  # the discard port: nothing listens there
    else:
        widget_api.outage = outage
    url = publisher.page(f"outage-{outage}.html", host_page(
        widget_api.base_url, container_attrs=f'data-api="{api_base}"'))
    settled = asyncio.get_running_loop().create_future()

    def on_done(request):
        if request.url.startswith(f"{api_base}/v1/related?") and not settled.done():
            settled.set_result(request.failure)

    page.on("requestfinished", on_done)
    page.on("requestfailed", on_done)
    await page.goto(url)
    before = await page.locator("body").inner_html()
    await asyncio.wait_for(settled, timeout=10)
    await asyncio.sleep(0.3)  # a failed fetch gets time to (not) do anything

    assert await page.locator("[data-tidings-related]").inner_html() == ""
    assert await page.locator("#tdg-style").count() == 0
    assert await page.locator("#host-text").inner_text() == HOST_TEXT
    assert await page.locator("body").inner_html() == before
    assert page.page_errors == []
    assert widget_api.events == []


async def test_related_url_is_encoded(page, widget_api, publisher):
    tricky = "https://publisher.example/x?y=1&k=99#frag"
    url = publisher.page("encoded.html", host_page(
        widget_api.base_url, container_attrs=f'data-url="{tricky.replace("&", "&amp;")}"'))
    async with page.expect_request("**/v1/related?**") as asked:
        await page.goto(url)
    query = parse_qs(urlsplit((await asked.value).url).query)
    assert query == {"url": [tricky], "k": ["4"]}


async def test_server_fragment_is_inert_and_tracked_by_the_widget(page, widget_api, publisher):
    """GET /v1/widget HTML (api.render) inside a container: styled, inert, clicks reported."""
    fragment = render_block_html({"related": widget_api.cards[:4]})
    html = host_page(widget_api.base_url).replace(
        '<div id="related" data-tidings-related ></div>',
        f'<div id="related" data-tidings-related>{fragment}</div>',
    )
    assert fragment in html
    await page.goto(publisher.page("fragment.html", html))
    await page.wait_for_selector("#tdg-style", state="attached")  # the widget styled it

    titles = page.locator(".tdg-card .tdg-title")
    assert await titles.all_inner_texts() == [card["title"] for card in widget_api.cards[:4]]
    assert await page.evaluate("window.__pwned") is None
    assert widget_api.related_requests == []  # already rendered: nothing to fetch
    await page.locator(".tdg-card a.tdg-link").first.click()
    events = await widget_api.wait_for_events(5)
    assert ("click", widget_api.cards[0]["id"]) in [(e["type"], e["story_id"]) for e in events]
    assert page.page_errors == []
