"""An embedder that embeds each text once per test session, for the quality tests.

The quality tests read the same labelled corpora in several tests (the seed-case blocks index
BBC entertainment three times, sport and tech twice, each time cut to the same 120 words):
with the real model that was a minute of the suite per repeat on 2 cores. Not for the tests of
an embedder itself: those must run the model on every call (padding, batching, speed).
"""

from __future__ import annotations

import numpy as np


class OnceEmbedder:
    """Wraps an embedder: texts seen before get their first vector back, new ones are embedded
    together in one call of the wrapped embedder. Same `recipe` and `dim` (the vectors are
    the wrapped embedder's), so the product code takes it for the real one."""

    def __init__(self, embedder):
        self.embedder = embedder
        self._vectors: dict[str, np.ndarray] = {}
        self.embedded = 0  # texts the wrapped embedder was given, for the tests of this cache

    def __getattr__(self, name: str):
        # recipe, dim, width_step...: whatever the product reads of the embedder it was given.
        return getattr(self.embedder, name)

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        new = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if new:
            vectors = self.embedder.encode(new, batch_size)
            self._vectors.update(zip(new, vectors, strict=True))
            self.embedded += len(new)
        if not texts:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        return np.stack([self._vectors[t] for t in texts])
