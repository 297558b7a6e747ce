"""Servers for the widget browser tests: a publisher's page on one origin, the API on another.

Two loopback origins (two ports on 127.0.0.1) so the widget runs cross-origin, as on a real
publisher site, and CORS is exercised. `publisher` stays; `widget_api` is a stand-in until the
real app (api/app.py) lands. Tests only use what both can offer over HTTP: `base_url`, the
cards it answers with (`cards`), the URLs it was asked about (`related_requests`), the event
bodies it received (`events`, `wait_for_events`) and an outage switch (`outage`). Swapping in
api.app = serving `create_app(svc)` with a thin ASGI wrapper that records those three and
answers 500 / drops the connection / sends HTML while `outage` is set.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web

REPO_ROOT = Path(__file__).resolve().parents[2]
STATIC_DIR = REPO_ROOT / "api" / "static"
SHARED_DATA = REPO_ROOT / ".." / "shared" / "data"
BBC_POLITICS = SHARED_DATA / "bbc-news" / "politics"

HOSTILE_TITLE = "<script>window.__pwned=1</script>"
HOSTILE_ID = "hostile-1"
# Real headlines and first paragraphs from the BBC News dataset (research use, read in place).
BBC_FILES = ("001.txt", "002.txt", "004.txt", "005.txt")
AUTHORS = ("Alex Morgan", "By Priya Shah, Political correspondent", "Tom O'Neill", "")

_CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Max-Age": "600",
}


def _thumb_svg(hue: int) -> bytes:
    """A stand-in thumbnail (no network for real images): a flat two-tone landscape."""
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="320" height="180" viewBox="0 0 320 180">'
        f'<rect width="320" height="180" fill="hsl({hue},38%,46%)"/>'
        f'<circle cx="250" cy="52" r="24" fill="hsl({hue},60%,80%)"/>'
        f'<path d="M0 140 L90 80 L170 130 L230 95 L320 150 V180 H0Z" fill="hsl({hue},35%,28%)"/>'
        "</svg>"
    ).encode()


def bbc_cards(api_base: str) -> list[dict]:
    """Cards for a few BBC politics stories; images point at the stand-in's own thumbnails."""
    cards = []
    for n, (name, author) in enumerate(zip(BBC_FILES, AUTHORS, strict=True)):
        lines = (BBC_POLITICS / name).read_text(encoding="utf-8").split("\n")
        body = [line for line in lines[1:] if line.strip()]
        cards.append({
            "id": f"bbc-politics-{name.removesuffix('.txt')}",
            "url": f"https://www.bbc.co.uk/news/politics/{name.removesuffix('.txt')}",
            "title": lines[0].strip(),
            "summary": body[0] if body else "",
            "site": "BBC News",
            "source": "bbc-politics",
            "category": "politics",
            "author": author or None,
            "image_url": f"{api_base}/thumbs/{n}.svg" if n != 2 else None,
            "published_at": "2005-02-14T09:30:00+00:00",
            "score": round(0.9 - n * 0.1, 2),
            "reason": "same topic",
        })
    return cards


def hostile_card() -> dict:
    """Every field a Card can carry, each trying to run script or leave its attribute."""
    return {
        "id": HOSTILE_ID,
        "url": "javascript:window.__pwned=2",
        "title": HOSTILE_TITLE,
        "summary": '<img src=x onerror="window.__pwned=3">"><svg onload=window.__pwned=4>',
        "site": "<b onmouseover=window.__pwned=5>Evil</b>",
        "source": "evil",
        "category": "politics",
        "author": '"><script>window.__pwned=6</script>',
        "image_url": "javascript:window.__pwned=7",
        "published_at": "not a date",
        "score": 0.1,
        "reason": "<i>why</i>",
    }


