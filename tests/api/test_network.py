"""A publisher network: three sites sharing one Tidings, over the real API on loopback.

BBC politics and entertainment stories, dealt out to alpha (www. and bare host), beta (m.,
www. and bare: one site, its mobile host's stories stored as "m.beta.example") and gamma (www., some imported as "WWW.Gamma.Example."), and one alpha story
syndicated word for word on beta (stored once, beta's copy linked to it)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from aggregator.importer import LineError, read_jsonl
from aggregator.store import utcnow
from tests.api.conftest import make_stack, stop_stack
from tests.datasets import bbc_records

HOSTS = {"alpha": ["www.alpha.example", "alpha.example"],
         "beta": ["m.beta.example", "www.beta.example", "beta.example"],
         "gamma": ["www.gamma.example"]}
WIRE = "https://www.beta.example/wire/0"  # beta's copy of alpha's story 0
BETA = {"beta.example", "m.beta.example"}  # beta's stored site names


def network_records(shared_data) -> list[dict]:
    out = []
    for i, rec in enumerate(bbc_records(shared_data, limit=40)):
        name = ("alpha", "beta", "gamma")[i % 3]
        hosts = HOSTS[name]
        rec = {**rec, "url": f"https://{hosts[i // 3 % len(hosts)]}/story/{i}",
               "source": f"{name}-{rec['category']}"}
        del rec["site"]  # the site of its URL, as collected
        if name == "gamma" and i % 2:
            rec["site"] = "WWW.Gamma.Example."
        out.append(rec)
    return [*out, {**out[0], "url": WIRE, "source": "beta-politics"}]


@pytest.fixture(scope="module")
async def stack(tmp_path_factory, shared_data):  # conftest's `http` calls it
    drafts = [d for d in read_jsonl((json.dumps(r) for r in network_records(shared_data)),
                                    utcnow()) if not isinstance(d, LineError)]
    st, server, task = await make_stack(tmp_path_factory.mktemp("network"), shared_data,
                                        limit=0, extra_drafts=drafts)
    yield st
    await stop_stack(st, server, task)


async def stored(http, url: str) -> dict:
    items = (await http.get("/v1/stories", params={"limit": 200})).json()["items"]
    return next(it for it in items if it["url"] == url)


async def related(http, story_id: int, **params) -> list[dict]:
    r = await http.get(f"/v1/stories/{story_id}/related", params={"k": 10, **params})
    assert r.status_code == 200, r.text
    return r.json()["related"]


async def a_block_showing(http, story: dict) -> dict:
    """A gamma story whose block (k=10) shows `story`."""
    for near in await related(http, story["id"], site="gamma.example"):
        if story["id"] in [c["id"] for c in await related(http, near["id"])]:
            return near
    raise AssertionError(f"no gamma story's block shows {story['url']}")


async def test_a_syndicated_story_is_shown_as_the_copy_the_site_filters_keep(http):
    original = await stored(http, "https://www.alpha.example/story/0")
    block_of = await a_block_showing(http, original)
    plain = await related(http, block_of["id"])
    shown = [c for c in plain if c["title"] == original["title"]]
    assert [c["url"] for c in shown] == [original["url"]]  # once, naming the other site
    assert "beta.example" in shown[0]["reason"]
    for alpha in ("alpha.example", "WWW.ALPHA.EXAMPLE", "https://www.alpha.example/"):
        cards = await related(http, block_of["id"], exclude_site=alpha)
        assert not [c for c in cards if c["site"] == "alpha.example"], alpha
        # Beta's copy stays: it was dropped along with alpha's story, the only one indexed.
        copies = [c for c in cards if c["title"] == original["title"]]
        assert [(c["url"], c["site"]) for c in copies] == [(WIRE, "beta.example")], alpha
    cards = await related(http, block_of["id"], site="www.beta.example")
    assert WIRE in [c["url"] for c in cards]
    assert {c["site"] for c in cards} <= BETA
    # The copy's card is the copy: a click on it is beta's.
    wire = next(c for c in cards if c["url"] == WIRE)
    assert wire["id"] != original["id"] and wire["source"] == "beta-politics"


async def test_exclude_site_leaves_out_the_site_however_the_page_spells_its_host(http):
    article = await stored(http, "https://www.alpha.example/story/0")
    for alpha in ("alpha.example", "www.alpha.example", "WWW.ALPHA.EXAMPLE.", "alpha.example.",
                  "www.alpha.example:8080", "alpha.example:443", "https://alpha.example:8443/x"):
        cards = await related(http, article["id"], exclude_site=alpha)
        assert cards and not [c for c in cards if c["site"] == "alpha.example"], alpha
    assert {c["site"] for c in await related(http, article["id"], site="beta.example:8080")
            } == BETA


def beta_stories(items: list[dict]) -> tuple[list[dict], list[dict]]:
    """Of `items`, beta's stories from its mobile host and from its desktop ones."""
    return ([it for it in items if it["site"] == "m.beta.example"],
            [it for it in items if it["site"] == "beta.example"])


