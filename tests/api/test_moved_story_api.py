"""A story its source moved to a new URL (`store.moved_stories`), over real HTTP: blocks asked
by its old URL, by its new one, and the blocks that show it, served from the cache before."""

from __future__ import annotations

import httpx
import pytest

from aggregator.model import SourceSpec, StoryDraft
from aggregator.normalize import content_hash
from aggregator.store import utcnow
from tests.api.conftest import make_stack, stop_stack

OLD, NEW = "https://news.example/world/truce-holds", "https://news.example/world/truce-talks-resume"


def truce(valley: str, extra: str = "") -> str:
    return (f"The truce agreed on Tuesday held through the night in the {valley} valley, "
            "monitors said, as mediators prepared another round of talks in the capital. "
            "Both armies accused each other of shelling near the dam, but no attack on the power "
            f"lines was reported. Aid convoys reached three villages of the {valley} valley cut "
            f"off since the spring floods, and a deal on the border crossings was weeks away.{extra}")


@pytest.fixture(scope="module")
async def stack(tmp_path_factory, shared_data):
    st, server, task = await make_stack(tmp_path_factory.mktemp("moved"), shared_data, limit=30)
    yield st
    await stop_stack(st, server, task)


async def test_a_moved_story_answers_by_both_urls_and_shows_under_its_new_one(stack):
    store = stack.svc.store
    await store.sync_sources([SourceSpec("desk", "https://news.example/feed.xml", "politics")])
    (state,) = await store.claim_due_sources(utcnow(), owner="t", lease_s=60)

    async def round_(*drafts: StoryDraft) -> None:
        await store.upsert_stories(drafts, utcnow(), source_id=state.id, carried=[d.url for d in drafts])
        await stack.svc.indexer.drain()
        await stack.svc.corpus.follow()

    def draft(url: str, title: str, text: str, item: str) -> StoryDraft:
        return StoryDraft(url=url, title=title, text=text, site="news.example", source="desk",
                          category="politics", content_hash=content_hash(text), item_id=item)

    other = draft("https://news.example/world/brenn", "Brenn valley truce holds", truce("Brenn"), "p2")
    await round_(draft(OLD, "Ardal valley truce holds", truce("Ardal"), "p1"), other)
    sid = (await store.get_story_by_url(OLD)).id
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=20) as http:
        async def block(url: str) -> dict:
            r = await http.get("/v1/related", params={"url": url, "k": 5})
            assert r.status_code == 200, r.text
            return r.json()

        assert OLD in [c["url"] for c in (await block(other.url))["related"]]  # cached now
        await round_(draft(NEW, "Ardal valley truce talks resume", truce("Ardal", " Talks resume."), "p1"),
                     other)
        assert (await store.get_story_by_url(NEW)).id == sid
        shown = {c["id"]: c["url"] for c in (await block(other.url))["related"]}
        assert shown.get(sid) == NEW  # the card under its new URL, not the cached block
        assert (await block(NEW))["article"]["id"] == sid
        by_old = await block(OLD)  # the widget on the old page still gets the story's block
        assert by_old["article"]["url"] == OLD and sid not in [c["id"] for c in by_old["related"]]
        assert other.url in [c["url"] for c in by_old["related"]]
