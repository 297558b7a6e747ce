"""/metrics as an operator reads it: each series counts what its name says, and the text
parses with Prometheus's own parser."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from aggregator.model import StoryDraft
from tests.api.conftest import make_stack, stop_stack


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of an exposition, keyed by name and sorted labels (parses it strictly)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_stories_embedded_counts_what_the_indexer_embeds(tmp_path, shared_data):
    # tidings_stories_embedded_total stayed 0 in `tidings run` while the index grew: nothing
    # ever incremented it, so an operator's "is the indexer keeping up" graph read flat.
    st, server, task = await make_stack(tmp_path, shared_data, limit=5)
    try:
        async with httpx.AsyncClient(base_url=st.base_url, timeout=20) as http:
            before = samples((await http.get("/metrics")).text)[("tidings_stories_embedded_total", ())]
            await st.svc.store.upsert_stories([
                StoryDraft(url=f"https://news.example/metrics-{i}", title=f"Embedded story {i}")
                for i in range(3)])
            assert await st.svc.indexer.run_once() == 3
            after = samples((await http.get("/metrics")).text)
        assert after[("tidings_stories_embedded_total", ())] - before == 3
    finally:
        await stop_stack(st, server, task)
