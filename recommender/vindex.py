"""Find the stored stories nearest a vector: an exact numpy index and a FAISS index kept beside the DB.

The index is a cache of what the database holds: it never reads the database or the embedder
itself. Callers feed it (id, vector) pairs as stories arrive, remove ids as retention drops
stories, save it with a watermark, and at start repair it with `reconcile` against the DB ids.

FAISS layout (see BASELINES.md section 3): exact `IndexFlatIP` while the corpus is small, HNSW
past `hnsw_threshold` (optionally with 8-bit scalar quantisation, `sq8`), and past
`sq8_threshold` an inverted file over 8-bit codes (IVF+SQ8, the vectors kept compactly where
full floats would not fit). Every kind is kept as append-only slot arrays with our own slot -> id
labels; a removed or replaced id becomes a tombstone (label -1) that searches skip through an
`IDSelectorBitmap`, because FAISS HNSW cannot `remove_ids`. The index is compacted by a rebuild
(off-lock, then swapped in) once tombstones pass 20 %.

Why IVF rather than HNSW at a million: on the benchmark's clustered vectors (stories of one
event are near-ties of each other) HNSW+SQ8 reached recall@10 0.78 at efSearch 64 and 0.91 at
256, its graph pruning leaving close neighbours unreachable; IVF+SQ8 (4,096 lists, nprobe 32)
reached 0.97 at a third of the time, builds ~2x faster, and takes 0.4 GiB instead of 0.6. Its
remaining misses are 8-bit near-ties, so the 8-bit kinds re-score their best candidates with
half-precision copies kept on disk (recommender/halfvectors.py): recall@10 0.988.

Memory per 1M stories at 384-d (`get` reconstructs from FAISS storage for Flat and HNSWFlat, and
reads the half-precision rows for the 8-bit kinds): Flat ~1,465 MiB, HNSW M=32 ~1,724 MiB, HNSW
M=32+SQ8 ~626 MiB, IVF+SQ8 ~375 MiB, plus ~25 MiB of labels and id lookup (the 8-bit kinds'
~730 MiB of half floats sit in the page cache, not in the process). A rebuild briefly needs the
live vectors copied out (+1,465 MiB) and the new index beside the old one.
A memory-mapped load (`FaissIndex.load(..., mmap=True)`) shares the file's pages between
worker processes; such a base is read-only, so later adds go to a small private exact delta.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from recommender.halfvectors import HalfVectors

INDEX_FILE = "index.faiss"
VECTORS_FILE = "index.f16"  # the 8-bit kinds' half-precision rows, slot by slot
MANIFEST_FILE = "index.json"
MANIFEST_FORMAT = 1
# Compaction threshold: beyond this share of dead slots a search wastes too much work on
# tombstones (and filtered HNSW search loses recall), so the index is rebuilt without them.
MAX_TOMBSTONE_SHARE = 0.20
# Training sample for the SQ8 quantiser: BASELINES.md used 100k; ranges converge long before.
SQ8_TRAIN_SAMPLE = 100_000
# IVF lists: ~4 sqrt(n) (FAISS's guidance is 4-16 sqrt(n)), 4,096 at a million; k-means trains
# on IVF_TRAIN_PER_LIST vectors a list (FAISS warns below 39). Measured at 1M on the benchmark's
# clustered vectors, nprobe 32: 40 a list -> recall@10 0.972 (0.988 re-scored), 20 a list ->
# 0.928 (0.941): the lists must follow the clusters, which a thin sample does not show.
IVF_TRAIN_PER_LIST = 40
# An IVF index is rebuilt once its corpus reaches this multiple of the size it was trained at:
# a list's length, so the time of a query, grows with the corpus, and lists trained on a
# quarter of the stories fit the rest less well.
IVF_REGROW = 4
# The 8-bit kinds fetch this many more candidates than asked and re-score them with the
# half-precision rows. At 1M, re-scoring the 8-bit top-20 already gave
# what the top-100 gave (recall@10 0.988 at nprobe 32): the misses are near-ties, not far away.
REFINE_EXTRA = 50

Kind = Literal["flat", "hnsw", "hnsw_sq8", "ivf_sq8"]
EIGHT_BIT: frozenset[str] = frozenset({"hnsw_sq8", "ivf_sq8"})


class VectorIndex(Protocol):
    """What the ranking engine and the feeds need from a vector index (unit rows, inner product)."""

    dim: int

    def __len__(self) -> int: ...
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...
    def remove(self, ids: np.ndarray) -> None: ...
    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]: ...
    def search_many(self, vectors: np.ndarray, k: int) -> list[list[tuple[int, float]]]: ...
    def get(self, ids: np.ndarray) -> np.ndarray: ...
    def ids(self) -> np.ndarray: ...


# --- input checks shared by both implementations -------------------------------------------


def _as_ids(ids: Any) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"ids must be integers, got {arr.dtype}")
    arr = arr.astype(np.int64, copy=False).reshape(-1)
    # -1 is FAISS's "no result" label and our tombstone marker.
    if arr.size and arr.min() < 0:
        raise ValueError("ids must be non-negative")
    return arr


def _as_matrix(vectors: Any, dim: int) -> np.ndarray:
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"vectors must have shape (n, {dim}), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("vectors must be finite")
    return np.ascontiguousarray(arr)


def _checked_pairs(ids: Any, vectors: Any, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate an add batch; when an id repeats, its last row wins (as sequential adds would)."""
    id_arr = _as_ids(ids)
    vec_arr = _as_matrix(vectors, dim)
    if len(id_arr) != len(vec_arr):
        raise ValueError(f"{len(id_arr)} ids for {len(vec_arr)} vectors")
    if len(np.unique(id_arr)) != len(id_arr):
        last = len(id_arr) - 1 - np.unique(id_arr[::-1], return_index=True)[1]
        keep = np.sort(last)
        id_arr, vec_arr = id_arr[keep], vec_arr[keep]
    return id_arr, vec_arr


