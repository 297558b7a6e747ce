"""A publisher network's article pages that Tidings has not stored, asked for by URL in their
AMP, mobile and share-link spellings: real pages on loopback (hosts allowed for the test by
`api.fetch_allow_hosts`), over the three-site network of tests/api/test_network.py."""

from __future__ import annotations

import json

import pytest

from aggregator.importer import LineError, read_jsonl
from aggregator.store import utcnow
from tests.api.conftest import make_stack, stop_stack
from tests.api.test_network import network_records
from tests.datasets import bbc_records

PAGE_HOSTS = ("www.alpha.example", "alpha.example", "m.alpha.example", "www.gamma.example")


@pytest.fixture(scope="module")
async def stack(tmp_path_factory, shared_data):  # conftest's `http` calls it
    drafts = [d for d in read_jsonl((json.dumps(r) for r in network_records(shared_data)),
                                    utcnow()) if not isinstance(d, LineError)]
    st, server, task = await make_stack(
        tmp_path_factory.mktemp("network-pages"), shared_data, limit=0, extra_drafts=drafts,
        env={"TIDINGS_API_FETCH_ALLOW_HOSTS": ",".join(PAGE_HOSTS)})
    yield st
    await stop_stack(st, server, task)


def unstored(shared_data, n: int) -> dict:
    """A BBC politics story the network has not stored (it holds the first 40)."""
    return bbc_records(shared_data, limit=60)[40 + n]


def article_page(rec: dict, address: str, head: str = "") -> bytes:
    paragraphs = "".join(f"<p>{p}</p>" for p in rec["text"].split("\n\n"))
    return (f'<!doctype html><html><head><title>{rec["title"]}</title>'
            f'<link rel="canonical" href="{address}"><meta property="og:url" content="{address}">'
            f'{head}</head><body><article><h1>{rec["title"]}</h1>{paragraphs}</article>'
            "</body></html>").encode()


def serve(stack, url: str, body: bytes):
    """Serve `body` at `url` (http://host/path: the test's resolver sends every host here)."""
    host, _, path = url.removeprefix("http://").partition("/")
    return stack.site.route("/" + path, host=host, body=body, content_type="text/html; charset=utf-8")


async def block(http, url: str) -> dict:
    r = await http.get("/v1/related", params={"url": url, "k": 6})
    assert r.status_code == 200, r.text
    return r.json()


async def test_the_amp_and_share_spellings_of_a_page_read_it_once_for_its_address(
        http, stack, shared_data):
    """An AMP page and a share link on the publisher's own site name the article's address
    (rel=canonical): its canonical page, asked for next, was fetched again (and every spelling
    charged a fetch), though it is the same article. Its block is the canonical page's."""
    rec = unstored(shared_data, 0)
    address = "http://www.alpha.example/politics/budget-row"
    amp, share = address + "/amp", "http://alpha.example/s/k3x9?utm_source=share"
    canonical = serve(stack, address, article_page(rec, address, f'<link rel="amphtml" href="{amp}">'))
    amp_page = serve(stack, amp, article_page(rec, address))
    share_page = serve(stack, share.partition("?")[0], article_page(rec, address))

    first = await block(http, amp)
    assert first["article"]["id"] is None and first["article"]["title"] == rec["title"]
    itself = {address, amp, share.partition("?")[0]}
    assert first["related"] and not itself & {c["url"] for c in first["related"]}
    at_address = await block(http, address)
    assert (at_address["article"]["url"], at_address["article"]["title"]) == (address, rec["title"])
    assert [c["id"] for c in at_address["related"]] == [c["id"] for c in first["related"]]
    assert canonical.hits == 0 and amp_page.hits == 1
    # The share link is fetched (nothing said what it is until then), its address is not.
    assert [c["id"] for c in (await block(http, share))["related"]] == \
        [c["id"] for c in first["related"]]
    assert (share_page.hits, canonical.hits) == (1, 0)


async def test_a_page_on_another_site_or_host_is_not_read_as_the_address_it_names(
        http, stack, shared_data):
    """Only the page's own site speaks for an address: a page on another site naming alpha's
    article (or a mobile host, another site as the site filters count them) leaves that
    article to be read from its own page when asked for."""
    rec, theirs = unstored(shared_data, 1), unstored(shared_data, 2)
    address = "http://www.alpha.example/politics/other-row"
    own = serve(stack, address, article_page(rec, address))
    for url in ("http://www.gamma.example/copied/other-row", "http://m.alpha.example/politics/other-row"):
        serve(stack, url, article_page(theirs, address))
        assert (await block(http, url))["article"]["title"] == theirs["title"]
    at_address = await block(http, address)
    assert at_address["article"]["title"] == rec["title"] and own.hits == 1


async def test_the_amp_page_a_canonical_page_names_is_not_fetched_again(http, stack, shared_data):
    """The canonical page read first names its AMP spelling (rel=amphtml): asked for next, the
    AMP page was fetched again for the same article."""
    rec = unstored(shared_data, 3)
    address = "http://www.alpha.example/politics/third-row"
    amp = "http://www.alpha.example/amp/politics/third-row"
    serve(stack, address, article_page(rec, address, '<link rel="amphtml" href="/amp/politics/third-row">'))
    amp_page = serve(stack, amp, article_page(rec, address))
    first = await block(http, address)
    at_amp = await block(http, amp)
    assert (at_amp["article"]["url"], at_amp["article"]["title"]) == (amp, rec["title"])
    assert [c["id"] for c in at_amp["related"]] == [c["id"] for c in first["related"]]
    assert amp_page.hits == 0


async def test_a_page_that_redirects_to_a_stored_story_answers_with_its_block(
        http, stack, shared_data):
    """A publisher's old address (a renamed slug, a short link on its own site) redirects to
    an article we collected, whose page names no address of its own (no rel=canonical): the
    block was ranked for a fresh read of the page, with the stored story itself among its
    related stories, instead of the stored story's block."""
    rec = network_records(shared_data)[3]  # stored at https://www.alpha.example/story/3
    story = next(it for it in (await http.get("/v1/stories", params={"limit": 200})).json()["items"]
                 if it["url"] == rec["url"])
    bare = (f'<!doctype html><html><head><title>{rec["title"]}</title></head><body><article>'
            + "".join(f"<p>{p}</p>" for p in rec["text"].split("\n\n")) + "</article></body></html>")
    target = serve(stack, "http://www.alpha.example/story/3", bare.encode())
    stack.site.route("/old/budget-row", status=301, host="alpha.example",
                     headers={"Location": "http://www.alpha.example/story/3"})
    got = await block(http, "http://alpha.example/old/budget-row")
    assert target.hits == 1
    assert got["article"]["id"] == story["id"]
    assert story["id"] not in [c["id"] for c in got["related"]]
    own = (await http.get(f"/v1/stories/{story['id']}/related", params={"k": 6})).json()
    assert [c["id"] for c in got["related"]] == [c["id"] for c in own["related"]]
    # Taken down, it is read for no one, whichever address leads to its page.
    assert (await http.delete(f"/v1/stories/{story['id']}")).status_code == 200
    gone = await http.get("/v1/related", params={"url": "http://alpha.example/old/budget-row", "k": 6})
    assert gone.status_code == 410, gone.text
