"""Per-client rate limits: token buckets in this process's memory (`RateLimiter`), or in a
file that the workers of one `serve --workers` all map (`SharedRateLimiter`)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import mmap
import os
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from itertools import islice

from api.errors import ApiError

# The IPv6 prefix one subscriber gets at the least (RFC 6177: a /64 per network), within which
# a host picks new addresses at will (SLAAC privacy addresses, RFC 8981).
IPV6_CLIENT_PREFIX = 64


def client_key(host: str) -> str:
    """The bucket a client address is charged to: an IPv4 address as it is, an IPv6 one by its
    /64. Keyed by the whole IPv6 address, one host with an ordinary /64 had 2**64 buckets: a
    fresh address per request and the per-client limits never applied. An IPv4-mapped address
    is its IPv4; anything that is no address (a test client's name) stays as it is."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(addr, ipaddress.IPv4Address):
        return str(addr)
    if addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    prefix = int(addr) >> (128 - IPV6_CLIENT_PREFIX) << (128 - IPV6_CLIENT_PREFIX)
    return f"{ipaddress.IPv6Address(prefix)}/{IPV6_CLIENT_PREFIX}"


def spend(tokens: float, elapsed_s: float, per_minute: int, cost: float) -> tuple[bool, float]:
    """A token bucket's answer and the tokens it keeps: `tokens` refilled at `per_minute` a
    minute for `elapsed_s` (up to a minute's worth, the burst a client may save up), less
    `cost` when there is that much; a refused request takes nothing."""
    tokens = min(float(per_minute), tokens + elapsed_s * per_minute / 60.0)
    if tokens < cost:
        return False, tokens
    return True, tokens - cost


class Limiter:
    """Token buckets by key: `allow` charges `cost` to a key's bucket of `per_minute` (0 = no
    limit) and says whether it had that much."""

    def allow(self, key: tuple, per_minute: int, cost: float = 1.0) -> bool:
        raise NotImplementedError

    def check(self, key: tuple, per_minute: int, cost: float = 1.0) -> None:
        if not self.allow(key, per_minute, cost):
            raise ApiError(429, "rate_limited", f"too many requests; the limit is {per_minute} a minute",
                           {"Retry-After": "60"})


class RateLimiter(Limiter):
    """The buckets in this process's memory."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000):
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[tuple, tuple[float, float]] = {}

    def allow(self, key: tuple, per_minute: int, cost: float = 1.0) -> bool:
        if per_minute <= 0:
            return True
        now = self.clock()
        # Popped and put back: the dict's order is then least recently seen first.
        tokens, at = self._buckets.pop(key, (float(per_minute), now))
        if len(self._buckets) >= self.max_keys:
            # Bounded memory under a flood of distinct clients: forget the tenth seen longest
            # ago. Clearing all (as before) let a flood of addresses reset a throttled
            # client's bucket; one that keeps knocking is recent, so it stays throttled.
            for old in list(islice(self._buckets, max(1, self.max_keys // 10))):
                del self._buckets[old]
        allowed, tokens = spend(tokens, now - at, per_minute, cost)
        self._buckets[key] = (tokens, now)
        return allowed


# Where the supervisor of `serve --workers` tells its workers the buckets' file is (they
# inherit its environment): set by api.workers, not an operator's setting.
SHARED_LIMITS_ENV = "TIDINGS_SHARED_LIMITS"
# One slot: the key's hash (0 = free), its tokens, when it was last charged (time.monotonic).
SLOT = struct.Struct("<Qdd")
# 3 MiB: room for the in-memory limiter's 100,000 keys and some, so probes rarely find no room.
SHARED_SLOTS = 1 << 17
# The slots a key may live in, from its hash on: all are read on every charge.
PROBE = 8


def key_hash(key: tuple) -> int:
    """A key's 64 bits, the same in every process (Python's hash of a str is salted per
    process); never 0, which marks a free slot."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") or 1


class SharedRateLimiter(Limiter):
    """The buckets in a file mapped by every worker of one `serve --workers`, so a client's
    limit holds across them: the kernel hands each connection to whichever worker accepts it,
    and with buckets in each worker's memory every limit was N times looser under N workers.

    The file is a fixed table of slots (`SLOT`), so a flood of distinct clients cannot grow it:
    a key lives in one of the `PROBE` slots from its hash on, and when all of them hold other
    keys it takes the one charged longest ago (a client that keeps knocking is recent, so it
    keeps its bucket and stays throttled). Slots are never freed, so a key is never found past
    a free one. Each charge holds an flock on the file: workers are processes, and the lock
    goes with a worker that dies. Times are time.monotonic: one clock (CLOCK_MONOTONIC) for
    every process of the machine."""

    def __init__(self, path: str | os.PathLike, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._fd = os.open(path, os.O_RDWR)
        self._map = mmap.mmap(self._fd, 0)
        self.slots = len(self._map) // SLOT.size
        # flock excludes other workers only: two threads of one worker share the descriptor,
        # and with it the lock. The API charges from its event loop, but nothing says so.
        self._local = threading.Lock()

    @staticmethod
    def create(path: str | os.PathLike, slots: int = SHARED_SLOTS) -> None:
        """A new file of free slots (zeros; sparse until keys land)."""
        with open(path, "xb") as f:
            f.truncate(slots * SLOT.size)

    def allow(self, key: tuple, per_minute: int, cost: float = 1.0) -> bool:
        if per_minute <= 0:
            return True
        h = key_hash(key)
        with self._local:
            return self._charge(h, per_minute, cost)

    def _charge(self, h: int, per_minute: int, cost: float) -> bool:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            # Read under the lock, so the times written to a slot only go forward.
            now = self.clock()
            offset = self._slot_of(h) * SLOT.size
            held, tokens, at = SLOT.unpack_from(self._map, offset)
            if held != h:  # a new key, or a slot taken from one gone quiet
                tokens, at = float(per_minute), now
            allowed, tokens = spend(tokens, now - at, per_minute, cost)
            SLOT.pack_into(self._map, offset, h, tokens, now)
            return allowed
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _slot_of(self, h: int) -> int:
        """The slot of key hash `h`: its own, else the first free one of its probe, else the
        one there charged longest ago."""
        oldest, oldest_at = -1, float("inf")
        for step in range(PROBE):
            i = (h + step) % self.slots
            held, _, at = SLOT.unpack_from(self._map, i * SLOT.size)
            if held == h or held == 0:
                return i
            if at < oldest_at:
                oldest, oldest_at = i, at
        return oldest

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)


class InFlight:
    """How much work each client has under way; `slot` refuses one piece past the limit."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()

    @contextlib.contextmanager
    def slot(self, key: str, limit: int, what: str) -> Iterator[Callable[[], None]]:
        """A `take` to call when the work really starts (ApiError 429 past `limit`, 0 = none);
        what was taken is given back when the block ends."""
        taken = False

        def take() -> None:
            nonlocal taken
            if taken:
                return
            if limit > 0 and self.counts[key] >= limit:
                raise ApiError(429, "too_many_at_once",
                               f"too many {what} under way for this client; the limit is {limit} "
                               "at once", {"Retry-After": "5"})
            self.counts[key] += 1
            taken = True

        try:
            yield take
        finally:
            if taken:
                self.counts[key] -= 1
                if not self.counts[key]:
                    del self.counts[key]
