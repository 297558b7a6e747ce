"""GET /v1/search and the words readers type: names with or without their accents, words side
by side ("New York"), a common word in capitals ("WHO"), common words only ("the of and"), over BBC
stories and a few reports in SQLite, the real indexes and real HTTP (hashing embedder: what is
checked here is found by words, tests/recommender/test_search_quality.py measures meaning)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aggregator.model import StoryDraft
from tests.api.conftest import make_stack, stop_stack

NOW = datetime.now(UTC)
# One palace written with its accents by a French site and bare by an English one.
ACCENTED_URL = "https://lemonde.example/elysee-sommet"
BARE_URL = "https://wire.example/2026/elysee-summit"
G7_URL = "https://wire.example/2026/g7-loan"
NEW_YORK_URL = "https://wire.example/2026/new-york-fares"
MINSTER_URL = "https://northern.example/2026/york-minster-visit"
WHO_URL = "https://wire.example/2026/who-measles"
MUNICH_URL = "https://tagesschau.example/muenchen-streik"
WARNS = [  # other warnings of the day, fresher than the WHO's
    ("https://wire.example/2026/boe-warns", "Bank of England warns on mortgage rates",
     "The Bank of England warned that mortgage rates would stay high this year."),
    ("https://wire.example/2026/met-warns", "Met Office warns of flooding in Cumbria",
     "The Met Office warned of flooding in Cumbria as heavy rain moved north."),
    ("https://wire.example/2026/union-warns", "Union warns of rail strike over pay",
     "The rail union warned of a strike over pay after talks broke down."),
]


def draft(url: str, title: str, text: str, site: str, hours: float) -> StoryDraft:
    return StoryDraft(url=url, title=title, text=text, site=site, source=site.split(".")[0],
                      category="world", published_at=NOW - timedelta(hours=hours))


@pytest.fixture(scope="module")
async def stack(tmp_path_factory, shared_data):
    extra = [
        draft(ACCENTED_URL, "Sommet européen à l'Élysée",
              "Emmanuel Macron a reçu Friedrich Merz à l'Élysée pour un sommet sur la défense "
              "européenne.", "lemonde.example", 2),
        draft(BARE_URL, "Elysee talks end without a deal on fishing quotas",
              "Talks at the Elysee Palace on fishing quotas ended without a deal, officials in "
              "Paris said.", "wire.example", 3),
        draft(G7_URL, "G7 leaders agree Ukraine loan",
              "Leaders of the G7 agreed a loan to Ukraine backed by frozen Russian assets.",
              "wire.example", 1),
        draft(NEW_YORK_URL, "New York subway fares rise",
              "Subway fares in New York will rise next month, the transit authority said.",
              "wire.example", 6),
        # Both of the query's words, apart, and fresher: it came first for "New York".
        draft(MINSTER_URL, "New visit to York Minster",
              "A new visitor centre opened at York Minster, and York hopes for more tourists.",
              "northern.example", 1),
        draft(MUNICH_URL, "Streik legt Nahverkehr in München lahm",
              "In München fahren seit dem Morgen keine U-Bahnen und Trams, die Gewerkschaft "
              "hat zum Warnstreik aufgerufen.", "tagesschau.example", 4),
        draft(WHO_URL, "WHO warns of measles surge across Europe",
              "The WHO warned that measles cases in Europe had risen sharply.",
              "wire.example", 8),
        *(draft(url, title, text, "wire.example", 2 + i)
          for i, (url, title, text) in enumerate(WARNS)),
    ]
    st, server, task = await make_stack(tmp_path_factory.mktemp("search-words"), shared_data,
                                        limit=20, extra_drafts=extra)
    yield st  # `http` (tests/api/conftest.py) asks this module's stack
    await stop_stack(st, server, task)


async def search(http, q: str, **params) -> list[dict]:
    r = await http.get("/v1/search", params={"q": q, **params})
    assert r.status_code == 200, r.text
    return r.json()["items"]


@pytest.mark.parametrize("q", ["Elysee", "élysée", "ELYSÉE"])
async def test_a_name_is_found_with_or_without_its_accents(http, q):
    """Readers type "Elysee" for the Élysée, and English sites write it bare: the index keeps
    the accents, so a search typed one way found none of the stories written the other."""
    items = await search(http, q, k=2)
    assert {c["url"] for c in items} == {ACCENTED_URL, BARE_URL}
    reasons = {c["url"]: c["reason"] for c in items}
    assert reasons == {ACCENTED_URL: "matches 'élysée'", BARE_URL: "matches 'elysee'"}


@pytest.mark.parametrize("q", ["Muenchen", "München", "MUENCHEN"])
async def test_a_german_name_is_found_with_its_umlaut_spelt_out(http, q):
    """German readers without an "ü" key type "Muenchen": the index read it as no spelling
    of "münchen" (only "munchen" was), so the story was found by meaning at best, if at all,
    and "about the same subject"."""
    items = await search(http, q, k=1)
    assert [(c["url"], c["reason"]) for c in items] == [(MUNICH_URL, "matches 'münchen'")]


async def test_a_name_of_a_letter_and_a_digit_is_named_in_the_reason(http):
    """"G7" is no word to the index (one letter, one digit): the story was found by its name,
    and said to be "about the same subject" under a headline that reads "G7"."""
    items = await search(http, "G7", k=3)
    assert items[0]["url"] == G7_URL
    assert items[0]["reason"] == "matches 'g7'"


@pytest.mark.parametrize("q", ["New York", '"new york"'])
async def test_words_typed_together_rank_the_story_that_has_them_together_first(http, q):
    """Both stories carry "York" ("new" is a stop word): the York Minster visit, fresher and
    saying "York" twice, came first (1.37 to 1.14), quotes or not."""
    items = await search(http, q, k=3)
    assert items[0]["url"] == NEW_YORK_URL
    assert MINSTER_URL in [c["url"] for c in items]  # still found, after


@pytest.mark.parametrize("q", ["WHO warns", "WHO"])
async def test_a_word_in_capitals_is_the_name_not_the_common_word(http, q):
    """"WHO" was folded to the stop word "who": searched alone, a Budget story came first."""
    items = await search(http, q, k=3)
    assert items[0]["url"] == WHO_URL
    assert items[0]["reason"].startswith("matches 'WHO'")  # not "about the same subject"


@pytest.mark.parametrize(("q", "found"), [("WHO", {WHO_URL}), ("WHO xyzzy", {WHO_URL}),
                                           ("OUR", set())])
async def test_a_word_in_capitals_finds_only_the_stories_that_write_it(http, q, found):
    """No index reads "WHO", so stories found by meaning alone were kept however weakly: "WHO"
    over BBC gave ten unrelated stories, and "OUR" (that no story writes) ten more."""
    items = await search(http, q, k=10)
    assert {c["url"] for c in items} == found


@pytest.mark.parametrize("q", ["the of and", "The", "who is", "le la les", '"the"'])
async def test_a_query_of_common_words_only_is_a_422(http, q):
    """Refused as "???" is: neither index reads a stop word, and ten stories "about the same
    subject" came back, whatever the embedding of "the of and" happened to be near."""
    r = await http.get("/v1/search", params={"q": q})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "no_query"
    assert "common words" in r.json()["error"]["message"]


