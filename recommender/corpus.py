"""The searchable corpus one process holds: vector index, lexical index and card metadata.

It is a cache of the database and nothing more. At start it loads the saved FAISS file (if
its recipe matches), reconciles it with the vectors the database holds (repairing an index
left behind by a crash or a kill), then follows the `index_changes` log so that every replica
sees new and removed stories within a tick. Only the process that owns the files saves them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from aggregator.model import Story
from aggregator.store import Store
from recommender.lexical import LexicalIndex
from recommender.vindex import FaissIndex, manifest, reconcile

log = logging.getLogger("tidings.corpus")

LEXICAL_WORDS = 150  # body words the lexical index reads: the lead carries the event's names


@dataclass(frozen=True)
class StoryMeta:
    """What a card and the ranking need, kept in memory so a block costs no SQL."""

    id: int
    url: str
    title: str
    summary: str
    site: str
    source: str
    category: str
    author: str
    image_url: str
    published_at: datetime | None
    collected_at: datetime

    @property
    def when(self) -> datetime:
        return self.published_at or self.collected_at


def meta_of(s: Story) -> StoryMeta:
    return StoryMeta(s.id, s.url, s.title, s.summary[:400], s.site, s.source, s.category,
                     s.author, s.image_url, s.published_at, s.collected_at)


def lexical_text(s: Story) -> str:
    body = s.text or s.summary
    return " ".join(body.split()[:LEXICAL_WORDS])


def to_vectors(blobs: Iterable[bytes], dim: int) -> np.ndarray:
    rows = [np.frombuffer(b, dtype=np.float32) for b in blobs]
    if not rows:
        return np.zeros((0, dim), dtype=np.float32)
    return np.vstack(rows).astype(np.float32, copy=False)


class Corpus:
    def __init__(
        self,
        store: Store,
        *,
        recipe: str,
        dim: int,
        index_dir: Path,
        owner: bool,
        index_factory: Callable[[], FaissIndex],
        index_settings: dict | None = None,
        mmap: bool = False,
    ):
        self.store = store
        self.recipe = recipe
        self.dim = dim
        self.index_dir = index_dir
        self.owner = owner  # saves the index files; other replicas only read them
        self.index_factory = index_factory
        self.index_settings = index_settings or {}  # override what the saved file says (efSearch)
        self.mmap = mmap
        self.vindex = index_factory()
        self.lexical = LexicalIndex()
        self.meta: dict[int, StoryMeta] = {}
        self.watermark = 0
        self.dirty = False
        self.version = 0  # bumped on every change: block caches key on it
        self._lock = threading.Lock()
        self._follow_lock = asyncio.Lock()

    # ------------------------------------------------------------ start and repair

    async def start(self, progress: Callable[[int, int], None] | None = None) -> dict:
        """Load or rebuild the index, then repair it against the database."""
        # Replay the change log from where the saved file stopped (re-embedded stories keep
        # their id, so only the log says their vector changed); without a file, from now, as
        # the repair below loads every current vector. Read first: later changes get replayed.
        watermark = await self.store.change_seq()
        saved = manifest(self.index_dir)
        loaded = await asyncio.to_thread(FaissIndex.load, self.index_dir, mmap=self.mmap,
                                         recipe=self.recipe, **self.index_settings)
        if loaded is not None:
            self.vindex = loaded
            watermark = min(watermark, int(getattr(loaded, "watermark", 0) or 0))
        elif saved is not None:
            # A file that does not match its manifest (torn write, another recipe): the
            # database has every vector, so start empty and let the repair below refill it.
            log.warning("index.unusable dir=%s saved_recipe=%s: rebuilding from the database",
                        self.index_dir, saved.get("recipe"))
        db_ids = np.asarray(await self.store.vector_ids(self.recipe), dtype=np.int64)
        missing, extra = reconcile(self.vindex, db_ids)
        if len(extra):
            self.vindex.remove(extra)
        added = 0
        for i in range(0, len(missing), 2000):
            chunk = [int(x) for x in missing[i:i + 2000]]
            blobs = await self.store.load_vectors(chunk, self.recipe)
            ids = np.asarray(list(blobs), dtype=np.int64)
            if len(ids):
                self.vindex.add(ids, to_vectors(blobs.values(), self.dim))
                added += len(ids)
            if progress:
                progress(min(i + 2000, len(missing)), len(missing))
        await self._load_meta([int(x) for x in db_ids])
        self.watermark = watermark
        self.dirty = bool(added or len(extra))
        self.version += 1
        if self.dirty:
            log.info("index.repaired added=%d removed=%d", added, len(extra))
        await self.follow()
        if self.owner and self.dirty:
            await self.save()
        return {"indexed": len(self.vindex), "repaired_added": added, "repaired_removed": int(len(extra))}

    async def _load_meta(self, ids: list[int]) -> None:
        for i in range(0, len(ids), 1000):
            stories = await self.store.get_stories(ids[i:i + 1000])
            for s in stories.values():
                self._put_meta(s)

    def _put_meta(self, s: Story) -> None:
        self.meta[s.id] = meta_of(s)
        self.lexical.add(s.id, s.title, lexical_text(s))

    # ------------------------------------------------------------ following the change log

    async def follow(self) -> int:
        """Apply index changes logged since the watermark; returns how many were applied."""
        async with self._follow_lock:
            applied = 0
            while True:
                changes = await self.store.changes_since(self.watermark, limit=5000)
                if not changes:
                    break
                adds: dict[int, int] = {}
                removes: set[int] = set()
                for seq, sid, op in changes:
                    if op == "add":
                        adds[sid] = seq
                        removes.discard(sid)
                    else:
                        removes.add(sid)
                        adds.pop(sid, None)
                if removes:
                    self.remove(sorted(removes))
                if adds:
                    ids = sorted(adds)
                    blobs = await self.store.load_vectors(ids, self.recipe)
                    stories = await self.store.get_stories(list(blobs))
                    keep = [i for i in ids if i in blobs and i in stories and stories[i].duplicate_of is None]
                    self.add_stories([stories[i] for i in keep], to_vectors([blobs[i] for i in keep], self.dim))
                applied += len(changes)
                self.watermark = changes[-1][0]
            return applied

    def add_stories(self, stories: list[Story], vectors: np.ndarray) -> None:
        if not stories:
            return
        with self._lock:
            self.vindex.add(np.asarray([s.id for s in stories], dtype=np.int64), vectors)
            for s in stories:
                self._put_meta(s)
            self.dirty = True
            self.version += 1

    def remove(self, ids: list[int]) -> None:
        with self._lock:
            self.vindex.remove(np.asarray(ids, dtype=np.int64))
            for i in ids:
                self.meta.pop(i, None)
                self.lexical.remove(i)
            self.dirty = True
            self.version += 1

    async def save(self) -> None:
        if not self.owner:
            return
        self.index_dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            watermark = self.watermark
            self.dirty = False
        await asyncio.to_thread(self.vindex.save, self.index_dir, recipe=self.recipe,
                                watermark=watermark)

    # ------------------------------------------------------------ rebuild

    async def rebuild(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Rebuild the index from the database's vectors, without blocking queries.

        The vectors are read in batches, then handed to the index at once (one build of the
        right kind for the size); queries run on the old index until the new one is swapped in.
        """
        watermark = await self.store.change_seq()
        total = len(await self.store.vector_ids(self.recipe))
        ids: list[np.ndarray] = []
        vecs: list[np.ndarray] = []
        done = 0
        async for batch in self.store.iter_vectors(self.recipe):
            ids.append(np.asarray([r[0] for r in batch], dtype=np.int64))
            vecs.append(to_vectors((r[1] for r in batch), self.dim))
            done += len(batch)
            if progress:
                progress(done, total)
        all_ids = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
        all_vecs = np.vstack(vecs) if vecs else np.zeros((0, self.dim), dtype=np.float32)
        await asyncio.to_thread(self.vindex.rebuild, all_ids, all_vecs)
        with self._lock:
            self.watermark = min(self.watermark, watermark) if self.watermark else watermark
            self.version += 1
            self.dirty = True
        await self.follow()  # changes logged while we read are replayed (re-adding replaces)
        await self.save()
        return done

    def __len__(self) -> int:
        return len(self.vindex)
