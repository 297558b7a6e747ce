"""The fetcher against a real local server: each politeness rule and each fault has a test."""

from __future__ import annotations

import asyncio
import socket
import time
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.errors import (
    BlockedAddress,
    BodyTooLarge,
    FetchError,
    FetchTimeout,
    HTTPStatusError,
    RobotsDisallowed,
    TooManyRedirects,
)
from aggregator.fetch import (
    Fetcher,
    FetchPolicy,
    Validators,
    parse_max_age,
    parse_retry_after,
)
from aggregator.netguard import AddressGuard
from tests.localsite import (
    COMPRESSED_TEXT,
    SHARED_DATA_DIR,
    LocalSite,
    LoopbackResolver,
)

FAST = FetchPolicy(connect_timeout_s=1.0, total_timeout_s=2.0)


@asynccontextmanager
async def serving(
    policy: FetchPolicy = FAST,
    *,
    resolver: AbstractResolver | None = None,
    guard: AddressGuard | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[tuple[LocalSite, Fetcher]]:
    """A fresh LocalSite and a Fetcher that reaches any host name on it."""
    resolver = resolver or LoopbackResolver()
    async with (
        LocalSite() as site,
        Fetcher(policy, resolver=resolver, guard=guard, clock=clock) as fetcher,
    ):
        yield site, fetcher


# -- conditional GET -------------------------------------------------------------------


async def test_conditional_get_with_etag_and_last_modified() -> None:
    async with serving() as (site, fetcher):
        site.route(
            "/feed.xml",
            body=b"<rss/>",
            etag='"v1"',
            last_modified="Wed, 26 Nov 2026 06:00:00 GMT",
            content_type="application/rss+xml",
        )
        first = await fetcher.fetch(site.url("/feed.xml"))
        assert (first.status, first.body, first.not_modified) == (200, b"<rss/>", False)
        assert first.content_type == "application/rss+xml"
        assert (first.etag, first.last_modified) == ('"v1"', "Wed, 26 Nov 2026 06:00:00 GMT")

        second = await fetcher.fetch(
            site.url("/feed.xml"), Validators(first.etag, first.last_modified)
        )
        assert (second.status, second.body, second.not_modified) == (304, b"", True)
        assert second.etag == '"v1"'
        sent = site.requests[-1].headers
        assert sent["If-None-Match"] == '"v1"'
        assert sent["If-Modified-Since"] == "Wed, 26 Nov 2026 06:00:00 GMT"

        site.route("/feed.xml", body=b"<rss>new</rss>", etag='"v2"')  # the feed changed
        third = await fetcher.fetch(site.url("/feed.xml"), Validators(second.etag))
        assert (third.status, third.body, third.etag) == (200, b"<rss>new</rss>", '"v2"')


async def test_if_modified_since_alone_and_validators_kept_on_bare_304() -> None:
    async with serving() as (site, fetcher):
        site.route("/lm", body=b"x", last_modified="Wed, 26 Nov 2026 06:00:00 GMT")
        result = await fetcher.fetch(
            site.url("/lm"), Validators(last_modified="Wed, 26 Nov 2026 07:00:00 GMT")
        )
        assert result.not_modified
        site.route("/bare", status=304)  # a 304 that repeats no validator
        kept = await fetcher.fetch(site.url("/bare"), Validators('"abc"', "Mon, 01 Jan 2024"))
        assert (
            kept.not_modified and kept.etag == '"abc"' and kept.last_modified == "Mon, 01 Jan 2024"
        )


# -- Retry-After and Cache-Control -----------------------------------------------------


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_seconds_on_throttling(status: int) -> None:
    async with serving() as (site, fetcher):
        site.route("/busy", status=status, headers={"Retry-After": "120"})
        with pytest.raises(HTTPStatusError) as caught:
            await fetcher.fetch(site.url("/busy"))
        assert caught.value.status == status
        assert caught.value.retry_after_s == 120.0


async def test_retry_after_http_date() -> None:
    async with serving() as (site, fetcher):
        when = datetime.now(UTC) + timedelta(seconds=90)
        site.route("/busy", status=503, headers={"Retry-After": format_datetime(when, usegmt=True)})
        with pytest.raises(HTTPStatusError) as caught:
            await fetcher.fetch(site.url("/busy"))
        assert caught.value.retry_after_s is not None
        assert 85.0 <= caught.value.retry_after_s <= 90.0


def test_parse_retry_after_values() -> None:
    now = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
    assert parse_retry_after("0", now) == 0.0
    assert parse_retry_after(" 3600 ", now) == 3600.0
    assert parse_retry_after("Thu, 26 Nov 2026 08:05:00 GMT", now) == 300.0
    assert parse_retry_after("Thu, 26 Nov 2026 07:00:00 GMT", now) == 0.0  # past: now
    assert parse_retry_after("-5", now) == 0.0
    # "²" and "٣" are digits to str.isdigit and errors to int(); 5,000 nines are too many
    # digits for int(): each failed the fetch of a good feed with a ValueError.
    for junk in (None, "", "soon", "nan", "inf", "\u00b2", "\u0663", "9" * 5000):
        assert parse_retry_after(junk, now) is None


@settings(deadline=None)  # the machine is noisy; we test results, not speed
@given(st.integers(min_value=-(10**6), max_value=10**6))
def test_parse_retry_after_dates_round_trip(offset_s: int) -> None:
    now = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=offset_s), usegmt=True)
    assert parse_retry_after(header, now) == max(0.0, float(offset_s))


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("public", None),
        ("max-age=300", 300),
        ("public, max-age=60, s-maxage=10", 60),
        ('max-age="120"', 120),
        ("max-age=abc", None),
        ("no-cache", 0),
        ("no-store, max-age=100", 0),
        ("MAX-AGE=5", 5),
    ],
)
def test_parse_max_age(header: str | None, expected: int | None) -> None:
    assert parse_max_age(header) == expected


