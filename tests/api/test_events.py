"""POST /v1/events: validation, idempotency, unknown stories, future timestamps, batches."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta, timezone


async def _story(http):
    return (await http.get("/v1/stories", params={"limit": 1})).json()["items"][0]


async def test_single_and_batch_events_are_counted_once(http, stack):
    s = await _story(http)
    one = {"reader": "reader-a", "story_id": s["id"], "type": "click", "id": "evt-1"}
    r = await http.post("/v1/events", json=one)
    assert r.status_code == 202 and r.json()["accepted"] == 1
    # Same client id again (a retried beacon) and a batch by URL, sent as text/plain like the widget.
    batch = {"events": [one, {"reader": "reader-a", "url": s["url"], "type": "impression"}]}
    r = await http.post("/v1/events", content=json.dumps(batch), headers={"Content-Type": "text/plain"})
    assert r.status_code == 202 and r.json()["accepted"] == 2
    await stack.events_written()
    events = await stack.svc.store.reader_events("reader-a")
    assert sorted(e.type for e in events) == ["click", "impression"]
    assert (await stack.svc.store.story_stats([s["id"]]))[s["id"]][:2] == (1, 1)


async def test_one_instant_written_with_two_offsets_is_one_event(http, stack):
    # A retry of one click, once in the device's local time and once in UTC (a queue that
    # re-sends in its own zone): the key hashed the offset as written, and stored it twice.
    s = await _story(http)
    at = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0)
    spellings = [at.strftime("%Y-%m-%dT%H:%M:%SZ"), at.replace(tzinfo=None).isoformat(),
                 at.astimezone(timezone(timedelta(hours=1))).isoformat(),
                 at.astimezone(timezone(timedelta(hours=-5, minutes=-30))).isoformat()]
    for when in spellings:
        r = await http.post("/v1/events", json={"reader": "offsets", "story_id": s["id"], "type": "click", "at": when})
        assert r.status_code == 202, r.text
    await stack.events_written()
    events = await stack.svc.store.reader_events("offsets")
    assert [(e.story_id, e.type) for e in events] == [(s["id"], "click")], events


async def test_bad_events_are_4xx(http):
    s = await _story(http)
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    cases = [
        (b"not json", 400, "invalid_json"),
        (b'{"events": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", 400, "invalid_json"),  # was a 500
        (json.dumps({"reader": "r", "story_id": s["id"], "type": "like"}).encode(), 422, "invalid_event"),
        (json.dumps({"reader": "r", "type": "click"}).encode(), 422, "invalid_event"),
        (json.dumps({"reader": "r", "story_id": True, "type": "click"}).encode(), 422, "invalid_event"),
        (json.dumps({"reader": "r", "story_id": s["id"], "type": "read", "dwell_s": True}).encode(),
         422, "invalid_event"),  # was a read of 1 s
        (json.dumps({"reader": "r", "story_id": 987654, "type": "click"}).encode(), 404, "unknown_story"),
        (json.dumps({"reader": "r", "url": "https://nowhere.example/x", "type": "click"}).encode(), 404, "unknown_story"),
        (json.dumps({"reader": "r", "story_id": s["id"], "type": "click", "at": future}).encode(), 422, "invalid_event"),
        (json.dumps({"reader": "bad reader id!", "story_id": s["id"], "type": "click"}).encode(), 422, "invalid_event"),
        (json.dumps({"events": []}).encode(), 422, "invalid_request"),
        # stored in the idempotency key: PostgreSQL refuses NUL, no database a lone surrogate
        (json.dumps({"reader": "r", "story_id": s["id"], "type": "click", "id": "a\u0000b"}).encode(),
         422, "invalid_event"),
        (b'{"reader": "r", "story_id": %d, "type": "click", "id": "a\\ud800b"}' % s["id"],
         422, "invalid_event"),
        (json.dumps({"events": [{"reader": "r", "story_id": s["id"], "type": "click"}] * 501}).encode(), 413, "too_large"),
    ]
    for body, status, code in cases:
        r = await http.post("/v1/events", content=body, headers={"Content-Type": "application/json"})
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (body[:80], r.text)


async def test_a_read_from_a_clock_a_little_ahead_leaves_the_feed_at_once(http, stack):
    """Tolerated (a client clock drifts), but dated later the read stayed in the feed until
    its time came (the feed's snapshot leaves out later events); retried, it is one event."""
    feed = (await http.get("/v1/readers/ahead/feed", params={"k": 5})).json()["items"]
    sid = feed[0]["id"]
    ahead = (datetime.now(UTC) + timedelta(minutes=4)).isoformat()
    event = {"reader": "ahead", "story_id": sid, "type": "read", "at": ahead}
    for _ in range(2):
        assert (await http.post("/v1/events", json=event)).status_code == 202
    await stack.events_written()
    events = await stack.svc.store.reader_events("ahead")
    assert len(events) == 1 and events[0].at <= datetime.now(UTC)
    feed = (await http.get("/v1/readers/ahead/feed", params={"k": 20})).json()["items"]
    assert sid not in [c["id"] for c in feed]


async def test_an_event_dated_out_of_bounds_is_refused_alone(http, stack):
    """One event more than 5 minutes ahead or 30 days old was a 422 for the whole batch: an
    app's queue flushed after a month offline, or one event from a wrong clock, lost every
    fresh event with it. Each is refused alone and named in `skipped` with why."""
    s = await _story(http)
    now = datetime.now(UTC)
    reader = "r-out-of-bounds"
    events = [{"reader": reader, "story_id": s["id"], "type": "impression"},
              {"reader": reader, "story_id": s["id"], "type": "click",
               "at": (now + timedelta(hours=2)).isoformat()},
              {"reader": reader, "story_id": s["id"], "type": "read",
               "at": (now - timedelta(days=31)).isoformat()},
              {"reader": reader, "story_id": 987654, "type": "click"}]
    r = await http.post("/v1/events", json={"events": events})
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": 1, "skipped": [
        {"event": 1, "reason": "'at' is more than 5 minutes ahead of the server's clock"},
        {"event": 2, "reason": "'at' is more than 30 days old"},
        {"event": 3, "reason": "no stored story for its story_id 987654"}]}
    await stack.events_written()
    assert [e.type for e in await stack.svc.store.reader_events(reader)] == ["impression"]
    # None taken: a 422 naming each, as one such event alone always was.
    r = await http.post("/v1/events", json={"events": events[1:]})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_event"
    message = r.json()["error"]["message"]
    for said in ("event 0: 'at' is more than 5 minutes ahead", "event 1: 'at' is more than 30 days",
                 "event 2: no stored story"):
        assert said in message, message


