"""Datelines: the date a story's lead gives for itself, when its metadata gives none."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aggregator.dateline import dateline


@pytest.mark.parametrize("text, expected", [
    ("updated 8: 41 p. m. EST, Tue March 3, 2009 Obama overturns Bush rule", (2009, 3, 3)),
    ("Monday 16 September 2013 03. 31 BST A British climber has fallen", (2013, 9, 16)),
    ("27 NOVEMBER, 2005 Did the earth move for you?", (2005, 11, 27)),
    ("September 18th, 2013, 05: 31 GMT Microsoft Launches Emergency Patch", (2013, 9, 18)),
    ("Convicted man on the lam in Texas Nov. 30, 2009 Police say", (2009, 11, 30)),
    ("Reuters Sept. 18, 2013 Microsoft released a fix", (2013, 9, 18)),
    ("Posted 2013-09-18 by the desk", (2013, 9, 18)),
    ("the 2nd of June 2012 was a Saturday", (2012, 6, 2)),
])
def test_dates_in_the_lead(text: str, expected: tuple[int, int, int]) -> None:
    assert dateline(text) == datetime(*expected, tzinfo=UTC)


@pytest.mark.parametrize("text, expected", [
    ("BERLIN, 18. September 2013 (dpa) - Die Bundesregierung", (2013, 9, 18)),
    ("MADRID, 18 de septiembre de 2013 - El Gobierno", (2013, 9, 18)),
    ("Paris, le 3 mars 2009 - Le président", (2009, 3, 3)),
    ("Roma, 3 marzo 2009 - Il governo", (2009, 3, 3)),
    ("Lisboa, 3 de março de 2009 - O governo", (2009, 3, 3)),
    ("Amsterdam, 3 maart 2009 - Het kabinet", (2009, 3, 3)),
    ("МОСКВА, 18 сентября 2013 г. Президент", (2013, 9, 18)),
    ("ANKARA, 18 Eylül 2013 - Cumhurbaşkanı", (2013, 9, 18)),
    ("Buenos Aires, 3 de mayo del 2009", (2009, 5, 3)),
])
def test_dates_in_the_lead_in_other_languages(text: str, expected: tuple[int, int, int]) -> None:
    # English month names alone: such a lead gave no date, and text sent undated stayed so.
    assert dateline(text) == datetime(*expected, tzinfo=UTC)


@pytest.mark.parametrize("text", [
    "At least 18 people 2013 died",  # a word between a number and a year that names no month
    "Ministers met on Tuesday to discuss the budget.",  # weekday only
    "Sales in 2013 were the best since 1999.",  # years only: too coarse for an event
    "The hearing is set for 03/04/2009.",  # numeric: March 4 or 3 April
    "They may sign in March, 2013 at the earliest.",  # month and year, no day
])
def test_no_full_date(text: str) -> None:
    assert dateline(text) is None


def test_an_impossible_date_is_skipped_for_the_next():
    assert dateline("31 February 2013, then on 2 March 2013 it rained") == datetime(2013, 3, 2, tzinfo=UTC)


def test_only_the_lead_counts():
    body = "A story about a trial. " * 30 + "The verdict is due on 4 May 2027."
    assert dateline(body) is None
    assert dateline(body, lead_chars=len(body)) == datetime(2027, 5, 4, tzinfo=UTC)
