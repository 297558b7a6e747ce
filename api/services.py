"""Composition: build the store, embedder, corpus, indexer, collector and related service
from Settings. Each role takes only what it needs; heavy parts (model, index) load lazily
or in `start()`, never at import.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from aggregator.errors import ConfigError, NoDatabase
from aggregator.settings import Settings, default_database_url, sqlite_file
from aggregator.store import EmbedderSeat, Store, other_recipe_leads, shown_url
from api.jobhealth import JobHealth
from api.machineid import machine_id
from recommender.embed import Embedder, make_embedder

# The parts of each role are imported where `build` wires them: a command that needs the
# database only (`sources`, `takedown`, `export`, ...) started in ~1.3 s, nearly all of it
# importing the collector (trafilatura, aiohttp), FAISS and the ranking it never used.
if TYPE_CHECKING:
    from aggregator.collect import Collector
    from aggregator.fetch import Fetcher
    from recommender.blocks import RelatedService
    from recommender.corpus import Corpus
    from recommender.indexer import Indexer
    from recommender.readers import FeedService
    from recommender.vindex import FaissIndex

log = logging.getLogger("tidings")
# How long a stopping server (the API's, api.app.server_config; the ops listener of `collect`
# and `index`) lets the requests under way finish: a few seconds, well inside systemd's 90 s
# and Kubernetes' 30 s stop timeouts (and docker stop's 10 s). A related block by URL still
# fetching its page is cut.
STOP_GRACE_S = 5.0


def index_dir(settings: Settings, recipe: str) -> Path:
    # One folder per recipe digest, so switching embedders never loads incompatible vectors.
    import hashlib

    return settings.data_dir / "index" / hashlib.sha256(recipe.encode()).hexdigest()[:12]


@dataclass
class Services:
    settings: Settings
    store: Store
    embedder: Embedder | None  # None in processes that only collect or read sources
    corpus: Corpus | None = None
    related: RelatedService | None = None
    indexer: Indexer | None = None
    collector: Collector | None = None
    feeds: FeedService | None = None
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    # This data dir's id (api.machineid), which says "this machine" where the host name of
    # `owner` changes with each container; None where the data dir is read-only.
    machine: str | None = None
    jobs: JobHealth = field(default_factory=JobHealth)  # the scheduled jobs' ticks

    async def close(self) -> None:
        if self.related is not None:
            await self.related.close()  # its fetcher's connections
        if self.collector is not None:
            await self.collector.close()
        if self.indexer is not None:
            await self.indexer.close()
        await self.store.close()
        # The model's runtime (compiled kernels, its own threads) goes too, even while
        # something still holds these services: FastAPI keeps every endpoint it has seen in a
        # module-level cache (4,096 of them), and the app's endpoints hold the services. A
        # process that builds the services several times (the ingest benchmark, the tests)
        # kept one model per build, and OpenVINO compiled new input shapes ~15% slower beside
        # three idle ones (2-core Xeon).
        release_model(self.embedder)


def release_model(embedder: Embedder | None) -> None:
    """Let go of an embedder's runtime (compiled kernels, its threads), where it has one."""
    release = getattr(embedder, "close", None)
    if release is not None:
        release()


def caller_fetcher_factory(settings: Settings, resolver_factory: Callable | None = None, *,
                           guarded: bool = True):
    """Fetchers for URLs that callers send: guarded against SSRF (`guarded`, for the API's
    callers; the operator's own `tidings related --url` is not), tighter limits. The related
    service makes one and shares it between requests, so the per-host cap holds across them."""
    from aggregator.fetch import Fetcher, FetchPolicy
    from aggregator.netguard import AddressGuard

    api = settings.api
    guard = AddressGuard(frozenset(h.lower() for h in api.fetch_allow_hosts)) if guarded else None
    policy = FetchPolicy(
        user_agent=settings.collect.user_agent,
        connect_timeout_s=min(settings.collect.connect_timeout_s, api.fetch_timeout_s),
        total_timeout_s=api.fetch_timeout_s,
        max_body_bytes=api.fetch_max_bytes,
        per_host_limit=settings.collect.per_host_limit,
        global_limit=settings.collect.global_limit,
    )

    def make() -> Fetcher:
        # The fetcher wraps its resolver with the guard itself (checked on every DNS answer).
        return Fetcher(policy, resolver=resolver_factory() if resolver_factory else None, guard=guard)

    return make


