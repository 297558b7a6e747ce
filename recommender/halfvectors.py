"""Every vector of an 8-bit index again, in half precision, on disk and out of the process.

HNSW+SQ8 keeps a million 384-d vectors in ~0.6 GiB, but its 8-bit distances mis-order close
neighbours (recall@10 ~0.8 at 1M on clustered vectors, docs/benchmarks.md). Re-scoring its
best few hundred with better vectors restores the order. Holding those vectors in memory would
cost another 0.7 GiB (fp16) of the 1.5 GiB the API may use, so they live in a file, one row per
slot, read back with one `pread` per row: a block reads ~200 rows (~0.3 ms), and the rows sit in
the page cache (shared between processes, evictable) rather than in the process's resident set.
fp16 keeps cosines to ~1e-3, far finer than SQ8's ~1e-2 (measured in the benchmark's notes).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

_COPY_CHUNK = 1 << 24


class HalfVectors:
    """Append-only fp16 rows by slot in a private unlinked file (or a saved file, read-only)."""

    def __init__(self, dim: int, scratch_dir: Path | None = None, *, _file=None, rows: int = 0,
                 read_only: bool = False):
        self.dim = int(dim)
        self.row_bytes = 2 * self.dim
        if _file is None:
            try:
                _file = tempfile.TemporaryFile(dir=scratch_dir, prefix="tidings-vectors-")
            except OSError:  # a read-only or missing data dir: the system's temp dir will do
                _file = tempfile.TemporaryFile(prefix="tidings-vectors-")
        self._file = _file
        self._fd = _file.fileno()
        self.rows = int(rows)
        self.read_only = read_only

    def __len__(self) -> int:
        return self.rows

    def close(self) -> None:
        self._file.close()

    def append(self, vectors: np.ndarray) -> None:
        if self.read_only:
            raise ValueError("these vectors are read-only (a memory-mapped index)")
        data = np.ascontiguousarray(vectors, dtype=np.float16)
        if data.ndim != 2 or data.shape[1] != self.dim:
            raise ValueError(f"expected rows of {self.dim} values, got shape {data.shape}")
        os.pwrite(self._fd, data.tobytes(), self.rows * self.row_bytes)
        self.rows += len(data)

    def get(self, slots: np.ndarray) -> np.ndarray:
        """float32 rows for `slots` (each < len(self))."""
        out = np.empty((len(slots), self.dim), dtype=np.float16)
        size, fd = self.row_bytes, self._fd
        view = memoryview(out).cast("B")
        for j, slot in enumerate(np.asarray(slots, dtype=np.int64).tolist()):
            if not 0 <= slot < self.rows:
                raise IndexError(f"slot {slot} outside 0..{self.rows - 1}")
            if os.preadv(fd, [view[j * size:(j + 1) * size]], slot * size) != size:
                raise OSError(f"short read of vector slot {slot}")
        return out.astype(np.float32)

    def read_range(self, start: int, stop: int) -> np.ndarray:
        """float32 rows start..stop-1 in one read (building an index from them)."""
        if not 0 <= start <= stop <= self.rows:
            raise IndexError(f"rows {start}..{stop} outside 0..{self.rows}")
        raw = os.pread(self._fd, (stop - start) * self.row_bytes, start * self.row_bytes)
        if len(raw) != (stop - start) * self.row_bytes:
            raise OSError("short read of vector rows")
        return np.frombuffer(raw, dtype=np.float16).reshape(stop - start, self.dim).astype(np.float32)

    def save(self, path: Path) -> tuple[int, str]:
        """Copy every row to `path` (fsynced); returns its size and sha256."""
        digest = hashlib.sha256()
        total = self.rows * self.row_bytes
        with open(path, "wb") as out:
            offset = 0
            while offset < total:
                chunk = os.pread(self._fd, min(_COPY_CHUNK, total - offset), offset)
                if not chunk:
                    raise OSError("vector file shorter than its row count")
                out.write(chunk)
                digest.update(chunk)
                offset += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        return total, digest.hexdigest()

    @classmethod
    def load(cls, path: Path, dim: int, rows: int, *, read_only: bool,
             scratch_dir: Path | None = None) -> HalfVectors:
        """The rows saved at `path`. Read-only keeps reading that file (its open descriptor
        survives a later save replacing the name); otherwise it is copied into a private file
        so appends never touch the saved one."""
        if Path(path).stat().st_size != rows * 2 * dim:
            raise ValueError(f"{path} does not hold {rows} rows of {dim} half floats")
        if read_only:
            return cls(dim, _file=open(path, "rb"), rows=rows, read_only=True)  # noqa: SIM115
        store = cls(dim, scratch_dir)
        with open(path, "rb") as src:
            shutil.copyfileobj(src, store._file, _COPY_CHUNK)
        store._file.flush()
        store.rows = rows
        return store
