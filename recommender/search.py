"""Story search: a reader's words ranked as a related block ranks an article's candidates.

The query goes through the related flow whole (recommender/blocks.py `RelatedService.search`):
both retrievers, the fused relevance, freshness, copies collapsed. What differs is here, pure:
the ranking's parameters (the story whose headline was typed is the answer, not "the article
itself"; no diversifying), the query as the ranking reads it, and each card's reason.
"""

from __future__ import annotations

import dataclasses
import math
import re
import string
import unicodedata
from collections.abc import Callable
from itertools import pairwise
from typing import TypeVar

from recommender.lexical import (
    fold,
    key_terms,
    plain_forms,
    stopwords_for,
    tokenize,
    unspaced,
)
from recommender.related import Ranked, RankParams, with_reason, writes_any

Story = TypeVar("Story")

# Most characters a query may have (the API's `q`).
MAX_QUERY_CHARS = 200


def query_problem(query: str) -> str | None:
    """What makes `query` no search (said after its name: "q ...", "QUERY ..."), else None."""
    if len(query) > MAX_QUERY_CHARS:
        return f"is longer than {MAX_QUERY_CHARS} characters"
    if not any(ch.isalnum() for ch in query):
        return "holds no words to search for (blank, or only punctuation)"
    if not (tokenize(query) or key_terms(as_names(query), "") or capitals(query)):
        # Neither index reads a stop word or a lone letter: only the meaning of "the of
        # and" was ranked, which gave any stories at all, each "about the same subject".
        # The caller's own words are quoted: a fixed ("the", "of", "and") told someone who
        # typed "x y" that their query held words they never typed.
        return (f"holds only common words or single letters ({_quoted_words(query)}): "
                "none to search for")
    return None


def _quoted_words(query: str, most: int = 5) -> str:
    """The query's first words, bare of punctuation, quoted for an error message."""
    words = [w for w in (word.strip(_AROUND_WORD) for word in query.split()) if w]
    shown = ", ".join(f'"{w}"' for w in words[:most])
    return shown + (", …" if len(words) > most else "")


def _in_capitals(word: str) -> bool:
    """A word of 2+ letters typed in capitals that folded is a stop word: "WHO", "IS",
    "IT" (the organisation, the group, the trade), not "who", "is", "it"."""
    return sum(ch.isalpha() for ch in word) >= 2 and word.isupper() and not tokenize(word)


def capitals(query: str) -> list[str]:
    """The query's words that `_in_capitals` keeps as names, bare of quotes and commas. For
    the search only: the index keeps no stop word, so these find stories by their meaning
    and by their titles (`title_factor`), not by their postings."""
    return [word.strip(_AROUND_WORD) for word in query.split() if _in_capitals(word)]


def unindexed(query: str, corpus_stop_word: Callable[[str], bool]) -> tuple[str, ...]:
    """The query's words whose every term is a corpus stop word (`corpus_stop_word`:
    `LexicalIndex.corpus_stop_word`), as a candidate's title or summary writes them: as typed
    and capitalised, as a title or sentence starts. No index finds a story by them, so a
    search of such words alone ranked only stories close in meaning: at 100,000 synthetic
    stories (benchmarks/api_bench.py) "bergorne bergorul", in 48 % and 43 % of the stories,
    found none. Read as `Query.written`, a story of the pool that writes one shares it."""
    words = []
    for word in query.split():
        terms = tokenize(word)
        if terms and all(map(corpus_stop_word, terms)):
            bare = word.strip(_AROUND_WORD)
            words += [bare, bare.capitalize()]
    return tuple(dict.fromkeys(words))


