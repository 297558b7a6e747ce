"""widget.js in headless Chromium against the real API: renders, escapes, reports events, survives outages.

A publisher page on one loopback origin embeds the widget served by the API (api.app over a
real SQLite database and index, tests/api/widget_fixture.py) on another, the way a real site
would. Chromium is Debian's package (`make browser`), driven by Playwright; every request that
is not for 127.0.0.1 is answered locally, so nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urljoin, urlsplit

import httpx
import pytest
import pytest_asyncio
from aiohttp import web

from aggregator.canonical import canonical_url, site_key
from api.pages import declared_address
from api.render import (
    DATE_FORMATS,
    OtherSiteLinks,
    byline_name,
    initials,
    render_block_html,
    safe_http_url,
    site_mark,
    text_dir,
)
from tests.api.conftest import free_port, start_server
from tests.api.widget_fixture import (
    HOSTILE_TITLE,
    LOOPBACK_HOST,
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
# HTML's "valid global date and time string" (and local, without the zone), as <time> takes it.
HTML_DATETIME = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d{1,3})?)?(Z|[+-]\d\d:?\d\d)?")
STORY_STUB = "<!doctype html><title>story</title><p>story page</p>"
HOST_TEXT = "The host article stays exactly as it was."

pytestmark = [
    pytest.mark.browser,
    pytest.mark.asyncio(loop_scope="session"),
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (make browser)"
    ),
]


NO_CONSTRUCTABLE_SHEETS = """delete Document.prototype.adoptedStyleSheets;
    delete ShadowRoot.prototype.adoptedStyleSheets;"""

HOST_CSS = """body{font-family:Georgia,serif;max-width:860px;margin:2em auto}
ul{list-style:square} a{color:hotpink}"""
# Rules a real theme might carry that used to win inside the block: link and list styling,
# headings, hidden <time>s, inherited text properties, images forced to a size.
HOSTILE_CSS = """.entry-content a{text-decoration:underline;color:hotpink}
.entry-content ul li::before{content:"► "}
.entry-content h2{font-size:34px}
time{display:none}
.entry-content{letter-spacing:3px;text-transform:uppercase;text-indent:40px;white-space:pre}
.entry-content img{width:400px!important;height:50px!important}
span{font-style:italic}"""


def host_page(api_base: str, *, canonical: str = SEED_URL, spacer_px: int = 0,
              container_attrs: str = "", head: str = f"<style>{HOST_CSS}</style>",
              html_attrs: str = 'lang="en"', scripts: list[str] | None = None) -> str:
    """A publisher's article with a widget container; `head` replaces its stylesheet, `scripts`
    its one async widget.js tag. No inline style when `head` has none (for CSP pages). Its
    #host-h2 happens to use a widget class name, which the widget's CSS must not restyle."""
    scripts = [f"{api_base}/widget.js"] if scripts is None else scripts
    tags = "".join(f'<script async src="{src}"></script>' for src in scripts)
    spacer = f'<div id="spacer" style="height:{spacer_px}px"></div>' if spacer_px else ""
    return f"""<!doctype html>
<html {html_attrs}><head><meta charset="utf-8"><title>Host article</title>
<link rel="canonical" href="{canonical}">
{head}</head>
<body><main class="entry-content"><article><h1>Host headline</h1><p id="host-text">{HOST_TEXT}</p>
<h2 class="tdg-heading" id="host-h2">More from the host</h2></article>
{spacer}
<div id="related" data-tidings-related {container_attrs}></div></main>
<footer id="host-footer">Host footer</footer>
{tags}</body></html>"""


# Where the block went, read from the container: its shadow root (mode, adopted sheets,
# <style> elements) and what the page itself got (light DOM, <style id=tdg-style>, sheets).
MOUNTING_JS = """c => ({
    shadow: c.shadowRoot ? c.shadowRoot.mode : null,
    adopted: c.shadowRoot && 'adoptedStyleSheets' in c.shadowRoot
        ? c.shadowRoot.adoptedStyleSheets.length : 0,
    shadowStyles: c.shadowRoot ? c.shadowRoot.querySelectorAll('style').length : 0,
    pageStyles: document.querySelectorAll('#tdg-style').length,
    pageSheets: 'adoptedStyleSheets' in document ? document.adoptedStyleSheets.length : 0,
    light: c.innerHTML})"""
IN_SHADOW = {"shadow": "open", "adopted": 1, "shadowStyles": 0, "pageStyles": 0,
             "pageSheets": 0, "light": ""}

# Sizes that only the widget's CSS gives: the thumbnail fills its 16:9 box (unstyled, an image
# shows at its natural 320 px), the screen-reader byline is 1 px.
LAYOUT_JS = """c => {
    const root = c.shadowRoot || c, box = s => root.querySelector(s).getBoundingClientRect();
    const img = box('.tdg-thumb img'), thumb = box('.tdg-thumb'), sr = box('.tdg-sr');
    return {img: [img.width, img.height], thumb: [thumb.width, thumb.height],
            sr: [sr.width, sr.height]};
}"""


def assert_styled(layout: dict) -> None:
    width, height = layout["thumb"]
    assert 100 < width < 320 and abs(height - width * 9 / 16) < 1.5, layout
    assert layout["img"] == layout["thumb"]
    assert layout["sr"] == [1, 1]


async def settle(page) -> None:
    """Two frames (IntersectionObserver callbacks have run by then), then a moment for any
    request they started to show up."""
    await page.evaluate(
        "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    await asyncio.sleep(0.2)


def asked_queries(page, path: str) -> list[dict[str, list[str]]]:
    """The query of every request the page made to an API `path` (any API origin), parsed."""
    return [parse_qs(urlsplit(u).query) for u in page.api_requests if urlsplit(u).path == path]


def asked_urls(page, path: str) -> list[str]:
    """The `url` query of every request the page made to an API `path` (any API origin)."""
    return [query.get("url", [""])[0] for query in asked_queries(page, path)]


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


async def watch_csp(page) -> list[str]:
    """Collect the page's CSP violations: its securitypolicyviolation events in
    window.__violations, and Chromium's console reports ("Refused to …", "… violates the
    following Content Security Policy directive") in the list returned."""
    await page.add_init_script("""window.__violations = [];
        document.addEventListener('securitypolicyviolation',
            e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI), true);""")
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text)
            if "Refused to" in m.text or "Content Security Policy" in m.text else None)
    return refused


async def open_with_block(page, url: str):
    await page.goto(url)
    await page.wait_for_selector("[data-tidings-related] .tdg-card")
    return page.locator("[data-tidings-related] .tdg-card")


async def answer_related(page, api: str, cards: list[dict]) -> None:
    """The API at `api` answers every related request with `cards` and takes every event
    report, for blocks of made-up stories (other scripts, other lengths)."""
    cors = {"Access-Control-Allow-Origin": "*"}

    async def related(route):
        await route.fulfill(status=200, headers=cors, content_type="application/json",
                            body=json.dumps({"related": cards}))

    async def events(route):
        await route.fulfill(status=202, headers=cors, body="")

    await page.route(f"{api}/v1/related?*", related)
    await page.route(f"{api}/v1/events", events)


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
    assert "***" in [c["author"] for c in related]  # no letters: said, but no empty avatar

    thumbs = []
    page.on("request", lambda r: thumbs.append(r) if "/thumb-" in r.url else None)
    cards = await open_with_block(page, publisher.page("plain.html", host_page(widget_api.base_url)))
    assert await cards.locator(".tdg-title").all_inner_texts() == [c["title"] for c in related]
    section = page.locator("section.tdg-block")
    assert await section.locator("h2").text_content() == "Related stories"
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
            # Images are hotlinked from news sites: no Referer, so the reader's page is not
            # told to them and hotlink protection (which lets an empty Referer through) passes.
            assert await img.get_attribute("referrerpolicy") == "no-referrer"
        else:
            assert await card.locator("img").count() == 0
            mark = site_mark(expected["site"] or expected["source"])
            assert await card.locator(".tdg-thumb-empty").inner_text() == mark
        if initials(expected["author"]):
            assert await card.locator(".tdg-avatar").inner_text() == initials(expected["author"])
        else:
            assert await card.locator(".tdg-avatar").count() == 0
        # The API's timestamps carry microseconds, which a <time datetime> may not (HTML: at
        # most three digits of a second).
        assert HTML_DATETIME.fullmatch(await card.locator("time").get_attribute("datetime"))
    assert thumbs and ["referer" in await r.all_headers() for r in thumbs] == [False] * len(thumbs)
    priya = page.locator(".tdg-card", has_text="By Priya Shah")
    assert await priya.locator(".tdg-avatar").inner_text() == "PS"
    # Its stored byline already says "By": read out once, not "By By Priya Shah".
    assert await priya.locator(".tdg-sr").text_content() == "By Priya Shah, Political correspondent"
    alex = page.locator(".tdg-card", has_text="Alex Morgan")
    assert await alex.locator(".tdg-sr").text_content() == "By Alex Morgan"
    # In the container's open shadow root, styled by one adopted sheet: nothing added to the
    # page's own DOM or styles.
    assert await page.locator("#related").evaluate(MOUNTING_JS) == IN_SHADOW
    assert await page.locator("#host-text").inner_text() == HOST_TEXT
    assert page.page_errors == []


async def test_hostile_story_renders_as_inert_text(page, widget_api, publisher):
    block = await widget_api.block(SEED_URL)
    hostile_cards = [c for c in block["related"] if c["title"] == HOSTILE_TITLE]
    assert len(hostile_cards) == 1, "the hostile story should rank in the seed's block"
    hostile_card = hostile_cards[0]

    # Two columns: at four, the long hostile site name makes its block drop its snippets
    # (render()), and the snippet is clicked below.
    await page.set_viewport_size({"width": 700, "height": 800})
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
    attributes = await page.locator("#related").evaluate(
        """c => [...(c.shadowRoot || c).querySelectorAll('.tdg-block *')]
               .flatMap(e => [...e.attributes].map(a => [a.name, a.value]))"""
    )
    assert len(attributes) > 20  # the whole block was looked at
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
    # Each names the page the block was under (the URL it was asked for), for the report.
    assert {e.page for e in impressions} == {SEED_URL}

    first_href = await page.locator(".tdg-card a.tdg-link").first.get_attribute("href")
    async with page.expect_request("**/v1/events") as sent:
        await page.locator(".tdg-card a.tdg-link").first.click()
    beacon = json.loads((await sent.value).post_data)
    assert [(e["type"], e["story_id"], e["reader"], e["page"]) for e in beacon["events"]] == [
        ("click", str(shown_ids[0]), reader, SEED_URL)]
    assert "at" not in beacon["events"][0]  # the API's clock dates it, not the reader's
    events = await widget_api.stored_events(reader, 5)
    clicks = [e for e in events if e.type == "click"]
    assert [(c.story_id, c.reader, c.page) for c in clicks] == [(shown_ids[0], reader, SEED_URL)]
    assert len(events) == 5
    await page.wait_for_url(first_href)  # the link still opened the story


async def test_a_reader_whose_clock_is_an_hour_fast_is_still_counted(page, widget_api, publisher):
    """The widget dated its reports by the reader's device clock, and the API refuses an `at`
    more than 5 minutes ahead: every impression and click from a fast clock (not rare on
    phones and office PCs) was a 422 and lost. Reports go at once, so the server's time is
    the better one."""
    from datetime import UTC, datetime, timedelta

    await page.clock.set_system_time(datetime.now(UTC) + timedelta(hours=1))
    await open_with_block(page, publisher.page("fast-clock.html", host_page(widget_api.base_url)))
    reader = await reader_of(page)
    events = await widget_api.stored_events(reader, 4)
    assert [e.type for e in events] == ["impression"] * 4
    assert all(abs(e.at - datetime.now(UTC)) < timedelta(minutes=1) for e in events)


async def test_data_attributes_choose_url_k_and_api(page, widget_api, publisher):
    # Tracking parameters are dropped by the API's canonical form: this is a stored story.
    asked = f"{SECOND_URL}?utm_source=news&utm_medium=email"
    attrs = (f'data-api="{widget_api.base_url}/" data-k="2" data-theme="dark" '
             f'data-url="{asked.replace("&", "&amp;")}"')
    html = host_page(widget_api.base_url, container_attrs=attrs, scripts=[])
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


async def test_data_api_is_read_as_a_link(page, widget_api, publisher):
    """data-api="//tidings.example" (or a path on the page's own origin, behind its proxy) was
    no absolute URL, so it was dropped: an inlined script, with no origin of its own, asked
    nothing and the block never showed."""
    api = urlsplit(widget_api.base_url)
    html = host_page(widget_api.base_url, container_attrs=f'data-api="//{api.netloc}"',
                     scripts=[])
    await page.goto(publisher.page("data-api-relative.html", html))
    await page.add_script_tag(content=(STATIC_DIR / "widget.js").read_text(encoding="utf-8"))
    await page.locator(".tdg-card").first.wait_for()
    assert asked_urls(page, "/v1/related") == [SEED_URL]
    assert {urlsplit(u).netloc for u in page.api_requests} == {api.netloc}
    assert page.page_errors == []


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
    # The placeholder that held the block's room while it loaded is gone: the container's
    # shadow root shows what the container holds (nothing), so it takes no room again.
    assert await page.locator("#related").evaluate(MOUNTING_JS) == IN_SHADOW
    assert await page.locator("#related").evaluate("""c => [c.getBoundingClientRect().height,
        [...c.shadowRoot.children].map(e => e.localName)]""") == [0, ["slot"]]
    assert await page.locator("#host-text").inner_text() == HOST_TEXT
    assert await page.locator("body").inner_html() == before
    assert page.page_errors == []
    assert event_posts(page) == []


async def test_related_url_is_encoded(page, widget_api, publisher):
    # A hashbang is an app's route, which names the story: sent, as the API keeps it.
    tricky = "https://publisher.example/x?y=1&k=99#!/story/1"
    url = publisher.page("encoded.html", host_page(
        widget_api.base_url, container_attrs=f'data-url="{tricky.replace("&", "&amp;")}"'))
    async with page.expect_request("**/v1/related?**") as asked:
        await page.goto(url)
    query = parse_qs(urlsplit((await asked.value).url).query)
    assert query == {"url": [tricky], "k": ["4"]}


async def test_a_fragment_names_the_same_article_and_is_asked_once(page, widget_api, publisher):
    """A canonical link or data-url with a #fragment was sent fragment and all: one article's
    block asked twice, as "#top" and "#comments", each another entry in the API's cache (and
    the browser's) for the same block. A fragment never reaches a server: dropped."""
    html = host_page(widget_api.base_url, canonical=f"{SEED_URL}#top").replace(
        '<div id="related" data-tidings-related ></div>',
        '<div id="related" data-tidings-related></div>'
        f'<div id="comments" data-tidings-related data-url="{SEED_URL}#comments"></div>')
    await page.goto(publisher.page("fragments.html", html))
    for container in ("#related", "#comments"):
        await page.wait_for_selector(f"{container} .tdg-card")
    assert asked_urls(page, "/v1/related") == [SEED_URL]
    reader = await reader_of(page)
    assert {e.page for e in await widget_api.stored_events(reader, 4)} == {SEED_URL}
    assert page.page_errors == []


async def test_without_a_canonical_link_the_readers_own_tokens_stay_in_the_browser(
        page, widget_api, publisher):
    """No data-url and no canonical link: the widget sent location.href whole, with what its
    query held for this reader alone (a reset token, a session id) and the fragment; the API
    logged it and fetched the page with it. The article's own parameters still go."""
    html = host_page(widget_api.base_url).replace(f'<link rel="canonical" href="{SEED_URL}">', "")
    url = publisher.page("no-canonical.html", html)
    async with page.expect_request("**/v1/related?**") as asked:
        await page.goto(f"{url}?id=7&token=s3cret&PHPSESSID=abc&Password=x&author=kim&auth=z"
                        "&utm_source=y#comments")
    query = parse_qs(urlsplit((await asked.value).url).query)
    assert query["url"] == [f"{url}?id=7&author=kim&utm_source=y"]
    # A hashbang route names the story (the API keeps it, as from data-url): it was dropped,
    # and every route of the app asked the same block. Its own query is read alike.
    async with page.expect_request("**/v1/related?**") as asked:
        await page.goto(f"{url}?token=s3cret&id=7#!/story/1?session=abc&ref=home")
    query = parse_qs(urlsplit((await asked.value).url).query)
    assert query["url"] == [f"{url}?id=7#!/story/1?ref=home"]


async def test_a_hashbang_routes_query_is_sent_as_the_page_wrote_it(page, widget_api, publisher):
    """Only its secret-named parameters go: the rest was re-encoded as a form ("/" as %2F,
    ":" as %3A, a bare "print" as "print="), which the API's canonical form keeps as it is
    in a fragment, so the route asked for another URL than the story stored under it."""
    html = host_page(widget_api.base_url).replace(f'<link rel="canonical" href="{SEED_URL}">', "")
    url = publisher.page("route-query.html", html)
    async with page.expect_request("**/v1/related?**") as asked:
        await page.goto(f"{url}#!/search?path=/world/uk&token=s3cret&at=10:30&print")
    query = parse_qs(urlsplit((await asked.value).url).query)
    route = f"{url}#!/search?path=/world/uk&at=10:30&print"
    assert query["url"] == [route] and canonical_url(route) == route


async def test_relative_data_url_is_read_against_the_page(page, widget_api, publisher):
    """Templates write data-url="/news/story"; the widget sent it as is, the API refused it
    (absolute URLs only) and the block never showed."""
    html = host_page(widget_api.base_url, head='<base href="https://www.bbc.co.uk/news/">',
                     container_attrs='data-url="/news/politics-003"')
    cards = await open_with_block(page, publisher.page("relative.html", html))
    assert asked_urls(page, "/v1/related") == [SECOND_URL]
    expected = [c["title"] for c in (await widget_api.block(SECOND_URL))["related"]]
    assert await cards.locator(".tdg-title").all_inner_texts() == expected


async def test_server_fragment_is_inert_and_tracked_by_the_widget(page, widget_api, publisher):
    """GET /v1/widget HTML from the app inside a container: styled, inert, clicks reported."""
    fragment = await widget_api.fragment(SEED_URL)
    html = host_page(widget_api.base_url).replace(
        '<div id="related" data-tidings-related ></div>',
        f'<div id="related" data-tidings-related>{fragment}</div>',
    )
    assert fragment in html
    await page.goto(publisher.page("fragment.html", html))
    # The widget moved it into the container's shadow root and styled it there.
    await page.wait_for_function("document.querySelector('#related').shadowRoot", timeout=5000)
    assert await page.locator("#related").evaluate(MOUNTING_JS) == IN_SHADOW
    assert await page.locator("#related").evaluate(
        "c => c.shadowRoot.querySelectorAll('.tdg-card').length") == 4

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
    assert {e.page for e in events} == {SEED_URL}  # the page's, as for a block built here
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


async def test_plain_demo_page_shows_the_sample_articles_block(page, widget_api):
    """GET /demo as the README says: the block of the sample article, the seed case. Its URL
    is made up, so the API answered a 4xx for it (it could not fetch the page) and the demo
    showed a note instead of the one block it is about. The API now reads the page it serves."""
    demo_url = canonical_url(declared_address((STATIC_DIR / "demo.html").read_text(encoding="utf-8")))
    block = await widget_api.block(demo_url)
    assert block["article"]["title"].startswith("Putin agrees to pause strikes")
    assert block["article"]["summary"].startswith("The Kremlin stopped short")
    cards = await open_with_block(page, f"{widget_api.base_url}/demo")
    assert await cards.locator(".tdg-title").all_inner_texts() == [c["title"] for c in block["related"]]
    assert asked_urls(page, "/v1/related") == [demo_url]
    assert not await page.locator("[data-tidings-related] .fallback").is_visible()
    assert page.page_errors == []


