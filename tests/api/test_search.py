"""GET /v1/search over the real stack: BBC stories in SQLite, the real indexes, the hashing
embedder (plumbing; the real model's quality is tests/recommender/test_search_quality.py)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from aggregator.model import StoryDraft
from tests.api.conftest import free_port, make_stack, start_server, stop_stack

NOW = datetime.now(UTC)
# A BBC politics story republished by a wire site, and an old report only the age filter drops.
WIRE_URL = "https://wire.example/2026/howard-copy"
OLD_URL = "https://archive.example/2004/lighthouse"
OLD_TITLE = "Lighthouse keepers vote on strike over pensions"
# A brief: its text is its headline, so the headline typed reads as the story itself (the
# related ranking's "article republished", TF-IDF cosine ~1).
BRIEF_URL = "https://wire.example/2026/ferry-brief"
BRIEF_TITLE = "Parliament recalled for emergency vote on ferry safety"


@pytest.fixture(scope="module")
async def stack(tmp_path_factory, shared_data):
    from tests.datasets import bbc_records

    first = bbc_records(shared_data, categories=("politics",), limit=1)[0]
    extra = [
        StoryDraft(url=WIRE_URL, title=first["title"], summary=first["summary"],
                   text=first["text"], site="wire.example", source="wire", category="politics",
                   published_at=NOW - timedelta(hours=1)),
        StoryDraft(url=OLD_URL, title=OLD_TITLE,
                   text="Lighthouse keepers voted on a strike over their pensions, the union said.",
                   site="archive.example", source="archive", category="politics",
                   published_at=NOW - timedelta(days=30)),
        StoryDraft(url=BRIEF_URL, title=BRIEF_TITLE, text=BRIEF_TITLE + ".", site="wire.example",
                   source="wire", category="politics", published_at=NOW),
    ]
    st, server, task = await make_stack(tmp_path_factory.mktemp("search"), shared_data,
                                        extra_drafts=extra)
    extra_servers = []

    async def serve_variant(**api_changes) -> str:
        """The same services behind an app built with other [api] settings; its base URL."""
        from api.app import create_app

        settings = st.svc.settings
        svc = dataclasses.replace(st.svc, settings=dataclasses.replace(
            settings, api=dataclasses.replace(settings.api, **api_changes)))
        port = free_port()
        extra_servers.append(await start_server(create_app(svc), port))
        return f"http://127.0.0.1:{port}"

    st.serve_variant = serve_variant
    st.app = server.config.app
    yield st
    for srv, t in extra_servers:
        srv.should_exit = True
        await t
    await stop_stack(st, server, task)


@pytest.fixture
async def http(stack):
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=20) as client:
        yield client


async def search(http, q: str, **params) -> httpx.Response:
    return await http.get("/v1/search", params={"q": q, **params})


@pytest.mark.parametrize("params,code,names", [
    ({}, "invalid_request", "q"),
    ({"q": ""}, "invalid_request", "q"),
    ({"q": "x" * 201}, "invalid_request", "q"),
    ({"q": " ?! -- … "}, "no_query", "q"),
    ({"q": "budget", "k": 0}, "invalid_request", "k"),
    ({"q": "budget", "max_age_days": -1}, "invalid_request", "max_age_days"),
])
async def test_a_query_without_words_or_out_of_bounds_is_a_422_naming_it(http, params, code, names):
    r = await http.get("/v1/search", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == code
    assert r.json()["error"]["message"].startswith(names)


async def test_a_query_is_measured_once_its_spaces_collapse(http):
    # q was checked at 200 characters as sent, so words padded with spaces (a form's text
    # area) were "at most 200 characters", though searched as "budget tax".
    r = await search(http, "budget" + " " * 250 + "tax")
    assert r.status_code == 200, r.text
    assert r.json()["query"] == "budget tax"
    r = await search(http, "budget " + "x" * 200)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    assert "longer than 200" in r.json()["error"]["message"]


async def test_a_headline_typed_as_the_query_finds_that_story_first(stack, http):
    """Related blocks drop a candidate under the query's own headline as the article itself;
    a search must answer with it."""
    stories = [(await http.get("/v1/stories", params={"limit": 200})).json()["items"]]
    by_url = {s["url"]: s for s in stories[0]}
    for record in stack.records[1:40:6]:  # not the one with a wire copy
        r = await search(http, record["title"], k=5)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["query"] == " ".join(record["title"].split()).casefold()
        assert body["items"][0]["id"] == by_url[record["url"]]["id"], record["title"]
        assert body["took_ms"] >= 0
    items = (await search(http, BRIEF_TITLE, k=5)).json()["items"]
    assert items[0]["url"] == BRIEF_URL


async def test_copies_of_one_story_show_once_naming_the_other_site(stack, http):
    first = stack.records[0]
    items = (await search(http, first["title"], k=5)).json()["items"]
    urls = [c["url"] for c in items]
    assert (first["url"] in urls) != (WIRE_URL in urls), urls  # one of the two, not both
    top = items[0]
    assert top["url"] in (first["url"], WIRE_URL)
    other = "wire.example" if top["site"] == "bbc.co.uk" else "bbc.co.uk"
    assert top["reason"].endswith(f"also reported by {other}"), top["reason"]


async def test_reasons_name_the_query_words_a_story_carries(http):
    items = (await search(http, "Lighthouse keepers strike", k=3)).json()["items"]
    assert items[0]["url"] == OLD_URL
    assert items[0]["reason"] == "matches 'lighthouse', 'keepers', 'strike'"
    assert all(c["reason"] for c in items)


async def test_filters_are_the_related_blocks(http):
    q = "Lighthouse keepers strike over pensions"
    # Both sections write "film" and "campaign": only the section asked for is shown.
    ent = (await search(http, "film campaign", category="ENTERTAINMENT", k=10)).json()["items"]
    assert ent and {c["category"] for c in ent} == {"entertainment"}
    # No entertainment story tells of the strike: it showed ten of them "about the same
    # subject" (`search.SEARCH_MIN_DENSE`).
    assert (await search(http, q, category="entertainment", k=10)).json()["items"] == []
    urls = [c["url"] for c in (await search(http, q, k=10)).json()["items"]]
    assert OLD_URL in urls
    for params in ({"max_age_days": 7}, {"exclude_site": "WWW.Archive.example"},
                   {"site": "https://bbc.co.uk/news"}):
        items = (await search(http, q, k=10, **params)).json()["items"]
        assert items and OLD_URL not in [c["url"] for c in items], params
    only = (await search(http, q, k=10, site="archive.example")).json()["items"]
    assert [c["url"] for c in only] == [OLD_URL]


async def test_one_search_however_spelled_is_cached_and_revalidated(http):
    a = await search(http, "Labour  ELECTION campaign", k=4)
    b = await search(http, " labour election Campaign ", k=4)
    assert a.status_code == b.status_code == 200
    assert a.headers["etag"] == b.headers["etag"] and a.content == b.content  # the cached bytes
    assert a.headers["cache-control"] == "public, max-age=60"
    r = await http.get("/v1/search", params={"q": "labour election campaign", "k": 4},
                       headers={"If-None-Match": a.headers["etag"]})
    assert r.status_code == 304


async def test_each_search_that_embeds_is_charged_to_the_text_limit(stack):
    """A search embeds its query as POST /v1/related embeds a text: the same per-client limit.
    A cached answer embeds nothing and costs nothing."""
    base = await stack.serve_variant(related_text_per_minute=2)
    async with httpx.AsyncClient(base_url=base, timeout=20) as client:
        assert (await search(client, "film awards")).status_code == 200
        assert (await search(client, "tax plans")).status_code == 200
        for _ in range(3):
            assert (await search(client, "Film  Awards")).status_code == 200  # cached
        r = await search(client, "school dinners")
        assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
        r = await client.post("/v1/related", json={"title": "Chancellor budget", "text": "Tax."})
        assert r.status_code == 429  # one bucket for both


async def arrives(stack, url: str, title: str, text: str) -> None:
    """A wire story stored, indexed and followed by the running corpus, as a collect gives it."""
    await stack.svc.store.upsert_stories([StoryDraft(
        url=url, title=title, text=text, site="wire.example", source="wire",
        category="politics", published_at=NOW)], NOW)
    await stack.svc.indexer.drain()
    await stack.svc.corpus.follow()


async def test_a_story_that_answers_a_cached_search_is_found_at_once(stack, http):
    """A search is cached as a block is, until a story arrives that could change it: the
    story about the searched words is in the next answer, not after the cache's 5 minutes."""
    q = "Zebra crossing protest in Carlisle"
    before = await search(http, q, k=3)
    assert before.status_code == 200
    assert (await search(http, q, k=3)).headers["etag"] == before.headers["etag"]
    url = "https://wire.example/2026/zebra-crossing"
    await arrives(stack, url, "Carlisle parents stage zebra crossing protest",
                  "Parents in Carlisle protested for a zebra crossing outside the school.")
    after = (await search(http, q, k=3)).json()["items"]
    assert after[0]["url"] == url


