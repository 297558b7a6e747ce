"""Trending within a category draws on that category's own stories, not a global cut."""

from __future__ import annotations

from datetime import timedelta

import httpx

from aggregator.model import StoryDraft
from aggregator.store import utcnow
from tests.api.conftest import make_stack, stop_stack


async def _busy_hour(st) -> None:
    """210 politics stories stored and indexed, newer than every story stored before: more
    than the newest 200 a trending list draws on (overall or of the section)."""
    now = utcnow()
    busy = [StoryDraft(url=f"https://busy.example/p{i}", title=f"Vote count update {i}",
                       text=f"Ballots counted in district {i} overnight.", site="busy.example",
                       source="busy", category="politics", published_at=now - timedelta(microseconds=i))
            for i in range(210)]
    await st.svc.store.upsert_stories(busy, now)
    await st.svc.indexer.drain()
    await st.svc.corpus.follow()


async def test_a_quiet_category_trends_after_a_busy_hour_elsewhere(tmp_path, shared_data):
    st, server, task = await make_stack(tmp_path, shared_data, limit=30)
    # Then 210 politics stories, newer than every entertainment story: the global "newest
    # 200" holds no entertainment, and trending?category=entertainment used to be empty.
    await _busy_hour(st)
    try:
        async with httpx.AsyncClient(base_url=st.base_url, timeout=20) as http:
            r = await http.get("/v1/trending", params={"category": "entertainment", "k": 10})
            items = r.json()["items"]
            assert r.status_code == 200 and len(items) == 10
            assert {c["category"] for c in items} == {"entertainment"}
            r = await http.get("/v1/trending", params={"category": "no-such-section"})
            assert r.status_code == 200 and r.json()["items"] == []
    finally:
        await stop_stack(st, server, task)


async def _wire_story_and_busy_hour(tmp_path, shared_data):
    """A stack whose politics section holds a BBC story also stored apart on three wire sites
    (its headline, its text with each site's byline: four ids, one story), five other BBC
    politics stories read by 5..1 readers, and then 210 newer politics stories read by none,
    so no story read lately is among the newest 200 (overall or of the section): a trending
    list holds them through the crowd's heads only. The stack, the story's four ids and the
    five others' ids."""
    from tests.datasets import bbc_records

    records = bbc_records(shared_data, limit=40)
    politics = [r for r in records if r["category"] == "politics"]
    rec, others = politics[0], politics[1:6]
    now = utcnow()
    wires = [StoryDraft(url=f"https://wire{j}.example/story", title=rec["title"], summary=rec["summary"],
                        text=f"{rec['text']}\n\nDistributed by Wire {j}.", site=f"wire{j}.example",
                        source=f"wire{j}", category="politics", published_at=now - timedelta(hours=j + 1))
             for j in range(3)]
    st, server, task = await make_stack(tmp_path, shared_data, limit=40, extra_drafts=wires)
    stored = await st.svc.store.get_stories(await st.svc.store.latest_ids(100))
    by_url = {s.url: i for i, s in stored.items()}
    copies = [by_url[rec["url"]], *(by_url[w.url] for w in wires)]
    assert not any(stored[i].duplicate_of for i in copies)  # stored apart: four ids
    read = [by_url[r["url"]] for r in others]
    events = [{"reader": f"wire-{n}", "story_id": copies[n % 4], "type": "click"} for n in range(8)]
    events += [{"reader": f"other-{j}-{n}", "story_id": i, "type": "click"}
               for j, i in enumerate(read) for n in range(5 - j)]
    await _busy_hour(st)
    async with httpx.AsyncClient(base_url=st.base_url, timeout=20) as http:
        r = await http.post("/v1/events", json={"events": events})
        assert r.status_code == 202 and r.json()["accepted"] == len(events)
    await st.events_written()  # all written before the first request counts the crowd
    return (st, server, task), copies, read