async def test_plain_demo_page_without_a_block_says_why_and_links_one(page, widget_api):
    """With no block for the sample article (no stories yet, or the API failing), the page
    showed a blank space under it. It says why and links the newest stored story's."""
    newest = (await widget_api.stories(limit=1))[0]
    await page.route("**/v1/related?**", lambda route: route.fulfill(
        status=503, content_type="application/json", headers={"Access-Control-Allow-Origin": "*"},
        body=json.dumps({"error": {"code": "unavailable", "message": "outage"}})))
    async with page.expect_response("**/v1/related?**") as answered:
        await page.goto(f"{widget_api.base_url}/demo")
    assert (await answered.value).status == 503
    link = page.locator("[data-tidings-related] #try-link")
    await link.wait_for(state="visible", timeout=5000)
    assert await link.inner_text() == newest["title"]  # as text: it may be the hostile story
    href = await link.evaluate("a => a.href")
    assert parse_qs(urlsplit(href).query) == {"url": [newest["url"]]}
    assert await page.locator("[data-tidings-related] .tdg-card").count() == 0
    assert await page.evaluate("window.__pwned") is None
    assert page.page_errors == []


@pytest.mark.parametrize("constructable_sheets", [True, False], ids=["sheets", "style-element"])
async def test_demo_page_works_under_its_own_csp(page, widget_api, constructable_sheets):
    """/demo had no Content-Security-Policy and could be framed by any site. Its policy names
    what it loads: widget.js and the API here, its inline script (by hash), any site's
    thumbnails, and <style> elements (the widget's own in browsers without constructable
    stylesheets). The block renders styled, the inline script runs, and nothing is refused."""
    newest = (await widget_api.stories(limit=1))[0]
    assert newest["url"] != SEED_URL  # so the inline script has a link to show
    refused = await watch_csp(page)
    if not constructable_sheets:
        await page.add_init_script(NO_CONSTRUCTABLE_SHEETS)
    response = await page.goto(f"{widget_api.base_url}/demo?url={quote(SEED_URL)}")
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'self'" in csp and response.headers["x-frame-options"] == "SAMEORIGIN"
    assert "'unsafe-inline'" not in csp.split("script-src", 1)[1].split(";", 1)[0]

    await page.wait_for_selector("[data-tidings-related] .tdg-card")
    await page.locator(".tdg-thumb img").first.evaluate(
        "i => i.complete && i.naturalWidth ? 0 : new Promise(r => i.onload = r)")
    # The inline script ran: it pointed the fallback's link (hidden once the block renders).
    await page.locator("#try-link[href*='?url=']").wait_for(state="attached", timeout=5000)
    await settle(page)
    assert await page.evaluate("window.__violations") == [] and refused == []
    container = page.locator("[data-tidings-related]")
    assert_styled(await container.evaluate(LAYOUT_JS))
    assert (await container.evaluate(MOUNTING_JS))["shadowStyles"] == (not constructable_sheets)
    assert page.page_errors == []


# Stand-ins for the docs pages' scripts on the CDN, which no machine here reaches: Swagger UI's
# records the configuration /docs's inline script starts it with.
DOCS_SCRIPT_STUB = """window.__docs_script = true;
window.SwaggerUIBundle = function (config) { window.__swagger = config; };
SwaggerUIBundle.presets = {apis: {}}; SwaggerUIBundle.SwaggerUIStandalonePreset = {};"""


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
async def test_api_docs_pages_work_under_their_csp(page, widget_api, path):
    """/docs (Swagger UI) and /redoc had no Content-Security-Policy. Theirs allows the scripts
    FastAPI loads from the CDN and /docs's inline start-up script, but no other package on
    that CDN (it serves all of npm)."""
    cdn = []

    async def serve_cdn(route):
        cdn.append(route.request.url)
        script = route.request.url.endswith(".js")
        await route.fulfill(status=200, body=DOCS_SCRIPT_STUB if script else "",
                            content_type="application/javascript" if script else "text/css")

    await page.route("https://cdn.jsdelivr.net/**", serve_cdn)
    refused = await watch_csp(page)
    response = await page.goto(f"{widget_api.base_url}{path}")
    assert "frame-ancestors 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "SAMEORIGIN"
    assert await page.evaluate("window.__docs_script") is True
    if path == "/docs":
        assert await page.evaluate("window.__swagger.url") == "/openapi.json"
    await settle(page)
    assert await page.evaluate("window.__violations") == [] and refused == []
    assert page.page_errors == []

    other = "https://cdn.jsdelivr.net/npm/other-package@1/index.js"
    blocked = await page.evaluate("""src => new Promise(resolve => {
        document.addEventListener('securitypolicyviolation', e => resolve(e.blockedURI));
        const s = document.createElement('script');
        s.src = src; s.onload = () => resolve('loaded'); document.head.append(s);
    })""", other)
    assert blocked == other and other not in cdn


async def test_strict_csp_page_gets_a_styled_block(page, widget_api, publisher):
    """style-src 'self' without 'unsafe-inline' blocks <style> elements; the widget's
    constructed stylesheet still applies, and the page sees no CSP violation."""
    api = widget_api.base_url
    css = publisher.asset("csp-host.css", HOST_CSS.encode(), "text/css")
    csp = (f"default-src 'none'; script-src {api}; connect-src {api}; img-src 'self'; "
           "style-src 'self'")
    url = publisher.page("csp.html", host_page(api, head=f'<link rel="stylesheet" href="{css}">'),
                         headers={"Content-Security-Policy": csp})
    refused = await watch_csp(page)
    await open_with_block(page, url)
    await page.locator(".tdg-thumb img").first.evaluate(
        "i => i.complete && i.naturalWidth ? 0 : new Promise(r => i.onload = r)")
    await settle(page)

    assert await page.evaluate("window.__violations") == [] and refused == []
    assert await page.locator("#related").evaluate(MOUNTING_JS) == IN_SHADOW
    assert_styled(await page.locator("#related").evaluate(LAYOUT_JS))
    # The host's own stylesheet loaded too (the policy is not simply ignored).
    assert await page.locator("#host-text").evaluate(
        "p => getComputedStyle(p).fontFamily") == "Georgia, serif"
    assert page.page_errors == []


async def test_a_cross_origin_isolated_page_loads_the_script(page, widget_api, publisher):
    """A page with Cross-Origin-Embedder-Policy: require-corp (for SharedArrayBuffer: video
    and WebAssembly tools) loads another origin's script only when it says it may be embedded
    (Cross-Origin-Resource-Policy): the browser refused widget.js, and no block showed."""
    url = publisher.page("coep.html", host_page(widget_api.base_url), headers={
        "Cross-Origin-Embedder-Policy": "require-corp",
        "Cross-Origin-Opener-Policy": "same-origin"})
    await open_with_block(page, url)
    assert await page.evaluate("crossOriginIsolated")  # the policy really is in force
    assert page.page_errors == []


async def test_without_constructable_stylesheets_a_style_element_styles_the_shadow_root(
        page, widget_api, publisher):
    """Browsers without adoptedStyleSheets get a <style> in the shadow root, not in the page."""
    await page.add_init_script(NO_CONSTRUCTABLE_SHEETS)
    await open_with_block(page, publisher.page("no-adopt.html", host_page(widget_api.base_url)))
    assert await page.evaluate("'adoptedStyleSheets' in document") is False
    assert await page.locator("#related").evaluate(MOUNTING_JS) == {
        **IN_SHADOW, "adopted": 0, "shadowStyles": 1}
    assert_styled(await page.locator("#related").evaluate(LAYOUT_JS))
    assert page.page_errors == []


# Computed styles of the block's parts, from the container's shadow root, or its child's (a
# container that may not have one), or the container (where an old widget rendered in the
# light DOM).
STYLES_JS = """c => {
    const root = c.shadowRoot || (c.firstElementChild && c.firstElementChild.shadowRoot) || c;
    const out = {};
    const probes = [
        ['.tdg-block', null, ['fontSize', 'letterSpacing', 'textTransform', 'textIndent',
                              'whiteSpace', 'textAlign', 'color', 'lineHeight']],
        ['.tdg-heading', null, ['fontSize', 'letterSpacing', 'textTransform', 'borderTopWidth']],
        ['.tdg-card', '::before', ['content']],
        ['.tdg-link', null, ['textDecorationLine', 'color']],
        ['.tdg-title', null, ['fontSize', 'fontStyle', 'letterSpacing', 'textTransform',
                              'whiteSpace', 'textIndent']],
        ['.tdg-thumb img', null, ['width', 'height']],
        ['.tdg-time', null, ['display']],
    ];
    for (const [sel, pseudo, props] of probes) {
        const el = root.querySelector(sel);
        const cs = el && getComputedStyle(el, pseudo);
        out[sel + (pseudo || '')] = cs ? props.map(p => p + ': ' + cs[p]) : 'missing';
    }
    return out;
}"""


async def test_host_css_does_not_reach_into_the_block_nor_the_block_css_out(
        page, widget_api, publisher):
    api = widget_api.base_url
    await open_with_block(page, publisher.page("clean.html", host_page(api)))
    clean = await page.locator("#related").evaluate(STYLES_JS)
    assert "missing" not in clean.values(), clean
    assert clean[".tdg-card::before"] == ["content: none"]

    await open_with_block(page, publisher.page("themed.html", host_page(
        api, head=f"<style>{HOST_CSS}\n{HOSTILE_CSS}</style>")))
    # The theme is live on the host page ...
    assert await page.locator("#host-text").evaluate(
        "p => getComputedStyle(p).textTransform") == "uppercase"
    # ... and changes nothing in the block.
    assert await page.locator("#related").evaluate(STYLES_JS) == clean
    # The host's own element with a widget class name keeps the host's look.
    host_h2 = await page.locator("#host-h2").evaluate(
        "h => [getComputedStyle(h).borderTopWidth, getComputedStyle(h).fontSize]")
    assert host_h2 == ["0px", "34px"]
    assert page.page_errors == []


# Containers a theme may well use that cannot host a shadow root: a WordPress sidebar's
# widget <li>, a table cell, a figure.
NO_SHADOW_CONTAINERS = {
    "li": '<ul class="widgets"><li id="related" data-tidings-related></li></ul>',
    "td": '<table><tr><td>Article</td><td id="related" data-tidings-related></td></tr></table>',
    "figure": '<figure id="related" data-tidings-related></figure>',
}


@pytest.mark.parametrize("tag", sorted(NO_SHADOW_CONTAINERS))
async def test_a_container_that_takes_no_shadow_root_is_isolated_too(
        page, widget_api, publisher, tag):
    """Only some elements may host a shadow root: in an <li>, <td> or <figure> the block went
    in the page's own DOM, and the theme's rules restyled it (bullets, underlined pink links,
    hidden times, squashed thumbnails). It now goes in a shadow root on a child of its own."""
    api = widget_api.base_url
    await open_with_block(page, publisher.page("clean-div.html", host_page(api)))
    clean = await page.locator("#related").evaluate(STYLES_JS)
    css = f"{HOST_CSS}\n{HOSTILE_CSS}\nul li{{list-style:disc}} img{{width:100%}}"
    html = host_page(api, head=f"<style>{css}</style>").replace(
        '<div id="related" data-tidings-related ></div>', NO_SHADOW_CONTAINERS[tag])
    await open_with_block(page, publisher.page(f"no-shadow-{tag}.html", html))
    styles = await page.locator("#related").evaluate(STYLES_JS)
    # The thumbnail fills its 16:9 box, however wide the container (the theme's made it 50 px).
    width, height = (float(v.split(": ")[1][:-2]) for v in styles.pop(".tdg-thumb img"))
    assert 100 < width and abs(height - width * 9 / 16) < 1.5
    assert styles == {k: v for k, v in clean.items() if k != ".tdg-thumb img"}
    assert await page.locator("#related .tdg-card").evaluate_all(
        "cards => cards.map(c => getComputedStyle(c).listStyleType)") == ["none"] * 4
    assert await page.locator("#related").evaluate("""c => [c.shadowRoot,
        [...c.children].map(e => [e.localName, e.shadowRoot && e.shadowRoot.mode]),
        document.adoptedStyleSheets.length, document.querySelectorAll('#tdg-style').length]""") \
        == [None, [["div", "open"]], 0, 0]
    assert page.page_errors == []


# A container of each kind holding the page's own content around a server-rendered block:
# a sidebar widget's title and sponsor line, a table cell's label, a figure's caption.
OWN_CONTENT_AROUND = {
    "li": '<ul><li id="related" data-tidings-related><h3 id="before">Read next</h3>{block}'
          '<p id="after">Sponsored by Example</p></li><li id="next">Next widget</li></ul>',
    "td": '<table><tr><td id="next">Article</td><td id="related" data-tidings-related>'
          '<b id="before">Read next</b>{block}<p id="after">Sponsored by Example</p></td></tr></table>',
    "figure": '<figure id="related" data-tidings-related><span id="before">Read next</span>'
              '{block}<figcaption id="after">Stories picked by Tidings</figcaption></figure>',
}


@pytest.mark.parametrize("tag", sorted(OWN_CONTENT_AROUND))
async def test_a_server_block_keeps_its_place_among_the_containers_own_content(
        page, widget_api, publisher, tag):
    """In a container that takes no shadow root the block goes on a child of the widget's own,
    which was appended: a server-rendered block moved below what the page put after it (the
    figure's caption, the sponsor line), which jumped up over it. The child takes the block's
    place; the page's own content is left as it was, and shows beside the block."""
    markup = OWN_CONTENT_AROUND[tag]
    fragment = await widget_api.fragment(SEED_URL)
    html = host_page(widget_api.base_url).replace(
        '<div id="related" data-tidings-related ></div>', markup.format(block=fragment))
    await page.goto(publisher.page(f"own-content-{tag}.html", html))
    await page.wait_for_function("document.querySelector('#related > div')?.shadowRoot")
    layout = await page.locator("#related").evaluate("""c => [...c.children].map(e => {
        const r = e.getBoundingClientRect();
        return [e.id || e.localName, !!e.shadowRoot, Math.round(r.top), Math.round(r.bottom)]; })""")
    assert [row[:2] for row in layout] == [["before", False], ["div", True], ["after", False]]
    # Laid out in that order, one under the other, nothing over another.
    tops, bottoms = [row[2] for row in layout], [row[3] for row in layout]
    assert bottoms[0] <= tops[1] and bottoms[1] > tops[1] + 200 and bottoms[1] <= tops[2]
    for written in re.findall(r'<[a-z0-9]+ id="(?:before|after|next)">.*?</[a-z0-9]+>', markup):
        own = re.search(r'id="(\w+)"', written).group(1)
        assert await page.locator(f"#{own}").evaluate("e => e.outerHTML") == written
    assert page.page_errors == []


# Figures with no server-rendered block, their caption written last (so under the stories):
# alone, and after a line of the page's. The children each should end up with, in order (the
# widget's own child, holding the block, as "div").
FIGURE_CAPTIONS = {
    "alone": ('<figcaption id="after">Stories picked by Tidings</figcaption>', ["div", "after"]),
    "after-a-line": ('<p id="before">Read next</p><figcaption id="after">Stories picked by '
                     'Tidings</figcaption>', ["before", "div", "after"]),
}


@pytest.mark.parametrize("case", sorted(FIGURE_CAPTIONS))
async def test_a_figures_caption_written_last_stays_under_the_block(page, widget_api, publisher,
                                                                    case):
    """A figure's block went at its end, after the figcaption, even where the page wrote the
    caption last: HTML puts a figure's caption first or last, and last it goes under what it
    captions. It showed over the stories, reading as the heading of whatever came after the
    figure. The block now goes before it; the page's own content is left as written."""
    markup, order = FIGURE_CAPTIONS[case]
    html = host_page(widget_api.base_url).replace(
        '<div id="related" data-tidings-related ></div>',
        f'<figure id="related" data-tidings-related>{markup}</figure>')
    await page.goto(publisher.page(f"figure-caption-{case}.html", html))
    await page.wait_for_function(
        "document.querySelector('#related > div')?.shadowRoot?.querySelector('.tdg-card')")
    layout = await page.locator("#related").evaluate("""c => [...c.children].map(e => {
        const r = e.getBoundingClientRect();
        return [e.id || e.localName, Math.round(r.top), Math.round(r.bottom)]; })""")
    assert [row[0] for row in layout] == order
    # Drawn in that order, one under the other, nothing over another; the block a block high.
    for (_, _, bottom), (_, top, _) in zip(layout, layout[1:], strict=False):
        assert bottom <= top, layout
    block = layout[order.index("div")]
    assert block[2] - block[1] > 200
    for written in re.findall(r'<[a-z]+ id="\w+">.*?</[a-z]+>', markup):
        own = re.search(r'id="(\w+)"', written).group(1)
        assert await page.locator(f"#{own}").evaluate("e => e.outerHTML") == written
    assert page.page_errors == []


async def test_text_follows_the_readers_default_font_size(page, widget_api, publisher):
    """The block was a fixed 15px: a reader who set a larger default size in the browser got
    it everywhere but here. The page's font-size:0 (inline-block grids) still cannot reach it."""
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Page.setFontSizes", {"fontSizes": {"standard": 24}})
    html = host_page(widget_api.base_url, head="<style>main{font-size:0}</style>")
    await open_with_block(page, publisher.page("font-size.html", html))
    size = "c => getComputedStyle(c.shadowRoot.querySelector(sel)).fontSize"
    for sel, px in ((".tdg-block", "24px"), (".tdg-title", "24px")):
        assert await page.locator("#related").evaluate(size.replace("sel", repr(sel))) == px
    assert await page.locator("#host-text").evaluate("p => getComputedStyle(p).fontSize") == "0px"


async def test_a_long_heading_wraps_on_a_phone(page, widget_api, publisher):
    """A heading with a word wider than the column (a compound, a brand run together) widened
    the page: a phone reader scrolled sideways under the article."""
    await page.set_viewport_size({"width": 360, "height": 800})
    heading = "Weiterführende" + "Nachrichtenartikelempfehlungen" * 3
    html = host_page(widget_api.base_url, container_attrs=f'data-heading="{heading}"')
    await open_with_block(page, publisher.page("long-heading.html", html))
    assert await page.locator("#related h2").text_content() == heading
    assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")


# A story as long as real ones get, on a site with a long name (a card the widget must not cut).
LONG_CARDS = [
    {"id": 9101, "url": "https://faz.example/1", "site": "Frankfurter Allgemeine Zeitung",
     "title": "Chancellor confirms the windfall tax on energy firms will stay until 2030 as "
              "households face higher bills this winter",
     "summary": "", "source": "faz", "author": "Alexandra Montgomery", "image_url": "",
     "published_at": "2025-03-18T19:00:00Z"},
    {"id": 9102, "url": "https://ar.example/2", "site": "صحيفة الشرق الأوسط اللندنية",
     "title": "الحكومة تعلن خطة جديدة للطاقة تشمل دعم الأسر وخفض الأسعار في فصل الشتاء المقبل "
              "بعد ارتفاع فواتير الكهرباء",
     "summary": "", "source": "ar", "author": "", "image_url": "",
     "published_at": "2025-03-18T19:00:00Z"},
]


def with_block(html: str, fragment: str) -> str:
    """`html` (a host_page) with `fragment`, a server-rendered block, in its container."""
    return html.replace('<div id="related" data-tidings-related ></div>',
                        f'<div id="related" data-tidings-related>{fragment}</div>')


# The block as the script builds it (from the API's answer), and as /v1/widget renders it.
BLOCK_KINDS = ["script", "server"]


async def open_long_cards(page, api: str, publisher, kind: str, name: str, **kwargs):
    """A host page showing LONG_CARDS in the block of `kind` (one of BLOCK_KINDS)."""
    await answer_related(page, api, LONG_CARDS)
    html = host_page(api, **kwargs)
    if kind == "server":
        html = with_block(html, render_block_html({"related": LONG_CARDS}))
    await page.goto(publisher.page(f"{kind}-{name}", html))
    await page.wait_for_function("document.querySelector('#related').shadowRoot?.querySelector("
                                 "'.tdg-card')")