@dataclass
class StandInApi:
    """What the browser tests need from an API server, over HTTP only."""

    base_url: str = ""
    cards: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    related_requests: list[str] = field(default_factory=list)
    # None: healthy; "500": API calls answer 500; "close": the connection is dropped;
    # "garbage": 200 with an HTML page instead of JSON (a misrouted proxy, a captive portal).
    outage: str | None = None

    async def wait_for_events(self, count: int, timeout_s: float = 5.0) -> list[dict]:
        """The events received so far, once at least `count` of them have arrived."""
        loop = asyncio.get_running_loop()
        deadline_at = loop.time() + timeout_s
        while len(self.flat_events()) < count and loop.time() < deadline_at:
            await asyncio.sleep(0.05)
        return self.flat_events()

    def flat_events(self) -> list[dict]:
        flat: list[dict] = []
        for body in self.events:
            flat.extend(body.get("events", [body]))
        return flat


def _stand_in_app(state: StandInApi) -> web.Application:
    @web.middleware
    async def cors_and_outage(request: web.Request, handler):
        if request.method == "OPTIONS":
            return web.Response(status=204, headers=_CORS_HEADERS)
        if state.outage and request.path.startswith("/v1/"):
            if state.outage == "close":
                request.transport.close()
                raise asyncio.CancelledError  # nothing more to say on a closed connection
            if state.outage == "garbage":
                response = web.Response(text="<html>Gateway says hi</html>", content_type="text/html")
            else:
                response = web.json_response(
                    {"error": {"code": "unavailable", "message": "outage"}}, status=500
                )
        else:
            response = await handler(request)
        response.headers.update(_CORS_HEADERS)
        return response

    async def widget_js(_request: web.Request) -> web.Response:
        return web.Response(
            body=(STATIC_DIR / "widget.js").read_bytes(),
            content_type="application/javascript",
            charset="utf-8",
        )

    async def related(request: web.Request) -> web.Response:
        state.related_requests.append(request.query.get("url", ""))
        k = int(request.query.get("k", "4"))
        return web.json_response({
            "article": {"url": request.query.get("url"), "title": "Seed"},
            "related": state.cards[:k],
            "took_ms": 1,
        })

    async def events(request: web.Request) -> web.Response:
        # Beacons arrive as text/plain: read the body as JSON whatever the Content-Type.
        state.events.append(json.loads(await request.text()))
        return web.json_response({"accepted": len(state.events[-1].get("events", [1]))})

    async def thumb(request: web.Request) -> web.Response:
        hue = (int(request.match_info["n"]) * 67 + 200) % 360
        return web.Response(body=_thumb_svg(hue), content_type="image/svg+xml")

    app = web.Application(middlewares=[cors_and_outage])
    app.router.add_get("/widget.js", widget_js)
    app.router.add_get("/v1/related", related)
    app.router.add_post("/v1/events", events)
    app.router.add_get("/thumbs/{n:\\d+}.svg", thumb)
    return app


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def widget_api() -> AsyncIterator[StandInApi]:
    """Stand-in until the real app lands; the lead swaps it for api.app.

    A minimal aiohttp server on 127.0.0.1: GET /widget.js from api/static, GET /v1/related
    answering a block of real BBC politics headlines plus one hostile card, POST /v1/events
    recording bodies, CORS on everything, and `outage` ("500", "close", "garbage") for failure
    tests.
    """
    if not BBC_POLITICS.is_dir():
        pytest.skip(f"shared test data not found at {BBC_POLITICS} (needs ../shared/data)")
    state = StandInApi()
    runner, state.base_url = await _serve(_stand_in_app(state))
    state.cards = [*bbc_cards(state.base_url)[:2], hostile_card(), *bbc_cards(state.base_url)[2:]]
    try:
        yield state
    finally:
        await runner.cleanup()


@dataclass
class Publisher:
    """A publisher's site on its own origin: register host pages, get their URLs."""

    base_url: str = ""
    pages: dict[str, str] = field(default_factory=dict)

    def page(self, name: str, html: str) -> str:
        self.pages[name] = html
        return f"{self.base_url}/{name}"


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def publisher() -> AsyncIterator[Publisher]:
    """Serves host pages registered with `publisher.page(name, html)` on a second port."""
    state = Publisher()

    async def page(request: web.Request) -> web.Response:
        html = state.pages.get(request.match_info["name"])
        if html is None:
            raise web.HTTPNotFound()
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/{name}", page)
    runner, state.base_url = await _serve(app)
    try:
        yield state
    finally:
        await runner.cleanup()
