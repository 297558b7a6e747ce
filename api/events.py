"""Reader feedback in: `POST /v1/events`, validated, idempotent, written off the request path.

The widget posts with `Content-Type: text/plain` (sendBeacon and CORS-simple fetch, so no
preflight), so the body is read as JSON whatever its content type. Accepted events go to an
in-process queue that a background task writes in batches; the request answers 202 at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections import Counter
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from aggregator.canonical import canonical_url
from aggregator.model import MAX_STORY_ID
from aggregator.store import EventRecord, Store, calls_limited, driver_reason, event_key
from api.errors import ApiError, unreadable_body_message, validation_message
from recommender.profile import EVENT_TYPES

log = logging.getLogger("tidings.events")

MAX_BODY_BYTES = 256_000
MAX_BATCH = 500


def batch_limit(events_per_minute: int) -> int:
    """The most events one request may carry: MAX_BATCH, or fewer under a lower per-minute
    limit (0 = none). Each event is charged to the client's bucket, which never holds more
    than a minute's worth: a bigger batch was a 429 "retry after 60 s" that no retry could
    ever pass, where a 413 says to send it in parts."""
    return min(MAX_BATCH, events_per_minute) if events_per_minute > 0 else MAX_BATCH
# The most a reader's own request waits for their events to be written (`written_for`): a
# batch is written within EventSink.flush_s when the database answers.
OWN_EVENTS_WAIT_S = 2.0
# The most a shutdown waits for accepted events to be written: a batch's retries while the
# database is away take ~16 s (`_write_batch`).
CLOSE_WAIT_S = 20.0
MAX_FUTURE = timedelta(minutes=5)  # client clocks drift; further ahead is a bad timestamp
MAX_PAST = timedelta(days=30)
READER_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Ids the pattern lets through that no reader route can carry: "." and ".." are dot segments of
# a URL path, which clients resolve before sending (RFC 3986 5.2.4; browsers and httpx do,
# `%2E%2E` too), so `/v1/readers/../feed` became `/v1/feed`, a 404, and `/v1/readers/./feed`
# the export of a reader named "feed". Their events were stored, and their feed, export and
# deletion could not be asked for.
DOT_SEGMENTS = frozenset({".", ".."})
READER_RULE = "reader must be 1-128 characters of letters, digits, . _ : - (not . or ..)"


def reader_problem(reader: str) -> str | None:
    """Why `reader` is no reader id (READER_RULE), else None."""
    # fullmatch, not match: Python's `$` also matches before a final newline, so "r1\n" (a
    # line read with its end, `%0A` in a path) was taken by events, feeds, preferences and
    # `reader=`, while the export and the deletion (pydantic's pattern, whose `$` is the
    # end) refused it: that reader's events could not be exported or forgotten.
    if not READER_ID.fullmatch(reader) or reader in DOT_SEGMENTS:
        return READER_RULE
    return None


def reader_id(value: str | None) -> str | None:
    """A pydantic validator: `value` when it is a reader id (or None), else ValueError."""
    if value is not None and (problem := reader_problem(value)):
        raise ValueError(problem)
    return value


def blank_is_none(value):
    """A pydantic validator (before): a blank string is no value. An optional reader or filter
    left empty by a template (`reader=`, `"reader": ""`) is unset, as a blank category or site
    has always been, where the reader alone was a 422."""
    return None if isinstance(value, str) and not value.strip() else value


def not_a_bool(v, must: str):
    """`v` unless it is JSON true or false, which the lax parse took as 1 and 0 (Python's bool
    is an int): ValueError(`must`)."""
    if isinstance(v, bool):
        raise ValueError(f"{must}, not true or false")
    return v


def digits_only(text: str) -> bool:
    """Whether `text` is ASCII digits alone (str.isdigit also takes "٣" and "³")."""
    return text.isascii() and text.isdigit()


def json_number(v, must: str):
    """`v` when it is no JSON string or boolean, else ValueError(`must`, and what it is): for
    a body's number fields, which the lax parse filled from either ("3" was 3, true 1). A
    whole number written 3.0 stays a 3, as before."""
    if isinstance(v, str):
        raise ValueError(f"{must} (a JSON number), not a string")
    return not_a_bool(v, must)


class EventIn(BaseModel):
    # An unknown key is a 422 naming it, as for POST /v1/related and the preferences: a typo
    # ("dwell", "story", "ts") was dropped and the event stored without what it meant to say.
    model_config = ConfigDict(extra="forbid")

    # The pattern and the types are checked by the validators below (for their messages); the
    # schema states them too, so the OpenAPI document says what a valid event is.
    reader: str = Field(min_length=1, max_length=128,
                        json_schema_extra={"pattern": READER_ID.pattern})
    story_id: int | None = Field(default=None, ge=1, le=MAX_STORY_ID)
    url: str | None = Field(default=None, max_length=2048)
    type: str = Field(json_schema_extra={"enum": list(EVENT_TYPES)})
    at: datetime | None = Field(default=None, description=(
        "when it happened (ISO 8601; without a zone, UTC; default: when it arrives): at most "
        "5 minutes ahead of the server's clock (stored as received then) and at most 30 days "
        "old. An event outside those limits is refused alone, named in `skipped`"))
    # Finite: NaN and Infinity were refused as "less than or equal to 86400".
    dwell_s: float | None = Field(default=None, ge=0, le=86400, allow_inf_nan=False)
    id: str | None = Field(default=None, max_length=100)  # client event id, for idempotency
    # The article page the widget's block was shown under: the report's `pages`.
    page: str | None = Field(default=None, max_length=2048)

    @field_validator("story_id", "dwell_s", mode="before")
    @classmethod
    def _not_a_bool(cls, v, info: ValidationInfo):
        # JSON true is not story 1, nor a dwell of 1 s: a client's flag in the wrong field was
        # stored as a read of 1 s. A story id as a string of digits stays one: the widget sends
        # the `data-story-id` of its cards as it reads them, strings (and cached copies of it
        # on publishers' pages do for an hour after any change to it).
        what = "a story's id" if info.field_name == "story_id" else "a number of seconds"
        if info.field_name == "story_id" and isinstance(v, str) and not digits_only(v):
            # The lax parse read "3_0" as story 30 and "+3" or " 3 " as 3: not what the widget
            # sends, so a client's bug, which named another story than it meant.
            raise ValueError(f"story_id must be {what}: a number, or a string of its digits, not {v[:40]!r}")
        return not_a_bool(v, f"{info.field_name} must be {what}")

    @field_validator("reader")
    @classmethod
    def _reader(cls, v: str) -> str:
        return reader_id(v)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str | None) -> str | None:
        # Stored in the idempotency key: PostgreSQL refuses NUL, no database a lone surrogate
        # (neither is printable).
        if v is not None and not v.isprintable():
            raise ValueError("id must be printable text")
        return v

    @field_validator("page")
    @classmethod
    def _page(cls, v: str | None) -> str | None:
        # Canonical, as the block was asked for it: one page is one row of the report however
        # the widget or a client spelt it.
        return None if v is None else canonical_url(v)

    @field_validator("type")
    @classmethod
    def _type(cls, v: str) -> str:
        if v not in EVENT_TYPES:
            raise ValueError("type must be impression, click or read")
        return v


EXPECTED = 'expected an event object or {"events": [...]}'


def json_kind(value) -> str:
    """How a JSON value reads in an error message: 'an array', 'null', 'a string'..."""
    if value is None:
        return "null"
    for kind, name in ((bool, "true or false"), (list, "an array"), (str, "a string"),
                       ((int, float), "a number")):
        if isinstance(value, kind):
            return name
    return "another JSON value"


def parse_events(body: bytes, max_batch: int = MAX_BATCH) -> list[EventIn]:
    """The request body as events, at most `max_batch` of them; ApiError(4xx) says what is
    wrong."""
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, "too_large", f"event batches are limited to {MAX_BODY_BYTES} bytes")
    if not body.strip():
        raise ApiError(422, "invalid_request", EXPECTED + ", not an empty body")
    try:
        data = json.loads(body)
    except json.JSONDecodeError as e:
        raise ApiError(400, "invalid_json", f"the body is not JSON: {e}") from e
    # 50,000 nested brackets fit the size cap (a 500 before); bytes that are no UTF-8 and an
    # integer of 5,000 digits are ValueErrors whose own words named codecs and Python calls.
    except (ValueError, RecursionError) as e:
        raise ApiError(400, "invalid_json", unreadable_body_message(e)) from e
    if isinstance(data, dict) and "events" in data and len(data) > 1:
        # A key beside the batch ("reader" meant for every event, a typo) was dropped unread.
        others = ", ".join(sorted(k for k in data if k != "events"))
        raise ApiError(422, "invalid_request", f"a batch is {{\"events\": [...]}} alone, each event "
                       f"with its own keys; not also: {others}")
    raw = data.get("events") if isinstance(data, dict) and "events" in data else [data]
    # Say what `events` held: the one message for both read as if the body had no `events`.
    if not isinstance(raw, list):
        raise ApiError(422, "invalid_request", f"{EXPECTED}: events is {json_kind(raw)}, not an array")
    if not raw:
        raise ApiError(422, "invalid_request", f"{EXPECTED}: events is an empty array")
    if len(raw) > max_batch:
        raise ApiError(413, "too_large", f"at most {max_batch} events per request")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            # pydantic's words here were "event 0: : Input should be a valid dictionary or
            # instance of EventIn", for a bare array of events among others.
            hint = "; send several as {\"events\": [...]}" if isinstance(data, list) else ""
            raise ApiError(422, "invalid_event", f"event {i}: expected an object with reader, type "
                           f"and story_id or url, not {json_kind(item)}{hint}")
        try:
            ev = EventIn.model_validate(item)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(x) for x in err["loc"])
            raise ApiError(422, "invalid_event", f"event {i}: {loc}: {validation_message(err)}") from e
        if ev.story_id is None and not ev.url:
            raise ApiError(422, "invalid_event", f"event {i}: needs story_id or url")
        out.append(ev)
    return out


def unknown_message(unknown: list[tuple[int, str]], n_events: int) -> str:
    """The 404 when no event of the request is about a story we have. The message used to
    name the first unknown story only; it names every one (the first 10)."""
    if n_events == 1:
        _, what = unknown[0]
        return (f"no story with id {what.removeprefix('story_id ')}" if what.startswith("story_id")
                else f"no stored story at {what.removeprefix('url ')}")
    listed = ", ".join(f"event {i}: {what}" for i, what in unknown[:10])
    more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
    return f"no stored story for any of the {n_events} events: {listed}{more}"


def both_message(i: int, story_id: int, url: str, url_story: int | None) -> str:
    """The 422 for an event whose story_id and url are not one story."""
    at_url = f"the story {url_story}" if url_story is not None else "no stored story"
    return (f"event {i}: story_id {story_id} and url {url} name different stories (the url is "
            f"{at_url}); send one of them")


def time_problem(at: datetime, now: datetime) -> str | None:
    """Why an event's time (aware) is refused, else None."""
    if at > now + MAX_FUTURE:
        return "'at' is more than 5 minutes ahead of the server's clock"
    if at < now - MAX_PAST:
        return "'at' is more than 30 days old"
    return None


