"""Takedowns (migration 0013) on SQLite and the real PostgreSQL: a story the operator removed
stays out, whoever brings it back (a feed's next round, an import, a syndicated copy)."""

from __future__ import annotations

from datetime import UTC, datetime

from aggregator.model import StoryDraft
from aggregator.normalize import content_hash

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
BODY = " ".join(f"ceasefire{i}" for i in range(60))
OTHER = " ".join(f"budget{i}" for i in range(60))


def draft(url: str, text: str, title: str = "A title") -> StoryDraft:
    return StoryDraft(url=url, title=title, text=text, content_hash=content_hash(text),
                      site="example.org", source="src")


async def test_a_taken_down_story_and_its_copies_stay_out(store):
    first = await store.upsert_stories([draft("https://a.org/x", BODY), draft("https://b.org/y", BODY),
                                        draft("https://c.org/other", OTHER)], NOW)
    assert len(first.new_ids) == 3 and first.duplicates == 1
    seq = await store.change_seq()
    removed = await store.take_down(["https://a.org/x"], reason="court order 12/3", now=NOW)
    assert removed == sorted(first.new_ids[:2])  # the story and its syndicated copy
    assert await store.count_stories() == 1
    # Removals reach every index through the change log, as any delete does.
    assert {(sid, op) for _, sid, op in await store.changes_since(seq)} >= {(first.new_ids[0], "remove")}

    again = await store.upsert_stories([
        draft("https://a.org/x", BODY),  # the feed still lists it
        draft("http://a.org/x/", BODY + " updated"),  # another spelling, another body
        draft("https://www.a.org/x", BODY + " again"),  # the same page on "www."
        draft("https://d.org/z", BODY),  # the same body published elsewhere later
        draft("https://c.org/other", OTHER + " more"),  # an unrelated story goes on
        draft("https://e.org/new", "fresh news about something else entirely"),
    ], NOW)
    assert again.taken_down == 4 and len(again.new_ids) == 1 and len(again.updated_ids) == 1
    assert await store.count_stories() == 2
    listed = await store.takedowns()
    assert sorted(t.url for t in listed if not t.variant_of) == ["https://a.org/x", "https://b.org/y"]
    assert {t.url for t in listed if t.variant_of == "https://a.org/x"} == {
        "https://a.org/x/", "http://a.org/x", "http://a.org/x/", "https://www.a.org/x",
        "https://www.a.org/x/", "http://www.a.org/x", "http://www.a.org/x/"}
    assert {t.reason for t in listed} == {"court order 12/3"}


async def test_a_url_taken_down_before_it_arrives_never_gets_in(store):
    assert await store.take_down(["https://a.org/later"], reason="embargo", now=NOW) == []
    assert [t.url for t in await store.takedowns() if not t.variant_of] == ["https://a.org/later"]
    r = await store.upsert_stories([draft("https://a.org/later", BODY)], NOW)
    assert r.taken_down == 1 and r.new_ids == ()


async def test_lifting_a_takedown_lets_the_story_and_its_copies_back(store):
    await store.upsert_stories([draft("https://a.org/x", BODY), draft("https://b.org/y", BODY)], NOW)
    await store.take_down(["https://a.org/x"], now=NOW)
    # Any spelling lifts it; counted are the URLs taken down (it and its copy's), not each
    # of their spellings' entries (it said 8 for these two).
    assert await store.lift_takedowns(["http://a.org/x"]) == 2
    assert await store.takedowns() == []  # the copy's URL and the body went with it
    r = await store.upsert_stories([draft("https://b.org/y", BODY), draft("https://a.org/x", BODY)], NOW)
    assert r.taken_down == 0 and len(r.new_ids) == 2


async def test_a_takedown_during_a_store_of_the_story_still_removes_it(store, monkeypatch):
    """A collector storing the story in the very moment of its takedown: its transaction
    checked the takedowns before the takedown committed, and committed the story after the
    takedown had deleted nothing (PostgreSQL, READ COMMITTED), so the story came back. The
    takedown now waits for stores under way, and stores that start later wait for it."""
    import asyncio

    from aggregator.store import Store

    checked, release = asyncio.Event(), asyncio.Event()
    real = Store._taken_down

    async def slow_check(s, by_url):  # the store's transaction, paused after its check
        found = await real(s, by_url)
        checked.set()
        await release.wait()
        return found

    monkeypatch.setattr(Store, "_taken_down", staticmethod(slow_check))
    storing = asyncio.create_task(store.upsert_stories([draft("https://a.org/race", BODY)], NOW))
    await checked.wait()
    taking_down = asyncio.create_task(store.take_down(["https://a.org/race"], now=NOW))
    await settled(store, taking_down)
    release.set()
    await storing
    await taking_down
    assert await store.count_stories() == 0
    r = await store.upsert_stories([draft("https://a.org/race", BODY)], NOW)  # the next round
    assert r.taken_down == 1


async def settled(store, task, timeout_s: float = 20.0) -> None:
    """Until `task` is done or, on PostgreSQL, waits for a lock (SQLite: a moment; its one
    writer at a time keeps every store and takedown apart)."""
    import asyncio
    import time

    from sqlalchemy import text

    deadline = time.monotonic() + timeout_s
    while not task.done() and time.monotonic() < deadline:
        if store.dialect != "postgresql":
            await asyncio.sleep(0.5)
            return
        async with store.engine.connect() as conn:
            waiting = await conn.scalar(text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"))
        if waiting:
            return
        await asyncio.sleep(0.02)