async def test_max_age_is_reported() -> None:
    async with serving() as (site, fetcher):
        site.route("/cached", body=b"x", headers={"Cache-Control": "public, max-age=900"})
        assert (await fetcher.fetch(site.url("/cached"))).max_age_s == 900


# -- concurrency caps ------------------------------------------------------------------


@pytest.mark.parametrize(("per_host_limit", "expected_peak"), [(2, 2), (6, 6)])
async def test_per_host_cap(per_host_limit: int, expected_peak: int) -> None:
    policy = FetchPolicy(total_timeout_s=5.0, per_host_limit=per_host_limit)
    async with serving(policy) as (site, fetcher):
        site.route("/slowish", body=b"ok", delay_s=0.15)
        results = await asyncio.gather(*(fetcher.fetch(site.url("/slowish")) for _ in range(6)))
        assert [r.body for r in results] == [b"ok"] * 6
        assert site.peak_in_flight == expected_peak


async def test_global_cap_across_hosts() -> None:
    policy = FetchPolicy(total_timeout_s=5.0, per_host_limit=4, global_limit=3)
    async with serving(policy) as (site, fetcher):
        site.route("/slowish", body=b"ok", delay_s=0.15)
        urls = [site.url("/slowish", host=f"site{i}.test") for i in range(8)]
        await asyncio.gather(*(fetcher.fetch(url) for url in urls))
        assert site.peak_in_flight == 3
        assert len(site.requests) == 8


async def test_a_fetcher_keeps_no_slot_for_hosts_it_is_done_with() -> None:
    """The API's fetcher lives as long as the process, and callers name any host they like: a
    semaphore kept for every host ever fetched grew with each new one."""
    policy = FetchPolicy(total_timeout_s=5.0, per_host_limit=1)
    async with serving(policy) as (site, fetcher):
        site.route("/slowish", body=b"ok", delay_s=0.05)
        urls = [site.url("/slowish", host=f"site{i % 4}.test") for i in range(8)]
        await asyncio.gather(*(fetcher.fetch(url) for url in urls))
        with pytest.raises(HTTPStatusError):
            await fetcher.fetch(site.url("/status/404", host="gone.test"))
        assert len(site.requests) == 9
        assert fetcher._host_slots == {}


# -- body size -------------------------------------------------------------------------


async def test_body_cap_from_content_length() -> None:
    async with serving(FetchPolicy(max_body_bytes=1000)) as (site, fetcher):
        site.route("/exact", body=b"a" * 1000)
        site.route("/big", body=b"a" * 1001)
        assert len((await fetcher.fetch(site.url("/exact"))).body) == 1000
        with pytest.raises(BodyTooLarge, match="declares 1001"):
            await fetcher.fetch(site.url("/big"))


