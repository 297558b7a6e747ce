"""widget.js in headless Chromium against the real API: renders, escapes, reports events, survives outages.

A publisher page on one loopback origin embeds the widget served by the API (api.app over a
real SQLite database and index, tests/api/widget_fixture.py) on another, the way a real site
would. Chromium is Debian's package (`make browser`), driven by Playwright; every request that
is not for 127.0.0.1 is answered locally, so nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest
import pytest_asyncio

from api.render import initials, safe_http_url, site_mark
from tests.api.conftest import free_port
from tests.api.widget_fixture import (
    HOSTILE_TITLE,
    SECOND_URL,
    SEED_URL,
    STATIC_DIR,
    publisher,
    widget_api,
)

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


def host_page(api_base: str, *, canonical: str = SEED_URL, spacer_px: int = 0,
              container_attrs: str = "") -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Host article</title>
<link rel="canonical" href="{canonical}">
<style>body{{font-family:Georgia,serif;max-width:860px;margin:2em auto}}
ul{{list-style:square}} a{{color:hotpink}}</style></head>
<body><article><h1>Host headline</h1><p id="host-text">{HOST_TEXT}</p></article>
<div id="spacer" style="height:{spacer_px}px"></div>
<div id="related" data-tidings-related {container_attrs}></div>
<footer id="host-footer">Host footer</footer>
<script async src="{api_base}/widget.js"></script></body></html>"""


def asked_urls(page, path: str) -> list[str]:
    """The `url` query of every request the page made to an API `path` (any API origin)."""
    return [parse_qs(urlsplit(u).query).get("url", [""])[0]
            for u in page.api_requests if urlsplit(u).path == path]


def event_posts(page) -> list[str]:
    return [u for u in page.api_requests if urlsplit(u).path == "/v1/events"]


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
    """A fresh page (fresh localStorage, so a new reader); off-loopback requests get a stub.

    `page.api_requests` lists the URLs of the page's /v1/ requests, as the browser sent them.
    """
    widget_api.outage = None
    context = await browser.new_context(viewport={"width": 1100, "height": 800})

    async def keep_local(route):
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            await route.continue_()
        else:
            await route.fulfill(status=200, content_type="text/html", body=STORY_STUB)

    await context.route("**/*", keep_local)
    tab = await context.new_page()
    tab.page_errors = []
    tab.api_requests = []
    tab.on("pageerror", lambda error: tab.page_errors.append(str(error)))
    tab.on("request", lambda request: tab.api_requests.append(request.url)
           if urlsplit(request.url).path.startswith("/v1/") else None)
    try:
        yield tab
    finally:
        await context.close()
        widget_api.outage = None


async def open_with_block(page, url: str):
    await page.goto(url)
    await page.wait_for_selector("[data-tidings-related] .tdg-card")
    return page.locator("[data-tidings-related] .tdg-card")


async def reader_of(page) -> str:
    """The reader id the widget made when it first reported (waits for that report)."""
    await page.wait_for_function("localStorage.getItem('tidings.reader')")
    reader = await page.evaluate("localStorage.getItem('tidings.reader')")
    assert reader and re.fullmatch(r"[0-9a-f]{32}", reader)
    return reader


async def test_block_renders_the_api_answer_cross_origin(page, widget_api, publisher):
    block = await widget_api.block(SEED_URL)
    related = block["related"]
    # The data really has the mix the assertions below are about.
    assert len(related) == 4
    assert any(safe_http_url(c["image_url"]) for c in related)
    assert any(not c["image_url"] for c in related)
    assert "By Priya Shah, Political correspondent" in [c["author"] for c in related]

    cards = await open_with_block(page, publisher.page("plain.html", host_page(widget_api.base_url)))
    assert await cards.locator(".tdg-title").all_inner_texts() == [c["title"] for c in related]
    section = page.locator("section.tdg-block")
    assert await section.get_attribute("aria-label") == "Related stories"
    # The API was asked about the page's canonical URL, once.
    assert asked_urls(page, "/v1/related") == [SEED_URL]
    for n, expected in enumerate(related):
        card = cards.nth(n)
        assert await card.get_attribute("data-story-id") == str(expected["id"])
        # The widget writes the URL as the browser parses it (percent-encoded): same URL.
        href = await card.locator("a.tdg-link").get_attribute("href")
        assert unquote(href) == expected["url"]
        if safe_http_url(expected["image_url"]):
            img = card.locator("img")
            assert await img.get_attribute("alt") == ""
            assert await img.get_attribute("src") == expected["image_url"]
            # The thumbnail (on the publisher's origin) really loaded.
            await img.evaluate(
                "i => i.complete && i.naturalWidth ? 0 : new Promise(r => i.onload = r)")
            assert await img.evaluate("i => i.naturalWidth") == 320
        else:
            assert await card.locator("img").count() == 0
            mark = site_mark(expected["site"] or expected["source"])
            assert await card.locator(".tdg-thumb-empty").inner_text() == mark
        if expected["author"]:
            assert await card.locator(".tdg-avatar").inner_text() == initials(expected["author"])
        else:
            assert await card.locator(".tdg-avatar").count() == 0
    priya = page.locator(".tdg-card", has_text="By Priya Shah")
    assert await priya.locator(".tdg-avatar").inner_text() == "PS"
    assert await page.locator("#tdg-style").count() == 1
    assert await page.locator("#host-text").inner_text() == HOST_TEXT
    assert page.page_errors == []


