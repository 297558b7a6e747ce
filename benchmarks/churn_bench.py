"""Cached related blocks while stories keep arriving: which blocks a new story throws away.

**Real data, real model:** all of BBC News (2,225 stories, five sections) embedded with the
shipped default embedder, 150 of them held back. The app (fast path on, as deployed) is
driven in-process through its ASGI interface: JSON blocks of `hot` stories, chosen with Zipf
weights (a few articles get most views, as on a news site), while the held-back stories
arrive one at a time every `every` requests (stored, embedded, followed by the corpus, as the
indexer and the serving process do).

Two rules, measured in the same run on the same request and arrival sequence:

  any story   every new story throws away every cached block (the rule before
              recommender/reach.py): the baseline
  reach       a block is thrown away when a new story could join its candidate pool, or a
              pool story is removed (recommender/reach.py)

For each: the share of requests answered from a cache, the CPU per request (requests only,
not the arrivals), and, for the reach rule, how many answers served from a cache are exactly
the block the ranking gives at that moment (every 10th cached answer is checked).

    .venv/bin/python -m benchmarks.churn_bench
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SECTIONS = ("politics", "entertainment", "business", "sport", "tech")
HELD = 150


def _settings(tmp: Path):
    from aggregator.settings import load_settings

    return load_settings(REPO / "config" / "tidings.toml",
                         env={"TIDINGS_DATA_DIR": str(tmp), "TIDINGS_LOG_LEVEL": "warning"})


def _drafts() -> tuple[list, list]:
    """The stories stored at the start, and the ones held back to arrive during the run."""
    from aggregator.importer import LineError, read_jsonl
    from aggregator.store import utcnow
    from tests.datasets import bbc_records

    records = bbc_records(SHARED, categories=SECTIONS)
    drafts = [d for d in read_jsonl((json.dumps(r) for r in records), utcnow())
              if not isinstance(d, LineError)]
    held = drafts[3::len(drafts) // HELD][:HELD]
    return [d for d in drafts if d not in held], held


async def _template(tmp: Path) -> None:
    """Store and embed the starting stories once; each rule's run starts from a copy."""
    from aggregator.store import utcnow
    from api.services import build

    svc = await build(_settings(tmp), serve=True, index=True, owner_of_files=True)
    await svc.store.upsert_stories(_drafts()[0], utcnow())
    await svc.corpus.start()
    await svc.indexer.drain()
    await svc.corpus.follow()
    await svc.corpus.save()
    await svc.close()


async def _stack(tmp: Path):
    from api.app import create_app
    from api.services import build

    svc = await build(_settings(tmp), serve=True, index=True, owner_of_files=True)
    await svc.corpus.start()
    return svc, create_app(svc), _drafts()[1]


async def _arrive(svc, draft) -> int | None:
    """Store, embed and follow one story, as the collector, indexer and API do; its id."""
    from aggregator.store import utcnow

    await svc.store.upsert_stories([draft], utcnow())
    await svc.indexer.drain()
    await svc.corpus.follow()
    story = await svc.store.get_story_by_any_url([draft.url])
    return story.id if story is not None else None


def _ids(body: bytes) -> list[int]:
    return [c["id"] for c in json.loads(body)["related"]]


async def _run_rule(template: Path, rule: str, requests: int, every: int, hot: int,
                    seed: int) -> dict:
    import httpx

    import recommender.reach as reach
    from recommender.related import Filters

    tmp = Path(tempfile.mkdtemp(prefix="tidings-churn-")) / "data"
    shutil.copytree(template, tmp)
    svc, app, held = await _stack(tmp)
    original = reach.untouched
    if rule == "any story":
        reach.untouched = lambda *a, **k: False
    try:
        rng = np.random.default_rng(seed)
        ids = sorted(int(i) for i in svc.corpus.meta.ids())
        stories = [ids[int(i)] for i in rng.choice(len(ids), size=hot, replace=False)]
        weights = 1.0 / np.arange(1, hot + 1) ** 1.1
        order = rng.choice(hot, size=requests, p=weights / weights.sum())
        hits_before = _hits(app)
        cpu = 0.0
        checked = same = hidden = 0
        arrivals = 0
        arrived: set[int] = set()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for n, j in enumerate(order):
                if n and n % every == 0 and arrivals < len(held):
                    arrived.add(await _arrive(svc, held[arrivals]))
                    arrivals += 1
                before_hits = _hits(app)
                t0 = time.process_time()
                r = await client.get(f"/v1/stories/{stories[j]}/related", params={"k": 5})
                cpu += time.process_time() - t0
                assert r.status_code == 200, r.text
                if rule == "reach" and _hits(app) > before_hits and n % 10 == 0:
                    fresh = [m.id for m, _ in
                             (await svc.related.for_story(stories[j], k=5, filters=Filters())).related]
                    checked += 1
                    same += _ids(r.content) == fresh
                    # An arrived story the block would show now but the cached one lacks: the
                    # one error the rule must not make (the rest is idf drift among old stories).
                    hidden += bool(arrived & (set(fresh) - set(_ids(r.content))))
        hits = _hits(app) - hits_before
        return {"rule": rule, "every": every, "requests": requests, "arrivals": arrivals,
                "hit_share": hits / requests, "cpu_ms_per_request": 1000 * cpu / requests,
                "checked": checked, "same": same,
                "hidden": hidden}
    finally:
        reach.untouched = original
        await svc.close()
        shutil.rmtree(tmp.parent, ignore_errors=True)


def _hits(app) -> float:
    """Answers the app and its fast path gave from a cache so far (their shared metrics)."""
    registry = app.state.metrics.registry
    return registry.get_sample_value("tidings_block_cache_total", {"result": "hit"}) or 0.0


def run(requests: int = 3000, everies: tuple[int, ...] = (20, 200), hot: int = 300) -> dict:
    if not (SHARED / "bbc-news").is_dir():
        return {"skipped": f"no BBC data at {SHARED / 'bbc-news'}"}
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows = []
    with tempfile.TemporaryDirectory(prefix="tidings-churn-template-") as t:
        template = Path(t) / "data"
        asyncio.run(_template(template))
        for every in everies:
            for rule in ("any story", "reach"):
                rows.append(asyncio.run(_run_rule(template, rule, requests, every, hot,
                                                  seed=every)))
                print(f"[churn] {rows[-1]}", file=sys.stderr, flush=True)
    return {"rows": rows, "hot": hot, "held": HELD, "requests": requests}


def format_table(r: dict) -> list[str]:
    out = ["| a story every | rule | answered from a cache | CPU ms per request "
           "| cached answers checked: same as ranked again | missing an arrived story |",
           "|---|---|---|---|---|---|"]
    for x in r["rows"]:
        check = f"{x['same']} of {x['checked']}" if x["checked"] else "-"
        hidden = str(x.get("hidden", "-")) if x["checked"] else "-"
        out.append(f"| {x['every']} requests | {x['rule']} | {x['hit_share']:.1%} "
                   f"| {x['cpu_ms_per_request']:.2f} | {check} | {hidden} |")
    return out


if __name__ == "__main__":
    result = run(*(int(a) for a in sys.argv[1:2]))
    print(json.dumps(result, indent=1))
    if "rows" in result:
        print("\n".join(format_table(result)))