@pytest.mark.parametrize("q", ["Ｅｌｙｓｅｅ", "ＥＬＹＳＥＥ"])
async def test_a_word_typed_in_full_width_letters_is_searched_as_the_word(http, q):
    """A Japanese, Chinese or Korean keyboard types Latin letters full width ("ＥＬＹＳＥＥ"):
    no index reads them as "elysee", so the search found neither Élysée story, and ten
    unrelated ones came back "about the same subject"."""
    r = await http.get("/v1/search", params={"q": q, "k": 2})
    assert r.status_code == 200, r.text
    assert r.json()["query"] == "elysee"
    assert {c["url"] for c in r.json()["items"]} == {ACCENTED_URL, BARE_URL}


@pytest.mark.parametrize("q", ["email", "e-mail"])
async def test_a_word_is_found_with_or_without_its_hyphen(http, q):
    """Readers type "email"; BBC writes "e-mail", which the index read as "mail" (a single
    letter is no term): "email" found 3 of the hundred stories that tell of e-mail, here
    neither of these two. Both write "e-mail"; politics-009 also "email" once."""
    items = await search(http, q, k=10)
    urls = [c["url"] for c in items]
    for f in ("politics-002", "politics-009"):
        assert f"https://www.bbc.co.uk/news/{f}" in urls, urls