async def build(
    settings: Settings,
    *,
    serve: bool = False,
    index: bool = False,
    collect: bool = False,
    owner_of_files: bool = False,
    resolver_factory: Callable | None = None,
    embedder: Embedder | None = None,
    corpus: bool = False,
    mmap: bool = False,
    guard_callers: bool = True,
    create_database: bool = True,
) -> Services:
    """Wire the parts a process needs. `owner_of_files`: this process saves the index files.

    `corpus`: a corpus even without the serve or index role (the `serve --workers` supervisor
    brings the saved index up to date with it). `mmap`: map the saved index read-only instead of
    reading it into this process, so worker processes share its pages (api/workers.py).
    `guard_callers`: pages fetched for related-by-URL reach public addresses only (off for the
    operator's own command line, as their sources may be on any host: DESIGN.md 4.2).
    `create_database`: make the database where there is none (the commands that bring stories
    in, and the long-running roles, which start in any order); otherwise NoDatabase, with
    nothing made on the disk.
    """
    db_file = sqlite_file(settings.database_url)
    if not create_database and db_file is not None and not db_file.is_file():
        # Before anything touches the disk: a mistyped data dir is left as it was.
        raise NoDatabase(no_database_message(settings))
    if create_database:  # before the store: the SQLite file goes in it by default
        make_data_dir(settings)
    store = Store(settings.database_url)
    try:
        revision = await store.migrate(create=create_database)
        if revision is None and not create_database:  # a file or PostgreSQL database, empty
            raise NoDatabase(no_database_message(settings, empty=True))
        # A reader's once its database is there: refused for a PostgreSQL database without
        # tables, it had made a mistyped data dir already. The machine id and index go in it.
        make_data_dir(settings)
    except BaseException:
        await store.close()
        raise
    if revision is None:  # said, for a `serve` or `collect` started on a mistyped data dir
        log.info("store.created Tidings' tables in an empty database at %s (%s)", shown_database(settings),
                 settings.database_from or "the settings")
    lead = emb = None
    if serve or index or corpus:  # only these embed: `collect`, `sources` need no model
        lead = await store.leading_embedder()
        emb = embedder or configured_embedder(settings, lead=await database_recipe(store, lead))
    svc = Services(settings, store, emb, machine=machine_id(settings.data_dir))
    if serve or index or corpus:
        from recommender.corpus import Corpus
        from recommender.vindex import FaissIndex

        ix = settings.index

        tuning = {"hnsw_threshold": ix.hnsw_threshold, "hnsw_m": ix.hnsw_m, "ef_search": ix.ef_search,
                  "sq8_threshold": ix.sq8_threshold, "nprobe": ix.nprobe,
                  "scratch_dir": settings.data_dir}

        def factory() -> FaissIndex:
            return FaissIndex(emb.dim, **tuning)

        svc.corpus = Corpus(store, recipe=emb.recipe, dim=emb.dim,
                            index_dir=index_dir(settings, emb.recipe), owner=owner_of_files,
                            index_factory=factory, index_settings=tuning, mmap=mmap)
    if serve:
        from recommender.blocks import RelatedService
        from recommender.readers import FeedService
        from recommender.related import RankParams

        max_age = settings.related.max_age_days or None
        svc.related = RelatedService(
            svc.corpus, emb, store,
            fetcher_factory=caller_fetcher_factory(settings, resolver_factory, guarded=guard_callers),
            url_cache_s=settings.api.url_cache_s,
            page_read_timeout_s=settings.api.page_read_timeout_s,
            url_deadline_s=settings.api.fetch_timeout_s + settings.api.page_read_timeout_s,
            source_weights=await store.source_weights(),
            default_max_age_days=max_age,
            # The [related] settings the ranking reads; freshness_half_life_h was read by
            # nothing (the ranking kept its own 3 days whatever the operator set).
            rank_params=RankParams(
                freshness_half_life_days=settings.related.freshness_half_life_h / 24,
                min_relevance=settings.related.min_relevance),
        )
    if serve:
        f = settings.feed
        svc.feeds = FeedService(store, svc.corpus, page_size=f.page_size,
                                max_per_source=f.max_per_source,
                                exploration_share=f.exploration_share,
                                history_days=f.history_days,
                                source_weights=svc.related.source_weights)
    if serve and not index and other_recipe_leads(lead, emb.recipe):
        _say_another_recipe_leads(lead, emb.recipe)
    if index:
        from recommender.indexer import Indexer

        svc.indexer = Indexer(store, emb, batch_size=settings.index.batch_size,
                              lease_s=settings.index.lease_s, owner=svc.owner)
    if collect:
        from aggregator.collect import Collector

        svc.collector = Collector(store, settings.collect, resolver_factory=resolver_factory,
                                  owner=svc.owner, keep_days=settings.retention.stories_days)
    return svc


