"""A local web site for collector and end-to-end tests: real HTTP on 127.0.0.1, no internet.

Usage::

    async with LocalSite() as site:
        site.route("/feed.xml", body=b"<rss/>", etag='"v1"')
        async with Fetcher(resolver=LoopbackResolver()) as fetcher:
            await fetcher.fetch(site.url("/feed.xml"))                  # http://127.0.0.1:PORT/…
            await fetcher.fetch(site.rewrite("https://feeds.bbci.co.uk/news/rss.xml"))
            # -> http://feeds.bbci.co.uk:PORT/news/rss.xml, resolved to 127.0.0.1

Serving real URLs from config: `LoopbackResolver` maps every host name to 127.0.0.1, so
`site.rewrite(url)` only swaps scheme and port (https -> http, because the site speaks plain
HTTP) and keeps host and path; the site answers by path whatever the Host header says (routes
may also be bound to one host). `LoopbackResolver(port=site.port)` additionally redirects every
port to the site, so plain `http://host/path` URLs work unchanged (https ones still need
`rewrite`, since there is no TLS here).

Built in (besides your routes):
  /data/<path>          files from <repo>/../shared/data (ETag/Last-Modified/304 by aiohttp)
  /robots.txt           404 until `site.set_robots(text)`
  /redirect?to=URL&status=302   one redirect;  /redirect-loop  a -> b -> a ...
  /redirect-chain/<n>   n redirects (302) then 200 "end of chain"
  /slow                 stalls before the headers;  /slow-body  headers, then stalls
  /trickle              headers and the start of a feed, then a byte a second for an hour
  /huge                 endless body, no Content-Length;  /status/<code>  that status
  /gzip, /brotli, /deflate  a known text (`COMPRESSED_TEXT`) compressed that way
`site.requests` logs every request as (method, path_qs, headers); `site.peak_in_flight`
is the most requests the server was handling at once (for concurrency caps).
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import NamedTuple

import brotli
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.typedefs import Handler
from multidict import CIMultiDict, CIMultiDictProxy

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA_DIR = REPO_ROOT / ".." / "shared" / "data"
COMPRESSED_TEXT = ("Tidings compression check. " * 200).encode()
_STALL_S = 3600.0


class RequestRecord(NamedTuple):
    method: str
    path: str  # path and query string
    headers: CIMultiDictProxy[str]


@dataclass
class Route:
    """One programmed answer; `hits` counts requests served by it."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    etag: str | None = None
    last_modified: str | None = None
    content_type: str | None = None
    compress: str | None = None  # "gzip" | "deflate" | "br"
    host: str | None = None  # answer only for this Host (without port)
    hits: int = 0


def _not_modified(request: web.Request, route: Route) -> bool:
    """RFC 9110 13.1: If-None-Match wins over If-Modified-Since when both are sent."""
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None and route.etag is not None:
        tags = {tag.strip() for tag in if_none_match.split(",")}
        return "*" in tags or route.etag in tags or f"W/{route.etag}" in tags
    if_modified_since = request.headers.get("If-Modified-Since")
    if if_modified_since and route.last_modified:
        try:
            return parsedate_to_datetime(route.last_modified) <= parsedate_to_datetime(
                if_modified_since
            )
        except (TypeError, ValueError):
            return False
    return False


def _compress(body: bytes, how: str | None) -> bytes:
    if how == "gzip":
        return gzip.compress(body)
    if how == "deflate":
        return zlib.compress(body)
    if how == "br":
        return brotli.compress(body)
    return body


