"""Related-block quality with the real model: ECB+, UCI headlines and the seed case.

Measured with the embedder users get by default (`ov8`: OpenVINO int8 of the bundled model;
tests/conftest.py), through `ov8_once`, which embeds each text once per session (the seed
cases index the same BBC sections again). On ECB+'s 40-word variant against torch too: issue
6 lets the faster backend be the default only while its precision stays within 0.005 of
torch's. Slow by nature (embeds ~1,500 texts, ~1,000 of them whole documents): marked `model`.
"""

from __future__ import annotations

import pytest

from recommender.evaluate import eval_related_ecbplus, eval_related_uci, seed_case_block

pytestmark = [pytest.mark.model, pytest.mark.timeout(600)]

# Measured with the default RankParams (see the evaluation notes in recommender/evaluate.py):
# first40 precision@5 0.9525 / hard@5 0.0484 with the int8 embedder measured here (0.9533 /
# 0.0475 before the time bonus was held to strong candidates; 0.953 / 0.048 with torch; 0.950
# before the flatter lexical tf, 0.936 before close publication times counted, 0.930 before
# neighbourhood agreement); full text 0.9737 / 0.0303. These floors guard
# against regressions; the issue's goals (>= 0.95 | 0.98, hard <= 0.03) are checked separately.
PRECISION_FLOOR = 0.946
HARD_CEILING = 0.055
FULL_PRECISION_FLOOR = 0.970
FULL_HARD_CEILING = 0.033
# The reference points to beat: TF-IDF 0.901 and MiniLM 0.894 on the same protocol.
BEST_BASELINE = 0.901
# Issue 6: the default backend's precision may trail torch's by at most this on ECB+.
BACKEND_PRECISION_DROP = 0.005


@pytest.fixture(scope="module")
def ecb_first40(shared_data, ov8_once):
    return eval_related_ecbplus(shared_data / "ecbplus", ov8_once, "first40")


def test_ecbplus_first40_beats_baselines_and_never_returns_the_query(ecb_first40):
    result = ecb_first40
    assert result["n_queries"] == 707
    # The relevance floor may leave a block short where the rest is unrelated (1 of 707).
    assert result["self_returned"] == 0 and result["short_blocks"] <= 3
    assert result["precision_at_5"] > BEST_BASELINE + 0.015, result
    assert result["precision_at_5"] >= PRECISION_FLOOR, result
    assert result["hard_at_5"] <= HARD_CEILING, result


def test_the_default_embedder_holds_torchs_precision_on_ecbplus(shared_data, minilm, ecb_first40):
    torch = eval_related_ecbplus(shared_data / "ecbplus", minilm, "first40")
    assert ecb_first40["precision_at_5"] >= torch["precision_at_5"] - BACKEND_PRECISION_DROP, (
        ecb_first40, torch)


@pytest.mark.xfail(reason="issue goal not reached: first40 measures 0.953 / hard 0.048", strict=False)
def test_ecbplus_first40_meets_the_issue_goal(ecb_first40):
    assert ecb_first40["precision_at_5"] >= 0.95, ecb_first40
    assert ecb_first40["hard_at_5"] <= 0.03, ecb_first40


def test_ecbplus_full_text_holds_its_precision(shared_data, ov8_once):
    # Whole documents: the lexical side reads its 150-word lead of each (as the product's
    # index does) and the query's whole text, where term repetition matters most.
    result = eval_related_ecbplus(shared_data / "ecbplus", ov8_once, "full")
    assert result["self_returned"] == 0 and result["short_blocks"] <= 3
    assert result["precision_at_5"] >= FULL_PRECISION_FLOOR, result
    assert result["hard_at_5"] <= FULL_HARD_CEILING, result


def test_uci_headlines_rank_as_well_as_the_embeddings_alone(shared_data, ov8_once):
    # Held-out same-story data (nothing was tuned on it), headlines only: TF-IDF is weak
    # there (0.855), the vectors carry it (torch 0.899, int8 0.905; the engine alike).
    result = eval_related_uci(shared_data / "uci-news-aggregator-head", ov8_once)
    assert result["n_queries"] == 499
    # Headlines are held to the short articles' floor (0.2): 1 block of 499 is left short,
    # of a story of another story, precision unchanged.
    assert result["self_returned"] == 0 and result["short_blocks"] <= 2
    dense = result["baselines"]["dense"]["precision_at_5"]
    tfidf = result["baselines"]["tfidf"]["precision_at_5"]
    assert result["precision_at_5"] >= dense - 0.01, result
    assert result["precision_at_5"] >= tfidf + 0.03, result


def test_seed_case_block_has_no_entertainment_story(shared_data, ov8_once):
    # Bodies cut to 120 words to keep the run short; the full-text block is in the report.
    block = seed_case_block(shared_data / "bbc-news", ov8_once, k=5, words=120)
    sections = [section for section, _, _ in block]
    assert len(block) == 5
    assert "entertainment" not in sections, block
    assert all(ranked.reason for _, _, ranked in block)


def test_the_seed_article_over_unrelated_sections_gets_a_short_block_not_a_filled_one(
        shared_data, ov8_once):
    # The widget we replace shows a musician's death under a ceasefire call. With no politics
    # or business story to show, the block was filled anyway: Federer, a BBC film's nudity cut,
    # a blogger jailed (fused similarity 0.19-0.26). Under the floor they are left out.
    block = seed_case_block(shared_data / "bbc-news", ov8_once, k=5, words=120,
                            categories=("entertainment", "sport", "tech"))
    assert len(block) < 5, block
    assert not any("Federer" in title for _, title, _ in block), block


def test_a_feed_headline_over_nothing_like_it_gets_no_block_of_whatever_came_nearest(
        shared_data, ov8_once):
    # A feed's headline and one-line summary (under 40 words) had no floor at all: over BBC
    # entertainment, sport and tech (no central bank to show) its block was filled to 5,
    # down to "US duo in first spam conviction" at fused similarity 0.05 and a mobile network
    # story at 0.14.
    title = "Fed raises interest rates by a quarter point"
    summary = ("The US central bank lifted its benchmark rate to tame inflation and signalled "
               "further increases this year.")
    block = seed_case_block(shared_data / "bbc-news", ov8_once, k=5, words=120,
                            categories=("entertainment", "sport", "tech"),
                            article=(title, summary))
    assert len(block) < 5, block
    assert not any("spam conviction" in t for _, t, _ in block), block
