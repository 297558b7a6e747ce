"""Reduce a byline to the names in it: what a story card shows as its author. Pure strings.

Feeds and pages put more than names in their bylines, and the widget made initials of it
all ("David Smith in Washington" -> "DW"). Seen in ../shared/data (news-feeds, the
readability pages, the extraction benchmark):
- a place: the Guardian's "David Smith in Washington", "Ashifa Kassam in Stanstead, Quebec",
  "Sam Jones in Madrid and Stephen Burgen in Barcelona", "Reuters in New York";
- a role: "Patrick Wintour Diplomatic editor", "Tom Krisher, Ap Auto Writer",
  "Paul Takahashi, Staff writer", "Tom Gillespie News reporter";
- the date that followed the name on the page: "Jeff Foust Monday, November",
  "GILLIAN MOHNEY March", "Detroit News wire services Published", "Aleš Vávra před";
- credits and notes: "…, illustration by Anna Parini for the washington post",
  "Nick Ames (now), Ed Aarons and Ben Fisher (earlier)", "Ilana Muhlstein, MS, RDN";
- a link: "https://www.facebook.com/bbcnews" (a BBC page's article:author).

Conservative by rule: each cut needs a name left before it (two words for the looser
ones), particles ("van der", "bin") and several authors ("A and B", "A, B") stay, agencies
("Reuters", "Associated Press") stay, and a byline that is all role ("Staff Writer",
"Staff and agencies") stays as it is: there is no name to show instead.
"""

from __future__ import annotations

import re

# "A, B and C", "A & B", "A; B", "A | B": kept as written between the names that stay. A
# middle dot or bullet too: "By Jane Doe · The Daily · 18 March 2025", the page's byline line
# (the date after it was kept as part of a name).
_SEPARATOR = re.compile(r"(\s*(?:[,;&|·•]|\band\b)\s*)")
# The label a byline starts with, in the languages of ../shared/data: "By Erin Cunningham",
# "Par Sébastien Farcis", "Текст: Лида Буслаева" (a Russian page kept it as part of the
# name), "Posted by …". The words that begin a name too ("Von Miller", "Di Stefano") count
# only in lower case or before a colon ("Von Anna Schmidt" stays: "Von Miller and Jane Doe"
# would lose a name); "Author:" and the like only before a colon.
_LABEL = re.compile(
    r"^(?:(?i:by|par|por|written by|posted by|текст|автор|author|autor|auteur|text|texto"
    r"|von|di|door)\s*:\s*"
    r"|(?i:by|par|por|written by|posted by|текст|автор)\s+"
    r"|(?:von|di|door)\s+)(?=\S)")
# "(now)", "(earlier)": the Guardian's live blogs. "(Henrique Zecchin)" is part of a name.
_LOWER_NOTE = re.compile(r"\s*\((?:[^\W\d_A-Z][^\W\d_]*\s?){1,3}\)")
_URL = re.compile(r"^(?:https?://|www\.)\S+$", re.I)
_CREDIT = re.compile(r"^(?:(?:additional )?reporting|illustrations?|photos?|photographs?|photography"
                     r"|graphics?|videos?|pictures?) by\b", re.I)
# Degrees after a name: "Ilana Muhlstein, MS, RDN". Agencies ("CNN", "AFP") are not here.
_CREDENTIALS = frozenset("MS MA MSc MD PhD Ph.D. RD RDN LD RN MPH MBA JD DDS DVM CPT CDE".split())
_ROLE_HEADS = frozenset("editor correspondent reporter writer columnist critic contributor producer "
                        "analyst photographer journalist commentator presenter".split())
# Two-word places that start a role ("Middle East editor"), where one capital word would do.
_ROLE_REGIONS = frozenset({"middle east", "latin america", "south america", "north america",
                           "central america", "south asia", "east asia", "southeast asia",
                           "asia pacific", "east africa", "west africa", "southern africa"})
_PLACE_LINKS = frozenset("de da do dos del la le el al of on upon sur am an der".split())
# "in Palm Beach, Florida": a region after a place's comma is part of the place, not a name.
_REGIONS = frozenset(
    "Alabama Alaska Arizona Arkansas California Colorado Connecticut Delaware Florida Georgia "
    "Hawaii Idaho Illinois Indiana Iowa Kansas Kentucky Louisiana Maine Maryland Massachusetts "
    "Michigan Minnesota Mississippi Missouri Montana Nebraska Nevada Ohio Oklahoma Oregon "
    "Pennsylvania Tennessee Texas Utah Vermont Virginia Washington Wisconsin Wyoming DC D.C. "
    "Alberta Manitoba Ontario Quebec Québec Saskatchewan Yukon Nunavut Queensland Victoria Tasmania "
    "England Scotland Wales".split()) | {
    "New Hampshire", "New Jersey", "New Mexico", "New York", "North Carolina", "North Dakota",
    "Rhode Island", "South Carolina", "South Dakota", "West Virginia", "British Columbia",
    "New Brunswick", "Nova Scotia", "Prince Edward Island", "Northern Ireland",
    "New South Wales", "Western Australia", "South Australia", "Northern Territory"}
