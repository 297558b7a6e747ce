"""Golden-file tests: every captured feed in ../shared/data/news-feeds parses to its summary.

Regenerate after a deliberate change with
`UPDATE_GOLDEN=1 pytest tests/aggregator/test_parse_golden.py`
and review the printed summaries by eye (entities decoded, accents right, links absolute,
images real).

The golden files hold no third-party text: the feeds' titles, links, authors and summaries are
stored as short digests (with their lengths), so the files pin the parse without copying the
captured data into the project. A failing test prints the whole summary, read from the data.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from aggregator.model import ParsedDocument
from aggregator.parse import parse_document

REPO = Path(__file__).resolve().parents[2]
FEEDS_DIR = REPO / ".." / "shared" / "data" / "news-feeds"
GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
# Where each file would have been fetched from, for relative links; the TPM Atom feed uses
# relative item links, so it gets its real self URL (from its <link rel="self">).
BASE_URLS = {
    "node-feedparser/tpm.atom": "http://talkingpointsmemo.com/account/feed/all/"
    "LpNewCzTqYYiHqtKqyTw5DaF1aUucgyyXb2dsqKU2yMr",
}
SKIP = {"LICENSE", "LICENSE.md", "README.md"}


def _feed_files() -> list[Path]:
    if not FEEDS_DIR.is_dir():
        return []
    return sorted(p for p in FEEDS_DIR.glob("*/*") if p.is_file() and p.name not in SKIP)


def summarize(doc: ParsedDocument) -> dict:
    """The compact, reviewable summary a golden file holds."""
    return {
        "kind": doc.kind,
        "title": doc.title,
        "home_url": doc.home_url,
        "ttl_s": doc.ttl_s,
        "item_count": len(doc.items),
        "problems": list(doc.problems),
        "first_items": [
            {
                "url": it.url,
                "title": it.title,
                "published_at": it.published_at.isoformat() if it.published_at else None,
                "image_url": it.image_url,
                "author": it.author,
                "summary_start": it.summary[:80],
                "text_words": len(it.text.split()),
            }
            for it in doc.items[:3]
        ],
    }


# Fields that carry the feeds' own text: kept as digests in the golden files.
TEXT_FIELDS = ("title", "home_url", "url", "image_url", "author", "summary_start")


def digest(value: str | None) -> str | None:
    if not value:
        return value
    h = hashlib.sha256(value.encode("utf-8")).hexdigest()[:16]
    return f"sha256:{h} len:{len(value)}"


def fingerprint(summary: dict) -> dict:
    """The summary with every third-party text field replaced by its digest."""
    out = {k: digest(v) if k in TEXT_FIELDS else v for k, v in summary.items()}
    out["first_items"] = [{k: digest(v) if k in TEXT_FIELDS else v for k, v in it.items()}
                          for it in summary["first_items"]]
    return out


def test_fingerprint_hides_text_but_keeps_shape() -> None:
    summary = {"kind": "rss", "title": "Putin calls", "home_url": "", "item_count": 1,
               "first_items": [{"url": "https://x.example/a", "title": "Ceasefire",
                                "text_words": 3, "published_at": None}]}
    fp = fingerprint(summary)
    assert "Putin" not in json.dumps(fp) and "x.example" not in json.dumps(fp)
    assert fp["item_count"] == 1 and fp["first_items"][0]["text_words"] == 3
    assert fp["home_url"] == "" and fp != fingerprint({**summary, "title": "Putin called"})


FILES = _feed_files()


@pytest.mark.skipif(not FILES, reason=f"shared test data not found at {FEEDS_DIR}")
@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_feed_matches_golden(path: Path) -> None:
    rel = f"{path.parent.name}/{path.name}"
    base_url = BASE_URLS.get(rel, f"https://feeds.example/{rel}")
    summary = summarize(parse_document(path.read_bytes(), base_url=base_url))
    golden = GOLDEN_DIR / f"{path.parent.name}__{path.name}.json"
    shown = json.dumps(summary, ensure_ascii=False, indent=1)
    if UPDATE:
        GOLDEN_DIR.mkdir(exist_ok=True)
        golden.write_text(
            json.dumps(fingerprint(summary), ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
        )
        print(f"{rel}:\n{shown}")
    assert golden.exists(), f"no golden file {golden.name}; run with UPDATE_GOLDEN=1 and review it"
    assert fingerprint(summary) == json.loads(golden.read_text(encoding="utf-8")), (
        f"{rel} no longer parses to its golden summary; what it parses to now:\n{shown}")


@pytest.mark.skipif(not FILES, reason=f"shared test data not found at {FEEDS_DIR}")
def test_every_golden_has_its_feed() -> None:
    """A golden file whose feed is gone would silently stop being checked."""
    names = {f"{p.parent.name}__{p.name}.json" for p in FILES}
    stale = sorted(p.name for p in GOLDEN_DIR.glob("*.json") if p.name not in names)
    assert stale == []


@pytest.mark.skipif(not FILES, reason=f"shared test data not found at {FEEDS_DIR}")
def test_item_counts_match_the_data_readme() -> None:
    """Independent of the goldens: the README of news-feeds lists each file's item count."""
    readme = (FEEDS_DIR / "README.md").read_text(encoding="utf-8")
    expected: dict[str, int] = {}
    for line in readme.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 5 and cells[1].startswith("`") and cells[4].isdigit():
            expected[cells[1].strip("`")] = int(cells[4])
    assert len(expected) >= 15
    for rel, count in expected.items():
        doc = parse_document(
            (FEEDS_DIR / rel).read_bytes(), base_url=f"https://feeds.example/{rel}"
        )
        # the README counts the file's items, advertisements included (skipped by the parser)
        ads = sum("an advertisement" in p for p in doc.problems)
        assert len(doc.items) + ads == count, rel