async def test_hostile_story_renders_as_inert_text(page, widget_api, publisher):
    block = await widget_api.block(SEED_URL)
    hostile_cards = [c for c in block["related"] if c["title"] == HOSTILE_TITLE]
    assert len(hostile_cards) == 1, "the hostile story should rank in the seed's block"
    hostile_card = hostile_cards[0]

    await open_with_block(page, publisher.page("hostile.html", host_page(widget_api.base_url)))
    hostile = page.locator(f'[data-story-id="{hostile_card["id"]}"]')
    assert await hostile.locator(".tdg-title").inner_text() == HOSTILE_TITLE
    assert await hostile.locator(".tdg-snippet").inner_text() == hostile_card["summary"]
    assert await hostile.locator(".tdg-site").inner_text() == hostile_card["site"]
    assert await page.evaluate("window.__pwned") is None
    # No markup from data: no script, img or svg inside the card, no event-handler attributes.
    assert await hostile.locator("script, svg, b, i").count() == 0
    assert await hostile.locator("img").count() == 0  # the javascript: image URL was dropped
    # The story URL tried to leave its attribute: it is one intact, http(s) href.
    links = hostile.locator("a")
    assert await links.count() == 1
    href = await links.get_attribute("href")
    assert unquote(href) == hostile_card["url"] and href.startswith("https://evil.example/")
    attributes = await page.evaluate(
        """() => [...document.querySelectorAll('.tdg-block *')]
               .flatMap(e => [...e.attributes].map(a => [a.name, a.value]))"""
    )
    assert [name for name, _ in attributes if name.startswith("on")] == []
    assert [v for _, v in attributes if v.strip().lower().startswith("javascript:")] == []
    await hostile.locator(".tdg-snippet").click()
    await hostile.locator(".tdg-site").hover()
    assert await page.evaluate("window.__pwned") is None
    assert page.page_errors == []


async def test_lazy_fetch_impression_and_click_events_reach_the_database(
        page, widget_api, publisher):
    url = publisher.page("long.html", host_page(widget_api.base_url, spacer_px=4000))
    await page.goto(url)
    await page.wait_for_load_state("load")
    await asyncio.sleep(0.3)
    assert page.api_requests == []  # far below the fold: not fetched yet, nothing reported

    await page.locator("#related").scroll_into_view_if_needed()
    await page.wait_for_selector(".tdg-card")
    await page.locator("section.tdg-block").scroll_into_view_if_needed()
    shown_ids = [int(i) for i in await page.locator(".tdg-card").evaluate_all(
        "cards => cards.map(c => c.dataset.storyId)")]
    assert len(shown_ids) == 4
    reader = await reader_of(page)
    impressions = await widget_api.stored_events(reader, 4)
    assert sorted(e.story_id for e in impressions) == sorted(shown_ids)
    assert {e.type for e in impressions} == {"impression"}
    assert {e.reader for e in impressions} == {reader}

    first_href = await page.locator(".tdg-card a.tdg-link").first.get_attribute("href")
    async with page.expect_request("**/v1/events") as sent:
        await page.locator(".tdg-card a.tdg-link").first.click()
    beacon = json.loads((await sent.value).post_data)
    assert [(e["type"], e["story_id"], e["reader"]) for e in beacon["events"]] == [
        ("click", str(shown_ids[0]), reader)]
    assert beacon["events"][0]["at"].endswith("Z")
    events = await widget_api.stored_events(reader, 5)
    clicks = [e for e in events if e.type == "click"]
    assert [(c.story_id, c.reader) for c in clicks] == [(shown_ids[0], reader)]
    assert len(events) == 5
    await page.wait_for_url(first_href)  # the link still opened the story


