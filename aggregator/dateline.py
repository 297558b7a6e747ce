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
from datetime import UTC, datetime, timedelta

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
_NUMERIC = re.compile(r"\b(\d{1,2})([./-])(\d{1,2})\2((?:19|20)\d\d)\b|\b((?:19|20)\d\d)/(\d{1,2})/(\d{1,2})\b")
# Languages (BCP 47 tags, lower-cased) whose readers write the month first: 11/25/2026.
# English elsewhere writes the day first; plain "en" (or Canada's, which writes both) says
# neither, and other languages write the day first.
_MONTH_FIRST = ("en-us", "en-ph")
_DAY_FIRST_ENGLISH = ("en-gb", "en-ie", "en-au", "en-nz", "en-in", "en-za", "en-sg")


def numeric_date(text: str, lang: str = "") -> datetime | None:
    """The day of a numeric date (midnight UTC): "25.11.2026" (dots: day first, as every
    language writing them does), "2026/11/25", and "25/11/2026" or "11/25/2026" by the one
    reading that is a date, else by the page's language `lang` ("en-US": month first; "de",
    "fr", "en-GB": day first). None when it reads both ways and the language does not say:
    a wrong date is worse than none (pure)."""
    m = _NUMERIC.search(text)
    if m is None:
        return None
    if m.group(5):
        return _day(int(m.group(5)), int(m.group(6)), int(m.group(7)))
    first, sep, second, year = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
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


def relative_date(text: str, now: datetime) -> datetime | None:
    """The time a relative date means at `now`, the time the page was fetched: "2 hours
    ago", "vor 2 Stunden", "il y a 3 heures", "hace un día" (months as 30 days, years as
    365); "just now" is `now`; "today" and "yesterday" (and their German, French, Spanish
    words, opening the text) are that day, midnight UTC, as other day dates are (pure)."""
    if m := _RELATIVE.search(text):
        count, unit = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        return now - timedelta(seconds=_count(count) * _UNIT_SECONDS[unit.lower()])
    if m := _DAY_WORD.search(text.replace("’", "'")):
        if (back := _DAYS_BACK[m.group(1).lower()]) is None:
            return now
        day = (now.astimezone(UTC) - timedelta(days=back)).date()
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    return None


def _count(word: str) -> int:
    return int(word) if word.isdigit() else 1  # "an hour", "einer Stunde", "une heure"
