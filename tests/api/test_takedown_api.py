"""DELETE /v1/stories/{id}: a takedown over real HTTP, as an operator's tool would send it."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from aggregator.importer import LineError, read_jsonl
from aggregator.store import utcnow
from tests.api.conftest import make_stack, stop_stack


@pytest.fixture(scope="module")
async def stack(tmp_path_factory, shared_data):
    st, server, task = await make_stack(tmp_path_factory.mktemp("takedown"), shared_data, limit=40,
                                        env={"TIDINGS_API_DATABASE_TIMEOUT_S": "1"})
    yield st
    await stop_stack(st, server, task)


async def test_a_story_taken_down_leaves_every_block_at_once_and_stays_out(stack):
    import json

    async with httpx.AsyncClient(base_url=stack.base_url, timeout=20) as http:
        items = (await http.get("/v1/stories", params={"limit": 40})).json()["items"]
        # A story that shows in another's block, both blocks served (and cached) before.
        shown_in = {}
        for s in items:
            block = (await http.get(f"/v1/stories/{s['id']}/related", params={"k": 5})).json()
            for c in block["related"]:
                shown_in.setdefault(c["id"], s["id"])
        doomed, host = next(iter(shown_in.items()))
        assert (await http.get(f"/v1/stories/{doomed}/related")).status_code == 200

        r = await http.delete(f"/v1/stories/{doomed}", params={"reason": "retracted by the publisher"})
        assert r.status_code == 200 and doomed in r.json()["removed"]
        url = r.json()["url"]
        assert (await http.get(f"/v1/stories/{doomed}")).status_code == 404
        assert (await http.get(f"/v1/stories/{doomed}/related")).status_code == 404
        block = (await http.get(f"/v1/stories/{host}/related", params={"k": 5})).json()
        assert doomed not in [c["id"] for c in block["related"]] and len(block["related"]) == 5
        assert (await http.delete(f"/v1/stories/{doomed}")).status_code == 404

    # The collector's next round, or an import, brings the same item: it stays out.
    record = next(r for r in stack.records if r["url"] == url)
    drafts = [d for d in read_jsonl([json.dumps(record)], utcnow()) if not isinstance(d, LineError)]
    res = await stack.svc.store.upsert_stories(drafts)
    assert res.taken_down == 1 and res.new_ids == ()
    assert [t.reason for t in await stack.svc.store.takedowns() if t.url == url] == [
        "retracted by the publisher"]


async def test_a_takedown_is_answered_while_the_index_is_busy_following(stack):
    """The DELETE waited for this process's index to follow the change log, with no limit:
    behind the follow job's reload of every story (~10 min at a million) or its follow stuck
    on a silent database, the operator's takedown hung though it was stored. It is answered
    once stored; the index drops the story when the follow it waits for is done."""
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as http:
        items = (await http.get("/v1/stories", params={"limit": 40})).json()["items"]
        doomed, other = items[-1]["id"], items[-2]["id"]
        # The follow job holding the follow lock, as one stuck in a long follow does.
        async with stack.svc.corpus._follow_lock:
            r = await http.delete(f"/v1/stories/{doomed}")
            assert r.status_code == 200 and doomed in r.json()["removed"], r.text
            assert (await http.get(f"/v1/stories/{doomed}")).status_code == 404
            assert doomed in stack.svc.corpus.meta  # not followed yet
        for _ in range(200):  # the follow the DELETE started applies it once the lock is free
            if doomed not in stack.svc.corpus.meta:
                break
            await asyncio.sleep(0.05)
        block = (await http.get(f"/v1/stories/{other}/related", params={"k": 39})).json()
        assert doomed not in [c["id"] for c in block["related"]]


async def test_a_story_not_indexed_yet_taken_down_loses_its_cached_block(stack):
    """A story stored but not embedded yet (the indexer behind) had its block ranked from a
    vector made on the spot: the block's pool did not hold the story itself, so its removal
    changed nothing the cache checked, and /v1/stories/{id}/related kept answering the
    taken-down article with its title and summary for up to 5 minutes."""
    from aggregator.model import StoryDraft

    body = ("The harbour authority closed the northern pier after inspectors found cracks in "
            "the concrete supports, and ferries were moved to the southern quay until repairs.")
    res = await stack.svc.store.upsert_stories([StoryDraft(
        url="https://news.example/not-indexed-yet", title="Northern pier closed after cracks found",
        summary=body[:80], text=body, source="bbc-politics", category="politics",
        site="news.example", published_at=utcnow())])
    (sid,) = res.new_ids
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=20) as http:
        first = await http.get(f"/v1/stories/{sid}/related", params={"k": 3})
        assert first.status_code == 200 and first.json()["article"]["id"] == sid
        assert sid not in stack.svc.corpus.meta  # ranked from a vector made on the spot
        assert (await http.delete(f"/v1/stories/{sid}")).status_code == 200
        after = await http.get(f"/v1/stories/{sid}/related", params={"k": 3})
        assert after.status_code == 404, after.text


async def test_a_block_being_ranked_when_its_story_is_taken_down_is_not_kept(stack, monkeypatch):
    """The story's texts were read just before the takedown, its removal from the index
    applied before the ranking read the index's version: the block was cached as ranked after
    the removal, so nothing later ended it, and /v1/stories/{id}/related answered the
    taken-down article from the cache for up to 5 minutes. The request under way may still
    answer it (it started first); the next one is a 404."""
    store = stack.svc.store
    read, release = asyncio.Event(), asyncio.Event()
    real = store.get_story_texts

    async def slow_texts(story_id):  # the block's request, paused after reading its article
        found = await real(story_id)
        read.set()
        await release.wait()
        return found

    async with httpx.AsyncClient(base_url=stack.base_url, timeout=20) as http:
        items = (await http.get("/v1/stories", params={"limit": 40})).json()["items"]
        doomed = items[len(items) // 2]["id"]
        monkeypatch.setattr(store, "get_story_texts", slow_texts)
        ranking = asyncio.create_task(http.get(f"/v1/stories/{doomed}/related", params={"k": 7}))
        await read.wait()
        monkeypatch.setattr(store, "get_story_texts", real)
        assert (await http.delete(f"/v1/stories/{doomed}")).status_code == 200
        assert doomed not in stack.svc.corpus.meta  # this process's index dropped it
        release.set()
        assert (await ranking).status_code == 200
        after = await http.get(f"/v1/stories/{doomed}/related", params={"k": 7})
        assert after.status_code == 404, after.text


async def test_a_readers_export_keeps_their_read_of_a_story_taken_down(stack):
    """A takedown deleted every reader's events of the story with it (a cascading foreign
    key): a reader's export, which holds every event they sent, lost their read of it. It
    stays, marked removed, without the story's URL and title (they left the store); trending
    counts it for nothing."""
    reader = "keeps-history"
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=20) as http:
        items = (await http.get("/v1/stories", params={"limit": 40})).json()["items"]
        doomed, kept = items[3], items[4]
        events = [{"reader": reader, "story_id": s["id"], "type": "read", "dwell_s": 40} for s in (doomed, kept)]
        events += [{"reader": f"crowd-{i}", "story_id": doomed["id"], "type": "click"} for i in range(3)]
        assert (await http.post("/v1/events", json={"events": events})).status_code == 202
        for _ in range(100):
            if len(await stack.svc.store.reader_events("crowd-2")) == 1:
                break
            await asyncio.sleep(0.05)
        assert (await http.delete(f"/v1/stories/{doomed['id']}")).status_code == 200

        exported = (await http.get(f"/v1/readers/{reader}")).json()["events"]
        assert sorted(e["story_id"] for e in exported) == sorted([doomed["id"], kept["id"]])
        assert sorted((e["story_id"], e["type"], e["dwell_s"], e["url"], e["title"], e["removed"])
                      for e in exported) == sorted([(doomed["id"], "read", 40, None, None, True),
                                                    (kept["id"], "read", 40, kept["url"], kept["title"], False)])
        stack.svc.feeds._crowd = None  # recounted now, not within its 10 s
        crowd = await stack.svc.feeds.crowd()
        assert kept["id"] in crowd.trending and doomed["id"] not in crowd.trending
        assert crowd.co_read.neighbors(doomed["id"]) == {} and doomed["id"] not in crowd.co_read.neighbors(kept["id"])
        assert (await http.get(f"/v1/readers/{reader}/feed")).status_code == 200


async def test_a_reason_with_a_nul_is_a_422_on_postgresql(tmp_path, shared_data, pg_url):
    """PostgreSQL refuses NUL in text: `DELETE /v1/stories/{id}?reason=...%00` (a client
    that zero-terminates its strings) was a 500 after the story's lookup, and the story stayed.
    It is a 422 naming the reason, and the same call without the NUL takes the story down."""
    st, server, task = await make_stack(tmp_path, shared_data, limit=4,
                                        env={"TIDINGS_DATABASE_URL": pg_url})
    try:
        async with httpx.AsyncClient(base_url=st.base_url, timeout=20) as http:
            sid = (await http.get("/v1/stories", params={"limit": 1})).json()["items"][0]["id"]
            r = await http.delete(f"/v1/stories/{sid}", params={"reason": "retracted\x00"})
            assert r.status_code == 422, r.text
            assert r.json()["error"]["code"] == "invalid_request"
            assert r.json()["error"]["message"].startswith("reason: ")
            assert (await http.get(f"/v1/stories/{sid}")).status_code == 200
            # Lines and tabs are text a reason typed in a form has: kept as sent.
            r = await http.delete(f"/v1/stories/{sid}", params={"reason": "retracted:\n\tlegal"})
            assert r.status_code == 200 and sid in r.json()["removed"], r.text
        # One row per spelling of its URL, each with the reason.
        assert {t.reason for t in await st.svc.store.takedowns()} == {"retracted:\n\tlegal"}
    finally:
        await stop_stack(st, server, task)