async def test_a_body_json_reads_but_python_cannot_says_why_in_the_apis_words(http):
    # Valid JSON that Python's parser refuses: a story id of 5,000 digits (past Python's cap on
    # digits in an integer) was "the body is not JSON: Exceeds the limit (4300 digits) ...; use
    # sys.set_int_max_str_digits() to increase the limit", and bytes that are no UTF-8 named a
    # codec and a byte position. Neither says what the caller sent wrong in the API's words.
    json_type = {"Content-Type": "application/json"}
    cases = [
        (b'{"reader": "r", "story_id": ' + b"9" * 5000 + b', "type": "click"}', "digits"),
        (b'{"reader": "r\xff", "story_id": 1, "type": "click"}', "UTF-8"),
    ]
    for body, said in cases:
        for path in ("/v1/events", "/v1/related"):
            r = await http.post(path, content=body, headers=json_type)
            assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_json"), (path, r.text)
            message = r.json()["error"]["message"]
            assert said in message and "sys." not in message and "codec" not in message, (path, message)


async def test_a_body_that_is_no_event_object_says_what_to_send(http):
    # pydantic's words were "event 0: : Input should be a valid dictionary or instance of
    # EventIn" for each of these: an empty field name and a class name, not what to send.
    one = {"reader": "r", "story_id": 1, "type": "click"}
    cases = [
        (b"", "invalid_request", "empty body"),
        (json.dumps([one]).encode(), "invalid_event", '{"events": [...]}'),
        (b"null", "invalid_event", "not null"),
        (json.dumps({"events": [one, 5]}).encode(), "invalid_event", "event 1: expected an object"),
        # Both were the bare 'expected an event object or {"events": [...]}', which they had sent.
        (json.dumps({"events": []}).encode(), "invalid_request", "events is an empty array"),
        (json.dumps({"events": "x"}).encode(), "invalid_request", "events is a string, not an array"),
    ]
    for body, code, said in cases:
        r = await http.post("/v1/events", content=body, headers={"Content-Type": "application/json"})
        assert (r.status_code, r.json()["error"]["code"]) == (422, code), (body, r.text)
        message = r.json()["error"]["message"]
        assert said in message and "EventIn" not in message and ": :" not in message, message


