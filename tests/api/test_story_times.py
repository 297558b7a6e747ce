"""A story's age in related blocks, feeds and trending is the one the listing and retention
use (`sort_at`): its publication time, but never later than when it was first collected.

A feed may date its items ahead (a publisher's clock, or on purpose, to stay on top: up to
`normalize.MAX_FUTURE` is kept as a time-zone slip), or stamp every item with the time the
feed was built, so each round moves an old story's `published_at` to "now". The listing and
retention already aged such stories from their first collection; ranking read `published_at`
and kept them new: top freshness, and past any `max_age_days`, for as long as the feed says.
"""

from __future__ import annotations

from datetime import timedelta

import httpx

from aggregator.model import StoryDraft
from aggregator.store import utcnow
from tests.api.conftest import make_stack, stop_stack

TEXT = ("Keepers of the Varnholm lighthouse walked out over pay on Tuesday, leaving the "
        "Varnholm strait without its lamp. The Varnholm harbour board said ferries would sail "
        "by day only while the lighthouse keepers strike lasts, and talks resume on Friday.")


def _draft(name: str, published_at, title: str, more: str = "") -> StoryDraft:
    return StoryDraft(url=f"https://coast.example/{name}", title=title,
                      text=TEXT + more + f" ({name})",
                      summary=TEXT[:120], site="coast.example", source="coast",
                      category="politics", published_at=published_at)


async def test_a_redated_or_future_dated_story_ranks_by_when_it_was_first_collected(
        tmp_path, shared_data):
    st, server, task = await make_stack(tmp_path, shared_data, limit=8)
    store, now = st.svc.store, utcnow()
    try:
        week_ago = now - timedelta(days=7)
        # Collected a week ago; the feed now stamps it with the time it was built.
        restamped = _draft("restamped", week_ago, "Varnholm lighthouse keepers walk out")
        await store.upsert_stories([restamped], week_ago)
        await store.upsert_stories([_draft("restamped", now, restamped.title)], now)
        # Collected 12 hours ago, dated 20 hours after that (kept: within a day ahead); and an
        # honest story collected 6 hours ago.
        ahead = now - timedelta(hours=12)
        await store.upsert_stories([_draft("ahead", ahead + timedelta(hours=20),
                                           "Varnholm ferries sail by day only")], ahead)
        honest = now - timedelta(hours=6)
        await store.upsert_stories([_draft("honest", honest, "Varnholm harbour board speaks")],
                                   honest)
        article = _draft("article", now, "Varnholm strike talks resume on Friday")
        await store.upsert_stories([article], now)
        await st.svc.indexer.drain()
        await st.svc.corpus.follow()
        ids = {n: (await store.get_story_by_url(f"https://coast.example/{n}")).id
               for n in ("restamped", "ahead", "honest", "article")}

        async with httpx.AsyncClient(base_url=st.base_url, timeout=20) as http:
            r = await http.get(f"/v1/stories/{ids['article']}/related",
                               params={"k": 10, "max_age_days": 2})
            assert r.status_code == 200
            shown = {c["id"] for c in r.json()["related"]}
            assert ids["honest"] in shown and ids["ahead"] in shown
            assert ids["restamped"] not in shown  # a week old, as the listing says
            # Trending without any reads: freshness alone orders the stories.
            r = await http.get("/v1/trending", params={"k": 50})
            order = [c["id"] for c in r.json()["items"]]
            assert order.index(ids["honest"]) < order.index(ids["ahead"]) < order.index(
                ids["restamped"])
            # Shown with the time the publisher gave: the ranking ages it, the card does not.
            card = (await http.get(f"/v1/stories/{ids['ahead']}")).json()
            assert card["published_at"].startswith((ahead + timedelta(hours=20)).isoformat()[:16])
    finally:
        await stop_stack(st, server, task)


async def test_a_redated_article_looks_for_coverage_from_when_it_came_out(tmp_path, shared_data):
    """The article a block is for is aged as its candidates are: a feed re-dating it each
    round made its event window start "now", so the reports of its own days lost their
    same-event evidence to stories of today."""
    st, server, task = await make_stack(tmp_path, shared_data, limit=8)
    store, now = st.svc.store, utcnow()
    # Two names shared: "same event" is said on two names at least.
    mayor = " Mayor Inga Solberg asked both sides back to the table."
    try:
        week_ago = now - timedelta(days=7)
        article = _draft("article", week_ago, "Varnholm lighthouse keepers walk out", mayor)
        await store.upsert_stories([article], week_ago)
        await store.upsert_stories([_draft("article", now, article.title, mayor)], now)  # re-dated
        await store.upsert_stories([_draft("then", week_ago + timedelta(hours=2),
                                           "Varnholm strait left dark by keepers' strike", mayor)],
                                   week_ago + timedelta(hours=2))
        await store.upsert_stories([_draft("today", now, "Varnholm harbour board speaks", mayor)],
                                   now)
        await st.svc.indexer.drain()
        await st.svc.corpus.follow()
        ids = {n: (await store.get_story_by_url(f"https://coast.example/{n}")).id
               for n in ("article", "then", "today")}
        async with httpx.AsyncClient(base_url=st.base_url, timeout=20) as http:
            r = await http.get(f"/v1/stories/{ids['article']}/related", params={"k": 10})
            assert r.status_code == 200
            reasons = {c["id"]: c["reason"] for c in r.json()["related"]}
            assert reasons[ids["then"]].startswith("same event"), reasons
            assert not reasons[ids["today"]].startswith("same event"), reasons
    finally:
        await stop_stack(st, server, task)
