"""Frozen data types that flow between fetch, parse, normalize and store.

Named by role, after lemon24/reader: a parser yields `ParsedItem`s inside a `ParsedDocument`;
normalizing turns each into a `StoryDraft` (canonical URL, clean text) which the store upserts
and hands back as a `Story`. None of these know about HTTP, SQL or ML.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

# Widths of the label columns (aggregator/schema.py). PostgreSQL refuses a longer value, and
# the whole write with it: the loaders refuse one where it enters, naming its line.
MAX_SOURCE_NAME_CHARS = 120  # sources.name, stories.source
MAX_CATEGORY_CHARS = 80  # sources.category, stories.category
MAX_SITE_CHARS = 255  # stories.site
# stories.item_id: a longer feed id is not kept (an index entry holds ~2.7 kB at most, and a
# real one is a number, a tag: URI or a URL).
MAX_ITEM_ID_CHARS = 255


@dataclass(frozen=True)
class ParsedItem:
    """One entry as a parser read it: fields are stripped text, URLs absolute, may be empty."""

    url: str
    title: str
    summary: str = ""
    text: str = ""  # full body when the document carries it (content:encoded, JSON Feed content)
    author: str = ""
    image_url: str = ""
    published_at: datetime | None = None  # timezone-aware UTC, None when absent or invalid
    guid: str = ""
    tags: tuple[str, ...] = ()
    # The width the feed states for image_url (media:content/thumbnail width=), 0 when none:
    # a feed thumbnail gives way to the page's share image (aggregator.images.better_image).
    image_width_px: int = 0


@dataclass(frozen=True)
class ParsedDocument:
    """What one fetched body yielded: its kind, its items and what went wrong on the way."""

    kind: str  # "feed" | "jsonfeed" | "sitemap" | "html"
    title: str
    items: tuple[ParsedItem, ...]
    ttl_s: int | None = None  # RSS <ttl> (or sy:updatePeriod) in seconds, unbounded here
    problems: tuple[str, ...] = ()  # recoverable: malformed XML recovered, broken items skipped
    home_url: str = ""
    # Documents this one points to instead of stories: the <sitemap><loc>s of a sitemap index.
    child_urls: tuple[str, ...] = ()
    # A listing's next page (<link rel="next">, <a rel="next">, else the `next` selector's
    # link), absolute; "" for none.
    next_url: str = ""


@dataclass(frozen=True)
class Selectors:
    """CSS selectors for an HTML listing page; only `item` and `link` are required. `pages`,
    not a selector, is how many of the listing's pages to read, following its rel=next links
    (else the link `next` selects); `timezone`, the source's own key (an IANA name, "" for
    UTC), is the zone its times without one are written in. Both are kept here because the
    sources table stores the selectors as one JSON value. A feed's or a sitemap's source
    with a `timezone` has selectors that carry it alone, `item` and `link` "" (`zone_only`):
    a new column would need a migration, and an older version still reads such a row (its
    feed then in UTC, as before)."""

    item: str
    link: str
    title: str = ""
    summary: str = ""
    date: str = ""
    image: str = ""
    next: str = ""
    pages: int = 1
    timezone: str = ""


_SELECTOR_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Selectors)}


def zone_only(timezone: str) -> Selectors | None:
    """The selectors of a source that is not a listing: its `timezone` alone, None without
    one (pure)."""
    return Selectors(item="", link="", timezone=timezone) if timezone else None


def listing_selectors(sel: Selectors | None) -> Selectors | None:
    """`sel` when it reads a listing, None when it carries a zone alone (pure)."""
    return sel if sel is not None and sel.item else None


def site_zone(sel: Selectors | None) -> tzinfo:
    """The zone a source writes its times without one in: its `timezone`, else UTC (pure;
    the name was looked up when the sources file was loaded)."""
    return ZoneInfo(sel.timezone) if sel is not None and sel.timezone else UTC


def selectors_json(sel: Selectors | None) -> dict | None:
    """`sel` as the sources table stores it: a field at its default is left out, so that a
    version that does not know a newer field (`next`, `timezone`: a cluster mid-upgrade)
    still reads the row of every source that does not use it. The full dict, written before,
    failed those versions on every HTML source (pure)."""
    if sel is None:
        return None
    return {k: v for k, v in dataclasses.asdict(sel).items()
            if _SELECTOR_DEFAULTS[k] is dataclasses.MISSING or v != _SELECTOR_DEFAULTS[k]}


def selectors_of(stored: dict | None) -> Selectors | None:
    """A stored selectors value; the fields this version does not know (a newer version wrote
    them) are left out rather than failing the whole source (pure)."""
    if not stored:
        return None
    return Selectors(**{k: v for k, v in stored.items() if k in _SELECTOR_DEFAULTS})


@dataclass(frozen=True)
class SourceSpec:
    """One `[[source]]` table from sources.toml, validated."""

    name: str
    url: str
    category: str
    kind: str = "auto"  # auto | feed | sitemap | html
    interval_s: int = 900
    enabled: bool = True
    weight: float = 1.0
    full_text: bool = False
    selectors: Selectors | None = None
    # Which items become stories (aggregator.itemrules): regular expressions, "" for none.
    keep: str = ""
    block: str = ""


# Story ids are signed 64-bit in both engines: a larger one cannot exist, and passing it down made
# the SQLite driver raise OverflowError (a 500 in the API, a traceback in the CLI).
MAX_STORY_ID = 2**63 - 1


@dataclass(frozen=True)
class StoryDraft:
    """A story ready to be upserted: canonical URL is its identity."""

    url: str  # canonical
    title: str
    summary: str = ""
    text: str = ""
    author: str = ""
    image_url: str = ""
    published_at: datetime | None = None
    site: str = ""
    source: str = ""  # source name, "" for imports without one
    category: str = ""
    original_url: str = ""
    content_hash: str = ""  # digest of the normalized body, to link exact duplicates
    # The publisher's topics (RSS/Atom <category>, JSON Feed tags, news-sitemap keywords),
    # cleaned and bounded by `normalize.clean_tags`: what a reader's muted topics match.
    tags: tuple[str, ...] = ()
    # The feed's stable id of the item (RSS <guid>, Atom <id>, JSON Feed `id`; `normalize.
    # item_id`), "" when it gives none that outlives a change of the link: the store knows a
    # story its source moved to a new URL by it (`store.moved_stories`).
    item_id: str = ""
    # Which of site, source and category this draft states with authority, so a stored story
    # takes them on when it differs: an import line that names them (re-importing a corrected
    # file corrects the stories). A collector's drafts state none: one link in two feeds of
    # different sections would change section every round.
    restates: frozenset[str] = frozenset()
    # Whether its title, summary, body, author, image and time replace those of a story that
    # another source stored first: an import line's do (a corrected file corrects the
    # stories). A collector's draft updates the stories its source stored and only fills
    # the gaps of the others': one link in two feeds took each feed's title in turn, every
    # round, and was embedded again each time (`store.taken_from`).
    authoritative: bool = False
    # The feed's stated width of image_url (ParsedItem.image_width_px); not stored, read
    # when the page of a full_text source offers its own image.
    image_width_px: int = 0


@dataclass(frozen=True)
class Story:
    """A stored story."""

    id: int
    url: str
    title: str
    summary: str
    text: str
    author: str
    image_url: str
    published_at: datetime | None
    collected_at: datetime
    site: str
    source: str
    category: str
    duplicate_of: int | None = None
    tags: tuple[str, ...] = field(default=())
    # Its place in the listings (the store's `sort_at`): `sort_time`'s when first stored, but
    # a microsecond apart from the items of its fetch it tied with (`feedorder`); a later
    # correction of its time does not move it. None: not read.
    sort_at: datetime | None = None

    @property
    def when(self) -> datetime:
        """The best known publication time: published, else when we first saw it."""
        return self.published_at or self.collected_at
