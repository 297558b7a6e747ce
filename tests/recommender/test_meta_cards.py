"""MetaTable.cards: the block's bulk read of candidate metadata agrees with per-story get."""

from __future__ import annotations

import io
import os
import threading
from datetime import UTC, datetime, timedelta

import numpy as np

from aggregator.store import sort_time
from recommender.corpus import Card, MetaTable, StoryMeta, _record, compaction_due

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def test_cards_equal_per_story_records_in_order_and_skip_unknown_ids(tmp_path):
    table = MetaTable(tmp_path)
    metas = [StoryMeta(i, f"https://e.org/{i}", f"Title {i} – ünïcode", f"sum {i}", f"site{i % 3}",
                       f"src{i % 2}", "politics" if i % 2 else "culture", "An Author", f"img{i}",
                       NOW - timedelta(hours=i) if i % 2 else None, NOW - timedelta(days=1))
             for i in range(1, 30)]
    table.put_many(metas)
    table.pop(5)
    asked = [12, 5, 999, 3, 4, 12, 10**12]
    cards = table.cards(asked)
    assert [c.id for c in cards] == [12, 3, 4, 12]
    for card in cards:
        m = table[card.id]
        assert (card.url, card.title, card.summary, card.image_url, card.author, card.site,
                card.source, card.category, card.ranked_at) == (
            m.url, m.title, m.summary, m.image_url, m.author, m.site, m.source, m.category,
            sort_time(m.published_at, m.collected_at))
    assert cards[2].ranked_at == NOW - timedelta(days=1)  # no publication time: when collected
    assert table.cards([]) == []
    table.close()


def test_categories_come_from_the_columns_and_none_for_unknown_ids(tmp_path):
    table = MetaTable(tmp_path)
    assert table.categories([1, 2]) == [None, None]  # empty table
    table.put_many([StoryMeta(i, f"https://e.org/{i}", "T", "", "s", "src",
                              "politics" if i % 2 else "culture", "", "", None, NOW)
                    for i in range(1, 6)])
    table.pop(3)
    assert table.categories([1, 2, 3, 999, 4]) == ["politics", "culture", None, None, "culture"]
    assert table.categories([]) == []
    table.close()


def meta_round_trip(table: MetaTable, tmp_path, **settings) -> MetaTable:
    """The table saved as the corpus saves it (arrays in an .npz, records in a file) and
    restored from that."""
    arrays, write = table.snapshot()
    out = tmp_path / f"records{len(table)}"
    with open(out, "wb") as f:
        write(f)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as z:
        return MetaTable.restore({k: z[k] for k in z.files}, open(out, "rb"), tmp_path,
                                 **settings)


def test_category_names_are_the_stored_categories_and_survive_a_restore(tmp_path):
    table = MetaTable(tmp_path)
    assert table.category_names() == []
    # Sites and sources share the names table: "site" and "wire" are no categories.
    table.put_many([StoryMeta(i, f"https://e.org/{i}", "T", "", "site", "politics",
                              ("Sport", "culture", "politics")[i % 3], "", "", None, NOW)
                    for i in range(1, 7)])
    assert table.category_names() == ["Sport", "culture", "politics"]
    table.put_many([StoryMeta(9, "https://e.org/9", "T", "", "site", "wire", "culture", "", "",
                              None, NOW)])
    assert table.category_names() == ["Sport", "culture", "politics"]
    back = meta_round_trip(table, tmp_path)
    assert back.category_names() == ["Sport", "culture", "politics"]
    back.close()
    table.close()


