"""Prometheus metrics, one registry per app so tests can build many apps in one process.

`serve --workers N` runs N processes behind one socket, and a scrape reaches whichever worker
accepts it: with each worker's own registry, every counter went up and down from scrape to
scrape (one worker's count, then another's), which Prometheus reads as resets. The supervisor
turns on prometheus_client's multiprocess mode for its workers (`MULTIPROC_ENV`, in their
environment from their start): each worker writes its values to files in that folder, and a
scrape, whichever worker answers it, sums the counters and histograms of all of them (a
replaced worker's included), so they only go up. A gauge shows the value the latest scrape
set (they are read from the database, or are the scraped worker's index size).
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from aggregator.store import EVENT_TYPES, database_unavailable, other_recipe_leads
from api import jobhealth

if TYPE_CHECKING:
    from api.services import Services

# prometheus_client reads it once, when first imported: `api.workers.serve_workers` sets it
# before the workers start.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# The label values of the labelled counters, each known series exposed at 0 from the start
# (`known_tick_series`, `known_fetch_series`): a series that appears with its first increment is invisible to
# `rate()` and `increase()` (they need two samples), so an alert on failed ticks or on a
# source's errors missed the first failure of each, and a source that fails once a day
# never showed one.
TICK_OUTCOMES = ("ok", "failed", "skipped")  # api.jobhealth.OUTCOMES that count a tick
FETCH_OUTCOMES = ("ok", "not_modified", "error")
BLOCK_CACHE_RESULTS = ("hit", "miss", "joined")  # a stale block counts as a miss (`count_block`)
RANKING_CACHE_RESULTS = ("hit", "miss", "stale", "joined")  # api.blockcache.cached_or_ranked's

# No `*_created` series: prometheus_client wrote one beside every counter and histogram
# series (`tidings_fetches_total` had as many `tidings_fetches_created` gauges, one a source
# and outcome), which Prometheus stores as series of their own and no query of ours reads;
# a restart shows as a reset anyway. Process-wide, read at each scrape. `serve --workers`
# (multiprocess mode) never wrote them, so one process and many now expose the same names.
disable_created_metrics()


def _gauge(name: str, doc: str, labels=(), *, registry: CollectorRegistry) -> Gauge:
    """A gauge that, across workers, shows the value the latest scrape set."""
    return Gauge(name, doc, labels, registry=registry, multiprocess_mode="mostrecent")


class Metrics:
    def __init__(self, *, api: bool = True) -> None:
        """`api`: the process serves the API (its requests, events and related blocks are
        counted); a collector's or indexer's own listener (api.opslistener) does not."""
        self.registry = CollectorRegistry()
        self.api = api
        r = self.registry
        # Whether this process writes its values to the shared folder: chosen by
        # prometheus_client at import, from the environment of that time.
        shared = values.ValueClass is not values.MutexValue
        self.shared_folder: str | None = os.environ.get(MULTIPROC_ENV) if shared else None
        # Registered with the API's series below; a listener without them never counts these.
        self.requests = Histogram(
            "tidings_request_seconds", "HTTP request latency by route", ["route", "method", "status"],
            registry=None, buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        # The collector's and the indexer's counters are made by `watch`, in the processes that
        # run them: a `serve` exposed `tidings_stories_collected_total 0` and
        # `tidings_stories_embedded_total 0`, which a dashboard summing the cluster's
        # processes, or looking at the wrong one, reads as collection or indexing stopped.
        self.fetches: Counter | None = None
        self.stories_collected: Counter | None = None
        self.embedded: Counter | None = None
        self.index_size = _gauge("tidings_index_size", "Vectors in this process's index", registry=r)
        self.backlog = _gauge("tidings_embedding_backlog", "Stories waiting for a vector", registry=r)
        self.recipe_current = _gauge(
            "tidings_embedding_recipe_current",
            "0 while the database's stories are embedded with another recipe than this process's "
            "(its index misses them), else 1", registry=r)
        self.events = Counter("tidings_events_total", "Reader events accepted", ["type"], registry=None)
        self.database_up = _gauge("tidings_database_up",
                                  "1 when the last scrape read the database, 0 when it was away", registry=r)
        self.stories_total = _gauge("tidings_stories", "Stories stored (linked copies included)", registry=r)
        # The per-source series, as the latest scrape read them (`read_sources`).
        self.sources = SourceSeries()
        r.register(self.sources)
        # Every tick of a scheduled job (collect, index, follow, save, ...), by outcome: alert
        # on a rate of failed ticks. /healthz names the jobs failing right now. "skipped": the
        # scheduler's tick came while the last one still ran, and was not run.
        self.job_ticks = Counter("tidings_job_ticks_total", "Scheduled job ticks", ["job", "outcome"],
                                 registry=r)
        # 1 while a job's tick has run past its stuck-after (api.jobhealth): the job does no
        # work, as its later ticks are skipped. Set when found and when the tick ends, not at
        # scrape time: under `serve --workers` a scrape reads every worker's (their max).
        self.job_stuck = Gauge("tidings_job_stuck", "1 while a scheduled job's tick under way "
                               "has run far longer than its job's ticks should", ["job"],
                               registry=r, multiprocess_mode="livemax")
        # Each cacheable related, widget or search request once: "hit" (cached, the fast
        # path's replays included), "miss" (it ranked the block: one per ranking), "joined"
        # (it waited for another request's ranking of the same block, api/blockcache.py).
        self.block_cache = Counter("tidings_block_cache_total", "Related block cache", ["result"], registry=None)
        # Each ranking a search reads from the rankings its answers are cut from (one per
        # depth, recommender/search.py `search_depths`: one for a k up to 20), read only when
        # its answer missed the block cache: "hit" (kept: another k of a search asked before),
        # "miss" (ranked: never kept, or pushed out by newer ones), "stale" (ranked: the kept
        # one could no longer be served: a story since could change it, or the sources'
        # weights were edited), "joined" (another request's ranking under way). Without it
        # an operator could not see what the kept rankings save.
        self.ranking_cache = Counter("tidings_search_ranking_cache_total", "Search ranking cache",
                                     ["result"], registry=None)
        if api:
            for series in (self.requests, self.events, self.block_cache, self.ranking_cache):
                r.register(series)
            # Every known label's series from the start, at 0: a rate or ratio over a fresh
            # process (no miss yet, no click yet) returned nothing instead of 0, and `rate()`
            # misses the first increase of a series that appears with it.
            for result in BLOCK_CACHE_RESULTS:
                self.block_cache.labels(result)
            for result in RANKING_CACHE_RESULTS:
                self.ranking_cache.labels(result)
            for kind in EVENT_TYPES:
                self.events.labels(kind)

    def exposition(self) -> bytes:
        """The text a scrape gets: this app's registry, or every worker's when the process is
        one of `serve --workers` (see the module's doc)."""
        if self.shared_folder is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=self.shared_folder)
        merged.register(self.sources)
        return generate_latest(merged)

    def watch(self, svc: Services) -> None:
        """Count what the process's collector, indexer and jobs do from now on. Series of parts
        it lacks are left out, not shown at 0: in a collector, the index size and the embedding
        gauges would read 0, and `tidings_embedding_recipe_current 0` is an alert; in a
        `serve`, the collector's and indexer's counters would read as stopped."""
        r = self.registry
        if svc.collector is not None:
            self.fetches = Counter("tidings_fetches_total", "Source fetches", ["source", "outcome"], registry=r)
            self.stories_collected = Counter("tidings_stories_collected_total", "New stories stored",
                                             registry=r)
            svc.collector.listeners.append(self.observe_source)
        if svc.indexer is not None:
            self.embedded = Counter("tidings_stories_embedded_total", "Stories embedded", registry=r)
            svc.indexer.listeners.append(self.embedded.inc)
        svc.jobs.listeners.append(self.observe_job)
        if svc.corpus is None:
            self.registry.unregister(self.index_size)
        if svc.embedder is None:
            self.registry.unregister(self.backlog)
            self.registry.unregister(self.recipe_current)
        if self.api and svc.related is None:
            self.registry.unregister(self.block_cache)
            self.registry.unregister(self.ranking_cache)

    async def scrape(self, svc: Services) -> bytes:
        """What a scrape of `svc`'s process gets: the gauges read now (from the database, so
        every process reports the cluster's truth), the counters as they stand."""
        if svc.corpus is not None:
            self.index_size.set(len(svc.corpus))
        for labels in known_tick_series(svc.jobs.jobs):
            self.job_ticks.labels(*labels)
        try:
            if svc.store.file_gone():  # away, as /healthz says it (Store.file_gone)
                raise FileNotFoundError("the database file was deleted or replaced")
            # Bounded: a database that never answers is away too (jobhealth.DATABASE_ANSWER_S).
            async with asyncio.timeout(jobhealth.DATABASE_ANSWER_S):
                await self._read_database(svc)
            self.database_up.set(1)
        except Exception as e:
            # While the database is away the scrape still answers: this process's own
            # counters, the gauges as last read, and database_up 0. A 503 left monitoring
            # blind for the whole outage.
            if not database_unavailable(e):
                raise
            self.database_up.set(0)
        return self.exposition()

    async def _read_database(self, svc: Services) -> None:
        if svc.embedder is not None:
            self.backlog.set(await svc.store.backlog_size(svc.embedder.recipe))
            lead = await svc.store.leading_embedder()
            self.recipe_current.set(0 if other_recipe_leads(lead, svc.embedder.recipe) else 1)
        self.stories_total.set(await svc.store.count_stories())
        self.sources.health = await svc.store.list_sources()
        if self.fetches is not None:
            for labels in removed_sources_series(self.fetches, {h.name for h in self.sources.health}):
                self.fetches.remove(*labels)
            for labels in known_fetch_series(self.sources.health):
                self.fetches.labels(*labels)

    def observe_job(self, job: str, outcome: str) -> None:
        """A tick of a scheduled job (api.jobhealth.JobHealth's listener, api.jobhealth.OUTCOMES)."""
        if outcome in ("stuck", "unstuck"):
            self.job_stuck.labels(job).set(1 if outcome == "stuck" else 0)
        else:
            self.job_ticks.labels(job, outcome).inc()

    def observe_source(self, report) -> None:
        """A collector's SourceReport (in-process collectors only)."""
        outcome = "not_modified" if report.not_modified else ("ok" if report.ok else "error")
        self.fetches.labels(report.name, outcome).inc()
        if report.new:
            self.stories_collected.inc(report.new)


