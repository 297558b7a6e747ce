"""A search's pages agree whatever k is asked (recommender/search.py `search_depths`), over
every BBC politics and entertainment story, the real indexes and the hashing embedder."""

from __future__ import annotations

import httpx
import pytest

from recommender.embed import HashingEmbedder
from tests.api.conftest import make_stack, stop_stack

# Ranked as asked, their k=40 started with other stories than their k=20 (2 of 15 common
# queries over these stories), so a "more results" page of 40 repeated and skipped some.
REORDERED_PAST_20 = ["film awards", "government plans"]


class CountingEmbedder(HashingEmbedder):
    """The stack's own embedder, remembering the texts it embedded."""

    def __init__(self):
        super().__init__()
        self.texts: list[str] = []
        # Called once, at the next embedding: what lands while a search embeds its query.
        self.meanwhile = None

    def encode(self, texts, batch_size=32):
        self.texts.extend(texts)
        if self.meanwhile is not None:
            self.meanwhile, meanwhile = None, self.meanwhile
            meanwhile()
        return super().encode(texts, batch_size)


@pytest.fixture(scope="module")
async def stack(tmp_path_factory, shared_data):
    st, server, task = await make_stack(tmp_path_factory.mktemp("search-pages"), shared_data,
                                        limit=None, embedder=CountingEmbedder())
    yield st
    await stop_stack(st, server, task)


@pytest.mark.parametrize("q", REORDERED_PAST_20)
async def test_each_page_starts_with_the_smaller_pages(stack, q):
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as http:
        pages = {}
        for k in (10, 20, 40, 50):
            r = await http.get("/v1/search", params={"q": q, "k": k})
            assert r.status_code == 200, r.text
            pages[k] = [c["id"] for c in r.json()["items"]]
    assert [len(ids) for ids in pages.values()] == [10, 20, 40, 50]
    for k, ids in pages.items():
        assert ids == pages[50][:k], (q, k)


async def test_a_deep_page_embeds_its_query_once(stack):
    """A page past 40 is cut from three rankings of one query (20, 40, 80): each embedded the
    query again, three embeddings (~30-60 ms of a core each with the bundled model) charged
    as one to the text limit."""
    embedder = stack.svc.related.embedder
    embedder.texts.clear()
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as http:
        r = await http.get("/v1/search", params={"q": "labour party election", "k": 50})
    assert r.status_code == 200, r.text
    assert len(r.json()["items"]) > 40
    assert len(embedder.texts) == 1, embedder.texts


async def test_a_weight_edit_while_a_page_ranks_leaves_it_to_be_ranked_again(stack):
    """An operator's edit of the sources' weights that lands while a page of 40 ranks (its
    first 20 cut from the ranking kept with the old weights, its query embedded for the
    ranking of 40): the answer was kept as ranked with the new weights, and the next page of
    40 showed the source the edit left out, until the cache's 5 minutes ran out."""
    q = "tory leader"
    weights = stack.svc.related.source_weights
    before = dict(weights)
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as http:
        first = (await http.get("/v1/search", params={"q": q, "k": 10})).json()["items"]
        left_out = first[0]["source"]
        stack.svc.related.embedder.meanwhile = lambda: weights.replace({**before, left_out: 0.0})
        try:
            assert (await http.get("/v1/search", params={"q": q, "k": 40})).status_code == 200
            again = (await http.get("/v1/search", params={"q": q, "k": 40})).json()["items"]
        finally:
            stack.svc.related.embedder.meanwhile = None
            weights.replace(before)
    assert again and left_out not in {c["source"] for c in again}
