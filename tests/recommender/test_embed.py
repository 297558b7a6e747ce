"""The torch embedder's loading, as an operator's log sees it."""

from __future__ import annotations

from transformers.utils import logging as hf_logging

from recommender.embed import SentenceTransformerEmbedder


def test_loading_the_model_prints_no_progress_bar(capfd):
    hf_logging.enable_progress_bar()  # as a fresh process starts
    vecs = SentenceTransformerEmbedder().encode(["Putin and Trump discuss a ceasefire"])
    err = capfd.readouterr().err
    assert vecs.shape == (1, 384)
    assert "Loading weights" not in err, err[-500:]
