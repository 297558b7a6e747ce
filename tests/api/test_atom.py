"""The Atom feeds over real HTTP: the latest stories and a reader's feed, as feed readers (and
another Tidings' collector) read them, checked against the JSON routes they mirror."""

from __future__ import annotations

from datetime import UTC, datetime

import feedparser
import httpx
from lxml import etree

from aggregator.model import StoryDraft
from aggregator.parse import parse_document
from tests.api.conftest import make_stack, stop_stack

ATOM = "{http://www.w3.org/2005/Atom}"


def parsed(r: httpx.Response) -> feedparser.FeedParserDict:
    """The answer as a feed reader sees it, after checking it is a well-formed Atom 1.0 feed."""
    assert r.status_code == 200, r.text[:300]
    assert r.headers["content-type"] == "application/atom+xml; charset=utf-8"
    d = feedparser.parse(r.content)
    assert not d.bozo, d.get("bozo_exception")
    assert d.version == "atom10"
    return d


def assert_same_stories(d: feedparser.FeedParserDict, items: list[dict]) -> None:
    """The feed's entries are the JSON cards, field by field, in the same order."""
    assert [e.link for e in d.entries] == [c["url"] for c in items]
    for e, c in zip(d.entries, items, strict=True):
        assert e.id == c["url"]  # a story's URL is its identity (api/atom.py)
        assert e.title == c["title"]
        assert e.get("summary", "") == (c["summary"] or "")
        assert e.get("author", "") == (c["author"] or "")
        assert [t.term for t in e.get("tags", ())] == ([c["category"]] if c["category"] else [])
        when = datetime.fromisoformat(c["published_at"]).replace(microsecond=0)
        for field in ("published", "updated"):
            assert datetime.fromisoformat(e[field]) == when, (field, e[field], c["published_at"])
        assert e.get("tidings_reason", "") == c["reason"]


async def test_latest_stories_as_atom_are_the_json_listing(http, stack):
    for params in ({}, {"category": "politics", "limit": 7}, {"category": "Entertainment"},
                   {"source": stack.records[0].get("source") or "bbc", "limit": 3}):
        items = (await http.get("/v1/stories", params={"limit": 50, **params})).json()["items"]
        d = parsed(await http.get("/v1/stories.atom", params=params))
        assert items and len(d.entries) == len(items), params
        assert_same_stories(d, items)
        newest = max(datetime.fromisoformat(c["published_at"]) for c in items)
        assert datetime.fromisoformat(d.feed.updated) == newest.replace(microsecond=0)
        assert d.feed.generator == "Tidings"
    # Feed-level: titled by its section, an absolute self link (the request's base here, as
    # `api.public_url` is unset), an id that does not move with the page size.
    r = await http.get("/v1/stories.atom", params={"category": "politics", "limit": 7})
    d = parsed(r)
    assert d.feed.title == "Tidings: latest in politics"
    self_link = [ln.href for ln in d.feed.links if ln.rel == "self"]
    assert self_link == [f"{stack.base_url}/v1/stories.atom?category=politics&limit=7"]
    assert d.feed.id == f"{stack.base_url}/v1/stories.atom?category=politics"
    assert r.headers["cache-control"] == "public, max-age=60"
    assert parsed(await http.get("/v1/stories.atom")).feed.title == "Tidings: latest stories"


