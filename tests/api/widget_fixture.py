"""Servers for the widget browser tests: a publisher's page on one origin, the real API on another.

Two loopback origins (two ports on 127.0.0.1) so the widget runs cross-origin, as on a real
publisher site, and CORS is exercised. `widget_api` is the real app (api.app.create_app over
SQLite, the FAISS index and the hashing embedder, BBC stories imported, see conftest.make_stack)
plus stories made for these tests: a hostile one whose every field tries to run script, and
bylines and thumbnails (served by the publisher, like a CDN) on a few BBC stories. The only
thing between the browser and the app is `OutageSwitch`, which passes everything through
unless a test sets an outage.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest_asyncio
from aiohttp import web

from aggregator.importer import draft_from_record
from aggregator.model import StoryDraft
from aggregator.store import EventRecord, utcnow
from tests.api.conftest import make_stack
from tests.datasets import bbc_records

REPO_ROOT = Path(__file__).resolve().parents[2]
STATIC_DIR = REPO_ROOT / "api" / "static"

BBC_LIMIT = 10  # BBC stories per category: enough for blocks, quick to index
HOSTILE_TITLE = "<script>window.__pwned=1</script>"
# Host pages are "about" stored BBC stories (the corpus has no real URLs: tests/datasets.py).
SEED_URL = "https://www.bbc.co.uk/news/politics-001"  # Labour plans maternity pay rise
SECOND_URL = "https://www.bbc.co.uk/news/politics-003"  # Hewitt decries 'career sexism'
# The publisher under a name that browsers resolve to loopback themselves (RFC 6761, so its
# pages may call the API on 127.0.0.1) and that the API may fetch: the API's resolver sends
# every name to the article site (tests/localsite.py), which serves real articles under
# /data/readability-news-pages/. A page the publisher serves at such a path is "about" that
# article by its own address, with no canonical link or data-url needed.
LOOPBACK_HOST = "news.localhost"
# Bylines and thumbnails for BBC stories that appear in the seed's block (hashing embedder,
# deterministic); the tests check this mix is really there before relying on it.
DECORATIONS = {
    "https://www.bbc.co.uk/news/politics-003": ("By Priya Shah, Political correspondent", 1),
    "https://www.bbc.co.uk/news/politics-002": ("Alex Morgan", 2),
    "https://www.bbc.co.uk/news/politics-007": ("", None),
    "https://www.bbc.co.uk/news/politics-004": ("***", None),  # a byline without a letter
}


def _thumb_svg(hue: int) -> bytes:
    """A thumbnail without network: a flat two-tone landscape."""
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="320" height="180" viewBox="0 0 320 180">'
        f'<rect width="320" height="180" fill="hsl({hue},38%,46%)"/>'
        f'<circle cx="250" cy="52" r="24" fill="hsl({hue},60%,80%)"/>'
        f'<path d="M0 140 L90 80 L170 130 L230 95 L320 150 V180 H0Z" fill="hsl({hue},35%,28%)"/>'
        "</svg>"
    ).encode()


def hostile_draft(seed_text: str) -> StoryDraft:
    """Every field a story can carry trying to run script or leave its attribute.

    Stored as-is (no normalizer on this path), so a `javascript:` image URL reaches the API's
    JSON and only the widget stands between it and the page. The story URL must be http(s) to
    be stored at all; it tries to break out of the href instead. Its text is half of the seed
    story's, so it ranks in the seed's block without being a copy of it.
    """
    paras = seed_text.split("\n\n")
    return StoryDraft(
        url='https://evil.example/news/1?q="><script>window.__pwned=2</script>',
        title=HOSTILE_TITLE,
        summary='<img src=x onerror="window.__pwned=3">"><svg onload=window.__pwned=4>',
        text="\n\n".join(paras[len(paras) // 2:]),
        author='"><script>window.__pwned=6</script>',
        image_url="javascript:window.__pwned=7",
        site="<b onmouseover=window.__pwned=5>Evil</b>",
        source="evil",
        category="politics",
    )


def story_drafts(records: list[dict], thumbs_base: str) -> list[StoryDraft]:
    """Extra drafts for make_stack: decorated copies of BBC stories (same URL: they replace
    the plain ones) and the hostile story."""
    now = utcnow()
    by_url = {r["url"]: r for r in records}
    drafts = []
    for url, (author, thumb) in DECORATIONS.items():
        image_url = f"{thumbs_base}/thumb-{thumb}.svg" if thumb is not None else ""
        drafts.append(dataclasses.replace(
            draft_from_record(by_url[url], now), author=author, image_url=image_url))
    drafts.append(hostile_draft(by_url[SEED_URL]["text"]))
    return drafts


class OutageSwitch:
    """ASGI wrapper around the real app: a pass-through unless `mode` is set.

    While `mode` is set, every /v1/ request fails: "500" answers a JSON error, "garbage"
    answers 200 with an HTML page (a misrouted proxy, a captive portal), "close" sends the
    headers and part of a body, then stops: uvicorn closes the connection mid-answer (an ASGI
    app cannot drop it before the first byte). Failures carry CORS headers so the browser sees
    the failure itself, not a CORS error.
    """

    def __init__(self, app):
        self.app = app
        self.mode: str | None = None

    async def __call__(self, scope, receive, send):
        if self.mode is None or scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        if self.mode == "500":
            status, ctype = 500, b"application/json"
            body = json.dumps({"error": {"code": "unavailable", "message": "outage"}}).encode()
        elif self.mode == "garbage":
            status, ctype, body = 200, b"text/html", b"<html>Gateway says hi</html>"
        elif self.mode == "close":
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"application/json"), (b"content-length", b"4096"),
                (b"access-control-allow-origin", b"*")]})
            await send({"type": "http.response.body", "body": b'{"related": [', "more_body": True})
            return
        else:
            raise ValueError(f"unknown outage mode {self.mode!r}")
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", ctype), (b"content-length", str(len(body)).encode()),
            (b"access-control-allow-origin", b"*")]})
        await send({"type": "http.response.body", "body": body})


@dataclass
class WidgetApi:
    """The real API as the browser tests see it: its URL, its services, an outage switch."""

    base_url: str
    svc: object
    switch: OutageSwitch

    @property
    def outage(self) -> str | None:
        return self.switch.mode

    @outage.setter
    def outage(self, mode: str | None) -> None:
        self.switch.mode = mode

    async def block(self, url: str, k: int = 4, **params: str) -> dict:
        """What GET /v1/related answers for `url` (the same request the widget makes), with
        the filters or reader in `params`."""
        async with httpx.AsyncClient(base_url=self.base_url, timeout=20) as client:
            r = await client.get("/v1/related", params={"url": url, "k": k, **params})
        r.raise_for_status()
        return r.json()

    async def stories(self, limit: int = 20) -> list[dict]:
        """The newest stored stories' Cards, GET /v1/stories."""
        async with httpx.AsyncClient(base_url=self.base_url, timeout=20) as client:
            r = await client.get("/v1/stories", params={"limit": limit})
        r.raise_for_status()
        return r.json()["items"]

    async def fragment(self, url: str, k: int = 4, **params: str) -> str:
        """The server-rendered block, GET /v1/widget, with its words or `lang` in `params`."""
        async with httpx.AsyncClient(base_url=self.base_url, timeout=20) as client:
            r = await client.get("/v1/widget", params={"url": url, "k": k, **params})
        r.raise_for_status()
        return r.text

    async def stored_events(self, reader: str, count: int, timeout_s: float = 10.0
                            ) -> list[EventRecord]:
        """The reader's events in the database once at least `count` are written (the API
        writes them in batches off the request path), oldest first."""
        loop = asyncio.get_running_loop()
        deadline_at = loop.time() + timeout_s
        while True:
            events = await self.svc.store.reader_events(reader)
            if len(events) >= count or loop.time() >= deadline_at:
                return sorted(events, key=lambda e: (e.at, e.story_id))
            await asyncio.sleep(0.05)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def widget_api(tmp_path_factory, shared_data, publisher) -> AsyncIterator[WidgetApi]:
    """The real app on loopback over BBC stories plus `story_drafts`, behind `OutageSwitch`."""
    for n in (1, 2):
        publisher.asset(f"thumb-{n}.svg", _thumb_svg(n * 67 + 200), "image/svg+xml")
    records = bbc_records(shared_data, limit=BBC_LIMIT)
    switches: list[OutageSwitch] = []

    def wrap(app):
        switches.append(OutageSwitch(app))
        return switches[-1]

    stack, server, task = await make_stack(
        tmp_path_factory.mktemp("widget"), shared_data, limit=BBC_LIMIT,
        extra_drafts=story_drafts(records, publisher.base_url), wrap_app=wrap,
        env={"TIDINGS_API_FETCH_ALLOW_HOSTS": f"news.example,{LOOPBACK_HOST}"})
    try:
        yield WidgetApi(stack.base_url, stack.svc, switches[0])
    finally:
        server.should_exit = True
        await task
        await stack.svc.close()
        await stack.site.close()


@dataclass
class Publisher:
    """A publisher's site on its own origin: register host pages and assets (any path), get
    their URLs.

    `headers` are sent with the page or asset (a Content-Security-Policy, say)."""

    base_url: str = ""
    pages: dict[str, tuple[bytes, str, dict[str, str]]] = field(default_factory=dict)

    def page(self, name: str, html: str, headers: dict[str, str] | None = None) -> str:
        return self.asset(name, html.encode(), "text/html", headers)

    def asset(self, name: str, body: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> str:
        self.pages[name] = (body, content_type, dict(headers or {}))
        return f"{self.base_url}/{name}"


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def publisher() -> AsyncIterator[Publisher]:
    """Serves what is registered with `publisher.page(name, html)` / `.asset` on its own port."""
    state = Publisher()

    async def page(request: web.Request) -> web.Response:
        hit = state.pages.get(request.match_info["name"])
        if hit is None:
            raise web.HTTPNotFound()
        return web.Response(body=hit[0], content_type=hit[1], headers=hit[2])

    app = web.Application()
    app.router.add_get("/{name:.+}", page)
    runner, state.base_url = await _serve(app)
    try:
        yield state
    finally:
        await runner.cleanup()
