"""The guard on a move by item id (`storymatch.same_story`), on the texts of the collector's
tests: a rewrite of one event is one story, two days' briefings are not, nor two titles."""

from __future__ import annotations

from aggregator.storymatch import same_story, story_words
from tests.aggregator.test_story_updates import BODY, BRIEFINGS, REWRITE


def test_a_rewrite_of_one_event_is_one_story():
    before = story_words("Dock workers strike at Portmouth harbour", "", BODY)
    after = story_words("Portmouth harbour strike ends", REWRITE, "")
    assert same_story(before, after) and same_story(after, before)


def test_two_days_briefings_and_bare_titles_are_not():
    days = [story_words(t, s, "") for _, t, s in BRIEFINGS]
    assert not any(same_story(a, b) for a in days for b in days if a is not b)
    assert same_story(days[0], days[0])
    assert not same_story(story_words("Podcast: Episode 41", "", ""),
                          story_words("Podcast: Episode 42", "", ""))


def test_the_lead_counts_not_the_rest_of_a_long_body():
    tail = " ".join(["filler"] * 200) + " Portmouth harbour strike workers union company"
    assert not same_story(story_words("Festival", "", tail),
                          story_words("Portmouth harbour strike", "", BODY))