async def test_another_page_of_a_search_is_cut_from_its_ranking(stack):
    """A search asked again with another k (a page of 20 after one of 10, a box of 5) is cut
    from the ranking the first made: it embeds nothing, so it costs nothing of the text limit,
    and shows the same first stories."""
    base = await stack.serve_variant(related_text_per_minute=1)
    async with httpx.AsyncClient(base_url=base, timeout=20) as client:
        ten = await search(client, "prime minister election", k=10)
        assert ten.status_code == 200
        ids = [c["id"] for c in ten.json()["items"]]
        for k in (20, 5):
            r = await search(client, "prime minister election", k=k)
            assert r.status_code == 200, (k, r.text)
            assert [c["id"] for c in r.json()["items"]][:10] == ids[:k]
        assert (await search(client, "school dinners")).status_code == 429  # one embedding


async def test_a_story_that_answers_a_kept_ranking_is_found_at_once(stack, http):
    """The ranking a search's pages are cut from is thrown away as a cached block is: a page
    not asked before shows the story that arrived since the first page."""
    q = "Walrus sighting delights Whitby harbour"
    assert (await search(http, q, k=3)).status_code == 200
    url = "https://wire.example/2026/whitby-walrus"
    await arrives(stack, url, "Walrus sighting delights crowds at Whitby harbour",
                  "A walrus was seen resting in Whitby harbour, delighting crowds.")
    assert (await search(http, q, k=5)).json()["items"][0]["url"] == url