# A story that carries none of the query's words is shown only when its meaning is at least
# this close (dense cosine; `RankParams.min_dense_unmatched`): "xyzzy", a misspelt name or a
# topic no story covers gave ten unrelated stories "about the same subject". Measured over
# the 2,087 BBC stories of all five sections (int8 MiniLM, k 10): 64 gibberish queries (60
# random letter strings, "xyzzy", "lorem ipsum", ...) were answered at cosines of 0.37 at
# most (p99 0.30): 62 now find nothing, 2 a few stories whose text has a word of theirs
# ("qwerty", "foo"). Of 32 topics after 2005 ("iphone 15 launch", "covid vaccine",
# "chatgpt") 16 keep results, by a word ("launch", "vaccine", "ban") or by a near meaning
# (0.44-0.6: "spotify podcast", podcasting; "netflix streaming", TV over broadband); of 8
# misspelt names 4, 3 by their other word ("tony blaire"), one by meaning ("blaire": Blair
# at 0.43-0.47). Real queries keep their story in the top 10 as without the floor:
# 186/187 by a title's 2 rarest words, 186/187 by 3, 187/187 by the headline, 24/24
# paraphrases (their story at 0.39-0.64, median 0.55; the 4 sharing no word at 0.52-0.62).
# At 0.35, one gibberish query kept a story. A word in capitals that folds to a stop word
# ("WHO", "IT", "AT&T"), read by no index, counts as shared by the stories whose title or
# summary writes it (`Query.written`); it had turned the floor off: over the same stories,
# 24 such queries gave 10 results each, 2 of the 240 writing the word (BBC writes "IT" and
# "WHO" in 16 bodies, in no title or summary). Now the 9 of one word that no title or
# summary writes ("WHO", "IT", "OUR", "IS") find nothing, "WHO warns" and "IT jobs" what
# their other word finds and the close in meaning, "AT&T" the one story that writes it and
# 5 at 0.4 or more.
SEARCH_MIN_DENSE = 0.4


def search_params(params: RankParams | None = None) -> RankParams:
    """The related ranking's parameters for a search. No self-exclusion: related drops a
    candidate under the query's own title as the article republished, but a reader who types
    a headline is looking for that very story. No MMR (lambda 1: relevance order), as a result
    list should not push the second report of an event below a weaker match. No relevance
    floor: it is set on article-to-article similarity, and a query of a word or two against a
    story sits on another scale (a name the model does not know has a low cosine to the very
    stories that carry it); a search answers what matched its words, and what matched only
    its meaning when closely (`SEARCH_MIN_DENSE`). A word in capitals ("WHO") is read by no
    index: the story that writes it shares it only by its text (`Query.written`, set by the
    caller from `capitals`). Stories in other languages than the query's are held to no
    same-event evidence (`RankParams.other_language_min_event`): a query has no date, and a
    reader who types words in one language may look for reports in another. No related
    reasons: each card's reason is the search's own (`searched`)."""
    return dataclasses.replace(params or RankParams(), self_cosine=math.inf,
                               self_title_cosine=math.inf, self_title_lexical=math.inf,
                               mmr_lambda=1.0, min_relevance=-math.inf,
                               min_dense_unmatched=SEARCH_MIN_DENSE, other_language_min_event=0.0,
                               reasons=False)


# The width forms (U+FF01-U+FFEE): Latin letters, digits and signs typed full width, and
# katakana and Hangul half width, as East Asian keyboards type them in the middle of text.
_WIDTH_FORMS = re.compile("[\uff01-\uffee]+")


def narrowed(text: str) -> str:
    """`text` with its width forms as the characters they stand for (NFKC, on them alone):
    "ＢＵＤＧＥＴ" is "BUDGET" and "ｶﾞｿﾘﾝ" is "ガソリン". Neither index reads them so, and the
    model reads "ｂｕｄｇｅｔ" as no word it knows: typed full width, "budget" found nothing.
    Only these: NFKC would also turn "CO₂" into "CO2", which the stories do not write."""
    return _WIDTH_FORMS.sub(lambda m: unicodedata.normalize("NFKC", m.group()), text)


def normal_query(q: str) -> str:
    """The query as it is searched, echoed and cached: width forms narrowed (`narrowed`),
    spaces collapsed, case folded but for a stop word typed in capitals (`_in_capitals`:
    "WHO warns" is not "who warns"), unless every word is in capitals (caps lock says
    nothing). Case changes nothing else but the names the ranking sees (`as_names`), so
    "Starmer budget" and "starmer budget" are one search and one cache entry."""
    words = narrowed(q).split()
    if caps_lock(words):
        return " ".join(words).casefold()
    return " ".join(w if _in_capitals(w) else w.casefold() for w in words)


