"""GET /v1/search of words a large corpus writes too often to index (corpus stop words,
recommender/lexical.py `stop_share`): over BBC stories in SQLite, real indexes and real HTTP
(hashing embedder), with the large-corpus rule applied to the stack's few hundred stories."""

from __future__ import annotations

import pytest

from tests.api.conftest import make_stack, stop_stack

QUERY = "rise part"


@pytest.fixture(scope="module")
async def stack(tmp_path_factory, shared_data):
    st, server, task = await make_stack(tmp_path_factory.mktemp("search-common"), shared_data,
                                        limit=40)
    lexical = st.svc.corpus.lexical
    # The rule of a corpus of 100,000 stories or more, here at a few hundred: a term in more
    # than 5 % of the stories keeps no postings.
    lexical.stop_min_docs = 0
    lexical._update_stop_words()
    yield st
    await stop_stack(st, server, task)


async def test_a_search_of_words_too_common_to_index_finds_the_stories_that_write_them(stack, http):
    lexical = stack.svc.corpus.lexical
    assert all(lexical.corpus_stop_word(w) for w in QUERY.split())  # else this proves nothing
    r = await http.get("/v1/search", params={"q": QUERY, "k": "5"})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    # At 100,000 synthetic stories "bergorne bergorul" (each in over 40 % of them) found none.
    assert items
    for item in items:
        text = f"{item['title']} {item.get('summary', '')}".lower()
        assert "rise" in text or "part" in text, item
