"""Measure the vector index layouts: build time, single-query latency, batch rate, size, recall.

Synthetic data, say so wherever the figures go: clustered unit vectors (cluster centres plus
Gaussian noise, ~100 vectors a cluster, nearest-neighbour cosine ~0.6) stand in for news
embeddings. Recall on them is indicative only; re-measure on real embeddings before tuning
ef_search (BASELINES.md section 3 shows how much the data changes it).

    .venv/bin/python -m benchmarks.vindex_bench [10000 100000 ...]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from recommender.vindex import BruteForceIndex, FaissIndex


def clustered_unit_vectors(n: int, dim: int, *, cluster_size: int = 100, noise: float = 1.0,
                           seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    clusters = max(1, n // cluster_size)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rows = centres[rng.integers(0, clusters, n)]
    rows += noise * rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _recall(found: list[list[tuple[int, float]]], exact: list[list[tuple[int, float]]],
            k: int) -> float:
    hits = sum(len({i for i, _ in f[:k]} & {i for i, _ in e[:k]})
               for f, e in zip(found, exact, strict=True))
    return hits / (k * len(exact))


def _make(kind: str, dim: int, ef_search: int) -> BruteForceIndex | FaissIndex:
    if kind == "brute":
        return BruteForceIndex(dim)
    # The threshold forces the layout regardless of size.
    threshold = 10**12 if kind == "flat" else 0
    return FaissIndex(dim, hnsw_threshold=threshold, sq8=kind == "hnsw_sq8", ef_search=ef_search,
                      sq8_threshold=0 if kind == "ivf_sq8" else 10**12, rebuild_mode="inline")


def run(sizes: tuple[int, ...] = (10_000, 100_000), *, dim: int = 384, k: int = 10,
        n_queries: int = 1_000, single_queries: int = 500,
        kinds: tuple[str, ...] = ("brute", "flat", "hnsw", "hnsw_sq8", "ivf_sq8"),
        ef_search: int = 64, seed: int = 0) -> list[dict]:
    """One row per (size, kind); times in seconds / milliseconds, sizes in bytes."""
    rows = []
    for n in sizes:
        data = clustered_unit_vectors(n + n_queries, dim, seed=seed)
        base, queries = data[:n], data[n:]
        ids = np.arange(n, dtype=np.int64)
        exact_index = BruteForceIndex(dim)
        exact_index.add(ids, base)
        exact = exact_index.search_many(queries, k)
        del exact_index
        for kind in kinds:
            index = _make(kind, dim, ef_search)
            started = time.perf_counter()
            if isinstance(index, FaissIndex):
                index.rebuild(ids, base)
            else:
                index.add(ids, base)
            build_s = time.perf_counter() - started
            latencies_ms = []
            for query in queries[:single_queries]:
                t0 = time.perf_counter()
                index.search(query, k)
                latencies_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            found = index.search_many(queries, k)
            batch_s = time.perf_counter() - t0
            row = {
                "data": "synthetic clustered unit vectors",
                "n": n, "dim": dim, "kind": kind,
                "ef_search": ef_search if kind.startswith("hnsw") else None,
                "build_s": round(build_s, 3),
                "p50_ms": round(float(np.percentile(latencies_ms, 50)), 3),
                "p99_ms": round(float(np.percentile(latencies_ms, 99)), 3),
                "batch_qps": round(len(queries) / batch_s),
                f"recall_at_{k}": round(_recall(found, exact, k), 4),
                "index_bytes": base.nbytes + ids.nbytes if kind == "brute" else None,
                "save_s": None, "load_s": None, "mmap_load_s": None,
            }
            if isinstance(index, FaissIndex):
                with tempfile.TemporaryDirectory() as tmp:
                    t0 = time.perf_counter()
                    saved = index.save(Path(tmp))
                    row["save_s"] = round(time.perf_counter() - t0, 3)
                    row["index_bytes"] = saved["file_bytes"]
                    for mmap, key in ((False, "load_s"), (True, "mmap_load_s")):
                        t0 = time.perf_counter()
                        loaded = FaissIndex.load(Path(tmp), mmap=mmap)
                        row[key] = round(time.perf_counter() - t0, 3)
                        assert loaded is not None and len(loaded) == n
                        del loaded
            rows.append(row)
            del index
    return rows


def format_table(rows: list[dict]) -> str:
    head = ("| n | kind | build s | p50 / p99 ms (1 query) | batch q/s | recall@10 | index MiB "
            "| save / load / mmap-load s |")
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        def fmt(value: float | None) -> str:
            return "-" if value is None else f"{value:g}"
        lines.append(
            f"| {r['n']:,} | {r['kind']} | {r['build_s']:.2f} | {r['p50_ms']:.3f} / {r['p99_ms']:.3f}"
            f" | {r['batch_qps']:,} | {r['recall_at_10']:.4f} | {r['index_bytes'] / 2**20:.1f}"
            f" | {fmt(r['save_s'])} / {fmt(r['load_s'])} / {fmt(r['mmap_load_s'])} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sizes = tuple(int(a) for a in sys.argv[1:]) or (10_000, 100_000)
    print("synthetic clustered unit vectors, 384-d, k=10, ef_search=64")
    print(format_table(run(sizes)))
