"""Atom 1.0 (RFC 4287) documents of the latest stories and of a reader's feed.

Feed readers subscribe to Atom, not to our JSON. The documents are built from the very cards
the JSON routes send (api.cards), so the two cannot disagree on a story's fields or order, and
with lxml, so every field is escaped; characters XML 1.0 cannot carry are dropped, not fatal.

An entry's id is its story's URL: a story's identity in Tidings (the same URL is one story,
whatever imports it again), the same in every Tidings that collects it and in both feeds, so a
feed reader shows it once. A tag: URI would need the numeric story id, which is one database's
only, and an authority name, which without `api.public_url` is whatever Host the request used.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from fastapi import Request, Response
from lxml import etree

from api.blockcache import weak_etag
from api.errors import json_errors
from api.fastpath import revalidates

ATOM_NS = "http://www.w3.org/2005/Atom"
# Extension elements (RFC 4287 section 6) for what Atom has no element of: why a story is in a
# reader's feed. A fixed name: consumers match it, whatever instance wrote the document.
TIDINGS_NS = "urn:x-tidings:atom"
MEDIA_TYPE = "application/atom+xml"
CONTENT_TYPE = f"{MEDIA_TYPE}; charset=utf-8"
# What XML 1.0 allows in text and attributes (section 2.2 `Char`): no C0 controls besides tab,
# LF and CR, no lone surrogates, no U+FFFE/U+FFFF. lxml refuses a string holding one with a
# ValueError (a 500), and a feed reader refuses the whole document.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(value: object) -> str:
    """`value` as text XML 1.0 can carry: the characters it forbids dropped."""
    return _NOT_XML.sub("", str(value))


def rfc3339(at: datetime) -> str:
    """A UTC date-time as RFC 3339 wants it (section 5.6): with its zone, whole seconds."""
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return at.replace(microsecond=0).isoformat().replace("+00:00", "Z")  # a 4-digit year too


def card_time(card: dict) -> datetime | None:
    """A card's published_at (ISO 8601, "Z" or an offset; no zone is UTC) as a datetime."""
    value = card.get("published_at")
    if not value:
        return None
    at = datetime.fromisoformat(value)
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def base_url(request: Request, public_url: str) -> str:
    """Where this API is reached, for absolute links: `api.public_url` when set (a proxy in
    front may change the scheme, host and path), else the request's own base URL."""
    return (public_url or str(request.base_url)).rstrip("/")


def feed_url(base: str, path: str, params: dict[str, object]) -> str:
    """`base` + `path` with the parameters that are set, in the order given."""
    query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return base + quote(path) + (f"?{query}" if query else "")


def latest_title(category: str | None, source: str | None) -> str:
    """The latest stories' feed title, naming its section: "Tidings: latest in politics"."""
    named = "".join(f" {word} {v.strip()}" for word, v in (("in", category), ("from", source))
                    if v and v.strip())
    return f"Tidings: latest{named or ' stories'}"


def _add(parent: etree._Element, tag: str, text: object = None, ns: str = ATOM_NS,
         **attrs: str) -> etree._Element:
    el = etree.SubElement(parent, f"{{{ns}}}{tag}", {k: xml_text(v) for k, v in attrs.items()})
    if text is not None:
        el.text = xml_text(text)
    return el


def _entry(feed: etree._Element, card: dict, updated: str) -> None:
    entry = _add(feed, "entry")
    _add(entry, "id", card["url"])
    _add(entry, "title", card["title"], type="text")
    _add(entry, "link", rel="alternate", type="text/html", href=card["url"])
    _add(entry, "published", updated)
    _add(entry, "updated", updated)
    if card.get("author"):
        _add(_add(entry, "author"), "name", card["author"])
    if card.get("category"):
        _add(entry, "category", term=card["category"])
    if card.get("summary"):
        _add(entry, "summary", card["summary"], type="text")
    if card.get("reason"):
        _add(entry, "reason", card["reason"], ns=TIDINGS_NS)


def atom_feed(cards: list[dict], *, feed_id: str, title: str, self_url: str, version: str,
              now: datetime) -> tuple[bytes, bytes]:
    """The document of `cards` in their order, and what its ETag stands for: the document
    without its feed-level `updated`, which for an empty feed is `now` and would give every
    revalidation a new ETag (with entries it is the newest one's, so nothing is lost)."""
    times = [card_time(c) for c in cards]
    feed = etree.Element(f"{{{ATOM_NS}}}feed", nsmap={None: ATOM_NS, "tidings": TIDINGS_NS})
    _add(feed, "id", feed_id)
    _add(feed, "title", title, type="text")
    _add(feed, "link", rel="self", type=MEDIA_TYPE, href=self_url)
    # A feed whose entries do not all name an author must name one (RFC 4287 4.1.1).
    _add(_add(feed, "author"), "name", "Tidings")
    _add(feed, "generator", "Tidings", version=version)
    for c, at in zip(cards, times, strict=True):
        # Every entry needs `updated`; a card always has a time, but not one is no 500.
        _entry(feed, c, rfc3339(at or now))
    identity = etree.tostring(feed, encoding="utf-8")
    newest = max((at for at in times if at is not None), default=now)
    updated = etree.Element(f"{{{ATOM_NS}}}updated")
    updated.text = rfc3339(newest)
    feed.insert(2, updated)  # after id and title, where readers of the document look first
    return etree.tostring(feed, encoding="utf-8", xml_declaration=True), identity


class AtomResponse(Response):
    """An Atom document, for the OpenAPI document's media type (`atom_response` sends it with
    its charset)."""

    media_type = MEDIA_TYPE


def atom_response(request: Request, body: bytes, identity: bytes, cache_control: str) -> Response:
    """The document with its weak ETag (as the related blocks'), or a 304 when If-None-Match
    names it."""
    headers = {"ETag": weak_etag(identity), "Cache-Control": cache_control}
    if revalidates(request.headers, headers["ETag"]):
        return Response(status_code=304, headers=headers)
    return AtomResponse(body, headers=headers, media_type=CONTENT_TYPE)


# Errors stay the API's JSON, not Atom documents (api.errors.json_errors).
_JSON_ERRORS = json_errors("bad parameters", "database unavailable; retry (Retry-After)")


def atom_responses(cache_control: str) -> dict:
    """The OpenAPI answers of an Atom route: the document as `application/atom+xml` with its
    ETag, and the 304 that If-None-Match gets."""
    return {200: {"description": "an Atom 1.0 feed (RFC 4287)",
                  "content": {MEDIA_TYPE: {"schema": {"type": "string"}}},
                  "headers": {
                      "ETag": {"description": "weak validator of the feed; send it back as "
                                              "If-None-Match", "schema": {"type": "string"}},
                      "Cache-Control": {"description": cache_control,
                                        "schema": {"type": "string"}}}},
            304: {"description": "Not Modified: the If-None-Match ETag still holds (no body)"},
            **_JSON_ERRORS}
