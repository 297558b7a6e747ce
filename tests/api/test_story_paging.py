"""What a news app paging `GET /v1/stories` sees while the list changes under it: feeds
collected from loopback into a real SQLite store, listed over real HTTP, a page at a time.

- A feed that corrects an item's time between two page requests must not make the app see
  a story twice or never (the list's order is the keyset's, `sort_at`).
- A cursor made by the rule before the same-time order (its time the story's plain sort
  time, an API process not yet upgraded beside a collector that is) must not repeat stories.
- Two sources' undated items of one round: each source keeps its feed's order, and the
  combined list pages without a repeat or a gap; which source's item is "newer" is unknown,
  so how the two mix is left as it falls.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx

from aggregator.collect import Collector
from aggregator.model import SourceSpec
from tests.api.conftest import make_stack, stop_stack
from tests.api.test_feed_order import FAST, undated_feed
from tests.localsite import LoopbackResolver


def dated_feed(items: list[tuple[str, datetime]]) -> str:
    body = "".join(
        f"<item><title>Varnholm {n} news</title><link>https://desk.example/{n}</link>"
        f"<pubDate>{format_datetime(at, usegmt=True)}</pubDate>"
        f"<description>The Varnholm {n} story, in words of its own about the {n}.</description>"
        "</item>" for n, at in items)
    return ('<?xml version="1.0"?><rss version="2.0"><channel><title>Desk</title>'
            f"<link>https://desk.example/</link><description>d</description>{body}</channel></rss>")


def name(card: dict) -> str:
    return card["url"].rsplit("/", 1)[1]


async def page(http: httpx.AsyncClient, cursor: str | None, limit: int = 2,
               **filters: str) -> tuple[list[str], str | None]:
    params = {**filters, "limit": limit, **({"cursor": cursor} if cursor else {})}
    r = await http.get("/v1/stories", params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    return [name(c) for c in body["items"]], body["next"]


async def rest(http: httpx.AsyncClient, cursor: str | None, **filters: str) -> list[str]:
    """Every story from `cursor` on, page after page."""
    seen: list[str] = []
    while True:
        names, cursor = await page(http, cursor, **filters)
        seen += names
        if not cursor:
            return seen


async def desk(st, feed: str, clock=None) -> Collector:
    """The source "desk" on loopback serving `feed`, and a collector of it (`clock`: its
    time, else the real one)."""
    st.site.route("/desk.xml", body=feed, content_type="application/rss+xml")
    await st.svc.store.sync_sources([SourceSpec("desk", st.site.url("/desk.xml"), "news")])
    return Collector(st.svc.store, FAST, **({"clock": clock} if clock else {}),
                     resolver_factory=lambda: LoopbackResolver(port=st.site.port))


async def test_a_time_corrected_between_two_pages_repeats_and_skips_no_story(tmp_path, shared_data):
    st, server, task = await make_stack(tmp_path, shared_data, limit=4)
    try:
        site = st.site
        hour = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        names = ["a", "b", "c", "d", "e", "f"]
        times = {n: hour - timedelta(hours=k) for k, n in enumerate(names)}
        collector = await desk(st, dated_feed(list(times.items())))
        assert (await collector.run_round(name="desk", force=True)).new == len(names)

        async with httpx.AsyncClient(base_url=st.base_url, timeout=20) as http:
            first, cursor = await page(http, None, source="desk")
            assert first == ["a", "b"]
            # Between two pages the feed corrects two times: "a", already shown, to before
            # "e"; "e", not yet shown, to between "a" and "b"'s.
            fixed = {**times, "a": times["e"] - timedelta(minutes=30),
                     "e": times["a"] - timedelta(minutes=30)}
            site.route("/desk.xml", body=dated_feed(list(fixed.items())),
                       content_type="application/rss+xml")
            (report,) = (await collector.run_round(name="desk", force=True)).sources
            assert report.updated == 2, report
            seen = first + await rest(http, cursor, source="desk")
            assert sorted(seen) == names, seen  # each story once
            # The cards show the corrected times.
            card = (await http.get("/v1/stories", params={"source": "desk"})).json()["items"]
            shown = {name(c): c["published_at"] for c in card}
            assert shown["a"].startswith(fixed["a"].isoformat()[:19])
    finally:
        await stop_stack(st, server, task)


async def test_a_feed_stamping_its_build_time_keeps_its_order_round_after_round(
        tmp_path, shared_data):
    """Every item dated when the feed was built: from the second round that time is past
    the stories' collection, and each sorted at its collection time, all alike, last item
    first (the feed's order, `feedorder`'s steps, undone)."""
    st, server, task = await make_stack(tmp_path, shared_data, limit=4)
    try:
        site = st.site
        names = ["harbour", "ferry", "lamp", "pay"]
        clock = [datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)]
        collector = await desk(st, "", clock=lambda: clock[0])
        async with httpx.AsyncClient(base_url=st.base_url, timeout=20) as http:
            for _ in range(3):  # built a minute before each round's fetch
                built = clock[0] - timedelta(minutes=1)
                site.route("/desk.xml", body=dated_feed([(n, built) for n in names]),
                           content_type="application/rss+xml")
                await collector.run_round(name="desk", force=True)
                assert await rest(http, None, source="desk") == names
                clock[0] += timedelta(minutes=15)
    finally:
        await stop_stack(st, server, task)


def old_cursor(card: dict, source: str) -> str:
    """The `next` the API wrote before the same-time order: the story's plain sort time (its
    publication time, never later than its collection) and id, and the filters' check."""
    collected = datetime.fromisoformat(card["collected_at"])
    published = datetime.fromisoformat(card["published_at"]) if card["published_at"] else None
    at = published if published is not None and published <= collected else collected
    check = hashlib.blake2b("\x00".join([source, ""]).encode(), digest_size=3).hexdigest()
    raw = json.dumps([at.isoformat(), card["id"], check])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