async def test_data_attributes_choose_url_k_and_api(page, widget_api, publisher):
    # Tracking parameters are dropped by the API's canonical form: this is a stored story.
    asked = f"{SECOND_URL}?utm_source=news&utm_medium=email"
    attrs = (f'data-api="{widget_api.base_url}/" data-k="2" data-theme="dark" '
             f'data-url="{asked.replace("&", "&amp;")}"')
    html = host_page(widget_api.base_url, container_attrs=attrs).replace(
        f'<script async src="{widget_api.base_url}/widget.js"></script>', "")
    await page.goto(publisher.page("attrs.html", html))
    # Inlined, the script has no src of its own: only data-api can tell it where the API is.
    await page.add_script_tag(content=(STATIC_DIR / "widget.js").read_text(encoding="utf-8"))
    cards = page.locator(".tdg-card")
    await cards.first.wait_for()
    expected = [c["title"] for c in (await widget_api.block(SECOND_URL, k=2))["related"]]
    assert await cards.locator(".tdg-title").all_inner_texts() == expected
    assert len(expected) == 2
    assert asked_urls(page, "/v1/related") == [asked]
    assert await page.locator("section.tdg-block").get_attribute("data-theme") == "dark"


@pytest.mark.parametrize("outage", ["500", "close", "garbage", "refused"])
async def test_api_outage_leaves_host_page_intact(page, widget_api, publisher, outage):
    api_base = widget_api.base_url
    if outage == "refused":
        api_base = f"http://127.0.0.1:{free_port()}"  # a port nothing listens on
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
    failure = await asyncio.wait_for(settled, timeout=10)
    # A dropped or refused connection fails the request itself; the others answer badly.
    assert bool(failure) == (outage in ("close", "refused")), failure
    await asyncio.sleep(0.3)  # a failed fetch gets time to (not) do anything

    assert asked_urls(page, "/v1/related") == [SEED_URL]  # it did try
    assert await page.locator("[data-tidings-related]").inner_html() == ""
    assert await page.locator("#tdg-style").count() == 0
    assert await page.locator("#host-text").inner_text() == HOST_TEXT
    assert await page.locator("body").inner_html() == before
    assert page.page_errors == []
    assert event_posts(page) == []


async def test_related_url_is_encoded(page, widget_api, publisher):
    tricky = "https://publisher.example/x?y=1&k=99#frag"
    url = publisher.page("encoded.html", host_page(
        widget_api.base_url, container_attrs=f'data-url="{tricky.replace("&", "&amp;")}"'))
    async with page.expect_request("**/v1/related?**") as asked:
        await page.goto(url)
    query = parse_qs(urlsplit((await asked.value).url).query)
    assert query == {"url": [tricky], "k": ["4"]}


async def test_server_fragment_is_inert_and_tracked_by_the_widget(page, widget_api, publisher):
    """GET /v1/widget HTML from the app inside a container: styled, inert, clicks reported."""
    fragment = await widget_api.fragment(SEED_URL)
    html = host_page(widget_api.base_url).replace(
        '<div id="related" data-tidings-related ></div>',
        f'<div id="related" data-tidings-related>{fragment}</div>',
    )
    assert fragment in html
    await page.goto(publisher.page("fragment.html", html))
    await page.wait_for_selector("#tdg-style", state="attached")  # the widget styled it

    related = (await widget_api.block(SEED_URL))["related"]
    titles = page.locator(".tdg-card .tdg-title")
    assert await titles.all_inner_texts() == [c["title"] for c in related]
    assert HOSTILE_TITLE in [c["title"] for c in related]
    assert await page.evaluate("window.__pwned") is None
    assert asked_urls(page, "/v1/related") == []  # already rendered: nothing to fetch
    async with page.expect_request("**/v1/events") as sent:
        await page.locator(".tdg-card a.tdg-link").first.click()
    reader = json.loads((await sent.value).post_data)["events"][0]["reader"]
    # Impressions (the block is on screen) and the click, all for this reader.
    events = await widget_api.stored_events(reader, 5)
    assert [e.story_id for e in events if e.type == "click"] == [related[0]["id"]]
    assert sorted(e.story_id for e in events if e.type == "impression") == sorted(
        c["id"] for c in related)
    assert page.page_errors == []


async def test_demo_page_renders_the_block_for_a_stored_story(page, widget_api):
    """GET /demo?url=… on the app: same-origin widget, the block for that story."""
    related = (await widget_api.block(SECOND_URL))["related"]
    cards = await open_with_block(page, f"{widget_api.base_url}/demo?url={quote(SECOND_URL)}")
    assert await cards.locator(".tdg-title").all_inner_texts() == [c["title"] for c in related]
    assert asked_urls(page, "/v1/related") == [SECOND_URL]
    assert await page.locator("h1").count() == 1  # the demo article is still there
    assert await page.evaluate("window.__pwned") is None
    assert page.page_errors == []
