"""Server-side HTML for the related block (GET /v1/widget); pure, and never emits unescaped data.

Every text field goes through html.escape; URLs (story links and images) are kept only when
they are absolute http(s) URLs, otherwise dropped, so `javascript:`, `data:` and friends can
never reach an attribute. The markup and class names match what api/static/widget.js builds,
so the widget's stylesheet and event tracking also work on a server-rendered fragment, and
links to other sites than the page's open and carry `rel` as its data-new-tab and data-rel say.
This module does no I/O and knows nothing about HTTP or storage.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import urlsplit

from aggregator.canonical import site_key

_SAFE_SCHEMES = frozenset({"http", "https"})
# Browsers strip ASCII tab/newline inside URLs and leading/trailing C0 controls + space
# (WHATWG URL standard, "basic URL parser"), so "java\tscript:" would run; refuse any URL
# that holds such characters instead of guessing what a browser will make of it.
_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")
# Bylines often look like "By Jane Smith, Political editor" or "Jane Smith and John Doe".
_BYLINE_PREFIX = re.compile(r"^\s*by\s+", re.IGNORECASE)
_BYLINE_SPLIT = re.compile(r"\s*(?:,|;|&|\band\b|\||·|•)\s*", re.IGNORECASE)
# Not initials: titles before a name, suffixes after it (lower-cased, as compared).
_NAME_PREFIXES = frozenset("the dr dr. prof prof. mr mr. mrs mrs. ms ms. sir dame rev rev.".split())
_NAME_SUFFIXES = frozenset("jr jr. sr sr. ii iii iv".split())
_GIVEN_INITIALS = re.compile(r"^(?:[A-Z]\.\s*)+$|^[A-Z]$")
# The Arabic article "ال" (alif or alif wasla, lam, any vowel marks) is written joined to the
# word it defines: every "الجزيرة" and "العربية" showed "ا". Taken off when two letters remain
# ("الم", "pain" written without its hamza, keeps its alif). Hebrew's article "ה" is left on:
# it is written like a word's own first letter ("הארץ" is "the land", "הרצל" is Herzl).
_ARABIC_ARTICLE = re.compile(r"^[\u0627\u0671][\u064b-\u065f\u0670]*\u0644[\u064b-\u065f\u0670]*")
# A site name's acronym, shown whole as a host's short label is ("BBC News" -> "BBC").
_ACRONYM_CHARS = range(2, 5)
_SNIPPET_MAX_CHARS = 160
# Letters of the right-to-left scripts (Hebrew, Arabic, Syriac, Thaana, N'Ko… and their
# presentation forms; widget.js has the same ranges).
_RTL_LETTER = re.compile("[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc\U00010800-\U00010fff\U0001e800-\U0001efff]")
# Link types a publisher may give links to other sites (widget.js data-rel takes the same):
# nofollow, sponsored and ugc tell search engines the page does not vouch for the link
# (Google's "qualify your outbound links"), noreferrer hides the page from the other site.
# No other: "opener" would undo the noopener of a new tab.
LINK_RELS = ("nofollow", "sponsored", "ugc", "noreferrer")
# The block's heading levels a page may choose (widget.js data-heading-level takes the same):
# h1 is the article's own title.
HEADING_LEVELS = range(2, 7)


@dataclass(frozen=True, slots=True)
class Words:
    """The block's own words, a publisher's to give in its page's language (GET /v1/widget's
    heading, untitled, by and new_tab_label; widget.js data-heading, data-untitled, data-by and
    data-new-tab-label). Fixed, a French or German page could change the heading only."""

    heading: str = "Related stories"
    untitled: str = "Untitled"  # a story without a title
    by: str = "By"  # before the byline a screen reader says
    new_tab_label: str = "opens in a new tab"  # said after a link's title that opens one


DEFAULT_WORDS = Words()


@dataclass(frozen=True, slots=True)
class OtherSiteLinks:
    """How the block links to stories of other sites than `own_site` (a `site_key`): in a new
    tab, and with `rel` (words of LINK_RELS). Stories of the own site stay plain links."""

    own_site: str
    new_tab: bool = False
    rel: tuple[str, ...] = ()


def link_rels(value: str) -> tuple[str, ...]:
    """The LINK_RELS a space-separated `value` names, in their order, once each; link types
    have no case (HTML). Any other word is a ValueError naming it."""
    words = value.lower().split()
    for word in words:
        if word not in LINK_RELS:
            raise ValueError(f"{word!r} is not one of {', '.join(LINK_RELS)}")
    return tuple(r for r in LINK_RELS if r in words)


def heading_level_of(value: str) -> int:
    """The heading level `value` names, as widget.js reads data-heading-level: one digit of
    HEADING_LEVELS, the spaces around it aside; blank is 2. Anything else is a ValueError:
    "03", "+3" and "3.0", which the lax integer parse took, gave /v1/widget an h3 where the
    script, given the same attribute, drew its default h2."""
    level = value.strip()
    if not level:
        return HEADING_LEVELS[0]
    if level not in {str(n) for n in HEADING_LEVELS}:
        raise ValueError(f"must be one digit, {HEADING_LEVELS[0]} to {HEADING_LEVELS[-1]}, "
                         f"not {level[:20]!r}")
    return int(level)


def safe_http_url(value: object) -> str | None:
    """Return `value` if it is an absolute http(s) URL a browser will read the same way, else None."""
    if not isinstance(value, str):
        return None
    url = value.strip()
    if not url or _URL_FORBIDDEN.search(url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an invalid IPv6 literal in the netloc
        return None
    if parts.scheme.lower() not in _SAFE_SCHEMES or not parts.netloc:
        return None
    return url


def initials(author: str | None) -> str:
    """Up to two capital letters for a byline: first and last name of its first author.

    "By Jane Smith, Political editor" -> "JS"; "Reuters" -> "R"; "" or None -> "".
    Words without a letter ("&", "-", "2024") are skipped, signs before a name's letters
    ('"Jane Doe"' -> "JD", "(AP)" -> "A") too, and so are titles
    before a name and suffixes after it ("Dr. Christopher Kunz" -> "CK", "The Associated
    Press" -> "AP", "Theodore Roosevelt IV" -> "TR"). Science's "Surname, Initials" gives
    the given name first ("Archer, L. A." -> "LA"). A name in a script without case gives
    its first letter ("محمد علي" -> "م", "山田 太郎" -> "山"), an Arabic one the first past
    its article "ال" ("الجزيرة" -> "ج", not "ا"; `_first_letter`). Stored bylines are names already
    (aggregator/bylines.py); this is for what remains. api/static/widget.js has the same rule.
    """
    if not author:
        return ""
    parts = _BYLINE_SPLIT.split(_BYLINE_PREFIX.sub("", author.strip()))
    words = _name_words(parts[0])
    if len(words) == 1 and len(parts) > 1 and _GIVEN_INITIALS.match(parts[1]):
        words = [parts[1], words[0]]
    if not words:
        return ""
    firsts = [_first_letter(words[0]), _first_letter(words[-1])]
    # Scripts without case (Arabic, Hebrew, CJK…) write no initials: two Arabic letters join
    # into a word ("محمد علي" read "مع", "with"). Their first letter alone.
    if len(words) == 1 or not all(c.upper() != c.lower() for c in firsts):
        firsts = firsts[:1]
    # One character per word even where upper-casing grows it ("ß" -> "SS").
    return "".join(c.upper()[0] for c in firsts)


def byline_name(author: str, by: str = DEFAULT_WORDS.by) -> str:
    """The name in a byline, without the word a page says before it: "By Priya Shah" and,
    with `by` "Par", "par Priya Shah" -> "Priya Shah" (any case). Older or unnormalized rows
    keep the word in the stored name, and a French page's "Par Priya Shah" read "Par Par
    Priya Shah", its avatar "PS" of "Par … Shah". api/static/widget.js has the same rule."""
    name = _BYLINE_PREFIX.sub("", author.strip())
    rest = name[len(by):]
    if by and name[:len(by)].lower() == by.lower() and rest[:1].isspace():
        return rest.lstrip()
    return name


def byline_label(author: str, by: str = DEFAULT_WORDS.by) -> str:
    """The byline a screen reader hears: "By Jane Smith" (`by` in the page's language), the
    word said once however the name was stored (`byline_name`)."""
    return f"{by} {byline_name(author, by)}"


def _name_words(name: str) -> list[str]:
    words = [w for w in map(_from_first_letter, name.split()) if w]
    while len(words) > 1 and words[0].lower() in _NAME_PREFIXES:
        words = words[1:]
    while len(words) > 1 and words[-1].lower() in _NAME_SUFFIXES:
        words = words[:-1]
    return words


def _from_first_letter(word: str) -> str:
    """The word from its first letter on, "" without one. A word that began with a sign was
    skipped, and with it a name in quotes or brackets or an account's: '"Jane Doe"' was "D",
    "(AP)" and "@TechCrunch" nothing (an empty circle where the initials go)."""
    return next((word[i:] for i, c in enumerate(word) if c.isalpha()), "")


def _first_letter(word: str) -> str:
    """A name word's first letter, past the Arabic article joined to it ("الجزيرة" -> "ج")."""
    rest = _ARABIC_ARTICLE.sub("", word)
    if rest[:1].isalpha() and sum(c.isalpha() for c in rest) >= 2:
        return rest[0]
    return word[0]


def _acronym(name: str) -> str:
    """The first word of a site's name when it is an acronym ("BBC News" -> "BBC", "NPR"):
    2 to 4 letters or digits, in capitals, in a name not in capitals throughout ("DER
    SPIEGEL" is a wordmark, "DS"); else "". A name's first letter alone said little: "B"."""
    words = _name_words(name)
    first = words[0] if words else ""
    if not (len(first) in _ACRONYM_CHARS and first.isalnum() and _in_capitals(first)):
        return ""
    return first if len(words) == 1 or not all(map(_in_capitals, words)) else ""


def _in_capitals(word: str) -> bool:
    # As widget.js compares: nothing that upper-casing changes, something lower-casing does.
    return word == word.upper() != word.lower()


def site_mark(site: str | None) -> str:
    """Short text for a thumbnail without an image: "bbc.co.uk" -> "BBC", "News Example" -> "NE".

    A host name's first label (without "www.") is used whole when it is short, as outlets
    are known by it, and so is a name's acronym ("BBC News" -> "BBC", `_acronym`); anything
    else falls back to `initials`. api/static/widget.js has the same rule.
    """
    name = (site or "").strip().lower()
    if name and " " not in name and "." in name:
        label = name.removeprefix("www.").split(".")[0]
        if 0 < len(label) <= 4 and label.isalnum():
            return label.upper()
        return label[:1].upper() if label[:1].isalpha() else ""
    return _acronym(site or "") or initials(site)


def snippet(summary: object, *, max_chars: int = _SNIPPET_MAX_CHARS) -> str:
    """Whitespace-collapsed summary cut at a word boundary to at most `max_chars` (+ an ellipsis)."""
    if not isinstance(summary, str):
        return ""
    text = " ".join(summary.split())
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space_at = cut.rfind(" ")
    if space_at > max_chars // 2:
        cut = cut[:space_at]
    return cut.rstrip(" ,;:.-") + "…"


def text_dir(text: str) -> str:
    """The direction of a story's text (title, snippet, site): "rtl" where more than 40% of
    its words with a letter begin with a right-to-left one (Closure's bidi estimateDirection),
    "ltr" where fewer do, "auto" where no word has a letter. Its first strong letter alone
    (dir="auto") laid the many Arabic and Hebrew titles that open with a Latin name ("Apple
    تطلق هاتف iPhone 16 الجديد") left to right, their words read out of order on the right-to-
    left page. api/static/widget.js has the same rule."""
    firsts = [next(c for c in word if c.isalpha()) for word in text.split()
              if any(c.isalpha() for c in word)]
    rtl = sum(1 for c in firsts if _RTL_LETTER.match(c))
    return "auto" if not firsts else "rtl" if 5 * rtl > 2 * len(firsts) else "ltr"


def _text(card: Mapping[str, Any], key: str) -> str:
    value = card.get(key)
    if value is None:
        return ""
    return str(value).strip()


# A short date as browsers write it in each language whose feed dates aggregator/feeddates.py
# reads (Chromium's toLocaleDateString(lang, {day, month: "short", year}) for the bare
# language, which widget.js writes over a server block's dates): the pattern, then the months.
# English keeps the server's own "6 Dec 2026". No locale library, no process locale (%b).
DATE_FORMATS = {
    "en": ("{d} {m} {y}", "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec"),
    "de": ("{d}. {m} {y}", "Jan. Feb. März Apr. Mai Juni Juli Aug. Sept. Okt. Nov. Dez."),
    "fr": ("{d} {m} {y}", "janv. févr. mars avr. mai juin juil. août sept. oct. nov. déc."),
    "es": ("{d} {m} {y}", "ene feb mar abr may jun jul ago sept oct nov dic"),
    "it": ("{d} {m} {y}", "gen feb mar apr mag giu lug ago set ott nov dic"),
    "pt": ("{d} de {m} de {y}", "jan. fev. mar. abr. mai. jun. jul. ago. set. out. nov. dez."),
    "nl": ("{d} {m} {y}", "jan feb mrt apr mei jun jul aug sep okt nov dec"),
    "tr": ("{d} {m} {y}", "Oca Şub Mar Nis May Haz Tem Ağu Eyl Eki Kas Ara"),
    "ru": ("{d} {m} {y} г.", "янв. февр. мар. апр. мая июн. июл. авг. сент. окт. нояб. дек."),
    "el": ("{d} {m} {y}", "Ιαν Φεβ Μαρ Απρ Μαΐ Ιουν Ιουλ Αυγ Σεπ Οκτ Νοε Δεκ"),
}


def date_language(lang: str) -> str | None:
    """The DATE_FORMATS language of a page's `lang` (BCP 47, by its first subtag: "de-AT",
    "pt_BR", "FR"); blank is English. None for any other: its dates are written 2026-12-06,
    which reads the same in every language, where English month names did not."""
    first = lang.strip().replace("_", "-").split("-")[0].lower()
    return first if first in DATE_FORMATS else "en" if not first else None


def _date_label(published_at: object, language: str | None) -> tuple[str, str] | None:
    """(machine datetime, human label in `language`, a key of DATE_FORMATS or None: ISO) for an
    ISO 8601 string; None when it does not parse."""
    if not isinstance(published_at, str) or not published_at:
        return None
    try:
        parsed = datetime.fromisoformat(published_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    if language is None:
        label = parsed.date().isoformat()
    else:
        pattern, months = DATE_FORMATS[language]
        label = pattern.format(d=parsed.day, m=months.split()[parsed.month - 1], y=parsed.year)
    # Whole seconds: HTML allows at most three digits of a second, stored times carry six.
    return parsed.isoformat(timespec="seconds"), label


def _link_attrs(url: str, links: OtherSiteLinks | None) -> str:
    """target and rel of a story link: none for the page's own site (same tab, followed)."""
    if links is None or site_key(url) == links.own_site:
        return ""
    # A new tab gets no handle on the page (window.opener): widget.js puts noopener first too.
    rel = ("noopener", *links.rel) if links.new_tab else links.rel
    target = ' target="_blank"' if links.new_tab else ""
    return target + (f' rel="{escape(" ".join(rel))}"' if rel else "")


def _said(text: str, default: str) -> str:
    """The lang attribute of an element whose whole text is `text`: a default word is English on
    any page, and a screen reader says it so (widget.js does the same)."""
    return ' lang="en"' if text == default else ""


def _card_html(card: Mapping[str, Any], links: OtherSiteLinks | None, words: Words,
               dates: str | None) -> str:
    title = _text(card, "title")
    title_lang = "" if title else _said(words.untitled, DEFAULT_WORDS.untitled)
    title = title or words.untitled
    url = safe_http_url(card.get("url"))
    image_url = safe_http_url(card.get("image_url"))
    site = _text(card, "site") or _text(card, "source")
    author = _text(card, "author")
    summary = snippet(card.get("summary"))
    story_id = _text(card, "id")

    if image_url:
        thumb = (
            '<span class="tdg-thumb">'
            # Hotlinked: no Referer for the image host (widget.js does the same).
            f'<img src="{escape(image_url)}" alt="" loading="lazy" decoding="async" '
            'referrerpolicy="no-referrer">'
            "</span>"
        )
    else:
        thumb = f'<span class="tdg-thumb tdg-thumb-empty" aria-hidden="true">{escape(site_mark(site))}</span>'
    # Story text may run the other way from the host page (widget.js does the same).
    title_html = f'<span class="tdg-title" dir="{text_dir(title)}"{title_lang}>{escape(title)}</span>'
    # A new tab is said, not only shown by the browser: a screen reader user was taken away from
    # the article without a word (WCAG G201).
    if links is not None and links.new_tab and url and site_key(url) != links.own_site:
        title_html += (f' <span class="tdg-sr"{_said(words.new_tab_label, DEFAULT_WORDS.new_tab_label)}>'
                       f'{escape(words.new_tab_label)}</span>')
    # Spaces between the parts: without widget.js (a server-side include, or before the
    # script runs) they read "BBC Whitehall…" and "bbc.co.uk 5 Dec 2026", not "BBCWhitehall…"
    # and "bbc.co.uk5 Dec 2026". The meta row's are where its text may wrap (widget.js CSS).
    if url:
        attrs = f'href="{escape(url)}"{_link_attrs(url, links)}'
        head = f'<a class="tdg-link" {attrs}>{thumb} {title_html}</a>'
    else:
        head = f'<span class="tdg-link">{thumb} {title_html}</span>'

    parts = [head]
    if summary:
        parts.append(f'<p class="tdg-snippet" dir="{text_dir(summary)}">{escape(summary)}</p>')
    meta = []
    if author:
        # No letters to show ("123"): no avatar, an empty circle looked broken. Still said.
        letters = initials(byline_name(author, words.by))
        if letters:
            meta.append(f'<span class="tdg-avatar" aria-hidden="true">{escape(letters)}</span>')
        meta.append(f'<span class="tdg-sr">{escape(byline_label(author, words.by))}</span>')
    if site:
        # title: the whole name on hover where the grid cuts it with "…" (widget.js the same):
        # a name of more than ~50 characters.
        meta.append(f'<span class="tdg-site" dir="{text_dir(site)}" title="{escape(site)}">'
                    f'{escape(site)}</span>')
    dated = _date_label(card.get("published_at"), dates)
    if dated:
        # The dot between site and time is an element of its own, each part isolated by its dir:
        # drawn at the start of the time, an English date on a right-to-left page had it on its
        # far side ("· 5 Dec 2026" left of the site). widget.js writes the same.
        if site:
            meta.append('<span class="tdg-sep" aria-hidden="true">\u00b7</span>')
        meta.append(f'<time class="tdg-time" dir="{text_dir(dated[1])}" datetime="{escape(dated[0])}">'
                    f'{escape(dated[1])}</time>')
    if meta:
        parts.append(f'<p class="tdg-meta">{" ".join(meta)}</p>')

    id_attr = f' data-story-id="{escape(story_id)}"' if story_id else ""
    return f'<li class="tdg-card"{id_attr}>{"".join(parts)}</li>'


def render_block_html(block: Mapping[str, Any], *, words: Words = DEFAULT_WORDS,
                      links: OtherSiteLinks | None = None, dates: str | None = "en",
                      heading_level: int = 2) -> str:
    """The related block `{"article", "related": [Card...], ...}` as an accessible HTML fragment,
    in `words`, its links to other sites as `links` says (None: plain links), its dates in
    `dates` (a `date_language`), its heading an <h`heading_level`> (2 to 6: under an article
    whose sections are h2s, the page may want it an h3).

    Returns "" when there is nothing to show, so a host page can include the result blindly.
    """
    cards = [c for c in block.get("related") or [] if isinstance(c, Mapping)]
    if not cards:
        return ""
    items = "".join(_card_html(card, links, words, dates) for card in cards)
    heading = words.heading
    if heading_level not in HEADING_LEVELS:
        raise ValueError(f"heading_level must be one of {HEADING_LEVELS}, not {heading_level!r}")
    h = f"h{heading_level}"
    # Its heading is written once, as given: widget.js, whose stylesheet shows it in capitals,
    # splits it in two as it takes the block in (a copy for the eye, one for the ear).
    # Named by its heading, not by a copy of its text in aria-label (which page translators
    # leave untranslated); widget.js does the same. The id is the block's content: the page's
    # other blocks get others, and an identical one names its region with the same words.
    heading_id = "tdg-h-" + hashlib.blake2s(items.encode() + heading.encode(), digest_size=5).hexdigest()
    return (
        f'<section class="tdg-block" aria-labelledby="{heading_id}">'
        f'<{h} class="tdg-heading" id="{heading_id}"{_said(heading, DEFAULT_WORDS.heading)}>'
        f'{escape(heading)}</{h}>'
        f'<ul class="tdg-list">{items}</ul>'
        "</section>"
    )
