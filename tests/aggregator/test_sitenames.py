"""declared_site: the name a card shows for a site, from what a page or an import line declares."""

from __future__ import annotations

import pytest

from aggregator.sitenames import declared_site, sane_site_name


@pytest.mark.parametrize(("raw", "name"), [
    # names stay as the site writes them, a host-like one too
    ("Breitbart", "Breitbart"),
    ("Salon.com", "Salon.com"),
    ("  The  Verge ", "The Verge"),
    ("San Antonio Express-News", "San Antonio Express-News"),
    ("Yahoo!ニュース", "Yahoo!ニュース"),
    # a home page's address is its site, as collected stories name it (tmz-1's og:site_name)
    ("http://www.tmz.com", "tmz.com"),
    ("https://www.hawaiinewsnow.com/", "hawaiinewsnow.com"),
    ("www.Example.co.uk", "example.co.uk"),
    ("//news.example", "news.example"),
    # any other page's address names no site: article:publisher is a Facebook page
    ("https://www.facebook.com/Breitbart", ""),
    ("https://example.org/?page=about", ""),
    ("ftp://files.example.org/", ""),
    # a copyright notice, or no letter at all (jaraguadosul's meta "copyright")
    ("Copyright 2014", ""),
    ("© 2019 Example Media", ""),
    ("(c) Example", ""),
    ("2014", ""),
    ("", ""),
    # a tagline after the name goes
    ("Aktuálně.cz - Víte, co se právě děje", "Aktuálně.cz"),
    ("LinkNaija | Nigeria's popular news platform", "LinkNaija"),
    ("The Jerusalem Post | JPost.com", "The Jerusalem Post"),
    ("| Example", "| Example"),  # nothing before the separator: no name to keep but the whole
])
def test_sane_site_name(raw: str, name: str) -> None:
    assert sane_site_name(raw) == name


def test_declared_site_is_the_first_sane_name() -> None:
    assert declared_site(["Copyright 2014", "", "https://www.facebook.com/x", "Example"]) == "Example"
    assert declared_site(["http://www.tmz.com", "TMZ.COM"]) == "tmz.com"
    assert declared_site(["Copyright 2014"]) == ""  # the caller's host, then
    assert declared_site([]) == ""
