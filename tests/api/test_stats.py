"""The widget's report: GET /v1/stats over a real SQLite store, and its pure shaping (api.stats)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import httpx

from aggregator.model import StoryDraft
from aggregator.store import EventRecord, StoryCounts, WidgetCounts, event_key, utcnow
from api.stats import ctr, stats_period, stats_report

# ------------------------------------------------------------ pure


def test_the_period_is_whole_utc_days_up_to_now():
    now = datetime(2026, 11, 26, 15, 30, tzinfo=UTC)
    assert stats_period(now, 1) == (datetime(2026, 11, 26, tzinfo=UTC), now)
    assert stats_period(now, 7) == (datetime(2026, 11, 20, tzinfo=UTC), now)


def test_the_report_fills_quiet_days_with_zeros_and_has_no_rate_without_impressions():
    since, until = datetime(2026, 11, 24, tzinfo=UTC), datetime(2026, 11, 26, 9, tzinfo=UTC)
    counts = WidgetCounts(
        days=[("2026-11-24", 3, 1, 0), ("2026-11-26", 0, 2, 1)],
        sites=[("news.example", 3, 3)],
        stories=[StoryCounts(7, "T", "https://news.example/t", "news.example", 0, 2),
                 StoryCounts(8, "U", "https://news.example/u", "news.example", 3, 1)],
        pages=[("https://pub.example/a", 3, 1), ("https://pub.example/b", 0, 2)])
    r = stats_report(counts, since, until)
    # "Z" as every other time the API writes (the period alone was "+00:00").
    assert r["since"] == "2026-11-24T00:00:00Z" and r["until"] == "2026-11-26T09:00:00Z"
    assert r["days"] == [
        {"date": "2026-11-24", "impressions": 3, "clicks": 1, "reads": 0, "ctr": 0.3333},
        {"date": "2026-11-25", "impressions": 0, "clicks": 0, "reads": 0, "ctr": None},
        {"date": "2026-11-26", "impressions": 0, "clicks": 2, "reads": 1, "ctr": None}]
    assert r["total"] == {"impressions": 3, "clicks": 3, "reads": 1, "ctr": 1.0}
    assert r["sites"] == [{"site": "news.example", "impressions": 3, "clicks": 3, "ctr": 1.0}]
    assert [(s["id"], s["ctr"]) for s in r["stories"]] == [(7, None), (8, 0.3333)]
    assert r["pages"] == [
        {"page": "https://pub.example/a", "impressions": 3, "clicks": 1, "ctr": 0.3333},
        {"page": "https://pub.example/b", "impressions": 0, "clicks": 2, "ctr": None}]
    empty = stats_report(WidgetCounts([], [], []), since, until)
    assert len(empty["days"]) == 3 and empty["total"]["ctr"] is None
    # A period ending at midnight does not reach into the next day.
    assert len(stats_report(counts, since, datetime(2026, 11, 26, tzinfo=UTC))["days"]) == 2
    assert ctr(1, 3) == 0.3333 and ctr(5, 0) is None


def test_a_rate_never_exceeds_every_impression_clicked():
    # A story shown once and clicked three times (two tabs, or clicks from a reader's app,
    # which sends no impression) read "300.00%" in `tidings stats` and 3.0 in /v1/stats.
    from api.cli import stats_text

    since, until = datetime(2026, 11, 26, tzinfo=UTC), datetime(2026, 11, 26, 9, tzinfo=UTC)
    counts = WidgetCounts(days=[("2026-11-26", 1, 3, 0)], sites=[("news.example", 1, 3)],
                          stories=[StoryCounts(7, "T", "https://news.example/t", "news.example", 1, 3)],
                          pages=[("https://pub.example/a", 1, 3)])
    r = stats_report(counts, since, until)
    assert r["total"] == {"impressions": 1, "clicks": 3, "reads": 0, "ctr": 1.0}  # clicks whole
    assert [row["ctr"] for key in ("days", "sites", "stories", "pages") for row in r[key]] == [1.0] * 4
    text = stats_text(r)
    assert "100.00%" in text and "300.00%" not in text


# ------------------------------------------------------------ HTTP


def _events(sid: int, type_: str, at: datetime, n: int, tag: str) -> list[EventRecord]:
    return [EventRecord(event_key(f"{tag}{i}", sid, type_, at, None), f"{tag}{i}", sid, type_, at)
            for i in range(n)]


def past_midnight_if_near(margin_s: float = 30.0) -> datetime:
    """Now, or (within `margin_s` of a UTC midnight) now once that midnight has passed: the
    tests below put events on "today" and ask for a report moments later."""
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    if (midnight - now).total_seconds() < margin_s:
        time.sleep((midnight - now).total_seconds() + 0.1)
        now = datetime.now(UTC)
    return now


async def test_stats_count_the_widgets_events_of_the_last_days(http, stack):
    store = stack.svc.store
    bbc = (await http.get("/v1/stories", params={"limit": 1})).json()["items"][0]
    (other,) = (await store.upsert_stories([StoryDraft(
        url="https://other.example/x", title="Elsewhere", site="other.example", source="o")],
        utcnow())).new_ids
    now = past_midnight_if_near()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    # Today's through the API, as the widget sends them; older ones straight to the store.
    sent = [{"reader": f"w{i}", "story_id": bbc["id"], "type": "impression"} for i in range(4)]
    sent += [{"reader": "w0", "story_id": bbc["id"], "type": "click"},
             {"reader": "w1", "story_id": other, "type": "click"}]
    assert (await http.post("/v1/events", json={"events": sent})).status_code == 202
    await store.add_events([
        *_events(bbc["id"], "impression", today - timedelta(days=2, hours=-1), 5, "old"),
        *_events(bbc["id"], "click", today - timedelta(days=2, hours=-1), 1, "old"),
        *_events(bbc["id"], "click", today - timedelta(days=3, seconds=1), 9, "older"),  # out
    ], now)
    for _ in range(50):  # the sink writes in the background
        if (await store.widget_stats(today, now + timedelta(minutes=1))).days:
            break
        await asyncio.sleep(0.1)

    r = await http.get("/v1/stats", params={"days": 3})
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    day = [(today - timedelta(days=n)).date().isoformat() for n in (2, 1, 0)]
    assert body["days"] == [
        {"date": day[0], "impressions": 5, "clicks": 1, "reads": 0, "ctr": 0.2},
        {"date": day[1], "impressions": 0, "clicks": 0, "reads": 0, "ctr": None},
        {"date": day[2], "impressions": 4, "clicks": 2, "reads": 0, "ctr": 0.5}]
    assert body["total"] == {"impressions": 9, "clicks": 3, "reads": 0, "ctr": 0.3333}
    assert body["sites"] == [
        {"site": "bbc.co.uk", "impressions": 9, "clicks": 2, "ctr": 0.2222},
        {"site": "other.example", "impressions": 0, "clicks": 1, "ctr": None}]
    top = body["stories"][0]
    assert {k: top[k] for k in ("id", "title", "url", "site", "impressions", "clicks", "ctr")} == {
        "id": bbc["id"], "title": bbc["title"], "url": bbc["url"], "site": "bbc.co.uk",
        "impressions": 9, "clicks": 2, "ctr": 0.2222}
    assert body["since"] == (today - timedelta(days=2)).isoformat().replace("+00:00", "Z")

    # One site, written as a caller would: the other site's click is left out.
    only = (await http.get("/v1/stats", params={"days": 3, "site": "www.BBC.co.uk"})).json()
    assert only["total"] == {"impressions": 9, "clicks": 2, "reads": 0, "ctr": 0.2222}
    assert [s["site"] for s in only["sites"]] == ["bbc.co.uk"]
    assert other not in [s["id"] for s in only["stories"]]
    # Today only: the older days are out.
    assert (await http.get("/v1/stats", params={"days": 1})).json()["total"]["clicks"] == 2
    # A blank site is no filter, as for the related filters (a dashboard's empty field): it
    # counted only the stories without a site, none here.
    r = await http.get("/v1/stats", params={"days": 3, "site": " "})
    assert r.json()["total"] == body["total"], r.text


async def test_stats_days_out_of_range_are_the_usual_422(http):
    for days in ("0", "91", "seven"):
        r = await http.get("/v1/stats", params={"days": days})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request", r.text
        assert "days" in r.json()["error"]["message"]


async def test_stats_are_the_operators(stack):
    """As the other operator routes (api.app require_key): without api.api_key, this machine
    only; the publisher's numbers are not for every page that can reach the API."""
    from api.app import create_app

    app = create_app(stack.svc)
    for host, status in (("203.0.113.9", 403), ("127.0.0.1", 200)):
        transport = httpx.ASGITransport(app=app, client=(host, 4321))
        async with httpx.AsyncClient(transport=transport, base_url="http://tidings") as c:
            r = await c.get("/v1/stats")
            assert r.status_code == status, (host, r.text)
            if status == 403:
                assert r.json()["error"]["code"] == "operator_only"


