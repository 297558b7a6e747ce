"""A search card's reason (recommender.search.search_reason), in other languages; the query
as searched (`normal_query`) and the title factor of its ranking (`title_factor`)."""

from __future__ import annotations

import pytest

from recommender import lexical, search
from recommender.search import (
    TITLE_BONUS,
    normal_query,
    search_reason,
    title_factor,
    with_spellings,
)
from tests.recommender.foreign_news import FRENCH


@pytest.mark.parametrize(("query", "title", "reason"), [
    # Scripts without spaces: the word as typed, not its pairs of characters ("'习近', '近平'").
    ("习近平 马克龙", "习近平在北京会见法国总统马克龙", "matches '习近平', '马克龙'"),
    ("東京 地震", "東京で震度5強の地震", "matches '東京', '地震'"),
    ("เชียงใหม่", "น้ำท่วมหนักในเชียงใหม่", "matches 'เชียงใหม่'"),
    ("马克龙 北京", "马克龙访问上海", "matches '马克龙'"),  # a word not all found is not shown
    # Other words lower-cased, without points or elisions.
    ("İstanbul", "Erdoğan'ın İstanbul ziyareti", "matches 'istanbul'"),
    ("élysée", "Réunion de crise à l'Élysée", "matches 'élysée'"),
    ("נתניהו", "נְתַנְיָהוּ נִפְגַּשׁ בִּירוּשָׁלַיִם", "matches 'נתניהו'"),
    # As the story spells them, not as case-folding does: "ß" read "ss", a final "ς" "σ"
    # ("matches 'grosse'" under "Große Koalition", Greek misspelt 'σεισμοσ').
    ("strasse", "Sperrung der Straße", "matches 'straße'"),
    ("GROSSE Koalition", "Große Koalition einigt sich", "matches 'große', 'koalition'"),
    ("σεισμός", "ΙΣΧΥΡΟΣ ΣΕΙΣΜΟΣ ΣΤΗΝ ΚΡΗΤΗ", "matches 'σεισμος'"),
    ("λόγος", "Ο λόγος του πρωθυπουργού", "matches 'λόγος'"),
    ("straße strasse", "Straße gesperrt, Strasse offen", "matches 'straße'"),  # one word once
    ("Blair's budget", "Blair sets out budget", "matches 'blair', 'budget'"),  # as before
    # A word of parts, whole when the story has them all: "'jean', 'luc'" read as two names.
    ("Jean-Luc", "Jean-Luc Mélenchon calls a strike", "matches 'jean-luc'"),
    ("covid-19 care homes", "COVID-19 cases rise in care homes",
     "matches 'covid-19', 'care', 'homes'"),
    ("(Jean-Luc),", "Jean-Luc Godard dies", "matches 'jean-luc'"),
    ("Jean-Luc", "Luc Besson's new film", "matches 'luc'"),
    # Written with a hyphen or without: one word ("about the same subject" under "e-mail").
    ("email", "Spam e-mail floods inboxes", "matches 'email'"),
    ("e-mail", "Email scam targets pensioners", "matches 'email'"),
    ("e-mail", "Spam e-mail floods inboxes", "matches 'e-mail'"),
    # A letter beside a digit is no word to the index, but the story's name: it was "about
    # the same subject" under a headline saying G7.
    ("G7", "G7 finance ministers meet in Italy", "matches 'g7'"),
    ("5g masts", "5G masts go up in Leeds", "matches '5g', 'masts'"),
    ("f1", "Hamilton wins the F1 season opener", "matches 'f1'"),
    ("G7", "G20 leaders meet in Rio", "about the same subject"),
    # No index reads a word in capitals: the story kept for writing it said it was "about
    # the same subject" under a headline that says "WHO".
    ("WHO", "WHO warns of measles surge", "matches 'WHO'"),
    ("WHO warns", "Measles: the WHO warns", "matches 'WHO', 'warns'"),
    ("AT&T takeover", "SBC completes AT&T takeover", "matches 'AT&T', 'takeover'"),
    ("WHO", "Who will win the election?", "about the same subject"),
    # A pattern typed into the box is no word of parts: its words, as the story has them.
    ("(blair|brown)", "Brown and Blair face new rift claims", "matches 'blair', 'brown'"),
    ("tax.*cuts", "Will Tory tax cuts lift spirits?", "matches 'tax', 'cuts'"),
    ("o'brien", "O'Brien quits the board", "matches 'o'brien'"),
])
def test_the_reason_names_the_query_words_the_story_carries(query, title, reason):
    assert search_reason(normal_query(query), title, "") == reason


