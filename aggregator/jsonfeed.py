"""Read JSON Feed 1.0 and 1.1 bodies (https://jsonfeed.org/version/1.1) into a ParsedDocument.

Bytes in, dataclasses out. Accepts 1.0's `author` and 1.1's `authors`; an item's link is
`url`, else `external_url`, else an `id` that is an http(s) URL.
"""

from __future__ import annotations

import json
from datetime import UTC, tzinfo
from typing import Any

from aggregator.canonical import joined
from aggregator.errors import ParseError
from aggregator.model import ParsedDocument, ParsedItem
from aggregator.textclean import clean_inline, html_to_text, parse_date


def is_jsonfeed(data: object) -> bool:
    return isinstance(data, dict) and "jsonfeed.org/version/" in str(data.get("version", ""))


def parse_jsonfeed(body: bytes, *, base_url: str, site_zone: tzinfo = UTC) -> ParsedDocument:
    """Parse a JSON Feed; raise ParseError when the body is not JSON or not a JSON Feed.
    `site_zone`, the source's `timezone`: the zone of its dates written without one."""
    try:
        data = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ParseError(f"invalid JSON: {e}") from e
    except RecursionError:  # json recurses per level: [[[... thousands deep
        raise ParseError("invalid JSON: nested too deeply") from None
    if not is_jsonfeed(data):
        raise ParseError("JSON body is not a JSON Feed (no jsonfeed.org version key)")
    raw_items = data.get("items")
    if not isinstance(raw_items, list):
        raise ParseError("JSON Feed has no 'items' list")
    home = data.get("home_page_url") if isinstance(data.get("home_page_url"), str) else ""
    feed_authors = _authors(data)
    items: list[ParsedItem] = []
    problems: list[str] = []
    for n, raw in enumerate(raw_items, start=1):
        if not isinstance(raw, dict):
            problems.append(f"item {n}: not an object, skipped")
            continue
        item, problem = _item(raw, n, base_url, feed_authors, site_zone)
        if problem:
            problems.append(problem)
        if item is not None:
            items.append(item)
    if raw_items and not items:
        raise ParseError(f"JSON Feed has {len(raw_items)} items but none is usable")
    return ParsedDocument(
        kind="jsonfeed",
        title=clean_inline(_str(data.get("title"))),
        items=tuple(items),
        problems=tuple(problems),
        home_url=joined(base_url, home) if home else "",
    )


def _item(
    raw: dict[str, Any], n: int, base_url: str, feed_authors: str, site_zone: tzinfo = UTC
) -> tuple[ParsedItem | None, str]:
    link = ""
    for key in ("url", "external_url", "id"):
        value = _str(raw.get(key)).strip()
        if value:
            # An id is a link only when it is a whole one: ids are often numbers ("id": 42)
            # or other tokens, and joined to the feed's URL they made a story at the feed's
            # host ("https://feed.example/42") that nothing links.
            candidate = joined(base_url, value) if key != "id" else value
            if candidate.startswith(("http://", "https://")):
                link = candidate
                break
    title = clean_inline(_str(raw.get("title")))
    if not link:
        return None, f"item {n}: no link, skipped" + (f" ({title[:60]!r})" if title else "")
    content_html = _str(raw.get("content_html"))
    text = (
        html_to_text(content_html)
        if content_html
        else html_to_text(_str(raw.get("content_text")).replace("<", "&lt;"))
    )
    summary = html_to_text(_str(raw.get("summary")).replace("<", "&lt;"))
    problem = ""
    published_at = None
    for key in ("date_published", "date_modified"):
        value = _str(raw.get(key))
        if value:
            # JSON Feed requires RFC 3339, with its offset; a feed that leaves it out is
            # read as RSS and Atom dates are: in the source's `timezone`, else UTC.
            published_at = parse_date(value, site_zone)
            if published_at is None:
                problem = f"item {n}: invalid date {value[:40]!r}, left empty"
            break
    image = _str(raw.get("image")) or _str(raw.get("banner_image")) or _image_attachment(raw)
    tags = raw.get("tags") if isinstance(raw.get("tags"), list) else []
    return (
        ParsedItem(
            url=link,
            title=title,
            summary=summary,
            text=text,
            author=_authors(raw) or feed_authors,
            image_url=joined(link, image) if image else "",
            published_at=published_at,
            guid=_str(raw.get("id")),
            tags=tuple(clean_inline(t) for t in tags if isinstance(t, str) and t.strip()),
        ),
        problem,
    )


def _image_attachment(raw: dict[str, Any]) -> str:
    """The URL of the item's first attachment typed as an image (`mime_type` "image/..."): a
    feed whose items give their picture only so had stories without one."""
    attachments = raw.get("attachments")
    for att in attachments if isinstance(attachments, list) else ():
        if isinstance(att, dict) and _str(att.get("mime_type")).strip().lower().startswith("image/"):
            url = _str(att.get("url")).strip()
            if url:
                return url
    return ""


def _authors(obj: dict[str, Any]) -> str:
    people = obj.get("authors")
    if not isinstance(people, list):
        people = [obj.get("author")]
    names = [clean_inline(_str(p.get("name"))) for p in people if isinstance(p, dict)]
    return ", ".join(name for name in names if name)


def _str(value: object) -> str:
    # JSON Feed ids may be numbers in the wild; anything else non-string counts as absent.
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""