@pytest.mark.parametrize("kind", BLOCK_KINDS)
@pytest.mark.parametrize("html_attrs", ['lang="en"', 'lang="ar" dir="rtl"'])
async def test_titles_and_site_names_are_whole_at_320_px(page, widget_api, publisher, html_attrs,
                                                         kind):
    """WCAG 1.4.10 (reflow): at 320 px wide (a phone, or a 1280 px window zoomed to 400%) the
    title beside its thumbnail was cut to three lines and an ellipsis, the site name beside the
    time to "Frankf…": sighted readers lost what only a screen reader still had. Both are
    whole now, nothing is wider than the page and the time stays on one line; in the server's
    block (/v1/widget) as in the script's."""
    api = widget_api.base_url
    await page.set_viewport_size({"width": 320, "height": 800})
    await open_long_cards(page, api, publisher, kind, "reflow.html", html_attrs=html_attrs)
    cut = await page.locator("#related").evaluate("""c => {
        const root = c.shadowRoot, card = root.querySelector('.tdg-card').getBoundingClientRect();
        return [...root.querySelectorAll('.tdg-title, .tdg-site, .tdg-time')]
            .filter(e => e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1
                         || e.getBoundingClientRect().right > card.right + 1)
            .map(e => [e.className, e.textContent]);
    }""")
    assert cut == []
    # The lines each time is drawn on (bidi runs are rects of their own on one line).
    lines = await page.locator("#related").evaluate("""c => [...c.shadowRoot.querySelectorAll(
        '.tdg-time')].map(t => new Set([...t.getClientRects()].map(r => Math.round(r.top))).size)""")
    assert lines == [1, 1]
    assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    assert page.page_errors == []


@pytest.mark.parametrize("kind", BLOCK_KINDS)
@pytest.mark.parametrize("viewport, container_attrs", [
    (640, ""),  # the grid in a 1280 px window zoomed to 200%
    (1100, 'style="width:320px"'),  # a 320 px sidebar on a desktop page
])
async def test_a_long_site_name_is_whole_in_the_grid(page, widget_api, publisher, kind,
                                                     viewport, container_attrs):
    """In the grid (wider than a phone) a long site name was cut with "…", whole only in its
    title attribute's tooltip, on hover: keyboard and touch readers never saw the rest. It
    wraps onto another line now, as on phones, drawn whole inside its card."""
    api = widget_api.base_url
    await page.set_viewport_size({"width": viewport, "height": 800})
    await open_long_cards(page, api, publisher, kind, f"grid-site-{viewport}.html",
                          container_attrs=container_attrs)
    sites = await page.locator("#related").evaluate("""c => [...c.shadowRoot.querySelectorAll(
        '.tdg-site')].map(s => {
            const card = s.closest('.tdg-card').getBoundingClientRect(), r = document.createRange();
            r.selectNodeContents(s);
            return [s.textContent, s.scrollWidth > s.clientWidth + 1, [...r.getClientRects()]
                .every(t => t.left >= card.left - 1 && t.right <= card.right + 1)];
        })""")
    assert sites == [[c["site"], False, True] for c in LONG_CARDS]
    assert page.page_errors == []


# Sites of the grid's narrowest cards, and the block widths (container px) that give them 190 to
# 250 px cards: 2 + 1 at 410 and 460, 3 a row at 620, 640, 700 and 800.
NARROW_SITES = ["Frankfurter Allgemeine Zeitung", "The Guardian", "Süddeutsche Zeitung"]
NARROW_BLOCKS = [410, 460, 620, 640, 700, 800]
# Per site name: its words drawn on more than one line, its words (part or whole) outside the
# box that clips it (the "…" of a clamp), and the meta row's height in its own lines.
SITE_WORDS_JS = """c => [...c.shadowRoot.querySelectorAll('.tdg-site')].map(s => {
    const meta = s.closest('.tdg-meta'), m = meta.getBoundingClientRect(),
          b = s.getBoundingClientRect(), text = s.firstChild, split = [], hidden = [];
    for (const w of text.data.matchAll(/\\S+/g)) {
        const r = document.createRange();
        r.setStart(text, w.index);
        r.setEnd(text, w.index + w[0].length);
        const rects = [...r.getClientRects()];
        if (new Set(rects.map(x => Math.round(x.top))).size > 1) split.push(w[0]);
        if (rects.some(x => x.bottom > Math.min(m.bottom, b.bottom) + 1)) hidden.push(w[0]);
    }
    const size = parseFloat(getComputedStyle(s).fontSize);
    return [text.data, split, hidden, m.height <= 3 * 1.15 * size + 1];
})"""


@pytest.mark.parametrize("kind", BLOCK_KINDS)
async def test_a_site_name_wraps_between_words_in_the_narrowest_cards(page, widget_api, publisher,
                                                                      kind):
    """Cards of 190-250 px left the name some 60 px beside the time: "Frankfurter" broke to
    "Frankfurt" and "er", and "Frankfurter Allgemeine Zeitung" and "The Guardian" ended in "…"
    after two lines. The name, the dot and the time run as text now, wrapping between words:
    no word is split, none hidden, and the row takes at most three lines."""
    api = widget_api.base_url
    cards = [{**LONG_CARDS[0], "id": 9400 + i, "url": f"https://site{i}.example/1", "site": site}
             for i, site in enumerate(NARROW_SITES)]
    await answer_related(page, api, cards)
    html = host_page(api, container_attrs='data-k="3"')
    if kind == "server":
        html = html.replace("></div></main>", f">{render_block_html({'related': cards})}</div></main>")
    await open_with_block(page, publisher.page(f"narrow-sites-{kind}.html", html))
    measured = {}
    for width in NARROW_BLOCKS:
        await page.locator("#related").evaluate(f"c => c.style.width = '{width}px'")
        card_widths = await page.locator("#related .tdg-card").evaluate_all(
            "cs => cs.map(c => Math.round(c.getBoundingClientRect().width))")
        assert all(190 <= w <= 260 for w in card_widths), (width, card_widths)
        measured[width] = await page.locator("#related").evaluate(SITE_WORDS_JS)
    assert measured == {width: [[site, [], [], True] for site in NARROW_SITES]
                        for width in NARROW_BLOCKS}
    assert page.page_errors == []


# Containers whose width comes from their content: a sidebar of auto width beside the article
# in a flex row and in a grid, a float, an inline-block, a table cell (a light-DOM block).
SHRINK_TO_FIT = {
    "flex": '<div style="display:flex"><p style="flex:1">Article</p><aside>{box}</aside></div>',
    "grid": '<div style="display:grid;grid-template-columns:1fr auto"><p>Article</p>{box}</div>',
    "float": '<div style="float:right">{box}</div><p>Article</p><div style="clear:both"></div>',
    "inline-block": '<div style="display:inline-block">{box}</div>',
    "table-cell": "<table><tr><td>Article</td><td>{box}</td></tr></table>",
}


async def test_a_sidebar_of_auto_width_gets_a_sidebar_wide_block(page, widget_api, publisher):
    """The block is a size container (for the 2 + 2 rule): where a container's width comes from
    its content, it was 0 px wide, the heading a letter a line and the stories spilling out
    over the page. There it is a usual sidebar's 300 px."""
    boxes = "".join(layout.format(box=f'<div id="{name}" data-tidings-related data-k="1"></div>')
                    for name, layout in SHRINK_TO_FIT.items())
    html = host_page(widget_api.base_url).replace("<footer", boxes + "<footer")
    await page.goto(publisher.page("shrink-to-fit.html", html))
    widths = {}
    for name in SHRINK_TO_FIT:
        await page.locator(f"#{name}").scroll_into_view_if_needed()
        await page.locator(f"#{name} .tdg-card").wait_for()
        widths[name] = await page.locator(f"#{name}").evaluate(
            """c => [c, (c.shadowRoot || c).querySelector('.tdg-block'),
                     (c.shadowRoot || c).querySelector('.tdg-heading')]
                    .map(e => Math.round(e.getBoundingClientRect().width))""")
    # The heading within the 5 px each side that holds the links' focus outlines.
    assert widths == {name: [300, 300, 290] for name in SHRINK_TO_FIT}
    assert page.page_errors == []


# How many cards each row of the block holds, top to bottom (a row: the cards of one top).
ROWS_JS = """c => { const rows = {};
    for (const card of c.shadowRoot.querySelectorAll('.tdg-card')) {
        const top = Math.round(card.getBoundingClientRect().top);
        rows[top] = (rows[top] || 0) + 1; }
    return Object.keys(rows).sort((a, b) => a - b).map(top => rows[top]); }"""


async def test_four_stories_in_an_article_column_are_two_rows_of_two(page, widget_api, publisher):
    """At article-column widths (600-820px) auto-fill gave the default four stories as three
    and an orphan; wide blocks keep one row, phones one story a row."""
    await page.set_viewport_size({"width": 760, "height": 800})
    await open_with_block(page, publisher.page("column.html", host_page(widget_api.base_url)))
    for width, rows in ((760, [2, 2]), (1100, [4]), (400, [1, 1, 1, 1])):
        await page.set_viewport_size({"width": width, "height": 800})
        assert await page.locator("#related").evaluate(ROWS_JS) == rows, width


# Made-up stories, as many as the largest block below shows.
GRID_CARDS = [{"id": 9200 + i, "url": f"https://news.example/{i}", "site": "News Example",
               "title": f"Story number {i} of the block", "summary": "A short summary.",
               "source": "news", "author": "", "image_url": "",
               "published_at": "2025-03-18T19:00:00Z"} for i in range(6)]
# Rows of 4, 5 and 6 stories by the block's width (its container's, in px) on a desktop:
# a sidebar's one story a row; in an article column no story alone on the last row (auto-fill
# gave 5 as 4 + 1 and 6 as 4 + 2 or 5 + 1 from 830 px); a block wide enough for all, one row.
# (Between 410 and 620 px five are still 2 + 2 + 1: three cards there would be under 190 px.)
GRID_ROWS = {
    300: {4: [1] * 4, 5: [1] * 5, 6: [1] * 6},
    640: {4: [2, 2], 5: [3, 2], 6: [3, 3]},
    800: {4: [2, 2], 5: [3, 2], 6: [3, 3]},
    980: {4: [4], 5: [3, 2], 6: [3, 3]},
    1100: {4: [4], 5: [5], 6: [3, 3]},
    1280: {4: [4], 5: [5], 6: [6]},
}


@pytest.mark.parametrize("kind", BLOCK_KINDS)
async def test_five_and_six_stories_leave_no_story_alone_on_the_last_row(
        page, widget_api, publisher, kind):
    """Five stories (a common block size) in an article column where four fit a row showed
    4 + 1, six 4 + 2 or 5 + 1: they go 3 + 2 and 3 + 3. The 2 + 2 of four stays, a sidebar
    and a phone keep one story a row; the server's block (/v1/widget) is laid out the same."""
    api = widget_api.base_url
    measured: dict[int, dict[int, list[int]]] = {width: {} for width in GRID_ROWS}
    phone: dict[int, list[int]] = {}
    for k in (4, 5, 6):
        await page.set_viewport_size({"width": 1400, "height": 900})
        await answer_related(page, api, GRID_CARDS[:k])
        html = host_page(api, head="<style>body{margin:0}</style>", container_attrs=f'data-k="{k}"')
        if kind == "server":
            html = html.replace("></div></main>",
                                f">{render_block_html({'related': GRID_CARDS[:k]})}</div></main>")
        await open_with_block(page, publisher.page(f"grid-{kind}-{k}.html", html))
        for width in GRID_ROWS:
            await page.locator("#related").evaluate(f"c => c.style.width = '{width}px'")
            measured[width][k] = await page.locator("#related").evaluate(ROWS_JS)
        await page.locator("#related").evaluate("c => c.style.width = ''")
        await page.set_viewport_size({"width": 400, "height": 800})
        phone[k] = await page.locator("#related").evaluate(ROWS_JS)
    assert measured == GRID_ROWS
    assert phone == {k: [1] * k for k in (4, 5, 6)}
    assert page.page_errors == []


@contextlib.asynccontextmanager
async def api_with_max_k(widget_api, page, max_k: int) -> AsyncIterator[str]:
    """The widget's API again on another port, with api.max_k (and default_k) `max_k`: its
    base URL. On leaving, the page's impressions are written before the app goes."""
    from api.app import create_app

    settings = widget_api.svc.settings
    small = dataclasses.replace(widget_api.svc, settings=dataclasses.replace(
        settings, api=dataclasses.replace(settings.api, max_k=max_k, default_k=max_k)))
    app = create_app(small)
    port = free_port()
    server, task = await start_server(app, port)
    try:
        yield f"http://127.0.0.1:{port}"
        await settle(page)
        await app.state.events.settle()
    finally:
        server.should_exit = True
        await task


async def test_an_api_allowing_fewer_stories_than_the_default_still_shows_a_block(
        page, widget_api, publisher):
    """widget.js asked for its default 4 stories whatever the API allowed: with api.max_k = 3
    every block was a 422, and the widgets on every article showed nothing. The API serves the
    script asking for min(4, max_k)."""
    async with api_with_max_k(widget_api, page, 3) as base:
        cards = await open_with_block(page, publisher.page("max-k-3.html", host_page(base)))
        assert await cards.count() == 3
        asked = asked_queries(page, "/v1/related")
        assert [(q["url"], q["k"]) for q in asked] == [([SEED_URL], ["3"])]
        assert page.page_errors == []


async def test_data_k_is_a_whole_number_and_at_most_what_the_api_gives(page, widget_api, publisher):
    """data-k was read by parseInt: "1e3" asked for 1 story and "2.5" for 2, and a number
    above api.max_k (3 here) was a 422 and no block. A whole number in digits is read, at
    most what the API gives; anything else is unset, as a blank one is."""
    ks = ["1e3", "2.5", "10", " 2 ", "0"]
    boxes = "".join(f'<div id="k{n}" data-tidings-related data-k="{k}"></div>'
                    for n, k in enumerate(ks))
    async with api_with_max_k(widget_api, page, 3) as base:
        html = host_page(base).replace("<footer", boxes + "<footer")
        await page.goto(publisher.page("data-k.html", html))
        shown = []
        for n in range(len(ks)):
            await page.locator(f"#k{n}").scroll_into_view_if_needed()
            cards = page.locator(f"#k{n} .tdg-card")
            await cards.first.wait_for()
            shown.append(await cards.count())
        assert shown == [3, 3, 3, 2, 1]
        asked = sorted(q["k"][0] for q in asked_queries(page, "/v1/related"))
        assert asked == ["1", "2", "3"]  # each request once, and none refused
        assert page.page_errors == []


@pytest.mark.parametrize("lang, when", [
    ("fr", r"maintenant|il y a \d+ (minutes?|heures?)"),
    ("en_GB", r"now|\d+ minutes? ago|\d+ hours? ago"),  # not a BCP 47 tag: the reader's own
])
async def test_times_are_words_in_the_pages_language(page, widget_api, publisher, lang, when):
    """"13m ago" was read "13 metres ago" by screen readers, and was English on every page."""
    html = host_page(widget_api.base_url, html_attrs=f'lang="{lang}"')
    cards = await open_with_block(page, publisher.page(f"lang-{lang}.html", html))
    times = await cards.locator("time").all_inner_texts()
    assert times and all(re.fullmatch(when, t) for t in times), times


async def test_block_in_its_shadow_root_keeps_its_accessibility(page, widget_api, publisher):
    related = (await widget_api.block(SEED_URL))["related"]
    await open_with_block(page, publisher.page("a11y.html", host_page(widget_api.base_url)))
    region = page.get_by_role("region", name="Related stories")
    assert await region.count() == 1
    assert await region.get_by_role("heading", level=2, name="Related stories").count() == 1
    assert await region.get_by_role("list").get_by_role("listitem").count() == len(related)
    # Each link is named by its title alone (thumbnails are alt="" or aria-hidden).
    links = region.get_by_role("link")
    assert await links.count() == len(related)
    for n, card in enumerate(related):
        assert await links.nth(n).evaluate(
            "a => a.querySelector('.tdg-title').textContent") == card["title"]
        assert await region.get_by_role("link", name=card["title"], exact=True).count() == 1
    # The byline is read out but not shown.
    snapshot = await region.aria_snapshot()
    assert "By Priya Shah, Political correspondent" in snapshot
    byline = region.get_by_text("By Priya Shah, Political correspondent")
    box = await byline.bounding_box()
    assert box["width"] <= 1 and box["height"] <= 1
    # The keyboard reaches the first story (the host page has nothing focusable before it),
    # and the focused link shows the widget's outline.
    await page.keyboard.press("Tab")
    focused = await page.locator("#related").evaluate("""c => {
        const a = (c.shadowRoot || document).activeElement, s = getComputedStyle(a);
        return [a.className, s.outlineStyle, s.outlineWidth];
    }""")
    assert focused == ["tdg-link", "solid", "2px"]


# Pixels of the accent colour (#b3261e) in each 6 px strip around a screenshot of a focused
# link taken 6 px wider each way: where its outline shows, as the reader sees it.
OUTLINE_SIDES_JS = """async png => {
    const img = new Image();
    img.src = 'data:image/png;base64,' + png;
    await img.decode();
    const pen = document.createElement('canvas').getContext('2d', {willReadFrequently: true});
    [pen.canvas.width, pen.canvas.height] = [img.width, img.height];
    pen.drawImage(img, 0, 0);
    const accent = (x, y) => { const [r, g, b] = pen.getImageData(x, y, 1, 1).data;
        return Math.abs(r - 179) + Math.abs(g - 38) + Math.abs(b - 30) < 60; };
    const strip = (x0, y0, x1, y1) => { let n = 0;
        for (let x = x0; x < x1; x++) for (let y = y0; y < y1; y++) n += accent(x, y);
        return n; };
    const w = img.width, h = img.height, m = 6;
    return {left: strip(0, m, m, h - m), right: strip(w - m, m, w, h - m),
            top: strip(m, 0, w - m, m), bottom: strip(m, h - m, w - m, h)};
}"""


@pytest.mark.parametrize("clipping", ["#related{overflow:hidden}", "main{overflow:hidden}"])
async def test_the_focus_outline_shows_where_the_page_clips_the_container(
        page, widget_api, publisher, clipping):
    """The outline sits 3 px outside the link, and the first card's link is flush with the
    block's edge: a container or column with overflow:hidden (a common card or sidebar rule)
    cut its left side off, and the last card's right one (WCAG 2.4.7, focus visible)."""
    html = host_page(widget_api.base_url, head=f"<style>{clipping}</style>")
    await open_with_block(page, publisher.page("clipping.html", html))
    await page.keyboard.press("Tab")
    box = await page.locator("#related").evaluate("""c => {
        const a = c.shadowRoot.activeElement, r = a.getBoundingClientRect();
        return a.matches('.tdg-link:focus-visible') && [r.left, r.top, r.width, r.height];
    }""")
    png = await page.screenshot(
        clip={"x": box[0] - 6, "y": box[1] - 6, "width": box[2] + 12, "height": box[3] + 12})
    sides = await page.evaluate(OUTLINE_SIDES_JS, base64.b64encode(png).decode())
    # Each side is a 2 px line the length of the link's (rounded corners less).
    assert min(sides.values()) > 2 * (min(box[2], box[3]) - 30), sides