async def test_body_cap_on_an_endless_stream() -> None:
    # Cut at the cap, not at the total timeout, which ends an endless body with FetchTimeout:
    # no need to time it (`< 2.0` s could fail on a loaded machine).
    async with serving(FetchPolicy(max_body_bytes=300_000, total_timeout_s=5.0)) as (site, fetcher):
        with pytest.raises(BodyTooLarge, match="exceeds"):
            await fetcher.fetch(site.url("/huge"))


async def test_body_cap_counts_decompressed_bytes() -> None:
    bomb = b"\0" * 200_000  # compresses to a few hundred bytes
    async with serving(FetchPolicy(max_body_bytes=50_000)) as (site, fetcher):
        site.route("/bomb", body=bomb, compress="gzip")
        with pytest.raises(BodyTooLarge):
            await fetcher.fetch(site.url("/bomb"))


async def test_empty_body_is_returned_not_refused() -> None:
    async with serving() as (site, fetcher):
        site.route("/empty", body=b"")
        result = await fetcher.fetch(site.url("/empty"))
        assert (result.status, result.body) == (200, b"")


# -- faults ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/slow", "/slow-body"])
async def test_stalled_server_times_out(path: str) -> None:
    # The stall lasts an hour and the default total timeout is 30 s: a guard of 10 s tells the
    # policy's 0.3 s from either without timing it (`< 1.0` s could fail on a loaded machine).
    async with serving(FetchPolicy(total_timeout_s=0.3)) as (site, fetcher):
        with pytest.raises(FetchTimeout):
            await asyncio.wait_for(fetcher.fetch(site.url(path)), 10)


async def test_total_timeout_spans_redirect_hops() -> None:
    async with serving(FetchPolicy(total_timeout_s=0.5)) as (site, fetcher):
        for hop in range(3):
            site.route(
                f"/hop{hop}", status=302, headers={"Location": f"/hop{hop + 1}"}, delay_s=0.2
            )
        site.route("/hop3", body=b"arrived")
        with pytest.raises(FetchTimeout):
            await fetcher.fetch(site.url("/hop0"))


@pytest.mark.parametrize("status", [404, 410, 500])
async def test_error_statuses_raise(status: int) -> None:
    async with serving() as (site, fetcher):
        with pytest.raises(HTTPStatusError) as caught:
            await fetcher.fetch(site.url(f"/status/{status}"))
        assert caught.value.status == status
        assert caught.value.retry_after_s is None


async def test_connection_refused_is_a_fetch_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free_port = sock.getsockname()[1]
    async with Fetcher(FAST) as fetcher:
        with pytest.raises(FetchError) as caught:
            await fetcher.fetch(f"http://127.0.0.1:{free_port}/")
        assert caught.value.__cause__ is not None  # wrapped, with the aiohttp error kept


async def test_not_a_fetchable_url() -> None:
    async with Fetcher(FAST) as fetcher:
        with pytest.raises(BlockedAddress):
            await fetcher.fetch("file:///etc/passwd")
        with pytest.raises(FetchError):
            await fetcher.fetch("http://")


async def test_fetcher_must_be_entered() -> None:
    with pytest.raises(RuntimeError):
        await Fetcher(FAST).fetch("http://127.0.0.1/")


# -- redirects -------------------------------------------------------------------------


async def test_redirect_loop_is_refused() -> None:
    async with serving() as (site, fetcher):
        with pytest.raises(TooManyRedirects, match="loop"):
            await fetcher.fetch(site.url("/redirect-loop"))


async def test_redirect_chain_limit() -> None:
    async with serving(FetchPolicy(max_redirects=3)) as (site, fetcher):
        ok = await fetcher.fetch(site.url("/redirect-chain/3"))
        assert ok.body == b"end of chain" and ok.final_url == site.url("/redirect-chain/0")
        with pytest.raises(TooManyRedirects):
            await fetcher.fetch(site.url("/redirect-chain/4"))


@pytest.mark.parametrize(
    ("hops", "expected_index"),
    [
        ([301], 1),
        ([308], 1),
        ([302], None),
        ([301, 308], 2),
        ([301, 302, 301], 1),  # only the leading run of permanent hops counts
        ([307, 301], None),
    ],
)
async def test_permanent_redirect_is_reported(hops: list[int], expected_index: int | None) -> None:
    async with serving() as (site, fetcher):
        for index, status in enumerate(hops):
            site.route(f"/p{index}", status=status, headers={"Location": f"/p{index + 1}"})
        site.route(f"/p{len(hops)}", body=b"final")
        result = await fetcher.fetch(site.url("/p0"))
        assert result.body == b"final"
        assert result.url == site.url("/p0")
        assert result.final_url == site.url(f"/p{len(hops)}")
        expected = None if expected_index is None else site.url(f"/p{expected_index}")
        assert result.permanent_redirect_to == expected


