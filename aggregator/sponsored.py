"""Sponsored items: which stories are another party's paid content, by what the feed says (pure).

Feeds carry advertorials among the news: Daring Fireball's weekly "[Sponsor] MNML: A macOS
Writing App", a "Sponsored: …" or "Paid Post: …" item, German "Anzeige: …". A publisher who
embeds the related block does not want another site's advert under their article, and a
reader's feed should not be padded with them. They stay stored and listed (`/v1/stories`),
marked by the tag `SPONSORED_TAG`, and related blocks, searches and feeds leave them out.

Only clear markers count, since a story *about* sponsorship is news ("Sponsor pulls out of
World Cup", heise's "Gezielte Werbung braucht keinen Lauschangriff", "Meteo France erstattet
Anzeige"):
- a marker in brackets opening or closing the title: "[Sponsor] …", "… (Sponsored)";
- a marker opening the title followed by ":" or "|" ("Sponsored: …", "Anzeige | …"), or
  the whole title: a marker then a word ("Sponsored content is booming") is a headline;
- a tag that is a marker, whole ("sponsored", "Advertorial", "Paid Post"), never a tag
  that merely holds the word ("Sponsorship", "Werbung" as heise's topic about advertising).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# What the card of such a story carries among its tags (lower case: a feed's own "Sponsored"
# tag counts the same, tags being compared without case).
SPONSORED_TAG = "sponsored"

# Said of an item, in English and German ("Anzeige", "Werbung": the labels German law asks of
# paid content). In a title only as a marker (above): "Anzeige" alone is also a criminal
# complaint, "Werbung" advertising as a topic. "Sponsor" only in brackets: "Sponsor: we are
# reviewing the deal" is a headline quoting one.
_PREFIX_MARKERS = (
    "sponsored", "sponsored content", "sponsored post", "sponsored story", "advertisement",
    "advertorial", "paid post", "paid content", "partner content", "anzeige", "werbung",
    "gesponsert",
)


def _alternatives(markers: Sequence[str]) -> str:
    # Longest first, so "sponsored content" is met whole; any run of spaces between words.
    return "|".join(re.escape(m).replace(r"\ ", r"\s+") for m in sorted(markers, key=len, reverse=True))


_BRACKETED = rf"[\[(]\s*(?:{_alternatives(('sponsor', *_PREFIX_MARKERS))})\s*[\])]"
_TITLE = re.compile(
    rf"^\s*(?:{_BRACKETED}|(?:{_alternatives(_PREFIX_MARKERS)})\s*(?:[:|]|$))|{_BRACKETED}\s*$",
    re.IGNORECASE)
# As a whole tag. Not "advertisement", "anzeige" nor "werbung": publishers tag news about
# advertising so.
_TAGS = frozenset({"sponsored", "sponsor", "sponsored content", "sponsored post",
                   "advertorial", "paid post", "paid content", "partner content", "gesponsert"})


def sponsored(title: str, tags: Sequence[str] = ()) -> bool:
    """Whether a story titled `title` and tagged `tags` is marked as paid content."""
    return any(" ".join(t.split()).casefold() in _TAGS for t in tags) or bool(_TITLE.search(title))


def marked(tags: Sequence[str]) -> bool:
    """Whether a stored story's `tags` hold `SPONSORED_TAG`: what blocks, searches and feeds
    ask of every candidate (the decision was made at collect time, `with_sponsored_tag`; a
    title's regular expression for each of a feed's ~700 candidates would cost ~2 ms)."""
    return any(t.casefold() == SPONSORED_TAG for t in tags)


def with_sponsored_tag(title: str, tags: tuple[str, ...], most: int) -> tuple[str, ...]:
    """`tags`, with `SPONSORED_TAG` first when the story is sponsored and the feed said so
    otherwise (its title, or an "Advertorial" tag): the card then says it. First, so a feed's
    `most` tags leave it room."""
    if not sponsored(title, tags) or marked(tags):
        return tags
    return (SPONSORED_TAG, *tags)[:most]