async def test_a_batch_with_unknown_stories_keeps_the_others_and_names_each(http, stack):
    # A batch naming one story we do not have was refused whole: the widget sends a block's
    # impressions in one batch, and one story removed since the block was shown (retention,
    # a takedown) lost all of them. The others are taken; each skipped one is named.
    s = await _story(http)
    reader = "r-unknown"
    events = [{"reader": reader, "story_id": s["id"], "type": "impression"},
              {"reader": reader, "story_id": 987654, "type": "impression"},
              {"reader": reader, "url": "https://nowhere.example/a", "type": "read"},
              {"reader": reader, "url": s["url"], "type": "click"},
              {"reader": reader, "story_id": 987655, "type": "click"}]
    r = await http.post("/v1/events", json={"events": events})
    assert r.status_code == 202 and r.json()["accepted"] == 2
    assert [(x["event"], x["reason"]) for x in r.json()["skipped"]] == [
        (1, "no stored story for its story_id 987654"),
        (2, "no stored story for its url https://nowhere.example/a"),
        (4, "no stored story for its story_id 987655")]
    # None about a stored story: a 404 naming every one.
    r = await http.post("/v1/events", json={"events": [events[1], events[2]]})
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_story"
    message = r.json()["error"]["message"]
    for said in ("any of the 2 events", "event 0: story_id 987654", "event 1: url https://nowhere.example/a"):
        assert said in message, message
    # A single event keeps its words.
    r = await http.post("/v1/events", json=events[1])
    assert r.json()["error"]["message"] == "no story with id 987654"
    await stack.events_written()
    stored = await stack.svc.store.reader_events(reader)
    assert sorted(e.type for e in stored) == ["click", "impression"]  # the two about our story


async def test_a_dwell_time_that_is_no_number_says_so(http):
    """NaN and Infinity (JSON.stringify's "NaN" of a 0/0 timer, or a literal) were refused as
    "dwell_s: Input should be less than or equal to 86400": a client looked for a long dwell."""
    s = await _story(http)
    for dwell in (b'"NaN"', b"NaN", b"Infinity", b'"-inf"'):
        body = b'{"reader": "r", "story_id": %d, "type": "read", "dwell_s": %s}' % (s["id"], dwell)
        r = await http.post("/v1/events", content=body, headers={"Content-Type": "application/json"})
        assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_event"), (dwell, r.text)
        message = r.json()["error"]["message"]
        assert "dwell_s" in message and "finite number" in message and "86400" not in message, message


async def test_the_page_an_event_names_is_stored_canonical_and_exported(http, stack):
    """`page`, the article the widget's block was under, is kept as the block was asked for it
    (canonical) and is in the reader's export; a retried event is still one."""
    s = await _story(http)
    one = {"reader": "on-a-page", "story_id": s["id"], "type": "click", "id": "p-1",
           "page": "HTTPS://Pub.Example:443/news/../2026/story?utm_source=feed#comments"}
    for _ in range(2):
        assert (await http.post("/v1/events", json=one)).status_code == 202
    assert (await http.post("/v1/events", json={**one, "id": "p-2", "page": None})).status_code == 202
    await stack.events_written()
    exported = (await http.get("/v1/readers/on-a-page")).json()["events"]
    assert sorted((e["page"] or "") for e in exported) == ["", "https://pub.example/2026/story"]


