"""Datelines: the date a story's lead gives for itself, when its metadata gives none."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from aggregator.dateline import dateline, numeric_date, relative_date, with_clock, zoned_clock


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


@pytest.mark.parametrize("text, lang, expected", [
    ("25.11.2026", "", (2026, 11, 25)),
    ("Stand: 03.04.2026, 14:00 Uhr", "", (2026, 4, 3)),  # dots: day first
    ("25/11/2026", "", (2026, 11, 25)),  # the one reading that is a date
    ("11/25/2026", "", (2026, 11, 25)),
    ("2026/11/25", "ja", (2026, 11, 25)),
    ("03/04/2026", "en-US", (2026, 3, 4)),
    ("03/04/2026", "en-GB", (2026, 4, 3)),
    ("03/04/2026", "fr-FR", (2026, 4, 3)),
    ("04/04/2026", "", (2026, 4, 4)),
    ("03/04/2026", "en", None),  # reads both ways, and English does not say which
    ("03/04/2026", "", None),
    ("31/02/2026", "de", None),
    ("25.11.26", "de", (2026, 11, 25)),  # a two-digit year, as strptime's %y reads it
    ("11/25/26", "", (2026, 11, 25)),
    ("03/04/26", "en-US", (2026, 3, 4)),
    ("03/04/26", "en", None),
    ("1.2.3.4", "", None),  # a version or an address, not a date
])
def test_numeric_dates_only_where_one_reading_holds(text: str, lang: str,
                                                    expected: tuple[int, int, int] | None) -> None:
    assert numeric_date(text, lang) == (datetime(*expected, tzinfo=UTC) if expected else None)


FETCHED = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize("text, expected", [
    ("2 hours ago", datetime(2026, 11, 25, 13, 0, tzinfo=UTC)),
    ("5 min ago", datetime(2026, 11, 25, 14, 55, tzinfo=UTC)),
    ("an hour ago", datetime(2026, 11, 25, 14, 0, tzinfo=UTC)),
    ("vor 2 Stunden", datetime(2026, 11, 25, 13, 0, tzinfo=UTC)),
    ("vor einem Tag", datetime(2026, 11, 24, 15, 0, tzinfo=UTC)),
    ("il y a 3 heures", datetime(2026, 11, 25, 12, 0, tzinfo=UTC)),
    ("hace 2 días", datetime(2026, 11, 23, 15, 0, tzinfo=UTC)),
    ("just now", FETCHED),
    ("Yesterday, 14:30", datetime(2026, 11, 24, 14, 30, tzinfo=UTC)),
    ("today, 16:30", FETCHED),  # no zone: read as UTC, but not past the fetch time
    ("Gestern", datetime(2026, 11, 24, tzinfo=UTC)),
    ("aujourd’hui à 9h", datetime(2026, 11, 25, tzinfo=UTC)),
    ("in 2 hours", None),
    ("Politics", None),
])
def test_relative_dates_are_read_at_the_fetch_time(text: str, expected: datetime | None) -> None:
    assert relative_date(text, FETCHED) == expected


DAY = datetime(2026, 11, 25, tzinfo=UTC)


@pytest.mark.parametrize("text, expected", [
    ("25 Nov 2026, 14:05", (14, 5)),  # no zone: UTC, as a feed's naive time
    ("November 25, 2026 at 2:05 p.m. EST", (19, 5)),
    ("Nov 25, 2026, 8:54 PM UTC", (20, 54)),
    ("25. November 2026, 09:15 Uhr", (9, 15)),
    ("25.11.2026 14h05", (14, 5)),
    ("25 Nov 2026 10:00 GMT+1", (9, 0)),
    ("25 Nov 2026 10:00 +05:30", (4, 30)),
    ("November 25, 2026: 1:28 AM ET", (6, 28)),  # Eastern winter time
    ("Nov 25, 2026 12:30 AM", (0, 30)),
    ("25.11.2026, 14:05 am Montag", (14, 5)),  # German "am" (on) is no a.m.
    ("25 Nov 2026, 16:30", (15, 0)),  # ahead of the fetch time: a zone east of UTC
    ("25 Nov 2026 by Jane Doe", (0, 0)),
    ("25 Nov 2026, 44:22 GMT", (0, 0)),  # a countdown, no time of day
])
def test_a_time_beside_the_date_is_kept(text: str, expected: tuple[int, int]) -> None:
    assert with_clock(DAY, text, FETCHED) == DAY.replace(hour=expected[0], minute=expected[1])


def test_us_eastern_time_follows_summer_time() -> None:
    assert with_clock(datetime(2016, 7, 1, tzinfo=UTC), "July 1, 2016: 1:28 AM ET") == \
        datetime(2016, 7, 1, 5, 28, tzinfo=UTC)


@pytest.mark.parametrize("text, expected", [
    ("14:05 GMT", datetime(2026, 11, 25, 14, 5, tzinfo=UTC)),
    ("16:05 GMT", datetime(2026, 11, 24, 16, 5, tzinfo=UTC)),  # ahead of now: yesterday's
    ("Updated 2:05 PM ET", datetime(2026, 11, 24, 19, 5, tzinfo=UTC)),
    ("9:00 JST", datetime(2026, 11, 25, 0, 0, tzinfo=UTC)),
    ("14:05", None),  # no zone: any hour of a day
])
def test_a_time_alone_with_its_zone_is_the_last_one_before_the_fetch(
        text: str, expected: datetime | None) -> None:
    assert zoned_clock(text, FETCHED) == expected


BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize("now, text, expected", [
    # 25 Oct 2026, 03:00 CEST -> 02:00 CET: 02:00-02:59 happens twice. At the second 02:30
    # (01:30 UTC), the last 02:45 was the first one, 45 minutes ago, not yesterday's.
    (datetime(2026, 10, 25, 1, 30, tzinfo=UTC), "02:45", datetime(2026, 10, 25, 0, 45, tzinfo=UTC)),
    (datetime(2026, 10, 25, 1, 30, tzinfo=UTC), "02:15", datetime(2026, 10, 25, 1, 15, tzinfo=UTC)),
    # 29 Mar 2026, 02:00 CET -> 03:00 CEST: at 03:10 (01:10 UTC) a "02:30" is past, not 20
    # minutes ahead.
    (datetime(2026, 3, 29, 1, 10, tzinfo=UTC), "02:30", datetime(2026, 3, 29, 0, 30, tzinfo=UTC)),
])
def test_a_site_time_alone_across_summer_time_changes_is_never_ahead_nor_a_day_off(
        now: datetime, text: str, expected: datetime) -> None:
    assert zoned_clock(text, now, BERLIN) == expected


TOKYO = ZoneInfo("Asia/Tokyo")
# 26 Nov 2026, 01:00 in Tokyo: Tokyo's date is a day ahead of UTC's.
TOKYO_FETCHED = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)


@pytest.mark.parametrize("text, zone, expected", [
    # Ten minutes ahead of the fetch: kept as written (16:10 UTC), as the bound held only for
    # a day that had begun in UTC, and Tokyo's 26 November had not.
    ("26 Nov 2026, 01:10", TOKYO, TOKYO_FETCHED),
    ("26 Nov 2026, 00:50", TOKYO, datetime(2026, 11, 25, 15, 50, tzinfo=UTC)),  # past: as written
    # No `timezone` for a Tokyo site: read as UTC, 26 Nov 00:50 was nine hours ahead.
    ("26 Nov 2026, 00:50", UTC, TOKYO_FETCHED),
    # A day that has begun nowhere yet is no clock's error: kept, for `normalize` to judge.
    ("28 Nov 2026, 10:00", TOKYO, datetime(2026, 11, 28, 1, 0, tzinfo=UTC)),
])
def test_a_time_without_a_zone_is_not_after_the_fetch_on_a_site_east_of_utc(
        text: str, zone: ZoneInfo, expected: datetime) -> None:
    assert with_clock(dateline(text), text, TOKYO_FETCHED, zone) == expected
