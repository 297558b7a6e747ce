"""Pure parts of the related flow's orchestrator (recommender/blocks.py): the page caches,
the address a page names as its own."""

from __future__ import annotations

import pytest

from aggregator.errors import (
    BlockedAddress,
    BodyTooLarge,
    FetchError,
    FetchTimeout,
    HTTPStatusError,
)
from recommender.blocks import (
    LASTING_FAILURE_TTL_S,
    TRANSIENT_FAILURE_TTL_S,
    BadArticle,
    TTLCache,
    declared_elsewhere,
    failure_ttl_s,
)

URL = "https://news.example/story"


@pytest.mark.parametrize("error,ttl", [
    (BadArticle("no article text"), LASTING_FAILURE_TTL_S),
    (HTTPStatusError(403, URL), LASTING_FAILURE_TTL_S),
    (HTTPStatusError(404, URL, retry_after_s=5), LASTING_FAILURE_TTL_S),
    (BodyTooLarge("too big"), LASTING_FAILURE_TTL_S),
    (BlockedAddress("private address"), LASTING_FAILURE_TTL_S),
    (FetchTimeout("no answer in 8 s"), TRANSIENT_FAILURE_TTL_S),
    (FetchError("connection refused"), TRANSIENT_FAILURE_TTL_S),
    (HTTPStatusError(503, URL), TRANSIENT_FAILURE_TTL_S),
    (HTTPStatusError(429, URL, retry_after_s=120), 120),
    (HTTPStatusError(503, URL, retry_after_s=1), TRANSIENT_FAILURE_TTL_S),
    (HTTPStatusError(503, URL, retry_after_s=86400), LASTING_FAILURE_TTL_S),
])
def test_failures_are_remembered_by_kind(error, ttl):
    assert failure_ttl_s(error, 3600) == ttl


def test_failures_are_never_remembered_longer_than_good_pages():
    assert TRANSIENT_FAILURE_TTL_S < LASTING_FAILURE_TTL_S
    assert failure_ttl_s(HTTPStatusError(410, URL), 60) == 60
    assert failure_ttl_s(FetchTimeout("slow"), 0) == 0


def test_an_entry_may_have_its_own_time_to_live():
    now = [0.0]
    cache = TTLCache(3600, clock=lambda: now[0])
    cache.put("good", "page")
    cache.put("bad", "error", ttl_s=30)
    now[0] = 31
    assert cache.get("bad") is None and cache.get("good") == "page"
    now[0] = 3601
    assert cache.get("good") is None


@pytest.mark.parametrize("declared,looked_up", [
    ("https://news.example/story?utm_source=amp", ""),  # the page itself: nothing more to look up
    ("http://news.example/story/", ""),  # a spelling stored_at already tried
    ("https://NEWS.example/world/story", "https://news.example/world/story"),
    ("https://other.example/a#top", "https://other.example/a"),
    ("https://bad..host/a", ""),  # no URL a story could be stored under
    ("", ""),
])
def test_a_page_named_address_is_looked_up_only_when_it_is_another(declared, looked_up):
    assert declared_elsewhere(declared, URL) == looked_up
