"""A reader's whole journey over real HTTP, SQLite and the five BBC sections: a widget's block
under an article, two clicks and a read sent as the widget sends them, the feed, its Atom
document, `reader=` blocks and trending, preferences, paging, export and deletion. Each step
checks what that reader would expect."""

from __future__ import annotations

import json
import re

import pytest

from tests.datasets import bbc_records

READER, STRANGER = "0f" * 16, "a1" * 16  # ids as widget.js makes them
BEACON = {"Content-Type": "text/plain;charset=UTF-8"}  # as widget.js posts its events
MUTED = re.compile(r"\bblair\b", re.I)  # the topic the reader mutes, as whole words


@pytest.fixture(scope="module")
async def journey(tmp_path_factory, shared_data):
    import httpx

    from aggregator.importer import LineError, read_jsonl
    from aggregator.store import utcnow
    from tests.api.conftest import make_stack, stop_stack

    others = bbc_records(shared_data, categories=("business", "sport", "tech"), limit=40)
    drafts = [d for d in read_jsonl((json.dumps(r) for r in others), utcnow())
              if not isinstance(d, LineError)]
    st, server, task = await make_stack(tmp_path_factory.mktemp("journey"), shared_data, limit=40,
                                        extra_drafts=drafts)
    try:
        async with httpx.AsyncClient(base_url=st.base_url, timeout=30) as http:
            yield http
    finally:
        await stop_stack(st, server, task)


async def _feed(http, reader, k=20, cursor=None) -> dict:
    r = await http.get(f"/v1/readers/{reader}/feed", params={"k": k, **({"cursor": cursor} if cursor else {})})
    assert r.status_code == 200, r.text
    return r.json()


def _share(items, category) -> float:
    return sum(c["category"] == category for c in items) / len(items)


async def _events(http, events) -> None:
    r = await http.post("/v1/events", content=json.dumps({"events": events}), headers=BEACON)
    assert r.status_code == 202 and r.json()["skipped"] == [], r.text


async def test_a_readers_journey_from_a_widget_block_to_being_forgotten(journey):
    http = journey
    politics = (await http.get("/v1/stories", params={"category": "politics", "limit": 40})).json()["items"]
    article = politics[0]
    assert any(MUTED.search(c["title"]) for c in politics)  # the mute below has work to do

    # The widget's block under the article (the fragment, and the JSON widget.js renders).
    fragment = await http.get("/v1/widget", params={"url": article["url"], "k": 4})
    block = (await http.get("/v1/related", params={"url": article["url"], "k": 4})).json()["related"]
    assert fragment.status_code == 200 and len(block) == 4
    assert all(c["url"] in fragment.text for c in block)
    clicked = [c for c in block if c["category"] == "politics"][:2]
    assert len(clicked) == 2, block

    # Impressions, two clicks and a read, as the widget (and the site's article page) send them.
    page = article["url"]
    sent = [{"reader": READER, "story_id": str(c["id"]), "type": "impression", "page": page} for c in block]
    sent += [{"reader": READER, "story_id": str(c["id"]), "type": "click", "page": page} for c in clicked]
    await _events(http, sent[:len(block)])
    await _events(http, sent[len(block):])
    read = {"reader": READER, "story_id": str(clicked[0]["id"]), "type": "read", "dwell_s": 95,
            "page": clicked[0]["url"]}
    await _events(http, [read])
    sent.append(read)
    seen = {c["id"] for c in clicked} | {article["id"]}  # what they read, and the page they were on

    # Their feed leans to politics, measurably more than a new reader's, without what they read.
    feed = (await _feed(http, READER))["items"]
    new = (await _feed(http, STRANGER))["items"]
    assert _share(feed, "politics") >= _share(new, "politics") + 0.15, (
        [c["category"] for c in feed], [c["category"] for c in new])
    assert not seen & {c["id"] for c in feed}, [c["title"] for c in feed if c["id"] in seen]
    atom = await http.get(f"/v1/readers/{READER}/feed.atom")
    assert atom.status_code == 200 and not any(c["url"] in atom.text for c in clicked + [article])
    for other in politics[1:4]:
        mine = (await http.get("/v1/related", params={"url": other["url"], "k": 6, "reader": READER})).json()
        assert not seen & {c["id"] for c in mine["related"]}
    trending = (await http.get("/v1/trending", params={"reader": READER, "k": 50})).json()["items"]
    assert not seen & {c["id"] for c in trending}

    # Preferences: a topic muted, a section followed.
    before = _share(feed, "business")
    r = await http.put(f"/v1/readers/{READER}/preferences",
                       json={"mute_topics": ["Blair"], "follow_categories": ["Business"]})
    assert r.status_code == 200 and r.json()["unknown"] == {}
    first = (await _feed(http, READER))["items"]
    assert _share(first, "business") >= max(0.25, before + 0.1), [c["category"] for c in first]

    # Paged to its end: no story twice, nothing read, nothing muted.
    shown, cursor, pages = [], None, 0
    while pages < 60:
        body = await _feed(http, READER, k=7, cursor=cursor)
        shown += body["items"]
        pages += 1
        if not (cursor := body["next"]):
            break
    ids = [c["id"] for c in shown]
    assert cursor is None and len(ids) == len(set(ids)) > 100
    assert not seen & set(ids)
    assert not [c["title"] for c in shown if MUTED.search(c["title"])]
    atom = await http.get(f"/v1/readers/{READER}/feed.atom", params={"k": 50})
    assert not [t for t in re.findall(r"<title[^>]*>([^<]*)</title>", atom.text) if MUTED.search(t)]
    trending = (await http.get("/v1/trending", params={"reader": READER, "k": 50})).json()["items"]
    assert trending and not [c["title"] for c in trending if MUTED.search(c["title"])]
    for other in politics[:6]:
        mine = (await http.get("/v1/related", params={"url": other["url"], "k": 6, "reader": READER})).json()
        assert not [c["title"] for c in mine["related"] if MUTED.search(c["title"])]

    # The export holds exactly their events; the delete forgets them, the report keeps its counts.
    export = (await http.get(f"/v1/readers/{READER}")).json()
    assert export["preferences"]["mute_topics"] == ["Blair"]
    got = sorted((str(e["story_id"]), e["type"], e["page"]) for e in export["events"])
    assert got == sorted((e["story_id"], e["type"], e["page"]) for e in sent)
    stats = (await http.get("/v1/stats", params={"days": 1})).json()["total"]
    assert (await http.delete(f"/v1/readers/{READER}")).status_code == 200
    assert (await http.get(f"/v1/readers/{READER}")).status_code == 404
    prefs = (await http.get(f"/v1/readers/{READER}/preferences")).json()["preferences"]
    assert not any(prefs.values())
    assert [c["id"] for c in (await _feed(http, READER))["items"]] == [
        c["id"] for c in (await _feed(http, "b2" * 16))["items"]]
    assert (await http.get("/v1/stats", params={"days": 1})).json()["total"] == stats