_WEEKDAYS = frozenset("monday tuesday wednesday thursday friday saturday sunday".split())
_MONTHS = frozenset("january february march april may june july august september october november "
                    "december jan feb mar apr jun jul aug sep sept oct nov dec".split())
# Months that are no one's name: cut after a name whatever their case ("Theresa May",
# "Fredric March", "April Ryan" keep theirs).
_MONTHS_NO_NAME = frozenset("january february september october november december".split())
_DATE_WORDS = _MONTHS | _WEEKDAYS
_NAME_MONTHS = frozenset({"April", "May", "June", "August"})
_STAMP_WORDS = frozenset("published updated posted".split())


def clean_byline(raw: str) -> str:
    """`raw` (one line, as `clean_inline` leaves it) with only its names, see the module doc."""
    text = raw.strip()
    while label := _LABEL.match(text):  # "By: By Jane Doe" too, so a second pass cuts nothing
        text = text[label.end():]
    words = text.split()
    if len(words) <= 2 and text.isascii() and "".join(words).isalpha():
        return text  # "Jane Smith", "Reuters": most bylines, and no rule cuts two words
    if _URL.match(text):
        return ""
    if "(" in text:
        text = _LOWER_NOTE.sub("", text).strip()
    pieces = _SEPARATOR.split(text)
    parts, seps = pieces[0::2], [""] + pieces[1::2]
    kept: list[str] = []  # separator before each name, then the name
    placed = False  # whether the last name kept had a place cut off
    for i, part in enumerate(parts):
        comma_next = i + 1 < len(parts) and seps[i + 1].strip() == ","
        name, had_place = _clean_part(part, first=not kept,
                                      date_follows=comma_next and _is_date(parts[i + 1]))
        if not name:
            continue
        if placed and seps[i].strip() == "," and name in _REGIONS:
            continue  # "in Stanstead, Quebec": the place went with the name before
        kept += [seps[i] if kept else "", name]
        placed = had_place
    return "".join(kept) if kept else text  # all role, date or credit: nothing better to show


def _clean_part(part: str, *, first: bool, date_follows: bool) -> tuple[str, bool]:
    """One name between separators, cleaned ("" when it is no name at all), and whether a
    place was cut off it."""
    part = part.strip()
    if not part or _URL.match(part) or part in _CREDENTIALS or _CREDIT.match(part) or _is_date(part):
        return "", False
    words = part.split()
    named = _without_place(words)
    role_cut = _without_role(named)
    if role_cut is not None:
        words = role_cut
    elif not first and named[-1].lower() in _ROLE_HEADS:
        return "", False  # ", Ap Auto Writer", ", Staff writer": a role after a name
    else:
        words = _without_stamp(named, date_follows)
    return " ".join(words), len(named) < len(part.split())


def _without_place(words: list[str]) -> list[str]:
    """"David Smith in Washington" -> "David Smith": a capitalised place to the end."""
    for i in range(len(words) - 2, 0, -1):
        if words[i] != "in":
            continue
        place = words[i + 1:]
        if len(place) <= 5 and _capital(place[0]) and all(
                _capital(w) or w.lower() in _PLACE_LINKS for w in place):
            return words[:i]
        return words
    return words


def _without_stamp(words: list[str], date_follows: bool) -> list[str]:
    """The page's date or "Published" run into the name: "GILLIAN MOHNEY March",
    "Jeff Foust Monday" (before ", November"), "Aleš Vávra před" (Czech "… ago")."""
    while len(words) > 2:
        last, rest = words[-1], words[:-1]
        low = last.lower().rstrip(",.")
        shouting = all(w.isupper() for w in rest) and not last.isupper()
        if (low in _STAMP_WORDS or low in _MONTHS_NO_NAME
                or low in _MONTHS and shouting
                or low in _WEEKDAYS and (date_follows or shouting)
                or last.islower() and last.isalpha() and all(_capital(w) for w in rest)):
            words = rest
            continue
        break
    return words


def _without_role(words: list[str]) -> list[str] | None:
    """"Patrick Wintour Diplomatic editor" -> "Patrick Wintour": a role after two or more
    name words; None when there is no role in `words`."""
    if len(words) < 3 or words[-1].lower() not in _ROLE_HEADS:
        return None
    i = len(words) - 1  # the role starts at i
    while i > 0 and words[i - 1].islower():
        i -= 1  # "political" in "Deputy political editor"
    if i >= 2 and " ".join(words[i - 2:i]).lower() in _ROLE_REGIONS:
        i -= 2
    elif i > 0 and _capital(words[i - 1]):
        i -= 1  # "Diplomatic", "Games"
    if i == len(words) - 1:
        return None  # a bare head: "Mary Ann Writer" may be a surname
    name = words[:i]
    if name and name[0] in ("AP", "Ap"):
        return []  # "AP National Political Writer": all role
    return name if len(name) >= 2 else None


def _is_date(part: str) -> bool:
    """"November", "Monday, November 18", "2019": a date, not a name."""
    words = part.replace(",", " ").split()
    if len(words) == 1 and words[0] in _NAME_MONTHS:
        return False  # "Smith, May": a given name after a surname
    return bool(words) and all(w.lower().rstrip(".") in _DATE_WORDS or w.isdigit() for w in words)


def _capital(word: str) -> bool:
    return word[:1].isupper()