@pytest.mark.parametrize("typed,searched", [
    ("WHO  warns", "WHO warns"),  # the organisation, kept
    ("IT jobs", "IT jobs"),
    ("UK Budget", "uk budget"),  # no common word: capitals change nothing, one cache entry
    ("WHO WARNS", "who warns"),  # caps lock says nothing
    ("Who is", "who is"),
    # Caps lock on, with words that have no letters: as much caps lock.
    ("ELECTION IN 2005", "election in 2005"),
    ("WHAT IS THE EU? - 2005", "what is the eu? - 2005"),
    ("WHO 2005", "WHO 2005"),  # one word of letters: the organisation, as "WHO" alone
    # Width forms, as an East Asian keyboard types them, read as the letters they are.
    ("ＵＫ　Ｂｕｄｇｅｔ", "uk budget"),
    ("ＷＨＯ warns", "WHO warns"),
    ("ｶﾞｿﾘﾝ価格", "ガソリン価格"),
])
def test_a_common_word_typed_in_capitals_stays_a_name(typed, searched):
    assert normal_query(typed) == searched


def test_the_title_factor_rewards_the_words_side_by_side_and_capitals_as_typed():
    assert title_factor("new york", "New York subway fares rise", "") == 1.0 + TITLE_BONUS
    assert title_factor("new york", "New visit to York Minster", "") == 1.0
    assert title_factor('"new york" fares', "New York subway fares", "") == 1.0 + TITLE_BONUS / 2
    assert title_factor("WHO warns", "Measles warning", "The WHO said.") == 1.0 + TITLE_BONUS
    assert title_factor("WHO", "Who will win?", "") == 1.0
    # "AT&T" is no one word: its story was never lifted.
    assert title_factor("AT&T", "SBC to cut jobs", "After the AT&T deal.") == 1.0 + TITLE_BONUS


def test_a_one_word_search_ranks_no_stories_past_its_k():
    # Ranking past k costs every search its share (~1 ms for 3 more at 922 stories); only a
    # query with two words to find side by side, or a word in capitals, can use them.
    from recommender.search import could_lift

    assert not could_lift("budget") and not could_lift("élysée")
    assert could_lift("new york") and could_lift('"new york"') and could_lift("WHO")


def test_a_row_s_language_is_told_once(monkeypatch):
    # Each result row told its story's language twice, for its words and for its names,
    # each time from its text: the reason is as it was, told once.
    title, text = FRENCH[3]
    told, tell = [], lexical.stopwords_for

    def counted(sample):
        told.append(sample)
        return tell(sample)

    monkeypatch.setattr(lexical, "stopwords_for", counted)
    monkeypatch.setattr(search, "stopwords_for", counted, raising=False)
    assert search_reason("sénat retraites", title, text[:120]) == "matches 'sénat', 'retraites'"
    assert len([s for s in told if "adopte" in s]) == 1  # the query's words are told apart


@pytest.mark.parametrize(("query", "quoted"), [
    ("x y", '("x", "y")'),
    ("the of and", '("the", "of", "and")'),
    ('"The", a', '("The", "a")'),
    ("a b c d e f g", '("a", "b", "c", "d", "e", …)'),
])
def test_a_query_of_common_words_is_refused_naming_its_own_words(query, quoted):
    """The message quoted "the", "of", "and" whatever was typed: "x y" was told it held them."""
    assert search.query_problem(query) == (
        f"holds only common words or single letters {quoted}: none to search for")



@pytest.mark.parametrize("q", ["annonce", "annoncé", "ANNONCE"])
def test_a_word_the_story_writes_two_ways_is_named_once(q):
    """A search carries the index's other spellings of each word (`with_spellings`): a story
    that writes "annonce" in its title and "annoncé" in its summary read "matches 'annonce',
    'annoncé'", one typed word twice, taking a place of the three a reason shows."""
    title = "L'Élysée annonce un remaniement du gouvernement"
    summary = "Le président a annoncé depuis l'Élysée un remaniement du gouvernement."
    assert reason_of(q, title, summary) == f"matches '{normal_query(q)}'"
    assert reason_of(f"{q} élysée", title, summary) == f"matches '{normal_query(q)}', 'élysée'"


def reason_of(q: str, title: str, summary: str) -> str:
    """The reason of a story searched for `q` in an index of it alone, the query carrying the
    index's other spellings of its words as a search does (`with_spellings`)."""
    idx = lexical.LexicalIndex()
    idx.add(1, title, summary)
    return search_reason(with_spellings(normal_query(q), idx.spellings), title, summary)


@pytest.mark.parametrize("q", ["Muenchen", "München", "MUENCHEN"])
def test_a_german_word_written_with_and_without_its_umlaut_is_named_once(q):
    """A search carries a German word's umlauts spelt out (`LexicalIndex.spellings`): a story
    that writes "München" in its title and "Muenchen" in its summary read "matches
    'muenchen', 'münchen'", as accents alone said the two were one word."""
    title = "Streik legt den Nahverkehr in München lahm"
    summary = "In Muenchen fahren seit dem Morgen keine U-Bahnen."
    assert reason_of(q, title, summary) == f"matches '{normal_query(q)}'"
