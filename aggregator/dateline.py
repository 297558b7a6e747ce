"""The date a story's lead gives for itself ("18 September 2013", "Tue March 3, 2009").

Wire reports and many pages open with a dateline or a "Last updated" stamp. When a story comes
without a publication time (text sent to the API, an import without dates), that date is the
best evidence of when it happened, and reports of one event carry the same or adjacent days.
Only full dates with a month name (English, or a language `feeddates` reads) or ISO dates
count: "03/04/2009" reads both ways, and a bare year is too coarse to tell one event from the
same kind of event a year later.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

from aggregator.feeddates import month_number
from aggregator.normalize import plausible_time

_MONTH = (r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
          r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?")
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"
_YEAR = r"((?:19|20)\d\d)"
_DATE = re.compile(
    rf"\b(?:{_MONTH}\s+{_DAY},?\s+{_YEAR}"  # March 3, 2009
    rf"|{_DAY}\s+(?:of\s+)?{_MONTH},?\s+{_YEAR}"  # 18 September 2013
    rf"|{_YEAR}-(\d\d)-(\d\d)"  # 2013-09-18
    # 18. September 2013, 18 de septiembre de 2013, 18 сентября 2013 г.: a month named in
    # another language (`feeddates.month_number`'s), day first as those languages write it.
    # English alone, the leads of German, French, Spanish, Russian or Turkish stories gave
    # no date, and text sent undated stayed undated.
    rf"|(\d{{1,2}})\.?\s+(?:de\s+)?([^\W\d_]{{3,12}})\.?,?\s+(?:de\s+|del\s+)?{_YEAR})\b",
    re.IGNORECASE,
)
# The dateline sits in the first lines (~60 words); a date further in is usually about
# something else (a court date, an earlier event).
LEAD_CHARS = 400


def dateline(text: str, lead_chars: int = LEAD_CHARS) -> datetime | None:
    """The first full date in the first `lead_chars` characters of `text` (midnight UTC)."""
    for m in _DATE.finditer(text[:lead_chars]):
        g = m.groups()
        if g[0]:
            month, day, year = g[0], g[1], g[2]
        elif g[4]:
            day, month, year = g[3], g[4], g[5]
        elif g[6]:
            year, month, day = g[6], g[7], g[8]
        else:
            day, month, year = g[9], g[10], g[11]
        month_no = int(month) if month.isdigit() else month_number(month)
        if month_no is None:  # "18 people 2013": no month
            continue
        try:
            return datetime(int(year), month_no, int(day), tzinfo=UTC)
        except ValueError:  # 31 February, month 13: not a date, try the next one
            continue
    return None


def time_from_lead(text: str, now: datetime) -> datetime | None:
    """A story's time when its metadata gives none: its dateline, checked as a feed's time is
    (a date ahead of `now` or before 1995 is not when the story happened)."""
    return plausible_time(dateline(text), now)


# Listing pages write a story's date as its readers read it: "25.11.2026", "11/25/2026",
# "2 hours ago", "vor 2 Stunden", "yesterday". Read only where one reading is possible.
# A two-digit year ("25.11.26", "11/25/26") is read as strptime's %y reads it: 00-68 are 20xx.
_NUMERIC = re.compile(r"\b(\d{1,2})([./-])(\d{1,2})\2((?:19|20)\d\d|\d\d)\b(?![./-]\d)"
                      r"|\b((?:19|20)\d\d)/(\d{1,2})/(\d{1,2})\b")
# Languages (BCP 47 tags, lower-cased) whose readers write the month first: 11/25/2026.
# English elsewhere writes the day first; plain "en" (or Canada's, which writes both) says
# neither, and other languages write the day first.
_MONTH_FIRST = ("en-us", "en-ph")
_DAY_FIRST_ENGLISH = ("en-gb", "en-ie", "en-au", "en-nz", "en-in", "en-za", "en-sg")


def numeric_date(text: str, lang: str = "") -> datetime | None:
    """The day of a numeric date (midnight UTC): "25.11.2026" or "25.11.26" (dots: day
    first, as every language writing them does), "2026/11/25", and "25/11/2026" or "11/25/2026" by the one
    reading that is a date, else by the page's language `lang` ("en-US": month first; "de",
    "fr", "en-GB": day first). None when it reads both ways and the language does not say:
    a wrong date is worse than none (pure)."""
    m = _NUMERIC.search(text)
    if m is None:
        return None
    if m.group(5):
        return _day(int(m.group(5)), int(m.group(6)), int(m.group(7)))
    first, sep, second, year = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
    if year < 100:  # a German listing's "25.11.26" was no date at all
        year += 2000 if year < 69 else 1900
    day_first, month_first = _day(year, second, first), _day(year, first, second)
    if day_first is None or month_first is None or day_first == month_first or sep == ".":
        return day_first or month_first
    tag = lang.strip().lower().replace("_", "-")
    if tag.startswith(_MONTH_FIRST):
        return month_first
    if tag.startswith(_DAY_FIRST_ENGLISH) or (tag and tag.split("-")[0] != "en"):
        return day_first
    return None


def _day(year: int, month: int, day: int) -> datetime | None:
    try:
        return datetime(year, month, day, tzinfo=UTC)
    except ValueError:
        return None


_HOUR, _DAY_S = 3600, 86400
# Time units as English, German, French and Spanish listings write them, and abbreviated.
_UNIT_SECONDS = {
    **dict.fromkeys("s sec secs second seconds sek sekunde sekunden seconde secondes segundo "
                    "segundos seg".split(), 1),
    **dict.fromkeys("m min mins minute minutes minuten minuto minutos".split(), 60),
    **dict.fromkeys("h hr hrs hour hours std stunde stunden heure heures hora horas".split(),
                    _HOUR),
    **dict.fromkeys("d day days tag tage tagen j jour jours día días dia dias".split(), _DAY_S),
    **dict.fromkeys("w wk wks week weeks woche wochen semaine semaines semana semanas".split(),
                    7 * _DAY_S),
    **dict.fromkeys("mo mos month months monat monate monaten mois mes meses".split(),
                    30 * _DAY_S),
    **dict.fromkeys("y yr yrs year years jahr jahre jahren an ans année années año años".split(),
                    365 * _DAY_S),
}
_ONE = r"\d+|an?|one|eine[mnr]?|une?|una?"
_UNIT = "|".join(sorted(_UNIT_SECONDS, key=len, reverse=True))
_RELATIVE = re.compile(
    rf"\b(?:(?:vor|il\s+y\s+a|hace)\s+({_ONE})\s*({_UNIT})\b|({_ONE})\s*({_UNIT})\.?\s+ago\b)",
    re.IGNORECASE)
# Days back from today; None: `now` itself.
_DAYS_BACK = {"just now": None, "gerade eben": None, "à l'instant": None, "today": 0,
              "heute": 0, "aujourd'hui": 0, "hoy": 0, "yesterday": 1, "gestern": 1, "hier": 1,
              "ayer": 1}
_DAY_WORD = re.compile(r"^\W*(" + "|".join(_DAYS_BACK) + r")\b", re.IGNORECASE)


def relative_date(text: str, now: datetime, site_zone: tzinfo = UTC) -> datetime | None:
    """The time a relative date means at `now`, the time the page was fetched: "2 hours
    ago", "vor 2 Stunden", "il y a 3 heures", "hace un día" (months as 30 days, years as
    365); "just now" is `now`; "today" and "yesterday" (and their German, French, Spanish
    words, opening the text) are that day in `site_zone`, the site's, at the time the text writes
    beside them (`with_clock`), else midnight UTC, as other day dates are (pure)."""
    if m := _RELATIVE.search(text):
        count, unit = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        return now - timedelta(seconds=_count(count) * _UNIT_SECONDS[unit.lower()])
    if m := _DAY_WORD.search(text.replace("’", "'")):
        if (back := _DAYS_BACK[m.group(1).lower()]) is None:
            return now
        day = (now.astimezone(site_zone) - timedelta(days=back)).date()
        return with_clock(datetime(day.year, day.month, day.day, tzinfo=UTC), text, now, site_zone)
    return None


def _count(word: str) -> int:
    return int(word) if word.isdigit() else 1  # "an hour", "einer Stunde", "une heure"


# A time of day as listings write it beside a date: "14:05", "14h05", "2:05 PM", "5:45 p.m.
# ET", "09:15 Uhr", "8:54 PM UTC", "14:05 GMT+1", "10:00 +01:00". Minutes are required: a
# bare "14h" or "2pm" is too easily some other number.
_CLOCK = re.compile(
    r"(?<![\d:.])(\d{1,2})(?::|h)(\d\d)(?::\d\d)?(?![\d:])"
    r"(?:\s*([ap])\.?\s?m\b\.?)?(?:\s*uhr\b)?"
    r"(?:\s*([a-z]{1,4})\b)?(?:\s*([+\-\u2212])(\d{1,2})(?::?(\d\d))?)?",
    re.IGNORECASE)
# Zones by their abbreviations, in hours from UTC (CST as North America's, where English
# listings use it); the US's "ET"/"PT" are summer or winter time by the date.
_ZONE_HOURS = {"gmt": 0, "utc": 0, "ut": 0, "z": 0, "wet": 0, "bst": 1, "west": 1, "cet": 1,
               "mez": 1, "cest": 2, "mesz": 2, "eet": 2, "eest": 3, "msk": 3, "jst": 9,
               "kst": 9, "aest": 10, "aedt": 11, "est": -5, "edt": -4, "cst": -6, "cdt": -5,
               "mst": -7, "mdt": -6, "pst": -8, "pdt": -7}
_ZONE_PLACES = {"et": "America/New_York", "ct": "America/Chicago", "mt": "America/Denver",
                "pt": "America/Los_Angeles"}


def _clock(text: str) -> tuple[int, int, tzinfo | None] | None:
    """The first time of day in `text`: hour, minute (24-hour) and its zone, None when
    unsaid or a word that is no zone (pure)."""
    m = _CLOCK.search(text)
    if m is None:
        return None
    hour, minute = int(m.group(1)), int(m.group(2))
    if m.group(3) and 1 <= hour <= 12:  # "14:05 am Montag" is German's "on", not a.m.
        hour = hour % 12 + (12 if m.group(3).lower() == "p" else 0)
    if hour > 23 or minute > 59:
        return None
    name = (m.group(4) or "").lower()
    zone: tzinfo | None = None
    if name in _ZONE_PLACES:
        zone = ZoneInfo(_ZONE_PLACES[name])
    elif name in _ZONE_HOURS:
        zone = timezone(timedelta(hours=_ZONE_HOURS[name]))
    if m.group(5) and (not name or _ZONE_HOURS.get(name) == 0) and int(m.group(6)) <= 14:
        sign = 1 if m.group(5) == "+" else -1
        zone = timezone(sign * timedelta(hours=int(m.group(6)), minutes=int(m.group(7) or 0)))
    return hour, minute, zone


# The furthest east any zone is ahead of UTC (Kiribati's Line Islands, UTC+14): the first
# place a day begins.
_EARLIEST_OFFSET = timedelta(hours=14)


def with_clock(day: datetime, text: str, now: datetime | None = None,
               site_zone: tzinfo = UTC) -> datetime:
    """`day` (midnight UTC, the date `text` writes) at the time of day `text` writes beside
    it, in UTC: "6 Dec 2026, 14:05", "Jun 7, 2023, 8:54 PM UTC", "February 1, 2016: 1:28 AM
    ET". Kept as the day alone, a listing's stories of one day sorted in no order and were up
    to a day off. A time without a zone is read in `site_zone` (the source's `timezone`,
    summer or winter time by the date), by default UTC as a feed's is (`parse_date`), but
    not past `now` on a day begun somewhere by then: a site east of that zone writes times
    ahead of it, and dates ahead of UTC's. `day` when `text` gives no time (pure)."""
    clock = _clock(text)
    if clock is None:
        return day
    hour, minute, zone = clock
    wall = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone or site_zone)
    at = wall.astimezone(UTC)
    # Only for a day begun somewhere at `now` (so today for some site): one begun nowhere
    # yet is a wrong date, not a clock east of ours, and `normalize` judges it. From UTC's
    # midnight, the bound missed a site whose date was ahead of UTC's (Tokyo's after 15:00
    # UTC): its time ahead of the fetch was kept, on whatever `site_zone`.
    if zone is None and now is not None and day - _EARLIEST_OFFSET <= now < at:
        return now
    return at


