"""The app's cache of serialized related blocks, and when a cached block may still be served.

A block is kept with the versions it was ranked at (the corpus's, the sources' weights') and its
reach (recommender/reach.py). A lookup after the corpus changed asks whether any change since
could alter the block: a story that would join its candidate pool, or one of its pool removed
or edited. If none could, the block is served and its version moved on, so the next lookup
checks only what came after. An edit of the sources' weights re-ranks every block. The fast
path (api/fastpath.py) keeps its recorded answers by the same rule.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from recommender.reach import Reach, still_good

Versions = tuple[int, int]  # (corpus version, source weights version)


@dataclass(slots=True)
class CachedBlock:
    body: bytes
    etag: str
    version: Versions
    reach: Reach | None


Fresh = Callable[[Versions, Reach | None], Versions | None]


def freshness(now: Callable[[], Versions], corpus) -> Fresh:
    """`fresh(then, reach)`: the versions now if a block ranked at `then` may still be served,
    else None. `corpus` may be None (a process without an index serves no blocks to keep)."""

    def fresh(then: Versions, reach: Reach | None) -> Versions | None:
        current = now()
        if then[1] != current[1]:  # the sources' weights were edited: every block re-ranks
            return None
        if corpus is None:
            return current if then == current else None
        return current if still_good(reach, then[0], current[0], corpus.journal,
                                     corpus.lexical) else None

    return fresh


# What one cache may hold in answers' bytes besides its count of entries. A block is 2-60 kB
# (k=5 to k=50; the fragment's words add up to 100 kB more at k=50), so 2,048 entries could
# reach ~320 MB each, ~640 MB for the app's cache and the fast path's together, filled by
# anyone asking for many URLs or words. 64 MiB still holds 2,048 blocks of common sizes.
MAX_BYTES = 64 * 1024 * 1024


class FreshCache:
    """Entries by request key, least recently used out first, each kept while `fresh` says
    nothing since could change it, within `size` entries and `max_bytes` of answers and keys.
    An entry has `version` and `reach` (the app's blocks and the fast path's recorded
    answers)."""

    def __init__(self, fresh: Fresh, size: int = 2048, max_bytes: int = MAX_BYTES):
        self.fresh = fresh
        self.size = size
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._items: OrderedDict[tuple, tuple[Any, int]] = OrderedDict()  # key -> (entry, bytes)

    def get(self, key: tuple) -> Any:
        found = self._items.get(key)
        if found is None:
            return None
        hit = found[0]
        now = self.fresh(hit.version, hit.reach)
        if now is None:
            self._drop(key)
            return None
        hit.version = now  # checked up to now: the next lookup checks only later changes
        self._items.move_to_end(key)
        return hit

    def put(self, key: tuple, entry: Any, nbytes: int) -> None:
        """`nbytes`: the entry's answer; the key's own length is added (a URL of 2,000
        characters is part of what an entry holds)."""
        self._drop(key)
        nbytes += len(repr(key))
        self._items[key] = (entry, nbytes)
        self.nbytes += nbytes
        while self._items and (len(self._items) > self.size or self.nbytes > self.max_bytes):
            _, (_, dropped) = self._items.popitem(last=False)
            self.nbytes -= dropped

    def _drop(self, key: tuple) -> None:
        found = self._items.pop(key, None)
        if found is not None:
            self.nbytes -= found[1]

    def __len__(self) -> int:
        return len(self._items)


def weak_etag(identity: bytes) -> str:
    """A weak ETag of the bytes that decide it: the same in every worker process and for every
    recomputation that gives the same answer, so a revalidation gets its 304."""
    return 'W/"' + hashlib.sha256(identity).hexdigest()[:20] + '"'


class BlockCache(FreshCache):
    """The app's serialized blocks."""

    def put_block(self, key: tuple, body: bytes, version: Versions, reach: Reach | None,
                  identity: bytes | None = None) -> CachedBlock:
        """`identity`: the bytes that decide the ETag (`weak_etag`) when the body holds
        incidental parts (a block's took_ms)."""
        entry = CachedBlock(body, weak_etag(body if identity is None else identity), version, reach)
        self.put(key, entry, len(body))
        return entry
