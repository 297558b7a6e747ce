"""Token F1 of `aggregator.extract.extract_article` against the article-extraction benchmark.

Run: `python -m benchmarks.extract_f1 [--limit N]` from the repo root. Prints mean and median F1
(and precision/recall) over the pages of `../shared/data/article-extraction-benchmark`.
Metric: bag-of-words F1 over lowercased `\\w+` tokens (multiset overlap), the token-level
F1 the benchmark's README asks for; the benchmark's own evaluate.py uses 4-token shingles,
which `shingle_f1` approximates (our tokenizer) for comparison.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aggregator.errors import ParseError
from aggregator.extract import extract_article

BENCH_DIR = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "article-extraction-benchmark"
)
_TOKEN = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class PageScore:
    key: str
    precision: float
    recall: float
    f1: float
    shingle_f1: float = 0.0


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.casefold())


def prf(predicted: list, gold: list) -> tuple[float, float, float]:
    """Precision, recall, F1 of two multisets given as lists."""
    if not predicted and not gold:
        return 1.0, 1.0, 1.0
    overlap = sum((Counter(predicted) & Counter(gold)).values())
    if overlap == 0:
        return 0.0, 0.0, 0.0
    p, r = overlap / len(predicted), overlap / len(gold)
    return p, r, 2 * p * r / (p + r)


def token_f1(predicted: str, gold: str) -> float:
    return prf(tokens(predicted), tokens(gold))[2]


def shingle_f1(predicted: str, gold: str, n: int = 4) -> float:
    def shingles(text: str) -> list[tuple[str, ...]]:
        t = tokens(text)
        return [tuple(t[i : i + n]) for i in range(max(1, len(t) - n + 1))] if t else []

    return prf(shingles(predicted), shingles(gold))[2]


def pages(bench_dir: Path = BENCH_DIR) -> Iterator[tuple[str, str, bytes, str]]:
    """(key, url, html bytes, gold text) for every page, in sorted key order."""
    truth = json.loads((bench_dir / "ground-truth.json").read_text(encoding="utf-8"))
    for key in sorted(truth):
        html = gzip.decompress((bench_dir / "html" / f"{key}.html.gz").read_bytes())
        yield key, truth[key]["url"], html, truth[key]["articleBody"]


def score_page(key: str, url: str, html: bytes, gold: str) -> PageScore:
    try:
        text = extract_article(html, url).text
    except ParseError:
        text = ""
    p, r, f = prf(tokens(text), tokens(gold))
    return PageScore(key, p, r, f, shingle_f1(text, gold))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=0, help="only the first N pages")
    args = parser.parse_args()
    if not BENCH_DIR.is_dir():
        raise SystemExit(f"benchmark data not found at {BENCH_DIR}")
    started = time.perf_counter()
    scores = []
    for i, page in enumerate(pages()):
        if args.limit and i >= args.limit:
            break
        scores.append(score_page(*page))
    elapsed_s = time.perf_counter() - started
    f1s = [s.f1 for s in scores]
    print(f"pages: {len(scores)}  time: {elapsed_s:.1f} s")
    print(f"token F1 mean {statistics.mean(f1s):.3f}  median {statistics.median(f1s):.3f}")
    print(f"4-shingle F1 mean {statistics.mean(s.shingle_f1 for s in scores):.3f}")
    print(
        f"precision mean {statistics.mean(s.precision for s in scores):.3f}  "
        f"recall mean {statistics.mean(s.recall for s in scores):.3f}"
    )
    print(
        "worst:",
        ", ".join(f"{s.key[:8]} {s.f1:.2f}" for s in sorted(scores, key=lambda s: s.f1)[:5]),
    )


if __name__ == "__main__":
    main()
