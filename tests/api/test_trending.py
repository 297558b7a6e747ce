"""Trending within a category draws on that category's own stories, not a global cut."""

from __future__ import annotations

from datetime import timedelta

import httpx

from aggregator.model import StoryDraft
from aggregator.store import utcnow
from tests.api.conftest import make_stack, stop_stack


async def test_a_quiet_category_trends_after_a_busy_hour_elsewhere(tmp_path, shared_data):
    st, server, task = await make_stack(tmp_path, shared_data, limit=30)
    # Then 210 politics stories, newer than every entertainment story: the global "newest
    # 200" holds no entertainment, and trending?category=entertainment used to be empty.
    now = utcnow()
    busy = [StoryDraft(url=f"https://wire.example/p{i}", title=f"Vote count update {i}",
                       text=f"Ballots counted in district {i} overnight.", site="wire.example",
                       source="wire", category="politics", published_at=now - timedelta(microseconds=i))
            for i in range(210)]
    await st.svc.store.upsert_stories(busy, now)
    await st.svc.indexer.drain()
    await st.svc.corpus.follow()
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
