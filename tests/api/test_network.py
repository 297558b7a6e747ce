"""A publisher network: three sites sharing one Tidings, over the real API on loopback.

BBC politics and entertainment stories, dealt out to alpha (www. and bare host), beta (m.,
www. and bare) and gamma (www., some imported as "WWW.Gamma.Example."), and one alpha story
syndicated word for word on beta (stored once, beta's copy linked to it)."""

from __future__ import annotations

import json

import pytest

from aggregator.importer import LineError, read_jsonl
from aggregator.store import utcnow
from tests.api.conftest import make_stack, stop_stack
from tests.datasets import bbc_records

HOSTS = {"alpha": ["www.alpha.example", "alpha.example"],
         "beta": ["m.beta.example", "www.beta.example", "beta.example"],
         "gamma": ["www.gamma.example"]}
WIRE = "https://www.beta.example/wire/0"  # beta's copy of alpha's story 0


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
    assert {c["site"] for c in cards} == {"beta.example"}
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
            } == {"beta.example"}
