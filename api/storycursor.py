"""The `next` cursor of the story listing (`GET /v1/stories`): a keyset position, the last
item's sort time and id, and a check of the filters it was given with.

A position alone paged any listing: a client that kept a category's cursor when its reader
switched tabs got the other category's stories older than that point, an empty page where
they shared a time (an import without dates), with no error to say why. The check makes that
a 400 that says so. Not a signature (nothing is secret): a client may still make a cursor for
any listing, which only changes its own pages. Cursors given out before the check (a
position alone) still page whatever listing they are given to.

A cursor now also carries a mark (`STORED`): its time is the story's stored `sort_at`. One
without it was written with the story's plain sort time (`sort_time`), which a story placed
among others of its time (`feedorder`) is a microsecond or more from: paged from that time,
the stories placed there came again (an API process of that rule serving beside a collector
of this one, or a cursor it gave out). Such a cursor pages from where its story sits.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import NamedTuple

from aggregator.names import name_key
from aggregator.store import sort_time
from api.errors import ApiError

STORED = 2  # the mark of a cursor whose time is its story's stored sort_at
NOT_OURS = "the cursor is not one this API gave out"
OTHER_FILTERS = ("the cursor was made for a listing with other filters (source, category): "
                 "page with the `next` of this listing, or start it again without a cursor")


def filters_check(source: str | None, category: str | None) -> str:
    """Six hex digits naming the selection: the filters as the store matches them (any case,
    surrounding space aside; blank is none), so `Politics` pages `politics`' cursor."""
    keys = "\x00".join(name_key(f) if f else "" for f in (source, category))
    return hashlib.blake2b(keys.encode(), digest_size=3).hexdigest()


def story_sort_at(story) -> datetime:
    """The story's place in the listing, as the store's `sort_at` holds it: the stored one
    when read (a story that tied with others of its fetch is a microsecond from
    `sort_time`'s, `feedorder`), else `sort_time`'s."""
    if story.sort_at is not None:
        return story.sort_at
    return sort_time(story.published_at, story.collected_at)


class Position(NamedTuple):
    """A cursor's place: after story `story_id`, at `at`, its stored sort time when `stored`
    (else its plain one: `page_from`)."""
    at: datetime
    story_id: int
    stored: bool


def page_from(position: Position, sort_at_now: datetime | None) -> tuple[datetime, int]:
    """The keyset to page from: a marked cursor's own; an unmarked one's story where it sits
    (`sort_at_now`, its stored sort time), or at the cursor's time when it is gone."""
    if position.stored or sort_at_now is None:
        return position.at, position.story_id
    return sort_at_now, position.story_id


def encode_cursor(story, source: str | None, category: str | None) -> str:
    """Opaque keyset cursor: the last item's sort time and id, its listing's filters, and
    the mark that the time is the stored one."""
    raw = json.dumps([story_sort_at(story).isoformat(), story.id, filters_check(source, category),
                      STORED])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, source: str | None, category: str | None) -> Position:
    """The position `encode_cursor` wrote for this listing; a 400 `invalid_cursor` for
    anything else, another listing's cursor included."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, sid, *check = json.loads(raw)
        check, mark = check[:1], check[1:]
        if mark != [] and mark != [STORED]:
            raise ValueError("not a cursor's mark")
        when = datetime.fromisoformat(at)
        # In UTC (a time without that form overflows here, not in the database), and an id a
        # signed 64-bit column can hold: a hand-made cursor is a 400, not a 500.
        when = when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
        # bool is an int to Python, but `true` is no story id (the query raised a 500).
        if type(sid) is not int or not 0 <= sid < 2**63:
            raise ValueError("story id out of range")
        if check and type(check[0]) is not str:
            raise ValueError("not a filters check")
    except Exception as e:
        raise ApiError(400, "invalid_cursor", NOT_OURS) from e
    if check and check[0] != filters_check(source, category):
        raise ApiError(400, "invalid_cursor", OTHER_FILTERS)
    return Position(when, sid, bool(mark))
