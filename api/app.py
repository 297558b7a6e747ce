"""The HTTP API (FastAPI): stories, related blocks, widget, events, feeds, sources, health.

Handlers are thin: they validate, call a service, shape JSON. Contracts: DESIGN.md 4.3.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hmac
import ipaddress
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    create_model,
    field_validator,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SATimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from aggregator.canonical import canonical_url, site_key
from aggregator.errors import (
    BlockedAddress,
    DatabaseTimeout,
    FetchError,
    NotFound,
    StoreError,
    TakenDown,
)
from aggregator.model import MAX_STORY_ID
from aggregator.names import name_key
from aggregator.store import calls_limited, database_unavailable, driver_reason
from api.atom import (
    AtomResponse,
    atom_feed,
    atom_response,
    atom_responses,
    base_url,
    feed_url,
    latest_title,
)
from api.blockcache import (
    BlockCache,
    CachedBlock,
    CachedRanking,
    Flights,
    RankingCache,
    cached_or_ranked,
    freshness,
)
from api.cards import CardOut, block_json, card, iso, search_json, source_json
from api.errors import (
    ApiError,
    error_response,
    json_errors,
    unreadable_body_message,
    validation_message,
)
from api.events import (
    MAX_BATCH,
    READER_ID,
    EventIn,
    EventSink,
    batch_limit,
    blank_is_none,
    json_kind,
    json_number,
    parse_events,
    reader_id,
    resolve,
)
from api.fastpath import FastPath, revalidates
from api.jobhealth import Outage, away_line, back_line, health
from api.metrics import Metrics
from api.pages import DEMO_POLICY, declared_address, docs_page, own_page, redoc_page
from api.pagesize import SIZE_IS_K, SIZE_IS_LIMIT
from api.ratelimit import InFlight, Limiter, RateLimiter, client_key
from api.readers import add_reader_routes, reader_query
from api.render import (
    DEFAULT_WORDS,
    HEADING_LEVELS,
    LINK_RELS,
    OtherSiteLinks,
    Words,
    date_language,
    heading_level_of,
    link_rels,
    render_block_html,
)
from api.services import STOP_GRACE_S, Services
from api.static_files import StaticFile, accepts_gzip, static_file
from api.stats import MAX_DAYS, stats_period, stats_report
from api.storycursor import decode_cursor, encode_cursor, page_from
from recommender.blocks import BadArticle, Block
from recommender.related import Filters
from recommender.search import MAX_QUERY_CHARS, normal_query, query_problem

log = logging.getLogger("tidings.api")
STATIC = Path(__file__).with_name("static")


# The lines of widget.js that say how many stories a block asks for when its page says nothing,
# and the most it asks for whatever its data-k says.
WIDGET_K_LINE = "var DEFAULT_K = {};"
WIDGET_MAX_K_LINE = "var MAX_K = {};"


@functools.cache  # read and gzipped on first use, once a process: create_app does no file I/O
def widget_script(default_k: int, max_k: int) -> StaticFile:
    """widget.js asking for `default_k` stories where its page names no data-k, and for at most
    `max_k` (the app's min(WIDGET_DEFAULT_K, api.max_k) and min(WIDGET_MAX_K, api.max_k)). It
    asked for 4, and for up to 20, whatever the API allowed: where an operator set max_k below
    that, those blocks were a 422, and the widgets showed nothing."""
    raw = (STATIC / "widget.js").read_text(encoding="utf-8")
    for template, value in ((WIDGET_K_LINE, WIDGET_DEFAULT_K), (WIDGET_MAX_K_LINE, WIDGET_MAX_K)):
        line = template.format(value)
        if raw.count(line) != 1:
            raise RuntimeError(f"widget.js must say {line!r} once, for the API to set its k")
    raw = raw.replace(WIDGET_K_LINE.format(WIDGET_DEFAULT_K), WIDGET_K_LINE.format(default_k))
    raw = raw.replace(WIDGET_MAX_K_LINE.format(WIDGET_MAX_K), WIDGET_MAX_K_LINE.format(max_k))
    return static_file(raw.encode("utf-8"))


def block_filters(
    category: Annotated[str | None, Query(max_length=80)] = None,
    site: Annotated[str | None, Query(max_length=255)] = None,
    exclude_site: Annotated[str | None, Query(max_length=255)] = None,
    # Not NaN or inf: `max_age_days=nan` was told "less than or equal to 36500".
    max_age_days: Annotated[float | None, Query(gt=0, le=36500, allow_inf_nan=False),
                            BeforeValidator(blank_is_none)] = None,
) -> Filters:
    """The filters every related call takes (DESIGN.md 4.3); empty values mean no filter
    (`max_age_days=` too: it alone was a 422 "unable to parse string as a number").
    The category and sites as their keys: they match however they are written, and
    "Politics" and "politics", or "BBC.CO.UK" and "bbc.co.uk", are one entry of the block
    cache (each spelling used to rank and cache the same block again)."""
    return Filters(name_key(category or "") or None, site_key(site or "") or None,
                   site_key(exclude_site or "") or None, max_age_days)


BlockFilters = Annotated[Filters, Depends(block_filters)]

# The longest word of the widget fragment a publisher may give (a heading, a label).
MAX_WORDS_CHARS = 200


def word_query(default: str, description: str):
    return Query(max_length=MAX_WORDS_CHARS, description=f"{description} (blank: {default!r})")


def fragment_words(
    heading: Annotated[str, word_query(DEFAULT_WORDS.heading, "the block's heading")] = "",
    untitled: Annotated[str, word_query(DEFAULT_WORDS.untitled, "a story without a title")] = "",
    by: Annotated[str, word_query(DEFAULT_WORDS.by, "before a byline, for screen readers")] = "",
    new_tab_label: Annotated[str, word_query(
        DEFAULT_WORDS.new_tab_label, "after the title of a link that opens a new tab, for screen "
        "readers")] = "",
) -> Words:
    """The fragment's own words in the publisher's language, as widget.js's data-heading,
    data-untitled, data-by and data-new-tab-label: it had English ones only, and a French or
    German page could not change them. A blank one is the default."""
    given = {"heading": heading, "untitled": untitled, "by": by, "new_tab_label": new_tab_label}
    return Words(**{name: value.strip() for name, value in given.items() if value.strip()})


def merged_filters(body: Filters, query: Filters) -> Filters:
    """A POSTed text's filters, from its body and from the query string as every other related
    call takes them (DESIGN.md 4.3): `?category=` on a POST was dropped without a word, and
    the caller got an unfiltered block. The same filter named two ways is a 422."""
    merged = {}
    for field in dataclasses.fields(Filters):
        mine, theirs = getattr(body, field.name), getattr(query, field.name)
        if mine is not None and theirs is not None and mine != theirs:
            raise ApiError(422, "invalid_request",
                           f"{field.name}: the body and the query give different values")
        merged[field.name] = theirs if mine is None else mine
    return Filters(**merged)
ReaderQuery = reader_query("personalize for this reader")
MAX_TEXT_CHARS = 100_000
MAX_URL_CHARS = 2048
# No JSON body the API accepts is larger (100k chars of text, escaped, or 256 kB of events): a
# bigger one is refused while it arrives instead of being read whole into memory first.
MAX_REQUEST_BODY_BYTES = 2 * 1024 * 1024
# The request line and headers the HTTP server buffers (uvicorn's h11 limit, 16 KiB by default).
# Past it uvicorn answers a plain-text 400 and closes while the client is still sending, and
# the reset could swallow even that answer. It only trips when the head arrives in pieces (a
# loaded machine), so a 100 kB URL got our JSON 422 or a reset depending on timing. With room
# for such heads, the API's own limits answer them; this bounds what one connection can hold.
MAX_REQUEST_HEAD_BYTES = 256 * 1024
# The most candidates a reader-aware block asks for, however much of them the reader read.
PERSONAL_FETCH_MAX = 1000
# `{id}` in the paths, as DESIGN.md 4.3 writes them, so the OpenAPI document (and clients made
# from it) name the parameter as the contract does; `story_id` in the handlers.
StoryId = Annotated[int, PathParam(alias="id", ge=1, le=MAX_STORY_ID)]


def _blank_is_none(value: str | None) -> str | None:
    """A blank section name is no section, as "" is (a template's empty field): kept, it
    selected the stories stored without one, and the Atom feed titled them as every story."""
    return value if value and value.strip() else None


# Control characters a takedown's reason may not hold: all C0 but tab, LF and CR (a reason
# typed in a form may have lines), and DEL.
REASON_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def takedown_reason(value: str) -> str:
    """A takedown's `reason=`, refused when it holds a control character: PostgreSQL refuses
    NUL in text, and `?reason=...%00` was a 500 after the story's lookup (stored as junk on
    SQLite, where `takedown list` showed it)."""
    if found := REASON_CONTROLS.search(value):
        raise ValueError(f"reason may not hold control characters (U+{ord(found.group()):04X})")
    return value


# A source or category of the story listings (JSON and Atom).
SectionQuery = Annotated[str | None, Query(max_length=200), AfterValidator(_blank_is_none)]
# Most stories a listing gives at once; an Atom feed gives 50 unless asked (a feed reader asks
# once for what it may have missed, where a JSON client pages).
MAX_LIST_LIMIT = 200
ATOM_DEFAULT_LIMIT = 50
# What shared caches may do with the latest stories' feed (as with the related blocks).
PUBLIC_FEED = "public, max-age=60"

# Security headers for HTML we serve; the widget fragment is meant to be embedded, so no
# frame-ancestors restriction on it.
HTML_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Content-Security-Policy": "default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'",
}


# The most a search's raw `q` may hold, spaces and all (a URL's worth): its words are checked
# against MAX_QUERY_CHARS once they collapse.
MAX_RAW_QUERY_CHARS = MAX_URL_CHARS
# Stories a search gives when the caller does not say (a page of results, not a block's row).
SEARCH_DEFAULT_K = 10
# Stories in a widget block when the caller does not say (fewer than a JSON block's default:
# the widget sits under an article, where four cards fill a row).
WIDGET_DEFAULT_K = 4
# The most stories a widget block asks for, whatever its data-k says (fewer where api.max_k is).
WIDGET_MAX_K = 20


class RelatedRequest(BaseModel):
    # An unknown key is a 422 naming it: a typo ("exclude_sites", "max_age") was ignored, and
    # the caller got a block without the filter they asked for, and no word of it.
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=1000)
    text: str = Field(default="", max_length=MAX_TEXT_CHARS)
    url: str | None = Field(default=None, max_length=MAX_URL_CHARS)
    # When the article was published (ISO 8601; no zone = UTC); without it, its dateline.
    published_at: datetime | None = None
    k: int | None = Field(default=None, ge=1, le=1000)
    category: str | None = None
    site: str | None = None
    exclude_site: str | None = None
    max_age_days: float | None = Field(default=None, gt=0, le=36500, allow_inf_nan=False)
    # Personalize for this reader, as `reader=` does on the GET routes (also taken there);
    # blank is none, as `reader=` and the filters are (`optional_reader`).
    reader: Annotated[str | None, BeforeValidator(blank_is_none), AfterValidator(reader_id)] = Field(
        default=None, max_length=128, json_schema_extra={"pattern": READER_ID.pattern})

    @field_validator("k", "max_age_days", mode="before")
    @classmethod
    def _a_number(cls, v, info: ValidationInfo):
        # `"k": true` was a block of 1 and `"k": "3"` one of 3 (the lax parse), where the
        # query's k=true is a 422.
        return json_number(v, f"{info.field_name} must be a number")


def has_words(*texts: str) -> bool:
    """Whether any of the texts holds a letter or a digit. A title of spaces (a template whose
    field was empty) passed min_length and got a block of "similar topic" stories with
    confident scores, related to nothing; such a body is a 422 like a page without text."""
    return any(ch.isalnum() for t in texts for ch in t)


def related_request_model(max_k: int, default_k: int) -> type[RelatedRequest]:
    """RelatedRequest with the app's real bounds on k, so the OpenAPI document states them (the
    module-level model only knows the settings' own limits)."""
    # `int | None` as in the base model: a client that sends `"k": null` for "no preference"
    # (generated clients do, for an unset optional field) gets the default, like every other
    # optional field of the body, instead of a 422 "k: Input should be a valid integer".
    return create_model("RelatedRequest", __base__=RelatedRequest,
                        k=(int | None, Field(default=default_k, ge=1, le=max_k)))


def k_query(max_k: int, default_k: int):
    """The k parameter of a block route, with this app's maximum and default: the document said
    at most 1000 and no default while the API refused more than api.max_k."""
    return Query(default_k, ge=1, le=max_k, description=f"stories in the block (at most {max_k})")


# Response shapes, for the OpenAPI document only (`responses=`, not `response_model=`): handlers
# keep returning plain dicts or cached bytes, and tests/api/test_fuzz.py checks every real body
# against these, so the document cannot drift from what the API sends.


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class BlockOut(BaseModel):
    article: CardOut
    related: list[CardOut]
    took_ms: float


class SearchOut(BaseModel):
    query: str = Field(description="the query as searched: spaces collapsed, case folded")
    items: list[CardOut]
    took_ms: float


class StoriesPage(BaseModel):
    items: list[CardOut]
    next: str | None


class StoryOut(CardOut):
    text: str | None
    collected_at: str | None
    duplicate_of: int | None


class JobOut(BaseModel):
    ok_at: str | None
    failures: int
    # When the scheduled tick under way started; null while none runs.
    running_since: str | None = None


class SourcesGlanceOut(BaseModel):
    enabled: int
    failing: int


class HealthOut(BaseModel):
    status: str
    database: bool
    indexed: int | None
    # False: the database's stories are embedded with another recipe than this process's
    # (another embedder or model build), so its index misses them. None: this process has no
    # embedder (a collector), or the database could not be read.
    recipe_current: bool | None = None
    # The scheduled jobs whose last ticks all failed (collect, index, follow, ...; see
    # api.jobhealth): the process still answers (200) but is not doing all its work.
    failing: list[str] = []
    # The scheduled jobs whose tick under way has run far longer than it should (api.jobhealth
    # stuck_after_s): their later ticks are skipped, so they do no work until it ends.
    stuck: list[str] = []
    # Per job of this process: when its last tick succeeded (ISO 8601, null: never yet) and
    # how many ticks in a row have failed since.
    jobs: dict[str, JobOut] = {}
    # The enabled sources of the file and how many failed their last fetch (read at most every
    # 30 s); null while the database cannot be read.
    sources: SourcesGlanceOut | None = None
    # What an operator should look at although the process answers: every enabled source
    # failing (no network or DNS on this machine?). Any warning makes status "degraded".
    warnings: list[str] = []


class SourceOut(BaseModel):
    name: str
    url: str
    category: str
    kind: str
    enabled: bool
    weight: float
    status: str = Field(description="ok, error or pending; disabled for a source the file "
                        "turns off (enabled = false); retired for a source removed from the "
                        "sources file whose stories are still stored")
    stories: int
    last_check_at: str | None
    last_success_at: str | None
    last_error: str | None
    error_count: int
    next_check_at: str | None = Field(description="null while the source is disabled")
    interval_s: int
    keep: str | None = Field(description="its keep rule (a regular expression), null for none")
    block: str | None = Field(description="its block rule (a regular expression), null for none")
    retired_at: str | None = Field(description="when it was removed from the sources file; "
                                   "null while the file names it")
    failing_pages: int = Field(description="article pages (of a full_text source) that failed "
                               "at their last try; 0 for none")


class SourcesOut(BaseModel):
    items: list[SourceOut]


class TakedownOut(BaseModel):
    url: str = Field(description="the story's URL; it and its other spellings stay out")
    removed: list[int] = Field(description="the stories removed: this one and every copy of its body")


class ResetOut(BaseModel):
    name: str
    status: str = Field(description="due, or disabled for a source not fetched until enabled")


class StatsCountsOut(BaseModel):
    impressions: int
    clicks: int
    ctr: float | None = Field(description="clicks / impressions; null without impressions")


class StatsTotalOut(StatsCountsOut):
    reads: int


class StatsDayOut(StatsTotalOut):
    date: str = Field(description="a UTC day, YYYY-MM-DD; every day of the period, zeros when quiet")


class StatsSiteOut(StatsCountsOut):
    site: str


class StatsStoryOut(StatsCountsOut):
    id: int
    title: str
    url: str
    site: str


class StatsPageOut(StatsCountsOut):
    page: str = Field(description="the article page the block was shown under (canonical URL)")


class StatsOut(BaseModel):
    since: str
    until: str
    days: list[StatsDayOut]
    total: StatsTotalOut
    sites: list[StatsSiteOut] = Field(
        description="the 20 sites with most clicks; one row per site however its stories spell it")
    stories: list[StatsStoryOut] = Field(description="the 10 stories with most clicks")
    pages: list[StatsPageOut] = Field(
        description="the 20 pages with most impressions, of the events that name their page")


def cached_block_responses(model: type[BaseModel] | None, *, personal: bool = False) -> dict:
    """The OpenAPI answers of a cached block route: the body with its ETag, and the 304 that
    If-None-Match gets (the document named neither, so clients did not know to revalidate).
    `personal`: the route takes `reader=`, whose answers are not cached (search and the HTML
    fragment take none: their document must not offer it)."""
    cache = "public, max-age=60" + (" (private, no-store with reader=)" if personal else "")
    ok: dict = {"headers": {
        "ETag": {"description": "weak validator of the block; send it back as If-None-Match",
                 "schema": {"type": "string"}},
        "Cache-Control": {"description": cache, "schema": {"type": "string"}}}}
    if model is not None:
        ok["model"] = model
    return {200: ok, 304: {"description": "Not Modified: the If-None-Match ETag still holds "
                                          "(no body)"}}


class SkippedEvent(BaseModel):
    event: int = Field(description="its index in the request's events")
    reason: str


class AcceptedOut(BaseModel):
    # The events are written after the answer (api.events batches them), so whether one is
    # already stored is not known here; a retried beacon is counted and stored once all the same.
    accepted: int = Field(description="the events taken, not the new ones: one already stored, "
                                      "or sent twice, is counted again and stored once (events "
                                      "are idempotent by `id`, else by reader, story, type, "
                                      "`at` and `page`)")
    # Events refused alone, the others taken: about stories we do not have (removed since,
    # taken down, never stored), or dated out of bounds. Sending them again changes nothing.
    skipped: list[SkippedEvent] = Field(default=[], description=(
        "the events not taken, each with why: about no stored story, or an `at` more than "
        "5 minutes ahead or more than 30 days old"))


# The body of POST /v1/events: one event, or a batch. The batch needs its `events` key: without
# `required` every object matched it, so a single event matched both alternatives of the oneOf
# and a client validating against the document refused every single event. `max_batch`: this
# app's (api/events.py batch_limit).
def events_body_schema(max_batch: int = MAX_BATCH) -> dict:
    return {"oneOf": [
        EventIn.model_json_schema(),
        {"type": "object", "required": ["events"], "properties": {"events": {
            "type": "array", "items": EventIn.model_json_schema(), "minItems": 1,
            "maxItems": max_batch}}},
    ]}


ERROR_RESPONSES: dict = {
    "4XX": {"model": ErrorBody, "description": "bad input, unknown story, rate limited"},
    503: {"model": ErrorBody, "description": "database or index unavailable; retry (Retry-After)"},
}


class BodyCap:
    """ASGI middleware: 413 for request bodies over `max_body_bytes`, by Content-Length when
    sent, else by counting chunks as the handler reads them."""

    def __init__(self, app, max_body_bytes: int):
        self.app, self.max_body_bytes = app, max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            response = error_response(413, "too_large", self._message())
            return await response(scope, receive, send)
        seen = 0

        async def counting_receive():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body_bytes:
                # An HTTPException, because FastAPI turns anything else raised while it reads a
                # body into a vague 400; the app's handler gives it the usual error shape.
                raise StarletteHTTPException(413, self._message())
            return message

        return await self.app(scope, counting_receive, send)

    def _message(self) -> str:
        return f"request bodies are limited to {self.max_body_bytes} bytes"


class JsonErrorCORS(CORSMiddleware):
    """Starlette's CORS middleware, whose refused preflight is an API error: it answered a
    plain-text 400 "Disallowed CORS method", outside the {"error": {...}} shape every other
    error has. Same status and CORS headers; what was refused is named in the message."""

    def preflight_response(self, request_headers):
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        refused = bytes(response.body).decode().removeprefix("Disallowed CORS ")
        headers = {k: v for k, v in response.headers.items()
                   if k.lower() not in ("content-length", "content-type")}
        return error_response(400, "cors_refused", f"this API does not allow that cross-origin "
                              f"request: its {refused} (methods allowed: "
                              f"{', '.join(sorted(self.allow_methods))})", headers)


class HeadAsGet:
    """ASGI middleware: a HEAD is answered as the GET of the same URL, without its body (RFC 9110
    9.3.2). FastAPI's routes take only the methods they declare, so uptime monitors and CDNs
    that check /healthz, /widget.js or /v1/widget with HEAD got a 405. Every GET route is a read,
    so answering HEAD with it changes nothing a GET would not (a related-by-URL HEAD is charged
    to the rate limit like its GET). Inside, the request is a GET: metrics count it as one."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "HEAD":
            return await self.app(scope, receive, send)

        async def headless_send(message):
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = _EMPTY_BODY
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headless_send)


_EMPTY_BODY = {"type": "http.response.body", "body": b"", "more_body": False}
_NOSNIFF = (b"x-content-type-options", b"nosniff")


class NoSniff:
    """ASGI middleware: `X-Content-Type-Options: nosniff` on every answer that lacks it. Only
    the HTML answers and widget.js had it, so a JSON error such as 404 "no route
    /v1/<script>..." went out without it."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def sending(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or ())
                if not any(name.lower() == _NOSNIFF[0] for name, _ in headers):
                    message = {**message, "headers": [*headers, _NOSNIFF]}
            await send(message)

        await self.app(scope, receive, sending)


def is_loopback(host: str) -> bool:
    """Whether a client address is this machine's own (127.0.0.0/8, ::1, or IPv4 ones
    written as IPv6)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def names_this_machine(authority: str) -> bool:
    """Whether a Host header or an Origin's host:port names this machine: localhost (RFC
    6761 6.3: and its subdomains) or a loopback address."""
    try:
        host = urlsplit("//" + authority).hostname or ""
    except ValueError:  # a bad IPv6 literal, a port out of range
        return False
    host = host.rstrip(".")
    return host == "localhost" or host.endswith(".localhost") or is_loopback(host)


def from_a_foreign_page(origin: str | None, fetch_site: str | None, host: str) -> bool:
    """Whether a request was made by a browser for a page that is not this machine's own.

    Without api.api_key the operator's routes trust loopback callers, and a browser on the
    operator's machine is one, whatever page makes it call: with CORS `*` any site the operator
    visited could read the sources and the stats, export a reader and take stories down (a
    cross-site DELETE), and a page on a name rebound to 127.0.0.1 could do it as a same-origin
    one. Browsers say who asks (Origin, Sec-Fetch-Site, Fetch Metadata); curl and scripts send
    neither. A browser's request must then come from a page of this machine, and reach us by a
    name of this machine: a rebound name is not one."""
    if origin is None and fetch_site is None:
        return False
    if fetch_site == "cross-site":  # a navigation from another site's page carries no Origin
        return True
    if origin is not None and not names_this_machine(origin.partition("://")[2]):
        return True  # another site's page, or `null` (a sandboxed frame, a file)
    return not names_this_machine(host)


def is_json_media_type(content_type: str | None) -> bool:
    """Whether FastAPI reads a body sent with this Content-Type as JSON: application/json or
    application/*+json (strictly: a body without a Content-Type is not read as JSON either)."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


# What FastAPI raises (an HTTPException) when it cannot even decode a JSON body.
FASTAPI_BODY_PARSE_ERROR = "There was an error parsing the body"


def allowed_methods(routes, scope) -> str:
    """Every method the routes of this request's path take, for a 405's Allow header: HEAD
    with each GET, which `HeadAsGet` answers (FastAPI's routes name GET alone, and a PUT to
    /v1/stories said "it takes GET" though HEAD is answered too)."""
    methods = set()
    for route in routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


def routing_message(status: int, detail: str, method: str, path: str, allow: str) -> str:
    """What the router's bare "Not Found" and "Method Not Allowed" mean for this request: an
    integrator's typo ("/v1/story/1", a trailing slash, GET on /v1/events) got only those."""
    if status == 404 and detail == "Not Found":
        hint = " (the API's paths end without a slash)" if path.endswith("/") and path != "/" else ""
        return f"no route {path}{hint}; the routes are listed at /openapi.json"
    if status == 405 and detail == "Method Not Allowed":
        return f"{path} does not take {method}" + (f"; it takes {allow}" if allow else "")
    return detail


def body_problem(errors: list[dict]) -> tuple[int, str, str] | None:
    """The answer to a JSON body that is wrong as a whole, or None when its fields are.

    FastAPI reports these as field errors without a field: a truncated body was a 422
    "14: JSON decode error", an empty one "Field required" and an array "Input should be a
    valid dictionary...", none of which says what the caller sent wrong. POST /v1/events,
    which reads its own body, already answered a 400 `invalid_json` naming the fault."""
    for err in errors:
        loc = tuple(err.get("loc", ()))
        if err.get("type") == "json_invalid":
            where = f" at character {loc[1]}" if len(loc) > 1 else ""
            reason = (err.get("ctx") or {}).get("error") or err.get("msg")
            return 400, "invalid_json", f"the body is not JSON: {reason}{where}"
        if loc == ("body",) and err.get("type") == "missing":
            return 422, "invalid_request", "the request needs a JSON object as its body; it was empty"
        if loc == ("body",):
            return 422, "invalid_request", "the body must be a JSON object ({...}), not " + json_kind(err.get("input"))
    return None


# Methods that get their own label in the request metrics.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})


def method_label(method: str) -> str:
    """The method as a metrics label: the server takes any token as a method, and each one a
    client made up (`FOO`, `X1`, `X2`...) added a histogram series per route and status, which
    a script could grow without bound in memory and in every scrape."""
    return method if method in KNOWN_METHODS else "other"


def route_label(scope: dict, routes) -> str:
    """The route template a request is counted under. FastAPI writes its own routes into the
    scope; a plain Starlette route (`/openapi.json`) is not written there, and a request that
    a middleware answers before the router (a CORS preflight, a 413 body) never reaches it:
    these were counted as "unmatched", beside the bots' 404s, so the document's fetches read as
    a 200 of no route. They are matched against the app's routes here; only a path of none
    is "unmatched" (a raw path would be a series per path a bot makes up)."""
    route = scope.get("route")
    if route is None:
        route = next((r for r in routes if r.matches(scope)[0] is not Match.NONE), None)
    return getattr(route, "path", None) or "unmatched"


class RequestTiming:
    """ASGI middleware: each request's duration by route template, method and status.

    Plain ASGI rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware runs every
    request through a task and a memory stream, ~0.2 ms a request here (a bare FastAPI route
    answered in 63 us, 265 us behind it, 65 us behind this), more than the block cache's lookup.
    """

    def __init__(self, app, metrics: Metrics | None = None, routes=()):
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = 500  # what the server answers when the app raises before it responds

        async def noting_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        finally:
            # The router writes the matched route into this same scope dict.
            self.observe(route_label(scope, self.routes), method_label(scope["method"]), status,
                         time.perf_counter() - t0)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.metrics.requests.labels(route, method, str(status)).observe(seconds)


access_log = logging.getLogger("tidings.access")


class AccessLog(RequestTiming):
    """ASGI middleware (`[api] access_log`): one line per request, as the outermost layer, so
    the fast path's replays are logged too. uvicorn's own access log stays off: it wrote the
    path and the client's address (a reader's id, which a forgotten reader's log kept), not
    the time taken, in a format of its own."""

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        access_log.info("http.request method=%s route=%s status=%d ms=%.1f", method, route, status,
                        seconds * 1000)


class DatabaseCallLimit:
    """ASGI middleware: each database call a request makes waits at most `limit_s`
    (`api.database_timeout_s`), then fails as DatabaseTimeout, which the app answers with a
    503 `database_unavailable` and Retry-After. Without it a database that accepted the
    connection and never answered held the request, and its pooled connection, for ever.
    Only the database's part is limited: a related-by-URL request still fetches and reads its
    page for as long as `api.fetch_timeout_s` and `api.page_read_timeout_s` allow."""

    def __init__(self, app, limit_s: float, outage: RequestOutage | None = None):
        self.app, self.limit_s, self.outage = app, limit_s, outage

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        seen = self.outage.failures_seen if self.outage is not None else 0
        try:
            with calls_limited(self.limit_s):
                await self.app(scope, receive, send)
        finally:
            if self.outage is not None:
                self.outage.check(seen)


class RequestOutage:
    """The database being away as this process's requests meet it, logged as the jobs log
    theirs (api.jobhealth.Outage): the first failure with its route and reason, then at most
    one line a minute with the failures so far, then one line when the database answers a
    statement again. Each request that met it was a warning of its own: thousands of lines a
    minute on a busy replica. /healthz and /metrics are left as they were: the outage is no job of
    /healthz's `jobs`, and every request it failed is still counted as a 503 of its route."""

    def __init__(self, store, clock: Callable[[], datetime]):
        self.store, self.clock = store, clock
        self.outage = Outage()
        self.answers_at = 0  # the store's answered statements at the outage's last failure
        self.failures_seen = 0  # failures met by requests so far (`check`)

    def failed(self, event: str, route: str, reason: str) -> None:
        self.answers_at = self.store.answers
        self.failures_seen += 1
        now = self.clock()
        said = self.outage.failed(now)
        if said is not None:
            log.warning(away_line("api", said, now, f"route={route} error={reason}", event))

    def check(self, seen: int | None = None) -> None:
        """After each request: the outage ends once the database answered a statement since
        its last failure (a request served from memory, a cached block, or a store call that
        asked nothing, says nothing of the database). `seen`: the failures met when the
        request began; a request begun before the last failure says nothing either: its
        statement answered just before the database went away was counted after another
        request's failure, and the log said the database back, then away again."""
        if seen is not None and seen != self.failures_seen:
            return
        if self.outage.since is not None and self.store.answers != self.answers_at:
            ended = self.outage.ended()
            if ended is not None:
                log.info(back_line("api", ended, self.clock()))


def failure_is_the_keys(error: BaseException) -> bool:
    """Whether a block's failed ranking fails every request for the block alike (a page that
    cannot be read, a story not there, the database away, a bug), so the requests that waited
    for it answer with it too; or is the ranking request's own (its client over a rate limit
    or with too many pages under way, a 429; its task cancelled), so they ask again
    (api/blockcache.py Flights). Another client's 429 would have refused a reader who is not
    over any limit."""
    if not isinstance(error, Exception):  # cancelled, or the process stopping
        return False
    return not (isinstance(error, ApiError) and error.status == 429)


def block_address(url: str) -> str:
    """What a block asked for by URL is cached under: the URL's canonical form, as
    `RelatedService.for_url` finds the article by it (its stored story, its page read), so
    every spelling gets the same block. Keyed as written, a share's `?utm_source=` or a host in
    capitals was an entry of its own, ranked again. The URL as written when it has no
    canonical form (`for_url` refuses it)."""
    try:
        return canonical_url(url)
    except ValueError:
        return url


def block_identity(data: dict) -> bytes:
    """What a block's (or a search's) ETag stands for: the stories and their order, not the
    time it took or the scores (their freshness part moves with the clock, so two workers
    computing the same block a second apart could differ in a last digit)."""
    cards = {key: [{**c, "score": None} for c in data[key]]
             for key in ("related", "items") if key in data}
    return json.dumps({**data, "took_ms": None, **cards}).encode()


def create_app(svc: Services, limiter: Limiter | None = None) -> FastAPI:
    """The API over `svc`; `limiter` holds the per-client rate limits (this process's own
    buckets unless given: `serve --workers` gives its workers shared ones)."""
    settings = svc.settings
    api = settings.api
    metrics = Metrics()
    limiter = RateLimiter() if limiter is None else limiter
    app = FastAPI(
        title="Tidings",
        version="0.1.0",
        description="Related stories and personalized feeds from the news sites you collect.",
        responses=ERROR_RESPONSES,
        # No 307 to the path without its slash: Starlette builds that Location from the Host
        # header, so `Host: evil.example` got a redirect there (a cache keyed on the path
        # alone would serve it to everyone). No route of the API ends in a slash.
        redirect_slashes=False,
        # Served below with a Content-Security-Policy each (api/pages.py); FastAPI's have none.
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = svc
    app.state.metrics = metrics
    # Added first, so it runs inside CORS: a 413 still carries the CORS headers.
    app.add_middleware(BodyCap, max_body_bytes=MAX_REQUEST_BODY_BYTES)
    app.add_middleware(
        JsonErrorCORS, allow_origins=list(api.cors_origins), allow_methods=["GET", "POST", "PUT", "DELETE"],
        allow_headers=["*"], expose_headers=["ETag"], max_age=86400,
    )

    # ------------------------------------------------------------ errors

    @app.exception_handler(ApiError)
    async def _api_error(_req: Request, e: ApiError):
        return error_response(e.status, e.code, e.message, e.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(req: Request, e: RequestValidationError):
        content_type = req.headers.get("content-type")
        if not is_json_media_type(content_type) and any(
                tuple(err.get("loc", ())) == ("body",) for err in e.errors()):
            # A JSON body sent as text/plain or a form reached the model as bytes, and the answer
            # was a 422 "Input should be a valid dictionary...", which names no cause.
            return error_response(415, "unsupported_media_type", "send the body as application/json, "
                                  + (f"not {content_type}" if content_type else "with that Content-Type"))
        whole = body_problem(e.errors())
        if whole is not None:
            return error_response(*whole)
        parts = []
        for err in e.errors()[:5]:
            loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path"))
            parts.append(f"{loc}: {validation_message(err)}" if loc else validation_message(err))
        return error_response(422, "invalid_request", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(req: Request, e: StarletteHTTPException):
        if e.status_code == 400 and e.detail == FASTAPI_BODY_PARSE_ERROR:
            # FastAPI's answer when json.loads itself raised (its cause says why).
            return error_response(400, "invalid_json", unreadable_body_message(e.__cause__))
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(e.status_code,
                                                                                   "http_error")
        # Starlette's 405 carries `Allow` (RFC 9110 15.5.6 requires it): keep its headers.
        headers = getattr(e, "headers", None)
        if e.status_code == 405:
            # Starlette names the methods of the first route of the path only: /v1/stories/{id}
            # said GET alone, though DELETE is another route of the same path.
            headers = {**(headers or {}), "Allow": allowed_methods(app.routes, req.scope)}
        message = routing_message(e.status_code, str(e.detail), req.method, req.url.path,
                                  (headers or {}).get("Allow", ""))
        return error_response(e.status_code, code, message, headers)

    # Requests that meet the database away are logged once a minute, not each (RequestOutage);
    # on the process's clock, which tests move on.
    outage = RequestOutage(svc.store, clock=lambda: svc.jobs.clock())

    @app.exception_handler(StoreError)
    async def _store(request: Request, e: StoreError):
        if isinstance(e, DatabaseTimeout):
            outage.failed("db_timeout", route_label(request.scope, app.routes), str(e))
        return db_unavailable_response()

    # The one place where the database being away becomes a 503 (tests/api/test_db_outage.py):
    # store calls that are not wrapped in StoreError raise the driver's errors as they come.
    # Anything else re-raises, so a bug still surfaces as a 500 with its traceback.
    @app.exception_handler(DBAPIError)
    @app.exception_handler(SATimeoutError)
    @app.exception_handler(OSError)
    async def _db_away(request: Request, e: Exception):
        if not database_unavailable(e):
            raise e
        # The route, not the path: a path names the reader (/v1/readers/{reader}/feed), whose
        # id a log kept after the reader was forgotten (DELETE /v1/readers/{reader}).
        outage.failed("db_unavailable", route_label(request.scope, app.routes), driver_reason(e))
        return db_unavailable_response()

    @app.exception_handler(NotFound)
    async def _nf(_req: Request, e: NotFound):
        return error_response(404, "not_found", str(e))

    app.add_middleware(DatabaseCallLimit, limit_s=api.database_timeout_s, outage=outage)
    # app.routes is the router's own list: the routes added below are matched too.
    app.add_middleware(RequestTiming, metrics=metrics, routes=app.routes)

    # ------------------------------------------------------------ helpers

    def need_corpus():
        if svc.related is None or svc.corpus is None:
            raise ApiError(503, "not_ready", "the related-stories index is not loaded in this process")
        return svc.related

    widget_k = min(WIDGET_DEFAULT_K, api.max_k)

    def clamp_k(k: int | None, default: int | None = None) -> int:
        k = k or default or api.default_k
        if k > api.max_k:
            raise ApiError(422, "invalid_request", f"k must be at most {api.max_k}")
        return k

    def require_key(request: Request) -> None:
        if not api.api_key:
            # No key set (the shipped default): the operator's routes answer this machine
            # only. Open to every host, any caller could export or delete a reader's history,
            # or reset a source over its server's Retry-After, even from another site's page.
            if not is_loopback(request.client.host if request.client else ""):
                raise ApiError(403, "operator_only", "this endpoint is the operator's: without "
                               "api.api_key it answers requests from this machine only; set a "
                               "key to reach it from another host")
            headers = request.headers
            if from_a_foreign_page(headers.get("origin"), headers.get("sec-fetch-site"),
                                   headers.get("host", "")):
                raise ApiError(403, "operator_only", "this endpoint is the operator's: without "
                               "api.api_key it answers this machine's own callers only, not a "
                               "browser asking for another site's page; set a key to call it "
                               "from a web page")
            return
        given = request.headers.get("x-api-key") or ""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:]
        if not hmac.compare_digest(given.encode(), api.api_key.encode()):  # no timing hint
            raise ApiError(401, "unauthorized", "this endpoint needs the operator's API key "
                           "(header X-API-Key or Authorization: Bearer)")

    def client_of(request: Request) -> str:
        # An IPv6 client by its /64 (api/ratelimit.py client_key).
        return client_key(request.client.host) if request.client else "?"

    def blocks_version() -> tuple[int, int]:
        # What a cached block was ranked with: the corpus (a story added or removed) and the
        # sources' weights (an operator's edit re-ranks every block).
        corpus = svc.corpus.version if svc.corpus is not None else 0
        return corpus, svc.related.source_weights.version if svc.related is not None else 0

    # A cached block is served until a story that could change it arrives (api/blockcache.py).
    fresh = freshness(blocks_version, svc.corpus)
    cache = app.state.block_cache = BlockCache(fresh)

    # A block missed by many requests at once is ranked once (api/blockcache.py Flights).
    flights = app.state.block_flights = Flights(failure_is_the_keys)
    # A search's rankings, which its answers for every k are cut from (recommender/search.py
    # `search_depths`), kept and thrown away as blocks are.
    rankings = app.state.search_rankings = RankingCache(fresh)
    ranking_flights = app.state.search_ranking_flights = Flights(failure_is_the_keys)

    def count_block(result: str) -> None:
        # A block ranked again because the kept one went stale stays a "miss": the series
        # predate "stale", and dashboards read misses as the blocks ranked.
        metrics.block_cache.labels("miss" if result == "stale" else result).inc()

    def count_ranking(result: str) -> None:
        metrics.ranking_cache.labels(result).inc()

    def ranked_at(block: Block, weights: int) -> tuple[int, int]:
        # The corpus version the ranking read (a story may have landed while the page was
        # fetched or the block serialized: the cache checks it at the next lookup), and
        # `weights`, the sources' weights version read before it ranked: read after, an edit
        # landing meanwhile (while a search's deeper ranking embedded its query, its first 20
        # cut from a ranking kept with the old weights) labelled the answer with weights it
        # was not all ranked with, and the source the edit left out was served for minutes.
        return block.version, weights

    def weights_now() -> int:
        return blocks_version()[1]

    def search_ranking(rel, query: str, f: Filters, charge: Callable[[], None]):
        """`RelatedService.search`'s `ranking`: the query's ranking at a depth from
        `rankings`, else ranked (once however many requests miss it) and kept. Counted in
        tidings_search_ranking_cache_total, not tidings_block_cache_total: the answer it goes
        into is counted there. The query is embedded (and charged) once, by the first ranking
        missed."""
        vector = rel.query_vector(query, charge)

        async def ranking(depth: int) -> Block:
            async def rank() -> CachedRanking:
                weights = weights_now()
                block = await rel.search_ranking(query, depth=depth, filters=f, vector=vector)
                return rankings.put_ranking(key, block, ranked_at(block, weights))

            key = ("search", query, depth, f)
            entry = await cached_or_ranked(rankings, ranking_flights, key, rank, count_ranking)
            # As checked now: the answer is cached from the version its rankings hold at.
            return dataclasses.replace(entry.block, version=entry.version[0])

        return ranking

    def keep_for_fast_path(request: Request, entry: CachedBlock) -> None:
        # What the fast path records this answer with (api/fastpath.py).
        request.scope["tidings.block"] = (entry.version, entry.reach)

    page_reads = InFlight()

    @contextlib.contextmanager
    def fetch_charge(request: Request) -> Iterator[Callable[[], None]]:
        """Related-by-URL calls are limited because each may fetch a page: only a fetch is
        charged (RelatedService.for_url calls this right before one), never a stored story's
        block, a cached answer or a URL the address guard refuses as written. A publisher's
        server asking blocks for its own collected articles got 429s past 60 a minute, and
        many readers behind one proxy share a client address. And a client has at most
        `related_url_reads_at_once` pages under way (given back when the request ends): pages
        are read one at a time in a process, and one client's queue of slow pages (seconds
        each at a few MB) kept everyone's waiting."""
        client = client_of(request)
        with page_reads.slot(client, api.related_url_reads_at_once, "page reads") as take:
            def charge() -> None:
                take()  # first: a read refused as one too many costs no token
                limiter.check(("url", client), api.related_url_per_minute)

            yield charge

    def embed_charge(request: Request) -> Callable[[], None]:
        """POSTed texts are limited because each is embedded (~30-60 ms of a core): one client
        looping on POST /v1/related kept the model busy for every other caller. A body naming
        a stored story's URL gets that story's block, and costs nothing. Charged once a
        request: a personal block may rank the text again with a larger k."""
        charged = False

        def charge() -> None:
            nonlocal charged
            if not charged:
                limiter.check(("text", client_of(request)), api.related_text_per_minute)
                charged = True

        return charge

    async def cached_block(request: Request, key: tuple, make,
                           shape: Callable[[Block], dict] = block_json) -> Response:
        """The block `make` ranks, as `shape` gives it, from the cache while nothing since
        could change it; `key` names the request (its route, article or query, k, filters)."""
        async def rank() -> CachedBlock:
            weights = weights_now()
            block: Block = await make()
            data = shape(block)
            body = json.dumps(data, ensure_ascii=False).encode()
            return cache.put_block(key, body, ranked_at(block, weights), block.reach,
                                   block_identity(data))

        hit = await cached_or_ranked(cache, flights, key, rank, count_block)
        keep_for_fast_path(request, hit)
        body, etag = hit.body, hit.etag
        headers = {"ETag": etag, "Cache-Control": "public, max-age=60"}
        if revalidates(request.headers, etag):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    async def personal(reader: str, k: int, make) -> JSONResponse:
        """A block that knows the reader: what they read is dropped, ties go to their interests.
        Over-fetched so dropping read stories still leaves k (more again while the reader
        has read too many of them); never cached (it is per reader)."""
        n = k + 10
        await sink.written_for(reader)  # what they read a moment ago is dropped too
        while True:
            block: Block = await make(n)
            related = block.related
            if svc.feeds is not None:
                related = await svc.feeds.rerank_related(reader, related)
            if len(related) >= k or len(block.related) < n or n >= PERSONAL_FETCH_MAX:
                break
            n = min(n * 4, PERSONAL_FETCH_MAX)
        block = dataclasses.replace(block, related=related[:k])
        return JSONResponse(block_json(block), headers={"Cache-Control": "private, no-store"})

    async def guarded(make):
        """Map the related flow's failures on caller input to 4xx answers."""
        try:
            return await make()
        except ValueError as e:
            raise ApiError(422, "invalid_url", str(e)) from e
        except BlockedAddress as e:
            raise ApiError(400, "forbidden_url",
                           f"that URL may not be fetched: {e.caller_message}") from e
        except BadArticle as e:
            raise ApiError(422, "no_article", str(e)) from e
        except TakenDown as e:
            raise ApiError(410, "taken_down", f"that page was taken down: {e}") from e
        except FetchError as e:
            raise ApiError(422, "fetch_failed", f"could not read that URL: {e}") from e

    # ------------------------------------------------------------ health

    @app.get("/healthz", tags=["ops"], responses={200: {"model": HealthOut}, 503: {"model": HealthOut}})
    async def healthz():
        body, status = await health(svc)
        return JSONResponse(body, status_code=status)

    # Documented as what it is: Prometheus text (the document said application/json).
    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse, responses=json_errors(
        "a method other than GET or HEAD",
        "not for the database: while it is away a scrape answers 200, tidings_database_up 0"))
    async def prom():
        """Prometheus metrics. Gauges are read from the database at scrape time, so every
        replica reports the cluster's truth; counters are this process's own."""
        return Response(await metrics.scrape(svc), media_type=CONTENT_TYPE_LATEST)

    metrics.watch(svc)

    # ------------------------------------------------------------ stories

    async def latest_page(source: str | None, category: str | None, limit: int,
                          cursor: str | None) -> dict:
        # One selection for the JSON listing and its Atom feed.
        before = None
        if cursor:
            at = decode_cursor(cursor, source, category)
            # An unmarked cursor (older) is placed by its story: one read by id, rare.
            story = None if at.stored else await svc.store.get_story(at.story_id)
            before = page_from(at, story.sort_at if story else None)
        rows = await svc.store.latest_stories(limit=limit + 1, source=source, category=category,
                                              before=before)
        nxt = None
        if len(rows) > limit:
            rows = rows[:limit]
            nxt = encode_cursor(rows[-1], source, category)
        return {"items": [card(s) for s in rows], "next": nxt}

    @app.get("/v1/stories", tags=["stories"], responses={200: {"model": StoriesPage}},
             dependencies=[SIZE_IS_LIMIT])
    async def stories(
        source: SectionQuery = None,
        category: SectionQuery = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 20,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
    ):
        return await latest_page(source, category, limit, cursor)

    @app.get("/v1/stories.atom", tags=["stories"], response_class=AtomResponse,
             responses=atom_responses(PUBLIC_FEED), dependencies=[SIZE_IS_LIMIT])
    async def stories_atom(
        request: Request,
        source: SectionQuery = None,
        category: SectionQuery = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = ATOM_DEFAULT_LIMIT,
    ):
        """The latest stories as an Atom feed, selected as `/v1/stories` selects them: a
        section's stories for a feed reader, or for another Tidings to collect."""
        page = await latest_page(source, category, limit, None)
        base = base_url(request, api.public_url)
        section = {"category": category, "source": source}
        body, identity = atom_feed(
            page["items"], feed_id=feed_url(base, "/v1/stories.atom", section),
            title=latest_title(category, source), version=app.version,
            self_url=feed_url(base, "/v1/stories.atom", {
                **section, "limit": None if limit == ATOM_DEFAULT_LIMIT else limit}),
            now=datetime.now(UTC))
        return atom_response(request, body, identity, PUBLIC_FEED)

    @app.get("/v1/stories/{id}", tags=["stories"], responses={200: {"model": StoryOut}})
    async def story(story_id: StoryId):
        s = await svc.store.get_story(story_id)
        if s is None:
            raise ApiError(404, "not_found", f"no story with id {story_id}")
        return {**card(s), "text": s.text, "collected_at": iso(s.collected_at),
                "duplicate_of": s.duplicate_of}

    @app.delete("/v1/stories/{id}", tags=["stories"], responses={200: {"model": TakedownOut}})
    async def take_down(request: Request, story_id: StoryId,
                        reason: Annotated[str, Query(max_length=1000),
                                          AfterValidator(takedown_reason)] = ""):
        """Take a story down for good (operator; API key when configured): it and every copy of
        its body leave the store and every index within seconds, and stay out: collectors and
        imports skip its URL and its body. `tidings takedown lift URL` lets them back."""
        require_key(request)
        s = await svc.store.get_story(story_id)
        if s is None:
            raise ApiError(404, "not_found", f"no story with id {story_id}")
        removed = await svc.store.take_down([s.url], reason=reason)
        if svc.corpus is not None:  # this process drops it now, not at its next tick
            await follow_after_takedown(svc.corpus, api.database_timeout_s)
        return {"url": s.url, "removed": removed}

    # ------------------------------------------------------------ related

    @app.get("/v1/stories/{id}/related", tags=["related"],
             responses=cached_block_responses(BlockOut, personal=True), dependencies=[SIZE_IS_K])
    async def related_story(
        request: Request,
        f: BlockFilters,
        story_id: StoryId,
        k: int = k_query(api.max_k, api.default_k),
        reader: ReaderQuery = None,
    ):
        rel = need_corpus()
        kk = clamp_k(k)
        if reader:
            return await personal(reader, kk, lambda n: rel.for_story(story_id, k=n, filters=f))
        return await cached_block(request, ("id", story_id, kk, f),
                                  lambda: rel.for_story(story_id, k=kk, filters=f))

    @app.get("/v1/related", tags=["related"], responses=cached_block_responses(BlockOut, personal=True),
             dependencies=[SIZE_IS_K])
    async def related_url(
        request: Request,
        f: BlockFilters,
        url: Annotated[str, Query(min_length=1, max_length=MAX_URL_CHARS)],
        k: int = k_query(api.max_k, api.default_k),
        reader: ReaderQuery = None,
    ):
        rel = need_corpus()
        kk = clamp_k(k)
        with fetch_charge(request) as charge:
            if reader:
                return await guarded(lambda: personal(
                    reader, kk, lambda n: rel.for_url(url, k=n, filters=f, before_fetch=charge,
                                                      client=client_of(request))))
            return await guarded(lambda: cached_block(
                request, ("url", block_address(url), kk, f),
                lambda: rel.for_url(url, k=kk, filters=f, before_fetch=charge,
                                    client=client_of(request))))

    async def related_text(request: Request, body: RelatedRequest, query: BlockFilters,
                           reader: ReaderQuery = None,
                           k: int | None = Query(None, ge=1, le=api.max_k, description=(
                               f"stories in the block (at most {api.max_k}), if not in the body"))):
        rel = need_corpus()
        # `k` in the query too, as the filters and the reader, and as GET /v1/related takes it:
        # `?k=3` on a POST was dropped without a word (`?k=abc` too).
        body_k = body.k if "k" in body.model_fields_set else None
        if body_k is not None and k is not None and body_k != k:
            raise ApiError(422, "invalid_request", "k: the body and the query give different values")
        kk = clamp_k(body_k if body_k is not None else k)
        if not has_words(body.title, body.text):
            raise ApiError(422, "no_article", "the title and text hold no words to find related "
                           "stories for (blank, or only punctuation)")
        f = merged_filters(block_filters(body.category, body.site, body.exclude_site,
                                         body.max_age_days), query)
        if body.reader and reader and body.reader != reader:
            raise ApiError(422, "invalid_request", "reader: the body and the query name different readers")
        reader = body.reader or reader

        charge = embed_charge(request)

        def make(n: int):
            return rel.for_text(body.title, body.text, url=body.url, k=n, filters=f,
                                published_at=body.published_at, before_embed=charge)

        # The reader was ignored here while the GET routes honoured it: muted categories,
        # sources and topics came back in blocks the caller asked to personalize.
        if reader:
            return await guarded(lambda: personal(reader, kk, make))
        return block_json(await guarded(lambda: make(kk)))

    # FastAPI reads the body's model from the annotation: this app's, with the real k bounds.
    related_text.__annotations__["body"] = related_request_model(api.max_k, api.default_k)
    app.post("/v1/related", tags=["related"], responses={200: {"model": BlockOut}},
             dependencies=[SIZE_IS_K])(related_text)

    @app.get("/v1/search", tags=["search"], responses=cached_block_responses(SearchOut),
             dependencies=[SIZE_IS_K])
    async def search(
        request: Request,
        f: BlockFilters,
        # Its length is checked once its spaces collapse (`query_problem`): "budget" padded
        # with spaces past 200 was refused as too long, though it is searched as 6 letters.
        # The cap here only bounds what is read.
        q: Annotated[str, Query(min_length=1, max_length=MAX_RAW_QUERY_CHARS, description=(
            f"the words to search for: at most {MAX_QUERY_CHARS} characters once spaces collapse"))],
        k: int = k_query(api.max_k, min(SEARCH_DEFAULT_K, api.max_k)),
    ):
        """Stories that answer the words `q`, best first, with the related blocks' filters:
        found by meaning and by words as a block's candidates are, copies shown once."""
        rel = need_corpus()
        kk = clamp_k(k)
        query = normal_query(q)
        if len(query) > MAX_QUERY_CHARS:  # the 422 it was when Query checked the raw q
            raise ApiError(422, "invalid_request", f"q is longer than {MAX_QUERY_CHARS} characters "
                           "(once its spaces collapse)")
        if problem := query_problem(query):
            raise ApiError(422, "no_query", f"q {problem}")
        # Each search that misses the cache embeds its query, as a POSTed text is: the same
        # limit, from the same bucket.
        charge = embed_charge(request)
        return await cached_block(
            request, ("search", query, kk, f),
            lambda: rel.search(query, k=kk, filters=f,
                               ranking=search_ranking(rel, query, f, charge)),
            shape=functools.partial(search_json, query))

    @app.get("/v1/widget", tags=["widget"], response_class=HTMLResponse,
             responses={**cached_block_responses(None), **json_errors(
                 ERROR_RESPONSES["4XX"]["description"], ERROR_RESPONSES[503]["description"])},
             dependencies=[SIZE_IS_K])
    async def widget_fragment(
        request: Request,
        f: BlockFilters,
        words: Annotated[Words, Depends(fragment_words)],
        url: Annotated[str, Query(min_length=1, max_length=MAX_URL_CHARS)],
        k: int = k_query(api.max_k, widget_k),
        lang: Annotated[str, Query(max_length=35, description=(
            "the page's language (BCP 47, e.g. fr, de-AT): its dates' month names in de, el, es, "
            "fr, it, nl, pt, ru or tr, any other as 2026-12-06 (blank: English)"))] = "",
        # Blank is unset (false), as a blank filter is: a template's empty `new_tab=` was a 422.
        new_tab: Annotated[bool, Query(
            description="links to other sites than the url's open in a new tab (blank: false)"),
            BeforeValidator(lambda v: blank_is_none(v) or False)] = False,
        link_rel: Annotated[str, Query(alias="rel", max_length=100, description=(
            "link types for links to other sites than the url's, space-separated: "
            + ", ".join(LINK_RELS)))] = "",
        heading_level: Annotated[int, Query(
            ge=HEADING_LEVELS[0], le=HEADING_LEVELS[-1], description=(
                "the heading's level, one digit, 2 to 6, as widget.js's data-heading-level: 3 "
                "under an article whose sections are h2s (blank: 2)")),
            # As the script reads the attribute, not the lax integer parse ("03", "3.0"): one
            # page's server block and script block had other levels for the same text.
            BeforeValidator(lambda v: heading_level_of(v) if isinstance(v, str) else v)] = 2,
    ):
        rel = need_corpus()
        kk = clamp_k(k)
        # A word the fragment cannot carry is refused, not dropped as the widget does: the
        # caller is a server whose author reads the answer, and a typo ("no-follow") would
        # leave the links followed without a word.
        try:
            rels = link_rels(link_rel)
        except ValueError as e:
            raise ApiError(422, "invalid_request", f"rel: {e}") from e
        links = OtherSiteLinks(site_key(url), new_tab, rels)
        # Cached like the JSON blocks (same key scheme, new stories invalidate): the fragment is
        # the hottest call, one per article view, and rebuilding it cost ~50 ms of CPU each
        # time under the load test (docs/reliability.md). The links are part of the key: one
        # article's block is cached apart for each way of linking it, for its words and for
        # its dates' language ("fr", "FR" and "fr-CA" are one entry, their dates the same), and
        # under the article's canonical URL (`block_address`).
        dates = date_language(lang)
        key = ("widget", block_address(url), kk, f, links, words, dates, heading_level)
        async def rank() -> CachedBlock:
            weights = weights_now()
            # Charged to the request that ranks: one that joins another's ranking fetches nothing.
            with fetch_charge(request) as charge:
                block = await guarded(lambda: rel.for_url(url, k=kk, filters=f,
                                                          before_fetch=charge,
                                                          client=client_of(request)))
            return cache.put_block(key, render_block_html(block_json(block), words=words, links=links,
                                                     dates=dates, heading_level=heading_level).encode(),
                                   ranked_at(block, weights), block.reach)

        hit = await cached_or_ranked(cache, flights, key, rank, count_block)
        keep_for_fast_path(request, hit)
        html, etag = hit.body, hit.etag
        headers = {**HTML_HEADERS, "ETag": etag, "Cache-Control": "public, max-age=60"}
        if revalidates(request.headers, etag):
            return Response(status_code=304, headers=headers)
        return HTMLResponse(html, headers=headers)

    @app.get("/widget.js", tags=["widget"], include_in_schema=False)
    async def widget_js(request: Request):
        script = widget_script(widget_k, min(WIDGET_MAX_K, api.max_k))
        # Sent raw, it was 20 kB on every publisher page (7 kB gzipped), and downloaded again
        # after each max-age: now gzipped when accepted, and revalidated by ETag.
        gzipped = accepts_gzip(request.headers.get("accept-encoding"))
        # Cross-Origin-Resource-Policy: a publisher page with Cross-Origin-Embedder-Policy:
        # require-corp refuses another origin's script that does not say it may be embedded
        # (Fetch, "cross-origin resource policy check"), and showed no block.
        headers = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff",
                   "Cross-Origin-Resource-Policy": "cross-origin",
                   "Vary": "Accept-Encoding", "ETag": script.etag_for(gzipped)}
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        if revalidates(request.headers, headers["ETag"]):
            return Response(status_code=304, headers=headers)
        return Response(script.body(gzipped), media_type="application/javascript", headers=headers)

    demo_page = (STATIC / "demo.html").read_text(encoding="utf-8")  # read once, not per view
    if svc.related is not None:
        # The sample article's address is made up (a reserved .example host, fetched by nobody):
        # the widget under it asks for its block, which is read from the page served here. It
        # showed "no related block" for the one article the demo is about.
        svc.related.own_pages[canonical_url(declared_address(demo_page))] = demo_page.encode()

    @app.get("/demo", tags=["widget"], include_in_schema=False)
    async def demo():
        return own_page(demo_page, DEMO_POLICY)

    def openapi_url(request: Request) -> str:
        # As FastAPI's own docs routes: behind a proxy the spec is under the root path.
        return request.scope.get("root_path", "").rstrip("/") + app.openapi_url

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request):
        return docs_page(openapi_url(request), app.title)

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request):
        return redoc_page(openapi_url(request), app.title)

    # ------------------------------------------------------------ sources

    @app.get("/v1/sources", tags=["sources"], responses={200: {"model": SourcesOut}})
    async def sources(request: Request):
        """Sources with health, then those removed from the sources file whose stories are
        still stored (status `retired`). Needs the API key when `api.api_key` is set
        (operator data)."""
        require_key(request)
        rows = await svc.store.list_sources(
            retired=True, min_interval_s=settings.collect.min_interval_s)
        return {"items": [source_json(r) for r in rows]}

    @app.post("/v1/sources/{name}/reset", tags=["sources"], responses={200: {"model": ResetOut}})
    async def reset_source(request: Request, name: str):
        """Clear a source's errors and make it due now (operator; API key when configured):
        `status` is `due`, or `disabled` for a source the file disables (not fetched until
        enabled). A source removed from the file is a 404, as an unknown one."""
        require_key(request)
        status = await svc.store.reset_source(name, datetime.now(UTC))
        if status is None:
            raise ApiError(404, "not_found", f"no source named {name!r}")
        return {"name": name, "status": status}

    # ------------------------------------------------------------ widget stats

    @app.get("/v1/stats", tags=["ops"], responses={200: {"model": StatsOut}})
    async def stats(
        request: Request,
        days: Annotated[int, Query(ge=1, le=MAX_DAYS)] = 7,
        site: Annotated[str | None, Query(max_length=255)] = None,
    ):
        """How the widget performs (operator; API key when configured): impressions, clicks,
        reads and click-through rate per UTC day of the last `days` (today so far included),
        in total, per site and for the top stories; `site` narrows to that site's stories."""
        require_key(request)
        since, until = stats_period(datetime.now(UTC), days)
        counts = await svc.store.widget_stats(since, until, site=site or None)
        return JSONResponse(stats_report(counts, since, until), headers={"Cache-Control": "no-store"})

    # ------------------------------------------------------------ events

    # Counted from the events stored, not the batch: a batch repeating a key, or one stored
    # before, has fewer new events than entries, and not always its first ones.
    sink = EventSink(svc.store, on_written=lambda fresh: [
        metrics.events.labels(e.type).inc() for e in fresh])
    app.state.events = sink

    max_batch = batch_limit(api.events_per_minute)
    events_schema = events_body_schema(max_batch)

    @app.post("/v1/events", tags=["readers"], status_code=202,
              responses={202: {"model": AcceptedOut}}, openapi_extra={"requestBody": {
                  "required": True, "content": {media: {"schema": events_schema}
                                                for media in ("application/json", "text/plain")}}})
    async def events(request: Request):
        """Impressions, clicks and reads, one or `{"events": [...]}`; idempotent by `id`."""
        body = await request.body()
        evs = parse_events(body, max_batch)
        limiter.check(("events", client_of(request)), api.events_per_minute, len(evs))
        records, skipped = await resolve(svc.store, evs, datetime.now(UTC))
        sink.submit(records)
        return {"accepted": len(records),
                "skipped": [{"event": i, "reason": why} for i, why in skipped]}

    if svc.feeds is not None:
        add_reader_routes(app, svc, svc.feeds, require_key=require_key, max_k=api.max_k)

    # Every answer, not only the HTML ones: JSON errors echo what the caller sent (a path, a
    # URL), and only nosniff guarantees no browser ever reads them as a page. Inside the fast
    # path, so the answers it records and replays carry it too.
    app.add_middleware(NoSniff)

    # Added last, so it is the outermost layer: a replayed block skips the timing middleware
    # and the routing, which is most of the cost of a cached answer (api/fastpath.py).
    if api.fast_path:
        app.add_middleware(FastPath, fresh=fresh, metrics=metrics)

    # Outermost of all: a HEAD reaches the fast path, the routes and CORS as the GET it mirrors.
    app.add_middleware(HeadAsGet)
    if api.access_log:  # outside HeadAsGet: a HEAD is logged as one
        app.add_middleware(AccessLog, routes=app.routes)

    app.state.require_key = require_key
    app.state.limiter = limiter
    app.state.client_of = client_of
    app.state.need_corpus = need_corpus
    app.state.clamp_k = clamp_k
    return app


async def follow_after_takedown(corpus, limit_s: float) -> None:
    """Let this process's index drop what a takedown removed, waiting at most `limit_s`.

    The takedown is stored by now: whatever happens here, the answer says so. The follow job
    may hold the corpus's follow lock for long (a reload of every story after the change log
    was pruned, ~10 min at a million; a follow stuck on a database that stopped answering),
    and the DELETE waited for it with no limit; a follow that failed made the stored takedown
    a 503 (or a 500), and the operator's retry a 404. The follow goes on in the background
    (the next tick of the follow job would apply it anyway)."""
    async def follow_unlimited() -> int:
        with calls_limited(None):  # goes on past the request, as the follow job's own would
            return await corpus.follow()

    follow = asyncio.ensure_future(follow_unlimited())
    follow.add_done_callback(_log_follow_failure)
    with contextlib.suppress(Exception):  # a timeout, or the follow's own failure (logged)
        await asyncio.wait_for(asyncio.shield(follow), limit_s)
    if not follow.done():
        log.warning("api.takedown_follow_pending: the index is busy following the change log; "
                    "the story leaves this process's blocks when it is done")


def _log_follow_failure(task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("api.takedown_follow_failed: %s; the follow job applies the takedown at its "
                    "next tick", driver_reason(task.exception()))


def db_unavailable_response() -> Response:
    return error_response(503, "database_unavailable", "the database is unavailable; try again shortly",
                          {"Retry-After": "5"})


def server_config(app, host: str, port: int, **options):
    """The uvicorn configuration every server of the API uses (`serve`, `run`, the workers,
    tests and benchmarks), so all of them answer oversized requests the same way."""
    import uvicorn

    # log_config None: uvicorn's lines (a request's traceback, "Exception in ASGI
    # application") go through the process's own handler (api.cli.configure_logging), with
    # its time, level and pid; uvicorn's config gave them a handler of their own that wrote
    # "ERROR:    Exception in ASGI application" with no time nor process.
    # timeout_graceful_shutdown: on a stop, requests under way get STOP_GRACE_S to end, then
    # are cancelled. uvicorn's default waits for them without end, and a client that sends
    # its body slowly (or stops halfway) kept `serve` and `run` from stopping at all.
    # http: uvicorn's h11 protocol with deadlines for a request's head and body, and for the
    # client taking its answer (api/requestdeadline.py): without them a connection that sent
    # its head a byte at a time, or nothing, or never read what it asked for, was held for
    # good, and enough of them filled the process's file descriptors.
    defaults = {"log_level": "warning", "access_log": False, "log_config": None,
                "http": "api.requestdeadline:DeadlineH11Protocol",
                "h11_max_incomplete_event_size": MAX_REQUEST_HEAD_BYTES,
                "timeout_graceful_shutdown": STOP_GRACE_S}
    return uvicorn.Config(app, host=host, port=port, **{**defaults, **options})
