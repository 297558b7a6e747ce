"""The fetcher: polite HTTP GETs over one aiohttp session; knows HTTP, never feed formats.

Politeness (STYLE habit 4, after miniflux): conditional GET with stored validators, a truthful
User-Agent, per-host and global concurrency caps, connect/total timeouts, a body-size cap,
gzip/deflate/brotli, Retry-After and Cache-Control max-age reported back to the scheduler
(which owns the bounds), robots.txt for page fetches, permanent redirects reported so the
stored URL can be updated. Redirects are followed here, hop by hop, so an `AddressGuard`
sees every hop. Every aiohttp error is wrapped into aggregator.errors where it enters.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

from aggregator import robots
from aggregator.errors import (
    BlockedAddress,
    BodyTooLarge,
    FetchError,
    FetchTimeout,
    HTTPStatusError,
    RobotsDisallowed,
    TooManyRedirects,
)
from aggregator.netguard import ALLOWED_SCHEMES, AddressGuard, GuardedResolver

DEFAULT_USER_AGENT = "Tidings/0.1 (+https://github.com/tidings; self-hosted news aggregator)"
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_PERMANENT_REDIRECT_STATUSES = frozenset({301, 308})  # RFC 9110 15.4.2 and 15.4.9
_CHUNK_BYTES = 64 * 1024
# RFC 9309 2.4: a cached robots.txt SHOULD NOT be used for more than 24 hours, except when
# it cannot be fetched again; an unreachable one is re-tried after this long.
_ROBOTS_MAX_TTL_S = 24 * 3600.0
_ROBOTS_UNREACHABLE_RETRY_S = 300.0


@dataclass(frozen=True)
class FetchPolicy:
    user_agent: str = DEFAULT_USER_AGENT
    connect_timeout_s: float = 10.0
    total_timeout_s: float = 30.0  # per fetch, all redirect hops and the body included
    max_body_bytes: int = 5_000_000  # after decompression, so a gzip bomb is cut short too
    per_host_limit: int = 2
    global_limit: int = 50
    max_redirects: int = 5
    robots_ttl_s: float = 3600.0  # capped at 24 h (RFC 9309 2.4)

    def __post_init__(self) -> None:
        for name in ("connect_timeout_s", "total_timeout_s", "max_body_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"FetchPolicy.{name} must be positive")
        for name in ("per_host_limit", "global_limit"):
            if getattr(self, name) < 1:
                raise ValueError(f"FetchPolicy.{name} must be at least 1")
        if self.max_redirects < 0:
            raise ValueError("FetchPolicy.max_redirects must not be negative")


@dataclass(frozen=True)
class Validators:
    """What the last successful fetch of a URL returned, for a conditional GET."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class FetchResult:
    url: str  # as asked for
    final_url: str  # after redirects
    status: int
    body: bytes  # decompressed; empty on 304
    content_type: str | None  # the raw header, charset parameter included
    etag: str | None  # on 304 without new validators: the ones we sent, so none are lost
    last_modified: str | None
    not_modified: bool
    permanent_redirect_to: str | None  # where the leading run of 301/308 hops led, if any
    retry_after_s: float | None
    max_age_s: int | None
    elapsed_s: float


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After value (delay-seconds or HTTP-date, RFC 9110 10.2.3).

    Clamped at 0 (a date in the past means now); None when absent or unreadable. Bounds on
    how long we are willing to wait belong to the scheduler.
    """
    if value is None:
        return None
    value = value.strip()
    if not value or not value.isascii():  # HTTP's digits are ASCII; float() reads others too
        return None
    if value.isdigit() and len(value) <= 15:
        # ("²" was a digit to str.isdigit and an error to int(), which failed the fetch of a
        # good feed); longer runs of digits go through float() (inf: unreadable).
        return float(int(value))
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds and seconds != float("inf") else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # HTTP-dates are GMT by definition
    return max(0.0, (when - now).total_seconds())


def parse_max_age(cache_control: str | None) -> int | None:
    """Freshness lifetime in seconds from a Cache-Control header (RFC 9111 5.2.2).

    no-store and no-cache mean "ask again every time": 0. None when the header says nothing
    about freshness. s-maxage is for shared caches; we read only max-age.
    """
    if not cache_control:
        return None
    max_age: int | None = None
    for directive in cache_control.split(","):
        name, _, argument = directive.strip().partition("=")
        name = name.strip().lower()
        if name in ("no-store", "no-cache"):
            return 0
        if name == "max-age":
            argument = argument.strip().strip('"')
            if argument.isdigit():
                max_age = int(argument)
    return max_age


def _host_key(url: URL) -> str:
    return (url.raw_host or "").lower().rstrip(".")


class Fetcher:
    """Owns one aiohttp session; use as `async with Fetcher(policy) as fetcher:`.

    `resolver` replaces DNS (tests map real host names to loopback); `guard` makes every hop
    pass the SSRF checks, on the URL and again on each DNS answer. `clock` is monotonic
    seconds, injected so robots.txt expiry can be tested without sleeping.
    """

    def __init__(
        self,
        policy: FetchPolicy | None = None,
        *,
        resolver: AbstractResolver | None = None,
        guard: AddressGuard | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.policy = policy or FetchPolicy()
        self._resolver = resolver
        self._guard = guard
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._own_resolver: AbstractResolver | None = None
        self._global_slots = asyncio.Semaphore(self.policy.global_limit)
        # A host's semaphore and how many fetches hold or wait for it; dropped at 0 (_host_slot).
        self._host_slots: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}
        self._robots: dict[str, tuple[robots.RobotsRules, float]] = {}
        self._robots_locks: dict[str, asyncio.Lock] = {}

    async def __aenter__(self) -> Fetcher:
        if self._resolver is None:
            # aiohttp closes only resolvers it created itself, so we close this one.
            self._own_resolver = aiohttp.DefaultResolver()
        resolver = self._resolver or self._own_resolver
        assert resolver is not None
        if self._guard is not None:
            resolver = GuardedResolver(resolver, self._guard)
        connector = aiohttp.TCPConnector(
            resolver=resolver,
            limit=self.policy.global_limit,
            limit_per_host=self.policy.per_host_limit,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=None,  # enforced per fetch, across hops, in _fetch
                connect=self.policy.connect_timeout_s,
                sock_connect=self.policy.connect_timeout_s,
            ),
            headers={"User-Agent": self.policy.user_agent},
            # No cookies: sources must not be able to track us across fetches, and
            # every fetch then depends only on its URL and validators.
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=True,
            trust_env=False,  # no proxy from the environment: the guard must see real hops
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._own_resolver is not None:
            await self._own_resolver.close()
            self._own_resolver = None

    async def fetch(self, url: str, validators: Validators | None = None, *,
                    own_host: str | None = None) -> FetchResult:
        """GET `url`, following up to `max_redirects` redirects. `own_host`: the fetch is a
        source's on that host, which alone of the guard's hosts it may reach privately
        (`AddressGuard.scoped`); None: all of them.

        Raises HTTPStatusError for >= 400 (with retry_after_s), BodyTooLarge, FetchTimeout,
        TooManyRedirects, BlockedAddress (guard), or FetchError for anything else.
        """
        return await self._fetch(url, validators, self.policy.max_body_bytes, truncate=False,
                                 own_host=own_host)

    async def fetch_page(self, url: str, *, own_host: str | None = None) -> FetchResult:
        """`fetch` for a page we scrape: each hop's robots.txt (cached per origin) must allow it.

        Raises RobotsDisallowed, or anything `fetch` raises.
        """
        return await self._fetch(
            url, None, self.policy.max_body_bytes, truncate=False, own_host=own_host,
            before_hop=lambda hop: self._check_robots(hop, own_host),
        )

    async def _check_robots(self, url: URL, own_host: str | None = None) -> None:
        rules = await self._robots_rules(url, own_host)
        if not robots.is_allowed(rules, self.policy.user_agent, str(url)):
            raise RobotsDisallowed(f"robots.txt of {url.origin()} disallows {url}")

    def check_url_as_written(self, url: str) -> None:
        """Raise what `fetch` would raise for `url` before any DNS lookup or connection: a
        scheme it does not fetch, or what its guard refuses in the URL itself (a private or
        loopback address written as such, localhost, a port not the web's). A name that
        resolves to a private address, or a redirect to one, is only refused by the fetch."""
        parsed = self._parse_url(url)
        if self._guard is not None:
            self._guard.check_url(parsed)

    # -- internals -------------------------------------------------------------------

    def _parse_url(self, url: str | URL) -> URL:
        try:
            parsed = url if isinstance(url, URL) else URL(url)
        except (ValueError, TypeError) as e:
            raise FetchError(f"not a valid URL: {url!r}") from e
        if parsed.scheme not in ALLOWED_SCHEMES:
            raise BlockedAddress(f"scheme {parsed.scheme!r} is not fetched: {url}")
        if not parsed.raw_host:
            raise FetchError(f"URL has no host: {url}")
        return parsed

    @contextlib.asynccontextmanager
    async def _host_slot(self, url: URL) -> AsyncIterator[None]:
        """One of the host's `per_host_limit` slots. The semaphore goes when nobody holds or
        waits for it: the API's fetcher lives as long as the process and sees a new host with
        many a caller's page, and kept a semaphore for each of them for good."""
        key = _host_key(url)
        entry = self._host_slots.get(key)
        if entry is None:
            entry = self._host_slots[key] = (asyncio.Semaphore(self.policy.per_host_limit), [0])
        slot, users = entry
        users[0] += 1
        try:
            async with slot:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._host_slots[key]

    async def _fetch(
        self,
        url: str,
        validators: Validators | None,
        max_body_bytes: int,
        *,
        truncate: bool,
        before_hop: Callable[[URL], Awaitable[None]] | None = None,
        own_host: str | None = None,
    ) -> FetchResult:
        if self._session is None:
            raise RuntimeError("Fetcher used outside `async with`")
        started_s = time.monotonic()
        current = self._parse_url(url)
        headers: dict[str, str] = {}
        if validators is not None:
            if validators.etag:
                headers["If-None-Match"] = validators.etag
            if validators.last_modified:
                headers["If-Modified-Since"] = validators.last_modified
        budget_s = self.policy.total_timeout_s
        seen = {str(current)}
        permanent_to: str | None = None
        permanent_run = True
        guard = self._guard if self._guard is None or own_host is None else self._guard.scoped(own_host)
        for _hop in range(self.policy.max_redirects + 1):
            if guard is not None:
                await self._check_hop(current, guard)
            if before_hop is not None:
                await before_hop(current)  # outside the slots: it may fetch robots.txt
            # Slots are taken per hop, so a redirect to another host waits for that host.
            async with self._global_slots, self._host_slot(current):
                hop_started_s = time.monotonic()
                try:
                    async with asyncio.timeout(budget_s):
                        outcome = await self._hop(
                            current, headers, max_body_bytes, truncate=truncate
                        )
                except TimeoutError as e:
                    raise FetchTimeout(
                        f"no complete answer from {current} within "
                        f"{self.policy.total_timeout_s:g} s"
                    ) from e
                except aiohttp.ClientError as e:
                    raise FetchError(f"{type(e).__name__} fetching {current}: {e}") from e
                budget_s -= time.monotonic() - hop_started_s
            if isinstance(outcome, _Redirect):
                if outcome.status in _PERMANENT_REDIRECT_STATUSES and permanent_run:
                    permanent_to = str(outcome.location)
                else:
                    permanent_run = False
                current = self._parse_url(outcome.location)
                if str(current) in seen:
                    raise TooManyRedirects(f"redirect loop at {current} (from {url})")
                seen.add(str(current))
                continue
            return self._result(url, current, outcome, validators, permanent_to, started_s)
        raise TooManyRedirects(f"more than {self.policy.max_redirects} redirects from {url}")

    async def _check_hop(self, url: URL, guard: AddressGuard) -> None:
        """Raise BlockedAddress unless `guard` lets this hop be fetched. The connection's
        resolver lets every host of the round's guard through (and aiohttp's DNS cache or a
        pooled connection asks it nothing): a host of another source, which `guard` no longer
        trusts, has its addresses checked here."""
        guard.check_url(url)
        host = url.raw_host or ""
        assert self._guard is not None
        if guard is self._guard or guard.is_allowed_host(host) or not self._guard.is_allowed_host(host):
            return
        resolver = self._resolver or self._own_resolver
        assert resolver is not None
        try:
            async with asyncio.timeout(self.policy.connect_timeout_s):
                found = await resolver.resolve(host, url.port or 0, socket.AF_UNSPEC)
        except (OSError, TimeoutError) as e:
            raise FetchError(f"cannot resolve {host}: {e}") from e
        guard.check_resolved(host, [address["host"] for address in found])

    async def _hop(
        self, url: URL, headers: dict[str, str], max_body_bytes: int, *, truncate: bool
    ) -> _Redirect | _Response:
        assert self._session is not None
        async with self._session.get(url, headers=headers, allow_redirects=False) as response:
            location = response.headers.get("Location")
            if response.status in _REDIRECT_STATUSES and location:
                try:
                    target = url.join(URL(location))
                except ValueError as e:
                    raise FetchError(f"bad Location {location!r} from {url}") from e
                return _Redirect(response.status, target)
            retry_after_s = parse_retry_after(response.headers.get("Retry-After"), _now())
            if response.status >= 400:
                response.close()  # don't drain an error page we will not read
                raise HTTPStatusError(response.status, str(url), retry_after_s)
            body = b""
            if response.status != 304:
                body = await _read_capped(response, max_body_bytes, truncate=truncate)
                if not truncate:
                    body = gunzipped(body, max_body_bytes, str(url))
            return _Response(
                status=response.status,
                body=body,
                content_type=response.headers.get("Content-Type"),
                etag=response.headers.get("ETag"),
                last_modified=response.headers.get("Last-Modified"),
                retry_after_s=retry_after_s,
                max_age_s=parse_max_age(response.headers.get("Cache-Control")),
            )

    def _result(
        self,
        url: str,
        final_url: URL,
        response: _Response,
        validators: Validators | None,
        permanent_to: str | None,
        started_s: float,
    ) -> FetchResult:
        not_modified = response.status == 304
        etag, last_modified = response.etag, response.last_modified
        if not_modified and validators is not None:
            # RFC 9110 15.4.5: a 304 may omit validators; keep the ones that still hold.
            etag = etag or validators.etag
            last_modified = last_modified or validators.last_modified
        return FetchResult(
            url=url,
            final_url=str(final_url),
            status=response.status,
            body=response.body,
            content_type=response.content_type,
            etag=etag,
            last_modified=last_modified,
            not_modified=not_modified,
            permanent_redirect_to=permanent_to if permanent_to != url else None,
            retry_after_s=response.retry_after_s,
            max_age_s=response.max_age_s,
            elapsed_s=time.monotonic() - started_s,
        )

    async def _robots_rules(self, url: URL, own_host: str | None) -> robots.RobotsRules:
        origin = str(url.origin())
        lock = self._robots_locks.setdefault(origin, asyncio.Lock())
        async with lock:  # one robots.txt fetch per origin, however many pages wait
            cached = self._robots.get(origin)
            if cached is not None and cached[1] > self._clock():
                return cached[0]
            rules, ttl_s = await self._fetch_robots(origin, cached[0] if cached else None, own_host)
            self._robots[origin] = (rules, self._clock() + ttl_s)
            return rules

    async def _fetch_robots(
        self, origin: str, previous: robots.RobotsRules | None, own_host: str | None
    ) -> tuple[robots.RobotsRules, float]:
        ttl_s = min(self.policy.robots_ttl_s, _ROBOTS_MAX_TTL_S)
        try:
            result = await self._fetch(
                origin + "/robots.txt", None, robots.MAX_ROBOTS_BYTES, truncate=True,
                own_host=own_host,
            )
        except HTTPStatusError as e:
            # RFC 9309 2.3.1.3: 4xx means "unavailable" and crawlers MAY access anything.
            # 429 is treated as unreachable, like 5xx: the server asks us to back off.
            if 400 <= e.status < 500 and e.status != 429:
                return robots.ALLOW_ALL, ttl_s
            return self._robots_unreachable(previous)
        except TooManyRedirects:
            # RFC 9309 2.3.1.2: more than five redirects MAY be taken as unavailable.
            return robots.ALLOW_ALL, ttl_s
        except BlockedAddress:
            raise
        except FetchError:
            return self._robots_unreachable(previous)
        return robots.parse_robots(result.body), ttl_s

    @staticmethod
    def _robots_unreachable(
        previous: robots.RobotsRules | None,
    ) -> tuple[robots.RobotsRules, float]:
        # RFC 9309 2.3.1.4: a 5xx or network error means the rules are undefined and the
        # crawler MUST assume complete disallow; 2.4 lets a cached copy stand in meanwhile.
        return (previous or robots.DISALLOW_ALL), _ROBOTS_UNREACHABLE_RETRY_S


@dataclass(frozen=True)
class _Redirect:
    status: int
    location: URL


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes
    content_type: str | None
    etag: str | None
    last_modified: str | None
    retry_after_s: float | None
    max_age_s: int | None


def _now() -> datetime:
    return datetime.now(UTC)


def gunzipped(body: bytes, max_body_bytes: int, url: str) -> bytes:
    """`body` unpacked when it is a gzip file served as is (no Content-Encoding, which aiohttp
    undoes itself): sitemaps.org lets sites gzip their sitemaps ("sitemap.xml.gz", served as
    application/x-gzip), and news sites' indexes list such children. Read as XML they failed
    as "not a feed: … not well-formed (invalid token)". The cap holds for the unpacked bytes,
    as for a Content-Encoding (a gzip bomb is cut short)."""
    if not body.startswith(b"\x1f\x8b"):
        return body
    unpack = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = unpack.decompress(body, max_body_bytes + 1)
    except zlib.error as e:
        raise FetchError(f"{url} is a corrupt gzip file: {e}") from e
    if len(out) > max_body_bytes or unpack.unconsumed_tail:
        raise BodyTooLarge(f"{url} unpacks to over the {max_body_bytes} byte cap (a gzip file)")
    if not unpack.eof:
        raise FetchError(f"{url} is a truncated gzip file")
    return out


async def _read_capped(
    response: aiohttp.ClientResponse, max_body_bytes: int, *, truncate: bool
) -> bytes:
    """Read the body in chunks, refusing (or, for robots.txt, cutting) past the cap."""
    declared = response.content_length
    if declared is not None and declared > max_body_bytes and not truncate:
        response.close()
        raise BodyTooLarge(
            f"{response.url} declares {declared} bytes, over the {max_body_bytes} byte cap"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
        if size + len(chunk) > max_body_bytes:
            response.close()  # drop the connection: the rest of the body is not wanted
            if truncate:
                chunks.append(chunk[: max_body_bytes - size])
                break
            raise BodyTooLarge(f"{response.url} body exceeds the {max_body_bytes} byte cap")
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
