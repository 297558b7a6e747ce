"""The HTTP API (FastAPI): stories, related blocks, widget, events, feeds, sources, health.

Handlers are thin: they validate, call a service, shape JSON. Contracts: DESIGN.md 4.3.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from aggregator.errors import BlockedAddress, FetchError, NotFound, StoreError
from api.cards import block_json, card, iso
from api.errors import ApiError, error_response
from api.events import EventIn, EventSink, parse_events, resolve
from api.metrics import Metrics
from api.ratelimit import RateLimiter
from api.render import render_block_html
from api.services import Services
from recommender.blocks import BadArticle, Block
from recommender.related import Filters

log = logging.getLogger("tidings.api")
STATIC = Path(__file__).with_name("static")
MAX_TEXT_CHARS = 100_000
MAX_URL_CHARS = 2048

# Security headers for HTML we serve; the widget fragment is meant to be embedded, so no
# frame-ancestors restriction on it.
HTML_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Content-Security-Policy": "default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'",
}


class RelatedRequest(BaseModel):
    title: str = Field(min_length=1, max_length=1000)
    text: str = Field(default="", max_length=MAX_TEXT_CHARS)
    url: str | None = Field(default=None, max_length=MAX_URL_CHARS)
    k: int | None = Field(default=None, ge=1, le=1000)
    category: str | None = None
    site: str | None = None
    exclude_site: str | None = None
    max_age_days: float | None = Field(default=None, gt=0, le=36500)


class BlockCache:
    """Serialized blocks keyed by request and corpus version: a new story invalidates all."""

    def __init__(self, size: int = 2048):
        self.size = size
        self._items: OrderedDict[tuple, tuple[bytes, str]] = OrderedDict()

    def get(self, key: tuple) -> tuple[bytes, str] | None:
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
        return hit

    def put(self, key: tuple, body: bytes) -> tuple[bytes, str]:
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        self._items[key] = (body, etag)
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return body, etag


def create_app(svc: Services) -> FastAPI:
    settings = svc.settings
    api = settings.api
    metrics = Metrics()
    cache = BlockCache()
    limiter = RateLimiter()
    app = FastAPI(
        title="Tidings",
        version="0.1.0",
        description="Related stories and personalized feeds from the news sites you collect.",
    )
    app.state.services = svc
    app.state.metrics = metrics
    app.add_middleware(
        CORSMiddleware, allow_origins=list(api.cors_origins), allow_methods=["GET", "POST", "PUT", "DELETE"],
        allow_headers=["*"], expose_headers=["ETag"], max_age=86400,
    )

    # ------------------------------------------------------------ errors

    @app.exception_handler(ApiError)
    async def _api_error(_req: Request, e: ApiError):
        return error_response(e.status, e.code, e.message, e.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, e: RequestValidationError):
        parts = []
        for err in e.errors()[:5]:
            loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path"))
            parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
        return error_response(422, "invalid_request", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, e: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        return error_response(e.status_code, code, str(e.detail))

    @app.exception_handler(StoreError)
    async def _store(_req: Request, e: StoreError):
        return error_response(503, "database_unavailable", "the database is unavailable; try again shortly",
                              {"Retry-After": "5"})

    @app.exception_handler(NotFound)
    async def _nf(_req: Request, e: NotFound):
        return error_response(404, "not_found", str(e))

    @app.middleware("http")
    async def _timing(request: Request, call_next):
        t0 = time.perf_counter()
        try:
            response = await call_next(request)
        except (OSError, ConnectionError) as e:  # database gone mid-request
            log.warning("api.db_unavailable path=%s error=%s", request.url.path, e)
            response = error_response(503, "database_unavailable",
                                      "the database is unavailable; try again shortly")
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics.requests.labels(path, request.method, str(response.status_code)).observe(
            time.perf_counter() - t0)
        return response

    # ------------------------------------------------------------ helpers

    def need_corpus():
        if svc.related is None or svc.corpus is None:
            raise ApiError(503, "not_ready", "the related-stories index is not loaded in this process")
        return svc.related

    def clamp_k(k: int | None, default: int | None = None) -> int:
        k = k or default or api.default_k
        if k > api.max_k:
            raise ApiError(422, "invalid_request", f"k must be at most {api.max_k}")
        return k

    def filters(category, site, exclude_site, max_age_days) -> Filters:
        return Filters(category or None, site or None, exclude_site or None, max_age_days)

    def require_key(request: Request) -> None:
        if not api.api_key:
            return
        given = request.headers.get("x-api-key") or ""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:]
        if given != api.api_key:
            raise ApiError(401, "unauthorized", "this endpoint needs the operator's API key "
                           "(header X-API-Key or Authorization: Bearer)")

    def client_of(request: Request) -> str:
        return request.client.host if request.client else "?"

    async def cached_block(request: Request, key: tuple, make) -> Response:
        full_key = (*key, svc.corpus.version if svc.corpus is not None else 0)
        hit = cache.get(full_key)
        if hit is None:
            metrics.block_cache.labels("miss").inc()
            block: Block = await make()
            body = json.dumps(block_json(block), ensure_ascii=False).encode()
            hit = cache.put(full_key, body)
        else:
            metrics.block_cache.labels("hit").inc()
        body, etag = hit
        headers = {"ETag": etag, "Cache-Control": "public, max-age=60"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    async def guarded(make):
        """Map the related flow's failures on caller input to 4xx answers."""
        try:
            return await make()
        except ValueError as e:
            raise ApiError(422, "invalid_url", str(e)) from e
        except BlockedAddress as e:
            raise ApiError(400, "forbidden_url", f"that URL may not be fetched: {e}") from e
        except BadArticle as e:
            raise ApiError(422, "no_article", str(e)) from e
        except FetchError as e:
            raise ApiError(422, "fetch_failed", f"could not read that URL: {e}") from e

    # ------------------------------------------------------------ health

    @app.get("/healthz", tags=["ops"])
    async def healthz():
        ok = await svc.store.ping()
        body = {"status": "ok" if ok else "degraded", "database": ok,
                "indexed": len(svc.corpus) if svc.corpus is not None else None}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"])
    async def prom():
        if svc.corpus is not None:
            metrics.index_size.set(len(svc.corpus))
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # ------------------------------------------------------------ stories

    @app.get("/v1/stories", tags=["stories"])
    async def stories(
        source: str | None = None,
        category: str | None = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 20,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
    ):
        before = decode_cursor(cursor) if cursor else None
        rows = await svc.store.latest_stories(limit=limit + 1, source=source, category=category,
                                              before=before)
        nxt = None
        if len(rows) > limit:
            rows = rows[:limit]
            nxt = encode_cursor(rows[-1])
        return {"items": [card(s) for s in rows], "next": nxt}

    @app.get("/v1/stories/{story_id}", tags=["stories"])
    async def story(story_id: int):
        s = await svc.store.get_story(story_id)
        if s is None:
            raise ApiError(404, "not_found", f"no story with id {story_id}")
        return {**card(s), "text": s.text, "collected_at": iso(s.collected_at),
                "duplicate_of": s.duplicate_of}

    # ------------------------------------------------------------ related

    @app.get("/v1/stories/{story_id}/related", tags=["related"])
    async def related_story(
        request: Request,
        story_id: int,
        k: Annotated[int | None, Query(ge=1, le=1000)] = None,
        category: str | None = None,
        site: str | None = None,
        exclude_site: str | None = None,
        max_age_days: Annotated[float | None, Query(gt=0, le=36500)] = None,
    ):
        rel = need_corpus()
        kk = clamp_k(k)
        f = filters(category, site, exclude_site, max_age_days)
        return await cached_block(request, ("id", story_id, kk, f),
                                  lambda: rel.for_story(story_id, k=kk, filters=f))

    @app.get("/v1/related", tags=["related"])
    async def related_url(
        request: Request,
        url: Annotated[str, Query(min_length=1, max_length=MAX_URL_CHARS)],
        k: Annotated[int | None, Query(ge=1, le=1000)] = None,
        category: str | None = None,
        site: str | None = None,
        exclude_site: str | None = None,
        max_age_days: Annotated[float | None, Query(gt=0, le=36500)] = None,
    ):
        rel = need_corpus()
        kk = clamp_k(k)
        f = filters(category, site, exclude_site, max_age_days)
        limiter.check(("url", client_of(request)), api.related_url_per_minute)
        return await guarded(lambda: cached_block(
            request, ("url", url, kk, f), lambda: rel.for_url(url, k=kk, filters=f)))

    @app.post("/v1/related", tags=["related"])
    async def related_text(request: Request, body: RelatedRequest):
        rel = need_corpus()
        kk = clamp_k(body.k)
        f = filters(body.category, body.site, body.exclude_site, body.max_age_days)
        block = await guarded(lambda: rel.for_text(body.title, body.text, url=body.url, k=kk, filters=f))
        return block_json(block)

    @app.get("/v1/widget", tags=["widget"], response_class=HTMLResponse)
    async def widget_fragment(
        request: Request,
        url: Annotated[str, Query(min_length=1, max_length=MAX_URL_CHARS)],
        k: Annotated[int | None, Query(ge=1, le=1000)] = None,
        category: str | None = None,
        site: str | None = None,
        exclude_site: str | None = None,
        max_age_days: Annotated[float | None, Query(gt=0, le=36500)] = None,
    ):
        rel = need_corpus()
        kk = clamp_k(k, 4)
        f = filters(category, site, exclude_site, max_age_days)
        limiter.check(("url", client_of(request)), api.related_url_per_minute)
        block = await guarded(lambda: rel.for_url(url, k=kk, filters=f))
        html = render_block_html(block_json(block))
        etag = '"' + hashlib.sha256(html.encode()).hexdigest()[:20] + '"'
        headers = {**HTML_HEADERS, "ETag": etag, "Cache-Control": "public, max-age=60"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return HTMLResponse(html, headers=headers)

    @app.get("/widget.js", tags=["widget"], include_in_schema=False)
    async def widget_js():
        return Response((STATIC / "widget.js").read_bytes(), media_type="application/javascript",
                        headers={"Cache-Control": "public, max-age=3600",
                                 "X-Content-Type-Options": "nosniff"})

    @app.get("/demo", tags=["widget"], include_in_schema=False)
    async def demo():
        return HTMLResponse((STATIC / "demo.html").read_text(encoding="utf-8"),
                            headers={"X-Content-Type-Options": "nosniff"})

    # ------------------------------------------------------------ sources

    @app.get("/v1/sources", tags=["sources"])
    async def sources(request: Request):
        """Sources with health. Needs the API key when `api.api_key` is set (operator data)."""
        require_key(request)
        rows = await svc.store.list_sources()
        return {"items": [
            {"name": r.name, "url": r.url, "category": r.category, "kind": r.kind,
             "enabled": r.enabled, "weight": r.weight, "status": r.status, "stories": r.stories,
             "last_check_at": iso(r.last_check_at), "last_success_at": iso(r.last_success_at),
             "last_error": r.last_error, "error_count": r.error_count,
             "next_check_at": iso(r.next_check_at), "interval_s": r.interval_s}
            for r in rows]}

    @app.post("/v1/sources/{name}/reset", tags=["sources"])
    async def reset_source(request: Request, name: str):
        """Clear a source's errors and make it due now (operator; API key when configured)."""
        require_key(request)
        if not await svc.store.reset_source(name, datetime.now(UTC)):
            raise ApiError(404, "not_found", f"no source named {name!r}")
        return {"name": name, "status": "due"}

    # ------------------------------------------------------------ events

    sink = EventSink(svc.store, on_written=lambda batch, n: [
        metrics.events.labels(e.type).inc() for e in batch[:n]])
    app.state.events = sink

    @app.post("/v1/events", tags=["readers"], status_code=202, openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "oneOf": [EventIn.model_json_schema(), {"type": "object", "properties": {
                "events": {"type": "array", "items": EventIn.model_json_schema()}}}]}}}}})
    async def events(request: Request):
        """Impressions, clicks and reads, one or `{"events": [...]}`; idempotent by `id`."""
        body = await request.body()
        evs = parse_events(body)
        limiter.check(("events", client_of(request)), api.events_per_minute, len(evs))
        records = await resolve(svc.store, evs, datetime.now(UTC))
        sink.submit(records)
        return {"accepted": len(records)}

    app.state.require_key = require_key
    app.state.limiter = limiter
    app.state.client_of = client_of
    app.state.need_corpus = need_corpus
    app.state.clamp_k = clamp_k
    return app


def encode_cursor(story) -> str:
    """Opaque keyset cursor: the last item's sort time and id."""
    import base64

    raw = json.dumps([story_sort_at(story).isoformat(), story.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def story_sort_at(story) -> datetime:
    p = story.published_at
    return p if p is not None and p <= story.collected_at else story.collected_at


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    import base64

    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, sid = json.loads(raw)
        when = datetime.fromisoformat(at)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when, int(sid)
    except Exception as e:
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API gave out") from e

