"""Feed dates feedparser reads wrong: RFC 822 with local names, times without a zone.

Many European feeds localise RFC 822's weekday and month names ("Di, 10 Jun 2025 08:00:00
+0200", "mar., 10 juin 2025 08:00:00 +0200", "Pzt, 10 Haz 2025 ...") and German ones the zone
("MESZ"). feedparser reads English names only: such a feed's stories had no publication time
at all, and "MESZ" was read as UTC, two hours off. `local_rfc822` writes the date in English
and hands it back to feedparser's own RFC 822 reader; it is registered as one of feedparser's
date handlers, so both feed parsers (feeds.py, fastfeed.py) use it.
feedparser also takes a time written without a zone ("Tue, 25 Nov 2026 14:05:00",
"2026-11-25T14:05:00") for UTC: a German or Indian site's stories came out hours off.
`site_local` reads such a time in the source's `timezone`; aggregator.feeds prefers it to
feedparser's reading. Pure, no I/O.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, tzinfo

import feedparser
from feedparser.datetimes.rfc822 import _parse_date_rfc822, timezone_names

from aggregator.textclean import MAX_OFFSET_HOURS, local_date

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
# Zones by their German names, and the names feedparser knows (some of which Python's
# RFC 822 reader does not: "MET", "ET", military letters), as offsets: a date written in
# English says its zone to `site_local` just as it does to feedparser. Europe's English
# names too, which feedparser does not know and read as UTC: a feed's "10:00:00 CEST" came
# out two hours late. Only names with one meaning: "BST" and "IST" each name several zones
# and stay unknown (read in the source's `timezone`, see `site_local`).
_ZONES = {**{name: f"{hours:+03d}00" for name, hours in timezone_names.items()},
          "mez": "+0100", "mesz": "+0200", "wez": "+0000", "wesz": "+0100", "oez": "+0200",
          "oesz": "+0300", "cet": "+0100", "cest": "+0200", "wet": "+0000", "west": "+0100",
          "eet": "+0200", "eest": "+0300"}
# [weekday[.],] day[.] month[.] year time [zone]. The year in two digits too, as RFC 822
# wrote it ("Mon, 07 Dec 26 10:00:00 CEST"): feedparser read that one's zone as UTC.
_DATE = re.compile(r"\s*(?:[^\W\d_]+\.?,?\s+)?(\d{1,2})\.?\s+([^\W\d_]+)\.?,?\s+(\d{4}|\d\d),?\s+"
                   r"(\d{1,2}:\d\d(?::\d\d)?)\s*(\S*)\s*$")


# A numeric offset after a time of day: "+0200", "-05:00", "GMT+0100".
_OFFSET = re.compile(r"\d:\d\d(?::\d\d(?:[.,]\d+)?)?\s*(?:GMT|UTC)?\s*[+-](\d\d):?(\d\d)\s*$",
                     re.IGNORECASE)


def impossible_offset(value: str) -> bool:
    """Whether `value` ends in an offset no zone has ("+2400", "+0175"): feedparser read
    "… 10:00:00 +2400" as 10:00 the day before, a day off; such a date is no date (pure)."""
    m = _OFFSET.search(value)
    return m is not None and (int(m.group(1)) > MAX_OFFSET_HOURS or int(m.group(2)) > 59)


def month_number(name: str) -> int | None:
    """1 to 12 for a month's name or abbreviation in one of the languages above (or English),
    by its first letters ("Oktober", "okt.", "octubre"); None for another word."""
    name = name.lower()
    for length in (5, 4, 3):  # "şubat", "juin" before "jui", "mär"
        if (n := _MONTHS.get(name[:length])) is not None:
            return n
    return None


def english_rfc822(value: str) -> str | None:
    """An RFC 822 date with local or English names, in English with its zone as an offset
    ("Di, 25 Nov 2026 14:05:00 MEZ" -> "25 Nov 2026 14:05:00 +0100"); None when it is not
    one. A zone name no reader knows stays as written."""
    m = _DATE.match(value)
    if m is None:
        return None
    day, month_name, year, clock, zone = m.groups()
    month = month_number(month_name)
    if month is None:
        return None
    zone = _ZONES.get(zone.lower(), zone)
    return f"{day} {_ENGLISH[month - 1]} {year} {clock} {zone}".strip()


def local_rfc822(value: str) -> time.struct_time | None:
    """An RFC 822 date with local weekday, month or zone names, in UTC; None when it is not
    one (feedparser then tries its other readers)."""
    english = english_rfc822(value)
    return _parse_date_rfc822(english) if english is not None else None


def site_local(value: str, site_zone: tzinfo, read: datetime | None) -> datetime | None:
    """A feed's date written without a zone, read in the source's zone, in UTC; None when it
    says its zone or offset, is a day alone, or is in a format only feedparser reads (its
    reading then stands). `read` is feedparser's reading of it (UTC; None when it read
    none): a zone it found is kept even where Python's reader finds none ("… 14:05:00
    +02:00" is 12:05 to feedparser, zone-less to email.utils). A zone name neither knows
    ("IST", "BST") counts as none: feedparser took it for UTC, and the source's own zone is
    the better guess."""
    value = english_rfc822(value) or value
    as_utc = local_date(value, UTC)  # the clock as written: feedparser's reading without a zone
    if as_utc is None or (read is not None and read != as_utc.replace(microsecond=0)):
        return None
    return local_date(value, site_zone)


# Tried first: an English date is read the same ("Tue, 10 Jun 2025" -> "10 Jun 2025").
feedparser.registerDateHandler(local_rfc822)
