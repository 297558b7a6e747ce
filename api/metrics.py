"""Prometheus metrics, one registry per app so tests can build many apps in one process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Histogram(
            "tidings_request_seconds", "HTTP request latency by route", ["route", "method", "status"],
            registry=r, buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.fetches = Counter("tidings_fetches_total", "Source fetches", ["source", "outcome"], registry=r)
        self.stories_collected = Counter("tidings_stories_collected_total", "New stories stored", registry=r)
        self.embedded = Counter("tidings_stories_embedded_total", "Stories embedded", registry=r)
        self.index_size = Gauge("tidings_index_size", "Vectors in this process's index", registry=r)
        self.backlog = Gauge("tidings_embedding_backlog", "Stories waiting for a vector", registry=r)
        self.recipe_current = Gauge(
            "tidings_embedding_recipe_current",
            "0 while the database's stories are embedded with another recipe than this process's "
            "(its index misses them), else 1", registry=r)
        self.events = Counter("tidings_events_total", "Reader events accepted", ["type"], registry=r)
        self.database_up = Gauge("tidings_database_up",
                                 "1 when the last scrape read the database, 0 when it was away", registry=r)
        self.stories_total = Gauge("tidings_stories", "Stories stored (linked copies included)", registry=r)
        self.source_stories = Gauge("tidings_source_stories", "Stories stored per source", ["source"], registry=r)
        self.source_errors = Gauge("tidings_source_consecutive_errors", "Consecutive failed fetches",
                                   ["source"], registry=r)
        self.source_last_success = Gauge("tidings_source_last_success_timestamp_seconds",
                                         "When the source was last fetched successfully", ["source"], registry=r)
        self.block_cache = Counter("tidings_block_cache_total", "Related block cache", ["result"], registry=r)


    def observe_source(self, report) -> None:
        """A collector's SourceReport (in-process collectors only)."""
        outcome = "not_modified" if report.not_modified else ("ok" if report.ok else "error")
        self.fetches.labels(report.name, outcome).inc()
        if report.new:
            self.stories_collected.inc(report.new)