def caps_lock(words: list[str]) -> bool:
    """Whether the words were typed with caps lock on: two or more of them have letters, all
    in capitals. A word without letters ("2005", "-", "&") says nothing either way: it made
    "ELECTION IN 2005" a query not all in capitals, "IN" kept as a name ("election IN
    2005", another cache entry than "election in 2005")."""
    cased = [w for w in words if w.upper() != w.lower()]
    return len(cased) > 1 and all(w.isupper() for w in cased)


def as_names(query: str) -> str:
    """Every word of the query capitalised: the ranking takes capitalised words as the names
    that tie reports of one event together (`key_terms`), and a reader's typed words are all
    meant, whatever their case ("starmer budget" names Starmer). With the (uncased) MiniLM
    it changed nothing measured on BBC (100/100 stories in the top 3 by five title words,
    99/100 first by headline, either way); with the hashing embedder, whose words keep their
    case, the folded query lost headlines ("Blair rejects Tory terror offer" came second).
    A word kept in capitals (`normal_query`) stays so: "Who" is the question word."""
    return " ".join(w if _in_capitals(w) else w.capitalize() for w in query.split())


def with_spellings(query: str, spellings: Callable[[str], list[str]]) -> str:
    """`query` with the index's other spellings of its words beside them (`spellings`:
    `LexicalIndex.spellings`), so "elysee palace" finds the stories that write "Élysée", and
    "élysée" those that write "Elysee": typed bare, an accented name found no story by its
    words (nor did the reason name it), however well it was written."""
    words = []
    for word in query.split():
        words.append(word)
        words.extend(other for term in tokenize(word) for other in spellings(term)
                     if other != term)
    return " ".join(dict.fromkeys(words))


def search_reason(query: str, title: str, summary: str, most: int = 3) -> str:
    """Why a story answers the query: the query's words it carries in its title or summary,
    else that it is about the same subject (found by meaning, or by words of its body only:
    the card holds no body, and reading it is a database read per result)."""
    text = f"{title} {summary}"
    # The story's language told once for its words and its names, from its text as written,
    # as the index tells it (`LexicalIndex.add`): each told it again for every result row.
    stop = stopwords_for(text)
    # One word once, however many of its spellings (`with_spellings`) the story writes: it
    # read "matches 'annonce', 'annoncé'" for "annonce", one typed word in two of three places.
    # A word's plain forms (`_plain_forms`) say it is one seen already: "münchen" is both
    # "munchen" and "muenchen", so neither "Munchen" nor "Muenchen" is named beside it.
    found: list[str] = []
    seen: set[str] = set()
    written = as_written(text)
    for word in _shown_words(query, text, set(tokenize(text, stop)),
                             set(key_terms(text, "", stopwords=stop))):
        word = written.get(word, word)
        if not (forms := _plain_forms(word)) & seen:
            found.append(word)
        seen |= forms
    found = found[:most]
    if not found:
        return "about the same subject"
    return "matches " + ", ".join(f"'{w}'" for w in found)


def _plain_forms(word: str) -> set[str]:
    """The forms under which the index's spellings (`LexicalIndex.spellings`) tie `word` to
    its others: without accents, and with its umlauts spelt out (pure)."""
    return set(plain_forms(fold(word)))


_LETTERS = re.compile(r"[^\W\d_]+")


def as_written(text: str) -> dict[str, str]:
    """Each word of `text` that its term (`fold`) misspells, lower-cased as the story writes
    it: "strasse" -> "straße", "λογοσ" -> "λόγος" (case-folding reads "ß" as "ss" and a final
    "ς" as "σ", and the index drops Greek accents). A reason showed the term: "matches
    'grosse'" under "Große Koalition". ASCII words are their terms already."""
    found: dict[str, str] = {}
    if text.isascii():
        return found
    for word in _LETTERS.findall(text):
        if not word.isascii():
            # lower-case as written, but for the dot lower-casing puts on Turkish "İ"
            lower = word.lower().replace("i\u0307", "i")
            if (term := fold(word)) != lower:
                found.setdefault(term, lower)
    return found