def written_date(value: str, site_zone: tzinfo = UTC) -> datetime | None:
    """A date written as pages write it for readers, given as a feed item's date: "December
    7, 2026" (that day, midnight UTC), "Dec 7, 2026 10:00 AM EST", "Dec 7, 2026, 10:00 AM
    ET" (a time without a zone read in `site_zone`, see `with_clock`). Neither RFC 822 nor
    ISO 8601, feedparser reads none of them, and such a feed's stories (common on real
    sites) had no time at all. None when `value` holds no full date (pure)."""
    day = dateline(value, len(value))
    return None if day is None else with_clock(day, value, None, site_zone)


def zoned_clock(text: str, now: datetime, site_zone: tzinfo | None = None) -> datetime | None:
    """A time alone with its zone, as listings write today's stories ("14:05 GMT", "Updated
    2:05 PM ET"), or without one on a site whose zone is known (`site_zone`, the source's
    `timezone`): the last such time at `now`, today or else yesterday in that zone. None
    without either: "14:05" could be any hour of UTC's day (pure)."""
    clock = _clock(text)
    if clock is None or (clock[2] or site_zone) is None:
        return None
    hour, minute, zone = clock[0], clock[1], clock[2] or site_zone
    today = now.astimezone(zone).replace(hour=hour, minute=minute, second=0, microsecond=0)
    # The latest reading not after `now`, compared in UTC: one tzinfo compares wall clocks,
    # so in the hour autumn repeats "02:45" at the second 02:30 was yesterday's (a day off,
    # the first 02:45 being 45 minutes ago), and in spring's gap "02:30" at 03:10 was ahead
    # of the fetch. fold=1: the repeated hour's later reading, the gap's offset after it.
    # Day arithmetic is wall-clock: a ZoneInfo keeps that day's offset.
    yesterday = today - timedelta(days=1)
    for at in (today.replace(fold=1), today.replace(fold=0), yesterday.replace(fold=1)):
        if at.astimezone(UTC) <= now:
            break
    return at.astimezone(UTC)
