"""A source's keep and block rules (aggregator.itemrules): what they are matched against."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aggregator.itemrules import MAX_RULE_CHARS, admitted, compile_rule
from aggregator.model import ParsedItem
from aggregator.normalize import normalize

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def draft(title="Budget vote in parliament", url="https://news.example/politics/budget?utm_source=rss",
          summary="", author="", tags=()):
    d = normalize(ParsedItem(url=url, title=title, summary=summary, author=author, tags=tuple(tags)),
                  source=None, now=NOW)
    assert d is not None
    return d


@pytest.mark.parametrize(("item", "rule"), [
    (draft(title="Live: election night as it happens"), "^live:"),  # the title, case ignored
    (draft(title="Tom &amp; Jerry return"), "tom & jerry"),  # as shown: entities decoded
    (draft(url="https://news.example/Sport/cup-final"), "/sport/"),  # the link
    (draft(url="https://news.example/a?utm_source=rss"), "utm_source"),  # as the feed gives it
    (draft(author="Partner Content"), r"\bpartner\b"),  # the author
    (draft(tags=["UK news", "Podcasts"]), "^podcasts?$"),  # each tag alone, anchors included
    # An item without a title: the one made from its summary's first words.
    (draft(title="", summary="Weather warning for the coast tonight"), "^weather"),
])
def test_a_rule_is_searched_in_the_title_link_author_and_each_tag(item, rule):
    assert not admitted(item, "", rule)
    assert admitted(item, rule, "")


def test_neither_the_summary_nor_the_body_is_searched():
    """A teaser's passing mention would leave out a story about something else."""
    item = draft(title="Minister resigns", summary="She spoke after the cup final on Sunday.")
    assert admitted(item, "", "cup final") and not admitted(item, "cup final", "")


def test_an_item_is_kept_when_it_matches_keep_and_not_block():
    sport = draft(title="Cup final ends in penalties", tags=["Sport"])
    live = draft(title="Live: cup final", tags=["Sport"])
    other = draft(title="Budget vote")
    assert [admitted(d, "sport", "^live") for d in (sport, live, other)] == [True, False, False]
    assert all(admitted(d, "", "") for d in (sport, live, other))  # no rules: every item


def test_tags_are_searched_one_by_one_not_joined():
    item = draft(tags=["Rugby", "Union"])
    assert admitted(item, "", "rugby union")  # no single tag says it


def test_compile_rule_says_why_a_pattern_cannot_be_a_rule():
    assert compile_rule("sport").search("SPORT")
    for bad, why in (("", "must not be empty"), ("(a", "not a valid regular expression"),
                     ("a{99999999999}", "not a valid regular expression"),
                     ("x" * (MAX_RULE_CHARS + 1), f"at most {MAX_RULE_CHARS} characters")):
        with pytest.raises(ValueError, match=why):
            compile_rule(bad)
