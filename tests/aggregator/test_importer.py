"""JSON Lines story files (DESIGN.md 4.4): bad lines reported by number, the rest goes in."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from aggregator.importer import LineError, read_jsonl

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def test_good_and_bad_lines():
    lines = [
        json.dumps({"url": "https://Example.org/a?utm_source=x", "title": "A &amp; B",
                    "published_at": "2026-11-20T10:00:00Z", "category": "politics"}),
        "not json",
        json.dumps({"title": "no url"}),
        "",
        json.dumps({"url": "ftp://example.org/x", "title": "bad scheme"}),
        json.dumps({"url": "https://example.org/b", "title": "T", "published_at": "yesterday"}),
        json.dumps({"url": "https://example.org/c", "title": "T", "colour": "red"}),
        json.dumps(["a list"]),
        json.dumps({"url": "https://example.org/d", "title": "Dated", "published_at": "2026-11-20T10:00:00+02:00",
                    "site": "Example", "source": "wire"}),
    ]
    out = list(read_jsonl(lines, NOW))
    errors = {e.line: e.message for e in out if isinstance(e, LineError)}
    drafts = [d for d in out if not isinstance(d, LineError)]
    assert set(errors) == {2, 3, 5, 6, 7, 8}
    assert "invalid JSON" in errors[2]
    assert "'url' is required" in errors[3]
    assert "published_at" in errors[6]
    assert "colour" in errors[7]
    a, d = drafts
    assert a.url == "https://example.org/a" and a.title == "A & B" and a.category == "politics"
    assert a.published_at == datetime(2026, 11, 20, 10, tzinfo=UTC) and a.source == "import"
    assert d.site == "Example" and d.source == "wire"
    assert d.published_at == datetime(2026, 11, 20, 8, tzinfo=UTC)


def test_an_undated_line_is_dated_by_its_dateline():
    lines = [
        json.dumps({"url": "https://example.org/a", "title": "Patch",
                    "text": "18 September 2013 Last updated at 13:59 GMT Microsoft has released a fix."}),
        json.dumps({"url": "https://example.org/b", "title": "Patch", "published_at": "2013-09-19T08:00:00Z",
                    "text": "18 September 2013: the metadata wins over the dateline."}),
        json.dumps({"url": "https://example.org/c", "title": "Plans", "text": "Due 4 May 2031, far ahead."}),
        json.dumps({"url": "https://example.org/d", "title": "No date", "text": "On Tuesday it rained."}),
    ]
    a, b, c, d = read_jsonl(lines, NOW)
    assert a.published_at == datetime(2013, 9, 18, tzinfo=UTC)
    assert b.published_at == datetime(2013, 9, 19, 8, tzinfo=UTC)
    assert c.published_at is None  # a date in the future is not when the story happened
    assert d.published_at is None
