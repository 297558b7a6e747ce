"""The related-stories benchmark (benchmarks/api_bench.py): searches and blocks for a text
measured beside the story's block.
"""

from __future__ import annotations

import pytest

from benchmarks import api_bench
from recommender.search import normal_query


def test_the_bench_turns_off_the_limits_of_its_one_client(tmp_path):
    api = api_bench._settings(tmp_path).api
    assert (api.related_text_per_minute, api.related_url_per_minute, api.events_per_minute) == (0, 0, 0)


def test_each_search_is_new_words_of_the_corpus():
    vocab = set(api_bench.zipf_vocabulary()[0])
    queries = api_bench.search_queries(500, seed=1)
    assert len({normal_query(q) for q in queries}) == 500  # one cache key each: none answered
    for q in queries:
        assert 2 <= len(q.split()) <= 4 and set(q.split()) <= vocab


def test_short_texts_are_not_the_corpus_stories():
    corpus = {d.title for d in api_bench.synthetic_drafts(200, seed=200)}
    texts = api_bench.short_texts(200, seed=3 * 200 + 1)
    assert len({t for t, _ in texts}) == 200 and not corpus & {t for t, _ in texts}
    assert all(6 <= len(t.split()) <= 12 and 20 <= len(x.split()) <= 40 for t, x in texts)


@pytest.mark.slow
def test_a_small_run_answers_every_search_and_text_through_the_api():
    """More searches and texts than the shipped limit of 120 a minute: none is turned away."""
    rows = api_bench.run((300,), latency_n=140, throughput_n=100, cached_n=20, concurrency=4,
                         baseline_queries=20, recall_queries=20, phase_budget_s=30,
                         embed_queries=0)
    (row,) = rows
    for kind in ("search", "text"):
        assert row[kind]["errors"] == 0, row[kind]
        assert row[kind]["serial_requests"] > 0 and row[kind]["concurrent_requests"] == 100
    assert row["errors"] == 0 and "query_embed" not in row
    assert row["search"]["serial_requests"] + row["text"]["serial_requests"] + 200 > 120


def test_the_model_figure_is_measured_as_the_api_embeds(shared_data):
    e = api_bench.query_embedding(10, name="hash:384")
    assert e["runtime"] == "HashingEmbedder" and e["queries"] == 10
    for kind in ("search", "text"):
        assert 0 < e[f"{kind}_p50_ms"] <= e[f"{kind}_p99_ms"]
