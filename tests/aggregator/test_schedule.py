"""Scheduling decisions: pure, so properties are checked with Hypothesis."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from aggregator.schedule import (
    FetchOutcome,
    ScheduleBounds,
    backoff_s,
    next_check_at,
    publishing_interval_s,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
B = ScheduleBounds(min_interval_s=300, max_interval_s=21600, max_backoff_s=43200, jitter_ratio=0.1)


def test_slow_publisher_is_checked_less_often():
    daily = tuple(NOW - timedelta(days=i) for i in range(6))
    at, interval = next_check_at(NOW, configured_s=900, error_count=0,
                                 outcome=FetchOutcome(ok=True, item_times=daily), bounds=B,
                                 rng=random.Random(1))
    assert interval == B.max_interval_s  # half a day's gap, capped at the max
    assert at > NOW


def test_busy_publisher_keeps_the_configured_interval():
    minutes = tuple(NOW - timedelta(minutes=2 * i) for i in range(20))
    _, interval = next_check_at(NOW, configured_s=900, error_count=0,
                                outcome=FetchOutcome(ok=True, item_times=minutes), bounds=B)
    assert interval == 900


def test_an_interval_longer_than_the_cap_is_kept():
    """`interval = "1d"` is how often at most: max_interval_s (6 h) bounds what the schedule
    stretches (a slow publisher, <ttl>), not the operator's own interval."""
    _, interval = next_check_at(NOW, configured_s=86400, error_count=0,
                                outcome=FetchOutcome(ok=True), bounds=B)
    assert interval == 86400
    _, interval = next_check_at(NOW, configured_s=86400, error_count=0,
                                outcome=FetchOutcome(ok=True, ttl_s=7 * 86400), bounds=B)
    assert interval == 86400
    _, interval = next_check_at(NOW, configured_s=86400, error_count=0,
                                outcome=FetchOutcome(ok=True, not_modified=True,
                                                     last_interval_s=86400), bounds=B)
    assert interval == 86400


def test_server_hints_are_a_floor():
    _, interval = next_check_at(NOW, configured_s=900, error_count=0,
                                outcome=FetchOutcome(ok=True, max_age_s=3600), bounds=B)
    assert interval == 3600
    _, interval = next_check_at(NOW, configured_s=900, error_count=0,
                                outcome=FetchOutcome(ok=True, ttl_s=7200), bounds=B)
    assert interval == 7200


def test_retry_after_is_honoured_within_bounds():
    _, interval = next_check_at(NOW, configured_s=900, error_count=1,
                                outcome=FetchOutcome(ok=False, retry_after_s=5000), bounds=B)
    assert interval == 5000
    _, interval = next_check_at(NOW, configured_s=900, error_count=1,
                                outcome=FetchOutcome(ok=False, retry_after_s=10**9), bounds=B)
    assert interval == B.max_backoff_s


def test_a_failing_source_is_never_retried_more_often_than_its_own_interval():
    """A "1d" source that failed was retried after `max_backoff_s` (12 h): twice a day."""
    for errors in (1, 2, 10):
        _, interval = next_check_at(NOW, configured_s=86400, error_count=errors,
                                    outcome=FetchOutcome(ok=False), bounds=B)
        assert interval == 86400
    # A shorter one still backs off up to the cap.
    assert backoff_s(10, 900, B) == B.max_backoff_s


def test_publishing_interval_needs_three_dates():
    assert publishing_interval_s((NOW, NOW - timedelta(hours=1))) is None
    assert publishing_interval_s(tuple(NOW - timedelta(hours=i) for i in range(4))) == 3600


@given(errors=st.integers(min_value=1, max_value=10_000), base=st.integers(min_value=1, max_value=86400))
def test_backoff_grows_but_never_forever(errors, base):
    b = backoff_s(errors, base, B)
    assert 0 < b <= max(B.max_backoff_s, base) and b >= min(base, B.max_backoff_s)
    assert backoff_s(errors + 1, base, B) >= b


@given(
    configured=st.integers(min_value=1, max_value=10**6),
    errors=st.integers(min_value=0, max_value=50),
    ok=st.booleans(),
    max_age=st.none() | st.integers(min_value=0, max_value=10**8),
    ttl=st.none() | st.integers(min_value=0, max_value=10**8),
    retry=st.none() | st.floats(min_value=0, max_value=1e9),
    seed=st.integers(),
)
def test_next_check_always_in_bounds(configured, errors, ok, max_age, ttl, retry, seed):
    outcome = FetchOutcome(ok=ok, max_age_s=max_age, ttl_s=ttl, retry_after_s=retry)
    at, interval = next_check_at(NOW, configured_s=configured, error_count=errors if not ok else 0,
                                 outcome=outcome, bounds=B, rng=random.Random(seed))
    upper = max(B.max_interval_s, B.max_backoff_s, configured)
    assert B.min_interval_s <= interval <= upper
    delay = (at - NOW).total_seconds()
    assert interval * (1 - B.jitter_ratio) - 1e-6 <= delay <= interval * (1 + B.jitter_ratio) + 1e-6
