"""Whether a feed item is recognisably a stored story (pure): the guard on a move by item id.

A feed item's id is meant to outlive a change of its link, so a story its source rewrites
under a new slug is found by it (`store.moved_stories`). But some feeds keep one item whose
id never changes while its content does (a "daily briefing", a "latest episode"): moved by
id alone, yesterday's story became today's and left lists. So a move by id also needs the
two texts to share enough of their distinctive words: a rewrite of one event keeps its
names and key terms (place, people, subject) through a new headline and lead; two days'
briefings share only their boilerplate.
"""

from __future__ import annotations

from aggregator.textclean import casefolded_words, first_words

# Words shorter than this are left out: nearly all of English's (and most Latin-script
# languages') function words are ("the", "said", "that", "with", "from"), and two unrelated
# texts share many of them.
MIN_WORD_CHARS = 5
# The lead of the body, as a summary is: a rewrite changes the lead, the rest may be anything.
LEAD_WORDS = 100
# Shared words needed, in number and as a share of the shorter text's: a rewrite of one
# story in the tests shares 8 of 23 (35%); two days' briefings share their title's words and
# a greeting (3 of 30 or more). Three at least: titles alone ("Episode 41", "Episode 42")
# share a word or two and tell nothing.
MIN_SHARED = 3
MIN_SHARE = 0.25


def story_words(title: str, summary: str, text: str) -> frozenset[str]:
    """The distinctive words of a story: its headline's, summary's and lead's, without case."""
    joined = " ".join((title, summary, first_words(text, LEAD_WORDS)))
    return frozenset(w for w in casefolded_words(joined) if len(w) >= MIN_WORD_CHARS)


def same_story(a: frozenset[str], b: frozenset[str]) -> bool:
    """Whether two stories' `story_words` make them one story. Texts of a script written
    without spaces give few long "words" that rarely match: no move, a second story (as
    before item ids were kept), never a false one."""
    shared = len(a & b)
    return shared >= MIN_SHARED and shared >= MIN_SHARE * min(len(a), len(b))