async def test_a_page_that_is_no_http_url_is_a_422_naming_it(http):
    s = await _story(http)
    for page in ("ftp://pub.example/a", "article.html", "", "https://pub.example/" + "a" * 2030, 5):
        event = {"reader": "r", "story_id": s["id"], "type": "impression", "page": page}
        r = await http.post("/v1/events", json={"events": [event]})
        assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_event"), (page, r.text)
        assert r.json()["error"]["message"].startswith("event 0: page: "), r.text


async def test_the_events_metric_counts_each_stored_event_by_its_type(http, stack):
    # The series counted the batch's first n entries, n the events stored new: a batch
    # repeating a stored impression beside a new click counted a second impression, no click.
    from tests.api.test_metrics import samples

    def counts(text):
        got = samples(text)
        return [got.get(("tidings_events_total", (("type", t),)), 0.0) for t in ("impression", "click")]

    s = await _story(http)
    seen = {"reader": "reader-metric", "story_id": s["id"], "type": "impression", "id": "metric-1"}
    before = counts((await http.get("/metrics")).text)
    assert (await http.post("/v1/events", json=seen)).status_code == 202
    click = {**seen, "type": "click", "id": "metric-2"}
    await stack.events_written()  # the first batch written before the second is sent
    assert (await http.post("/v1/events", json={"events": [seen, click]})).status_code == 202
    await stack.events_written()  # and counted: the sink counts a batch once it is written
    after = counts((await http.get("/metrics")).text)
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1]


async def test_an_event_names_a_story_by_any_spelling_its_block_was_found_by(http, stack):
    """A block is found for a stored story's URL written with http for https or with a
    trailing slash (url_variants); events naming it so were skipped as about no story."""
    s = await _story(http)
    assert s["url"].startswith("https://")
    spellings = ["http://" + s["url"].removeprefix("https://"), s["url"] + "/"]
    for url in spellings:
        assert (await http.get("/v1/related", params={"url": url, "k": 1})).json()["article"]["id"] == s["id"]
    events = [{"reader": "r-spelt", "url": spellings[0], "type": "click"},
              {"reader": "r-spelt", "url": spellings[1], "type": "read"}]
    r = await http.post("/v1/events", json={"events": events})
    assert r.status_code == 202 and r.json() == {"accepted": 2, "skipped": []}, r.text
    await stack.events_written()
    assert {e.story_id for e in await stack.svc.store.reader_events("r-spelt")} == {s["id"]}


async def test_a_batch_over_the_minutes_limit_is_a_413_not_a_429_for_ever(stack, http):
    """Each event is charged to the client's bucket, which holds a minute's worth at most: a
    batch bigger than `api.events_per_minute` was a 429 "Retry-After: 60" that no retry could
    pass. It is a 413 saying how many one request may carry, and the document says so."""
    import dataclasses

    import httpx

    from api.app import create_app
    from tests.api.conftest import free_port, start_server

    s = await _story(http)
    svc = dataclasses.replace(stack.svc, settings=dataclasses.replace(
        stack.svc.settings, api=dataclasses.replace(stack.svc.settings.api, events_per_minute=3)))
    port = free_port()
    server, task = await start_server(create_app(svc), port)
    event = {"reader": "r-batch-limit", "story_id": s["id"], "type": "impression"}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
            r = await client.post("/v1/events", json={"events": [event] * 4})
            assert (r.status_code, r.json()["error"]["code"]) == (413, "too_large"), r.text
            assert "at most 3 events per request" in r.json()["error"]["message"]
            schema = (await client.get("/openapi.json")).json()["paths"]["/v1/events"]["post"]
            batch = schema["requestBody"]["content"]["application/json"]["schema"]["oneOf"][1]
            assert batch["properties"]["events"]["maxItems"] == 3
            assert (await client.post("/v1/events", json={"events": [event] * 3})).status_code == 202
            assert (await client.post("/v1/events", json=event)).status_code == 429  # spent
    finally:
        server.should_exit = True
        await task


async def test_an_event_key_the_api_does_not_know_is_a_422_naming_it(http):
    # "dwell" (for dwell_s) was dropped unread: the read was stored without its time.
    s = await _story(http)
    for body, named in [
        ({"reader": "r", "story_id": s["id"], "type": "read", "dwell": 30}, "dwell"),
        ({"events": [{"reader": "r", "story_id": s["id"], "type": "click"}], "reader": "r"}, "reader"),
    ]:
        r = await http.post("/v1/events", json=body)
        assert r.status_code == 422, r.text
        assert named in r.json()["error"]["message"]


