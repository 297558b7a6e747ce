"""External story id -> internal row number, without a Python dict entry per story.

Story ids are database sequence numbers: dense and growing. A numpy array indexed by id holds
the row (4 bytes a possible id, ~4 MiB per million) where a dict would spend ~100 bytes a
story; ids beyond `DENSE_LIMIT` (not expected from a sequence) fall back to a dict.
"""

from __future__ import annotations

import numpy as np

DENSE_LIMIT = 1 << 26  # 64M ids -> at most 256 MiB of table; beyond that the dict takes over


class IdMap:
    def __init__(self) -> None:
        self._rows = np.full(0, -1, dtype=np.int32)
        self._far: dict[int, int] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def get(self, doc_id: int) -> int | None:
        if 0 <= doc_id < len(self._rows):
            row = int(self._rows[doc_id])
            return row if row >= 0 else None
        return self._far.get(doc_id)

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Rows of many ids at once; -1 where unknown."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.full(len(ids), -1, dtype=np.int64)
        near = (ids >= 0) & (ids < len(self._rows))
        out[near] = self._rows[ids[near]]
        if self._far:
            for j in np.flatnonzero(~near):
                out[j] = self._far.get(int(ids[j]), -1)
        return out

    def set(self, doc_id: int, row: int) -> None:
        if doc_id < 0:
            raise ValueError("ids must be non-negative")
        if doc_id < DENSE_LIMIT:
            self._grow(doc_id + 1)
            if self._rows[doc_id] < 0:
                self._count += 1
            self._rows[doc_id] = row
        else:
            if doc_id not in self._far:
                self._count += 1
            self._far[doc_id] = row

    def set_many(self, ids: np.ndarray, rows: np.ndarray) -> None:
        """Bulk `set` for distinct ids below DENSE_LIMIT (the start-up path)."""
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return
        if ids.min() < 0 or ids.max() >= DENSE_LIMIT:
            for i, r in zip(ids.tolist(), np.asarray(rows).tolist(), strict=True):
                self.set(i, r)
            return
        self._grow(int(ids.max()) + 1)
        self._count += int(np.count_nonzero(self._rows[ids] < 0))
        self._rows[ids] = rows

    def pop(self, doc_id: int) -> int | None:
        row = self.get(doc_id)
        if row is None:
            return None
        if 0 <= doc_id < len(self._rows):
            self._rows[doc_id] = -1
        else:
            del self._far[doc_id]
        self._count -= 1
        return row

    def ids(self) -> np.ndarray:
        """Every known id, ascending."""
        near = np.flatnonzero(self._rows >= 0).astype(np.int64)
        if not self._far:
            return near
        return np.sort(np.concatenate([near, np.fromiter(self._far, dtype=np.int64)]))

    def _grow(self, size: int) -> None:
        if size <= len(self._rows):
            return
        grown = np.full(max(size, 2 * len(self._rows), 1024), -1, dtype=np.int32)
        grown[: len(self._rows)] = self._rows
        self._rows = grown