async def test_a_sites_filters_take_its_mobile_hosts_stories_as_its_own(http):
    """Stories collected from m.beta.example are beta's: `exclude_site=beta.example` (however
    written, or as the mobile host) left them in a block as another site's, and
    `site=beta.example` left them out."""
    article = await stored(http, "https://www.alpha.example/story/0")
    plain = await related(http, article["id"])
    assert all(beta_stories(plain))  # the block has both, so the filters have work to do
    for beta in ("beta.example", "www.beta.example", "https://m.beta.example/story/1",
                 "amp.beta.example", "MOBILE.Beta.Example."):
        cards = await related(http, article["id"], exclude_site=beta)
        assert cards and not [c for c in cards if c["site"] in BETA], beta
        kept = await related(http, article["id"], site=beta)
        mobile, desktop = beta_stories(kept)
        assert mobile and desktop and len(mobile) + len(desktop) == len(kept), beta


async def test_a_widget_on_the_mobile_host_links_the_desktop_sites_stories_as_its_own(http):
    """/v1/widget for an article on m.beta.example: beta's desktop stories (www. and bare)
    are the page's own site, plain links; they opened in a new tab, nofollow, as another
    site's, while alpha's and gamma's do."""
    params = {"url": "https://m.beta.example/story/1", "k": 10, "new_tab": "true",
              "rel": "nofollow"}
    r = await http.get("/v1/widget", params=params)
    assert r.status_code == 200, r.text
    anchors = re.findall(r"<a [^>]*>", r.text)
    own = [a for a in anchors if re.search(r'href="https://(?:www\.|m\.)?beta\.example/', a)]
    other = [a for a in anchors if re.search(r'href="https://(?:www\.)?(?:alpha|gamma)\.', a)]
    assert own and other and len(own) + len(other) == len(anchors)
    assert [a for a in own if "target=" in a or "rel=" in a] == []
    assert all('target="_blank"' in a and 'rel="noopener nofollow"' in a for a in other)


async def test_stats_count_a_sites_mobile_host_as_the_site(http):
    """/v1/stats?site=beta.example counts the clicks on beta's m. host's stories too, in one
    row of `sites`; it counted its desktop stories only, and the m. host was a site of its
    own. Dated five days ago: no other test of the module reads the stats."""
    items = (await http.get("/v1/stories", params={"limit": 200})).json()["items"]
    (mobile, *_), (desktop, *_) = beta_stories(items)
    at = (datetime.now(UTC) - timedelta(days=5)).isoformat()
    events = [{"reader": f"msite-{i}", "story_id": story["id"], "type": t, "at": at}
              for i, (story, t) in enumerate([(mobile, "impression"), (mobile, "click"),
                                              (mobile, "impression"), (desktop, "impression")])]
    r = await http.post("/v1/events", json={"events": events})
    assert r.status_code == 202 and r.json()["accepted"] == 4, r.text
    for e in events:  # an export waits for the reader's events to be written
        assert (await http.get(f"/v1/readers/{e['reader']}")).status_code == 200
    for beta in ("beta.example", "m.beta.example", "amp.beta.example"):
        body = (await http.get("/v1/stats", params={"days": 7, "site": beta})).json()
        assert (body["total"]["impressions"], body["total"]["clicks"]) == (3, 1), beta
        assert [(s["impressions"], s["clicks"]) for s in body["sites"]] == [(3, 1)], beta