def refused_message(refused: list[tuple[int, str]], n_events: int) -> str:
    """The 422 when no event of the request could be taken, each named (the first 10) with
    why; some of them may be about stories we do not have."""
    if n_events == 1:
        return f"event 0: {refused[0][1]}"
    listed = "; ".join(f"event {i}: {why}" for i, why in refused[:10])
    more = f"; and {len(refused) - 10} more" if len(refused) > 10 else ""
    return f"none of the {n_events} events could be taken: {listed}{more}"


async def resolve(store: Store, events: list[EventIn],
                  now: datetime) -> tuple[list[EventRecord], list[tuple[int, str]]]:
    """Map events to stored stories and check their times: the records, and the events
    refused (index, why), which are skipped: those about stories we do not have, and those
    whose time is out of bounds (`time_problem`). Either refused the whole batch: the widget
    sends every impression of a block in one batch, and one story removed since the block was
    shown (retention, a takedown) lost all of them; an app's queue flushed after a month
    offline lost its fresh events for its oldest one. None taken is a 404 when every event
    is about a story we do not have, else a 422 naming each."""
    urls = {}
    for i, ev in enumerate(events):
        if ev.url:
            try:
                urls[ev.url] = canonical_url(ev.url)
            except ValueError as e:
                raise ApiError(422, "invalid_event", f"event {i}: url: {e}") from None
    by_url = {}
    for raw, canon in urls.items():
        # Under its other spellings too, as a related block finds it (RelatedService.stored_at):
        # a widget on the http page of a story collected as https got that story's block, and
        # its events naming that page were skipped as about a story we did not have.
        s = await store.get_story_by_any_spelling(canon)
        if s is not None:
            by_url[raw] = s.id
    ids = {ev.story_id for ev in events if ev.story_id is not None}
    known = await store.existing_ids(ids) if ids else set()
    for i, ev in enumerate(events):
        # Both named: they must be one story (or neither stored: skipped below, as a story
        # removed since). The id won without a word, and a client whose ids and urls had come
        # apart (a stale map) had its clicks stored on another story than the page it named.
        if ev.story_id is not None and ev.url:
            at_url = by_url.get(ev.url)
            if at_url != ev.story_id and (at_url is not None or ev.story_id in known):
                raise ApiError(422, "invalid_event", both_message(i, ev.story_id, ev.url, at_url))
    unknown = [(i, f"story_id {ev.story_id}" if ev.story_id is not None else f"url {ev.url}")
               for i, ev in enumerate(events)
               if (ev.story_id not in known if ev.story_id is not None else ev.url not in by_url)]
    if len(unknown) == len(events):
        raise ApiError(404, "unknown_story", unknown_message(unknown, len(events)))
    refused = {i: f"no stored story for its {what}" for i, what in unknown}
    records = []
    for i, ev in enumerate(events):
        if i in refused:
            continue
        at = (ev.at or now)
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
        if problem := time_problem(at, now):
            refused[i] = problem
            continue
        sid = ev.story_id if ev.story_id is not None else by_url[ev.url]
        key = event_key(ev.reader, sid, ev.type, at, ev.id, ev.page)  # the time sent: a retry's key
        # A client clock a little ahead is tolerated, but the event happened by now: dated
        # later, a read story stayed in the feed (whose snapshot leaves out later events).
        records.append(EventRecord(key, ev.reader, sid, ev.type, min(at, now), ev.dwell_s,
                                   ev.page))
    skipped = sorted(refused.items())
    if not records:
        raise ApiError(422, "invalid_event", refused_message(skipped, len(events)))
    return records, skipped