async def test_a_reader_who_muted_the_site_of_the_copy_shown_gets_another_copy(tmp_path, shared_data):
    """The crowd's heads hold one copy of a story stored apart on several sites (the one a
    list shows). A reader who muted that copy's site lost the whole story from their trending,
    overall and in its section, and from their feed (a new reader's is trending and latest),
    though it runs on three sites they did not mute."""
    stack, copies, _ = await _wire_story_and_busy_hour(tmp_path, shared_data)
    st = stack[0]
    try:
        async with httpx.AsyncClient(base_url=st.base_url, timeout=20) as http:
            for params in ({"k": 10}, {"k": 10, "category": "Politics"}):
                items = (await http.get("/v1/trending", params=params)).json()["items"]
                shown = [c for c in items if c["id"] in copies]
                assert len(shown) == 1 and items[0]["id"] == shown[0]["id"], items  # the story, once
                muter = f"muter-{len(params)}"
                r = await http.put(f"/v1/readers/{muter}/preferences",
                                   json={"mute_sources": [shown[0]["source"]]})
                assert r.status_code == 200
                items = (await http.get("/v1/trending", params={**params, "reader": muter})).json()["items"]
                instead = [c for c in items if c["id"] in copies]
                assert len(instead) == 1 and instead[0]["source"] != shown[0]["source"], items
                assert items[0]["id"] == instead[0]["id"]  # with the story's readers
            feed, cursor = [], None
            while True:
                params = {"k": 50, **({"cursor": cursor} if cursor else {})}
                page = (await http.get(f"/v1/readers/{muter}/feed", params=params)).json()
                feed += page["items"]
                if not (cursor := page["next"]):
                    break
            instead = [c for c in feed if c["id"] in copies]
            assert len(feed) > 100 and len(instead) == 1, len(feed)
            assert instead[0]["source"] != shown[0]["source"] and feed[0] == instead[0]
    finally:
        await stop_stack(*stack)


async def test_a_sections_trending_head_holds_one_copy_of_a_story(tmp_path, shared_data, monkeypatch):
    """A section's head of trending ranked every copy of a story stored apart on several
    sites: the story on four sites took four of the head's places and pushed four stories
    read lately out of the section's trending list (the overall head holds one copy a story).
    The head is cut to 5 places here (TRENDING_HEAD, 500 in use: filling it over HTTP would
    take 500 stories read lately): the story and the five others read lately do not fit, the
    story and four do."""
    from recommender import readers

    monkeypatch.setattr(readers, "TRENDING_HEAD", 5)
    stack, copies, read = await _wire_story_and_busy_hour(tmp_path, shared_data)
    st = stack[0]
    try:
        async with httpx.AsyncClient(base_url=st.base_url, timeout=20) as http:
            overall = (await http.get("/v1/trending", params={"k": 20})).json()["items"]
            section = (await http.get("/v1/trending", params={"k": 20, "category": "politics"})).json()["items"]
            for items in (overall, section):
                trend = {c["id"] for c in items if c["reason"].startswith("trending")}
                assert len(trend & set(copies)) == 1 and trend - set(copies) == set(read[:4]), items
    finally:
        await stop_stack(*stack)


async def test_trending_and_feeds_give_no_more_stories_than_max_k_by_default(tmp_path, shared_data):
    """Trending without `k` gave its 20 stories whatever `api.max_k` said: an operator who set
    max_k = 3 (the most one call may ask for) had 3-story related blocks and searches, and
    20-story trending lists, where `?k=20` is a 422. Its default is min(20, max_k), as
    search's is min(10, max_k) and the widget's min(4, max_k)."""
    st, server, task = await make_stack(tmp_path, shared_data, limit=30, env={
        "TIDINGS_API_MAX_K": "3", "TIDINGS_API_DEFAULT_K": "2"})
    try:
        async with httpx.AsyncClient(base_url=st.base_url, timeout=20) as http:
            r = await http.get("/v1/trending")
            assert r.status_code == 200 and len(r.json()["items"]) == 3, r.text
            r = await http.get("/v1/trending", params={"k": 4})
            assert r.status_code == 422, r.text
            # A reader's feed likewise: `[feed] page_size` (20), but not past max_k.
            r = await http.get("/v1/readers/new-reader/feed")
            assert r.status_code == 200 and len(r.json()["items"]) == 3, r.text
    finally:
        await stop_stack(st, server, task)
