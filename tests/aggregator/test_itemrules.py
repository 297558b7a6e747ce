"""A source's keep and block rules (aggregator.itemrules): what they are matched against."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aggregator.itemrules import MAX_RULE_CHARS, RuleTooSlow, admitted, compile_rule
from aggregator.model import ParsedDocument, ParsedItem, SourceSpec
from aggregator.normalize import normalize
from aggregator.parsepool import drafts_from

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


# Backtracks without end on a run of a's that does not end the text: with `re` a search of a
# 60-character title would take longer than the universe has existed (~fib(60) steps).
RUNAWAY = "(a|aa)+$"


@pytest.mark.timeout(30)
def test_a_rule_that_backtracks_without_end_is_stopped_and_named():
    item = draft(title="a" * 60 + "!")
    with pytest.raises(RuleTooSlow, match=r"block rule took over 50 ms.*\(a\|aa\)\+\$") as e:
        admitted(item, "", RUNAWAY)
    assert e.value.which == "block"
    with pytest.raises(RuleTooSlow, match="keep rule"):
        admitted(item, RUNAWAY, "")
    assert admitted(draft(title="Budget vote"), "", RUNAWAY)  # a plain title: no time at all


def _spec(keep="", block=""):
    return SourceSpec(name="mixed", url="https://news.example/feed", category="politics",
                      keep=keep, block=block)


@pytest.mark.timeout(30)
def test_items_from_a_runaway_rule_on_are_kept_and_the_problem_says_which_rule():
    """The rules stop at the first item they run away on: it and the items after it are kept
    (an operator's pattern loses no story), the ones before were judged as usual."""
    items = (ParsedItem(url="https://news.example/sport/cup", title="Cup final", tags=("Sport",)),
             ParsedItem(url="https://news.example/politics/budget", title="Budget vote"),
             ParsedItem(url="https://news.example/sport/a", title="a" * 60 + "!", tags=("Sport",)),
             ParsedItem(url="https://news.example/politics/tax", title="Tax plans"))
    doc = ParsedDocument(kind="feed", title="Mixed", items=items, problems=("item 9 had no link",))
    drafts, left_out, out = drafts_from(doc, _spec(keep="sport", block=RUNAWAY), NOW)
    assert [d.title for d in drafts] == ["Cup final", "a" * 60 + "!", "Tax plans"]
    assert left_out == 1  # "Budget vote", before the rules stopped
    assert out.problems[0] == "item 9 had no link" and len(out.problems) == 2
    assert "block rule took over 50 ms" in out.problems[1] and "simplify" in out.problems[1]
    # Rules that behave: the document comes back as it was.
    drafts, left_out, same = drafts_from(doc, _spec(keep="sport"), NOW)
    assert (len(drafts), left_out, same) == (2, 2, doc)
