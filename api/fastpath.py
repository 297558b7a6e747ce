"""Cached related blocks answered before FastAPI runs: the hot path of the widget and JSON API.

A pure ASGI layer, outermost in the app (api/app.py adds it last). A GET of a related route
(`/v1/stories/{id}/related`, `/v1/related`, `/v1/widget`) or of a search (`/v1/search`, cached
as blocks are) is looked up by its exact path,
query string and Origin header at the current corpus version. A hit replays the answer the app
gave for the same request: the same status line, header list and body bytes (so the two paths
cannot drift apart: CORS, security headers, ETag and Cache-Control all come from the app), or a
304 with those headers minus the body ones when If-None-Match carries the ETag. Everything else,
and every miss, goes to the app; a cacheable 200 from a related route is recorded on its way
out (a revalidation that misses asks the app for the whole answer, records it, then decides
on the 304 itself, so a worker that only sees revalidations still fills its cache).

What may be recorded is decided by the response, not the request: a 200 with an ETag and
`Cache-Control: public`. A personalised block (`reader=`) is `private, no-store`, so however its
query is spelled it is never replayed to someone else. Requests that name `reader` are not even
looked up. An answer is kept by the same rule as the app's own block cache
(api/blockcache.py): until a story arrives that could change its block, or one of the block's
candidates is removed, or the sources' weights are edited. The app tells which versions and
reach the answer was ranked with (`scope["tidings.block"]`); an answer without them is kept
only while the versions stay the same. Metrics: a hit counts as a
block-cache hit and is observed in the request histogram under its route, as the app's timing
middleware would. Rate limits: the app limits
related-by-URL calls because each may fetch a page; a recorded answer fetches nothing, so hits
are not charged (the app charges misses only, for the same reason).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from api.blockcache import Fresh, FreshCache, Versions
from recommender.reach import Reach

# Paths whose GET answers may be replayed. The story id is checked by the app on the first
# (recorded) request; a path the app refuses is never recorded, so this only has to be cheap.
CACHEABLE_PATH = re.compile(r"^/v1/(?:related|widget|search|stories/[0-9]{1,19}/related)$")
# Largest body kept: a card is ~450 bytes, so a block at max_k=50 ~25 kB; more is not a block.
MAX_BODY_BYTES = 256 * 1024
_BODY_HEADERS = frozenset({b"content-length", b"content-type"})


@dataclass(slots=True)
class Recorded:
    version: Versions  # the versions it was ranked at, moved on as each lookup finds it fresh
    reach: Reach | None  # its candidate pool (recommender/reach.py)
    route: str  # the route template, the label the app's metrics use
    etag: str
    start: dict  # the http.response.start message for a 200, replayed as is
    not_modified: dict  # the same for a 304: the headers without the body ones
    body: dict  # the http.response.body message


def recordable(status: int, headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The ETag of a response that may be replayed to anyone, else None."""
    if status != 200:
        return None
    etag = cache_control = None
    for name, value in headers:
        if name == b"etag":
            etag = value
        elif name == b"cache-control":
            cache_control = value
    if etag is None or cache_control is None or not cache_control.startswith(b"public"):
        return None
    return etag


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 13.1.2: does an If-None-Match header name this ETag? Weak comparison (W/ on
    either side ignored), a comma-separated list, or "*"."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    want = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == want for tag in if_none_match.split(","))


def revalidates(headers, etag: str) -> bool:
    """Whether a request's If-None-Match names this ETag: every line of the header, as one
    list (RFC 9110 5.3). The app read the first line only and the fast path the last, so a
    request whose proxy split the header got a 304 from one and a 200 from the other."""
    return etag_matches(", ".join(headers.getlist("if-none-match")), etag)


def not_modified(start: dict) -> dict:
    """The 304 start of a 200's start: its headers without the body ones, as the app's 304."""
    return {"type": "http.response.start", "status": 304,
            "headers": [(n, v) for n, v in start.get("headers", []) if n.lower() not in _BODY_HEADERS]}


def lookup_key(scope: dict) -> tuple | None:
    """The cache key of a request the fast path may answer, or None (go to the app)."""
    if scope["type"] != "http" or scope["method"] != "GET":
        return None
    path = scope["path"]
    if not CACHEABLE_PATH.match(path):
        return None
    query: bytes = scope.get("query_string", b"")
    # `reader=` asks for a personal block: straight to the app. (Other spellings of the name,
    # escaped or not, are safe too: the recorder refuses private answers.)
    if b"reader" in query:
        return None
    origins, inm = [], []
    for name, value in scope["headers"]:
        if name == b"origin":
            origins.append(value)
        elif name == b"if-none-match":
            inm.append(value)
    if len(origins) > 1:
        # CORS answers the first Origin: keyed by one of them, a request naming two would
        # record an answer for another origin than its key's, replayed to that origin's pages.
        return None
    return (path, query, origins[0] if origins else None), b", ".join(inm) if inm else None