def known_tick_series(jobs: dict[str, jobhealth.JobState]) -> set[tuple[str, str]]:
    """The (job, outcome) label values of `tidings_job_ticks_total` to expose from the start:
    every job the process runs, "skipped" only for scheduled ones (the index loop is not
    ticked by the scheduler, so none of its ticks is ever skipped)."""
    return {(name, outcome) for name, state in jobs.items() for outcome in TICK_OUTCOMES
            if outcome != "skipped" or state.stuck_after_s is not None}


def known_fetch_series(health) -> set[tuple[str, str]]:
    """The (source, outcome) label values of `tidings_fetches_total` to expose from the start:
    every outcome of each source the collector may fetch (configured and enabled; the
    configured ones are those the database lists, so the series are bounded by the file)."""
    return {(h.name, outcome) for h in health if h.enabled for outcome in FETCH_OUTCOMES}


def removed_sources_series(fetches: Counter, configured: set[str]) -> set[tuple[str, str]]:
    """The (source, outcome) label values of `fetches`' series whose source the file
    no longer names. `tidings_fetches_total` kept a removed source's series until the
    process restarted (a reload of sources.toml dropped only the gauges, SourceSeries):
    a dashboard went on listing it, and a `rate()` of its errors read 0, not gone."""
    (family,) = fetches.collect()
    return {(sample.labels["source"], sample.labels["outcome"]) for sample in family.samples
            if sample.labels["source"] not in configured}


