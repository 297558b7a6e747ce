"""An operator's source weights in related blocks and feeds: 0 keeps a source's stories out,
and an edit reaches every block, cached ones included, without a restart."""

from __future__ import annotations

import json

from aggregator.importer import read_jsonl
from aggregator.model import SourceSpec
from aggregator.store import utcnow
from api.runner import reload_weights
from recommender.weights import SourceWeights
from tests.datasets import bbc_records


def test_weights_count_their_changes_and_zero_excludes():
    w = SourceWeights({"a": 1.0})
    assert not w.replace({"a": 1.0}) and w.version == 0
    assert w.replace({"a": 0.0, "b": 2.0}) and w.version == 1
    assert w.excluded("a") and not w.excluded("b") and not w.excluded("unknown")
    assert dict(w) == {"a": 0.0, "b": 2.0} and w.get("b", 1.0) == 2.0


async def _weigh(stack, politics: float) -> None:
    specs = [SourceSpec(name="bbc-politics", url="http://127.0.0.1:9/p.xml", category="politics",
                        weight=politics),
             SourceSpec(name="bbc-entertainment", url="http://127.0.0.1:9/e.xml",
                        category="entertainment")]
    await stack.svc.store.sync_sources(specs)
    await reload_weights(stack.svc)


async def _sources_in_block(http, story_id: int) -> set[str]:
    r = await http.get(f"/v1/stories/{story_id}/related", params={"k": 10})
    assert r.status_code == 200
    return {c["source"] for c in r.json()["related"]}


async def test_weight_zero_keeps_a_source_out_and_edits_reach_cached_blocks_and_feeds(http, stack):
    items = (await http.get("/v1/stories", params={"category": "politics", "limit": 1})).json()["items"]
    story = items[0]["id"]
    await _weigh(stack, 1.0)
    assert "bbc-politics" in await _sources_in_block(http, story)  # now cached, ETag and all
    feed = (await http.get("/v1/readers/weights-1/feed", params={"k": 30})).json()
    assert "bbc-politics" in {c["source"] for c in feed["items"]}

    await _weigh(stack, 0.0)
    # Feeds and blocks rank with one shared set of weights: the feed service kept its own
    # dict before, and never saw an edit.
    assert stack.svc.feeds.source_weights is stack.svc.related.source_weights
    block = await _sources_in_block(http, story)
    assert block and "bbc-politics" not in block
    feed = (await http.get("/v1/readers/weights-2/feed", params={"k": 30})).json()
    assert feed["items"] and "bbc-politics" not in {c["source"] for c in feed["items"]}
    trending = (await http.get("/v1/trending", params={"k": 30})).json()
    assert "bbc-politics" not in {c["source"] for c in trending["items"]}

    await _weigh(stack, 1.0)
    assert "bbc-politics" in await _sources_in_block(http, story)


async def test_a_removed_source_is_listed_retired_and_keeps_its_damping_not_its_boost(http, stack):
    """Removed from the file, a source vanished from `/v1/sources` while its stories were
    served with its last weight: a boost stayed for a source the operator dropped."""
    await _weigh(stack, 3.0)
    assert stack.svc.related.source_weights["bbc-politics"] == 3.0
    others = [SourceSpec(name="bbc-entertainment", url="http://127.0.0.1:9/e.xml",
                         category="entertainment")]
    try:
        await stack.svc.store.sync_sources(others)
        await reload_weights(stack.svc)
        assert stack.svc.related.source_weights["bbc-politics"] == 1.0
        rows = {r["name"]: r for r in (await http.get("/v1/sources")).json()["items"]}
        gone = rows["bbc-politics"]
        assert (gone["status"], gone["weight"], gone["enabled"]) == ("retired", 1.0, False)
        assert gone["stories"] > 0 and gone["retired_at"] and rows["bbc-entertainment"]["retired_at"] is None
        # Kept out (weight 0) before its removal: it stays out until its stories age out.
        await _weigh(stack, 0.0)
        await stack.svc.store.sync_sources(others)
        await reload_weights(stack.svc)
        items = (await http.get("/v1/stories", params={"category": "politics", "limit": 1})).json()["items"]
        block = await _sources_in_block(http, items[0]["id"])
        assert block and "bbc-politics" not in block
    finally:
        await _weigh(stack, 1.0)



async def test_a_weight_holds_for_stories_stored_under_another_case_of_its_name(http, stack, shared_data):
    """An import line naming the source "BBC-Politics" files its story under the configured
    `bbc-politics` (counted, renamed, purged and filtered with it): its weight 0 left such a
    story in related blocks, searches and feeds, and its boost passed it by, the weight being
    looked up by the exact name."""
    line = {**bbc_records(shared_data, categories=("politics",), limit=61)[60], "source": "BBC-Politics"}
    (draft,) = read_jsonl([json.dumps(line)], utcnow())
    await stack.svc.store.upsert_stories([draft])
    await stack.svc.indexer.drain()
    await stack.svc.corpus.follow()
    (story,) = (await http.get("/v1/stories", params={"source": "BBC-Politics"})).json()["items"][:1]
    assert story["url"] == line["url"] and story["source"] == "BBC-Politics"

    async def searched() -> list[int]:
        r = await http.get("/v1/search", params={"q": line["title"], "k": 10})
        assert r.status_code == 200
        return [c["id"] for c in r.json()["items"]]

    try:
        assert story["id"] in await searched()
        await _weigh(stack, 0.0)
        assert story["id"] not in await searched()
        feed = (await http.get("/v1/readers/weights-case/feed", params={"k": 50})).json()
        assert feed["items"] and story["id"] not in {c["id"] for c in feed["items"]}
        assert stack.svc.related.source_weights.get("BBC-Politics", 1.0) == 0.0
    finally:
        await _weigh(stack, 1.0)
