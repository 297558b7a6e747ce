"""Per-client rate limits (token buckets in memory, per process)."""

from __future__ import annotations

import time
from collections.abc import Callable

from api.errors import ApiError


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000):
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[tuple, tuple[float, float]] = {}

    def allow(self, key: tuple, per_minute: int, cost: float = 1.0) -> bool:
        if per_minute <= 0:
            return True
        now = self.clock()
        tokens, at = self._buckets.get(key, (float(per_minute), now))
        tokens = min(float(per_minute), tokens + (now - at) * per_minute / 60.0)
        if tokens < cost:
            self._buckets[key] = (tokens, now)
            return False
        if len(self._buckets) >= self.max_keys and key not in self._buckets:
            self._buckets.clear()  # bounded memory under a flood of distinct clients
        self._buckets[key] = (tokens - cost, now)
        return True

    def check(self, key: tuple, per_minute: int, cost: float = 1.0) -> None:
        if not self.allow(key, per_minute, cost):
            raise ApiError(429, "rate_limited", f"too many requests; the limit is {per_minute} a minute",
                           {"Retry-After": "60"})