def _top_k(scores: np.ndarray, labels: np.ndarray, k: int) -> list[tuple[int, float]]:
    """Best first; ties broken by id so both implementations order equal scores alike."""
    if k <= 0 or scores.size == 0:
        return []
    if scores.size > k:
        part = np.argpartition(-scores, k - 1)[:k]
        scores, labels = scores[part], labels[part]
    order = np.lexsort((labels, -scores))[:k]
    return [(int(labels[i]), float(scores[i])) for i in order]


def ids_digest(ids: np.ndarray) -> str:
    """sha256 of the sorted ids as little-endian int64: what the manifest says the file holds."""
    sorted_ids = np.sort(np.asarray(ids, dtype="<i8"))
    return hashlib.sha256(sorted_ids.tobytes()).hexdigest()


# --- the exact reference -------------------------------------------------------------------


class BruteForceIndex:
    """Exact inner-product search over a numpy matrix: the reference, and fine up to ~100k."""

    def __init__(self, dim: int):
        self.dim = int(dim)
        self._vectors = np.empty((0, self.dim), dtype=np.float32)
        self._labels = np.empty(0, dtype=np.int64)
        self._count = 0
        self._row_of: dict[int, int] = {}
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return self._count

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        id_arr, vec_arr = _checked_pairs(ids, vectors, self.dim)
        with self._lock:
            for key, vec in zip(id_arr.tolist(), vec_arr, strict=True):
                row = self._row_of.get(key)
                if row is None:
                    row = self._count
                    self._grow(row + 1)
                    self._row_of[key] = row
                    self._labels[row] = key
                    self._count += 1
                self._vectors[row] = vec

    def _grow(self, rows: int) -> None:
        if rows <= len(self._labels):
            return
        capacity = max(rows, 2 * len(self._labels), 64)
        vectors = np.empty((capacity, self.dim), dtype=np.float32)
        labels = np.full(capacity, -1, dtype=np.int64)
        vectors[: self._count] = self._vectors[: self._count]
        labels[: self._count] = self._labels[: self._count]
        self._vectors, self._labels = vectors, labels

    def remove(self, ids: np.ndarray) -> None:
        with self._lock:
            for key in _as_ids(ids).tolist():
                row = self._row_of.pop(key, None)
                if row is None:
                    continue
                last = self._count - 1
                if row != last:  # move the last row into the hole
                    moved = int(self._labels[last])
                    self._vectors[row] = self._vectors[last]
                    self._labels[row] = moved
                    self._row_of[moved] = row
                self._labels[last] = -1
                self._count = last

    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        query = _as_matrix(vector, self.dim)
        if len(query) != 1:
            raise ValueError("search takes one vector; use search_many")
        return self.search_many(query, k)[0]

    def search_many(self, vectors: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        queries = _as_matrix(vectors, self.dim)
        with self._lock:
            scores = queries @ self._vectors[: self._count].T
            labels = self._labels[: self._count].copy()
        return [_top_k(row, labels, k) for row in scores]

    def get(self, ids: np.ndarray) -> np.ndarray:
        id_arr = _as_ids(ids)
        with self._lock:
            rows = []
            for key in id_arr.tolist():
                if key not in self._row_of:
                    raise KeyError(key)
                rows.append(self._row_of[key])
            return self._vectors[np.asarray(rows, dtype=np.int64)].copy()

    def ids(self) -> np.ndarray:
        with self._lock:
            return np.sort(self._labels[: self._count])


# --- FAISS ------------------------------------------------------------------------------------


def _faiss() -> Any:
    # Imported lazily: `tidings --help` and the aggregator never pay for it (STYLE.md habit 6).
    import faiss

    return faiss


class _ReadWriteLock:
    """Many concurrent searches, one mutation at a time; waiting writers go first."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class _Segment:
    """One FAISS index over slots 0..n-1 with its slot -> id labels (-1 = tombstone)."""

    def __init__(self, index: Any, labels: np.ndarray, *, frozen: bool, owner: Any = None,
                 exact: HalfVectors | None = None):
        self.index = index
        self.labels = labels
        # Half-precision copies of an 8-bit index's vectors, slot by slot: the re-scoring.
        self.exact = exact
        self.dead = int(np.count_nonzero(labels < 0))
        # frozen: memory-mapped, read-only storage; FAISS aborts the process on a resize.
        self.frozen = frozen
        self._owner = owner  # keeps a wrapping IndexIDMap (and so `index`) alive
        self._selector: tuple[np.ndarray, Any] | None = None

    @property
    def live(self) -> int:
        return len(self.labels) - self.dead

    def append(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        assert not self.frozen
        if self.exact is not None:
            self.exact.append(vectors)
        self.index.add(vectors)
        self.labels = np.concatenate([self.labels, ids])
        self._selector = None

    def kill(self, slots: np.ndarray) -> None:
        """Tombstone live slots (distinct, as the lookup table hands them out)."""
        self.labels[slots] = -1
        self.dead += len(slots)
        self._selector = None

    def search(self, queries: np.ndarray, k: int, ef_search: int,
               nprobe: int = 32) -> tuple[np.ndarray, np.ndarray]:
        faiss = _faiss()
        k = min(k, self.live)
        fetch = k if self.exact is None else min(self.live, k + REFINE_EXTRA)
        if k <= 0:
            empty = np.empty((len(queries), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        selector = None
        if self.dead:
            # Filter inside the search rather than over-fetch: retention removes the oldest
            # stories, which cluster by topic, so a fixed over-fetch margin can come back short.
            cached = self._selector
            if cached is None:
                bitmap = np.packbits(self.labels >= 0, bitorder="little")
                cached = (bitmap, faiss.IDSelectorBitmap(len(self.labels), faiss.swig_ptr(bitmap)))
                self._selector = cached
            selector = cached[1]
        if hasattr(self.index, "hnsw"):
            params = faiss.SearchParametersHNSW(efSearch=max(ef_search, fetch))
        elif hasattr(self.index, "nprobe"):
            params = faiss.SearchParametersIVF(nprobe=nprobe)
        else:
            params = faiss.SearchParameters()
        if selector is not None:
            params.sel = selector
        scores, slots = self.index.search(queries, fetch, params=params)
        if self.exact is not None:
            scores, slots = self._rescore(queries, slots, k)
        labels = np.where(slots >= 0, self.labels[np.maximum(slots, 0)], -1)
        return scores, labels

    def _rescore(self, queries: np.ndarray, slots: np.ndarray,
                 k: int) -> tuple[np.ndarray, np.ndarray]:
        """The best k of each row's 8-bit candidates by their half-precision vectors."""
        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_slots = np.full((len(queries), k), -1, dtype=np.int64)
        for row, (query, found) in enumerate(zip(queries, slots, strict=True)):
            found = found[found >= 0]
            if not len(found):
                continue
            exact = self.exact.get(found) @ query
            best = np.lexsort((found, -exact))[:k]
            out_scores[row, :len(best)] = exact[best]
            out_slots[row, :len(best)] = found[best]
        return out_scores, out_slots

    def reconstruct(self, slots: np.ndarray) -> np.ndarray:
        if not len(slots):
            return np.empty((0, self.index.d), dtype=np.float32)
        if self.exact is not None:
            return self.exact.get(slots)
        return self.index.reconstruct_batch(np.ascontiguousarray(slots, dtype=np.int64))


class _State:
    """The segments an index searches: a base (maybe memory-mapped) and an optional exact delta."""

    def __init__(self, kind: Kind, base: _Segment, delta: _Segment | None = None,
                 trained_for: int | None = None):
        self.kind = kind
        self.base = base
        self.delta = delta
        # How many vectors the layout was built for (IVF lists are trained for that size).
        self.trained_for = len(base.labels) if trained_for is None else int(trained_for)
        self._table: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def segments(self) -> list[_Segment]:
        return [self.base] if self.delta is None else [self.base, self.delta]

    def __len__(self) -> int:
        return sum(seg.live for seg in self.segments)

    @property
    def slots(self) -> int:
        return sum(len(seg.labels) for seg in self.segments)

    @property
    def dead(self) -> int:
        return sum(seg.dead for seg in self.segments)

    def table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Live ids sorted, with their segment number and slot: ~17 bytes a story, no dict.

        Built once by sorting, then kept sorted by insert/delete on each mutation: O(n) copies
        (~3 ms at 1M) instead of an O(n log n) sort under the write lock every time.
        """
        table = self._table
        if table is None:
            ids, seg_nos, slots = [], [], []
            for seg_no, seg in enumerate(self.segments):
                live = np.flatnonzero(seg.labels >= 0)
                ids.append(seg.labels[live])
                seg_nos.append(np.full(len(live), seg_no, dtype=np.int8))
                slots.append(live.astype(np.int64))
            all_ids = np.concatenate(ids)
            order = np.argsort(all_ids, kind="stable")
            table = (all_ids[order], np.concatenate(seg_nos)[order], np.concatenate(slots)[order])
            self._table = table
        return table

    def find(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sorted_ids, seg_nos, slots = self.table()
        if not len(sorted_ids):
            none = np.zeros(len(ids), dtype=np.int64)
            return np.zeros(len(ids), dtype=bool), none, none
        pos = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
        found = sorted_ids[pos] == ids
        return found, seg_nos[pos], slots[pos]

    def remove(self, ids: np.ndarray) -> None:
        ids = np.unique(ids)
        found, seg_nos, slots = self.find(ids)
        if not found.any():
            return
        for seg_no, seg in enumerate(self.segments):
            hit = found & (seg_nos == seg_no)
            if hit.any():
                seg.kill(slots[hit])
        sorted_ids, table_segs, table_slots = self.table()
        drop = np.searchsorted(sorted_ids, ids[found])
        self._table = (np.delete(sorted_ids, drop), np.delete(table_segs, drop),
                       np.delete(table_slots, drop))

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add distinct ids; an id already present is replaced (its old slot tombstoned)."""
        self.remove(ids)
        if self.base.frozen:
            if self.delta is None:
                self.delta = _Segment(_faiss().IndexFlatIP(self.base.index.d), _EMPTY_IDS.copy(),
                                      frozen=False)
            target, seg_no = self.delta, 1
        else:
            target, seg_no = self.base, 0
        sorted_ids, table_segs, table_slots = self.table()  # before the append changes labels
        first_slot = len(target.labels)
        target.append(ids, vectors)
        order = np.argsort(ids)
        new_ids = ids[order]
        new_slots = first_slot + order.astype(np.int64)
        at = np.searchsorted(sorted_ids, new_ids)
        self._table = (np.insert(sorted_ids, at, new_ids),
                       np.insert(table_segs, at, np.full(len(ids), seg_no, dtype=np.int8)),
                       np.insert(table_slots, at, new_slots))

    def get(self, ids: np.ndarray) -> np.ndarray:
        found, seg_nos, slots = self.find(ids)
        if not found.all():
            raise KeyError(int(ids[np.argmin(found)]))
        out = np.empty((len(ids), self.base.index.d), dtype=np.float32)
        for seg_no, seg in enumerate(self.segments):
            rows = seg_nos == seg_no
            if rows.any():
                out[rows] = seg.reconstruct(slots[rows])
        return out

    def search(self, queries: np.ndarray, k: int, ef_search: int,
               nprobe: int) -> list[list[tuple[int, float]]]:
        if k <= 0:
            return [[] for _ in queries]
        parts = [seg.search(queries, k, ef_search, nprobe) for seg in self.segments if seg.live]
        if not parts:
            return [[] for _ in queries]
        scores = np.concatenate([p[0] for p in parts], axis=1)
        labels = np.concatenate([p[1] for p in parts], axis=1)
        out = []
        for row_scores, row_labels in zip(scores, labels, strict=True):
            keep = row_labels >= 0  # belt and braces: a tombstone is never returned
            out.append(_top_k(row_scores[keep], row_labels[keep], k))
        return out


_EMPTY_IDS = np.empty(0, dtype=np.int64)


class FaissIndex:
    """The production index: exact while small, HNSW past `hnsw_threshold`, thread-safe.

    Searches run concurrently (a readers-writer lock); add/remove take the write lock briefly.
    Rebuilds (the Flat -> HNSW switch, tombstone compaction, `rebuild`) build the new index
    without the lock, replay the mutations that arrived meanwhile, and swap it in.
    `rebuild_mode="background"` runs automatic rebuilds on a thread; "inline" runs them in the
    mutating call (deterministic, for tests and batch jobs).
    """

    def __init__(
        self,
        dim: int,
        *,
        hnsw_threshold: int = 50_000,
        hnsw_m: int = 32,
        ef_search: int = 64,
        ef_construction: int = 40,
        sq8: bool = False,
        sq8_threshold: int = 500_000,
        nprobe: int = 32,
        batch_threads: int = 2,
        rebuild_mode: Literal["background", "inline"] = "background",
        scratch_dir: Path | None = None,
    ):
        if rebuild_mode not in ("background", "inline"):
            raise ValueError(f"rebuild_mode must be 'background' or 'inline', not {rebuild_mode!r}")
        self.dim = int(dim)
        self.hnsw_threshold = int(hnsw_threshold)
        self.hnsw_m = int(hnsw_m)
        self.ef_search = int(ef_search)
        self.ef_construction = int(ef_construction)
        self.sq8 = bool(sq8)
        # Past this size the index is IVF over 8-bit codes (see the module notes): at 1M x
        # 384-d full floats take ~1.7 GiB with an HNSW graph, IVF+SQ8 ~0.4 GiB.
        self.sq8_threshold = int(sq8_threshold)
        self.nprobe = int(nprobe)  # IVF lists searched a query: recall against time
        # Where the 8-bit kinds keep their half-precision rows (unlinked files): the data dir.
        self.scratch_dir = Path(scratch_dir) if scratch_dir is not None else None
        self.batch_threads = int(batch_threads)
        self.rebuild_mode = rebuild_mode
        self.watermark: int | None = None  # set by `load` from the manifest
        self._lock = _ReadWriteLock()
        self._rebuild_mutex = threading.Lock()
        # One journal per pending rebuild, opened when the rebuild is asked for: mutations
        # that arrive until its swap are replayed onto the new index.
        self._journals: list[list[tuple[str, np.ndarray, np.ndarray | None]]] = []
        self._threads: list[threading.Thread] = []  # rebuilds running in the background
        self._state = self._build(_EMPTY_IDS, np.empty((0, self.dim), dtype=np.float32))

    # -- protocol --

    def __len__(self) -> int:
        return len(self._state)

    @property
    def kind(self) -> Kind:
        return self._state.kind

    @property
    def tombstones(self) -> int:
        return self._state.dead

    @property
    def mmapped(self) -> bool:
        return self._state.base.frozen

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        id_arr, vec_arr = _checked_pairs(ids, vectors, self.dim)
        if not len(id_arr):
            return
        with self._lock.write():
            _faiss().omp_set_num_threads(self.batch_threads)
            self._state.add(id_arr, vec_arr)
            for journal in self._journals:
                journal.append(("add", id_arr, vec_arr))
        self._maybe_rebuild()

    def remove(self, ids: np.ndarray) -> None:
        id_arr = _as_ids(ids)
        if not len(id_arr):
            return
        with self._lock.write():
            self._state.remove(id_arr)
            for journal in self._journals:
                journal.append(("remove", id_arr, None))
        self._maybe_rebuild()

    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        query = _as_matrix(vector, self.dim)
        if len(query) != 1:
            raise ValueError("search takes one vector; use search_many")
        # One thread per single query: Flat is 2x slower with 2 (BASELINES.md section 3).
        _faiss().omp_set_num_threads(1)
        with self._lock.read():
            return self._state.search(query, int(k), self.ef_search, self.nprobe)[0]

    def search_many(self, vectors: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        queries = _as_matrix(vectors, self.dim)
        _faiss().omp_set_num_threads(self.batch_threads)
        with self._lock.read():
            return self._state.search(queries, int(k), self.ef_search, self.nprobe)

    def get(self, ids: np.ndarray) -> np.ndarray:
        id_arr = _as_ids(ids)
        with self._lock.read():
            return self._state.get(id_arr)

    def ids(self) -> np.ndarray:
        with self._lock.read():
            return self._state.table()[0].copy()

    # -- building and rebuilding --

    def kind_for(self, count: int) -> Kind:
        """The layout this index takes for `count` vectors."""
        if count > self.sq8_threshold:
            return "ivf_sq8"
        if count > self.hnsw_threshold:
            return "hnsw_sq8" if self.sq8 else "hnsw"
        return "flat"

    def _build(self, ids: np.ndarray, vectors: np.ndarray | HalfVectors) -> _State:
        """A new state holding (ids, vectors). `vectors` may be a filled `HalfVectors` (see
        `rebuild_streamed`): an 8-bit kind then trains on and is filled from its rows a chunk at
        a time, and keeps it as its re-scoring copy, so no full float matrix is ever held."""
        faiss = _faiss()
        kind = self.kind_for(len(ids))
        streamed = vectors if isinstance(vectors, HalfVectors) else None
        if streamed is not None and kind not in EIGHT_BIT:
            vectors = streamed.read_range(0, len(streamed))  # small enough to hold
        faiss.omp_set_num_threads(self.batch_threads)
        if kind == "flat":
            index = faiss.IndexFlatIP(self.dim)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        elif kind == "hnsw_sq8":
            index = faiss.IndexHNSWSQ(self.dim, faiss.ScalarQuantizer.QT_8bit, self.hnsw_m,
                                      faiss.METRIC_INNER_PRODUCT)
            index.train(_sample(vectors, SQ8_TRAIN_SAMPLE))
        else:
            lists = ivf_lists(len(vectors))
            coarse = faiss.IndexFlatIP(self.dim)
            index = faiss.IndexIVFScalarQuantizer(coarse, self.dim, lists,
                                                  faiss.ScalarQuantizer.QT_8bit,
                                                  faiss.METRIC_INNER_PRODUCT)
            index.own_fields = True
            coarse.this.disown()  # the IVF index frees its quantiser
            index.train(_sample(vectors, IVF_TRAIN_PER_LIST * lists))
        if kind in ("hnsw", "hnsw_sq8"):
            index.hnsw.efConstruction = self.ef_construction
            index.hnsw.efSearch = self.ef_search
        if streamed is not None and kind in EIGHT_BIT:
            for i in range(0, len(ids), _BUILD_CHUNK):
                index.add(streamed.read_range(i, min(i + _BUILD_CHUNK, len(ids))))
            return _State(kind, _Segment(index, ids.copy(), frozen=False, exact=streamed))
        exact = HalfVectors(self.dim, self.scratch_dir) if kind in EIGHT_BIT else None
        segment = _Segment(index, _EMPTY_IDS.copy(), frozen=False, exact=exact)
        for i in range(0, len(ids), _BUILD_CHUNK):  # chunks: the half floats go out as they come
            segment.append(ids[i:i + _BUILD_CHUNK], vectors[i:i + _BUILD_CHUNK])
        return _State(kind, segment)

    def rebuild(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the contents with (ids, vectors), e.g. everything the DB holds.

        Queries keep running on the old index while the new one builds; adds and removes that
        arrive meanwhile are applied to both, so none is lost by the swap.
        """
        id_arr, vec_arr = _checked_pairs(ids, vectors, self.dim)
        self._rebuild(lambda: (id_arr, vec_arr), self._open_journal())

    def rebuild_streamed(self, ids: np.ndarray, vectors: HalfVectors) -> None:
        """`rebuild` from vectors already written to a `HalfVectors` (row i for ids[i]), which
        the index then owns: how a corpus too large to hold as floats is loaded (the 8-bit
        kinds are built from it without a float copy; others read it back, at fp16 precision)."""
        id_arr = _as_ids(ids)
        if len(id_arr) != len(vectors) or vectors.dim != self.dim:
            raise ValueError(f"{len(id_arr)} ids for {len(vectors)} rows of {vectors.dim} values")
        if len(np.unique(id_arr)) != len(id_arr):
            raise ValueError("ids must be distinct")
        self._rebuild(lambda: (id_arr, vectors), self._open_journal())

    def rebuild_in_background(self, ids: np.ndarray, vectors: np.ndarray) -> threading.Thread:
        """`rebuild` on a thread; mutations made after this call returns are kept."""
        id_arr, vec_arr = _checked_pairs(ids, vectors, self.dim)
        journal = self._open_journal()
        thread = threading.Thread(target=self._rebuild, args=(lambda: (id_arr, vec_arr), journal),
                                  name="vindex-rebuild", daemon=True)
        self._start(thread)
        return thread

    def _start(self, thread: threading.Thread) -> None:
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def compact(self) -> None:
        """Rebuild from the live vectors: drops tombstones, picks the kind for the size, and
        turns a memory-mapped base plus delta into one private index."""
        self._rebuild(self._live_snapshot, self._open_journal())

    def wait_for_rebuild(self, timeout_s: float | None = None) -> bool:
        """Join the background rebuilds; True when none is running any more."""
        for thread in list(self._threads):
            thread.join(timeout_s)
        return not any(t.is_alive() for t in self._threads)

    def _live_snapshot(self) -> tuple[np.ndarray, np.ndarray | HalfVectors]:
        with self._lock.read():
            ids = self._state.table()[0].copy()
            if self.kind_for(len(ids)) not in EIGHT_BIT:
                return ids, self._state.get(ids)
            # An 8-bit rebuild (a million stories compacting) copies the live rows to a new
            # half-float file a chunk at a time instead of into one float matrix (1.5 GiB).
            rows = HalfVectors(self.dim, self.scratch_dir)
            for i in range(0, len(ids), _BUILD_CHUNK):
                rows.append(self._state.get(ids[i:i + _BUILD_CHUNK]))
            return ids, rows

    def _open_journal(self) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
        journal: list[tuple[str, np.ndarray, np.ndarray | None]] = []
        with self._lock.write():
            self._journals.append(journal)
        return journal

    def _rebuild(self, source: Callable[[], tuple[np.ndarray, np.ndarray]],
                 journal: list[tuple[str, np.ndarray, np.ndarray | None]]) -> None:
        try:
            with self._rebuild_mutex:  # one build at a time: each holds a full copy
                # The journal opens before the source is read, so a mutation may be in both;
                # replaying it is harmless because add and remove are idempotent, order kept.
                ids, vectors = source()
                state = self._build(ids, vectors)
                with self._lock.write():
                    _faiss().omp_set_num_threads(self.batch_threads)
                    for op, op_ids, op_vectors in journal:
                        if op == "add":
                            state.add(op_ids, op_vectors)
                        else:
                            state.remove(op_ids)
                    self._state = state
        finally:
            with self._lock.write():  # by identity: journals with equal contents are distinct
                self._journals = [j for j in self._journals if j is not journal]

    def needs_rebuild(self) -> bool:
        state = self._state
        if _RANK[self.kind_for(len(state))] > _RANK[state.kind]:
            return True  # grown past a threshold (a shrinking corpus keeps its kind)
        if state.kind == "ivf_sq8" and len(state) >= IVF_REGROW * state.trained_for:
            return True  # lists trained for a corpus a quarter the size: long and off-centre
        return state.dead > MAX_TOMBSTONE_SHARE * max(state.slots, 1)

    def _maybe_rebuild(self) -> None:
        if not self.needs_rebuild() or self._rebuild_mutex.locked():
            return
        if self.rebuild_mode == "inline":
            self.compact()
            return
        if not any(t.is_alive() and t.name == "vindex-compact" for t in self._threads):
            self._start(threading.Thread(target=self._background_compact,
                                         name="vindex-compact", daemon=True))

    def _background_compact(self) -> None:
        if self.needs_rebuild():
            self.compact()

    # -- persistence --

    def _params(self) -> dict[str, Any]:
        return {"hnsw_threshold": self.hnsw_threshold, "hnsw_m": self.hnsw_m,
                "ef_search": self.ef_search, "ef_construction": self.ef_construction,
                "sq8": self.sq8, "sq8_threshold": self.sq8_threshold, "nprobe": self.nprobe}

    def save(self, directory: Path, *, watermark: int = 0, recipe: str = "") -> dict[str, Any]:
        """Write `index.faiss` then `index.json` atomically; return the manifest.

        `watermark` is the caller's opaque position in the DB (e.g. the highest change sequence
        included); `recipe` names the embedding recipe, so a changed model is never mixed in.
        """
        faiss = _faiss()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self._state.delta is not None:
            self.compact()  # one file holds one segment
        sweep_temps(directory)
        tag = temp_tag()
        tmp_index = directory / f".{INDEX_FILE}.{tag}.tmp"
        tmp_vectors = directory / f".{VECTORS_FILE}.{tag}.tmp"
        tmp_manifest = directory / f".{MANIFEST_FILE}.{tag}.tmp"
        try:
            with self._lock.read():
                state = self._state
                base = state.base
                # The labels travel inside the file as an IndexIDMap around the index
                # (its constructor refuses a non-empty index, hence the swap of `.index`).
                wrapper = faiss.IndexIDMap(faiss.IndexFlatIP(self.dim))
                wrapper.index = base.index
                wrapper.own_fields = False
                faiss.copy_array_to_vector(base.labels, wrapper.id_map)
                wrapper.ntotal = base.index.ntotal
                try:
                    faiss.write_index(wrapper, str(tmp_index))
                except RuntimeError as e:  # FAISS's own error for a failed write (disk full)
                    raise OSError(f"could not write {INDEX_FILE} in {directory}: "
                                  f"{faiss_write_reason(e)}") from e
                vectors = None
                if base.exact is not None:
                    vectors = base.exact.save(tmp_vectors)
                live_ids = state.table()[0]
                manifest = {
                    "format": MANIFEST_FORMAT,
                    "recipe": recipe,
                    "dim": self.dim,
                    "kind": state.kind,
                    "count": int(len(live_ids)),
                    "slots": int(len(base.labels)),
                    "ids_digest": ids_digest(live_ids),
                    "watermark": int(watermark),
                    "params": self._params(),
                    "saved_at": datetime.now(UTC).isoformat(),
                    "trained_for": int(state.trained_for),
                }
                if vectors is not None:
                    manifest["vectors_bytes"], manifest["vectors_sha256"] = vectors
            manifest["file_bytes"], manifest["file_sha256"] = fsync_and_hash(tmp_index)
            tmp_manifest.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            fsync_and_hash(tmp_manifest)
            # Index first, manifest last: a crash between the two leaves a manifest that no
            # longer matches the file, which `load` detects (and the caller rebuilds).
            if vectors is not None:
                os.replace(tmp_vectors, directory / VECTORS_FILE)
            os.replace(tmp_index, directory / INDEX_FILE)
            os.replace(tmp_manifest, directory / MANIFEST_FILE)
            fsync_dir(directory)
        finally:
            for tmp in (tmp_index, tmp_vectors, tmp_manifest):
                tmp.unlink(missing_ok=True)
        return manifest

    @classmethod
    def load(
        cls,
        directory: Path,
        *,
        mmap: bool = False,
        recipe: str | None = None,
        verify_checksum: bool = True,
        **settings: Any,
    ) -> FaissIndex | None:
        """The saved index, or None when missing, unreadable, or not what its manifest says.

        `mmap=True` maps the file read-only so worker processes share its pages (faiss
        IO_FLAG_MMAP_IFC: plain IO_FLAG_MMAP copies Flat/HNSW storage into private memory in
        faiss 1.15). `recipe`, when given, must equal the saved one. `settings` override the
        saved constructor parameters (e.g. ef_search). The checksum costs ~1 s per GiB; keep it:
        FAISS aborts the whole process on some corrupt mapped files instead of raising.
        """
        unknown = set(settings) - _SETTINGS
        if unknown:
            raise TypeError(f"unknown FaissIndex settings: {sorted(unknown)}")
        directory = Path(directory)
        for _ in range(LOAD_ATTEMPTS):
            saved = manifest(directory)
            index = cls._load_saved(directory, saved, mmap, recipe, verify_checksum, settings)
            if index is not None or manifest(directory) == saved:
                return index
            # Another process saved while these files were read (the indexer, as `serve
            # --workers` starts): the manifest no longer matches the file, and a worker that
            # gave up here rebuilt a private copy from the database instead of mapping the
            # shared file. The new files are complete: read them.
        return None

    @classmethod
    def _load_saved(cls, directory: Path, saved: dict[str, Any] | None, mmap: bool,
                    recipe: str | None, verify_checksum: bool,
                    settings: dict[str, Any]) -> FaissIndex | None:
        path = directory / INDEX_FILE
        if saved is None or not path.is_file():
            return None
        try:
            if recipe is not None and saved["recipe"] != recipe:
                return None
            if path.stat().st_size != saved["file_bytes"]:
                return None
            if verify_checksum and _sha256_file(path) != saved["file_sha256"]:
                return None
            params = {**saved["params"], **settings}
            index = cls(int(saved["dim"]), **params)
            faiss = _faiss()
            flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY if mmap else 0
            wrapper = faiss.read_index(str(path), flags)
            if not isinstance(wrapper, faiss.IndexIDMap):
                return None
            inner = faiss.downcast_index(wrapper.index)
            labels = faiss.vector_to_array(wrapper.id_map).astype(np.int64)
            expected = {"flat": faiss.IndexFlatIP, "hnsw": faiss.IndexHNSWFlat,
                        "hnsw_sq8": faiss.IndexHNSWSQ,
                        "ivf_sq8": faiss.IndexIVFScalarQuantizer}[saved["kind"]]
            if type(inner) is not expected or inner.d != index.dim or len(labels) != inner.ntotal:
                return None
            exact = None
            if saved["kind"] in EIGHT_BIT:
                rows_path = directory / VECTORS_FILE
                if rows_path.stat().st_size != saved["vectors_bytes"]:
                    return None
                if verify_checksum and _sha256_file(rows_path) != saved["vectors_sha256"]:
                    return None
                exact = HalfVectors.load(rows_path, index.dim, len(labels), read_only=mmap,
                                         scratch_dir=index.scratch_dir)
            state = _State(saved["kind"], _Segment(inner, labels, frozen=mmap, owner=wrapper,
                                                   exact=exact),
                           trained_for=saved.get("trained_for", len(labels)))
            live_ids = state.table()[0]
            if len(live_ids) != saved["count"] or ids_digest(live_ids) != saved["ids_digest"]:
                return None
            if len(np.unique(live_ids)) != len(live_ids):
                return None
            watermark = int(saved["watermark"])  # inside: a null or text one is a bad file too
        except (KeyError, TypeError, ValueError, RuntimeError, OSError):
            return None
        index._state = state
        index.watermark = watermark
        return index


# Reads of the saved files a load tries when a save replaces them meanwhile.
LOAD_ATTEMPTS = 3
_SETTINGS = frozenset({"hnsw_threshold", "hnsw_m", "ef_search", "ef_construction", "sq8",
                       "sq8_threshold", "nprobe", "batch_threads", "rebuild_mode", "scratch_dir"})
_RANK = {"flat": 0, "hnsw": 1, "hnsw_sq8": 2, "ivf_sq8": 3}
_BUILD_CHUNK = 50_000


def ivf_lists(count: int) -> int:
    """Inverted lists for `count` vectors: ~4 sqrt(n), 4,096 at a million, each trained on at
    least IVF_TRAIN_PER_LIST vectors."""
    power_of_two = 2 ** round(np.log2(max(4 * np.sqrt(max(count, 1)), 1)))
    return int(max(1, min(power_of_two, count // IVF_TRAIN_PER_LIST)))


def _sample(vectors: np.ndarray | HalfVectors, size: int) -> np.ndarray:
    """A fixed random sample of the rows to train on (all of them when there are few)."""
    if len(vectors) <= size:
        return vectors if isinstance(vectors, np.ndarray) else vectors.read_range(0, len(vectors))
    pick = np.sort(np.random.default_rng(0).choice(len(vectors), size, replace=False))
    return vectors[pick] if isinstance(vectors, np.ndarray) else vectors.get(pick)


def faiss_write_reason(e: RuntimeError) -> str:
    """The system's words from FAISS's write error ("... write error in PATH: 31 != 64
    (No space left on device)"), not its source location and assertion."""
    found = re.findall(r"\(([^()]+)\)\s*$", str(e))
    return found[-1] if found else "write failed"


def manifest(directory: Path) -> dict[str, Any] | None:
    """The saved manifest, or None when missing or unreadable."""
    try:
        data = json.loads((Path(directory) / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        return None
    return data


def reconcile(index: VectorIndex, db_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids the DB has that the index lacks, ids the index has that the DB no longer has).

    The caller embeds or fetches vectors for the first and removes the second: this is how an
    index that is stale, or was killed mid-write, is repaired at start.
    """
    have = index.ids()
    want = np.unique(_as_ids(db_ids))
    return np.setdiff1d(want, have, assume_unique=True), np.setdiff1d(have, want, assume_unique=True)


def fsync_and_hash(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
        os.fsync(f.fileno())
    return size, digest.hexdigest()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# A save's temporary files: `.<final name>.<pid>-<8 hex>.tmp` (`temp_tag`).
_TEMP_NAME = re.compile(r"\.[^/]+\.(\d+)-[0-9a-f]{8}\.tmp")


def temp_tag() -> str:
    """The tag of one save's temporary files: its process, so a later save can tell them
    from those of a save still running elsewhere."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def sweep_temps(directory: Path, name: re.Pattern[str] = _TEMP_NAME) -> list[Path]:
    """Remove the temporary files that saves of processes no longer alive left in `directory`
    (a kill mid-save: at a million stories a FAISS file of 1.5 GB each time); return them.
    `name` matches a temporary file's whole name, its first group the writer's pid.

    A live process's files stay, so a save running in another process is never broken; a
    reused pid only delays the sweep. Only within one pid namespace: a process whose pids
    this one cannot see looks dead, so savers of one folder must also take turns (the
    corpus's `take_save_lock`).
    """
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for entry in names:
        match = name.fullmatch(entry)
        if match is None or process_alive(int(match[1])):
            continue
        path = Path(directory) / entry
        try:
            path.unlink()
        except OSError:
            continue
        removed.append(path)
    return removed


def process_alive(pid: int) -> bool:
    """Whether process `pid` runs on this machine (ours, or one we may not signal)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process, or a number no pid can be: leave it
    return True


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse a directory fsync; the replace itself is still atomic
    finally:
        os.close(fd)
