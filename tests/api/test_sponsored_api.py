"""Paid content stays stored and listed, and out of related blocks, searches and feeds: Daring
Fireball's real captured JSON Feed, with its "[Sponsor] Timing …" and "[Sponsor] MNML …" posts,
collected as a source's round parses it, beside a few BBC stories, on a running API."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aggregator.model import SourceSpec
from aggregator.parsepool import parse_and_normalize
from tests.api.conftest import make_stack, stop_stack

DF = "news-feeds/RSParser/DaringFireball.json"
NOW = datetime(2017, 6, 27, 12, 0, tzinfo=UTC)
TIMING = "[Sponsor] Timing — Automatic Time Tracking for Mac"
MNML = "[Sponsor] MNML: A macOS Writing App for Medium.com"


@pytest.fixture(scope="module")
async def stack(tmp_path_factory, shared_data):
    """This module's stack (conftest's `http` talks to it): three BBC stories and Daring
    Fireball's feed, parsed and normalized as a collect round does."""
    spec = SourceSpec("daringfireball", "https://daringfireball.net/feeds/json", "tech")
    parsed = parse_and_normalize((shared_data / DF).read_bytes(), spec.url, "application/json",
                                 "auto", None, spec, NOW)
    st, server, task = await make_stack(tmp_path_factory.mktemp("sponsored"), shared_data,
                                        limit=3, extra_drafts=parsed.drafts)
    yield st
    await stop_stack(st, server, task)


async def test_sponsor_posts_are_listed_with_the_tag_sponsored(http):
    r = await http.get("/v1/stories", params={"source": "daringfireball", "limit": 100})
    listed = {c["title"]: c["tags"] for c in r.json()["items"]}
    assert len(listed) > 40
    assert {t for t, tags in listed.items() if "sponsored" in tags} == {TIMING, MNML}


async def test_a_block_and_a_search_leave_sponsor_posts_out(http):
    r = await http.post("/v1/related", json={
        "title": "Automatic time tracking for the Mac",
        "text": "Timing automatically tracks which apps, documents and websites you use on "
                "your Mac, without start and stop timers, and improves your client billing.",
        "k": 10})
    assert r.status_code == 200
    assert TIMING not in {c["title"] for c in r.json()["related"]}
    for q in ("MNML", "Timing time tracking", "macOS writing app for Medium"):
        r = await http.get("/v1/search", params={"q": q, "k": 10})
        assert r.status_code == 200
        titles = {c["title"] for c in r.json()["items"]}
        assert not titles & {TIMING, MNML}, (q, titles)
    # Daring Fireball's other posts are found as before: only the adverts are left out.
    r = await http.get("/v1/search", params={"q": "iPhone SE", "k": 10})
    assert any(c["source"] == "daringfireball" for c in r.json()["items"])


async def test_a_readers_feed_is_not_padded_with_sponsor_posts(http):
    # One page holds the whole feed: fewer than 50 stories in all.
    page = (await http.get("/v1/readers/sponsored-1/feed", params={"k": 50})).json()
    seen = [c["title"] for c in page["items"]]
    assert sum(1 for t in seen if t.startswith("[Sponsor]")) == 0
    assert len(seen) > 30  # the feed holds Daring Fireball's other posts