class EventSink:
    """Batches accepted events into the database from a background task."""

    def __init__(self, store: Store, *, flush_s: float = 0.2, max_queue: int = 100_000, on_written=None):
        self.store = store
        self.flush_s = flush_s
        self.queue: asyncio.Queue[EventRecord] = asyncio.Queue(max_queue)
        self.on_written = on_written  # called with the events each write stored new
        self._task: asyncio.Task | None = None
        self._inflight = 0  # a batch taken from the queue and not yet written
        self._unwritten: Counter[str] = Counter()  # each reader's events accepted, not written
        self._closing = asyncio.Event()  # set by `close`: write what is queued at once

    def submit(self, records: list[EventRecord]) -> None:
        if self.queue.qsize() + len(records) > self.queue.maxsize:
            raise ApiError(503, "busy", "too many events waiting to be written; retry shortly",
                           {"Retry-After": "2"})
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        for r in records:
            self.queue.put_nowait(r)
            self._unwritten[r.reader] += 1

    async def _run(self) -> None:
        # Started by the first request that submits, whose database limit (api.database_timeout_s)
        # the task would inherit: the sink's writes are its own, retried with back-off.
        with calls_limited(None):
            await self._write_forever()

    async def _write_forever(self) -> None:
        while True:
            first = await self.queue.get()
            self._inflight += 1
            try:
                await self._gather()
                batch = [first]
                while not self.queue.empty() and len(batch) < 5000:
                    batch.append(self.queue.get_nowait())
                await self._write(batch)
            finally:
                self._inflight -= 1

    async def _gather(self) -> None:
        """Let a batch gather for `flush_s`, unless the sink is closing."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), self.flush_s)

    async def close(self, timeout_s: float = CLOSE_WAIT_S) -> None:
        """Write what was accepted and is not written yet, then stop: called once the server
        takes no more requests, before the store closes. The events answered 202 in the last
        `flush_s` before a shutdown (a deploy, a restart) were lost with the process."""
        self._closing.set()
        await self.settle(timeout_s)
        if self._unwritten:  # the database stayed away
            log.error("events.dropped_at_close count=%d", sum(self._unwritten.values()))
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def settle(self, timeout_s: float = 30.0) -> None:
        """Wait until the events accepted so far are written (or given up on, see `_write`).
        Forgetting a reader waits for it: a click accepted just before the DELETE was written
        just after it, and brought the reader back."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (self._inflight or not self.queue.empty()) and loop.time() < deadline:
            await asyncio.sleep(0.02)

    async def written_for(self, reader: str, timeout_s: float = OWN_EVENTS_WAIT_S) -> None:
        """Wait until the reader's events accepted here are written (at most `timeout_s`).
        A reader's feed asked for right after a click, as an app does when the reader comes
        back to it, was built without that click (written up to `flush_s` later): the reader
        saw the cold-start feed and the clicked story again."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._unwritten.get(reader) and loop.time() < deadline:
            await asyncio.sleep(0.01)

    async def _write(self, batch: list[EventRecord]) -> None:
        try:
            await self._write_batch(batch)
        finally:  # written or given up on: nobody waits for them any more
            self._unwritten -= Counter(e.reader for e in batch)  # drops the readers at 0

    async def _write_batch(self, batch: list[EventRecord]) -> None:
        for attempt in range(5):
            try:
                fresh = await self.store.store_events(batch)
                if self.on_written:
                    self.on_written(fresh)
                return
            except Exception as e:  # database away: keep the batch, retry with back-off
                # One line: SQLAlchemy's text goes on with the statement and its parameters,
                # the whole batch (reader ids, pages), kilobytes a line.
                log.warning("events.write_failed attempt=%d error=%s", attempt + 1, driver_reason(e))
                await asyncio.sleep(0.5 * 2 ** attempt)
        log.error("events.dropped count=%d", len(batch))

    async def drain(self) -> None:
        """Write what is queued now (tests, shutdown)."""
        batch = []
        while not self.queue.empty():
            batch.append(self.queue.get_nowait())
        if batch:
            await self._write(batch)