async def test_script_included_twice_renders_one_block_and_reports_once(
        page, widget_api, publisher):
    api = widget_api.base_url
    html = host_page(api, scripts=[f"{api}/widget.js", f"{api}/widget.js?v=2"])
    await open_with_block(page, publisher.page("twice.html", html))
    reader = await reader_of(page)
    await widget_api.stored_events(reader, 4)
    await settle(page)
    # Both copies really ran.
    assert await page.evaluate(
        "performance.getEntriesByType('resource').filter(e => /widget\\.js/.test(e.name)).length"
    ) == 2
    assert await page.locator("#related section.tdg-block").count() == 1
    assert await page.locator("#related .tdg-card").count() == 4
    assert asked_urls(page, "/v1/related") == [SEED_URL]
    assert len(event_posts(page)) == 1
    events = await widget_api.svc.store.reader_events(reader)
    assert [e.type for e in events] == ["impression"] * 4
    assert page.page_errors == []


async def test_a_second_copy_waits_for_a_server_block_still_streaming_in(page, widget_api):
    """A page that renders the block on its server sends its head (and script tags) first,
    then waits for /v1/widget: both async copies ran meanwhile, and the second one looked at
    once, so the container, its server block still to come, got a placeholder over it and the
    block was asked again and redrawn. The first copy waits for the whole document: so now
    does the second."""
    api = widget_api.base_url
    fragment = (await widget_api.fragment(SEED_URL)).replace("<section", '<section id="server"', 1)
    scripts = "".join(f'<script async src="{api}/widget.js{v}"></script>' for v in ("", "?v=2"))
    head, tail = host_page(api, scripts=[]).replace("</head>", f"{scripts}</head>").split(
        '<div id="related" data-tidings-related ></div>')
    head += "<div id=related data-tidings-related>"
    tail = "</div>" + tail
    fragment_due = asyncio.Event()

    async def article(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/html; charset=utf-8"})
        await response.prepare(request)
        await response.write(head.encode())
        await fragment_due.wait()  # the site's own request for the block
        await response.write((fragment + tail).encode())
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/article.html", article)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        await page.goto(f"http://127.0.0.1:{runner.addresses[0][1]}/article.html", wait_until="commit")
        # Both copies ran while the page waited for its block (the second sees the first's API).
        await page.wait_for_function("""window.TidingsWidget && performance.getEntriesByType(
            'resource').filter(e => /widget\\.js/.test(e.name)).length == 2""")
        await settle(page)
        fragment_due.set()
        await page.wait_for_load_state("load")
        await page.wait_for_function(
            "document.querySelector('#related').shadowRoot?.querySelector('.tdg-card')")
        await settle(page)
        # The server's block itself, moved into the shadow root: none left behind it, hidden.
        assert await page.locator("#related").evaluate("""c => [
            c.shadowRoot.querySelector('section').id, c.children.length]""") == ["server", 0]
        assert asked_urls(page, "/v1/related") == []  # already rendered: nothing to fetch
        assert page.page_errors == []
    finally:
        fragment_due.set()
        await runner.cleanup()


async def test_block_taller_than_the_viewport_reports_one_impression(page, widget_api, publisher):
    """A block more than twice the viewport's height can never be half on screen: it counts
    as seen once it covers half the viewport. All its stories, in one post, once."""
    related = (await widget_api.block(SEED_URL, k=20))["related"]
    assert len(related) == 20
    await page.set_viewport_size({"width": 400, "height": 300})
    # Below the fold but within the lazy-load margin: fetched and rendered, not yet seen.
    url = publisher.page("tall.html", host_page(
        widget_api.base_url, spacer_px=300, container_attrs='data-k="20"'))
    await open_with_block(page, url)
    block = page.locator("section.tdg-block")
    assert (await block.bounding_box())["height"] > 4 * 300
    await settle(page)
    assert event_posts(page) == []

    async with page.expect_request("**/v1/events", timeout=5000) as sent:
        await block.evaluate("b => b.scrollIntoView({block: 'center'})")
    posted = json.loads((await sent.value).post_data)["events"]
    assert {e["type"] for e in posted} == {"impression"}
    assert sorted(e["story_id"] for e in posted) == sorted(str(c["id"]) for c in related)
    # Scrolling on through the block and back up reports nothing more.
    for where in ("end", "start", "center"):
        await block.evaluate(f"b => b.scrollIntoView({{block: '{where}'}})")
        await settle(page)
    assert len(event_posts(page)) == 1
    assert page.page_errors == []


async def test_containers_added_later_render_by_themselves(page, widget_api, publisher):
    html = host_page(widget_api.base_url).replace(
        '<div id="related" data-tidings-related ></div>', "")
    await page.goto(publisher.page("late.html", html))
    await page.wait_for_function("window.TidingsWidget")
    await settle(page)
    assert page.api_requests == []  # no container yet
    # One container inside an added wrapper, one added itself (no TidingsWidget.scan() call).
    await page.evaluate(f"""() => {{
        const wrapper = document.createElement('div');
        wrapper.innerHTML =
            '<p>Next article</p><div id="late" data-tidings-related data-k="3"></div>';
        document.querySelector('main').appendChild(wrapper);
        const direct = document.createElement('div');
        direct.id = 'late-direct';
        direct.setAttribute('data-tidings-related', '');
        direct.setAttribute('data-url', '{SECOND_URL}');
        document.querySelector('main').appendChild(direct);
    }}""")
    await page.locator("#late .tdg-card").first.wait_for(timeout=5000)
    await page.locator("#late-direct .tdg-card").first.wait_for(timeout=5000)
    assert await page.locator("#late .tdg-card").count() == 3
    assert await page.locator("#late-direct .tdg-card").count() == 4
    assert sorted(asked_urls(page, "/v1/related")) == sorted([SEED_URL, SECOND_URL])
    assert page.page_errors == []


# Made-up cards for the right-to-left test, answered instead of the API's: an Arabic story and
# an English one whose title is one very long word.
LONG_WORD = "Pneumonoultramicroscopicsilicovolcanoconiosis" * 4
RTL_CARDS = [
    {"id": 9001, "url": "https://ar.example/news/1", "title": "الحكومة تعلن خطة جديدة للطاقة",
     "summary": "قالت الحكومة إن الخطة ستبدأ العام المقبل.", "site": "أخبار اليوم",
     "source": "ar", "author": "", "image_url": "", "published_at": "2025-03-18T19:00:00Z"},
    {"id": 9002, "url": "https://en.example/news/2", "title": f"{LONG_WORD} explained",
     "summary": "An English summary on an Arabic page.", "site": "en.example",
     "source": "en", "author": "", "image_url": "", "published_at": "2025-03-18T19:00:00Z"},
    # Arabic that opens with a Latin name: its first letter made it left to right.
    {"id": 9003, "url": "https://ar.example/news/3", "title": "Apple تطلق هاتف iPhone الجديد",
     "summary": "", "site": "", "source": "ar", "author": "", "image_url": "",
     "published_at": "2025-03-18T19:00:00Z"},
]


async def test_right_to_left_page_and_mixed_direction_stories(page, widget_api, publisher):
    api = widget_api.base_url
    await answer_related(page, api, RTL_CARDS)
    await page.set_viewport_size({"width": 420, "height": 800})  # the phone layout
    await open_with_block(page, publisher.page("rtl.html", host_page(
        api, html_attrs='lang="ar" dir="rtl"')))
    layout = await page.locator("#related").evaluate("""c => {
        const root = c.shadowRoot || c, cs = (e, p) => getComputedStyle(e, p);
        const card = (n, sel) => root.querySelectorAll('.tdg-card')[n].querySelector(sel);
        const dirs = n => ['.tdg-title', '.tdg-snippet', '.tdg-site'].map(
            s => [card(n, s).getAttribute('dir'), cs(card(n, s)).direction]);
        const title = card(1, '.tdg-title'), meta = card(0, '.tdg-meta');
        return {
            block: [cs(root.querySelector('.tdg-block')).textAlign,
                    cs(root.querySelector('.tdg-block')).direction],
            arabic: dirs(0), english: dirs(1),
            metaPadding: [cs(meta).paddingLeft, parseFloat(cs(meta).paddingRight)],
            titleOverflow: title.scrollWidth - title.clientWidth,
            // Where "Apple" and "الجديد" (its first and last words) are drawn on the line.
            mixed: ['Apple', 'الجديد'].map(word => {
                const text = card(2, '.tdg-title').firstChild, range = document.createRange();
                range.setStart(text, text.data.indexOf(word));
                range.setEnd(text, text.data.indexOf(word) + word.length);
                return range.getBoundingClientRect().left;
            }),
        };
    }""")
    assert layout["block"] == ["start", "rtl"]
    assert layout["arabic"] == [["rtl", "rtl"]] * 3
    assert layout["english"] == [["ltr", "ltr"]] * 3
    # Read from the right: the Arabic sentence starts with its Latin name, not ends with it.
    apple, last = layout["mixed"]
    assert apple > last, layout["mixed"]
    # The meta line lines up under the title beside the thumbnail: on the right, in RTL.
    assert layout["metaPadding"][0] == "0px" and layout["metaPadding"][1] > 112
    # The long word wraps instead of running out of the card (and being clipped).
    assert layout["titleOverflow"] <= 0
    assert LONG_WORD in await page.locator(".tdg-title").nth(1).inner_text()
    assert page.page_errors == []


# Where each card's site, dot and time are drawn ([left, right] each), and the block's direction.
META_PLACES_JS = """c => [...c.shadowRoot.querySelectorAll('.tdg-card')]
    .filter(card => card.querySelector('.tdg-site') && card.querySelector('.tdg-time'))
    .map(card => {
        const at = s => { const r = card.querySelector(s).getBoundingClientRect();
                          return [r.left, r.right]; };
        return {dir: getComputedStyle(card).direction, site: at('.tdg-site'),
                dot: card.querySelector('.tdg-sep') && at('.tdg-sep'), time: at('.tdg-time'),
                said: card.querySelector('.tdg-sep') &&
                      card.querySelector('.tdg-sep').getAttribute('aria-hidden')};
    })"""


async def test_the_dot_sits_between_site_and_time_in_either_direction(page, widget_api, publisher):
    """On a right-to-left page with English times the dot was drawn at the start of the
    (left-to-right) time, so on its far side: "· 18 Mar 2025  أخبار اليوم". It is an element
    of its own now, between the two parts in the block's direction, in the widget's block and
    the server's alike."""
    api = widget_api.base_url
    await answer_related(page, api, RTL_CARDS)
    served = render_block_html({"related": RTL_CARDS})
    html = host_page(api, html_attrs='lang="en" dir="rtl"').replace(
        '<div id="related" data-tidings-related ></div>',
        '<div id="related" data-tidings-related></div>'
        f'<div id="served" data-tidings-related>{served}</div>'
        '<div id="ltr" dir="ltr" data-tidings-related></div>')
    await page.goto(publisher.page("rtl-meta.html", html))
    for container in ("#related", "#served", "#ltr"):
        await page.wait_for_selector(f"{container} .tdg-card")
    for container, direction in (("#related", "rtl"), ("#served", "rtl"), ("#ltr", "ltr")):
        places = await page.locator(container).evaluate(META_PLACES_JS)
        assert len(places) == len(RTL_CARDS), (container, places)  # a site or its source each
        for place in places:
            assert place["dir"] == direction and place["dot"], (container, place)
            first, last = ((place["site"], place["time"]) if direction == "ltr"
                           else (place["time"], place["site"]))
            assert first[1] <= place["dot"][0] and place["dot"][1] <= last[0], (container, place)
            assert place["said"] == "true"
    assert page.page_errors == []


def strings_of(pieces: list[str], max_size: int) -> list[str]:
    """400 strings of up to `max_size` of `pieces` each, the same on every run (hypothesis,
    derandomized): for the widget-equals-server rules, which run in the browser in one call."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    generated: list[str] = []

    @settings(max_examples=400, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(st.sampled_from(pieces), max_size=max_size).map("".join))
    def collect(text: str) -> None:
        generated.append(text)

    collect()
    return generated


async def test_widget_text_direction_equals_the_server_rule(page):
    """The widget and the server fragment lay a story's text out in the same direction: the
    shared cases (tests/api/test_render.py) and generated mixes of Latin, Arabic, Hebrew,
    digits and punctuation."""
    from tests.api.test_render import TEXT_DIR_CASES

    texts = [text for text, _ in TEXT_DIR_CASES] + strings_of(list(" \t,.:«»-2٣۴") + [
        "Apple", "iPhone", "é", "الجديد", "،", "ب", "שלום", "\u05b0", "\ufb1d", "\ufef5", "ω"], 10)
    source = (STATIC_DIR / "widget.js").read_text(encoding="utf-8")
    own_dir = source[source.index("  var RTL_WORD"):source.index("  function randomId")]
    got = await page.evaluate(f"""texts => {{ {own_dir}
        return texts.map(t => {{
            let dir; ownDir({{textContent: t, setAttribute: (_, v) => {{ dir = v; }}}});
            return dir;
        }}); }}""", texts)
    assert [(t, g) for t, g in zip(texts, got, strict=True) if g != text_dir(t)] == []
    assert len(set(got)) == 3 and len(texts) > 300


def widget_initials_js(answer: str = "authors.map(initials)") -> str:
    """widget.js's own byline and site-mark code (from `function text` to the snippet that
    follows it), as a function of a list of bylines (`authors`) giving `answer`: run in the
    browser exactly as written."""
    source = (STATIC_DIR / "widget.js").read_text(encoding="utf-8")
    start = source.index("  function text(value)")
    end = source.index("  function snippet(summary)")
    return f"authors => {{ {source[start:end]}\n return {answer}; }}"


async def test_widget_initials_equal_the_server_rule(page):
    """The widget and the server fragment show the same initials for a byline: the shared
    cases (tests/api/test_render.py), real bylines after cleaning, and generated ones."""
    from tests.api.test_render import INITIALS_CASES

    # Letters in both cases, accents, "and" next to non-ASCII letters, the separators, titles.
    authors = [author for author, _ in INITIALS_CASES] + strings_of(
        list("aAnNdDbByYsSrRjJtThHeE ,;&|·•.-'éÉöÖßØæ2") + [
            " and ", " by ", "Dr. ", " Jr.", " IV", "The ", ", L. A.", "Éand", "ñand", " 作者 "], 12)
    got = await page.evaluate(widget_initials_js(), authors)
    differ = [(a, g, initials(a)) for a, g in zip(authors, got, strict=True) if g != initials(a)]
    assert differ == []
    assert len(authors) > 300


async def test_widget_site_mark_equals_the_server_rule(page):
    """The widget and the server fragment show the same mark for a site without an image:
    "BBC" and "BBC News" showed "B" and "BN", "الجزيرة" (Al Jazeera) "ا"; the shared cases
    (tests/api/test_render.py) and generated ones, hosts, acronyms and articles among them."""
    from tests.api.test_render import SITE_MARK_CASES

    sites = [site for site, _ in SITE_MARK_CASES] + strings_of(
        list("bBcCnNxX2 .-") + ["ال", "اَلْ", "ٱل", "ج", "ه", "ה", "The ", "DER ", "N24", "www.", "Éa"], 8)
    got = await page.evaluate(widget_initials_js("authors.map(siteMark)"), sites)
    assert [(s, g, site_mark(s)) for s, g in zip(sites, got, strict=True) if g != site_mark(s)] == []
    assert len(sites) > 400


async def test_theme_follows_the_host_page_not_the_readers_os(page, widget_api, publisher):
    """A dark-mode reader on a white article got a dark slab (the block followed
    prefers-color-scheme); a dark site got a white one. The theme now comes from the text
    colour the container inherits (an oklch() one too), and an inferred theme lets the page's
    background show through; data-theme still wins and paints its own. A card without a site
    shows no lone "·" before its time, and the dot is not read aloud."""
    card = {"id": 1, "url": "https://a.example/1", "title": "No site", "site": "",
            "published_at": "2024-01-02T03:04:05+00:00"}
    sited = {**card, "id": 2, "title": "With site", "site": "a.example"}
    fragment = render_block_html({"related": [card, sited]})
    box = '<div id="{}" data-tidings-related {}>' + fragment + "</div>"
    html = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>t</title></head>
<body>{box.format("light", "")}{box.format("chosen", 'data-theme="dark"')}
<div style="background:oklch(.2 0 0);color:oklch(.95 .01 250)">{box.format("dark", "")}</div>
<script async src="{widget_api.base_url}/widget.js"></script></body></html>"""
    await page.emulate_media(color_scheme="dark")
    await page.goto(publisher.page("theme.html", html))
    await page.wait_for_function(
        "document.querySelectorAll('[data-tidings-related]')[2].shadowRoot", timeout=5000)
    look = """c => { const b = c.shadowRoot.querySelector('.tdg-block'), cs = getComputedStyle(b);
        const dot = t => { const s = c.shadowRoot.querySelectorAll('.tdg-card')[t]
                                         .querySelector('.tdg-sep');
                           return s && [s.textContent, s.getAttribute('aria-hidden')]; };
        return [b.getAttribute('data-theme'), cs.color, cs.backgroundColor, dot(0), dot(1)]; }"""
    clear, dark_bg, dark_fg, light_fg = "rgba(0, 0, 0, 0)", "rgb(22, 24, 27)", "rgb(236, 238, 241)", \
        "rgb(26, 26, 26)"
    dots = [None, ["·", "true"]]
    assert await page.locator("#light").evaluate(look) == ["light", light_fg, clear, *dots]
    assert await page.locator("#dark").evaluate(look) == ["dark", dark_fg, clear, *dots]
    assert await page.locator("#chosen").evaluate(look) == ["dark", dark_fg, dark_bg, *dots]
    assert page.page_errors == []


@pytest.mark.parametrize("page_style", ["body{background:#fff}", ""], ids=["white", "canvas"])
async def test_a_translucent_box_is_seen_over_the_page_behind_it(page, widget_api, publisher,
                                                                  page_style):
    """The theme came from the first opaque background up from the container: a sidebar box of
    rgba(0,0,0,.85) on a white page was taken for white, and the block's near-black text sat
    on near-black (and a light box on a dark page the other way). The translucent layers are
    now laid over the opaque one, as the browser paints them; over the canvas (white) on a
    page that paints no background of its own, where no opaque one was found and the grey
    text alone took the light theme."""
    fragment = render_block_html({"related": [{"id": 1, "url": "https://a.example/1",
                                               "title": "A story", "site": "a.example"}]})
    box = '<aside style="background:{}"><div id="{}" data-tidings-related>' + fragment + \
        "</div></aside>"
    html = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>t</title>
<style>{page_style} aside{{color:#777}}</style></head><body>
{box.format("rgba(0,0,0,.85)", "dark-on-white")}
<div style="background:#111">{box.format("rgba(255,255,255,.9)", "light-on-black")}</div>
{box.format("rgba(0,0,0,.1)", "tinted-white")}
<script async src="{widget_api.base_url}/widget.js"></script></body></html>"""
    await page.goto(publisher.page(f"translucent-{len(page_style)}.html", html))
    await page.wait_for_function(
        "[...document.querySelectorAll('[data-tidings-related]')].every(c => c.shadowRoot)")
    themes = await page.evaluate("""() => [...document.querySelectorAll('[data-tidings-related]')]
        .map(c => [c.id, c.shadowRoot.querySelector('.tdg-block').dataset.theme])""")
    assert themes == [["dark-on-white", "dark"], ["light-on-black", "light"],
                      ["tinted-white", "light"]]
    assert page.page_errors == []


async def test_a_page_switching_to_dark_after_the_block_showed_gets_a_dark_block(
        page, widget_api, publisher):
    """The inferred theme was read once: a reader who turned on the site's dark mode (a class
    on <html>, the colours changing with a transition) or their OS's (which the page's CSS
    follows) got the block's dark text on the page's now dark background."""
    head = """<style>body{transition:color .15s}