async def ranking_cache_counts(http) -> dict[str, float]:
    """tidings_search_ranking_cache_total by result, as /metrics shows it now."""
    from tests.api.test_metrics import samples

    got = samples((await http.get("/metrics")).text)
    return {dict(labels)["result"]: n for (name, labels), n in got.items()
            if name == "tidings_search_ranking_cache_total"}


async def test_the_rankings_a_search_reads_are_counted_for_the_operator(stack):
    """/metrics had no series for the kept rankings: an operator could not see what they
    saved. A search ranks (a miss); the same words with another k are cut from it (a hit); a
    k past 20 reads it and ranks one deeper. Each series is there from the start, at 0."""
    base = await stack.serve_variant()  # its own caches and counters
    q = "Chancellor budget tax plans"
    async with httpx.AsyncClient(base_url=base, timeout=20) as client:
        seen = [await ranking_cache_counts(client)]
        for k in (10, 5, 40):
            assert (await search(client, q, k=k)).status_code == 200
            seen.append(await ranking_cache_counts(client))
    assert seen == [
        {"hit": 0, "miss": 0, "stale": 0, "joined": 0},
        {"hit": 0, "miss": 1, "stale": 0, "joined": 0},  # k=10: the ranking of 20 made
        {"hit": 1, "miss": 1, "stale": 0, "joined": 0},  # k=5: cut from it
        {"hit": 2, "miss": 2, "stale": 0, "joined": 0},  # k=40: it, and one of 40 made
    ], seen