def test_each_category_keeps_its_newest_story_time_through_a_restore(tmp_path):
    """What a cold feed's section heads are chosen by (the store's sort time: published, unless
    absent or later than collected), kept per stored spelling."""
    table = MetaTable(tmp_path)
    assert table.category_newest() == {}
    hours = timedelta(hours=1)
    table.put_many([StoryMeta(1, "u1", "T", "", "site", "wire", "politics", "", "", NOW - 5 * hours, NOW),
                    StoryMeta(2, "u2", "T", "", "site", "wire", "politics", "", "", NOW - 2 * hours, NOW),
                    StoryMeta(3, "u3", "T", "", "site", "wire", "Politics", "", "", None, NOW - 3 * hours),
                    # A time in the future sorts as collected.
                    StoryMeta(4, "u4", "T", "", "site", "wire", "culture", "", "", NOW + 9 * hours, NOW)])
    table.put_many([StoryMeta(5, "u5", "T", "", "site", "wire", "culture", "", "", NOW - 9 * hours, NOW)])
    want = {"politics": NOW - 2 * hours, "Politics": NOW - 3 * hours, "culture": NOW}
    assert table.category_newest() == want
    arrays, write = table.snapshot()
    with open(tmp_path / "records", "wb") as f:
        write(f)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as z:
        back = MetaTable.restore({k: z[k] for k in z.files}, open(tmp_path / "records", "rb"), tmp_path)
    assert back.category_newest() == want
    assert back.category_names() == table.category_names() == ["Politics", "culture", "politics"]
    back.close()
    table.close()


# -- compaction: replaced and removed cards give their bytes back

FLOOR = 64 << 10  # a small floor, so a few thousand cards reach it


def card(doc_id: int, version: int) -> StoryMeta:
    """A card whose every text field says which story and which version it is, each version
    a different length: a record read at a wrong offset cannot pass for a right one."""
    pad = "x" * ((doc_id * 7 + version * 13) % 97)
    return StoryMeta(doc_id, f"https://e.org/{doc_id}/{version}", f"Story {doc_id} v{version}",
                     f"Summary of {doc_id} v{version} {pad}", f"site{doc_id % 5}",
                     f"src{version % 3}", ("politics", "culture", "Sport")[doc_id % 3],
                     f"Author {version}", f"https://e.org/{doc_id}/{version}.jpg",
                     NOW - timedelta(minutes=doc_id), NOW - timedelta(minutes=version),
                     (f"tag{doc_id}", f"v{version}"))


def file_size(table: MetaTable) -> int:
    """The bytes of the files the table holds open: its scratch file and a restored
    snapshot's records."""
    records = table._records
    return os.fstat(records.fd).st_size + (records.base_end if records.base else 0)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_replaced_and_removed_cards_keep_the_file_bounded_and_every_live_card_intact(tmp_path):
    """Each "add" in the change log replaces a card and retention removes old stories: the
    scratch file kept every old record until the process restarted (~1 GB a year)."""
    table = MetaTable(tmp_path, compact_min_bytes=FLOOR)
    want = {i: card(i, 0) for i in range(1, 1001)}
    table.put_many(want.values())
    fds = open_fds()
    for version in range(1, 41):
        # Re-carded in batches, as the follow loop applies the log; a few removed, a few new.
        changed = [card(i, version) for i in sorted(want)[version % 3::3]]
        table.put_many(changed)
        want.update((m.id, m) for m in changed)
        for i in sorted(want)[:5]:
            table.pop(i)
            del want[i]
        fresh = [card(5000 + 10 * version + j, version) for j in range(5)]
        table.put_many(fresh)
        want.update((m.id, m) for m in fresh)
        live_bytes = sum(len(_record(m)) for m in want.values())
        # Without compaction it grew by ~50 KB a round, to ~2 MB.
        assert file_size(table) <= 2 * live_bytes + FLOOR + 100 * 1024  # + a batch of changes
        if version == 20:  # a restored table compacts too, letting go of the snapshot's file
            restored = meta_round_trip(table, tmp_path, compact_min_bytes=FLOOR)
            table.close()
            table = restored
    assert table._records.base is None  # the snapshot's file was let go
    assert open_fds() <= fds + 1  # old scratch files are closed, their bytes freed
    assert len(table) == len(want) and sorted(table) == sorted(want)
    assert all(table[i] == m for i, m in want.items())
    assert table.cards(sorted(want)) == [table_card(want[i]) for i in sorted(want)]
    assert table.category_names() == ["Sport", "culture", "politics"]
    assert meta_round_trip(table, tmp_path).get(max(want)) == want[max(want)]
    table.close()