async def test_a_story_id_and_a_url_that_are_two_stories_are_a_422(http):
    # The id won without a word: the click was stored on story 1 whatever page it named.
    one, two = (await http.get("/v1/stories", params={"limit": 2})).json()["items"]
    for url in (two["url"], "https://nowhere.example/x"):
        r = await http.post("/v1/events", json={"reader": "both", "story_id": one["id"], "url": url,
                                                "type": "click"})
        assert r.status_code == 422, r.text
        assert "different stories" in r.json()["error"]["message"]
    # One story, under another spelling of its URL: taken.
    r = await http.post("/v1/events", json={"reader": "both", "story_id": one["id"],
                                            "url": one["url"].replace("https:", "http:"), "type": "click"})
    assert r.status_code == 202 and r.json()["accepted"] == 1
    # The export waits for the reader's events to be written.
    exported = (await http.get("/v1/readers/both")).json()
    assert [e["story_id"] for e in exported["events"]] == [one["id"]]



async def test_a_story_id_as_the_widget_sends_it_a_string_of_digits_is_taken(http, stack):
    # The widget reads its cards' data-story-id and sends it as it is: a string. Keep it so.
    s = await _story(http)
    r = await http.post("/v1/events", json={"reader": "widget-ids", "story_id": str(s["id"]),
                                            "type": "impression"})
    assert r.status_code == 202 and r.json()["accepted"] == 1
    r = await http.post("/v1/events", json={"reader": "widget-ids", "story_id": True, "type": "click"})
    assert r.status_code == 422


async def test_a_story_id_string_that_is_not_digits_is_a_422_not_another_story(http, stack):
    # The lax parse took "3_0" as story 30, "+3", " 3 " and "3.0" as 3: a client's bug that
    # stored a click of another story than it named.
    s = await _story(http)
    for sent in (f"{s['id']}_0", f"+{s['id']}", f" {s['id']} ", f"{s['id']}.0"):
        r = await http.post("/v1/events", json={"reader": "odd-ids", "story_id": sent, "type": "click"})
        assert r.status_code == 422 and "string of its digits" in r.json()["error"]["message"], (sent, r.text)
    await stack.events_written()
    assert await stack.svc.store.reader_events("odd-ids") == []


async def test_a_failed_write_is_logged_in_one_line_without_the_readers(tmp_path, caplog):
    # events.write_failed logged SQLAlchemy's whole text: the statement, then its parameters,
    # every event of the batch (up to 5,000 reader ids and pages) on lines of their own, at
    # each of five attempts, and kept in the log after the readers were forgotten.
    import logging
    import sqlite3

    from aggregator.model import StoryDraft
    from aggregator.store import EventRecord, Store
    from api.events import EventSink

    path = tmp_path / "tidings.db"
    store = Store(f"sqlite+aiosqlite:///{path}")
    await store.migrate()
    await store.upsert_stories([StoryDraft(url="https://news.example/a", title="A story")])
    with sqlite3.connect(path) as db:  # the write fails as on a damaged or foreign schema
        db.execute("ALTER TABLE events RENAME TO events_elsewhere")
    sink = EventSink(store)
    batch = [EventRecord(f"k{i}", f"reader-secret-{i}", 1, "click", datetime.now(UTC),
                         page="https://publisher.example/private-page") for i in range(3)]
    caplog.set_level(logging.WARNING, logger="tidings.events")
    writing = asyncio.create_task(sink._write_batch(batch))
    try:
        for _ in range(500):  # the first attempt's line, then stop the retries
            if any(r.getMessage().startswith("events.write_failed") for r in caplog.records):
                break
            await asyncio.sleep(0.01)
    finally:
        writing.cancel()
        await asyncio.gather(writing, return_exceptions=True)
        await store.close()
    line = next(r.getMessage() for r in caplog.records
                if r.getMessage().startswith("events.write_failed"))
    assert "\n" not in line and "no such table: events" in line, line
    assert "reader-secret" not in line and "publisher.example" not in line, line