async def test_stats_name_the_pages_the_blocks_were_on_and_fold_a_sites_spellings(http, stack):
    """The widget's events name their page: the report counts the top pages (canonical, most
    impressions first; events without a page are not in them). A site stored two ways (an
    import's "www.Fold.Example", the collector's "fold.example") is one row of `sites`.
    Dated ten days ago, so the other tests' days do not see them, nor these theirs."""
    store = stack.svc.store
    a, b = (await store.upsert_stories([
        StoryDraft(url="https://fold.example/a", title="Collected", site="fold.example", source="f"),
        StoryDraft(url="https://fold.example/b", title="Imported", site="www.Fold.Example", source="f")],
        utcnow())).new_ids
    at = (datetime.now(UTC) - timedelta(days=10)).isoformat()
    article, other = "https://Pub.Example/2026/article?utm_source=x", "https://pub.example/other"

    def sent(sid, type_, n, page):
        return [{"reader": f"p-{sid}-{type_}-{page is None}-{i}", "story_id": sid, "type": type_,
                 "at": at, **({"page": page} if page else {})} for i in range(n)]

    events = [*sent(a, "impression", 3, article), *sent(b, "impression", 1, article),
              *sent(a, "click", 1, article), *sent(b, "click", 1, other),
              *sent(b, "impression", 4, None)]  # an API client's: no page
    r = await http.post("/v1/events", json={"events": events})
    assert r.status_code == 202 and r.json()["accepted"] == 10, r.text
    for e in events:  # an export waits for the reader's events to be written
        assert (await http.get(f"/v1/readers/{e['reader']}")).status_code == 200

    body = (await http.get("/v1/stats", params={"days": 30, "site": "fold.example"})).json()
    assert body["pages"] == [
        {"page": "https://pub.example/2026/article", "impressions": 4, "clicks": 1, "ctr": 0.25},
        {"page": other, "impressions": 0, "clicks": 1, "ctr": None}]
    assert body["sites"] == [{"site": "www.Fold.Example", "impressions": 8, "clicks": 2, "ctr": 0.25}]
    assert body["total"]["impressions"] == 8


