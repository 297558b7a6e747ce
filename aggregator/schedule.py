"""When is a source next due? Pure decisions over the source's recorded state.

The database is the schedule (after miniflux): these functions only compute the next check
time, the adapted interval and the back-off from what the store holds and what a fetch said.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class ScheduleBounds:
    min_interval_s: int = 300
    max_interval_s: int = 21600
    max_backoff_s: int = 43200
    jitter_ratio: float = 0.1


@dataclass(frozen=True)
class FetchOutcome:
    """What one fetch of a source told the scheduler."""

    ok: bool
    new_stories: int = 0
    not_modified: bool = False
    retry_after_s: float | None = None  # 429/503 Retry-After
    max_age_s: int | None = None  # Cache-Control max-age
    ttl_s: int | None = None  # RSS <ttl>
    item_times: tuple[datetime, ...] = ()  # publication times seen in the document
    # On a 304: the interval the last good fetch chose, from the document it read then.
    last_interval_s: int | None = None


def publishing_interval_s(item_times: tuple[datetime, ...]) -> float | None:
    """Median gap between consecutive items: how often the source really publishes."""
    times = sorted(t for t in item_times if t is not None)
    if len(times) < 3:
        return None
    gaps = sorted((b - a).total_seconds() for a, b in zip(times, times[1:], strict=False))
    gaps = [g for g in gaps if g > 0]
    if not gaps:
        return None
    return gaps[len(gaps) // 2]


def adapt_interval_s(configured_s: int, outcome: FetchOutcome, bounds: ScheduleBounds) -> int:
    """Interval for the next check of a healthy source.

    Starts from the operator's interval; a source that publishes slower than that is checked
    less often (half its publishing gap), never faster than configured. Server hints (max-age,
    <ttl>) are honoured as a floor: they are the publisher asking us to wait. A 304 brings no
    document, so the interval its last read chose stands: without it, a daily publisher or a
    <ttl> of 2 h was checked every 15 min again from its first 304 on.

    `max_interval_s` caps what the schedule stretches, not the operator's own interval: a
    source set to "1d" ("how often at most") was checked every 6 h, the default cap.
    """
    interval = float(configured_s)
    if outcome.not_modified and outcome.last_interval_s:
        interval = max(interval, float(outcome.last_interval_s))
    gap = publishing_interval_s(outcome.item_times)
    if gap is not None:
        interval = max(interval, gap / 2)
    for hint in (outcome.max_age_s, outcome.ttl_s):
        if hint:
            interval = max(interval, float(hint))
    longest = max(bounds.max_interval_s, configured_s)
    return int(min(max(interval, bounds.min_interval_s), longest))


def backoff_s(error_count: int, base_s: int, bounds: ScheduleBounds) -> int:
    """Exponential back-off after `error_count` consecutive failures, capped: never forever.

    The cap is `max_backoff_s` or the source's own interval (`base_s`), whichever is longer,
    as `max_interval_s` is in `adapt_interval_s`: a failing "1d" source was retried every
    12 h, the default cap, more often than its operator allows it to be read at all."""
    exp = min(error_count - 1, 16)
    return int(min(base_s * (2 ** max(exp, 0)), max(bounds.max_backoff_s, base_s)))


def next_check_at(
    now: datetime,
    *,
    configured_s: int,
    error_count: int,
    outcome: FetchOutcome,
    bounds: ScheduleBounds,
    rng: random.Random | None = None,
) -> tuple[datetime, int]:
    """(next check time, interval used) after a fetch; `error_count` includes this outcome."""
    rng = rng or random.Random()
    if outcome.ok:
        interval = adapt_interval_s(configured_s, outcome, bounds)
    else:
        interval = backoff_s(error_count, max(configured_s, bounds.min_interval_s), bounds)
    if outcome.retry_after_s is not None:
        # Retry-After is the server's word (RFC 9110 §10.2.3); bounded so a typo cannot park a
        # source for a year.
        interval = max(interval, int(min(outcome.retry_after_s, bounds.max_backoff_s)))
    jitter = interval * bounds.jitter_ratio * rng.uniform(-1.0, 1.0)
    return now + timedelta(seconds=max(1.0, interval + jitter)), interval


def is_due(next_at: datetime | None, now: datetime) -> bool:
    return next_at is None or next_at <= now
