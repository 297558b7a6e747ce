"""The rankings a search's pages are cut from (recommender/search.py `search_depths`, `merged`)."""

from __future__ import annotations

from recommender.related import Ranked
from recommender.search import merged, search_depths


def test_the_depths_double_from_20_until_one_holds_k():
    assert search_depths(1) == search_depths(20) == [20]
    assert search_depths(21) == search_depths(40) == [20, 40]
    assert search_depths(50) == [20, 40, 80]


def test_a_deeper_ranking_adds_only_the_stories_before_it_left_out():
    def ranking(*ids):
        return [(f"story {i}", Ranked(i, 1.0 / i, "")) for i in ids]

    rows = merged([ranking(3, 1, 2), ranking(1, 4, 2, 5, 3)], 4)
    assert [r.id for _, r in rows] == [3, 1, 2, 4]
    assert [r.id for _, r in merged([ranking(3, 1)], 5)] == [3, 1]
