"""`tidings eval related|feed`: offline quality figures on the labelled datasets.

The datasets are third-party and live outside the project (../shared/data beside the repo);
nothing is copied in. The evaluations run the product's own ranking code on them.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from aggregator.errors import ConfigError


def data_dir(arg: str | None) -> Path:
    candidates = [Path(arg)] if arg else [
        Path(__file__).resolve().parents[1].parent / "shared" / "data",
        Path.cwd().parent / "shared" / "data",
    ]
    for c in candidates:
        if c.is_dir():
            return c
    raise ConfigError(f"no evaluation data at {candidates[0]} (pass --data DIR)")


MIND_FILES = ("news.tsv", "behaviors.tsv")


def mind_dir(root: Path) -> Path:
    """The MIND sample under the shared data folder, or `root` itself when it is the sample's
    folder: `--data .../mind-small-sample` read ".../mind-small-sample/mind-small-sample/news.tsv"
    and stopped on a bare "[Errno 2] No such file or directory"."""
    for d in (root / "mind-small-sample", root):
        if all((d / f).is_file() for f in MIND_FILES):
            return d
    raise ConfigError(f"no MIND sample at {root / 'mind-small-sample'} ({', '.join(MIND_FILES)}): "
                      "pass --data the shared data folder or the sample's own")


# The folder under the shared data folder that each part of `eval related` reads.
RELATED_DATASETS = {"ecbplus": "ecbplus", "bbc": "bbc-news", "uci": "uci-news-aggregator-head",
                    "seed": "bbc-news"}


def check_related_data(root: Path, only: str | None) -> None:
    """ConfigError naming the datasets `root` lacks for the parts asked for: a --data folder
    without them stopped on a bare "[Errno 2] No such file or directory" (exit 1), and
    `--only seed` printed an empty block with exit 0."""
    parts = [only] if only else list(RELATED_DATASETS)
    missing = sorted({RELATED_DATASETS[p] for p in parts if not (root / RELATED_DATASETS[p]).is_dir()})
    if missing:
        raise ConfigError(f"no {', '.join(missing)} folder in {root}: pass --data the shared "
                          "data folder")


def models_dir(data_dir: Path) -> Path | None:
    """Where an evaluation finds, or builds, its model files: the data dir's `models` when this
    install built them there (the very files it embeds with: no second build), else the
    user's cache (None: make_embedder's default). An evaluation on a machine, or with a
    --config, that never ran the service made a `models` folder (and the data dir itself) in
    its data dir, and built ~45 MB of model files there."""
    built = data_dir / "models"
    return built if built.is_dir() else None


async def cmd_eval(settings, args) -> int:
    from recommender.embed import make_embedder

    root = data_dir(args.data)
    if args.eval_command == "related":
        check_related_data(root, args.only)
    else:
        root = mind_dir(root)  # before the model is loaded (or built): a wrong --data says so at once
    embedder = make_embedder(args.embedder or settings.index.embedder,
                             cache_dir=models_dir(settings.data_dir))
    t0 = time.perf_counter()
    if args.eval_command == "related":
        from recommender import evaluate as ev

        out: dict = {}
        if args.only in (None, "ecbplus"):
            for variant in ("first40", "full"):
                out[f"ecbplus_{variant}"] = ev.eval_related_ecbplus(root / "ecbplus", embedder, variant)
                _say(f"ECB+ {variant}", out[f"ecbplus_{variant}"])
        if args.only in (None, "bbc"):
            out["bbc"] = ev.eval_related_bbc(root / "bbc-news", embedder)
            _say("BBC same-category share in top 5", out["bbc"])
        if args.only in (None, "uci"):
            out["uci_headlines"] = ev.eval_related_uci(root / "uci-news-aggregator-head", embedder)
            _say("UCI same-story headlines", out["uci_headlines"])
        if args.only in (None, "seed"):
            rows = ev.seed_case_block(root / "bbc-news", embedder)
            out["seed"] = [{"category": c, "title": t, "reason": r.reason} for c, t, r in rows]
            print("Seed case (Trump–Putin partial ceasefire call):", file=sys.stderr)
            for c, t, r in rows:
                print(f"  [{c}] {t} — {r.reason}", file=sys.stderr)
    else:
        from recommender.evaluate_feed import eval_feed_mind

        out = eval_feed_mind(root, embedder)
        _say("MIND next-read", out)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out, indent=2, default=str))
    return 0


def _say(label: str, figures: dict) -> None:
    shown = {k: v for k, v in figures.items() if isinstance(v, int | float)}
    print(f"{label}: " + ", ".join(f"{k}={v}" for k, v in shown.items()), file=sys.stderr)