async def test_a_refresh_keeps_the_page_a_later_visit_moves_on(journey):
    """A page's impressions arrive as it loads. Counted as passed over at once, a reader who
    clicked one story and refreshed a minute later found 18 of the other 19 replaced, the
    stories they were about to read sunk; now about what a reader who sent no impressions
    finds. Three hours later, another visit, what they passed over gives way
    (FeedParams.skip_weight). Each reader's impressions also lower the crowd's click rate of
    those stories for all, so the pages are compared by how many stories they keep."""
    from datetime import UTC, datetime, timedelta

    http = journey
    politics = (await http.get("/v1/stories", params={"category": "politics", "limit": 5})).json()["items"]
    now = datetime.now(UTC)
    ago = {"c1" * 16: None, "c2" * 16: timedelta(minutes=1), "c3" * 16: timedelta(hours=3)}
    first = {}
    for reader in ago:  # one read two days ago: a warm feed, the same first page for all three
        await _events(http, [{"reader": reader, "story_id": str(politics[0]["id"]), "type": "read",
                              "dwell_s": 60, "at": (now - timedelta(days=2)).isoformat()}])
        first[reader] = [c["id"] for c in (await _feed(http, reader))["items"]]
    for reader, when in ago.items():
        at = (now - (when or timedelta(minutes=1))).isoformat()
        shown = [] if when is None else [
            {"reader": reader, "story_id": str(i), "type": "impression", "at": at} for i in first[reader]]
        await _events(http, [*shown, {"reader": reader, "story_id": str(first[reader][2]), "type": "click",
                                      "at": at}])
    kept = {}
    for reader, when in ago.items():
        again = {c["id"] for c in (await _feed(http, reader))["items"]}
        kept[when] = len(set(first[reader]) & again - {first[reader][2]})
    assert kept[None] >= 8, kept  # the click alone moves some
    assert kept[timedelta(minutes=1)] >= kept[None] - 2, kept
    assert kept[timedelta(hours=3)] <= 5, kept
