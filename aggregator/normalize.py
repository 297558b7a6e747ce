"""Turn a ParsedItem into a StoryDraft ready to upsert, or say why it cannot be one.

Pure: the clock comes in as `now`. Decisions made here:
- identity is `canonical_url(item.url)`; a link that is not http(s) makes the item unusable;
- an item needs a title or a summary; with a summary only, the title is its first words;
- fields are cleaned (control characters, entities, tags, whitespace, "Continue reading..."
  links, places and roles in bylines: `bylines.clean_byline`) and cut to `MAX_*`
  characters, so one absurd item cannot bloat the store or the embedder's input;
- a `published_at` more than `MAX_FUTURE` ahead of `now` is dropped to None (the store then
  uses the collection time): a wrong clock or a time-zone bug at the source, and keeping it
  would pin the story to the top of every "newest first" list. Dates before 1995 are also
  dropped (epoch zero and "0001-01-01" placeholders);
- tags are cleaned like the other one-line fields, kept once whatever their case, and
  bounded (see `clean_tags`); paid content ("[Sponsor] …", a tag "Advertorial") gets the tag
  "sponsored" (`aggregator.sponsored`);
- `content_hash` is the SHA-256 of the body (text, else summary) lowercased and reduced to
  its words, when it has at least `MIN_HASH_WORDS` words, else "": short teasers collide by
  chance ("Watch the video."), long bodies that match are the same story on two sites.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from aggregator.bylines import clean_byline
from aggregator.canonical import canonical_url, site_of, url_variants
from aggregator.model import MAX_ITEM_ID_CHARS, ParsedItem, SourceSpec, StoryDraft
from aggregator.sponsored import SPONSORED_TAG, marked, with_sponsored_tag
from aggregator.textclean import clean_inline, collapse_whitespace, drop_read_more, truncate

MAX_TITLE_CHARS = 300
MAX_SUMMARY_CHARS = 1_000
MAX_TEXT_CHARS = 100_000
MAX_AUTHOR_CHARS = 200
MAX_URL_CHARS = 2_048
MAX_FUTURE = timedelta(days=1)
EARLIEST_AT = datetime(1995, 1, 1, tzinfo=UTC)
MIN_HASH_WORDS = 40
DERIVED_TITLE_WORDS = 16
DERIVED_SUMMARY_CHARS = 300
# A story's tags are stored with it and read with its card for every feed and block that
# weighs it. Publishers tag a story with a handful of topics; a feed that stuffs an item with
# hundreds of SEO keywords, or puts a sentence in a <category>, must not bloat either. A tag
# past MAX_TAG_CHARS is dropped, not cut: a cut tag names no topic, and a reader's muted topic
# is at most 80 characters (api/readers.py), so it could never equal one.
MAX_TAGS = 20
MAX_TAG_CHARS = 80

_WORD = re.compile(r"\w+", re.UNICODE)
# Lone surrogates (a JSON "\ud800", bytes decoded with surrogateescape) are not text: no
# database encodes them, and PostgreSQL refuses NUL in text: either failed the whole batch its
# story was stored with (a source's round, an import's 500 lines).
_SURROGATE = re.compile("[\ud800-\udfff]")
# Nor are control characters: a "\x01" or an ANSI "\x1b[31m" from a feed, a JSON Feed or a
# page was stored, then met as invisible junk in titles, in JSON, in the widget, and in XML
# exports, where XML 1.0 forbids C0 controls but tab, LF and CR, and U+FFFE/U+FFFF (section
# 2.2): a feed reader refuses a document holding one. Separators (vertical tab, form feed,
# the information separators) become a space, so the words they part stay apart; C1 controls
# are Windows-1252 text read as Latin-1 ("don\x92t"), so they become its characters.
_C0_BYTES = bytes(c for c in range(0x20) if c not in b"\t\n\r") + b"\x7f"
_C1_OR_NONCHAR = re.compile(rb"\xc2[\x80-\x9f]|\xef\xbf[\xbe\xbf]")  # their UTF-8


def _control_table() -> dict[int, str | None]:
    table: dict[int, str | None] = dict.fromkeys(_C0_BYTES)
    table.update(dict.fromkeys(b"\x0b\x0c\x1c\x1d\x1e\x1f", " "))
    for c in range(0x80, 0xA0):
        table[c] = bytes([c]).decode("cp1252", "ignore") or None  # 5 of them mean nothing
    table[0xFFFE] = table[0xFFFF] = None
    return table


_CONTROLS = _control_table()


def rejection_reason(item: ParsedItem) -> str:
    """Why `item` cannot become a story ("" when it can)."""
    try:
        url = canonical_url(item.url)
    except ValueError as e:
        return f"unusable link: {e}"
    if len(url) > MAX_URL_CHARS:
        return f"link longer than {MAX_URL_CHARS} characters"
    if not _texts(item)[0]:
        return "no title and no summary"
    return ""


def normalize(item: ParsedItem, *, source: SourceSpec | None, now: datetime,
              keep_untitled: bool = False) -> StoryDraft | None:
    """The StoryDraft for `item`, or None when `rejection_reason(item)` is not empty.

    `keep_untitled` (full_text sources): an item with a usable link but no title and no
    summary (a plain sitemap's <loc>) is kept as a draft with an empty title, for reading
    its page to complete (`collect.merge_article`); whatever stays untitled is dropped
    after that (`collect.titled`). Dropped here, a plain sitemap never gave a story."""
    # The same checks as rejection_reason, done once: canonical_url and _texts are most of
    # the cost of normalizing, and a round normalizes tens of thousands of items.
    try:
        url = canonical_url(item.url)
    except ValueError:
        return None
    if len(url) > MAX_URL_CHARS:  # the story's unique key: an index holds ~2.7 kB at most
        return None
    title, summary, text = _texts(item)
    if not title and not keep_untitled:
        return None
    return StoryDraft(
        url=url,
        title=truncate(title, MAX_TITLE_CHARS),
        summary=truncate(summary, MAX_SUMMARY_CHARS),
        text=truncate(text, MAX_TEXT_CHARS),
        # names only: "By Jane Doe" (the widget says "By" itself), "David Smith in Washington"
        author=truncate(clean_byline(clean_inline(_valid(item.author))), MAX_AUTHOR_CHARS),
        image_url=(image_url := _image_url(item.image_url)),
        image_width_px=item.image_width_px if image_url else 0,
        published_at=plausible_time(item.published_at, now),
        site=site_of(url),
        source=source.name if source else "",
        category=source.category if source else "",
        # (a lone surrogate can sit in a fragment the canonical form drops)
        original_url=item.url if len(item.url) <= MAX_URL_CHARS and _valid(item.url) is item.url else "",
        content_hash=content_hash(text or summary),
        # Paid content is marked by a tag, which the card shows and blocks and feeds skip.
        tags=with_sponsored_tag(title, clean_tags(item.tags), MAX_TAGS),
        item_id=item_id(item.guid, url),
    )


def item_id(guid: str, url: str) -> str:
    """The item's id as the store keeps it (pure): "" when it is the item's link (under any
    spelling: it changes with the link, so it cannot tell a moved story) or too long to index."""
    guid = guid.strip()
    if not guid or len(guid) > MAX_ITEM_ID_CHARS or guid == url:
        return ""
    if not guid.startswith(("http://", "https://")):
        return guid  # an id of the publisher's own ("post-123", a tag: URI)
    try:
        return "" if canonical_url(guid) in (url, *url_variants(url)) else guid
    except ValueError:
        return guid


def first_of_each_link(drafts: Iterable[StoryDraft]) -> list[StoryDraft]:
    """One draft per URL, in order: the first copy of a link in a document, with what it
    lacks (a title, a summary, a body, an author, an image, a time, tags) filled from the
    later ones.

    The first, because feeds list newest first and a sitemap index's children are read
    newest first (`sitemap.py`): the top copy is the publisher's current one. The BBC's feed
    carries a story twice, at the top as "Rochdale v York City: Their day, until it wasn't…"
    and further down as "Their day, until it wasn't…"; the store kept the last copy of a URL,
    so the shorter, older title. It is the rule between sources too (`store.taken_from`):
    the first to carry a link keeps its title and summary, the others fill its gaps. And
    a full_text source read each copy's page."""
    out: dict[str, StoryDraft] = {}
    for d in drafts:
        first = out.get(d.url)
        if first is None:
            out[d.url] = d
        elif first != d:
            out[d.url] = _filled(first, d)
    return list(out.values())


def _filled(first: StoryDraft, later: StoryDraft) -> StoryDraft:
    # untitled: a plain sitemap's link (full_text), which has no summary either
    title = first.title or later.title
    summary = first.summary or later.summary
    text = first.text or later.text
    image_url, width = ((first.image_url, first.image_width_px) if first.image_url
                        else (later.image_url, later.image_width_px))
    tags = first.tags or later.tags
    if marked(later.tags) and not marked(tags):
        # A link one copy calls paid content is: Daring Fireball's "[Sponsor] Manuscripts and
        # Findings" links the sponsor's page that its "thanks for sponsoring" post listed first.
        tags = (SPONSORED_TAG, *tags)[:MAX_TAGS]
    return replace(first, title=title, summary=summary, text=text,
                   author=first.author or later.author, image_url=image_url,
                   image_width_px=width, published_at=first.published_at or later.published_at,
                   tags=tags, content_hash=content_hash(text or summary))


def clean_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """The first `MAX_TAGS` distinct tags, cleaned like a title: a tag that differs from an
    earlier one only by case ("Politics", "politics") is the same topic and is left out, as
    are empty tags and those longer than `MAX_TAG_CHARS`."""
    out: list[str] = []
    seen: set[str] = set()
    for tag in tags:
        tag = clean_inline(_valid(tag))
        key = tag.casefold()
        if not tag or len(tag) > MAX_TAG_CHARS or key in seen:
            continue
        seen.add(key)
        out.append(tag)
        if len(out) == MAX_TAGS:
            break
    return tuple(out)


def _texts(item: ParsedItem) -> tuple[str, str, str]:
    """Clean title, summary and text; title and summary derived from the body when missing."""
    return story_texts(item.title, item.summary, item.text)


def story_texts(title: str, summary: str, text: str) -> tuple[str, str, str]:
    """Clean title, summary and text; title and summary derived from the body when missing."""
    # Before the cut: a "Continue reading..." kept took the place of the teaser's last words.
    summary = drop_read_more(collapse_whitespace(_valid(summary)))
    text = drop_read_more(collapse_whitespace(_valid(text)))
    if not summary and text:
        summary = truncate(" ".join(text.split()), DERIVED_SUMMARY_CHARS)
    title = clean_inline(_valid(title))
    if not title:
        words = summary.split()
        title = " ".join(words[:DERIVED_TITLE_WORDS])
        if len(words) > DERIVED_TITLE_WORDS:
            title += "…"
    return title, summary, text


def _valid(text: str) -> str:
    """`text` without control characters but tab, LF and CR (NUL included), with lone
    surrogates replaced by U+FFFD as a decoder marks bytes it cannot read, and composed (NFC);
    `text` itself when it already is. (An article page's fields come without controls:
    lxml's HTML parser drops them.)"""
    if not text:
        return text
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        text = _SURROGATE.sub("\ufffd", text)
        data = text.encode("utf-8")
    if _has_controls(data):
        text = text.translate(_CONTROLS)
    if text.isascii():
        return text
    # Some publishers' systems (macOS-made text among them) write "é" as "e" and a combining
    # accent, Korean as loose jamo: the same headline from two feeds was two titles, two
    # content hashes, and two sets of words to the index ("cafe" and "café").
    if unicodedata.is_normalized("NFC", text):
        return text
    return unicodedata.normalize("NFC", text)


def _has_controls(data: bytes) -> bool:
    """Whether UTF-8 `data` holds a character `_CONTROLS` changes. A C0 control or DEL is a
    byte of its own in UTF-8, never part of another character's, so one C-speed pass finds
    them (~1 us a KB; a regex over the text takes ~8); only a text with a character from
    U+0080-U+00BF or U+FFC0-U+FFFF ("©", nbsp, "«") needs the regex for the others."""
    if len(data.translate(None, _C0_BYTES)) != len(data):
        return True
    return (b"\xc2" in data or b"\xef\xbf" in data) and _C1_OR_NONCHAR.search(data) is not None


def content_hash(body: str) -> str:
    """SHA-256 hex of the body's lowercased words, or "" when it is too short to trust."""
    words = _WORD.findall(body.casefold())
    if len(words) < MIN_HASH_WORDS:
        return ""
    return hashlib.sha256(" ".join(words).encode("utf-8")).hexdigest()


def plausible_time(value: datetime | None, now: datetime) -> datetime | None:
    """`value` in UTC, or None when absent, too far ahead of `now`, or before 1995."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        value = value.astimezone(UTC)
    except OverflowError:  # year 1 at +14:00, year 9999 at -23:59: no UTC form, nor news
        return None
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    if value > now + MAX_FUTURE or value < EARLIEST_AT:
        return None
    return value


def _image_url(value: str) -> str:
    value = value.strip()
    if (not value or len(value) > MAX_URL_CHARS or not value.startswith(("http://", "https://"))
            or _valid(value) is not value):
        return ""
    return value
