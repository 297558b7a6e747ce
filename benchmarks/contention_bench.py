"""How much of the embedder's rate a little CPU work beside it costs, on this machine.

Why the ingest ratio stays short of its goal: the model spreads each batch over both cores,
so another thread that takes a core for a moment can stall the whole batch, not half of it
(measured: 1.0-1.8x the fair share, depending on the run and the share).
This encodes the ingest benchmark's texts (the stories of the captured feeds, as embedded)
alone, then beside a separate process that keeps one core busy for a share (`duty`) of
every 10 ms, in turns, and reports texts/s and the model's CPU seconds. Perfect sharing
would lose duty / 2 of the rate (the other process takes that share of one of two cores).

    .venv/bin/python -m benchmarks.contention_bench [reps]
"""

from __future__ import annotations

import json
import multiprocessing as mp
import sys
import time
from datetime import UTC, datetime
from statistics import median_high

DUTIES = (0.0, 0.1, 0.25)


def _busy(duty: float, stop) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < duty * 0.01:
            pass
        time.sleep((1 - duty) * 0.01)


def ingest_texts(n_sources: int = 40) -> list[str]:
    """The texts the ingest benchmark's pipeline embeds (same feeds, same recipe)."""
    from aggregator.model import SourceSpec
    from aggregator.parsepool import parse_and_normalize
    from benchmarks.collect_bench import source_bodies
    from recommender.embed import story_text

    out = []
    now = datetime.now(UTC)
    for i, (path, body, ctype) in enumerate(source_bodies(n_sources)):
        spec = SourceSpec(name=f"s{i}", url=f"http://feeds.example{path}", category="bench")
        parsed = parse_and_normalize(body, spec.url, ctype, "auto", None, spec, now)
        out += [story_text(d.title, d.summary or "", d.text or "") for d in parsed.drafts]
    return out


def run(reps: int = 3, embedder: str = "minilm-int8") -> dict:
    from benchmarks.ingest_bench import FEEDS_DIR
    from recommender.embed import make_embedder

    if not FEEDS_DIR.is_dir():
        return {"skipped": f"feed data not found at {FEEDS_DIR}"}
    texts = ingest_texts()
    emb = make_embedder(embedder)
    emb.encode(texts[:16])
    rows: dict[float, list[tuple[float, float]]] = {d: [] for d in DUTIES}
    ctx = mp.get_context("spawn")
    for _ in range(reps):
        for duty in DUTIES:  # interleaved: the machine's noise hits every duty alike
            stop, busy = ctx.Event(), None
            if duty:
                busy = ctx.Process(target=_busy, args=(duty, stop), daemon=True)
                busy.start()
                time.sleep(0.3)
            c0, t0 = time.process_time(), time.perf_counter()
            emb.encode(texts)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            if busy:
                stop.set()
                busy.join()
            rows[duty].append((len(texts) / wall, cpu))
    alone = median_high(r for r, _ in rows[0.0])
    out = {"texts": len(texts), "embedder": type(emb).__name__, "reps": reps, "duties": []}
    for duty, got in rows.items():
        rate = median_high(r for r, _ in got)
        out["duties"].append({"duty": duty, "texts_per_s": round(rate, 1),
                              "model_cpu_s": round(median_high(c for _, c in got), 2),
                              "rate_lost": round(1 - rate / alone, 3),
                              "fair_share_lost": duty / 2})
    return out


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 3), indent=2))
