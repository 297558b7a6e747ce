"""Reader routes: personalized feed, trending, preferences, export and deletion (DESIGN.md 4.3).

A reader is an opaque id the site (or the widget) supplies; no personal data is asked for.
Export and deletion are operator actions (API key when one is configured).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

from fastapi import FastAPI, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from api.atom import AtomResponse, atom_feed, atom_response, atom_responses, base_url, feed_url
from api.cards import CardOut, card, iso
from api.errors import ApiError
from api.events import READER_ID, blank_is_none, reader_id
from api.pagesize import SIZE_IS_K
from recommender.feed import NOT_OURS, BadCursor
from recommender.readers import (
    PREF_KEYS,
    FeedService,
    follow_mute_conflicts,
    stored_preferences,
    unknown_follows,
)

# A feed cursor carries the ids its pages showed (~2-3 bytes each, base64): a reader paged
# through a whole feed (~1,000 candidates) carries about 4 kB.
MAX_CURSOR_CHARS = 16_384
# Stories a trending list gives when the caller does not say; fewer where api.max_k is (the
# most one call may ask for): it gave 20 where `?k=20` was a 422.
TRENDING_DEFAULT_K = 20
# The pattern is checked by `reader_id` (for its message, and to refuse "." and "..", which
# no URL path carries: api/events.py DOT_SEGMENTS) and stated in the schema.
ReaderId = Annotated[str, Path(min_length=1, max_length=128,
                               json_schema_extra={"pattern": READER_ID.pattern}),
                     AfterValidator(reader_id)]
# Export and deletion take "." and ".." too, written %2E%2E, and an id with a final newline,
# written %0A: events accepted them before they were refused (`reader_problem`), and what is
# stored about such a reader must still be exported and forgotten.
STORED_READER_ID = READER_ID.pattern.removesuffix("$") + r"\n?$"
StoredReaderId = Annotated[str, Path(min_length=1, max_length=128, pattern=STORED_READER_ID)]


def reader_query(description: str):
    """The optional `reader=` of a route: blank is none, as a blank filter is (a template's
    empty field; it was a 422 while `category=` was no filter); "." and ".." are refused."""
    return Annotated[str | None, Query(max_length=128, description=description,
                                       json_schema_extra={"pattern": READER_ID.pattern}),
                     BeforeValidator(blank_is_none), AfterValidator(reader_id)]
# What a reader's answers say to caches (as related blocks with `reader=`): one reader's feed,
# reads and mutes must not be kept by a shared proxy, nor by the browser for the next user.
PERSONAL = "private, no-store"
# The reader's Atom feed goes to their own feed reader, which polls it: it may keep a copy
# but asks again every time (If-None-Match, a 304 when nothing changed). With no-store every
# poll fetched the whole feed. Still never a shared proxy's.
PERSONAL_FEED = "private, no-cache"


def _name(max_chars: int, min_chars: int = 0):
    # Lengths of the name without surrounding space, as it is matched (`name_key` strips it):
    # " a" passed as a topic of two characters and muted every story with the word "a".
    return Annotated[str, StringConstraints(strip_whitespace=True, min_length=min_chars,
                                            max_length=max_chars)]


SectionName, SourceName, Topic = _name(80), _name(120), _name(80, min_chars=2)


class PreferencesIn(BaseModel):
    # An unknown key ("follow_topics", a typo) is a 422 naming it: ignored, it stored empty
    # preferences and wiped the reader's mutes.
    model_config = ConfigDict(extra="forbid")

    follow_categories: list[SectionName] = Field(default_factory=list, max_length=100)
    mute_categories: list[SectionName] = Field(default_factory=list, max_length=100)
    follow_sources: list[SourceName] = Field(default_factory=list, max_length=200)
    mute_sources: list[SourceName] = Field(default_factory=list, max_length=200)
    mute_topics: list[Topic] = Field(default_factory=list, max_length=200)


class FeedPage(BaseModel):
    """A feed page as DESIGN.md 4.3 states it, for the OpenAPI document (which said nothing of
    the feed's shape); tests/api/test_fuzz.py checks real pages against it."""

    reader: str
    items: list[CardOut]
    next: str | None


class PreferencesOut(BaseModel):
    follow_categories: list[str]
    mute_categories: list[str]
    follow_sources: list[str]
    mute_sources: list[str]
    mute_topics: list[str]


class UnknownFollows(BaseModel):
    """Follows that match no category or source known now (a key only when it has some)."""

    follow_categories: list[str] = Field(default_factory=list, min_length=1)
    follow_sources: list[str] = Field(default_factory=list, min_length=1)


class PreferencesSaved(BaseModel):
    """A PUT's answer, for the OpenAPI document: the preferences as stored, and the follows
    that name nothing known yet (stored all the same; an empty object when there are none)."""

    reader: str
    preferences: PreferencesOut
    unknown: UnknownFollows


class PreferencesRead(BaseModel):
    """GET .../preferences, for the OpenAPI document (it, the export, the deletion and
    trending declared an empty schema: a generated client read their bodies as anything)."""

    reader: str
    preferences: PreferencesOut


class ExportedEvent(BaseModel):
    story_id: int
    type: str
    at: str | None
    dwell_s: float | None
    page: str | None
    url: str | None = Field(description="null once the story was deleted (removed)")
    title: str | None = Field(description="null once the story was deleted (removed)")
    removed: bool


class ReaderExport(BaseModel):
    reader: str
    preferences: PreferencesOut
    created_at: str | None
    last_seen_at: str | None
    events: list[ExportedEvent] = Field(description="by `at`, then story id, then the order stored")


class ReaderDeleted(BaseModel):
    reader: str
    deleted: bool


class TrendingOut(BaseModel):
    items: list[CardOut]


def every_preference(info: dict | None) -> dict[str, list[str]]:
    """A stored reader's preferences (`Store.reader`, None for none) under every key, a list
    each, as the preferences route and the export both answer: the export gave `{}` for a
    reader who set none (every reader the widget made), where a script read `mute_topics`."""
    stored = (info or {}).get("preferences") or {}
    return {k: list(stored.get(k, [])) for k in PREF_KEYS}


def add_reader_routes(app: FastAPI, svc, feeds: FeedService, *, require_key, max_k: int) -> None:
    trending_k = min(TRENDING_DEFAULT_K, max_k)

    def check_k(k: int | None) -> int | None:
        if k is not None and k > max_k:
            raise ApiError(422, "invalid_request", f"k must be at most {max_k}")
        return k

    # The page a feed gives without `k`: `[feed] page_size`, but never more than a caller
    # may ask for (it gave page_size stories where that was above api.max_k).
    page_k = min(feeds.page_size, max_k)
    feed_k = Query(None, ge=1, le=max_k, description=(
        f"stories a page (at most {max_k}; default: feed.page_size, {page_k})"))

    async def feed_page(reader: str, k: int | None, cursor: str | None) -> dict:
        # One page for the JSON feed and its Atom document.
        await app.state.events.written_for(reader)  # their click of a moment ago counts
        try:
            page = await feeds.feed(reader, k=check_k(k) or page_k, cursor=cursor)
        except ValueError as e:  # BadCursor says why (cut short, another reader's)
            raise ApiError(400, "invalid_cursor", str(e) if isinstance(e, BadCursor) else NOT_OURS) from e
        return {"reader": reader,
                "items": [card(m, score=it.score, reason=it.reason) for m, it in page.items],
                "next": page.next}

    @app.get("/v1/readers/{reader}/feed", tags=["readers"], responses={200: {"model": FeedPage}},
             dependencies=[SIZE_IS_K])
    async def reader_feed(response: Response, reader: ReaderId, k: int | None = feed_k,
                          cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_CHARS)] = None):
        """The reader's personalized feed; a reader we do not know yet gets trending and latest."""
        page = await feed_page(reader, k, cursor)
        # No ETag, unlike the Atom page: a page's `next` carries its snapshot second (and the
        # ranking is as of it), so the body is new each second and no revalidation would match.
        response.headers["Cache-Control"] = PERSONAL
        return page

    @app.get("/v1/readers/{reader}/feed.atom", tags=["readers"], response_class=AtomResponse,
             responses=atom_responses(PERSONAL_FEED), dependencies=[SIZE_IS_K])
    async def reader_feed_atom(request: Request, reader: ReaderId, k: int | None = feed_k):
        """The first page of the reader's feed as an Atom feed, each entry with its reason
        (`tidings:reason`), for the reader's feed reader. Reading it is no event of theirs."""
        page = await feed_page(reader, k, None)
        base = base_url(request, svc.settings.api.public_url)
        path = f"/v1/readers/{reader}/feed.atom"
        body, identity = atom_feed(
            page["items"], feed_id=feed_url(base, path, {}), title="Tidings: your feed",
            self_url=feed_url(base, path, {"k": k}), version=app.version, now=datetime.now(UTC))
        return atom_response(request, body, identity, PERSONAL_FEED)

    @app.get("/v1/trending", tags=["readers"], responses={200: {"model": TrendingOut}},
             dependencies=[SIZE_IS_K])
    async def trending(response: Response,
                       category: Annotated[str | None, Query(max_length=80)] = None,
                       k: int | None = Query(None, ge=1, le=max_k,
                                             description=f"stories (at most {max_k}; default {trending_k})"),
                       reader: reader_query("leave out what this reader muted or read") = None):
        """Most read lately (smoothed), fresh stories breaking ties."""
        if reader:
            await app.state.events.written_for(reader)
        items = await feeds.trending(category=category, k=check_k(k) or trending_k, reader=reader)
        if reader:
            response.headers["Cache-Control"] = PERSONAL
        return {"items": [card(m, score=it.score, reason=it.reason) for m, it in items]}

    @app.put("/v1/readers/{reader}/preferences", tags=["readers"],
             responses={200: {"model": PreferencesSaved}})
    async def put_preferences(reader: ReaderId, body: PreferencesIn):
        """Follow or mute categories, sources and topics (replaces what was set before).
        `unknown` lists the follows that match no category or source known now (a typo, or
        a section whose first story has not arrived): stored all the same."""
        prefs = stored_preferences({k: getattr(body, k) for k in PREF_KEYS})
        if both := follow_mute_conflicts(prefs):
            raise ApiError(422, "invalid_request", f"both followed and muted: {', '.join(both)}; "
                           "a PUT replaces every list, so send the one the reader chose last")
        await svc.store.set_preferences(reader, prefs)
        unknown = {}
        if prefs["follow_categories"] or prefs["follow_sources"]:
            sections = await svc.store.source_sections()
            meta = feeds.corpus.meta
            unknown = unknown_follows(
                prefs, categories=[c for _, c in sections] + meta.category_names(),
                sources=[n for n, _ in sections] + meta.source_names())
        return {"reader": reader, "preferences": prefs, "unknown": unknown}

    @app.get("/v1/readers/{reader}/preferences", tags=["readers"],
             responses={200: {"model": PreferencesRead}})
    async def get_preferences(response: Response, reader: ReaderId):
        """What the reader follows and mutes (every list empty for a reader who set none):
        a site's settings page shows it before a PUT replaces it. Only the operator's export
        read it back, with the API key."""
        info = await svc.store.reader(reader)
        response.headers["Cache-Control"] = PERSONAL
        return {"reader": reader, "preferences": every_preference(info)}

    @app.get("/v1/readers/{reader}", tags=["readers"], responses={200: {"model": ReaderExport}})
    async def export_reader(request: Request, reader: StoredReaderId):
        """Everything stored about a reader (operator; API key when configured); the events
        by `at`, then story id, then the order stored."""
        require_key(request)
        await request.app.state.events.written_for(reader)
        info = await svc.store.reader(reader)
        if info is None:
            raise ApiError(404, "not_found", f"no reader {reader!r}")
        head = json.dumps({"reader": reader, "preferences": every_preference(info),
                           "created_at": iso(info["created_at"]),
                           "last_seen_at": iso(info["last_seen_at"])})

        async def body():
            # Every event, written as read: a reader asking for their data gets all of it (the
            # export stopped at 100,000 events without a word), and the process holds one
            # batch, not the reader's whole history. An event of a story deleted since
            # (retention, a takedown, a purge) is there too, marked removed, without the
            # story's URL and title: the store no longer holds them.
            yield head[:-1] + ', "events": ['
            sep = ""
            async for events in svc.store.iter_reader_events(reader):
                yield sep + ", ".join(json.dumps({"story_id": e.story_id, "type": e.type, "at": iso(e.at),
                                                  "dwell_s": e.dwell_s, "page": e.page, "url": e.url,
                                                  "title": e.title, "removed": e.url is None})
                                      for e in events)
                sep = ", "
            yield "]}"

        return StreamingResponse(body(), media_type="application/json",
                                 headers={"Cache-Control": PERSONAL})

    @app.delete("/v1/readers/{reader}", tags=["readers"], responses={200: {"model": ReaderDeleted}})
    async def delete_reader(request: Request, reader: StoredReaderId):
        """Forget a reader: their events and preferences (operator; API key when configured)."""
        require_key(request)
        await request.app.state.events.settle()  # this process's events accepted before now
        if not await svc.store.delete_reader(reader):
            raise ApiError(404, "not_found", f"no reader {reader!r}")
        return {"reader": reader, "deleted": True}