# -- encodings, User-Agent -------------------------------------------------------------


@pytest.mark.parametrize("path", ["/gzip", "/deflate", "/brotli"])
async def test_compressed_bodies_are_decoded(path: str) -> None:
    async with serving() as (site, fetcher):
        result = await fetcher.fetch(site.url(path))
        assert result.body == COMPRESSED_TEXT
        accepted = site.requests[-1].headers["Accept-Encoding"]
        assert {"gzip", "deflate", "br"} <= {e.strip() for e in accepted.split(",")}


async def test_truthful_user_agent() -> None:
    policy = FetchPolicy(user_agent="Tidings/9.9 (+https://tidings.example/bot)")
    async with serving(policy) as (site, fetcher):
        site.route("/ua", body=b"x")
        await fetcher.fetch(site.url("/ua"))
        assert (
            site.requests[-1].headers["User-Agent"] == "Tidings/9.9 (+https://tidings.example/bot)"
        )
        assert FetchPolicy().user_agent.startswith("Tidings/")


async def test_real_config_host_served_locally() -> None:
    resolver = LoopbackResolver()
    async with serving(resolver=resolver) as (site, fetcher):
        site.route("/news/politics/rss.xml", body=b"<rss/>", host="feeds.bbci.co.uk")
        result = await fetcher.fetch(site.rewrite("https://feeds.bbci.co.uk/news/politics/rss.xml"))
        assert result.body == b"<rss/>"
        assert resolver.resolved == ["feeds.bbci.co.uk"]
        assert site.requests[-1].headers["Host"] == f"feeds.bbci.co.uk:{site.port}"


async def test_loopback_resolver_can_send_every_port_to_the_site() -> None:
    async with LocalSite() as site:
        resolver = LoopbackResolver(port=site.port)
        async with Fetcher(FAST, resolver=resolver) as fetcher:
            site.route("/news/rss.xml", body=b"<rss/>")
            result = await fetcher.fetch("http://feeds.example.org/news/rss.xml")  # port 80
            assert result.body == b"<rss/>"
            assert site.requests[-1].headers["Host"] == "feeds.example.org"


async def test_shared_data_files_are_served() -> None:
    feed = SHARED_DATA_DIR / "news-feeds" / "rss-parser" / "guardian.rss"
    if not feed.is_file():
        pytest.skip(f"shared test data absent: {feed}")
    async with serving() as (site, fetcher):
        result = await fetcher.fetch(site.data_url("news-feeds/rss-parser/guardian.rss"))
        assert result.body == feed.read_bytes()
        again = await fetcher.fetch(
            site.data_url("news-feeds/rss-parser/guardian.rss"),
            Validators(result.etag, result.last_modified),
        )
        assert again.not_modified
        with pytest.raises(HTTPStatusError):
            await fetcher.fetch(site.url("/data/%2E%2E/%2E%2E/main/tests/localsite.py"))


# -- robots.txt ------------------------------------------------------------------------


async def test_robots_disallow_and_cache() -> None:
    async with serving() as (site, fetcher):
        site.set_robots("User-agent: *\nDisallow: /private/\n")
        site.route("/public", body=b"ok")
        site.route("/private/page", body=b"secret")
        pages = await asyncio.gather(*(fetcher.fetch_page(site.url("/public")) for _ in range(5)))
        assert [page.body for page in pages] == [b"ok"] * 5
        with pytest.raises(RobotsDisallowed):
            await fetcher.fetch_page(site.url("/private/page"))
        await fetcher.fetch_page(site.url("/public"))
        assert site.paths_requested().count("/robots.txt") == 1  # cached per origin
        assert "/private/page" not in site.paths_requested()
        # plain fetch (feeds) does not consult robots.txt
        assert (await fetcher.fetch(site.url("/private/page"))).body == b"secret"


async def test_robots_cache_expires() -> None:
    now_s = [1000.0]
    policy = FetchPolicy(total_timeout_s=2.0, robots_ttl_s=60.0)
    async with serving(policy, clock=lambda: now_s[0]) as (site, fetcher):
        site.route("/page", body=b"ok")
        await fetcher.fetch_page(site.url("/page"))
        site.set_robots("User-agent: tidings\nDisallow: /\n")
        await fetcher.fetch_page(site.url("/page"))  # still the cached (absent) robots.txt
        now_s[0] += 61.0
        with pytest.raises(RobotsDisallowed):
            await fetcher.fetch_page(site.url("/page"))
        assert site.paths_requested().count("/robots.txt") == 2


