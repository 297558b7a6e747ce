"""The quality tests' once-per-session embedder (tests/embedcache.py): same vectors, each text
embedded once."""

from __future__ import annotations

import numpy as np

from recommender.embed import HashingEmbedder
from recommender.evaluate import seed_case_block
from tests.embedcache import OnceEmbedder


class CountingEmbedder(HashingEmbedder):
    """The hashing embedder, recording the texts of each call."""

    def __init__(self):
        super().__init__()
        self.calls: list[list[str]] = []

    def encode(self, texts, batch_size=32):
        self.calls.append(list(texts))
        return super().encode(texts, batch_size)


def test_texts_seen_before_are_not_embedded_again_and_get_the_same_vectors():
    inner = CountingEmbedder()
    once = OnceEmbedder(inner)
    first = once.encode(["storm hits coast", "rates rise", "storm hits coast"])
    again = once.encode(["rates rise", "band splits", "storm hits coast"])
    assert inner.calls == [["storm hits coast", "rates rise"], ["band splits"]]
    plain = HashingEmbedder().encode(["storm hits coast", "rates rise", "band splits"])
    assert np.array_equal(first, plain[[0, 1, 0]])
    assert np.array_equal(again, plain[[1, 2, 0]])
    assert once.encode([]).shape == (0, inner.dim)
    assert (once.recipe, once.dim) == (inner.recipe, inner.dim)


def test_the_seed_case_over_the_same_sections_embeds_them_once(shared_data):
    once = OnceEmbedder(HashingEmbedder())
    sections = ("entertainment", "sport", "tech")
    block = seed_case_block(shared_data / "bbc-news", once, words=120, categories=sections)
    corpus = once.embedded
    other = seed_case_block(shared_data / "bbc-news", once, words=120, categories=sections,
                            article=("Fed raises interest rates", "The central bank acted."))
    assert once.embedded == corpus + 1  # only the new article
    assert len(block) == len(other) == 5
