"""The site a story is shown under, from the names its page (or an import line) declares.
Pure string work, no I/O; the host fallback is `canonical.site_of`, as collected stories get it.

A declared name is what a card shows ("Breitbart", "The Verge") when it is a sane one. Pages
declare junk there too, seen on the pages of ../shared/data: a home page's URL
("http://www.tmz.com" in og:site_name, "https://www.hawaiinewsnow.com"), a copyright notice
("Copyright 2014", a meta "copyright" trafilatura takes for the publisher), a Facebook page
(article:publisher), a tagline after the name ("LinkNaija | Nigeria's popular news platform").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from aggregator.canonical import site_of
from aggregator.textclean import TITLE_SEPARATORS, clean_inline

# "http://…", "//…", "www.…": an address, not a name.
_ADDRESS = re.compile(r"(?:https?:)?//|www\.", re.IGNORECASE)
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*://", re.IGNORECASE)
# "Copyright 2014", "© 2019 Example Media", "(c) Example", "All rights reserved".
_NOTICE = re.compile(r"(?:copyright\b|©|\(c\)|all rights reserved)", re.IGNORECASE)
_LETTER = re.compile(r"[^\W\d_]")


def declared_site(names: Iterable[str]) -> str:
    """The first sane name of `names` (in order of trust) as a card shows it, "" when none
    is: the caller falls back to the host (`site_of`), the site every collected story has."""
    for name in names:
        if sane := sane_site_name(name):
            return sane
    return ""


def sane_site_name(raw: str) -> str:
    """`raw` as a site's name, or "" when it names no site.
    - The address of a site's home page is that site, as `site_of` names it: "tmz.com" for
      "http://www.tmz.com". An address with a path is some page ("https://www.facebook.com/
      Breitbart" is Breitbart's Facebook page, not facebook.com): no name.
    - A copyright notice, or a name without a letter, is no name.
    - A name with a tagline is the name: "Aktuálně.cz - Víte, co se právě děje" is
      "Aktuálně.cz" (Readability's siteName for that page), "The Jerusalem Post | JPost.com"
      is "The Jerusalem Post"."""
    name = clean_inline(raw)
    if _ADDRESS.match(name) or _SCHEME.match(name):
        return _home_site(name)
    cut = min((i for i in (name.find(sep) for sep in TITLE_SEPARATORS) if i > 0), default=-1)
    if cut > 0:
        name = name[:cut].rstrip()
    if not _LETTER.search(name) or _NOTICE.match(name):
        return ""
    return name


def _home_site(address: str) -> str:
    """The site of a home page's address ("" for any other address, or no web one)."""
    url = address if _SCHEME.match(address) else "http://" + address.removeprefix("//")
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or parts.path.strip("/") or parts.query:
        return ""
    return site_of(url)