async def test_a_cursor_made_by_the_old_rule_repeats_no_story(tmp_path, shared_data):
    st, server, task = await make_stack(tmp_path, shared_data, limit=4)
    try:
        names = ["harbour", "ferry", "lamp", "pay", "talks"]
        collector = await desk(st, undated_feed(names))
        assert (await collector.run_round(name="desk", force=True)).new == len(names)

        async with httpx.AsyncClient(base_url=st.base_url, timeout=20) as http:
            first, _ = await page(http, None, source="desk")
            assert first == ["harbour", "ferry"]
            # An API process of the old rule served that page: its `next` named "ferry"'s
            # plain sort time, the round's collection time that all five share.
            ferry = (await http.get("/v1/stories", params={"source": "desk", "limit": 2})
                     ).json()["items"][1]
            ferry = (await http.get(f"/v1/stories/{ferry['id']}")).json()
            seen = first + await rest(http, old_cursor(ferry, "desk"), source="desk")
            assert seen == names
    finally:
        await stop_stack(st, server, task)


async def test_two_sources_undated_items_of_one_round_page_without_repeat_or_gap(
        tmp_path, shared_data):
    st, server, task = await make_stack(tmp_path, shared_data, limit=4)
    try:
        site, store = st.site, st.svc.store
        feeds = {"north": [f"n{k}" for k in range(5)], "south": [f"s{k}" for k in range(5)]}
        for src, items in feeds.items():
            site.route(f"/{src}.xml", body=undated_feed(items), content_type="application/rss+xml")
        await store.sync_sources([SourceSpec(src, site.url(f"/{src}.xml"), "coast")
                                  for src in feeds])
        # One clock reading for the round: both fetches take the same collection time, as
        # two sources fetched side by side within a microsecond or so of each other do.
        at = datetime.now(UTC).replace(microsecond=0)
        collector = Collector(store, FAST, clock=lambda: at,
                              resolver_factory=lambda: LoopbackResolver(port=site.port))
        assert (await collector.run_round(force=True)).new == 10

        async with httpx.AsyncClient(base_url=st.base_url, timeout=20) as http:
            seen = await rest(http, None, category="coast")
            assert sorted(seen) == sorted(feeds["north"] + feeds["south"])  # each once
            for items in feeds.values():  # each source in its own feed's order
                assert [n for n in seen if n in items] == items
    finally:
        await stop_stack(st, server, task)
