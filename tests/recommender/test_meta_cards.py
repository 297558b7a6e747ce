"""MetaTable.cards: the block's bulk read of candidate metadata agrees with per-story get."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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
                card.source, card.category, card.when) == (
            m.url, m.title, m.summary, m.image_url, m.author, m.site, m.source, m.category, m.when)
    assert cards[2].when == NOW - timedelta(days=1)  # no publication time: when it was collected
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