async def test_an_empty_section_is_an_empty_feed_updated_now(http):
    before = datetime.now(UTC).replace(microsecond=0)
    r = await http.get("/v1/stories.atom", params={"category": "no such section"})
    d = parsed(r)
    assert d.entries == [] and d.feed.title == "Tidings: latest in no such section"
    assert datetime.fromisoformat(d.feed.updated) >= before
    # Its ETag does not move with the clock, so a feed reader's revalidation is a 304.
    again = await http.get("/v1/stories.atom", params={"category": "no such section"},
                           headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304


async def test_a_blank_section_is_no_section(http, stack):
    # A template's empty field ("?category=%20") is every story, as "" is and as trending
    # reads it: it selected the stories stored without a category (none here: an empty feed),
    # under the title of every story.
    everything = await http.get("/v1/stories.atom")
    for params in ({"category": "  "}, {"source": " "}, {"category": " ", "source": "\t"}):
        r = await http.get("/v1/stories.atom", params=params)
        assert r.content == everything.content, params
        items = (await http.get("/v1/stories", params={"limit": 50, **params})).json()["items"]
        assert_same_stories(parsed(r), items)


async def test_a_revalidation_with_the_etag_is_a_304(http):
    r = await http.get("/v1/stories.atom", params={"category": "politics"})
    etag = r.headers["etag"]
    assert etag.startswith('W/"')
    again = await http.get("/v1/stories.atom", params={"category": "politics"},
                           headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    other = await http.get("/v1/stories.atom", params={"category": "entertainment"},
                           headers={"If-None-Match": etag})
    assert other.status_code == 200 and other.headers["etag"] != etag
    head = await http.head("/v1/stories.atom", params={"category": "politics"})
    assert head.status_code == 200 and head.headers["etag"] == etag


async def test_a_readers_atom_feed_is_their_feeds_first_page(http, stack):
    read = (await http.get("/v1/stories", params={"category": "politics", "limit": 3})).json()["items"]
    events = [{"reader": "atom-reader", "story_id": c["id"], "type": "read", "dwell_s": 60}
              for c in read]
    # No waiting: a feed's route waits for the reader's events this process took.
    assert (await http.post("/v1/events", json={"events": events})).status_code == 202

    async def json_page():
        return (await http.get("/v1/readers/atom-reader/feed", params={"k": 12})).json()["items"]

    # The feed is ranked at a snapshot second: the Atom page is either JSON page around it.
    first = await json_page()
    r = await http.get("/v1/readers/atom-reader/feed.atom", params={"k": 12})
    last = await json_page()
    d = parsed(r)
    assert len(d.entries) == 12
    assert_same_stories(d, first if [e.link for e in d.entries] == [c["url"] for c in first] else last)
    assert all(e.tidings_reason for e in d.entries)
    # What the reader read is not in it; reading it is no event of theirs; it is theirs only.
    assert not {c["url"] for c in read} & {e.link for e in d.entries}
    assert len(await stack.svc.store.reader_events("atom-reader")) == 3
    assert r.headers["cache-control"] == "private, no-cache"  # kept by the feed reader, asked again
    assert d.feed.title == "Tidings: your feed"
    assert [ln.href for ln in d.feed.links if ln.rel == "self"] == [
        f"{stack.base_url}/v1/readers/atom-reader/feed.atom?k=12"]
    again = await http.get("/v1/readers/atom-reader/feed.atom", params={"k": 12},
                           headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code in (200, 304)  # 200 only if the ranking second moved the order
    if again.status_code == 200:
        assert again.headers["etag"] != r.headers["etag"]


async def test_reading_more_changes_the_readers_atom_feed(http, stack):
    d = parsed(await http.get("/v1/readers/atom-later/feed.atom", params={"k": 5}))
    top = d.entries[0].link
    sid = next(c["id"] for c in (await http.get("/v1/stories", params={"limit": 200})).json()["items"]
               if c["url"] == top)
    assert (await http.post("/v1/events", json={"reader": "atom-later", "story_id": sid,
                                                "type": "read"})).status_code == 202
    d = parsed(await http.get("/v1/readers/atom-later/feed.atom", params={"k": 5}))
    assert top not in {e.link for e in d.entries}


async def test_tidings_reads_its_own_atom_back(http, stack):
    """One Tidings can collect another's section: its own parser gets the same stories back."""
    for path, params in (("/v1/stories", {"category": "politics", "limit": 20}),
                         ("/v1/readers/atom-trip/feed", {"k": 10})):
        items = (await http.get(path, params=params)).json()["items"]
        r = await http.get(path + ".atom", params=params)
        for fast in (True, False):  # the lxml fast path and feedparser alone
            doc = parse_document(r.content, base_url=str(r.url),
                                 content_type=r.headers["content-type"], fast=fast)
            assert doc.kind == "feed" and not doc.problems
            assert doc.title == parsed(r).feed.title
            assert [(i.url, i.title) for i in doc.items] == [(c["url"], c["title"]) for c in items]
            assert [i.summary for i in doc.items] == [c["summary"] for c in items]
            assert [i.guid for i in doc.items] == [c["url"] for c in items]


async def test_bad_parameters_are_the_apis_json_errors(http):
    for path, params in (("/v1/stories.atom", {"limit": 0}), ("/v1/stories.atom", {"limit": 201}),
                         ("/v1/stories.atom", {"limit": "many"}),
                         ("/v1/stories.atom", {"category": "c" * 201}),
                         ("/v1/readers/atom-reader/feed.atom", {"k": 10_000}),
                         ("/v1/readers/no spaces!/feed.atom", {})):
        r = await http.get(path, params=params)
        assert r.status_code == 422, (path, params, r.status_code)
        assert r.headers["content-type"] == "application/json"
        assert r.json()["error"]["code"] == "invalid_request"


async def test_the_openapi_document_gives_the_atom_media_type(http):
    paths = (await http.get("/openapi.json")).json()["paths"]
    for path in ("/v1/stories.atom", "/v1/readers/{reader}/feed.atom"):
        answers = paths[path]["get"]["responses"]
        assert list(answers["200"]["content"]) == ["application/atom+xml"], path
        assert "304" in answers and "ETag" in answers["200"]["headers"]
        assert list(answers["4XX"]["content"]) == ["application/json"]  # errors stay JSON


async def test_a_hostile_story_comes_out_escaped_and_well_formed(tmp_path, shared_data):
    """A story's fields are the publisher's text: markup and characters XML 1.0 forbids (a
    control character) must neither run in a feed reader nor break the document. And with
    `api.public_url` set, the links are built on it, not on the request's host."""
    now = datetime.now(UTC)
    hostile = StoryDraft(
        url="https://evil.example/a?x=1&y=<2>", title="Breaking <script>alert(1)</script>\x07 & more",
        summary="A \x0bsummary with ]]> and <b>tags</b>", author="Mal \x1bLory <mal@evil.example>",
        text="Body of the hostile story, with enough words to be a story.", site="evil.example",
        source="Evil \"Wire\"", category="odd <cat>", published_at=now)
    st, server, task = await make_stack(tmp_path, shared_data, limit=4, extra_drafts=[hostile], env={
        "TIDINGS_API_PUBLIC_URL": "https://news.example.org/tidings/"})
    try:
        async with httpx.AsyncClient(base_url=st.base_url, timeout=20) as c:
            card = (await c.get("/v1/stories", params={"category": "odd <cat>"})).json()["items"][0]
            assert "\x07" in card["title"]  # stored as sent: the feed must cope with it
            r = await c.get("/v1/stories.atom", params={"category": "odd <cat>"})
    finally:
        await stop_stack(st, server, task)
    assert b"<script>" not in r.content and b"&lt;script&gt;" in r.content
    root = etree.fromstring(r.content)  # well-formed, or this raises
    entry = root.find(f"{ATOM}entry")
    assert entry.findtext(f"{ATOM}title") == "Breaking <script>alert(1)</script> & more"
    assert entry.findtext(f"{ATOM}summary") == "A summary with ]]> and <b>tags</b>"
    assert entry.findtext(f"{ATOM}author/{ATOM}name") == "Mal Lory <mal@evil.example>"
    assert entry.find(f"{ATOM}category").get("term") == "odd <cat>"
    assert entry.findtext(f"{ATOM}id") == hostile.url
    d = parsed(r)
    assert d.entries[0].link == hostile.url
    assert d.feed.title == "Tidings: latest in odd <cat>"
    assert [ln.href for ln in d.feed.links if ln.rel == "self"] == [
        "https://news.example.org/tidings/v1/stories.atom?category=odd+%3Ccat%3E"]


async def test_a_feed_items_control_characters_reach_neither_json_nor_atom(tmp_path, shared_data):
    """A feed item's "\x01" was stored, so every card carried it (JSON, the widget); the Atom
    document dropped it late. Collected now, the story has none, and both agree on its title."""
    import json

    from aggregator.model import SourceSpec
    from aggregator.parsepool import parse_and_normalize

    spec = SourceSpec("ctl", "https://ctl.example/feed.json", "ctl")
    feed = {"version": "https://jsonfeed.org/version/1.1", "title": "t", "items": [{
        "id": "1", "url": "https://ctl.example/a", "title": "Budget\x01 vote\x1b[0m passes",
        "summary": "Sum\x02mary", "authors": [{"name": "Jane\x03 Doe"}]}]}
    got = parse_and_normalize(json.dumps(feed).encode(), spec.url, "application/feed+json", "feed",
                              None, spec, datetime.now(UTC))
    st, server, task = await make_stack(tmp_path, shared_data, limit=4, extra_drafts=got.drafts)
    try:
        async with httpx.AsyncClient(base_url=st.base_url, timeout=20) as c:
            (card,) = (await c.get("/v1/stories", params={"category": "ctl"})).json()["items"]
            r = await c.get("/v1/stories.atom", params={"category": "ctl"})
    finally:
        await stop_stack(st, server, task)
    assert (card["title"], card["summary"], card["author"]) == ("Budget vote[0m passes", "Summary", "Jane Doe")
    entry = etree.fromstring(r.content).find(f"{ATOM}entry")  # well-formed, or this raises
    assert entry.findtext(f"{ATOM}title") == card["title"]
    assert entry.findtext(f"{ATOM}summary") == card["summary"]
    assert_same_stories(parsed(r), [card])