class LocalSite:
    """An aiohttp.web app on 127.0.0.1 with a random port; an async context manager."""

    def __init__(self, data_dir: Path | None = None):
        self.data_dir = (data_dir or SHARED_DATA_DIR).resolve()
        self.routes: dict[str, list[Route]] = {}
        self.requests: list[RequestRecord] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self.robots_txt: str | None = None
        self.port = 0
        self._runner: web.AppRunner | None = None

    # -- lifecycle -----------------------------------------------------------------

    async def __aenter__(self) -> LocalSite:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        app = web.Application(middlewares=[self._track])
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        # handler_cancellation: a client that gives up on /slow ends the stalled handler too.
        self._runner = web.AppRunner(
            app, handle_signals=False, shutdown_timeout=0.1, handler_cancellation=True
        )
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- programming ---------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def data_url(self, relative_path: str, host: str = "127.0.0.1") -> str:
        """URL of a file under ../shared/data, e.g. data_url('news-feeds/rss-parser/x.rss')."""
        return self.url("/data/" + relative_path.lstrip("/"), host)

    def rewrite(self, url: str) -> str:
        """https://feeds.example/x -> http://feeds.example:PORT/x (needs LoopbackResolver)."""
        from yarl import URL

        parsed = URL(url)
        return str(parsed.with_scheme("http").with_port(self.port))

    def route(
        self,
        path: str,
        status: int = 200,
        body: bytes | str = b"",
        headers: Mapping[str, str] | None = None,
        delay_s: float = 0.0,
        etag: str | None = None,
        last_modified: str | None = None,
        *,
        content_type: str | None = None,
        compress: str | None = None,
        host: str | None = None,
    ) -> Route:
        """Answer GETs of `path` (path only; add `host` to bind to one Host name).

        Replaces an earlier route for the same path and host. ETag/Last-Modified are sent and
        honoured: a matching If-None-Match / If-Modified-Since gets a 304.
        """
        route = Route(
            status=status,
            body=body.encode() if isinstance(body, str) else body,
            headers=dict(headers or {}),
            delay_s=delay_s,
            etag=etag,
            last_modified=last_modified,
            content_type=content_type,
            compress=compress,
            host=host.lower() if host else None,
        )
        kept = [r for r in self.routes.get(path, []) if r.host != route.host]
        # Host-bound routes first, so they win over the catch-all one.
        self.routes[path] = sorted([*kept, route], key=lambda r: r.host is None)
        return route

    def set_robots(self, text: str | None) -> None:
        """Serve this robots.txt; None makes /robots.txt a 404 again."""
        self.robots_txt = text

    def reset_log(self) -> None:
        self.requests.clear()
        self.peak_in_flight = 0

    def paths_requested(self) -> list[str]:
        return [record.path for record in self.requests]

    # -- serving -------------------------------------------------------------------

    @web.middleware
    async def _track(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append(RequestRecord(request.method, request.path_qs, request.headers))
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            return await handler(request)
        finally:
            self.in_flight -= 1

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        host = (request.host or "").rsplit(":", 1)[0].lower()
        for route in self.routes.get(path, []):
            if route.host is None or route.host == host:
                return await self._serve_route(request, route)
        if path == "/robots.txt":
            if self.robots_txt is None:
                raise web.HTTPNotFound()
            return web.Response(text=self.robots_txt, content_type="text/plain")
        if path.startswith("/data/"):
            return self._serve_data(path.removeprefix("/data/"))
        if path == "/redirect":
            status = int(request.query.get("status", "302"))
            return web.Response(status=status, headers={"Location": request.query["to"]})
        if path in ("/redirect-loop", "/redirect-loop-b"):
            target = "/redirect-loop-b" if path == "/redirect-loop" else "/redirect-loop"
            return web.Response(status=302, headers={"Location": target})
        if path.startswith("/redirect-chain/"):
            remaining = int(path.rsplit("/", 1)[1])
            if remaining <= 0:
                return web.Response(text="end of chain")
            return web.Response(
                status=302, headers={"Location": f"/redirect-chain/{remaining - 1}"}
            )
        if path == "/slow":
            await asyncio.sleep(_STALL_S)
        if path == "/slow-body":
            response = web.StreamResponse(headers={"Content-Type": "text/plain"})
            await response.prepare(request)
            await response.write(b"a little, then nothing")
            await asyncio.sleep(_STALL_S)
            return response
        if path == "/huge":
            return await self._serve_endless(request)
        if path == "/trickle":
            return await self._serve_trickle(request)
        if path.startswith("/status/"):
            return web.Response(status=int(path.rsplit("/", 1)[1]), text="status page")
        encodings = {"/gzip": "gzip", "/deflate": "deflate", "/brotli": "br"}
        if path in encodings:
            how = encodings[path]
            return web.Response(
                body=_compress(COMPRESSED_TEXT, how),
                headers={"Content-Encoding": how, "Content-Type": "text/plain"},
            )
        raise web.HTTPNotFound()

    async def _serve_route(self, request: web.Request, route: Route) -> web.StreamResponse:
        route.hits += 1
        if route.delay_s:
            await asyncio.sleep(route.delay_s)
        headers = CIMultiDict(route.headers)
        if route.etag is not None:
            headers["ETag"] = route.etag
        if route.last_modified is not None:
            headers["Last-Modified"] = route.last_modified
        if route.status == 200 and _not_modified(request, route):
            return web.Response(status=304, headers=headers)
        if route.content_type is not None:
            headers["Content-Type"] = route.content_type
        if route.compress:
            headers["Content-Encoding"] = route.compress
        return web.Response(
            status=route.status, body=_compress(route.body, route.compress), headers=headers
        )

    def _serve_data(self, relative: str) -> web.StreamResponse:
        target = (self.data_dir / relative).resolve()
        if not target.is_relative_to(self.data_dir) or not target.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(target)

    async def _serve_endless(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        chunk = b"x" * 65536
        try:
            while True:
                await response.write(chunk)
        except (ConnectionError, RuntimeError):
            pass  # the client hung up, which is the point
        return response


    async def _serve_trickle(self, request: web.Request) -> web.StreamResponse:
        """Never idle long enough for a read timeout, never done: only a total timeout (or
        a stop) ends its fetch."""
        response = web.StreamResponse(headers={"Content-Type": "application/rss+xml"})
        await response.prepare(request)
        try:
            await response.write(b'<?xml version="1.0"?><rss version="2.0"><channel>')
            for _ in range(int(_STALL_S)):
                await asyncio.sleep(1)
                await response.write(b" ")
        except (ConnectionError, RuntimeError):
            pass  # the client hung up
        return response


class LoopbackResolver(AbstractResolver):
    """Resolves every host name to 127.0.0.1 (after aiohttp's test resolver idea).

    `port=None` keeps the port the URL asked for; an int sends every connection there, so
    `http://feeds.bbci.co.uk/…` reaches a LocalSite without rewriting the URL.
    """

    def __init__(self, port: int | None = None):
        self.port = port
        self.resolved: list[str] = []  # host names asked for, for assertions

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.resolved.append(host)
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": self.port if self.port is not None else port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        pass


class FixedResolver(AbstractResolver):
    """Resolves the names it is given to fixed addresses; others fail like NXDOMAIN."""

    def __init__(self, addresses: Mapping[str, list[str]], port: int | None = None):
        self.addresses = {name.lower(): list(ips) for name, ips in addresses.items()}
        self.port = port

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        ips = self.addresses.get(host.lower())
        if not ips:
            raise OSError(f"no such host: {host}")
        return [
            {
                "hostname": host,
                "host": ip,
                "port": self.port if self.port is not None else port,
                "family": socket.AF_INET6 if ":" in ip else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for ip in ips
        ]

    async def close(self) -> None:
        pass


def shared_data_available() -> bool:
    return SHARED_DATA_DIR.is_dir()