class SourceSeries(Collector):
    """The per-source gauges, made at each scrape from the sources the database lists.

    Not labelled Gauges: those keep every label value ever set, so a source removed from
    sources.toml went on reporting its last values (a failing one its consecutive errors, and
    the alert on them) until the process restarted. In `serve --workers` they are also this
    worker's own reading, not a file that a dead worker left.
    """

    def __init__(self) -> None:
        self.health: list = []  # SourceHealth of the configured sources, by the latest scrape

    def collect(self):
        stories = GaugeMetricFamily("tidings_source_stories", "Stories stored per source",
                                    labels=["source"])
        errors = GaugeMetricFamily("tidings_source_consecutive_errors", "Consecutive failed fetches",
                                   labels=["source"])
        success = GaugeMetricFamily("tidings_source_last_success_timestamp_seconds",
                                    "When the source was last fetched successfully", labels=["source"])
        # A source whose feed stopped moving (frozen, or moved to another URL while the old
        # one still answers) is fetched successfully every round, with no error to alert on:
        # only the time of its last new story shows it. Stories stored per source are no
        # substitute: under retention they hold steady while new ones come in.
        new_story = GaugeMetricFamily("tidings_source_last_new_story_timestamp_seconds",
                                      "When a fetch of the source last stored a new story",
                                      labels=["source"])
        for h in self.health:
            stories.add_metric([h.name], h.stories)
            if h.enabled:  # one the file turns off fetches nothing: its old failures are no
                # alert (a failing source disabled to quiet it went on firing it)
                errors.add_metric([h.name], h.error_count)
            if h.last_success_at is not None:
                success.add_metric([h.name], h.last_success_at.timestamp())
            if h.last_new_story_at is not None:
                new_story.add_metric([h.name], h.last_new_story_at.timestamp())
        yield from (stories, errors, success, new_story)
