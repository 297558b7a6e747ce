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


def test_a_deeper_ranking_that_picks_another_copy_of_a_shown_story_adds_it_once():
    # Depth 20 showed story 7 with its copy 8 collapsed into it; depth 40's pool made 8 the
    # copy to show (and 7 its copy): the same story, which the page must not hold twice.
    shallow = [("a", Ranked(7, 0.9, "", copies=(8,))), ("b", Ranked(2, 0.8, ""))]
    deeper = [("c", Ranked(8, 0.9, "", copies=(7,))), ("d", Ranked(2, 0.8, "")),
              ("e", Ranked(5, 0.7, "", copies=(6,)))]
    assert [r.id for _, r in merged([shallow, deeper], 4)] == [7, 2, 5]
    # A story shown on its own at depth 20 that a deeper ranking collapsed under another copy.
    assert [r.id for _, r in merged([[("x", Ranked(3, 1.0, ""))], [("y", Ranked(4, 1.0, "", copies=(3,)))]], 2)] == [3]