async def test_a_ranking_thrown_away_for_a_story_since_counts_as_stale(stack):
    """A ranking ranked again because a story arrived that could change it is "stale", not a
    "miss": the operator tells a collection that keeps invalidating searches from searches
    never asked before."""
    base = await stack.serve_variant()
    q = "Narwhal spotted off Orkney coast"
    async with httpx.AsyncClient(base_url=base, timeout=20) as client:
        assert (await search(client, q, k=3)).status_code == 200
        before = await ranking_cache_counts(client)
        await arrives(stack, "https://wire.example/2026/orkney-narwhal",
                      "Narwhal spotted off the Orkney coast", "A narwhal was seen off Orkney.")
        assert (await search(client, q, k=5)).status_code == 200
        after = await ranking_cache_counts(client)
    assert {r: after[r] - before[r] for r in after} == {
        "hit": 0, "miss": 0, "stale": 1, "joined": 0}, (before, after)


async def test_each_filter_has_its_own_ranking(http):
    """A page with other filters is not cut from the ranking without them."""
    first = [c["category"] for c in (await search(http, "campaign", k=10)).json()["items"]]
    assert first[0] == "politics" and "entertainment" in first
    ent = (await search(http, "campaign", k=5, category="entertainment")).json()["items"]
    assert ent and {c["category"] for c in ent} == {"entertainment"}
    assert OLD_URL in [c["url"] for c in (await search(
        http, "Lighthouse keepers strike", k=10)).json()["items"]]
    assert OLD_URL not in [c["url"] for c in (await search(
        http, "Lighthouse keepers strike", k=5, max_age_days=7)).json()["items"]]


async def test_the_openapi_document_states_the_search(http):
    """Clients generated from /openapi.json learn q's bounds, k's default and maximum (the
    app's max_k), and the body's shape."""
    doc = (await http.get("/openapi.json")).json()
    params = {p["name"]: p for p in doc["paths"]["/v1/search"]["get"]["parameters"]}
    assert params["q"]["required"] is True
    # At most 200 characters once its spaces collapse; the raw bound only caps what is read.
    assert params["q"]["schema"]["minLength"] == 1 and params["q"]["schema"]["maxLength"] == 2048
    assert "at most 200 characters once spaces collapse" in params["q"]["description"]
    assert params["k"]["schema"]["default"] == 10 and params["k"]["schema"]["maximum"] == 50
    assert {"category", "site", "exclude_site", "max_age_days"} <= set(params)
    ok = doc["paths"]["/v1/search"]["get"]["responses"]["200"]["content"]["application/json"]
    body = doc["components"]["schemas"][ok["schema"]["$ref"].rsplit("/", 1)[1]]
    assert set(body["properties"]) == {"query", "items", "took_ms"}
    r = await search(http, "budget", k=51)
    assert r.status_code == 422 and "50" in r.json()["error"]["message"]


async def test_a_search_asked_again_is_replayed_by_the_fast_path(stack, http):
    """Searches are cached as blocks are, so the fast path replays them as it replays blocks
    (before FastAPI runs), until a story that could change the answer arrives."""
    from tests.api.test_fastpath import fastpath_of

    cache = fastpath_of(stack.app).cache
    before = len(cache)
    first = await search(http, "Oscar nominations for British films", k=4)
    assert len(cache) == before + 1
    again = await search(http, "Oscar nominations for British films", k=4)
    assert again.content == first.content and again.headers["etag"] == first.headers["etag"]
    assert len(cache) == before + 1
