"""The related-stories benchmark (benchmarks/api_bench.py) and its section of docs/benchmarks.md:
searches and blocks for a text measured beside the story's block, and older results still render.
"""

from __future__ import annotations

import copy

import pytest

from benchmarks import api_bench
from benchmarks.run import render_related
from recommender.search import normal_query

# A row as runs before searches were measured wrote it (docs/benchmarks.json, 2026-12).
OLD_ROW = {
    "data": "synthetic stories + clustered unit vectors", "n": 10000, "fill_s": 1.35,
    "exact_n100_p50_ms": 0.3, "exact_n100_p99_ms": 0.42, "exact_k5_p50_ms": 0.26,
    "corpus_start_s": 1.88, "recall_at_10": 0.9998, "rss_loaded_kib": 275032, "index_kind": "flat",
    "faiss_n100_p50_ms": 0.38, "faiss_n100_p99_ms": 0.53, "faiss_k5_p50_ms": 0.31,
    "faiss_k5_p99_ms": 0.46, "inprocess_p50_ms": 5.66, "inprocess_p99_ms": 8.36, "p50_ms": 8.07,
    "p99_ms": 12.7, "serial_requests": 297, "client": "aiohttp", "httpx_p50_ms": 9.67,
    "httpx_p99_ms": 15.1, "rps": 113.8, "concurrent_p50_ms": 63.7, "concurrent_p99_ms": 489.24,
    "concurrent_requests": 600, "concurrency": 8, "cached_rps": 802.8, "cached_p50_ms": 7.74,
    "errors": 0, "rss_after_load_kib": 276196, "loadavg": "1.88 1.48 0.74",
    "rss_end_kib": 276196, "rss_peak_kib": 276196,
}


def kind_figures(p50: float, p99: float, rps: float, errors: int) -> dict:
    return {"p50_ms": p50, "p99_ms": p99, "serial_requests": 297, "rps": rps,
            "concurrent_p50_ms": p50 * 7, "concurrent_p99_ms": p99 * 9,
            "concurrent_requests": 600, "errors": errors}


def new_row(n: int, embed: dict | None) -> dict:
    row = {**copy.deepcopy(OLD_ROW), "n": n,
           "search": kind_figures(6.25, 11.5, 140.5, 1), "text": kind_figures(7.75, 13.25, 120.5, 2)}
    if embed is not None:
        row["query_embed"] = embed
    return row


def table_row(lines: list[str], n: int, after: str) -> str:
    """The line of the table under the heading `after` that is about n stories."""
    start = lines.index(after)
    return next(x for x in lines[start:] if x.startswith(f"| {n:,} |"))


def test_searches_and_texts_render_beside_the_story_block_they_are_compared_with():
    embed = {"embedder": "minilm-int8", "runtime": "OpenVinoEmbedder", "recipe": "r",
             "queries": 200, "search_p50_ms": 3.5, "search_p99_ms": 4.5,
             "text_p50_ms": 9.5, "text_p99_ms": 12.5}
    rows = [new_row(10_000, embed), new_row(100_000, embed)]
    lines = render_related(rows)
    text = "\n".join(lines)
    for n in (10_000, 100_000):
        row = table_row(lines, n, "### Searches and blocks for a text")
        r = rows[0]
        assert f"| {r['p50_ms']} / {r['p99_ms']} |" in row  # the baseline, by id
        for kind in ("search", "text"):
            f = r[kind]
            assert f"**{f['p50_ms']} / {f['p99_ms']}**" in row
            assert f"{f['concurrent_p50_ms']} / {f['concurrent_p99_ms']}" in row
        assert f"{r['rps']} / {r['search']['rps']} / {r['text']['rps']}" in row
        assert f"| {r['search']['errors']} / {r['text']['errors']} |" in row
    assert "not in these figures" in text  # the hashing embedder's queries, said so
    assert (f"**{embed['search_p50_ms']} / {embed['search_p99_ms']} ms**" in text
            and f"**{embed['text_p50_ms']} / {embed['text_p99_ms']} ms**" in text)


@pytest.mark.parametrize("embed", [None, {"skipped": "BBC data not found at /x"}])
def test_a_run_without_the_model_figure_says_so(embed):
    text = "\n".join(render_related([new_row(10_000, embed)]))
    assert "not measured" in text and ("/x" in text or embed is None)


def test_results_from_before_searches_render_as_they_did():
    lines = render_related([OLD_ROW])
    assert "### Searches and blocks for a text" not in lines
    assert any(x.startswith("| 10,000 | flat |") for x in lines)
    # A mixed list (a carried-over row beside new ones) shows the new part for the new rows.
    mixed = render_related([OLD_ROW, new_row(100_000, None)])
    heading = mixed.index("### Searches and blocks for a text")
    assert not any(x.startswith("| 10,000 |") for x in mixed[heading:])
    assert any(x.startswith("| 100,000 |") for x in mixed[heading:])


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
    # The 2 x 100 in flight are over the limit on their own; a short serial phase (34 of
    # each, not 134) only shows it measures too, and halves the test's time.
    rows = api_bench.run((300,), latency_n=40, throughput_n=100, cached_n=20, concurrency=4,
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


def test_an_error_says_its_status_and_code_or_that_the_list_was_empty():
    from benchmarks.api_bench import error_reason

    assert error_reason(200, b'{"items": [{"id": 1}]}', "items") is None
    assert error_reason(200, b'{"items": []}', "items") == "empty"
    assert error_reason(429, b'{"error": {"code": "rate_limited", "message": "x"}}',
                        "items") == "HTTP 429 rate_limited"
    assert error_reason(502, b"Bad Gateway", "items") == "HTTP 502"