def test_cards_read_on_other_threads_and_a_pending_save_stay_right_across_compactions(tmp_path):
    """The crowd recount reads cards on its own thread (`cards_off_thread`) and a save writes
    the records it took on another, while the event loop re-cards stories: a compaction
    swaps the files under both."""
    table = MetaTable(tmp_path, compact_min_bytes=FLOOR)
    ids = list(range(1, 801))
    table.put_many(card(i, 0) for i in ids)
    arrays, write_later = table.snapshot()  # written after the compactions below
    stop = threading.Event()
    bad: list[object] = []
    reads = [0]

    def read() -> None:
        while not stop.is_set():
            for c in table.cards_off_thread(ids[::7]):
                version = int(c.title.rsplit(" v", 1)[1])
                if c != table_card(card(c.id, version)):
                    bad.append(c)
            reads[0] += 1

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    compactions = 0
    try:
        for version in range(1, 60):
            before = table._records
            table.put_many(card(i, version) for i in ids[version % 2::2])
            compactions += table._records is not before
    finally:
        stop.set()
        for t in readers:
            t.join()
    assert compactions > 3 and reads[0] > 0 and bad == []
    out = tmp_path / "records-taken-before"
    with open(out, "wb") as f:
        write_later(f)
    back = MetaTable.restore(arrays, open(out, "rb"), tmp_path)
    assert all(back[i] == card(i, 0) for i in ids)  # what the table held when it was taken
    assert all(table[i] == card(i, 59 if i % 2 == 0 else 58) for i in ids)
    back.close()
    table.close()


def table_card(m: StoryMeta) -> Card:
    return Card(m.id, m.url, m.title, m.summary, m.image_url, m.author, m.site, m.source,
                m.category, m.ranked_at, m.tags)


def test_compaction_is_due_once_dead_bytes_outweigh_the_live_ones_past_the_floor():
    assert not compaction_due(dead_bytes=0, live_bytes=0)
    assert not compaction_due(dead_bytes=10 << 20, live_bytes=1 << 20)  # a small corpus: never
    assert not compaction_due(dead_bytes=100 << 20, live_bytes=500 << 20)
    assert compaction_due(dead_bytes=501 << 20, live_bytes=500 << 20)
    assert compaction_due(dead_bytes=65 << 20, live_bytes=1 << 20)
    assert not compaction_due(dead_bytes=5000, live_bytes=100, min_bytes=5000)
    assert compaction_due(dead_bytes=5001, live_bytes=100, min_bytes=5000)


def test_cards_added_while_another_thread_compacts_are_kept(tmp_path):
    """The copy runs outside the lock: cards put meanwhile lie past the copied end and are
    carried over when the files are swapped, whichever thread puts them."""
    table = MetaTable(tmp_path, compact_min_bytes=1 << 40)  # only the thread below compacts
    table.put_many(card(i, 0) for i in range(1, 2001))
    stop = threading.Event()
    compactions = [0]

    def compact() -> None:
        while not stop.is_set():
            table.compact()
            compactions[0] += 1

    thread = threading.Thread(target=compact)
    thread.start()
    try:
        for version in range(1, 40):
            table.put_many(card(i, version) for i in range(version, 2001 + 50 * version, 3))
    finally:
        stop.set()
        thread.join()
    want = {i: card(i, 0) for i in range(1, 2001)}
    for version in range(1, 40):
        want.update((i, card(i, version)) for i in range(version, 2001 + 50 * version, 3))
    assert compactions[0] > 0 and sorted(table) == sorted(want)
    assert all(table[i] == m for i, m in want.items())
    table.compact()
    assert table.file_bytes() == (sum(len(_record(m)) for m in want.values()), 0)
    table.close()
