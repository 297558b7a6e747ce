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
from datetime import UTC, datetime

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