@pytest.mark.parametrize(
    ("robots_status", "allowed"),
    [(404, True), (410, True), (401, True), (500, False), (503, False), (429, False)],
)
async def test_robots_status_per_rfc_9309(robots_status: int, allowed: bool) -> None:
    # 4xx: unavailable, anything goes (2.3.1.3); 5xx: unreachable, complete disallow (2.3.1.4).
    async with serving() as (site, fetcher):
        site.route("/robots.txt", status=robots_status)
        site.route("/page", body=b"ok")
        if allowed:
            assert (await fetcher.fetch_page(site.url("/page"))).body == b"ok"
        else:
            with pytest.raises(RobotsDisallowed):
                await fetcher.fetch_page(site.url("/page"))


async def test_robots_unreachable_keeps_the_last_good_copy() -> None:
    now_s = [0.0]
    policy = FetchPolicy(total_timeout_s=2.0, robots_ttl_s=60.0)
    async with serving(policy, clock=lambda: now_s[0]) as (site, fetcher):
        site.set_robots("User-agent: *\nDisallow: /private/\n")
        site.route("/page", body=b"ok")
        await fetcher.fetch_page(site.url("/page"))
        site.route("/robots.txt", status=503)
        now_s[0] += 120.0
        assert (await fetcher.fetch_page(site.url("/page"))).body == b"ok"


async def test_robots_body_over_500_kib_is_cut_not_refused() -> None:
    async with serving(FetchPolicy(max_body_bytes=1000)) as (site, fetcher):
        padding = "# padding\n" * 60_000  # 600 kB
        site.set_robots("User-agent: *\nDisallow: /private/\n" + padding)
        site.route("/private/x", body=b"x")
        with pytest.raises(RobotsDisallowed):
            await fetcher.fetch_page(site.url("/private/x"))


async def test_robots_of_a_redirect_target_host_is_asked_too() -> None:
    async with serving() as (site, fetcher):
        site.route("/robots.txt", body="User-agent: *\nDisallow: /\n", host="strict.test")
        site.route("/article", body=b"article")
        moved = site.url("/article", host="strict.test")
        with pytest.raises(RobotsDisallowed):
            await fetcher.fetch_page(site.url(f"/redirect?to={moved}", host="open.test"))
        assert "/article" not in site.paths_requested()


async def test_page_fetches_do_not_deadlock_on_a_global_limit_of_one() -> None:
    policy = FetchPolicy(total_timeout_s=2.0, global_limit=1)
    async with serving(policy) as (site, fetcher):
        site.route("/page", body=b"ok")
        urls = [site.url("/page", host=f"h{i}.test") for i in range(4)]
        async with asyncio.timeout(5):
            results = await asyncio.gather(*(fetcher.fetch_page(u) for u in urls))
        assert [r.body for r in results] == [b"ok"] * 4


@pytest.mark.parametrize(
    "bad",
    [{"per_host_limit": 0}, {"global_limit": 0}, {"total_timeout_s": 0}, {"max_redirects": -1}],
)
def test_policy_rejects_nonsense(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        FetchPolicy(**bad)


# -- SSRF guard in the fetcher ---------------------------------------------------------


def _guarded(allowed_hosts: frozenset[str] = frozenset()) -> dict[str, AddressGuard]:
    return {"guard": AddressGuard(allowed_hosts)}


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "[::ffff:127.0.0.1]",
        "2130706433",
        "0x7f000001",
        "0x7f.0.0.1",
        "127.1",
        "10.0.0.1",
    ],
)
async def test_guard_refuses_private_literals(host: str) -> None:
    async with serving(**_guarded()) as (site, fetcher):
        site.route("/secret", body=b"secret")
        with pytest.raises(BlockedAddress):
            await fetcher.fetch(f"http://{host}:{site.port}/secret")
        assert site.requests == []  # refused before any connection


async def test_guard_refuses_a_name_resolving_to_loopback() -> None:
    resolver = LoopbackResolver()
    async with serving(resolver=resolver, **_guarded()) as (site, fetcher):
        resolver.port = site.port  # the URL names port 80, as a caller's must
        site.route("/secret", body=b"secret")
        with pytest.raises(BlockedAddress, match="non-public"):
            await fetcher.fetch("http://innocent.example/secret")
        assert site.requests == []