def make_data_dir(settings: Settings) -> None:
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file of that name, no permission: say so, not a traceback
        raise ConfigError(f"data_dir {settings.data_dir} cannot be created: {e.strerror}",
                          key="data_dir") from None


def shown_database(settings: Settings) -> str:
    """The database's file, else its URL without the password."""
    db_file = sqlite_file(settings.database_url)
    return str(db_file) if db_file is not None else shown_url(settings.database_url)


def no_database_message(settings: Settings, *, empty: bool = False) -> str:
    """The one line of a command refused for want of a database (`empty`: one without Tidings'
    tables). Pure."""
    where = shown_database(settings)
    what = f"an empty database at {where}, without Tidings' tables" if empty else f"no database at {where}"
    origin = f" ({settings.database_from})" if settings.database_from else ""
    setting = "the data dir" if settings.database_url == default_database_url(settings.data_dir) else "database_url"
    return (f"{what}{origin}: run `tidings run`, `tidings collect` or `tidings import` first, "
            f"or check {setting}")


def configured_embedder(settings: Settings, lead: str | None = None) -> Embedder:
    """The `[index] embedder` of the settings, its models in the data dir (`make_embedder`;
    `lead`: the database's recipe, taken where this machine makes it)."""
    return make_embedder(settings.index.embedder, threads=settings.index.threads or None,
                         cache_dir=settings.data_dir / "models", lead=lead)


async def database_recipe(store: Store, lead: EmbedderSeat | None) -> str | None:
    """The recipe this database's stories are embedded with: the leading indexer's, else (none
    runs: a cluster's boot, an indexer moved to a new machine) the newest stored vector's.

    `minilm-int8` takes the runtime that makes it where this machine can, instead of its own
    race: a replica started before the indexers, or a new indexer machine whose race went the
    other way, would otherwise serve an index missing every story, or lead and re-embed them
    all with the other runtime."""
    return lead.recipe if lead is not None else await store.latest_vector_recipe()


async def adopt_database_recipe(svc: Services, refused: set[str]) -> bool:
    """A serve-only process still empty, whose `minilm-int8` runtime makes another recipe than
    the database's, takes the database's where this machine makes it: a replica started on an
    empty database before any indexer (a new cluster) raced on its own, and its index would
    miss every story until restarted. `refused`: recipes this machine does not make, not
    tried again. True when it switched."""
    s = svc.settings
    if (svc.indexer is not None or svc.corpus is None or svc.related is None or len(svc.corpus)
            or s.index.embedder != "minilm-int8"):
        return False
    recipe = await database_recipe(svc.store, await svc.store.leading_embedder())
    if recipe is None or recipe == svc.embedder.recipe or recipe in refused:
        return False
    emb = await asyncio.to_thread(configured_embedder, s, recipe)
    if emb.recipe != recipe:
        refused.add(recipe)
        release_model(emb)
        return False
    if not await svc.corpus.take_recipe(recipe, index_dir(s, recipe)):
        release_model(emb)  # it took stories of its own recipe meanwhile: stays as it is
        return False
    old, svc.embedder, svc.related.embedder = svc.embedder, emb, emb
    release_model(old)
    log.info("api.recipe_adopted recipe=%s: the database's, in place of this machine's own "
             "choice (%s)", recipe, old.recipe)
    return True


def recipe_adopter(svc: Services) -> Callable[[], Awaitable[bool]]:
    """The job serve-only processes (one-process serve, each `serve --workers` worker) run
    every `LEAD_CHECK_S`: `adopt_database_recipe` with the process's own refused recipes."""
    refused: set[str] = set()
    return lambda: adopt_database_recipe(svc, refused)


def _say_another_recipe_leads(lead: EmbedderSeat, recipe: str) -> None:
    """An API process whose embedder differs from the indexers' finds none of their vectors:
    its blocks would be empty, so say why at start (`/healthz` says it while running)."""
    log.error("api.recipe_mismatch recipe=%s leading_recipe=%s leader=%s: the database's stories "
              "are embedded with another recipe, so this process's index misses them; give it "
              "the indexers' [index] embedder and model files (README, Operations)",
              recipe, lead.recipe, lead.owner)
