"""clean_byline: a byline reduced to its names, never losing one; on every author string of
the captured feeds and pages (../shared/data)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from aggregator.bylines import clean_byline
from aggregator.model import ParsedItem
from aggregator.normalize import normalize

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("raw", "clean"), [
    # places (the Guardian's feeds)
    ("David Smith in Washington", "David Smith"),
    ("Tom McCarthy in New York", "Tom McCarthy"),
    ("Ashifa Kassam in Stanstead, Quebec", "Ashifa Kassam"),
    ("Associated Press in Palm Beach, Florida", "Associated Press"),
    ("Reuters in New York", "Reuters"),
    ("Sam Jones in Madrid and Stephen Burgen in Barcelona", "Sam Jones and Stephen Burgen"),
    ("Luis de la Fuente in Rio de Janeiro", "Luis de la Fuente"),
    # roles
    ("Patrick Wintour Diplomatic editor", "Patrick Wintour"),
    ("Damian Carrington Environment editor", "Damian Carrington"),
    ("Jason Burke Africa correspondent", "Jason Burke"),
    ("Martin Chulov Middle East correspondent", "Martin Chulov"),
    ("Rowena Mason Deputy political editor", "Rowena Mason"),
    ("Ben Silverman Games Editor", "Ben Silverman"),
    ("Tom Gillespie News reporter", "Tom Gillespie"),
    ("Tom Krisher, Ap Auto Writer", "Tom Krisher"),
    ("STEVE PEOPLES, AP National Political Writer", "STEVE PEOPLES"),
    ("Paul Takahashi, Staff writer", "Paul Takahashi"),
    ("By Laura Kuenssberg, Political editor", "Laura Kuenssberg"),
    # dates and stamps run into the name
    ("Jeff Foust Monday, November", "Jeff Foust"),
    ("GILLIAN MOHNEY March", "GILLIAN MOHNEY"),
    ("JERUSALEM POST STAFF NOVEMBER", "JERUSALEM POST STAFF"),
    ("Detroit News wire services Published", "Detroit News wire services"),
    ("Aleš Vávra před", "Aleš Vávra"),
    # credits, notes, degrees, links
    ("Lenny Bernstein, illustration by Anna Parini for the washington post", "Lenny Bernstein"),
    ("Nick Ames (now), Ed Aarons and Ben Fisher (earlier)", "Nick Ames, Ed Aarons and Ben Fisher"),
    ("Ilana Muhlstein, MS, RDN", "Ilana Muhlstein"),
    ("https://www.facebook.com/bbcnews", ""),
    ("By Jane Doe", "Jane Doe"),
    # the label before the name, in the pages' languages
    ("Текст: Лида Буслаева", "Лида Буслаева"),  # wday.ru (a benchmark page)
    ("Текст Лида Буслаева", "Лида Буслаева"),   # as trafilatura gives it, the colon gone
    ("Автор: Иван Петров", "Иван Петров"),
    ("Par Sébastien Farcis", "Sébastien Farcis"),
    ("Por Ana García y Luis Pérez", "Ana García y Luis Pérez"),
    ("di Mario Rossi", "Mario Rossi"),
    ("von Anna Schmidt", "Anna Schmidt"),
    ("Von: Anna Schmidt", "Anna Schmidt"),
    ("Autor: Jan Novák", "Jan Novák"),
    ("By: Jane Doe", "Jane Doe"),
    ("Posted by Michael David Smith", "Michael David Smith"),
    ("written by Regan", "Regan"),
    # a page's byline line, parts set apart by middle dots or bullets
    ("By Sample Reporter · Demo Daily · 18 March 2025", "Sample Reporter · Demo Daily"),
    ("Sample Reporter · Demo Daily ·", "Sample Reporter · Demo Daily"),
    ("Jane Doe • Monday, November 18", "Jane Doe"),
])
def test_places_roles_and_dates_leave_the_names(raw: str, clean: str) -> None:
    assert clean_byline(raw) == clean


@pytest.mark.parametrize("name", [
    # particles, several authors, agencies and desks, names that look like something else
    "Mary Ann van der Berg", "Mohammed bin Salman", "Sophie in 't Veld", "Ludwig van Beethoven",
    "Jane Smith and John Doe", "Ashley Southall and Jesse McKinley", "Jack Nicas, Natalie Alcoba and Lucía Cholakian Herrera",
    "D. Graham Burnett, Alyssa Loh and Peter Schmidt", "Reuters", "Associated Press",
    "The Associated Press", "Staff and agencies", "Guardian sport", "Staff Writer", "dpa",
    "Theresa May", "Fredric March", "April Ryan", "Nancy Friday", "Joe Friday", "Mary Ann Writer",
    "Bruno (Henrique Zecchin) Rodrigues", "Martin Untersinger (avec Damien Leloup et Morgane Tual)",
    "Archer, L. A.", "Ash, C., Mueller, K. L.", "Smith, May", "Theodore Roosevelt IV", "bell hooks",
    "Sandee LaMotte, CNN", "Meg Kinnard, Errin Haines, Associated Press", "DAVID PORTER",
    "Dr. Christopher Kunz", "Rebecca Davis O’Brien", "肖春芳", "First Dog on the Moon",
    "David Smith in Washington, Jane Doe",  # a name after a place's comma is no region
    # label words that begin names too: only in lower case or before a colon
    "Von Miller", "Di Stefano", "Von Miller and Jane Doe", "Author Name",
])
def test_names_stay_as_written(name: str) -> None:
    expected = name.replace(" in Washington", "")
    assert clean_byline(name) == expected


@given(st.text(max_size=60))
@example(":;|:")
def test_clean_byline_is_idempotent_and_only_cuts(raw: str) -> None:
    once = clean_byline(raw)
    assert clean_byline(once) == once
    # Compared between separators: a part cut from between two names leaves them joined by
    # the next separator, so "Jane Doe;March 3, 2009|John Smith" gives "Jane Doe|John Smith",
    # whose whitespace word "Doe|John" is in no byline (":;|:" -> ":|:" failed so once).
    assert all(word in raw for word in re.split(r"[\s,;&|·•]+", once) if word)


def test_a_date_cut_from_between_two_names_leaves_the_names_and_one_separator() -> None:
    assert clean_byline("Jane Doe;March 3, 2009|John Smith") == "Jane Doe|John Smith"


def test_feed_bylines_are_stored_as_names() -> None:
    item = ParsedItem(url="https://www.theguardian.com/a", title="T", author="Patrick Wintour Diplomatic editor")
    draft = normalize(item, source=None, now=NOW)
    assert draft is not None and draft.author == "Patrick Wintour"


def _feed_authors(shared_data) -> list[tuple[str, str]]:
    from aggregator.parse import parse_document

    out = []
    for path in sorted((shared_data / "news-feeds").glob("*/*")):
        if path.name.startswith(("LICENSE", "README")):
            continue
        doc = parse_document(path.read_bytes(), base_url="https://x.example/")
        for item in doc.items:
            draft = normalize(item, source=None, now=NOW)
            if draft is not None and item.author:
                out.append((item.author, draft.author))
    return out


def test_every_captured_feed_byline(shared_data) -> None:
    """All 434 bylines of the captured feeds: the Guardian's places and roles go (12 distinct
    bylines), every other stays as it was, and no name is lost."""
    pairs = _feed_authors(shared_data)
    assert len(pairs) >= 400
    changed = {raw: clean for raw, clean in pairs if raw != clean}
    assert changed == {
        "David Smith in Washington": "David Smith",
        "Tom McCarthy in New York": "Tom McCarthy",
        "Ashifa Kassam in Stanstead, Quebec": "Ashifa Kassam",
        "Reuters in New York": "Reuters",
        "Sam Jones in Madrid and Stephen Burgen in Barcelona": "Sam Jones and Stephen Burgen",
        "Nick Ames (now), Ed Aarons and Ben Fisher (earlier)": "Nick Ames, Ed Aarons and Ben Fisher",
        "Associated Press in Palm Beach, Florida": "Associated Press",
        "Damian Carrington Environment editor": "Damian Carrington",
        "Patrick Wintour Diplomatic editor": "Patrick Wintour",
        "Jason Burke Africa correspondent": "Jason Burke",
        "Oliver Holmes in Jerusalem": "Oliver Holmes",
        "Lenny Bernstein, illustration by Anna Parini for the washington post": "Lenny Bernstein",
    }
