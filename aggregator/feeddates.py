"""Feed dates written in another language than English: RFC 822 with local names.

Many European feeds localise RFC 822's weekday and month names ("Di, 10 Jun 2025 08:00:00
+0200", "mar., 10 juin 2025 08:00:00 +0200", "Pzt, 10 Haz 2025 ...") and German ones the zone
("MESZ"). feedparser reads English names only: such a feed's stories had no publication time
at all, and "MESZ" was read as UTC, two hours off. `local_rfc822` writes the date in English
and hands it back to feedparser's own RFC 822 reader; it is registered as one of feedparser's
date handlers, so both feed parsers (feeds.py, fastfeed.py) use it. Pure, no I/O.
"""

from __future__ import annotations

import re
import time

import feedparser
from feedparser.datetimes.rfc822 import _parse_date_rfc822

# Month names and their usual abbreviations, lower-cased, by their first four letters (or
# fewer, for a shorter name): German, French, Spanish, Italian, Portuguese, Dutch, Turkish,
# Russian (nominative and genitive), Greek (genitive, as dates write it, without accents).
_MONTH_NAMES = (
    "jan janv jän ene gen oca янв ιαν",
    "feb févr fevr fev fév şub şubat фев φεβ",
    "mär mrz mars mar mrt maart мар μαρ",
    "apr avr abr nis апр απρ",
    "mai may mag mei май мая μαι",
    "jun juin giu haz июн ιουν",
    "jul juil lug tem июл ιουλ",
    "aug août aout ago ağu ağus авг αυγ",
    "sep sept set eyl сен σεπ",
    "okt oct ott out eki окт οκτ",
    "nov kas ноя νοε",
    "dez déc dec dic ara дек δεκ",
)
_MONTHS = {name: n for n, names in enumerate(_MONTH_NAMES, 1) for name in names.split()}
_ENGLISH = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Zones by their German names (feedparser knows the English ones).
_ZONES = {"mez": "+0100", "mesz": "+0200", "wez": "+0000", "wesz": "+0100", "oez": "+0200",
          "oesz": "+0300"}
# [weekday[.],] day[.] month[.] year time [zone]
_DATE = re.compile(r"\s*(?:[^\W\d_]+\.?,?\s+)?(\d{1,2})\.?\s+([^\W\d_]+)\.?,?\s+(\d{4}),?\s+"
                   r"(\d{1,2}:\d\d(?::\d\d)?)\s*(\S*)\s*$")


def month_number(name: str) -> int | None:
    """1 to 12 for a month's name or abbreviation in one of the languages above (or English),
    by its first letters ("Oktober", "okt.", "octubre"); None for another word."""
    name = name.lower()
    for length in (5, 4, 3):  # "şubat", "juin" before "jui", "mär"
        if (n := _MONTHS.get(name[:length])) is not None:
            return n
    return None


def local_rfc822(value: str) -> time.struct_time | None:
    """An RFC 822 date with local weekday, month or zone names, in UTC; None when it is not
    one (feedparser then tries its other readers)."""
    m = _DATE.match(value)
    if m is None:
        return None
    day, month_name, year, clock, zone = m.groups()
    month = month_number(month_name)
    if month is None:
        return None
    zone = _ZONES.get(zone.lower(), zone)
    return _parse_date_rfc822(f"{day} {_ENGLISH[month - 1]} {year} {clock} {zone}".strip())


# Tried first: an English date is read the same ("Tue, 10 Jun 2025" -> "10 Jun 2025").
feedparser.registerDateHandler(local_rfc822)