# Around a typed word, not of it: quotes, brackets, a trailing comma.
_AROUND_WORD = string.punctuation + "“”‘’«»„。，、：；！？（）「」"


def _shown_words(query: str, text: str, words: set[str], names: set[str]) -> list[str]:
    """The query's terms found in `words` (a term a token), each word whole when all its
    terms are: "jean-luc", "covid-19", "习近平" (a script written without spaces, read as
    pairs of characters), where its parts alone ("'jean', 'luc'"; "'习近', '近平'") read as
    noise, and a word of such a script only so. A word the index reads as no term, a letter
    beside a digit ("G7", "5G", "F1"), when the story names it (`names`: its key terms): it
    was "about the same subject" under a headline that says "G7"; a word in capitals
    (`capitals`: "WHO", "AT&T") when `text` writes it as typed, the search's reason to keep
    the story (`Query.written`)."""
    shown = []
    for word in query.split():
        terms = tokenize(word)
        if not terms and _in_capitals(word):
            if writes_any(text, [bare := word.strip(_AROUND_WORD)]):
                shown.append(bare)
        elif not terms:
            shown.extend(t for t in key_terms(as_names(word), "") if t in names)
        elif len(terms) > 1 and all(t in words for t in terms) and one_word(word):
            shown.append(word.strip(_AROUND_WORD))
        elif len(terms) == 1 or not unspaced(terms[0]):
            shown.extend(t for t in terms if t in words)
    return shown


# What joins the parts of one word: "jean-luc", "o'brien", "e.on".
_JOINERS = frozenset("-‐‑'’.")


def one_word(word: str) -> bool:
    """Whether `word` (bare of the quotes and commas around it) is one word of parts: letters,
    digits and their marks, joined by hyphens, apostrophes or dots. Not "tax.*cuts" or
    "blair|brown", a pattern typed into the box, which a reason showed whole ("matches
    'blair|brown'" under "Brown and Blair face new rift claims") rather than its words."""
    return all(ch.isalnum() or ch in _JOINERS or unicodedata.category(ch).startswith("M")
               for ch in word.strip(_AROUND_WORD))


# A story whose title has the query's words side by side as typed ("New York" in "New York
# subway fares rise", not "New visit to York Minster"), or that writes the query's word in
# capitals as typed ("WHO"), ranks as if this much more relevant (times the share of the
# query's pairs, or of its words in capitals, that it has). The index keeps no positions:
# the titles of the ranked stories are read instead. Over BBC stories and a few reports
# (tests/api/test_search_phrases.py, hashing embedder) the story under "New York" came
# second at 1.14 to the York Minster visit's 1.37, as both carry "York" (and "new", a
# stop word), and the WHO's warning second to a Budget story for "WHO".
TITLE_BONUS = 0.3
# Stories ranked for a search beyond the k shown, so `title_factor` has some to lift. Each
# costs its share of the ranking (the pool scored grows with the stories asked for): 10 made
# a search ~3.4 ms slower at p50 (12.7 against 9.3 ms, 922 stories, int8 MiniLM; the
# benchmark's 1M synthetic stories: p50 8.6 -> 13.9 ms, 118 -> 71 searches/s at 8 in flight),
# 3 ~1.1 ms; a story ranked up to 3 places below the block can still be lifted into it.
RERANK_EXTRA = 3


