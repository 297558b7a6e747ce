"""MetaTable.cards: the block's bulk read of candidate metadata agrees with per-story get."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import numpy as np

from aggregator.store import sort_time
from recommender.corpus import MetaTable, StoryMeta

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


def meta_round_trip(table: MetaTable, tmp_path) -> MetaTable:
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
        return MetaTable.restore({k: z[k] for k in z.files}, open(out, "rb"), tmp_path)


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