async def test_one_story_under_two_pages_at_one_time_is_an_impression_on_each(http, stack):
    """Events without an `id` were one event when reader, story, type and time agreed, their
    page aside: a client's batch of a story seen under an article and under its AMP page kept
    one (202 said 2 accepted), and the AMP page was missing from `pages`. A retry of the
    batch, same pages and time, is still one event each."""
    store = stack.svc.store
    (sid,) = (await store.upsert_stories([StoryDraft(
        url="https://twopages.example/a", title="Shown twice", site="twopages.example",
        source="t")], utcnow())).new_ids
    at = (datetime.now(UTC) - timedelta(days=11)).isoformat()
    article = "https://pub.example/2026/long-read"
    events = [{"reader": "two-tabs", "story_id": sid, "type": "impression", "at": at, "page": p}
              for p in (article, article + "/amp")]
    for _ in range(2):  # the second is a retry
        r = await http.post("/v1/events", json={"events": events})
        assert r.status_code == 202 and r.json()["accepted"] == 2, r.text
    assert len((await http.get("/v1/readers/two-tabs")).json()["events"]) == 2
    body = (await http.get("/v1/stats", params={"days": 30, "site": "twopages.example"})).json()
    assert sorted((row["page"], row["impressions"]) for row in body["pages"]) == [
        (article, 1), (article + "/amp", 1)]
