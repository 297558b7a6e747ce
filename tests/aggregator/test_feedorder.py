"""A fetch's items that share a time list in the publisher's order (newest first), not in
reverse: the store, on SQLite and PostgreSQL, and the rule `feedorder.in_feed_order`."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from aggregator.feedorder import NEAR, SPAN_GAP, STEP, in_feed_order, latest_near, spans
from aggregator.model import SourceSpec, StoryDraft

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DAY = datetime(2026, 11, 26, tzinfo=UTC)  # a listing that dates its items by the day only


def item(name: str, published_at: datetime | None = None, title: str = "") -> StoryDraft:
    return StoryDraft(url=f"https://desk.example/{name}", title=title or f"Story {name}",
                      summary=f"What happened in {name}, told its own way.",
                      site="desk.example", source="desk", category="news",
                      published_at=published_at)


async def desk_id(store) -> int:
    await store.sync_sources([SourceSpec("desk", "https://desk.example/feed.xml", "news")], NOW)
    (state,) = await store.claim_due_sources(NOW, owner="t", lease_s=60)
    return state.id


async def listed(store) -> list[str]:
    return [s.url.rsplit("/", 1)[1] for s in await store.latest_stories(source="desk")]


async def test_undated_items_of_a_fetch_list_in_the_feeds_order(store):
    sid = await desk_id(store)
    await store.upsert_stories([item(n) for n in ("a", "b", "c", "d")], NOW, source_id=sid)
    assert await listed(store) == ["a", "b", "c", "d"]
    stories = await store.latest_stories(source="desk")
    # Readers still see no date; none sorts later than when it was collected.
    assert all(s.published_at is None and s.collected_at == NOW for s in stories)
    assert [s.sort_at for s in stories] == [NOW - k * STEP for k in range(4)]


async def test_a_later_round_lists_its_new_items_on_top_and_moves_no_stored_one(store):
    sid = await desk_id(store)
    first = [item(n, DAY) for n in ("c", "d", "e")]
    await store.upsert_stories(first, NOW, source_id=sid)
    assert await listed(store) == ["c", "d", "e"]
    placed = {s.id: s.sort_at for s in await store.latest_stories(source="desk")}
    # Two new items on top of the same day's listing; "d" is retitled, all restate the day.
    later = NOW + timedelta(minutes=15)
    again = [item("a", DAY), item("b", DAY), first[0], item("d", DAY, "Story d, corrected"),
             first[2]]
    r = await store.upsert_stories(again, later, source_id=sid)
    assert len(r.new_ids) == 2 and len(r.updated_ids) == 1
    assert await listed(store) == ["a", "b", "c", "d", "e"]
    stories = await store.latest_stories(source="desk")
    assert all(s.published_at == DAY for s in stories)  # what readers see is the feed's day
    assert {s.id: s.sort_at for s in stories if s.id in placed} == placed
    # A third round of one new item: above both earlier rounds.
    await store.upsert_stories([item("z", DAY), *again], later + timedelta(minutes=15),
                               source_id=sid)
    assert await listed(store) == ["z", "a", "b", "c", "d", "e"]


async def test_items_of_distinct_times_keep_them(store):
    sid = await desk_id(store)
    times = [NOW - timedelta(hours=h) for h in (1, 2, 3)]
    await store.upsert_stories([item(n, t) for n, t in zip("abc", times, strict=True)], NOW,
                               source_id=sid)
    stories = await store.latest_stories(source="desk")
    assert [s.sort_at for s in stories] == times


def test_ties_step_down_from_their_time_and_never_past_the_collection_time():
    t = NOW - timedelta(hours=1)
    assert in_feed_order([t, NOW, t, NOW], {}, NOW) == [t, NOW, t - STEP, NOW - STEP]
    # Above a stored story an earlier round placed at the time, but not past collection.
    assert in_feed_order([t, t], {t: t + STEP}, NOW) == [t + 3 * STEP, t + 2 * STEP]
    assert in_feed_order([NOW, NOW], {NOW: NOW}, NOW) == [NOW, NOW - STEP]
    # A stored story at a truly different time changes nothing; nor does a lone item.
    assert in_feed_order([t], {t: t - timedelta(milliseconds=5)}, NOW) == [t]


def test_the_latest_stored_time_near_each_time_is_found_and_no_farther_one():
    t = NOW - timedelta(hours=1)
    stored = sorted([t - NEAR, t + 2 * STEP, t + NEAR, NOW - timedelta(seconds=1)])
    assert latest_near([t, NOW], stored) == {t: t + 2 * STEP}
    assert latest_near([t], [t - NEAR]) == {t: t - NEAR}  # the range's low end is in it
    assert latest_near([t], [t + NEAR, t + 2 * NEAR]) == {}  # its high end is not


def test_times_far_apart_are_read_in_spans_of_their_own():
    a, b = NOW - 3 * SPAN_GAP, NOW - 2 * SPAN_GAP - timedelta(seconds=1)
    assert list(spans([NOW, b, a])) == [(a - NEAR, b + NEAR), (NOW - NEAR, NOW + NEAR)]
    assert list(spans([])) == []


async def test_another_sources_stories_of_the_same_time_do_not_lift_a_lone_new_item(store):
    sid = await desk_id(store)
    # A wire's listing dated by the day placed its two items above the day.
    await store.upsert_stories([replace(item(n, DAY), url=f"https://wire.example/{n}",
                                        site="wire.example", source="wire") for n in "xy"],
                               NOW)
    await store.upsert_stories([item("a", DAY)], NOW, source_id=sid)
    (a,) = await store.latest_stories(source="desk")
    assert a.sort_at == DAY
