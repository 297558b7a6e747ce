"""A feed without dates, collected from loopback and listed over real HTTP: its stories in the
publisher's order (newest first) in `/v1/stories`, page after page, and in its Atom feed."""

from __future__ import annotations

import feedparser
import httpx

from aggregator.collect import Collector
from aggregator.model import SourceSpec
from aggregator.settings import CollectSettings
from tests.api.conftest import make_stack, stop_stack
from tests.localsite import LoopbackResolver

NAMES = ["harbour", "ferry", "lamp", "pay", "talks"]
FAST = CollectSettings(connect_timeout_s=1.0, total_timeout_s=5.0, min_interval_s=60,
                       jitter_ratio=0.0, public_links_only=False)


def undated_feed(names: list[str]) -> str:
    items = "".join(
        f"<item><title>Varnholm {n} news</title><link>https://desk.example/{n}</link>"
        f"<description>The Varnholm {n} story, in words of its own about the {n}.</description>"
        "</item>" for n in names)
    return ('<?xml version="1.0"?><rss version="2.0"><channel><title>Desk</title>'
            f"<link>https://desk.example/</link><description>d</description>{items}</channel></rss>")


async def test_an_undated_feed_lists_in_its_own_order_page_by_page(tmp_path, shared_data):
    st, server, task = await make_stack(tmp_path, shared_data, limit=4)
    try:
        site, store = st.site, st.svc.store
        site.route("/desk.xml", body=undated_feed(NAMES), content_type="application/rss+xml")
        await store.sync_sources([SourceSpec("desk", site.url("/desk.xml"), "news")])
        collector = Collector(store, FAST, resolver_factory=lambda: LoopbackResolver(port=site.port))
        report = await collector.run_round(name="desk", force=True)
        assert report.new == len(NAMES), report

        async with httpx.AsyncClient(base_url=st.base_url, timeout=20) as http:
            seen, cursor = [], None
            for _ in range(len(NAMES)):  # two a page: the cursor keeps the order, repeats none
                params = {"source": "desk", "limit": 2, **({"cursor": cursor} if cursor else {})}
                page = (await http.get("/v1/stories", params=params)).json()
                seen += [c["url"].rsplit("/", 1)[1] for c in page["items"]]
                if not (cursor := page["next"]):
                    break
            assert seen == NAMES
            atom = feedparser.parse((await http.get("/v1/stories.atom",
                                                    params={"source": "desk"})).content)
            assert [e.link.rsplit("/", 1)[1] for e in atom.entries] == NAMES
    finally:
        await stop_stack(st, server, task)