class FastPath:
    """ASGI middleware: replay recorded related blocks, record new ones (see the module doc)."""

    def __init__(self, app, *, fresh: Fresh, metrics, size: int = 2048):
        self.app = app
        self.metrics = metrics
        self.cache = FreshCache(fresh, size)
        self._hit = metrics.block_cache.labels("hit")
        self._observers: dict[tuple[str, str], Callable[[float], None]] = {}

    async def __call__(self, scope, receive, send):
        found = lookup_key(scope)
        if found is None:
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        key, inm = found
        hit = self.cache.get(key)
        if hit is None:
            return await self._record(key, inm, scope, receive, send)
        status = await self._answer(hit, inm, send)
        self._hit.inc()
        self._observe(hit.route, status, time.perf_counter() - t0)

    async def _answer(self, hit: Recorded, inm: bytes | None, send) -> str:
        if inm is not None and etag_matches(inm.decode("latin-1"), hit.etag):
            await send(hit.not_modified)
            await send(_EMPTY_BODY)
            return "304"
        await send(hit.start)
        await send(hit.body)
        return "200"

    def _observe(self, route: str, status: str, seconds: float) -> None:
        observe = self._observers.get((route, status))
        if observe is None:  # labels() costs a lookup under a lock: bind each child once
            observe = self.metrics.requests.labels(route, "GET", status).observe
            self._observers[(route, status)] = observe
        observe(seconds)

    async def _record(self, key: tuple, inm: bytes | None, scope, receive, send) -> None:
        held: list[dict] = []
        if inm is not None:
            # A revalidation that misses here (another worker gave the ETag, or the entry was
            # dropped): the app is asked for the whole answer, without If-None-Match, so that
            # it can be recorded, and the 304 is decided below. Otherwise a worker that only
            # ever saw revalidations would send every one of them through the app.
            scope = {**scope, "headers": [h for h in scope["headers"] if h[0] != b"if-none-match"]}
        start: dict | None = None
        chunks: list[bytes] = []
        size = 0

        async def recording_send(message):
            nonlocal start, size
            kind = message["type"]
            if kind == "http.response.start":
                start = message if recordable(message["status"], message.get("headers", [])) else None
            elif kind == "http.response.body" and start is not None:
                body = message.get("body", b"")
                size += len(body)
                if size > MAX_BODY_BYTES:
                    start = None
                else:
                    chunks.append(body)
                    if not message.get("more_body", False):
                        self._keep(key, scope, start, b"".join(chunks))
            if inm is None:
                await send(message)
            else:
                held.append(message)

        await self.app(scope, receive, recording_send)
        if inm is not None:
            hit = self.cache.get(key)
            if hit is not None:
                await self._answer(hit, inm, send)
            else:
                await self._send_held(held, inm, send)

    @staticmethod
    async def _send_held(held: list[dict], inm: bytes, send) -> None:
        """The app's answer to a revalidation it was asked without If-None-Match, that was not
        recorded (an error, a private block, a block over MAX_BODY_BYTES): a 304 where the app
        would have given one, else the answer as it was. A block too big to keep went out whole
        on every revalidation, while the app without the fast path said 304."""
        start = held[0] if held else None
        if start is not None and start["status"] == 200:
            etag = next((v for n, v in start.get("headers", []) if n.lower() == b"etag"), None)
            if etag is not None and etag_matches(inm.decode("latin-1"), etag.decode("latin-1")):
                held = [not_modified(start), _EMPTY_BODY]
        for message in held:
            await send(message)

    def _keep(self, key: tuple, scope: dict, start: dict, body: bytes) -> None:
        ranked = scope.get("tidings.block")
        if ranked is None:  # the app said nothing of what the answer was ranked with
            return
        version, reach = ranked
        headers = [(bytes(n), bytes(v)) for n, v in start["headers"]]
        etag = recordable(200, headers).decode("latin-1")
        route = getattr(scope.get("route"), "path", scope["path"])
        self.cache.put(key, Recorded(
            version=version, reach=reach, route=route, etag=etag,
            start={"type": "http.response.start", "status": 200, "headers": headers},
            not_modified=not_modified({"headers": headers}),
            body={"type": "http.response.body", "body": body, "more_body": False},
        ), len(body) + sum(len(n) + len(v) for n, v in headers))


_EMPTY_BODY = {"type": "http.response.body", "body": b"", "more_body": False}
