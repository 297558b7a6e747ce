"""The text the indexer embeds (`story_text`) and the lead the lexical index reads
(`lead_words`): the same words as ever, found without reading a whole body."""

from __future__ import annotations

import re
import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.textclean import first_words
from recommender.embed import story_text
from recommender.lexical import lead_words

_SPACE = re.compile(r"\s+")


def story_text_as_it_was(title: str, summary: str = "", text: str = "", max_words: int = 180) -> str:
    """The recipe before the body was cut first: every vector stored was made from this."""
    title = _SPACE.sub(" ", title).strip()
    summary = _SPACE.sub(" ", summary).strip()
    body = _SPACE.sub(" ", text).strip()
    parts = [title]
    if summary and not body.startswith(summary[:80]):
        parts.append(summary)
    if body:
        parts.append(body)
    words = " ".join(p for p in parts if p).split(" ")
    return " ".join(words[:max_words])


# Words, and every kind of space (tabs, line breaks, no-break and ideographic spaces, the
# separators str.isspace counts) in runs, at the ends too.
_CHARS = st.sampled_from(list("ab c\t\n\r\x0b\x0c\x1c\x85\xa0\u2009\u3000é1'"))
_TEXT = st.text(_CHARS, max_size=300)


@settings(max_examples=400, deadline=None)
@given(title=_TEXT, summary=_TEXT, text=_TEXT, max_words=st.integers(0, 120))
def test_the_embedded_text_is_what_it_always_was(title, summary, text, max_words):
    assert story_text(title, summary, text, max_words) == story_text_as_it_was(
        title, summary, text, max_words)


@settings(max_examples=200, deadline=None)
@given(words=st.lists(st.sampled_from(["a", "bb", "a b", "ccc"]), max_size=120),
       cut=st.integers(0, 100), max_words=st.integers(0, 60))
def test_a_summary_that_begins_the_body_is_read_once_as_before(words, cut, max_words):
    # The case the cut body must still decide alike: the summary a prefix of a longer body
    # (a feed's description is its first paragraph), whatever `max_words` keeps.
    body = " ".join(words)
    summary = body[:cut]
    assert story_text("Title", summary, body, max_words) == story_text_as_it_was(
        "Title", summary, body, max_words)


@given(text=_TEXT, words=st.integers(0, 80))
def test_first_words_are_the_split_words(text, words):
    assert first_words(text, words) == " ".join(text.split()[:words])
    assert lead_words(text, words) == " ".join(text.split()[:words])


def peak_bytes(call) -> tuple[object, int]:
    """What `call()` returns, and the most memory it held at once (tracemalloc: counted
    allocations, the same on any machine, unlike a time bound)."""
    tracemalloc.start()
    try:
        got = call()
        return got, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# A full article of a million words behind its lead. Collapsing the whole body's whitespace
# and splitting it all, as before, held every word at once (~90 bytes a word, 5M words);
# cutting the lead first holds at most one copy of the body's rest (the split's remainder).
LEAD = "Ministers met in Brussels on Tuesday " * 40
BODY = LEAD + "and then  the\ttail went on\n" * 1_000_000


def test_a_long_body_costs_what_its_lead_does():
    got, peak = peak_bytes(lambda: story_text("Budget talks", "Ministers met", BODY))
    assert got == story_text("Budget talks", "Ministers met", LEAD)
    assert peak < 2 * len(BODY), f"{peak / len(BODY):.1f} bytes a character: the whole body was split"


def test_the_lexical_lead_of_a_long_body_costs_what_the_lead_does():
    # The corpus reads every new story's lead (`corpus.lexical_text`) on the event loop.
    got, peak = peak_bytes(lambda: lead_words(BODY))
    assert got == lead_words(LEAD)
    assert peak < 2 * len(BODY), f"{peak / len(BODY):.1f} bytes a character: the whole body was split"