html.dark body{background:#111;color:#eee}
@media (prefers-color-scheme: dark){body.os{background:#000;color:#ddd}}</style>"""
    await page.emulate_media(color_scheme="light")
    await open_with_block(page, publisher.page("dark-toggle.html", host_page(
        widget_api.base_url, head=head)))
    look = """c => { const b = c.shadowRoot.querySelector('.tdg-block');
        return [b.dataset.theme, getComputedStyle(b.querySelector('.tdg-title')).color]; }"""
    light, dark = ["light", "rgb(26, 26, 26)"], ["dark", "rgb(236, 238, 241)"]
    related = page.locator("#related")
    assert await related.evaluate(look) == light

    async def becomes(expected: list[str]) -> None:
        for _ in range(100):
            if await related.evaluate(look) == expected:
                return
            await asyncio.sleep(0.05)
        assert await related.evaluate(look) == expected

    await page.evaluate("document.documentElement.classList.add('dark')")
    await becomes(dark)
    await page.evaluate("document.documentElement.classList.remove('dark')")
    await becomes(light)
    await page.evaluate("document.body.classList.add('os')")
    await becomes(light)
    await page.emulate_media(color_scheme="dark")
    await becomes(dark)
    assert asked_urls(page, "/v1/related") == [SEED_URL]  # themed in place: nothing asked again
    assert page.page_errors == []


# Layout shifts the page sees (Core Web Vitals' CLS counts those without recent input), each
# with the time it happened, from the first paint on.
SHIFTS_INIT = """window.__shifts = [];
new PerformanceObserver(list => list.getEntries().forEach(e => {
    if (!e.hadRecentInput) window.__shifts.push({value: e.value, at: e.startTime});
})).observe({type: 'layout-shift', buffered: true});"""
BELOW = '<section id="below"><p>More host content under the widget.</p>' + "<p>…</p>" * 20


async def slow_related(page, delay: float) -> dict:
    """Holds every /v1/related answer for `delay` s; the returned dict gets, per answer, the
    page's clock and the position of #below just before the answer is let through."""
    released = {"at": [], "below": []}

    async def hold(route):
        await asyncio.sleep(delay)
        released["at"].append(await page.evaluate("performance.now()"))
        released["below"].append(await page.locator("#below").evaluate(
            "b => b.getBoundingClientRect().top"))
        await route.continue_()

    await page.route("**/v1/related?**", hold)
    return released


@pytest.mark.parametrize("scaled", ["", "main{zoom:1.5}",
                                    "main{transform:scale(1.5);transform-origin:0 0}"])
async def test_block_arriving_on_screen_shifts_nothing_below_it(page, widget_api, publisher,
                                                                scaled):
    """The container is on screen with host content under it when a slow answer arrives. The
    block used to push everything below it down on arrival (a shift of 0.19); a placeholder
    now holds its room, and the arrival moves nothing. (The placeholder's own arrival is not
    asserted: it shifts the page as much if the script ran after the first paint, README.)
    In a zoomed or scaled column too: the room was measured on screen and given back in CSS
    pixels, 1.5 times too much there, and the page under the block moved down."""
    await page.add_init_script(SHIFTS_INIT)
    released = await slow_related(page, 1.0)
    html = host_page(widget_api.base_url, head=f"<style>{HOST_CSS}{scaled}</style>").replace(
        "</main>", f"{BELOW}</main>")
    cards = await open_with_block(page, publisher.page("cls.html", html))
    await settle(page)
    assert await cards.count() == 4
    below_after = await page.locator("#below").evaluate("b => b.getBoundingClientRect().top")
    shifts = await page.evaluate("window.__shifts")
    arrival_cls = sum(s["value"] for s in shifts if s["at"] >= released["at"][0])
    assert len(released["at"]) == 1
    assert below_after == released["below"][0], (released, below_after, shifts)
    assert arrival_cls == 0, shifts
    assert page.page_errors == []


async def test_block_arriving_while_the_reader_scrolls_to_it_adds_no_layout_shift(
        page, widget_api, publisher):
    """The usual case: a container under the article is fetched as the reader nears it, and a
    slow answer arrives once it is on screen. That arrival pushed the content under it down:
    the page's only layout shift. The placeholder now takes the room while it is off screen,
    where taking it moves nothing the reader sees, and the page has no layout shift at all."""
    await page.add_init_script(SHIFTS_INIT)
    await slow_related(page, 1.0)
    html = host_page(widget_api.base_url, spacer_px=1000).replace("</main>", f"{BELOW}</main>")
    await page.goto(publisher.page("cls-scroll.html", html))
    assert await page.locator("#related .tdg-card").count() == 0  # not there yet
    await page.locator("#related").evaluate("c => c.scrollIntoView({block: 'start'})")
    await page.locator("#related .tdg-card").first.wait_for(timeout=5000)
    await settle(page)
    assert await page.locator("#below").evaluate("b => b.getBoundingClientRect().top") < 800
    assert await page.evaluate("window.__shifts") == []
    assert page.page_errors == []


# A title for the grid's narrow cards: 4 lines of ~200 px, one more than the placeholder held.
FOUR_LINE_TITLE = "Chancellor confirms the windfall tax on energy firms will stay until 2030 as"


async def test_a_title_longer_than_the_placeholder_held_keeps_the_snippets(page, widget_api,
                                                                             publisher):
    """Four stories in a row of ~200 px cards, each with a snippet and a title of 4 lines, one
    more than the placeholder held: the block arriving on screen moves the page under it a
    little (CLS 0.006, far under the 0.1 "good" bar). Dropping every snippet of such a block
    to save that was tried and not kept: the block keeps what it has to say."""
    await page.add_init_script(SHIFTS_INIT)
    api = widget_api.base_url
    cards = [{**LONG_CARDS[0], "id": 9300 + i, "url": f"https://faz.example/{i}",
              "title": FOUR_LINE_TITLE, "site": "Example News",
              "summary": "What the tax means for bills, and who pays it."} for i in range(4)]
    released = []

    async def slow(route):
        await asyncio.sleep(0.5)
        released.append(await page.evaluate("performance.now()"))
        await route.fulfill(status=200, headers={"Access-Control-Allow-Origin": "*"},
                            content_type="application/json", body=json.dumps({"related": cards}))

    await page.route(f"{api}/v1/related?*", slow)
    html = host_page(api).replace("</main>", f"{BELOW}</main>")
    await open_with_block(page, publisher.page("cls-long-title.html", html))
    await settle(page)
    lines = await page.locator("#related").evaluate("""c => [...c.shadowRoot.querySelectorAll(
        '.tdg-title')].map(t => Math.round(t.getBoundingClientRect().height
                                           / parseFloat(getComputedStyle(t).lineHeight)))""")
    assert lines == [4, 4, 4, 4]  # the case itself: one line more than held
    shifts = await page.evaluate("window.__shifts")
    assert sum(s["value"] for s in shifts if s["at"] >= released[0]) < 0.05
    heights = await page.locator("#related .tdg-snippet").evaluate_all(
        "ps => ps.map(p => p.getBoundingClientRect().height)")
    assert len(heights) == 4 and all(h > 0 for h in heights)
    assert page.page_errors == []


# The page's own component as the container: a custom element whose shadow root shows its
# children through a <slot>, as a component that lays out what it is given does.
COMPONENT_JS = """() => customElements.define('news-related', class extends HTMLElement {
    constructor() { super(); this.attachShadow({mode: 'open'}).innerHTML = '<slot></slot>'; }
})"""


def component_page(api_base: str, **kwargs) -> str:
    return host_page(api_base, head=f"<style>{HOST_CSS} news-related{{display:block}}</style>",
                     **kwargs).replace(
        "<div id=\"related\" data-tidings-related ></div>",
        "<news-related id=\"related\" data-tidings-related></news-related>").replace(
        "</main>", f"{BELOW}</main>")


async def test_a_component_defined_after_the_widget_gets_its_own_shadow_root(
        page, widget_api, publisher):
    """The container is the page's custom element, defined once its bundle loads, after the
    widget ran: the widget had taken the element's shadow root for its placeholder, the
    component's attachShadow threw, and the component never started. The block now goes in a
    child of the widget's own, shown through the component's slot, and its room is still held:
    no layout shift at all, as on a plain container."""
    await page.add_init_script(SHIFTS_INIT)
    await slow_related(page, 1.0)
    html = component_page(widget_api.base_url, spacer_px=1000)
    await page.goto(publisher.page("component-late.html", html))
    await page.locator("#related .tdg-ph").first.wait_for(state="attached")
    await page.evaluate(COMPONENT_JS)
    await page.locator("#related").evaluate("c => c.scrollIntoView({block: 'start'})")
    cards = page.locator("#related .tdg-card")
    await cards.first.wait_for(timeout=5000)
    await settle(page)
    assert await cards.count() == 4
    assert await page.locator("#related").evaluate("""c => [c.shadowRoot.innerHTML,
        [...c.children].map(e => e.localName), document.adoptedStyleSheets.length]""") == [
        "<slot></slot>", ["div"], 0]
    assert await page.get_by_role("region", name="Related stories").count() == 1
    assert await page.evaluate("window.__shifts") == []
    assert page.page_errors == []


async def test_a_component_container_is_left_as_it_was_when_the_api_fails(
        page, widget_api, publisher):
    """A component defined before the widget ran already has its shadow root: the widget put
    its placeholder in the page's light DOM and its stylesheet on the page. Now its own child
    holds both, and goes when the API fails: the component is as the page made it."""
    widget_api.outage = "500"
    await slow_related(page, 0.5)
    html = component_page(widget_api.base_url).replace(
        "<script async", f"<script>({COMPONENT_JS})()</script><script async", 1)
    async with page.expect_response("**/v1/related?**"):
        await page.goto(publisher.page("component-outage.html", html))
        await page.locator("#related .tdg-ph").first.wait_for(state="attached")
        assert await page.locator("#related").evaluate(
            "c => [...c.children].map(e => [e.localName, e.shadowRoot.mode])") == [["div", "open"]]
    await settle(page)
    assert await page.locator("#related").evaluate("""c => [c.shadowRoot.innerHTML, c.innerHTML,
        document.adoptedStyleSheets.length, document.querySelectorAll('#tdg-style').length]""") \
        == ["<slot></slot>", "", 0, 0]
    assert page.page_errors == []


async def titles_in(page, selector: str) -> list[str]:
    return await page.locator(f"{selector} .tdg-card .tdg-title").all_inner_texts()


async def wait_for_titles(page, selector: str, expected: list[str]) -> None:
    for _ in range(100):
        if await titles_in(page, selector) == expected:
            return
        await asyncio.sleep(0.05)
    assert await titles_in(page, selector) == expected


THIRD_URL = "https://www.bbc.co.uk/news/politics-002"


async def test_app_changing_the_article_in_place_gets_its_block(page, widget_api, publisher):
    """A single-page app moves to another article with pushState and sets the container's
    data-url: the old article's block stayed. Now the new one shows (and counts as a new page
    view); setting the same URL again, refresh() or re-inserting the container asks nothing."""
    blocks = {u: [c["title"] for c in (await widget_api.block(u))["related"]]
              for u in (SEED_URL, SECOND_URL, THIRD_URL)}
    assert len({tuple(t) for t in blocks.values()}) == 3
    html = host_page(widget_api.base_url, container_attrs=f'data-url="{SEED_URL}"')
    await open_with_block(page, publisher.page("spa.html", html))
    assert await titles_in(page, "#related") == blocks[SEED_URL]
    reader = await reader_of(page)
    await widget_api.stored_events(reader, 4)

    navigate = """url => { history.pushState({}, '', '/next-' + url.slice(-3));
        document.querySelector('#related').setAttribute('data-url', url); }"""
    await page.evaluate(navigate, SECOND_URL)
    await wait_for_titles(page, "#related", blocks[SECOND_URL])
    assert asked_urls(page, "/v1/related") == [SEED_URL, SECOND_URL]
    events = await widget_api.stored_events(reader, 8)
    assert [e.type for e in events] == ["impression"] * 8

    # Nothing changed: no request, the same block.
    await page.evaluate(f"""() => {{
        const c = document.querySelector('#related');
        c.setAttribute('data-url', '{SECOND_URL}');
        window.TidingsWidget.refresh();
        c.parentNode.insertBefore(c, document.querySelector('#below') || null);
    }}""")
    await settle(page)
    assert asked_urls(page, "/v1/related") == [SEED_URL, SECOND_URL]
    assert await titles_in(page, "#related") == blocks[SECOND_URL]

    # Two quick moves, the first one's answer the slower: it must not show up over the second.
    async def slow_third(route):
        await asyncio.sleep(1.0)
        await route.continue_()

    third = f"**/v1/related?url={quote(THIRD_URL, safe='')}*"
    await page.route(third, slow_third)
    async with page.expect_request(third):
        await page.evaluate(navigate, THIRD_URL)
    await page.evaluate(navigate, SEED_URL)  # back to the first article: its answer is kept
    await wait_for_titles(page, "#related", blocks[SEED_URL])
    await asyncio.sleep(1.3)
    assert asked_urls(page, "/v1/related") == [SEED_URL, SECOND_URL, THIRD_URL]
    assert await titles_in(page, "#related") == blocks[SEED_URL]
    assert await page.locator("#related section.tdg-block").count() == 1
    assert page.page_errors == []


async def test_refresh_shows_the_block_of_the_new_canonical_url(page, widget_api, publisher):
    """A container without data-url follows the page's canonical URL; an app that changes it
    in place calls TidingsWidget.refresh() (README), which asks only for what changed."""
    second = [c["title"] for c in (await widget_api.block(SECOND_URL))["related"]]
    await open_with_block(page, publisher.page("spa-canonical.html",
                                               host_page(widget_api.base_url)))
    await page.evaluate(f"""() => {{ history.pushState({{}}, '', '/next');
        document.querySelector('link[rel=canonical]').href = '{SECOND_URL}';
        window.TidingsWidget.refresh(); }}""")
    await wait_for_titles(page, "#related", second)
    await page.evaluate("window.TidingsWidget.refresh()")
    await settle(page)
    assert asked_urls(page, "/v1/related") == [SEED_URL, SECOND_URL]
    assert page.page_errors == []


async def articles_by_address(page, widget_api, publisher, *names: str) -> dict[str, list[str]]:
    """Host pages without canonical link or data-url at the addresses of real articles (see
    LOOPBACK_HOST), which the API reads for their blocks: {address: the block's titles}."""
    base = publisher.base_url.replace("127.0.0.1", LOOPBACK_HOST)
    html = host_page(widget_api.base_url).replace(f'<link rel="canonical" href="{SEED_URL}">', "")
    await page.route(f"{base}/**", lambda route: route.continue_())  # a loopback name: served
    blocks = {}
    for name in names:
        path = f"data/readability-news-pages/{name}/source.html"
        publisher.page(path, html)
        related = (await widget_api.block(f"{base}/{path}"))["related"]
        blocks[f"{base}/{path}"] = [c["title"] for c in related]
    assert len({tuple(t) for t in blocks.values()}) == len(names)
    return blocks


async def test_bare_push_state_brings_the_new_articles_block(page, widget_api, publisher):
    """The app's container has no data-url and its page no canonical link, so the article is
    the page's address. It moved to another article with history.pushState alone, and the old
    article's block stayed (TidingsWidget.refresh() was needed). The widget now follows the
    Navigation API's navigatesuccess: the new block shows, back brings the first one again,
    and an article already asked about is not asked again."""
    blocks = await articles_by_address(page, widget_api, publisher, "bbc-1", "guardian-1")
    first, second = blocks
    await open_with_block(page, first)
    assert await titles_in(page, "#related") == blocks[first]
    await page.evaluate("url => history.pushState({}, '', url)", second)
    await wait_for_titles(page, "#related", blocks[second])
    await page.evaluate("history.back()")
    await wait_for_titles(page, "#related", blocks[first])
    await settle(page)
    assert asked_urls(page, "/v1/related") == [first, second]
    assert await page.locator("#related section.tdg-block").count() == 1
    assert page.page_errors == []


async def test_back_and_forward_bring_their_blocks_without_the_navigation_api(
        page, widget_api, publisher):
    """Browsers without the Navigation API tell the page nothing about pushState (the app
    calls refresh(), README), but back and forward fire popstate, which the widget ignored:
    the block of the article left stayed."""
    await page.add_init_script("delete window.navigation")
    blocks = await articles_by_address(page, widget_api, publisher, "bbc-1", "guardian-1")
    first, second = blocks
    await open_with_block(page, first)
    assert await page.evaluate("'navigation' in window") is False
    await page.evaluate("""url => { history.pushState({}, '', url);
        window.TidingsWidget.refresh(); }""", second)
    await wait_for_titles(page, "#related", blocks[second])
    await page.evaluate("history.back()")
    await wait_for_titles(page, "#related", blocks[first])
    await page.evaluate("history.forward()")
    await wait_for_titles(page, "#related", blocks[second])
    assert asked_urls(page, "/v1/related") == [first, second]
    assert page.page_errors == []


async def test_block_follows_a_canonical_link_the_app_changes_after_navigating(
        page, widget_api, publisher):
    """Routers push the new address first and draw the new article (and its canonical link)
    later, and on back they draw the old one in their own popstate handler, after the
    Navigation API's navigatesuccess has fired: a re-read on navigation alone saw the old
    canonical link both times. A canonical link changed or replaced is now enough."""
    first, second = [[c["title"] for c in (await widget_api.block(url))["related"]]
                     for url in (SEED_URL, SECOND_URL)]
    await open_with_block(page, publisher.page("spa-router.html", host_page(widget_api.base_url)))
    await page.evaluate(f"""() => {{
        const canonical = () => document.querySelector('link[rel=canonical]');
        addEventListener('popstate', () => {{  // the router draws the first article again
            const link = document.createElement('link');
            link.rel = 'canonical';
            link.href = '{SEED_URL}';
            canonical().replaceWith(link);
        }});
        history.pushState({{}}, '', '/next');
        setTimeout(() => canonical().href = '{SECOND_URL}', 50);
    }}""")
    await wait_for_titles(page, "#related", second)
    await page.evaluate("history.back()")
    await wait_for_titles(page, "#related", first)
    await settle(page)
    assert asked_urls(page, "/v1/related") == [SEED_URL, SECOND_URL]
    assert page.page_errors == []


async def test_two_containers_for_one_article_ask_once_and_count_once(
        page, widget_api, publisher):
    """Two containers for the same article (a template and a tag manager each adding one),
    the script included twice as well: both show the block from one request, and each story
    is one impression, not one per container."""
    await page.set_viewport_size({"width": 1100, "height": 1600})
    api = widget_api.base_url
    html = host_page(api, scripts=[f"{api}/widget.js", f"{api}/widget.js?v=2"]).replace(
        "<footer", f'<div id="related-2" data-tidings-related data-url="{SEED_URL}"></div><footer')
    await open_with_block(page, publisher.page("two-containers.html", html))
    expected = [c["title"] for c in (await widget_api.block(SEED_URL))["related"]]
    await wait_for_titles(page, "#related-2", expected)
    assert await titles_in(page, "#related") == expected
    reader = await reader_of(page)
    await settle(page)
    assert asked_urls(page, "/v1/related") == [SEED_URL]
    assert len(event_posts(page)) == 1
    events = await widget_api.stored_events(reader, 5, timeout_s=1.5)  # waits for any 5th
    assert [e.type for e in events] == ["impression"] * 4
    for container in ("#related", "#related-2"):
        assert await page.locator(f"{container} section.tdg-block").count() == 1
    assert page.page_errors == []


async def test_a_page_the_api_would_refuse_is_left_out_of_the_events(page, widget_api, publisher):
    """A server-rendered block whose container names a page that is no http(s) URL: its
    events go without `page` (the API refuses such a page, and the events with it)."""
    fragment = await widget_api.fragment(SEED_URL)
    html = host_page(widget_api.base_url).replace(
        '<div id="related" data-tidings-related ></div>',
        f'<div id="related" data-tidings-related data-url="ftp://pub.example/a">{fragment}</div>')
    await page.goto(publisher.page("ftp-page.html", html))
    reader = await reader_of(page)  # its impressions were sent
    await page.locator(".tdg-card a.tdg-link").first.click()
    events = await widget_api.stored_events(reader, 5)
    assert sorted(e.type for e in events) == ["click"] + ["impression"] * 4
    assert {e.page for e in events} == {None}


async def test_site_and_exclude_site_attributes_filter_the_block(page, widget_api, publisher):
    """A publisher could not say "only my own site's stories" or "never that one's": the
    widget asked every block unfiltered. Two containers for one article with different
    filters are two requests, each block the API's answer to its own."""
    public = [c["site"] for c in (await widget_api.block(SEED_URL))["related"]]
    assert "bbc.co.uk" in public and len(set(public)) == 2  # BBC and the hostile story's site
    own, others = [[c["title"] for c in (await widget_api.block(SEED_URL, **f))["related"]]
                   for f in ({"site": "www.BBC.co.uk"}, {"exclude_site": "bbc.co.uk"})]
    assert len(own) == 4 and HOSTILE_TITLE not in own and others == [HOSTILE_TITLE]
    html = host_page(widget_api.base_url, container_attrs='data-site="www.BBC.co.uk"').replace(
        "<footer", '<div id="related-2" data-tidings-related data-exclude-site="bbc.co.uk"></div>'
        "<footer")
    await page.goto(publisher.page("filters.html", html))
    await wait_for_titles(page, "#related", own)
    await wait_for_titles(page, "#related-2", others)
    assert sorted(q.get("site", q.get("exclude_site")) for q in asked_queries(
        page, "/v1/related")) == [["bbc.co.uk"], ["www.BBC.co.uk"]]
    assert page.page_errors == []


async def test_a_changed_category_attribute_reloads_the_block(page, widget_api, publisher):
    """Filters go to the API as they are written (a blank one not at all: the API refuses an
    empty max_age_days), and an app that changes one gets the block it now names."""
    blocks = {c: [s["title"] for s in (await widget_api.block(
        SEED_URL, category=c, max_age_days="3"))["related"]] for c in ("Entertainment", "politics")}
    assert blocks["Entertainment"] != blocks["politics"]
    attrs = 'data-category="Entertainment" data-max-age-days="3" data-site=" "'
    await page.goto(publisher.page("category.html", host_page(
        widget_api.base_url, container_attrs=attrs)))
    await wait_for_titles(page, "#related", blocks["Entertainment"])
    await page.locator("#related").evaluate("c => c.setAttribute('data-category', 'politics')")
    await wait_for_titles(page, "#related", blocks["politics"])
    assert asked_queries(page, "/v1/related") == [
        {"url": [SEED_URL], "k": ["4"], "category": [c], "max_age_days": ["3"]}
        for c in ("Entertainment", "politics")]
    assert page.page_errors == []


async def test_links_to_other_sites_open_in_a_new_tab_and_are_not_followed(
        page, widget_api, publisher):
    """Publishers want links to other sites in a new tab and marked nofollow (no endorsement
    for search engines), their own stories left plain; every link opened in the same tab and
    carried no rel. On a page of bbc.co.uk (no "www."), the block links its www.bbc.co.uk
    stories as before and the hostile story's evil.example in a new tab, rel noopener
    nofollow (link types have no case): "follow" and "opener" are no words data-rel takes
    (opener would undo noopener).
    A click and a middle click on it are each reported once, by beacon."""
    related = (await widget_api.block(SEED_URL))["related"]
    assert {urlsplit(c["url"]).hostname for c in related} == {"www.bbc.co.uk", "evil.example"}
    html = host_page(widget_api.base_url,
                     container_attrs='data-new-tab data-rel="NoFollow follow opener"')
    own = "https://bbc.co.uk/news/host-article"
    # Served here under a public name; the API is on loopback, which a public page reaches
    # only with the reader's leave (Chromium's Local Network Access): given.
    await page.route(own, lambda route: route.fulfill(content_type="text/html", body=html))
    await page.context.grant_permissions(["local-network-access"], origin="https://bbc.co.uk")
    cards = await open_with_block(page, own)
    links = await cards.locator("a.tdg-link").evaluate_all(
        "links => links.map(a => [new URL(a.href).hostname, a.target, a.rel])")
    assert sorted({tuple(link) for link in links}) == [
        ("evil.example", "_blank", "noopener nofollow"), ("www.bbc.co.uk", "", "")]
    reader = await reader_of(page)
    await widget_api.stored_events(reader, 4)  # the impressions, before counting clicks
    other = page.locator('.tdg-card a.tdg-link[target="_blank"]')
    for button in ("left", "middle"):
        page.api_requests.clear()
        async with page.context.expect_page(), page.expect_request("**/v1/events") as sent:
            await other.click(button=button)  # opens a tab of its own
        await settle(page)
        assert (await sent.value).resource_type == "ping"  # sendBeacon
        assert len(event_posts(page)) == 1
        assert [e["type"] for e in json.loads((await sent.value).post_data)["events"]] == ["click"]
    events = await widget_api.stored_events(reader, 6)
    assert [e.type for e in events].count("click") == 2 and len(events) == 6
    assert page.url == own  # not left for the story
    assert page.page_errors == []


async def links_in(page, selector: str) -> list[list[str]]:
    """[target, rel] of each story link in the container `selector`, in order."""
    return await page.locator(f"{selector} .tdg-card a.tdg-link").evaluate_all(
        "links => links.map(a => [a.target, a.rel])")


async def wait_for_links(page, selector: str, expected: list[list[str]]) -> None:
    for _ in range(100):
        if await links_in(page, selector) == expected:
            return
        await asyncio.sleep(0.05)
    assert await links_in(page, selector) == expected


async def test_changing_new_tab_or_rel_alone_redraws_the_shown_block(page, widget_api, publisher):
    """An app (or a consent banner) that sets data-new-tab or data-rel after the block showed
    got nothing: the request was unchanged, so the block kept its old links. Now the block is
    drawn again from the answer it has (no new request) and counted once all the same. The
    page's block is for a BBC article: only the hostile story is of another site."""
    html = host_page(widget_api.base_url)
    cards = await open_with_block(page, publisher.page("links-change.html", html))
    titles = await titles_in(page, "#related")
    assert await links_in(page, "#related") == [["", ""]] * 4
    reader = await reader_of(page)
    await widget_api.stored_events(reader, 4)
    set_attr = "(c, [name, value]) => c.setAttribute(name, value)"
    related = page.locator("#related")

    def other_sites(link: list[str]) -> list[list[str]]:
        return [link if title == HOSTILE_TITLE else ["", ""] for title in titles]

    await related.evaluate(set_attr, ["data-new-tab", ""])
    await wait_for_links(page, "#related", other_sites(["_blank", "noopener"]))
    await related.evaluate(set_attr, ["data-rel", "nofollow ugc"])
    await wait_for_links(page, "#related", other_sites(["_blank", "noopener nofollow ugc"]))
    await related.evaluate("c => c.removeAttribute('data-new-tab')")
    await wait_for_links(page, "#related", other_sites(["", "nofollow ugc"]))
    assert await titles_in(page, "#related") == titles
    assert await cards.count() == 4 and await page.locator("#related section").count() == 1
    # The redrawn block still reports its clicks; nothing was asked or counted again.
    await page.evaluate("() => document.addEventListener('click', e => e.preventDefault(), true)")
    async with page.expect_request("**/v1/events"):
        await cards.first.locator("a.tdg-link").click()
    await settle(page)
    assert asked_urls(page, "/v1/related") == [SEED_URL]
    events = await widget_api.stored_events(reader, 5)
    assert sorted(e.type for e in events) == ["click"] + ["impression"] * 4
    assert page.page_errors == []


def widget_site_key_js() -> str:
    """widget.js's own site-key code, as a function of a list of URLs giving each one's key
    from its host as the browser parses it: run in the browser exactly as written."""
    source = (STATIC_DIR / "widget.js").read_text(encoding="utf-8")
    start = source.index("  function siteKey(host)")
    end = source.index("  function cardNode(")
    return f"urls => {{ {source[start:end]}\n return urls.map(u => siteKey(new URL(u).hostname)); }}"


# Hosts however a page or story may write them: case, "www." once or more, a trailing dot
# (one name in DNS), other subdomains that are other sites, an IDN.
SITE_KEY_URLS = [
    "https://bbc.co.uk/a", "https://www.bbc.co.uk/a", "https://WWW.WWW.bbc.co.uk/a",
    "https://www.www.www.example.com:8443/x", "https://bbc.co.uk./a", "https://www.bbc.co.uk../a",
    "https://news.bbc.co.uk/a", "https://www2.example.com/", "https://wwwexample.com/",
    "https://www.news.www.example/", "https://www./", "https://www.www./", "http://127.0.0.1:8080/",
    "https://www.Bücher.example/", "http://news.localhost/a",
    # IDN hosts as browsers spell them (UTS #46): Python's IDNA 2003 codec made faß.de fass.de
    "https://www.faß.de/a", "https://σίσυφος.gr/a", "https://☃.net/",
    # A publisher's mobile and AMP hosts are its site, in any order with "www."; not where no
    # name with a dot is left (mobile.de and amp.dev are sites), nor other first labels.
    "https://m.bbc.co.uk/a", "https://MOBILE.bbc.co.uk/a", "https://amp.theguardian.com/a",
    "https://www.m.example.com/", "https://m.www.amp.mobile.example.com./", "https://amp.m.m.x.y/",
    "https://mobile.de/", "https://m.mobile.de/", "https://amp.dev/", "https://www.m.de/",
    "https://m.example/", "https://mm.example.com/", "https://m-news.example.com/",
    "https://ampnews.example.com/", "https://sport.m.example.com/", "https://m.news.example.com/",
]


async def test_widget_site_key_equals_the_server_rule(page):
    """The widget's own site (links to other sites open in a new tab, with data-rel) took one
    "www." off a host, the server's site_key (api/render.py links by it) all of them and a
    trailing dot: on www.www.bbc.co.uk the widget put www.bbc.co.uk's stories in a new tab,
    nofollow, and the server-rendered block did not."""
    got = await page.evaluate(widget_site_key_js(), SITE_KEY_URLS)
    assert list(zip(SITE_KEY_URLS, got, strict=True)) == [(u, site_key(u)) for u in SITE_KEY_URLS]


async def test_own_site_links_stay_plain_on_a_www_www_page_as_the_server_renders_them(
        page, widget_api, publisher):
    """End to end: on a page of www.www.bbc.co.uk, the widget links the block as the server
    fragment would for that page (api/render.py, same attributes): the BBC's own stories
    plain, the other site's in a new tab."""
    own = "https://www.www.bbc.co.uk/host-article"
    block = await widget_api.block(SEED_URL)
    links = OtherSiteLinks(site_key(own), True, ("nofollow",))
    fragment = render_block_html(block, links=links)
    server = [[re.search(f'{name}="([^"]*)"', a).group(1) if f"{name}=" in a else ""
               for name in ("target", "rel")] for a in re.findall(r"<a [^>]*>", fragment)]
    assert sorted(map(tuple, server)) == [("", "")] * 3 + [("_blank", "noopener nofollow")]
    html = host_page(widget_api.base_url, container_attrs='data-new-tab data-rel="nofollow"')
    await page.route(own, lambda route: route.fulfill(content_type="text/html", body=html))
    await page.context.grant_permissions(["local-network-access"],
                                         origin="https://www.www.bbc.co.uk")
    await open_with_block(page, own)
    assert await links_in(page, "#related") == server
    assert page.page_errors == []


async def test_the_own_site_is_the_articles_as_the_server_fragment_judges_it(
        page, widget_api, publisher):
    """On a page elsewhere than its article's site (here loopback, the article on the BBC: an
    m. or preview host, its canonical link on www.), /v1/widget links the article's own
    site's stories plain, as its url says; the widget judged by the page's host, so the same
    container's links went to a new tab and nofollow once it drew the block again (here for
    a new heading; so too a personal block replacing the server's)."""
    async with httpx.AsyncClient(base_url=widget_api.base_url, timeout=20) as client:
        fragment = (await client.get("/v1/widget", params={
            "url": SEED_URL, "new_tab": "true", "rel": "nofollow"})).text
    attrs = 'data-new-tab data-rel="nofollow"'
    html = host_page(widget_api.base_url, container_attrs=attrs).replace(
        f'<div id="related" data-tidings-related {attrs}></div>',
        f'<div id="related" data-tidings-related {attrs}>{fragment}</div>')
    assert fragment in html
    await open_with_block(page, publisher.page("own-site.html", html))
    server = await links_in(page, "#related")
    titles = await titles_in(page, "#related")
    assert server == [["_blank", "noopener nofollow"] if title == HOSTILE_TITLE else ["", ""]
                      for title in titles]
    await page.locator("#related").evaluate("c => c.setAttribute('data-heading', 'More')")
    await page.wait_for_function(
        "document.querySelector('#related').shadowRoot.querySelector('h2').textContent"
        " == 'More'")
    assert await titles_in(page, "#related") == titles
    assert await links_in(page, "#related") == server
    assert page.page_errors == []


async def test_a_right_click_is_no_click_but_a_middle_click_is(page, widget_api, publisher):
    """Clicks were reported on auxclick whatever the button: a reader right-clicking a story
    to copy its address counted as a click, as one opening it in a new tab did."""
    cards = await open_with_block(page, publisher.page("right-click.html", host_page(
        widget_api.base_url, container_attrs="data-new-tab")))
    reader = await reader_of(page)
    await widget_api.stored_events(reader, 4)
    await settle(page)
    page.api_requests.clear()
    link = cards.first.locator("a.tdg-link")
    await link.click(button="right")
    await page.keyboard.press("Escape")
    await settle(page)
    assert event_posts(page) == []
    async with page.context.expect_page(), page.expect_request("**/v1/events") as sent:
        await link.click(button="middle")
    assert [e["type"] for e in json.loads((await sent.value).post_data)["events"]] == ["click"]
    await settle(page)
    assert len(event_posts(page)) == 1
    assert page.page_errors == []


async def test_containers_in_the_pages_open_shadow_roots_get_their_blocks(
        page, widget_api, publisher):
    """Sites built of web components put the container in a component's shadow root, where
    querySelectorAll does not look: it never got a block. One there when the widget starts
    (declarative shadow DOM) and one a component renders later into its root both get theirs."""
    await page.set_viewport_size({"width": 1100, "height": 2400})
    html = host_page(widget_api.base_url).replace("<footer", f"""<div id="declared">
<template shadowrootmode="open"><div id="inner" data-tidings-related data-url="{SECOND_URL}">
</div></template></div><div id="later"></div><script>
const root = document.getElementById('later').attachShadow({{mode: 'open'}});
addEventListener('load', () => setTimeout(() => {{
    root.innerHTML = '<div id="inner" data-tidings-related></div>'; }}, 100));
</script><footer""").replace('<div id="related" data-tidings-related ></div>', "")
    await page.goto(publisher.page("shadow-containers.html", html))
    cards = """host => {
        // null until the component renders it (100 ms after load): a throw here failed the
        // wait at once on a loaded machine, where the first look came before that.
        const c = document.getElementById(host).shadowRoot.getElementById('inner');
        return c && c.shadowRoot ? c.shadowRoot.querySelectorAll('.tdg-card').length : 0; }"""
    for host in ("declared", "later"):
        await page.wait_for_function(cards, arg=host, timeout=5000)
    assert sorted(asked_urls(page, "/v1/related")) == [SEED_URL, SECOND_URL]
    assert page.page_errors == []


async def test_an_element_made_a_container_later_gets_its_block(page, widget_api, publisher):
    """An app that marks an element it already has (el.dataset.tidingsRelated = "") got no
    block: only added elements and the attributes of known containers were watched."""
    html = host_page(widget_api.base_url).replace(
        '<div id="related" data-tidings-related ></div>', '<div id="related"></div>')
    await page.goto(publisher.page("marked-later.html", html))
    await page.wait_for_function("window.TidingsWidget")
    await settle(page)
    assert page.api_requests == []
    await page.locator("#related").evaluate("c => { c.dataset.tidingsRelated = ''; }")
    await page.locator("#related .tdg-card").first.wait_for(timeout=5000)
    assert await page.locator("#related .tdg-card").count() == 4
    assert asked_urls(page, "/v1/related") == [SEED_URL]
    assert page.page_errors == []


async def test_a_blank_data_url_is_unset(page, widget_api, publisher):
    """A template whose article URL came out blank wrote data-url=" ": read as a link, that
    is the page's own address, so the widget asked for it with the reader's token in its
    query (which the page's address otherwise leaves out) instead of the canonical URL."""
    url = publisher.page("blank-url.html", host_page(
        widget_api.base_url, container_attrs='data-url=" \n "'))
    async with page.expect_request("**/v1/related?**") as asked:
        await page.goto(f"{url}?id=7&token=s3cret")
    assert parse_qs(urlsplit((await asked.value).url).query)["url"] == [SEED_URL]


async def test_changing_heading_or_theme_redraws_the_shown_block(page, widget_api, publisher):
    """data-heading and data-theme changed after the block showed left it as it was (they
    are not part of the request): it is now drawn again, from the same answer."""
    await open_with_block(page, publisher.page("look-change.html", host_page(
        widget_api.base_url)))
    look = """c => { const b = c.shadowRoot.querySelector('section.tdg-block');
        const named = c.shadowRoot.getElementById(b.getAttribute('aria-labelledby'));
        return [named.textContent, b.querySelector('h2').textContent,
                b.getAttribute('data-theme')]; }"""
    related = page.locator("#related")
    assert await related.evaluate(look) == ["Related stories", "Related stories", "light"]
    await related.evaluate("c => { c.dataset.heading = 'More on this'; c.dataset.theme = 'dark'; }")
    for _ in range(100):
        if await related.evaluate(look) != ["Related stories", "Related stories", "light"]:
            break
        await asyncio.sleep(0.05)
    assert await related.evaluate(look) == ["More on this", "More on this", "dark"]
    assert await page.locator("#related .tdg-card").count() == 4
    assert asked_urls(page, "/v1/related") == [SEED_URL]
    assert page.page_errors == []


async def test_a_personal_block_leaves_out_what_the_reader_clicked(page, widget_api, publisher):
    """The block showed a reader the stories they had already clicked from it. With
    data-personal it is asked for the reader the events name, and the API leaves out what
    they read; a server-rendered block (everyone's, cached) shows until theirs replaces it."""
    html = host_page(widget_api.base_url, container_attrs="data-personal")
    url = publisher.page("personal.html", html)
    cards = await open_with_block(page, url)
    reader = await reader_of(page)
    assert asked_queries(page, "/v1/related")[0]["reader"] == [reader]
    clicked = cards.nth(1)
    clicked_id = await clicked.get_attribute("data-story-id")
    clicked_title = await clicked.locator(".tdg-title").inner_text()
    async with page.expect_request("**/v1/events") as sent:
        await clicked.locator("a.tdg-link").click()
    assert json.loads((await sent.value).post_data)["events"][0]["reader"] == reader
    events = await widget_api.stored_events(reader, 5)
    assert [e.type for e in events].count("click") == 1

    mine = [c["title"] for c in (await widget_api.block(SEED_URL, reader=reader))["related"]]
    assert len(mine) == 4 and clicked_title not in mine
    await page.goto(url)
    await wait_for_titles(page, "#related", mine)

    fragment = await widget_api.fragment(SEED_URL)
    assert f'data-story-id="{clicked_id}"' in fragment  # everyone's block has it
    page.api_requests.clear()
    await page.goto(publisher.page("personal-fragment.html", html.replace(
        "data-personal></div>", f"data-personal>{fragment}</div>")))
    await wait_for_titles(page, "#related", mine)
    assert [q["reader"] for q in asked_queries(page, "/v1/related")] == [[reader]]
    assert page.page_errors == []


async def test_an_app_going_back_after_a_click_gets_the_readers_new_block(
        page, widget_api, publisher):
    """A single-page app keeps the widget's answers for the page's life: going back to an
    article after clicking a story of its personal block showed the block with that story,
    asked before the click. A click now forgets the personal answers."""
    html = host_page(widget_api.base_url,
                     container_attrs=f'data-personal data-url="{SEED_URL}"')
    cards = await open_with_block(page, publisher.page("personal-spa.html", html))
    reader = await reader_of(page)
    await widget_api.stored_events(reader, 4)
    # The app handles its links itself: the click stays on this page.
    await page.evaluate("() => document.addEventListener('click', e => e.preventDefault(), true)")
    clicked_title = await cards.nth(1).locator(".tdg-title").inner_text()
    async with page.expect_request("**/v1/events"):
        await cards.nth(1).locator("a.tdg-link").click()
    events = await widget_api.stored_events(reader, 5)
    assert [e.type for e in events].count("click") == 1

    second = [c["title"] for c in (await widget_api.block(SECOND_URL, reader=reader))["related"]]
    move = "url => document.querySelector('#related').setAttribute('data-url', url)"
    await page.evaluate(move, SECOND_URL)
    await wait_for_titles(page, "#related", second)
    mine = [c["title"] for c in (await widget_api.block(SEED_URL, reader=reader))["related"]]
    assert clicked_title not in mine
    await page.evaluate(move, SEED_URL)
    await wait_for_titles(page, "#related", mine)
    asked = [q["url"][0] for q in asked_queries(page, "/v1/related")]
    assert asked == [SEED_URL, SECOND_URL, SEED_URL]
    assert page.page_errors == []


async def test_a_server_block_stays_when_the_readers_own_cannot_be_had(
        page, widget_api, publisher):
    """data-personal over a server-rendered block: an API failing the reader's request leaves
    everyone's block, not an empty container (the block was moved out of it)."""
    fragment = await widget_api.fragment(SEED_URL)
    everyones = [c["title"] for c in (await widget_api.block(SEED_URL))["related"]]
    widget_api.outage = "500"
    html = host_page(widget_api.base_url, container_attrs="data-personal").replace(
        "data-personal></div>", f"data-personal>{fragment}</div>")
    async with page.expect_response("**/v1/related?**", timeout=10_000) as answered:
        await page.goto(publisher.page("personal-outage.html", html))
    assert (await answered.value).status == 500
    await settle(page)
    assert "reader" in asked_queries(page, "/v1/related")[0]
    assert await titles_in(page, "#related") == everyones
    assert page.page_errors == []


async def test_an_in_page_anchor_jump_does_not_count_the_block_again(page, widget_api, publisher):
    """Impressions were deduplicated by location.href, #fragment and all: a jump to an anchor
    on the same page, then a redraw (a new heading, theme or rel), counted every story again."""
    await open_with_block(page, publisher.page("anchor.html", host_page(widget_api.base_url)))
    reader = await reader_of(page)
    await widget_api.stored_events(reader, 4)
    await settle(page)
    assert len(event_posts(page)) == 1
    await page.evaluate("location.hash = 'host-footer'")
    await page.locator("#related").evaluate("c => c.dataset.heading = 'More on this'")
    await page.wait_for_function(
        "document.querySelector('#related').shadowRoot.querySelector('h2').textContent"
        " == 'More on this'")
    await page.locator("#related").scroll_into_view_if_needed()
    await settle(page)
    await settle(page)
    assert len(event_posts(page)) == 1
    assert [e.type for e in await widget_api.svc.store.reader_events(reader)] == ["impression"] * 4
    assert page.page_errors == []


BROKEN_THUMB_JS = """c => [...c.shadowRoot.querySelectorAll('.tdg-thumb')].map(t =>
    [t.className, t.getAttribute('aria-hidden'), t.textContent, t.querySelectorAll('img').length])"""


async def test_broken_thumbnails_of_a_server_block_show_the_site_mark(page, widget_api, publisher):
    """A block the widget builds shows the site's mark where an image fails; a server-rendered
    one kept an empty grey box: its image had no error listener, and one that failed before
    the script ran fires no event for a listener added later."""
    related = (await widget_api.block(SEED_URL))["related"]
    fragment = await widget_api.fragment(SEED_URL)
    images = sorted(set(re.findall(r'src="([^"]+/thumb-\d\.svg)"', fragment)))
    assert len(images) == 2
    # The first image fails before the script runs, the second loads and fails later.
    broken = fragment.replace(images[0], f"{publisher.base_url}/missing.png")
    html = host_page(widget_api.base_url, scripts=[]).replace(
        '<div id="related" data-tidings-related ></div>',
        f'<div id="related" data-tidings-related>{broken}</div>')
    await page.goto(publisher.page("broken-thumbs.html", html))
    await page.wait_for_function("[...document.images].every(i => i.complete)")
    assert await page.evaluate("[...document.images].map(i => i.naturalWidth)") == [0, 320]
    await page.add_script_tag(url=f"{widget_api.base_url}/widget.js")
    await page.wait_for_function("document.querySelector('#related').shadowRoot")
    await page.locator("#related").evaluate(
        "c => c.shadowRoot.querySelectorAll('img')[0].src = location.origin + '/gone.png'")
    await page.wait_for_function(
        "!document.querySelector('#related').shadowRoot.querySelector('img')", timeout=5000)
    marks = await page.locator("#related").evaluate(BROKEN_THUMB_JS)
    expected = [site_mark(c["site"] or c["source"]) for c in related]
    assert marks == [["tdg-thumb tdg-thumb-empty", "true", mark, 0] for mark in expected]
    assert page.page_errors == []


# Every text node's element in the block with its WCAG contrast ratio: its computed colour
# against the first opaque background behind it (the block's, or the page's when the block
# lets it show), both painted on a canvas so any CSS colour syntax reads as sRGB.
CONTRAST_JS = """c => {
    const pen = document.createElement('canvas').getContext('2d', {willReadFrequently: true});
    const rgba = css => { pen.clearRect(0, 0, 1, 1); pen.fillStyle = css; pen.fillRect(0, 0, 1, 1);
                          return [...pen.getImageData(0, 0, 1, 1).data]; };
    const lum = rgb => rgb.slice(0, 3).map(v => (v /= 255) <= .03928 ? v / 12.92
        : ((v + .055) / 1.055) ** 2.4).reduce((s, v, i) => s + v * [.2126, .7152, .0722][i], 0);
    const behind = e => {
        for (let n = e; n; n = n.parentElement || n.getRootNode().host) {
            const bg = rgba(getComputedStyle(n).backgroundColor);
            if (bg[3] === 255) return bg;
        }
        return [255, 255, 255, 255];
    };
    return [...c.shadowRoot.querySelectorAll('.tdg-block *')]
        .filter(e => [...e.childNodes].some(n => n.nodeType === 3 && n.nodeValue.trim()))
        .filter(e => e.getBoundingClientRect().width > 1)  // shown: not the screen-reader text
        .map(e => {
            const [a, b] = [lum(rgba(getComputedStyle(e).color)), lum(behind(e))];
            return [e.className, Math.round((Math.max(a, b) + .05) / (Math.min(a, b) + .05) * 100) / 100];
        });
}"""


@pytest.mark.parametrize("attrs, page_css", [
    ('data-theme="light"', ""),
    ('data-theme="dark"', ""),
    ("", "body{background:#121212;color:#e8e8e8}"),  # inferred dark, the page's background
    # A dark page whose text is coloured by its elements' rules: the container inherits black.
    ("", "body{background:#1b1b1b} h1,h2,p,footer{color:#e8e8e8}"),
])
async def test_every_text_in_the_block_has_aa_contrast(page, widget_api, publisher, attrs, page_css):
    """WCAG AA: 4.5:1 for text, whatever its size. The dark theme's byline initials (white on
    #5b8fc7) had 3.4:1. On a dark page that colours its text element by element, the theme
    read from the inherited (black) text was light: near-black titles on #1b1b1b, 1.1:1."""
    # Two columns, wide enough that the hostile story's long site name takes no more room
    # than the placeholder held: at four, its block drops its snippets (render()).
    await page.set_viewport_size({"width": 700, "height": 800})
    html = host_page(widget_api.base_url, container_attrs=attrs, head=f"<style>{page_css}</style>")
    await open_with_block(page, publisher.page("contrast.html", html))
    ratios = await page.locator("#related").evaluate(CONTRAST_JS)
    classes = {cls.split()[-1] for cls, _ in ratios}
    assert {"tdg-heading", "tdg-title", "tdg-snippet", "tdg-site", "tdg-time", "tdg-avatar",
            "tdg-thumb-empty"} <= classes
    assert [(cls, ratio) for cls, ratio in ratios if ratio < 4.5] == []
    # The keyboard's focus shows there too: the accent outline, 3:1 or more against the block.
    await page.keyboard.press("Tab")
    outline = await page.locator("#related").evaluate("""c => {
        const s = getComputedStyle(c.shadowRoot.activeElement);
        return [s.outlineStyle, s.outlineWidth]; }""")
    assert outline == ["solid", "2px"]


async def test_relative_times_keep_up_while_the_page_is_visible(page, widget_api, publisher):
    """"5 minutes ago" stayed so on a page left open for hours. One timer now writes them anew
    each minute while the page is visible, from the block's own dates (nothing asked again);
    a hidden page's are written when it shows again."""
    await page.clock.install()
    await open_with_block(page, publisher.page("times.html", host_page(widget_api.base_url)))
    times = page.locator("#related time")
    first = await times.all_inner_texts()
    assert first and all(re.fullmatch(r"now|\d+ minutes? ago|\d+ hours? ago", t) for t in first)
    await page.clock.run_for("03:00:00")
    later = await times.all_inner_texts()
    assert later != first and all(re.fullmatch(r"\d+ hours ago", t) for t in later), later
    hide = """hidden => {
        Object.defineProperty(document, 'hidden', {value: hidden, configurable: true});
        Object.defineProperty(document, 'visibilityState',
            {value: hidden ? 'hidden' : 'visible', configurable: true});
        document.dispatchEvent(new Event('visibilitychange'));
    }"""
    await page.evaluate(hide, True)
    # Hidden: the widget's timer is gone (the page's fake clock counts those left).
    await page.clock.run_for("02:00:00")
    assert await times.all_inner_texts() == later
    await page.evaluate(hide, False)
    shown = await times.all_inner_texts()
    assert shown != later and all(re.fullmatch(r"\d+ hours ago", t) for t in shown), shown
    assert asked_urls(page, "/v1/related") == [SEED_URL]
    assert page.page_errors == []


async def test_times_follow_the_containers_language(page, widget_api, publisher):
    """A French section of an English page (lang on the container or an ancestor) got English
    times, which a screen reader then read with its French voice, as the block's lang is fr."""
    html = host_page(widget_api.base_url).replace(
        '<div id="related" data-tidings-related ></div>',
        '<section lang="fr"><div id="related" data-tidings-related></div></section>')
    cards = await open_with_block(page, publisher.page("lang-section.html", html))
    times = await cards.locator("time").all_inner_texts()
    assert times and all(re.fullmatch(r"maintenant|il y a \d+ (minutes?|heures?)", t)
                         for t in times), times
    assert await page.locator("#related").evaluate(
        "c => c.shadowRoot.querySelector('time').matches(':lang(fr)')")


async def region_names(page) -> list[tuple[str, str, str]]:
    """Each region in Chromium's accessibility tree (DevTools protocol): its name, the
    attribute that gave it, and the role of the node that attribute points at."""
    cdp = await page.context.new_cdp_session(page)
    nodes = (await cdp.send("Accessibility.getFullAXTree"))["nodes"]
    role_of = {n.get("backendDOMNodeId"): n.get("role", {}).get("value") for n in nodes}
    names = []
    for node in nodes:
        if node.get("role", {}).get("value") != "region":
            continue
        used = next(s for s in node["name"]["sources"]
                    if "value" in s and not s.get("superseded"))
        pointed = used.get("attributeValue", {}).get("relatedNodes", [])
        names.append((node["name"]["value"].casefold(), used.get("attribute"),
                      ",".join(role_of.get(r["backendDOMNodeId"], "?") for r in pointed)))
    return names


async def test_the_region_is_named_by_its_heading_not_a_copy_of_it(page, widget_api, publisher):
    """The section carried aria-label with the h2's text: one name read as a label of its own,
    which the page's translator leaves in English. Now aria-labelledby the heading, in the
    block the widget builds and in the server's, with or without the widget."""
    await open_with_block(page, publisher.page("named.html", host_page(widget_api.base_url)))
    assert await region_names(page) == [("related stories", "aria-labelledby", "heading")]
    fragment = (await widget_api.fragment(SEED_URL)).replace(
        "<section", '<section id="server"', 1)
    two = host_page(widget_api.base_url, scripts=[]).replace(
        '<div id="related" data-tidings-related ></div>',
        f'<div data-tidings-related>{fragment}</div><div data-tidings-related>{fragment}</div>')
    await page.goto(publisher.page("named-server.html", two))
    await page.wait_for_selector("#server")
    assert await region_names(page) == [("related stories", "aria-labelledby", "heading")] * 2
    # Two blocks in containers that take no shadow root (a <ul>: each block is in its own on
    # a child) are each named by their own heading.
    lists = host_page(widget_api.base_url).replace(
        '<div id="related" data-tidings-related ></div>',
        '<ul data-tidings-related></ul><ul data-tidings-related data-heading="More"></ul>')
    await page.goto(publisher.page("named-light.html", lists))
    await page.wait_for_function("""[...document.querySelectorAll('ul > div')].map(
        d => d.shadowRoot.querySelectorAll('.tdg-card').length).join() == '4,4'""")
    assert sorted(await region_names(page)) == [
        ("more", "aria-labelledby", "heading"), ("related stories", "aria-labelledby", "heading")]
    assert page.page_errors == []


async def heading_names(page) -> list[str]:
    """The accessible name of each heading of the blocks (Chromium's accessibility tree, as a
    screen reader gets it), the host's own left out."""
    cdp = await page.context.new_cdp_session(page)
    nodes = (await cdp.send("Accessibility.getFullAXTree"))["nodes"]
    names = [n["name"]["value"] for n in nodes
             if n.get("role", {}).get("value") == "heading" and not n.get("ignored")]
    return [name for name in names if name not in {"Host headline", "More from the host"}]


@pytest.mark.parametrize("kind", BLOCK_KINDS)
async def test_the_heading_is_said_as_written_and_shown_in_capitals(
        page, widget_api, publisher, kind):
    """The heading is drawn in capitals, and Chromium gave assistive tech text-transform's
    capitals: "RELATED STORIES", which some screen readers spell letter by letter. A hidden
    copy for the ear beside a shown one (aria-hidden) fixed that, but the heading's
    textContent, what a script or a reader mode reads, said it twice. Now one text node as
    written, drawn in capitals by the font (small caps), and it looks as it did: as wide and
    as tall as the old text-transform heading."""
    api = widget_api.base_url
    html = host_page(api, container_attrs='data-heading="More on this"')
    if kind == "server":
        fragment = await widget_api.fragment(SEED_URL, heading="More on this")
        html = with_block(html, fragment)
    await page.goto(publisher.page(f"{kind}-caps.html", html))
    await page.wait_for_function("document.querySelector('#related').shadowRoot?.querySelector("
                                 "'.tdg-card')")
    assert await heading_names(page) == ["More on this"]
    assert [name for name, _, _ in await region_names(page)] == ["more on this"]
    # One text node, as written (was "More on thisMore on this").
    h2 = page.locator("#related h2")
    assert await h2.evaluate("h => [...h.childNodes].map(n => [n.nodeType, n.nodeValue])") == [
        [3, "More on this"]]
    # Drawn in capitals: beside it, the old heading (an .8em text-transform copy) is as wide
    # and as tall, its box too.
    shown = await page.locator("#related").evaluate("""c => {
        const h = c.shadowRoot.querySelector('h2'), old = h.cloneNode(true);
        old.style.cssText = 'font-size:.8em;line-height:inherit;letter-spacing:.08em;'
            + 'font-variant-caps:normal;text-transform:uppercase;padding-top:.6em;margin-bottom:1em';
        h.after(old);
        const text = e => { const r = document.createRange(); r.selectNodeContents(e);
                            return r.getBoundingClientRect().width; };
        const box = e => e.getBoundingClientRect().height;
        const out = [getComputedStyle(h).fontVariantCaps, text(h) / text(old), box(h) - box(old),
                     getComputedStyle(h).marginBottom, getComputedStyle(old).marginBottom];
        old.remove();
        return out;
    }""")
    assert shown[0] == "all-small-caps", shown
    assert abs(shown[1] - 1) < 0.05 and abs(shown[2]) < 1, shown
    assert abs(float(shown[3][:-2]) - float(shown[4][:-2])) < 0.1, shown
    assert page.page_errors == []


async def test_the_default_heading_is_english_on_any_page(page, widget_api, publisher):
    """"Related stories" on a French page was read with the page's French voice; a heading
    the page gives is in the page's language."""
    html = host_page(widget_api.base_url, html_attrs='lang="fr"').replace(
        '<div id="related" data-tidings-related ></div>',
        '<div id="related" data-tidings-related></div>'
        '<div id="own" data-tidings-related data-heading="À lire aussi"></div>')
    await open_with_block(page, publisher.page("heading-lang.html", html))
    await page.wait_for_selector("#own .tdg-card")
    lang_js = "c => ['en', 'fr'].filter(l => c.shadowRoot.querySelector('h2').matches(`:lang(${l})`))"
    assert await page.locator("#related").evaluate(lang_js) == ["en"]
    assert await page.locator("#own").evaluate(lang_js) == ["fr"]


async def test_the_block_is_drawn_in_the_containers_language(page, widget_api, publisher):
    """The block's all:initial (the page's inherited styles kept out) reset the language its
    text is drawn in: a Turkish heading was upper-cased "ILGILI HABERLER", a Greek one kept
    its accents ("ΣΧΕΤΙΚΆ ΆΡΘΡΑ"), in the block the widget builds and in a server's it takes
    in. Now as the page's own text in that language."""
    fragment = await widget_api.fragment(SEED_URL, heading="Σχετικά άρθρα", lang="el")
    html = host_page(widget_api.base_url, html_attrs='lang="tr"').replace(
        '<div id="related" data-tidings-related ></div>',
        '<div id="related" data-tidings-related data-heading="ilgili haberler"></div>'
        f'<div id="greek" lang="el" data-tidings-related>{fragment}</div>'
        '<p id="tr" style="text-transform:uppercase">ilgili haberler</p>'
        '<p id="el" lang="el" style="text-transform:uppercase">Σχετικά άρθρα</p>')
    await open_with_block(page, publisher.page("languages.html", html))
    await page.wait_for_function("document.querySelector('#greek').shadowRoot")
    # The heading's small caps are the capitals of its language (checked by eye: "İLGİLİ",
    # Greek without accents; innerText does not show font capitals).
    heading = """c => { const h = c.shadowRoot.querySelector('h2');
        return [h.textContent, ['tr', 'el', 'en'].filter(l => h.matches(`:lang(${l})`))]; }"""
    assert await page.locator("#related").evaluate(heading) == ["ilgili haberler", ["tr"]]
    assert await page.locator("#greek").evaluate(heading) == ["Σχετικά άρθρα", ["el"]]
    assert [await page.locator(p).inner_text() for p in ("#tr", "#el")] == [
        "İLGİLİ HABERLER", "ΣΧΕΤΙΚΑ ΑΡΘΡΑ"]
    assert page.page_errors == []


async def test_every_word_of_the_block_is_the_pages_to_give(page, widget_api, publisher):
    """A French page could change the heading only: its screen readers heard "By Priya Shah",
    and a link opening a new tab said nothing of it (the reader left the article without a
    word). Each word is the container's to give; the English defaults stay, marked English."""
    french = ('lang="fr" data-heading="À lire aussi" data-by="Par" data-new-tab '
              "data-new-tab-label=\"s'ouvre dans un nouvel onglet\"")
    html = host_page(widget_api.base_url, html_attrs='lang="fr"').replace(
        '<div id="related" data-tidings-related ></div>',
        f'<div id="related" data-tidings-related {french}></div>'
        '<div id="english" data-tidings-related data-new-tab></div>')
    await open_with_block(page, publisher.page("words.html", html))
    await page.wait_for_selector("#english .tdg-card")
    french_block, english_block = page.locator("#related"), page.locator("#english")
    assert await french_block.get_by_role("heading", name="À lire aussi").count() == 1
    assert "Par Priya Shah, Political correspondent" in await french_block.locator(
        ".tdg-sr").all_inner_texts()
    # Only the other site's story (the hostile one's evil.example) opens a new tab, and says so.
    said = french_block.get_by_role("link", name=re.compile(r"s'ouvre dans un nouvel onglet$"))
    assert await said.count() == 1 and await said.get_attribute("target") == "_blank"
    assert "evil.example" in await said.get_attribute("href")
    assert await english_block.get_by_role("link", name=re.compile(r"opens in a new tab$")).count() == 1
    lang_js = """c => [...c.shadowRoot.querySelectorAll('h2, .tdg-sr')].map(
        s => [s.textContent.split(' ')[0], ['en', 'fr'].filter(l => s.matches(`:lang(${l})`))])"""
    assert {(word, tuple(langs)) for word, langs in await english_block.evaluate(lang_js)} == {
        ("Related", ("en",)), ("By", ("fr",)), ("opens", ("en",))}
    assert page.page_errors == []


@contextlib.asynccontextmanager
async def proxy_under_tidings(widget_api, html: str) -> AsyncIterator[tuple[str, list[str]]]:
    """A publisher's site serving `html` at /article.html and, as its reverse proxy does, the
    API under /tidings/: its base URL, and the path of every request it got."""
    asked: list[str] = []

    async def site(request: web.Request) -> web.Response:
        asked.append(request.path)
        if request.path == "/article.html":
            return web.Response(text=html, content_type="text/html")
        if not request.path.startswith("/tidings/"):
            raise web.HTTPNotFound()
        async with httpx.AsyncClient(base_url=widget_api.base_url, timeout=20) as client:
            r = await client.request(
                request.method, request.path_qs.removeprefix("/tidings"), content=await request.read(),
                headers={"content-type": request.headers.get("content-type", "text/plain")})
        headers = {k: v for k, v in r.headers.items() if k in ("content-type", "content-security-policy")}
        return web.Response(status=r.status_code, body=r.content, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", site)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", asked
    finally:
        await runner.cleanup()


async def test_behind_a_proxy_under_a_path_the_script_finds_its_api(page, widget_api):
    """A publisher serving Tidings under /tidings/ of its own site (a reverse proxy) had to
    give every container data-api: the script asked its origin's /v1/related, the site's own
    404, and no block showed. The API is where the script came from, path and all."""
    html = host_page("", scripts=["/tidings/widget.js?v=3"])
    async with proxy_under_tidings(widget_api, html) as (base, asked):
        cards = await open_with_block(page, f"{base}/article.html")
        assert await cards.count() == 4
        reader = await reader_of(page)
        assert len(await widget_api.stored_events(reader, 4)) == 4  # its impressions came through
    assert "/tidings/v1/related" in asked and "/tidings/v1/events" in asked
    assert not [p for p in asked if p.startswith("/v1/")]
    assert page.page_errors == []


async def test_a_module_script_finds_its_api(page, widget_api, publisher):
    """<script type="module"> has no document.currentScript: the widget knew no API, asked
    nothing, and the container stayed empty without a word. Its own tag is the page's script
    whose path ends in /widget.js."""
    html = host_page(widget_api.base_url, scripts=[]).replace(
        "</body>", f'<script type="module" src="{widget_api.base_url}/widget.js"></script></body>')
    cards = await open_with_block(page, publisher.page("module.html", html))
    assert await cards.count() == 4
    assert asked_urls(page, "/v1/related") == [SEED_URL]
    assert page.page_errors == []


async def test_a_module_script_is_told_from_another_vendors_widget_js(page, widget_api, publisher):
    """A module script took the page's first module script whose path ends in /widget.js for
    its own: another vendor's before it, and its blocks asked that site's /v1/related (a 404).
    Another vendor's after it must not be taken either."""
    publisher.asset("vendor/widget.js", b"window.vendorRan = (window.vendorRan || 0) + 1;",
                    "text/javascript")
    publisher.asset("other/widget.js", b"window.vendorRan = (window.vendorRan || 0) + 1;",
                    "text/javascript")
    html = host_page(widget_api.base_url, scripts=[]).replace("</body>", (
        '<script type="module" src="vendor/widget.js"></script>'
        f'<script type="module" src="{widget_api.base_url}/widget.js"></script>'
        '<script type="module" src="other/widget.js"></script></body>'))
    cards = await open_with_block(page, publisher.page("two-widgets.html", html))
    assert await cards.count() == 4
    assert await page.evaluate("window.vendorRan") == 2  # the others really ran too
    assert asked_urls(page, "/v1/related") == [SEED_URL]
    assert page.page_errors == []


async def test_without_an_api_to_ask_the_console_says_so_once(page, widget_api, publisher):
    """An inlined script (no src) and containers without data-api: nothing to ask, and
    nothing said either. The console now says what to do, once however many containers."""
    warnings: list[str] = []
    page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
    html = host_page(widget_api.base_url, scripts=[]).replace(
        '<div id="related" data-tidings-related ></div>',
        '<div id="related" data-tidings-related></div><div data-tidings-related></div>')
    await page.goto(publisher.page("no-api.html", html))
    await page.add_script_tag(content=(STATIC_DIR / "widget.js").read_text(encoding="utf-8"))
    await settle(page)
    assert len(warnings) == 1, warnings
    assert "data-api" in warnings[0] and "/widget.js" in warnings[0]
    assert page.api_requests == []
    assert page.page_errors == []


async def test_the_demo_page_works_behind_a_proxy_under_a_path(page, widget_api):
    """/tidings/demo loaded /widget.js and /v1/stories from the site's root (its 404s): no
    block, and no link to a stored story's demo. Its own URLs are relative now."""
    async with proxy_under_tidings(widget_api, "") as (base, asked):
        await open_with_block(page, f"{base}/tidings/demo?url={quote(SEED_URL)}")
        await page.wait_for_function("!document.getElementById('try').hidden")
        link = await page.locator("#try-link").get_attribute("href")
    assert urlsplit(urljoin(f"{base}/tidings/demo", link)).path == "/tidings/demo"
    assert {"/tidings/widget.js", "/tidings/v1/stories", "/tidings/v1/related"} <= set(asked)
    assert [p for p in asked if not p.startswith("/tidings/")] == []
    assert page.page_errors == []


async def test_a_page_whose_dark_mode_is_another_stylesheet_gets_a_dark_block(
        page, widget_api, publisher):
    """A site switching to dark by swapping its stylesheet (a <link>'s href, an alternate one
    enabled) kept the block's dark text on its now dark page: only class changes on <html> or
    <body>, the OS setting and colour transitions were followed, and a swap is none of them."""
    publisher.asset("light.css", b"body{background:#fff;color:#111}", "text/css")
    publisher.asset("dark.css", b"body{background:#111;color:#eee}", "text/css")
    head = f'<link id="theme" rel="stylesheet" href="{publisher.base_url}/light.css">'
    await open_with_block(page, publisher.page("sheet-swap.html", host_page(
        widget_api.base_url, head=head)))
    related = page.locator("#related")
    theme = "c => c.shadowRoot.querySelector('.tdg-block').dataset.theme"

    async def becomes(expected: str) -> None:
        for _ in range(100):
            if await related.evaluate(theme) == expected:
                return
            await asyncio.sleep(0.05)
        assert await related.evaluate(theme) == expected

    assert await related.evaluate(theme) == "light"
    await page.evaluate(f"document.getElementById('theme').href = '{publisher.base_url}/dark.css'")
    await becomes("dark")
    await page.evaluate("document.getElementById('theme').remove()")
    await becomes("light")
    await page.evaluate(f"""document.head.insertAdjacentHTML('beforeend',
        '<link rel="stylesheet" href="{publisher.base_url}/dark.css?alt" disabled>')""")
    await settle(page)
    assert await related.evaluate(theme) == "light"
    await page.evaluate("document.querySelector('link[disabled]').disabled = false")
    await becomes("dark")
    assert page.page_errors == []


async def test_a_server_block_on_a_french_page_shows_french_dates(page, widget_api, publisher):
    """The server writes its dates in English ("6 Dec 2026"): a French page read "Dec" under
    every story once the widget had taken the block in. Now in the container's language."""
    fragment = await widget_api.fragment(SEED_URL)
    html = host_page(widget_api.base_url, html_attrs='lang="fr"').replace(
        '<div id="related" data-tidings-related ></div>',
        f'<div id="related" data-tidings-related>{fragment}</div>')
    await page.goto(publisher.page("fragment-fr.html", html))
    await page.wait_for_function("document.querySelector('#related').shadowRoot")
    times = await page.locator("#related time").evaluate_all(
        "ts => ts.map(t => [t.textContent, t.dateTime])")
    french = await page.evaluate("""ds => ds.map(d => new Date(d).toLocaleDateString(
        'fr', {day: 'numeric', month: 'short', year: 'numeric'}))""", [when for _, when in times])
    assert times and [text for text, _ in times] == french
    assert not any(re.search(r"[A-Z][a-z]{2} \d{4}$", text) for text, _ in times)
    assert page.page_errors == []


async def test_widget_byline_name_equals_the_server_rule(page):
    """The widget and the server fragment take the page's byline word off a stored name alike:
    the shared cases (tests/api/test_render.py) and generated ones, in any case."""
    from tests.api.test_render import BYLINE_CASES

    cases = [(author, by) for author, by, _ in BYLINE_CASES] + [
        (f"{a}{sep}{b}", by) for by in ("Par", "von", "Écrit par", "İ")
        for a in (by, by.upper(), by.lower(), "By", "Paris", "")
        for sep in (" ", "  ", "\t", "", ":") for b in ("Jean Roy", "par Léa", "")]
    got = await page.evaluate(widget_initials_js(
        "authors.map(([author, by]) => bylineName(author, by))"), cases)
    assert [(case, g) for case, g in zip(cases, got, strict=True) if g != byline_name(*case)] == []


async def test_a_stored_byline_word_is_not_said_twice_on_a_french_page(page, widget_api, publisher):
    """With data-by="Par", a story whose author was stored as "Par Priya Shah" (a French feed,
    not normalised) read "Par Par Priya Shah" to screen readers. The API's own answer, with
    that one author as such a feed gives it."""
    async def french_author(route):
        response = await route.fetch()
        block = await response.json()
        for card in block["related"]:
            card["author"] = (card["author"] or "").replace("By ", "PAR ")
        await route.fulfill(response=response, json=block)

    await page.route(re.compile(r".*/v1/related\?.*"), french_author)
    html = host_page(widget_api.base_url, html_attrs='lang="fr"').replace(
        '<div id="related" data-tidings-related ></div>',
        '<div id="related" data-tidings-related data-by="Par"></div>')
    cards = await open_with_block(page, publisher.page("byline-fr.html", html))
    said = await cards.locator(".tdg-sr").all_inner_texts()
    assert "Par Priya Shah, Political correspondent" in said
    assert not [s for s in said if s.lower().startswith("par par")]
    assert page.page_errors == []


async def test_server_dates_are_the_browsers_in_each_language(page, widget_api, publisher):
    """/v1/widget?lang= writes a short date as the browser does in that language (the widget
    writes its own over a server block's, and nothing should change then), and a page without
    the script shows it: not "6 Dec 2026" on a French page."""
    from api.render import render_block_html

    days = [f"2026-{month:02d}-{day:02d}T12:00:00+00:00" for month in range(1, 13) for day in (1, 28)]
    block = {"related": [{"title": "t", "published_at": d} for d in days]}
    for language in DATE_FORMATS.keys() - {"en"}:
        ours = re.findall(r"<time [^>]*>([^<]+)</time>", render_block_html(block, dates=language))
        theirs = await page.evaluate("""([ds, lang]) => ds.map(d => new Date(d).toLocaleDateString(
            lang, {day: 'numeric', month: 'short', year: 'numeric', timeZone: 'UTC'}))""",
                                     [days, language])
        assert ours == theirs, language
    fragment = await widget_api.fragment(SEED_URL, lang="de")
    html = host_page(widget_api.base_url, html_attrs='lang="de"', scripts=[]).replace(
        '<div id="related" data-tidings-related ></div>', f'<div id="related">{fragment}</div>')
    await page.goto(publisher.page("fragment-de.html", html))
    times = await page.locator("#related time").evaluate_all(
        "ts => ts.map(t => [t.textContent, t.dateTime])")
    german = await page.evaluate("""ds => ds.map(d => new Date(d).toLocaleDateString(
        'de', {day: 'numeric', month: 'short', year: 'numeric', timeZone: 'UTC'}))""",
                                 [when for _, when in times])
    assert times and [text for text, _ in times] == german


async def test_the_heading_level_is_the_pages_to_choose(page, widget_api, publisher):
    """The block's heading was always an <h2>: under an article whose sections are h2s the
    page's outline put it beside them. data-heading-level 2 to 6, one digit as /v1/widget's
    heading_level= takes it (else 2: "03" too, which the fragment refuses), changed in place
    too; a server block asked with heading_level= keeps its level."""
    fragment = await widget_api.fragment(SEED_URL, heading_level="4")
    html = host_page(widget_api.base_url).replace(
        '<div id="related" data-tidings-related ></div>',
        '<div id="related" data-tidings-related data-heading-level="3"></div>'
        '<div id="odd" data-tidings-related data-heading-level="7"></div>'
        '<div id="zero" data-tidings-related data-heading-level="03"></div>'
        f'<div id="server" data-tidings-related data-heading-level="4">{fragment}</div>')
    await open_with_block(page, publisher.page("heading-level.html", html))
    await page.wait_for_selector("#odd .tdg-card")
    levels = """c => [...c.shadowRoot.querySelectorAll('.tdg-heading')].map(h => h.localName)"""
    assert await page.locator("#related").evaluate(levels) == ["h3"]
    assert await page.locator("#odd").evaluate(levels) == ["h2"]
    await page.wait_for_selector("#zero .tdg-card")
    assert await page.locator("#zero").evaluate(levels) == ["h2"]
    assert await page.locator("#server").evaluate(levels) == ["h4"]
    assert await page.locator("#related").get_by_role(
        "heading", level=3, name="Related stories").count() == 1
    await page.locator("#related").evaluate("c => c.setAttribute('data-heading-level', '5')")
    await page.wait_for_function(
        "document.querySelector('#related').shadowRoot.querySelector('h5.tdg-heading')")
    assert page.page_errors == []


async def test_the_byline_and_the_site_are_apart_in_the_text(page, widget_api, publisher):
    """The widget's meta line had no space between its parts: its text, which screen readers
    join and reader modes copy, read "By Priya Shah, Political correspondentbbc.co.uk". Now as the
    server's fragment writes it (the dates aside: the widget's are relative)."""
    no_time = """c => [...c.querySelectorAll('.tdg-meta')].map(m => {
        const copy = m.cloneNode(true);
        copy.querySelectorAll('time, .tdg-sep').forEach(t => t.remove());
        return copy.textContent.trim(); })"""
    fragment = await widget_api.fragment(SEED_URL)
    await page.goto(publisher.page("server-meta.html", host_page(
        widget_api.base_url, scripts=[]).replace(
        '<div id="related" data-tidings-related ></div>', f'<div id="related">{fragment}</div>')))
    server = await page.locator("#related").evaluate(no_time)
    await open_with_block(page, publisher.page("meta.html", host_page(widget_api.base_url)))
    ours = await page.locator("#related").evaluate(f"c => ({no_time})(c.shadowRoot)")
    assert "PS By Priya Shah, Political correspondent bbc.co.uk" in ours
    assert ours == server
    assert page.page_errors == []


async def fixed_times(page, times: list[str]) -> None:
    """The API's own answer, its stories dated `times` in turn."""
    async def dated(route):
        response = await route.fetch()
        block = await response.json()
        for card, at in zip(block["related"], times * 4, strict=False):
            card["published_at"] = at
        await route.fulfill(response=response, json=block)

    await page.route(re.compile(r".*/v1/related\?.*"), dated)


async def test_dates_keep_their_own_direction_and_a_language_without_words_gets_iso(
        page, widget_api, publisher):
    """A Persian date in a left-to-right block ("۳ ساعت پیش", "۱۶ آذر ۱۴۰۳") was laid out with
    its number on the wrong side, as Persian digits take the direction before them; and a
    language the browser has no words for (Pashto) got English, "hours ago 3" on its
    right-to-left page. Each date takes its own direction; such a language gets 2024-12-06,
    as the server writes it."""
    from datetime import UTC, datetime, timedelta

    hours_ago = (datetime.now(UTC) - timedelta(hours=3)).isoformat()
    await fixed_times(page, [hours_ago, "2024-12-06T10:00:00Z"])
    html = host_page(widget_api.base_url).replace(
        '<div id="related" data-tidings-related ></div>',
        '<div id="related" lang="fa" data-tidings-related></div>'
        '<div id="pashto" lang="ps" dir="rtl" data-tidings-related></div>')
    await open_with_block(page, publisher.page("dates-dir.html", html))
    await page.wait_for_selector("#pashto .tdg-card")
    # Where the first and last words of each date are drawn, and the block's direction.
    drawn = """c => [...c.shadowRoot.querySelectorAll('time')].slice(0, 2).map(t => {
        const text = t.firstChild, words = text.data.split(' '), at = i => {
            const range = document.createRange(), start = text.data.indexOf(words[i]);
            range.setStart(text, start);
            range.setEnd(text, start + words[i].length);
            return range.getBoundingClientRect().left; };
        return [text.data, at(0), at(words.length - 1)]; })"""
    persian = await page.locator("#related").evaluate(drawn)
    assert [re.fullmatch(r"۳ ساعت پیش|۱۶ آذر ۱۴۰۳", t) is not None for t, _, _ in persian] == [True] * 2
    # Read from the right: the first word is drawn right of the last.
    assert [first > last for _, first, last in persian] == [True, True], persian
    if await page.evaluate("Intl.DateTimeFormat.supportedLocalesOf('ps').length"):
        pytest.skip("this Chromium writes Pashto dates")
    pashto = [t for t, _, _ in await page.locator("#pashto").evaluate(drawn)]
    local = await page.evaluate("""ds => ds.map(d => new Date(d).toLocaleDateString(
        'sv', {year: 'numeric', month: '2-digit', day: '2-digit'}))""", [hours_ago, "2024-12-06T10:00:00Z"])
    assert pashto == local
    assert page.page_errors == []


async def test_a_container_in_a_shadow_root_takes_the_hosts_language(page, widget_api, publisher):
    """closest('[lang]') stops at a shadow root: a French component's block on an English page
    got English times, where HTML gives the shadow tree its host's language."""
    html = host_page(widget_api.base_url).replace(
        '<div id="related" data-tidings-related ></div>',
        '<div id="host" lang="fr"><template shadowrootmode="open">'
        '<div id="inner" data-tidings-related></div></template></div>')
    await page.goto(publisher.page("shadow-lang.html", html))
    times = """() => { const c = document.getElementById('host').shadowRoot.getElementById('inner');
        return c.shadowRoot ? [...c.shadowRoot.querySelectorAll('time')].map(t => t.textContent) : []; }"""
    await page.wait_for_function(f"({times})().length > 0")
    said = await page.evaluate(times)
    assert all(re.fullmatch(r"maintenant|il y a \d+ (minutes?|heures?)", t) for t in said), said
    assert page.page_errors == []