# How many stories a search ranks whatever its k (the API's `max_k` as shipped), cut to k after.
# The related ranking scores each story against its pool (neighbourhood agreement, shares of
# the best), and the pool grows with k: over the five BBC sections (int8 MiniLM) "blair"
# answered 225, 257, 262 at k 3 and 257, 149, 189 at k 10, and 7 of 20 common queries
# reordered between two of k 1, 3, 5, 10, 20, 40, so a "more results" page repeated some
# stories and skipped others, and a box of 5 suggestions disagreed with the page of 10.
# Ranking 50 where 10 are asked costs more per search missing the cache (its took_ms 30-60 ms
# against ~30 ms, the same stories). Of that, only what orders the stories is done for all
# of them: no related reasons (`search_params`), and the copies' sites looked up for the k
# shown (`RelatedService.search`). CPU per search over the 760 BBC stories of the test stack
# (hashing embedder, k 10, medians of alternated runs): ~6 ms ranking k + 3, 15.7 ms ranking
# 50 with reasons for all, 12 ms now. The rest is the ranking's own pool (348 candidates a
# retriever, each scored in full), which sets the order.
# 20, not 50: `make bench --quick` (synthetic 10k, k 5, one run each, same machine): search
# p50 / p99 11.4 / 12.7 ms ranking k, 16.3 / 23.7 at depth 20, 30.9 / 55.5 at 50 (the full
# bench at 1M: 48.6 / 67.5, text blocks 17.7 / 25.9).
# Why not rank just k for a first search and more later: the ranker is not prefix-stable (the
# pool, and so the order, moves with the stories asked for), so the first page's order would
# hang on the k that happened to come first. A fixed depth gives one order, and the API keeps
# each ranking (api/blockcache.py `RankingCache`), so a page of 20 after one of 10 ranks nothing.
SEARCH_DEPTH = 20


def search_depths(k: int) -> list[int]:
    """The rankings a search that shows `k` is made of (`merged`): `SEARCH_DEPTH`, then twice
    as many, and so on until one holds k. Every k up to 20 is the first 20 of one ranking; a
    k past it keeps those 20 and goes on with a deeper ranking's other stories, so k=40 starts
    with the k=20 answer and k=50 with k=40's. Ranked as asked, a k=40 started otherwise than
    k=20 for 2 of 15 common queries over the BBC politics and entertainment stories (hashing
    embedder). The depths are fixed, not k, for the reason `SEARCH_DEPTH` is; doubling keeps
    the stories ranked for a cold k under 4k however deep a caller pages."""
    depths = [SEARCH_DEPTH]
    while depths[-1] < k:
        depths.append(depths[-1] * 2)
    return depths


def merged(rankings: list[list[tuple[Story, Ranked]]], k: int) -> list[tuple[Story, Ranked]]:
    """The first `k` of `rankings` (`search_depths`' order) read one after another, each story
    once (by its ranked id): a deeper ranking adds only the stories the shallower ones did not
    rank. Its scores are its own, so a story after the first 20 may score above one before.
    A story counts with the copies collapsed into it: a deeper ranking may pick another copy
    to stand for them, which is the same story again."""
    seen: set[int] = set()
    out = []
    for rows in rankings:
        for row in rows:
            ids = {row[1].id, *row[1].copies}
            if seen.isdisjoint(ids):
                seen |= ids
                out.append(row)
    return out[:k]


def could_lift(query: str) -> bool:
    """Whether `title_factor` may lift a story for `query`: it has two words to find side by
    side, or a word in capitals. A one-word search ranks no stories past its k."""
    return len(_words(query)) > 1 or bool(capitals(query))


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", fold(text))


def title_factor(query: str, title: str, summary: str) -> float:
    """What a story's score is multiplied by for the query's words found side by side in its
    title and for its words in capitals found in capitals in its title or summary."""
    typed = _words(query)
    pairs = set(pairwise(typed))
    share = 0.0
    if pairs:
        words = _words(title)
        share = len(pairs & set(pairwise(words))) / len(pairs)
    if names := capitals(query):
        text = f"{title} {summary}"
        share = max(share, sum(writes_any(text, [name]) for name in names) / len(names))
    return 1.0 + TITLE_BONUS * share


def reranked(rows: list[tuple[Story, Ranked]], query: str, k: int,
             text: Callable[[Story], tuple[str, str]]) -> list[tuple[Story, Ranked]]:
    """The `k` best of `rows` (a story, its ranking) once each score is multiplied by its
    `title_factor` (`text`: a story's title and summary); stable, so ties keep their order."""
    scored = [(m, dataclasses.replace(r, score=round(r.score * title_factor(query, *text(m)), 6)))
              for m, r in rows]
    return sorted(scored, key=lambda row: -row[1].score)[:k]


def searched(ranked: Ranked, query: str, title: str, summary: str) -> Ranked:
    """`ranked` with the search's reason (keeping the sites that also carried it)."""
    return with_reason(ranked, search_reason(query, title, summary))