async def test_guard_refuses_redirects_from_an_allowed_host_to_private_ones() -> None:
    resolver = LoopbackResolver()
    async with serving(resolver=resolver, **_guarded(frozenset({"allowed.test"}))) as (
        site,
        fetcher,
    ):
        resolver.port = site.port
        site.route("/secret", body=b"secret")
        assert (await fetcher.fetch(site.url("/secret", host="allowed.test"))).body == b"secret"
        for target in (
            site.url("/secret"),  # literal loopback
            "http://other.test/secret",  # name resolving to loopback
            f"http://0x7f000001:{site.port}/secret",
            "http://169.254.169.254/latest/meta-data/",
        ):
            site.reset_log()
            with pytest.raises(BlockedAddress):
                await fetcher.fetch(site.url(f"/redirect?to={target}", host="allowed.test"))
            assert site.paths_requested() == [f"/redirect?to={target}"]


async def test_guard_refuses_a_redirect_to_a_port_other_than_the_webs() -> None:
    """An allowed host (or any public page) redirecting to a public host's Redis port: refused
    before the name is even resolved, so nothing connects there."""
    resolver = LoopbackResolver()
    guard = AddressGuard(frozenset({"allowed.test"}))
    async with serving(resolver=resolver, guard=guard) as (site, fetcher):
        target = "http://redis.public.test:6379/"
        with pytest.raises(BlockedAddress, match="port 6379"):
            await fetcher.fetch(site.url(f"/redirect?to={target}", host="allowed.test"))
        assert site.paths_requested() == [f"/redirect?to={target}"]
        assert "redis.public.test" not in resolver.resolved


async def test_guard_applies_to_robots_and_pages() -> None:
    async with serving(**_guarded()) as (site, fetcher):
        with pytest.raises(BlockedAddress):
            await fetcher.fetch_page(site.url("/page", host="intranet.test"))
        assert site.requests == []


def test_compressed_fixture_is_really_compressed() -> None:
    # guards the encoding tests above against a site that silently sends plain text
    assert len(zlib.compress(COMPRESSED_TEXT)) < len(COMPRESSED_TEXT) // 10


# -- gzip files served as they are (sitemap.xml.gz) ------------------------------------


async def test_a_gzip_file_without_content_encoding_is_unpacked() -> None:
    """sitemaps.org allows gzipped sitemaps, served as application/x-gzip with no
    Content-Encoding; their bytes reached the parser still packed."""
    import gzip

    xml = b'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">' + (
        b"<url><loc>https://news.example/a</loc></url>" * 50) + b"</urlset>"
    async with serving(FetchPolicy(max_body_bytes=5_000)) as (site, fetcher):
        site.route("/sitemap.xml.gz", body=gzip.compress(xml), content_type="application/x-gzip")
        site.route("/bomb.xml.gz", body=gzip.compress(b"\0" * 200_000), content_type="application/x-gzip")
        site.route("/cut.xml.gz", body=gzip.compress(xml)[:-20], content_type="application/x-gzip")
        assert (await fetcher.fetch(site.url("/sitemap.xml.gz"))).body == xml
        with pytest.raises(BodyTooLarge, match="unpacks to over the 5000 byte cap"):
            await fetcher.fetch(site.url("/bomb.xml.gz"))
        with pytest.raises(FetchError, match="truncated gzip"):
            await fetcher.fetch(site.url("/cut.xml.gz"))


async def test_status_errors_name_the_status_and_the_wait() -> None:
    """"HTTP 410 from URL" and "HTTP 429 from URL": what `sources list` showed, without the
    meaning of the code or how long the server asked us to stay away."""
    async with serving() as (site, fetcher):
        site.route("/limited", status=429, headers={"Retry-After": "7200"})
        with pytest.raises(HTTPStatusError) as gone:
            await fetcher.fetch(site.url("/status/410"))
        assert str(gone.value) == f"HTTP 410 Gone from {site.url('/status/410')}"
        with pytest.raises(HTTPStatusError) as limited:
            await fetcher.fetch(site.url("/limited"))
        assert str(limited.value) == f"HTTP 429 Too Many Requests from {site.url('/limited')}; asked to wait 2 h"
    assert str(HTTPStatusError(520, "http://x.example/f", 90)) == "HTTP 520 from http://x.example/f; asked to wait 90 s"
