"""Lexical match over title and text: an in-memory TF-IDF index, and the names a story is about.

`LexicalIndex` answers "which stored stories share the rare words of this one" with a cosine
score in [0, 1] (damped sublinear tf, smoothed idf), so it can be fused with the dense cosine without
rescaling. It is incremental: documents come and go one by one, document frequencies are exact
at every query, and the per-document norms (which depend on idf) are refreshed whenever the
corpus has grown or shrunk by a few percent since they were last computed. TF-IDF cosine was
chosen over BM25 after measuring both in the related-stories fusion (see recommender/evaluate.py).

`key_terms` pulls out what identifies an event: capitalised names and numbers. The index also
counts, per name, the documents that capitalise it mid-sentence (`proper_terms`), which tells a
name from a common word capitalised at a sentence start (`common_word`). No I/O, and nothing of
storage or the dense index.

Tried and not kept (2026-12-07, 2-core AMD EPYC shared with other runs, so CPU-seconds): making
`LexicalIndex.add_many` cheaper, the corpus's follow's largest cost beside the model. Over the
ingest benchmark's 1,438 stories in its 8 pieces it takes ~265 ms: tokenizing the leads ~61
(the word regex ~30 of it) and the titles ~14, `stopwords_for` ~18, `key_terms` ~24,
`proper_terms` ~13, term ids and arrays ~25 (new terms ~13), `_ingest` ~20-26. Nothing is done
twice across the pipeline (the store computes no names; related blocks read the index's,
`key_terms_of`), and inside, title and lead are tokenized apart (the title is not in the lead).
Tried, index identical, 9 alternated reps: one `unelided` text for `key_terms` and
`proper_terms` -0.5%; counting the regex's words before unsuffixing and filtering them +6%
(a 150-word lead's words are mostly distinct); an ASCII-only word regex for the 569 ASCII
leads 6.3 -> 3.6 ms (~1%); a letter class without `_UNSPACED` for the others 22 -> 20 ms, less
than finding whether it applies costs. The floor is the regex scans (~65 ms) and the Python
work per token and per new term: no simple change cuts 20%.
"""

from __future__ import annotations

import math
import re
import sys
import unicodedata
from array import array
from collections import Counter
from collections.abc import Callable, Iterable
from itertools import chain, islice, pairwise

import numpy as np

from aggregator.textclean import first_words
from recommender.idmap import IdMap

# Endings written after an apostrophe that leave the word itself: the English possessive, and
# the Turkish case endings a name takes ("İstanbul'da", "Erdoğan'ın", "Ankara'ya"), folded
# (`fold`: "ı" is "i"). Without them each case of a name was a term of its own.
APOSTROPHE_ENDINGS = frozenset(
    """s a e i u ü ya ye yi yu yü in un ün nin nun nün da de ta te dan den tan ten la le yla yle
    na ne nda nde ndan nden ki daki deki taki teki lar ler lari leri""".split())
# What is left of a French elision once `unelided` has split it off ("qu'il": "qu", "il").
ELISIONS = frozenset("qu jusqu lorsqu puisqu quoiqu".split())

# Frequent function words: they carry no topic and would only lengthen the postings walked.
STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it its
    itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them themselves
    then there these they this those through to too under until up very was we were what when where
    which while who whom why will with would you your yours yourself yourselves said says say
    told one two new year years mr mrs ms s t ll re ve d m o y n't""".split()
) | ELISIONS

# The function words of the languages after English whose news a site is likeliest to carry:
# articles, pronouns, prepositions, conjunctions, auxiliaries. Without them a French story's
# terms and names were "les", "des", "une", "selon" (each capitalised at a sentence start is
# a key term), so any two French stories shared evidence and read "same event". A list holds
# the words of one language only, and applies only to a text written in it
# (`stopwords_for`): "die", "war", "un" (the UN), "son" or "la" (LA) are English words or
# names, and German "die UN" keeps its UN. Folded as `fold` folds (Turkish "ı" is "i").
_FOREIGN_FUNCTION_WORDS = {
    "fr": """le la les un une des du de et est en au aux ce cet cette ces son sa ses leur leurs
        il ils elle elles nous vous on se lui eux été être avoir avait avaient ont sont était
        étaient sera seront fait comme mais ou où dont qui que quoi si aussi après avant selon
        entre sans sous depuis très tout tous toute toutes pour par sur dans avec pas ne plus
        moins déjà encore alors ainsi même autre autres cela ça ici lors dès vers chez contre
        plusieurs mon ma mes notre nos votre vos quand comment pourquoi peut doit non oui""",
    "de": """der die das den dem des ein eine einer eines einem einen und oder aber auch als am
        an auf aus bei bis da dass daß durch für gegen hat haben hatte hatten ist im mit nach
        nicht noch nur ob seit sich sie sind über um unter vom von vor war waren wird werden
        wurde wurden wie wir zu zum zur es er ihr ihre ihren ihrem ihrer ihres sein seine
        seiner seinem seinen kein keine mehr schon sagte laut sowie dieser diese dieses diesem
        diesen jetzt nun man wo wenn dann denn weil doch sehr hier dort bereits etwa dabei
        damit soll sollen kann können muss ins beim ab""",
    "es": """el la los las un una unos unas de del al en que con por para es son fue fueron ha
        han había se su sus lo le les como más pero sin sobre entre desde hasta tras según
        este esta estos estas ese esa eso ya muy también cuando donde porque no sí ni otro otra
        otros otras todo toda todos todas ante bajo hacia durante dijo está están ser""",
    "it": """il lo la gli le un una uno di del della dei degli delle dello al alla ai agli alle
        allo da dal dalla dai dagli dalle in con su sul sulla per tra fra ed che chi non sono
        era erano stato stata stati essere ha hanno aveva avevano si suo sua suoi sue loro
        anche come più ma se questo questa questi queste quello quella dopo prima secondo
        ancora già molto tutto tutti tutte nel nella nei negli nelle perché quando dove""",
    "pt": """os as um uma uns umas de do da dos das no na nos nas em ao aos às pelo pela pelos
        pelas por para com sem que se não são foi foram ser ter tem têm tinha há seu sua seus
        suas ele ela eles elas mais mas como também já muito entre sobre após até segundo
        quando onde porque este esta estes estas esse essa isso isto ou""",
    "tr": """ve bir bu da de ile için olarak gibi daha çok en ama ancak kadar sonra önce olan
        oldu olduğu olduğunu ise ki mi mı mu mü ya hem her şu ne diye değil var yok tarafından
        göre dedi ben sen biz siz onlar bunu bunun buna ayrıca yani bile ilk""",
    "ru": """на не что по из для как это от за его он она они мы вы то же так но да или бы был
        была были было быть уже при до после также только все всё их ее её со во об под над
        между чем этот эта эти этого этом том того который которая которые которых может
        более где когда если заявил сообщил""",
}
# How much of a text `stopwords_for` reads to tell its language: enough function words to
# count, at a bounded cost for the longest body.
LANGUAGE_SAMPLE_CHARS = 1000

# Body words the index reads of a stored story: the lead carries the event's names, and the
# postings of a million stories stay bounded. Evaluations cut their documents the same way.
LEXICAL_WORDS = 150

# Scripts written without spaces between words (Chinese, Japanese, Thai, Lao, Khmer, Myanmar)
# and Korean, whose words carry their particles ("서울에서", in Seoul): a run of them is one
# "word" to the regex, a whole clause, which no other report repeats. Such a run is read as
# its overlapping pairs of characters instead ("習近平" -> "習近", "近平"), as Lucene's CJK
# analyzer does: no dictionary, and two reports of one event share most of their pairs.
_UNSPACED = ("\u0e00-\u0eff\u1000-\u109f\u1100-\u11ff\u1780-\u17ff\u3005\u3040-\u30ff"
             "\u3130-\u318f\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
             "\uff66-\uff9f\U00020000-\U0002ffff")
_UNSPACED_START = re.compile(f"[{_UNSPACED}]")
# The vowel signs, viramas and other combining marks of the Indic scripts (Devanagari to
# Sinhala, U+0900-U+0DFF). They spell the word, unlike Hebrew points (`_FOLD`), but are no
# word character to the regex (`\w` is letters and digits): "नरेंद्र मोदी" was read "नर",
# each word cut at its first vowel sign and the rest dropped, and a Hindi, Bengali or Tamil
# report matched another on two-letter stubs. A word takes them after its letters.
_INDIC_MARKS = "".join(chr(c) for c in range(0x0900, 0x0E00)
                       if unicodedata.category(chr(c)) in ("Mn", "Mc"))
_INDIC_MARK = re.compile(f"[{_INDIC_MARKS}]")


def _word_regex(letters: str) -> re.Pattern[str]:
    return re.compile(rf"{letters}(?:'{letters})?|[0-9]+(?:[.,][0-9]+)*|[{_UNSPACED}]+")


_LETTER = rf"[^\W\d_{_UNSPACED}]"
_WORD = _word_regex(f"{_LETTER}+")
# Letters and the Indic marks that spell a word with them (`hyphen_joined`).
_LETTERS = re.compile(f"(?:{_LETTER}|[{_INDIC_MARKS}])+")
# Used only where a text has such marks (`tokenize`): trying for a mark after every word cost
# a fifth more time over English text.
_WORD_MARKED = _word_regex(f"{_LETTER}+(?:[{_INDIC_MARKS}]+{_LETTER}*)*")
# The apostrophe of a French elision ("l'Élysée", "d'Israël", "qu'il", "jusqu'à"): a single
# c, d, j, l, m, n, s or t, or a word ending in "qu", before it. Read as a space (`unelided`),
# so "l'élysée" and "élysée" are one term, and "l'Élysée" a name. The regex starts with the
# apostrophe, which it finds at C speed; "aujourd'hui" or "don't" keep theirs.
_ELISION = re.compile(r"['’](?:(?<=(?<![^\W\d_])[cdjlmnst]['’])|(?<=qu['’]))(?=[^\W\d_])")
# Marks that only some writers put on a word: Hebrew points, Arabic vowel signs and tatweel,
# Thai vowel and tone marks (two reports must not differ by them, and the regex takes a mark
# for the end of a word: "נְתַנְיָהוּ" was read "הו", Thai words fell apart at each vowel), the
# dot that lower-casing leaves on Turkish "İ" ("İstanbul" -> "i̇stanbul"), and the invisible
# soft hyphen, zero-width joiners and BOM, which split a word in two; the Unicode hyphens
# (U+2010, non-breaking U+2011) read as the keyboard's "-". Dotless "ı" reads "i":
# "IŞIK" lower-cases to "işik" but is written "ışık"; Greek accents go, as capitals drop them.
_FOLD = str.maketrans(
    {**{chr(c): None for lo, hi in (
        (0x0300, 0x036F), (0x0591, 0x05BD), (0x05BF, 0x05BF), (0x05C1, 0x05C2),
        (0x05C4, 0x05C5), (0x05C7, 0x05C7), (0x0610, 0x061A), (0x0640, 0x0640),
        (0x064B, 0x065F), (0x0670, 0x0670), (0x06D6, 0x06DC), (0x06DF, 0x06E4),
        (0x06E7, 0x06E8), (0x06EA, 0x06ED), (0x0E31, 0x0E31), (0x0E34, 0x0E3A),
        (0x0E47, 0x0E4E), (0x0EB1, 0x0EB1), (0x0EB4, 0x0EBC), (0x0EC8, 0x0ECD),
        (0x00AD, 0x00AD), (0x200C, 0x200D), (0x2060, 0x2060), (0xFEFF, 0xFEFF))
        for c in range(lo, hi + 1)},
     "ı": "i", "\u2010": "-", "\u2011": "-", "ά": "α", "έ": "ε", "ή": "η", "ί": "ι", "ό": "ο", "ύ": "υ", "ώ": "ω",
     "ΐ": "ι", "ΰ": "υ", "ϊ": "ι", "ϋ": "υ"})
_FOLDED = re.compile("[" + "".join(re.escape(chr(c)) for c in _FOLD) + "]")
# A name: a capitalised word ("Putin", "Betty Ford Center" word by word; sentence-initial
# filler like "The" is a stopword), or a number (2013, 7.1, 30-day), both found by one regex
# scan rather than a Python loop over every word (this runs once per indexed story). A word
# that begins with another letter than ASCII's is found too and kept when that letter is a
# capital (`key_terms`): with [A-Z] alone, "Émile", "Özil" and every Cyrillic or Greek name
# were no names, and reports of one event in those languages shared no evidence.
# Read `unelided`: after a French elision ("à l'Élysée", "d'Emmanuel Macron") the
# apostrophe hid the name.
# Written to open with one class of the characters a match can start with (a digit, a capital,
# any non-ASCII), the lookbehinds after it: the regex engine then skips to such a character
# at C speed instead of trying the lookbehind at every position (a third of the scan). The
# same matches as `(?<![\w'’])(?:[A-Z][\w'’.-]*|[^\W\d_\x00-\x7f][\w'’.-]*|[0-9][\w.,-]*)`.
_NAME_OR_NUMBER = re.compile(
    r"[0-9A-Z\x80-\U0010ffff](?<![\w'’].)(?:(?<=[0-9])[\w.,-]*|(?<=[^\W\d_])[\w'’.-]*)", re.S)
_NAME_PARTS = re.compile(r"[-.,’']")
# A capitalised word after a letter, digit, comma or semicolon and a space: not at a sentence
# start, so its capital says "name" ("said Gordon Brown", "in May"), where "However, ..." or
# "Among them ..." are capitalised by their place alone.
# Opening with a class as `_NAME_OR_NUMBER` does; the same matches as
# `(?<=[\w,;] )([A-Z][\w'’.-]*|[^\W\d_\x00-\x7f][\w'’.-]*)`.
_MID_SENTENCE_NAME = re.compile(r"[A-Z\x80-\U0010ffff](?<=[\w,;] [^\W\d_])[\w'’.-]*", re.S)

# Words every text capitalises wherever they stand, so the corpus cannot tell them from names by
# their capitals: weekdays and the months that are not also names or words ("May", "March",
# "June", "August" are). Reports of one week share them whatever their event.
CALENDAR_WORDS = frozenset(
    """monday tuesday wednesday thursday friday saturday sunday january february april july
    september october november december""".split()
)
# `common_word`: a word is a common one when the documents that use it other than capitalised
# mid-sentence are at least COMMON_WORD_RATIO times those that do, and at least
# COMMON_WORD_MIN_DOCS (fewer say nothing: a new name seen once at a sentence start stays a
# name). Chosen on the BBC corpus (see recommender/evaluate.py).
COMMON_WORD_RATIO = 4
COMMON_WORD_MIN_DOCS = 3


# Letters a Latin-script writer may type bare that no accent strips: "Lodz" for "Łódź",
# "Soren" for "Søren", "Dokovic" for "Đoković"; and Russian "ё", mostly written "е".
_BARE_LETTERS = str.maketrans({"ł": "l", "ø": "o", "đ": "d", "æ": "ae", "œ": "oe", "ё": "е"})
# Decomposed (NFD), a character of no Latin block (Latin to Extended-B, Extended Additional)
# but an accent (the combining marks), which `unaccented` leaves out. Regexes, at C speed,
# where a loop over the characters made a restored vocabulary's scan (`LexicalIndex.restore`:
# a million terms, a tenth not ASCII) 0.46 s where it is 0.27 s.
_NOT_LATIN = re.compile(r"[^\x00-\u024f\u0300-\u036f\u1e00-\u1eff]")
_ACCENT = re.compile(r"[\u0300-\u036f]+")


def unaccented(term: str) -> str:
    """A folded term of the Latin script without its accents ("élysée" -> "elysee", "nguyễn"
    -> "nguyen"), as readers type it; a term of another script as it is (but "ё" read "е"):
    the marks of Devanagari or Cyrillic "й" spell another word. For a search's spellings
    (`LexicalIndex.spellings`) only: the index keeps the accents, which tell words apart
    ("año", "ano")."""
    if term.isascii():
        return term
    bare = unicodedata.normalize("NFD", term.translate(_BARE_LETTERS))
    if _NOT_LATIN.search(bare):
        return term.translate(_BARE_LETTERS)
    return _ACCENT.sub("", bare)


# German spells an umlaut out, its vowel and "e", where the letter is missing (a keyboard
# without it, a URL, a wire copy): "Muenchen", "Duesseldorf", "Koeln". `unaccented` reads
# "münchen" as "munchen", so a search typed "Muenchen" found no story that wrote "München".
# ("ß" needs nothing: `fold` already reads it "ss".)
_UMLAUTS_SPELT_OUT = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue"})


def umlauts_spelt_out(term: str) -> str:
    """A folded term with its umlauts written as German writes them without the letter
    ("münchen" -> "muenchen"). For a search's spellings (`LexicalIndex.spellings`) only."""
    return term if term.isascii() else term.translate(_UMLAUTS_SPELT_OUT)


def plain_forms(term: str) -> tuple[str, ...]:
    """The forms under which spellings of a folded `term` are tied together (`unaccented`,
    `umlauts_spelt_out`), distinct, in that order: the index files its terms under them
    (`LexicalIndex.spellings`) and a search's reason names a word once under them."""
    return tuple(dict.fromkeys((unaccented(term), umlauts_spelt_out(term))))


def fold(text: str) -> str:
    """`text` as the index spells it: case-folded ("Straße" and "STRASSE" alike), one
    apostrophe, and without the marks and letters `_FOLD` reads alike."""
    text = text.casefold()
    if text.isascii():
        return text
    text = text.replace("’", "'")
    # Searched first (C speed): translate looks up every character, and most texts, English
    # with its curly quotes among them, have nothing to fold.
    return text.translate(_FOLD) if _FOLDED.search(text) else text


# Without the words English counts already (German "in", "was", Portuguese "do", "no").
FOREIGN_STOPWORDS = {lang: frozenset(fold(w) for w in words.split()) - STOPWORDS
                     for lang, words in _FOREIGN_FUNCTION_WORDS.items()}
_STOPWORDS_OF = {lang: STOPWORDS | words for lang, words in FOREIGN_STOPWORDS.items()}
_ANY_FOREIGN = frozenset().union(*FOREIGN_STOPWORDS.values())


def stopwords_for(text: str) -> frozenset[str]:
    """The stop words of `text`: English's (`STOPWORDS`), and those of the language of
    `FOREIGN_STOPWORDS` it is written in: the one of which its first words hold the most
    distinct function words, more than of English's and at least two (an English headline
    that names "LA" or "Des Moines" is no French). Words split at spaces and set operations,
    at C speed: this runs for every indexed story (the word regex took 40% of a tokenize),
    and function words seldom carry punctuation.

    The words are looked up in the few sets, never made a set of their own (hashing each new
    word into one cost as much as the rest), and the foreign function words among them found
    in one lookup, each language's then counted among those few: an English story, nearly
    every one, has fewer than two. 37 -> 14 ms per 1,000 BBC stories (2-core EPYC)."""
    lang = _foreign_language(_sample_words(text))
    return _STOPWORDS_OF[lang] if lang else STOPWORDS


def _sample_words(text: str) -> list[str]:
    return fold(text[:LANGUAGE_SAMPLE_CHARS]).split()


def _foreign_language(words: list[str]) -> str:
    """The `FOREIGN_STOPWORDS` language of which `words` hold the most distinct function
    words, more than of English's and at least two; "" for none (`stopwords_for`). Pure."""
    foreign = _ANY_FOREIGN.intersection(words)
    if len(foreign) < 2:
        return ""
    english = len(STOPWORDS.intersection(words))
    hits, lang = max((len(foreign & stop), lang) for lang, stop in FOREIGN_STOPWORDS.items())
    return lang if hits >= 2 and hits > english else ""


def language_of(text: str) -> str:
    """The language `text` is written in, as `stopwords_for` tells it: a `FOREIGN_STOPWORDS`
    key, "en" when its first words hold at least two English function words and no other
    language wins, else "" (unknown: a headline of names alone, "BBC News app", or a German
    teaser of nouns, "KI statt Mitarbeiter + Intel-Prognose", which `stopwords_for` reads
    with English's words as any text it cannot place). Only a caller that asks whether two
    texts differ in language needs "unknown" apart from English; indexing does not."""
    words = _sample_words(text)
    if lang := _foreign_language(words):
        return lang
    return "en" if len(STOPWORDS.intersection(words)) >= 2 else ""


def _unsuffixed(word: str) -> str:
    """`word` (folded) without an ending after an apostrophe (`APOSTROPHE_ENDINGS`)."""
    head, _, tail = word.partition("'")
    return head if tail in APOSTROPHE_ENDINGS else word


def _negation(word: str) -> bool:
    """An English negation ("isn't", "don't", folded): a function word whatever its case. Split
    at its apostrophe it left "isn" or "don", which two title-case headlines then shared as a
    name ("similar topic: Isn")."""
    head, _, tail = word.partition("'")
    return tail == "t" and head.endswith("n")


def unelided(text: str) -> str:
    """`text` with each French elision's apostrophe read as a space (`_ELISION`)."""
    if "'" in text or "’" in text:
        return _ELISION.sub(" ", text)
    return text


def unspaced(token: str) -> bool:
    """Whether a token is a pair of characters of a script written without spaces."""
    return _UNSPACED_START.match(token) is not None


def hyphen_joined(text: str) -> list[str]:
    """The hyphenated words of a folded `text` with their hyphens left out, in order:
    "e-mail" -> "email", "state-of-the-art" -> "stateoftheart" (pure). Writers differ on the
    hyphen: BBC writes "e-mail" 159 times and "email" 16, and the word regex reads
    "e-mail" as "e" (no term: one letter) and "mail", so "email" found 3 of the hundred
    stories about e-mail. `tokenize` reads a hyphenated word as its parts, as ever (what it
    shares with the words written apart: "al Qaeda", "vice president"), and joined.

    Found from the hyphens (`str.split`, then a look at the letters either side of each),
    not by a regex over the whole text: the word regex reading hyphenated words whole, and a
    pass over every token to find them, made the BBC leads' tokenize 7-10% slower."""
    found: list[str] = []
    joined = ""
    for left, right in pairwise(text.split("-")):
        head = _LETTERS.match(right)
        # No letter after the hyphen ("covid-19", "pre- and", " - "), or letters that go on
        # in digits ("non-g7": "nong" was a term of "non-g20" too).
        if head is None or right[head.end():head.end() + 1].isdecimal():
            if joined:
                found.append(joined)
                joined = ""
            continue
        if not joined:
            # The letters that end `left`, read backwards (a word is shorter than 64).
            tail = _LETTERS.match(left[:-65:-1])
            if tail is None or left[-tail.end() - 1:-tail.end()].isdecimal():  # "x1a-b"
                continue
            joined = tail.group()[::-1]
        joined += head.group()
        if head.end() < len(right):  # the word ends in this piece, else goes on after it
            found.append(joined)
            joined = ""
    if joined:
        found.append(joined)
    return found


def tokenize(text: str, stopwords: frozenset[str] | None = None) -> list[str]:
    """Folded word tokens (`fold`) without stopwords (`stopwords_for` the text, unless given)
    or possessive endings; a hyphenated word is read as its parts and, after the words,
    joined (`hyphen_joined`: "e-mail" is "mail" and "email"); a run of a script written without spaces is read as its pairs of
    characters (`_UNSPACED`)."""
    # findall and comprehensions: this runs over every indexed story's text. (A lookahead in
    # the regex instead of the possessive pass was 15% faster but split "a's'b" differently.)
    text = unelided(fold(text))
    words = _WORD_MARKED if not text.isascii() and _INDIC_MARK.search(text) else _WORD
    stop = stopwords_for(text) if stopwords is None else stopwords
    # One comprehension: each word unsuffixed and kept or dropped in a single pass.
    tokens = [t for w in words.findall(text)
              if len(t := _unsuffixed(w) if "'" in w else w) > 1 and t not in stop]
    if "-" in text:
        tokens.extend(j for j in hyphen_joined(text) if j not in stop)
    if text.isascii() or not _UNSPACED_START.search(text):
        return tokens
    return [pair for t in tokens for pair in (
        [t[i:i + 2] for i in range(len(t) - 1)] if _UNSPACED_START.match(t) else [t])]


def lead_words(text: str, words: int = LEXICAL_WORDS) -> str:
    """The first `words` words of a body: what the index reads of a stored story."""
    return first_words(text, words)


def key_terms(title: str, text: str, max_terms: int = 40,
              stopwords: frozenset[str] | None = None) -> tuple[str, ...]:
    """Names and numbers that identify an event, lower-cased, in order of first appearance.

    Multiword names yield each of their words ("vladimir", "putin"), so "Putin" in one report
    matches "Vladimir Putin" in another. Sentence-initial capitals count only when the word is
    not a stopword (`stopwords_for` the story, unless given); rare-word weighting (idf)
    downstream damps the rest of that noise.
    """
    if stopwords is None:
        stopwords = stopwords_for(f"{title}\n{text[:LANGUAGE_SAMPLE_CHARS]}")
    return _terms(chain(_NAME_OR_NUMBER.findall(unelided(title)),
                        _NAME_OR_NUMBER.findall(unelided(text))), max_terms, stopwords)


def capitals_name(stopwords: frozenset[str]) -> bool:
    """Whether a capital mid-sentence says "name" in a story of these stop words
    (`stopwords_for`): not in German, which capitalises every noun. Counted as names, the
    nouns of German stories ("Krieg", "Test", "Euro", "Außenminister") were names to
    `common_word`, and two reports sharing them read "same event: Pakistan, Außenminister,
    Krieg" (tagesschau, heise feeds)."""
    german = _STOPWORDS_OF["de"]
    # Identity first (`stopwords_for` hands out that very set: no comparison per story); an
    # equal set built elsewhere is German too (sets of other sizes compare at once).
    return stopwords is not german and stopwords != german


def proper_terms(text: str, stopwords: frozenset[str] | None = None) -> frozenset[str]:
    """The key terms of `text` that it capitalises mid-sentence at least once (`key_terms`'s
    form of them); none for a German story (`capitals_name`), whose words then count as
    written otherwise: a word the corpus writes only in German stories is a name while it
    is rare, fewer than `COMMON_WORD_MIN_DOCS` documents (`common_word`). A title is no
    evidence: headlines may capitalise every word."""
    if stopwords is None:
        stopwords = stopwords_for(text)
    if not capitals_name(stopwords):
        return frozenset()
    return frozenset(_terms(_MID_SENTENCE_NAME.findall(unelided(text)), sys.maxsize, stopwords))


def _terms(words: Iterable[str], max_terms: int, stopwords: frozenset[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    forms = _NAME_FORMS
    for word in words:
        form = forms.get(word)
        if form is None:
            if len(forms) >= _NAME_FORMS_MAX:
                forms.clear()
            form = forms[word] = _name_form(word)
        lower, parts = form
        if len(lower) < 2 or lower in stopwords:
            continue
        if parts is None:  # most names: nothing to split
            seen.setdefault(lower, None)
        else:
            for part in parts:
                if part not in stopwords:
                    seen.setdefault(part, None)
        if len(seen) >= max_terms:
            return tuple(seen)
    return tuple(seen)


# The form of each word `_terms` was handed (`_name_form`), kept: names repeat from story to
# story and between a story's names and its mid-sentence ones, and folding each word anew was
# most of `_terms` (half the lexical cost of indexing a story). Cleared when full, so bounded.
_NAME_FORMS: dict[str, tuple[str, tuple[str, ...] | None]] = {}
_NAME_FORMS_MAX = 200_000


def _name_form(word: str) -> tuple[str, tuple[str, ...] | None]:
    """(the word folded as a name, its parts of 2+ characters when it splits, else None); ""
    for a word that is no name. What `_terms` makes of a word before the stop words."""
    if not word[0].isascii() and not word[0].isupper():
        return "", None  # a lower-case word of another alphabet
    # folded as `tokenize` folds: a name is also a term of the index
    lower = fold(word.rstrip(".-'’"))
    if "'" in lower:
        if _negation(lower):
            return "", None  # "Isn't" opening a title-case headline is no name
        lower = _unsuffixed(lower)
    if lower.isalpha():  # the split is the costly part
        return lower, None
    return lower, tuple(part for part in _NAME_PARTS.split(lower) if len(part) >= 2)


def common_word(docs: int, proper_docs: int) -> bool:
    """Whether a word is a common one rather than a name, from how many documents use it
    (`docs`, any case) and how many of them capitalise it mid-sentence (`proper_docs`): the
    corpus writes "among", "however" or "top" in lower case and capitalises them only to start
    a sentence, while "Brown", "Bush" or "May" (a month) keep their capital wherever they stand."""
    other = docs - proper_docs
    return other >= COMMON_WORD_MIN_DOCS and other >= COMMON_WORD_RATIO * proper_docs


# Sublinear tf of a count c: 1 + TF_SLOPE * log(c). Plain sublinear tf (slope 1) let a
# document that repeats the topic's words (the earthquake, the patch, the coach) outscore one
# that shares more of the event's distinct words; a flatter slope rewards breadth. ECB+ over
# slopes 1 / 0.5 / 0.25 / 0.1 / 0 (binary): first40 0.950 / 0.953 / 0.953 / 0.954 / 0.955, full
# text 0.972 / 0.973 / 0.976 / 0.975 / 0.974, hard@5 full 0.032 -> 0.028 at 0.25; BBC sections
# share a little (0.937 / 0.914 -> 0.935 / 0.912 at 0.25, 0.929 at 0): repeated words do say
# what a story is about. Notes in recommender/evaluate.py.
TF_SLOPE = 0.25
# Looked up rather than recomputed per posting. Counts are stored as uint16 (a term counted
# more often than that in 150 words does not exist).
_MAX_COUNT = np.iinfo(np.uint16).max
_TF = np.concatenate(
    [[0.0], 1.0 + TF_SLOPE * np.log(np.arange(1, _MAX_COUNT + 1, dtype=np.float64))])
_TF32 = _TF.astype(np.float32)  # the precision postings were always scored at
_BATCH_POSTINGS = 4_000_000


def _chunks(items: Iterable, size: int) -> Iterable[list]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


class LexicalIndex:
    """Incremental TF-IDF cosine index over title + text, held in numpy arrays.

    Postings live in a CSR layout (per term: int32 document slots, uint16 counts; 6 bytes a
    posting) built in bulk, plus a small per-term tail for documents added since the last
    merge; the tail is merged in when it reaches a few percent of the base. Names (key terms)
    are term ids in one int32 buffer. No per-document Python objects: ~1M documents fit in a
    few hundred MiB where dicts per document took ~10 KiB each.

    `title_weight` counts title words that many times (titles are dense with the topic).
    `max_query_terms` keeps only the query's heaviest terms, which bounds query time at 100k
    documents to a few ms without changing the top results (the light terms add little).

    Large corpora only (`stop_min_docs` documents or more; every evaluation corpus is far
    smaller, so the measured quality is untouched): a term in more than `stop_share` of the
    documents becomes a corpus stop word (sklearn's max_df): no postings kept, left out of
    document and query vectors alike. And a query walks at most `walk_budget` postings,
    heaviest (rarest) terms first, so its cost stays bounded as the corpus grows; a skipped
    light term only lowers every score a little (60k: what it costs and saves is measured in
    recommender/evaluate.py's notes).
    """

    def __init__(self, title_weight: int = 2, max_query_terms: int = 128, *,
                 stop_share: float = 0.05, stop_min_docs: int = 100_000,
                 walk_budget: int = 60_000):
        self.title_weight = title_weight
        self.max_query_terms = max_query_terms
        self.stop_share = stop_share
        self.stop_min_docs = stop_min_docs
        self.walk_budget = walk_budget
        self._vocab: dict[str, int] = {}
        self._terms: list[str] = []  # term id -> term
        self._df = np.zeros(0, dtype=np.int32)
        # per term: live documents that capitalise it mid-sentence (`proper_terms`)
        self._proper_df = np.zeros(0, dtype=np.int32)
        self._stop = np.zeros(0, dtype=bool)
        # base postings, CSR over term ids [0, len(indptr) - 1)
        self._indptr = np.zeros(1, dtype=np.int64)
        self._pdocs = np.zeros(0, dtype=np.int32)
        self._pcounts = np.zeros(0, dtype=np.uint16)
        # tail postings: term id -> [slots], [counts]
        self._tail: dict[int, tuple[list[int], list[int]]] = {}
        self._tail_n = 0
        # per slot
        self._doc_id = np.zeros(0, dtype=np.int64)
        self._alive = np.zeros(0, dtype=bool)
        self._key_start = np.zeros(0, dtype=np.int64)
        self._key_len = np.zeros(0, dtype=np.uint8)
        self._slots = 0
        self._keys = np.zeros(0, dtype=np.int32)
        self._key_proper = np.zeros(0, dtype=bool)  # beside `_keys`: capitalised mid-sentence
        self._keys_n = 0
        # Names of stories being added, not yet in `_keys` (`_write_new_keys`).
        self._new_keys, self._new_proper = array("i"), array("b")
        self._slot = IdMap()
        self._norms = np.zeros(0, dtype=np.float32)
        self._norms_at_n = -1  # corpus size when norms were computed
        self._dead = 0
        self._pending_removed: list[int] = []  # base slots whose df is not yet taken back
        self._idf: IdfTable | None = None  # idf by term since the last change
        # `unaccented` term -> the index's accented spellings of it (`_spelt`), kept as terms
        # join: left to the first search, the scan of a restored vocabulary (0.46 s at a
        # million terms, a tenth not ASCII) stalled the API's event loop; `restore` runs on
        # a worker thread at start.
        self._accented: dict[str, list[str]] = {}

    # -- bookkeeping -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, doc_id: int) -> bool:
        return self._slot.get(int(doc_id)) is not None

    def _counts(self, title: str, text: str,
                stopwords: frozenset[str] | None = None) -> Counter[str]:
        if stopwords is None:
            stopwords = stopwords_for(f"{title}\n{text[:LANGUAGE_SAMPLE_CHARS]}")
        counts = Counter(tokenize(text, stopwords))
        for token in tokenize(title, stopwords):
            counts[token] += self.title_weight
        return counts

    def _weights(self, title: str, text: str) -> dict[str, float]:
        # Sublinear tf: the tenth mention of "Putin" says little more than the third. The
        # query's terms are weighed from the postings' own table.
        return {t: float(_TF[min(c, _MAX_COUNT)]) for t, c in self._counts(title, text).items()}

    def _tids(self, terms: Iterable[str]) -> list[int]:
        """Term ids of distinct terms, new ones added: one dict lookup per known term (nearly
        all of a story's), and `_tid` only for the new ones."""
        terms = list(terms)
        get = self._vocab.get
        ids = [get(t, -1) for t in terms]
        if -1 in ids:
            ids = [i if i >= 0 else self._tid(t) for i, t in zip(ids, terms, strict=True)]
        return ids

    def _tid(self, term: str) -> int:
        tid = self._vocab.get(term)
        if tid is None:
            tid = self._vocab[sys.intern(term)] = len(self._terms)
            self._terms.append(term)
            if not term.isascii():
                self._spelt(term)
            if tid >= len(self._df):
                size = max(2 * len(self._df), 1024)
                self._df = _grown(self._df, size)
                self._proper_df = _grown(self._proper_df, size)
                self._stop = _grown(self._stop, size)
        return tid

    def key_terms_of(self, doc_id: int) -> tuple[str, ...]:
        """The names and numbers of an indexed document (empty for unknown ids)."""
        slot = self._slot.get(int(doc_id))
        if slot is None:
            return ()
        start = int(self._key_start[slot])
        terms = self._terms
        # tolist(): indexing a list with Python ints, not numpy scalars (a block asks ~100 times).
        return tuple([terms[t] for t in self._keys[start:start + int(self._key_len[slot])].tolist()])

    def spellings(self, term: str) -> list[str]:
        """The terms of live documents that read as `term` once accents go (`unaccented`) or
        umlauts are spelt out (`umlauts_spelt_out`), `term` among them if it is one: "elysee"
        is "élysée" where the stories write it so, and "élysée" is "elysee" where they write
        it bare (English sites often do); "muenchen" is "münchen", and "münchen" "muenchen". Kept
        apart by the index, a search typed one way missed every story written the other."""
        plain = plain_forms(term)
        self._settle_removals()
        df, vocab, accented = self._df, self._vocab, self._accented
        return [t for t in dict.fromkeys([term, *plain, *(a for f in plain for a in accented.get(f, ()))])
                if (tid := vocab.get(t)) is not None and df[tid] > 0]

    def _spelt(self, term: str) -> None:
        """`term`, new to the index, among the spellings of its unaccented form and of its
        form with the umlauts spelt out ("münchen": "munchen", "muenchen")."""
        for plain in plain_forms(term):
            if plain != term:
                self._accented.setdefault(plain, []).append(term)

    def _spell_all(self) -> None:
        """`_accented` anew, from the whole vocabulary (a restore, or terms dropped)."""
        self._accented = {}
        for term in self._terms:
            if not term.isascii():
                self._spelt(term)

    def common_word(self, term: str) -> bool:
        """Whether this corpus writes `term` (a key term) as a common word rather than a name
        (`common_word` above): "among" or "however", capitalised only to start a sentence.
        A term the corpus has not seen is a name; a number ("2004", "800m") is no word."""
        tid = self._vocab.get(term)
        if tid is None or not term[:1].isalpha():
            return False
        self._settle_removals()
        return common_word(int(self._df[tid]), int(self._proper_df[tid]))

    def corpus_stop_word(self, term: str) -> bool:
        """Whether `term` is a corpus stop word (in more than `stop_share` of a large corpus):
        no postings kept, so no search by it finds a document."""
        tid = self._vocab.get(term)
        return tid is not None and bool(self._stop[tid])

    def idf(self, term: str) -> float:
        """Smoothed inverse document frequency (>= 1 for every term, also unseen ones)."""
        return self.idf_table()[term]

    def idf_table(self) -> IdfTable:
        """`idf` as a dict that answers every term, each computed once until the index next
        changes (then a new table starts). A related block weighs ~1,400 names of real news:
        a dict lookup each, where a call through the index cost ~1.5 us (~2 ms a block)."""
        if self._idf is None:
            self._idf = IdfTable(self._compute_idf)
        return self._idf

    def _compute_idf(self, term: str) -> float:
        n = len(self._slot)
        tid = self._vocab.get(term)
        self._settle_removals()
        df = int(self._df[tid]) if tid is not None else 0
        return math.log((1.0 + n) / (1.0 + df)) + 1.0

    def _idf_array(self) -> np.ndarray:
        n = len(self._slot)
        df = self._df[: len(self._terms)].astype(np.float64)
        return np.log((1.0 + n) / (1.0 + df)) + 1.0

    def unit_vector(self, title: str, text: str, *, query: bool = False) -> dict[str, float]:
        """The text as the unit tf-idf vector `search` scores with: the dot product of a query's
        vector and a document's is the cosine `search` gives that document (without the walk
        budget, which only lowers scores). As a query (`query=True`), only its
        `max_query_terms` heaviest terms the corpus knows, as `search` walks; the norm counts
        every term but corpus stop words, as `search`'s does. For checking one new document
        against a cached block's query (recommender/reach.py) without running the search."""
        vocab, df, stop = self._vocab, self._df, self._stop
        n = len(self._slot)
        weighted: dict[str, float] = {}
        sq = 0.0
        for term, w in self._weights(title, text).items():
            tid = vocab.get(term)
            d = int(df[tid]) if tid is not None else 0
            if d and stop[tid]:
                continue
            wi = w * (math.log((1.0 + n) / (1.0 + d)) + 1.0)
            sq += wi * wi
            if d or not query:
                weighted[term] = wi
        if not sq:
            return {}
        if query:
            weighted = dict(sorted(weighted.items(), key=lambda tw: -tw[1])[: self.max_query_terms])
        norm = math.sqrt(sq)
        return {t: w / norm for t, w in weighted.items()}

    def add(self, doc_id: int, title: str, text: str) -> None:
        """Index a document; re-adding an id replaces its previous text."""
        self.add_many([(doc_id, title, text)])

    def add_many(self, docs: Iterable[tuple[int, str, str]]) -> None:
        """Index many documents; large batches go straight into the base postings.

        Documents already indexed are replaced. Their removal may compact the index, which
        renumbers slots: so removals come before any slot of their chunk is taken, and the
        postings gathered so far go in first. Removing one mid-batch (as before) left the
        gathered postings on old slot numbers: after a restart that replayed the change log
        over restored stories, every related block of a running API failed (IndexError)."""
        terms, slots, counts = array("q"), array("i"), array("H")
        for chunk in _chunks(docs, 4096):
            latest = {int(d[0]): d for d in chunk}  # one id twice in a chunk: its last copy
            known = [doc_id for doc_id in latest if doc_id in self]
            if known:
                self._ingest(terms, slots, counts)
                terms, slots, counts = array("q"), array("i"), array("H")
                for doc_id in known:
                    self.remove(doc_id)
            for doc_id, (_, title, text) in latest.items():
                terms, slots, counts = self._gather(doc_id, title, text, terms, slots, counts)
        self._ingest(terms, slots, counts)

    def _gather(self, doc_id: int, title: str, text: str, terms: array, slots: array,
                counts: array) -> tuple[array, array, array]:
        """A new slot for the document and its postings appended to the pending arrays
        (handed to `_ingest` and renewed when they grow large)."""
        # One language for the story's terms and names (its title alone may not tell).
        stopwords = stopwords_for(f"{title}\n{text[:LANGUAGE_SAMPLE_CHARS]}")
        slot = self._new_slot(doc_id, title, text, stopwords)
        c = self._counts(title, text, stopwords)
        terms.extend(self._tids(c))
        slots.extend([slot] * len(c))
        values = list(c.values())
        if values and max(values) > _MAX_COUNT:
            values = [min(v, _MAX_COUNT) for v in values]
        counts.extend(values)
        if len(terms) >= _BATCH_POSTINGS:  # bounded scratch memory in a bulk load
            self._ingest(terms, slots, counts)
            return array("q"), array("i"), array("H")
        return terms, slots, counts

    def _ingest(self, terms: array, slots: array, counts: array) -> None:
        self._write_new_keys()
        if not len(terms):
            return
        self._idf = None  # n and document frequencies change
        t = np.frombuffer(terms, dtype=np.int64)
        s = np.frombuffer(slots, dtype=np.int32)
        c = np.frombuffer(counts, dtype=np.uint16)
        self._df += np.bincount(t, minlength=len(self._df)).astype(np.int32)
        self._norm_new_slots(t, s, c)
        if len(t) > 20_000:
            # A bulk load (start-up): straight into the base, with whatever the tail held.
            self._update_stop_words()
            tail_t, tail_s, tail_c = self._tail_arrays()
            self._tail, self._tail_n = {}, 0
            self._merge(np.concatenate([tail_t, t]), np.concatenate([tail_s, s]),
                        np.concatenate([tail_c, c]))
            return
        # Grouped by term first (a stable sort keeps each term's slots ascending), so the
        # Python loop runs once per distinct term rather than once per posting.
        order = np.argsort(t, kind="stable")
        ts = t[order]
        starts = np.flatnonzero(np.diff(ts, prepend=-1)).tolist()
        bounds = starts[1:] + [len(ts)]
        sl, cl, tl = s[order].tolist(), c[order].tolist(), ts[starts].tolist()
        tail = self._tail
        for tid, a, b in zip(tl, starts, bounds, strict=True):
            entry = tail.get(tid)
            if entry is None:
                tail[tid] = (sl[a:b], cl[a:b])
            else:
                entry[0].extend(sl[a:b])
                entry[1].extend(cl[a:b])
        self._tail_n += len(t)
        if self._tail_n > max(50_000, len(self._pdocs) // 50):
            self._merge_tail()

    def _write_new_keys(self) -> None:
        """The names `_new_slot` gathered since the last call, into `_keys`, `_key_proper` and
        `_proper_df` (they end at `_keys_n`). Every `add_many` ends here, and takes it before
        a removal: nothing reads the names in between."""
        if not self._new_keys:
            return
        keys = np.frombuffer(self._new_keys, dtype=np.int32)
        proper = np.frombuffer(self._new_proper, dtype=np.int8).astype(bool)
        self._new_keys, self._new_proper = array("i"), array("b")
        end = self._keys_n
        start = end - len(keys)
        if end > len(self._keys):
            size = max(2 * len(self._keys), end, 4096)
            self._keys = _grown(self._keys, size)
            self._key_proper = _grown(self._key_proper, size)
        self._keys[start:end] = keys
        self._key_proper[start:end] = proper
        # A story's names are distinct: each counts one document.
        self._proper_df += np.bincount(keys[proper], minlength=len(self._proper_df)).astype(np.int32)

    def _norm_new_slots(self, terms: np.ndarray, slots: np.ndarray, counts: np.ndarray) -> None:
        """Norms of documents just added, under today's idf, from their own terms: finding
        them in the postings later would scan every posting on the next query."""
        if self._norms_at_n < 0:
            return  # no norms yet: the first query computes them all
        first = len(self._norms)
        if first >= self._slots:
            return
        if len(slots) and int(slots.min()) < first:
            return  # not one fresh run of slots: leave it to the query-time refresh
        idf = self._idf_array()
        idf[self._stop[: len(idf)]] = 0.0
        w = _TF[counts] * idf[terms]
        sq = np.bincount(slots.astype(np.int64) - first, weights=w * w,
                         minlength=self._slots - first)
        grown = np.zeros(self._slots, dtype=np.float32)
        grown[:first] = self._norms
        grown[first:] = np.sqrt(sq)
        self._norms = grown

    def _new_slot(self, doc_id: int, title: str, text: str, stopwords: frozenset[str]) -> int:
        slot = self._slots
        if slot >= len(self._doc_id):
            size = max(2 * len(self._doc_id), 1024)
            self._doc_id = _grown(self._doc_id, size)
            self._alive = _grown(self._alive, size)
            self._key_start = _grown(self._key_start, size)
            self._key_len = _grown(self._key_len, size)
        names = key_terms(title, text, stopwords=stopwords)
        keys = self._tids(names)
        proper = proper_terms(text, stopwords)
        # Written to `_keys` by `_write_new_keys`, a batch at once (`_ingest`): three numpy
        # writes per story, each converting a short list, were a sixth of indexing it.
        self._new_keys.extend(keys)
        self._new_proper.extend([t in proper for t in names])
        self._key_start[slot] = self._keys_n
        self._key_len[slot] = len(keys)
        self._keys_n += len(keys)
        self._doc_id[slot] = doc_id
        self._alive[slot] = True
        self._slot.set(doc_id, slot)
        self._slots += 1
        return slot

    def _tail_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # Three flat reads over the whole tail, not three small arrays per term (a tail
        # holds tens of thousands of terms).
        tail = self._tail
        lengths = [len(slots) for slots, _ in tail.values()]
        n = sum(lengths)
        t = np.repeat(np.fromiter(tail, dtype=np.int64, count=len(tail)), lengths)
        s = np.fromiter(chain.from_iterable(v[0] for v in tail.values()), dtype=np.int32, count=n)
        c = np.fromiter(chain.from_iterable(v[1] for v in tail.values()), dtype=np.uint16, count=n)
        return t, s, c

    def _merge_tail(self) -> None:
        t, s, c = self._tail_arrays()
        self._tail = {}
        self._tail_n = 0
        self._merge(t, s, c)

    def _merge(self, terms: np.ndarray, slots: np.ndarray, counts: np.ndarray) -> None:
        """Fold (term, slot, count) triples into the CSR base; slots stay ascending per term
        as long as they arrive in slot order, which appends guarantee."""
        n_terms = len(self._terms)
        keep = ~self._stop[terms]
        terms, slots, counts = terms[keep], slots[keep], counts[keep]
        order = np.argsort(terms, kind="stable")
        terms, slots, counts = terms[order], slots[order], counts[order]
        old_counts = np.diff(self._indptr)
        per_term = np.zeros(n_terms, dtype=np.int64)
        per_term[: len(old_counts)] = old_counts
        # Each new posting goes after its term's existing run in the old arrays.
        old_end = np.zeros(n_terms, dtype=np.int64)
        old_end[: len(old_counts)] = self._indptr[1:]
        old_end[len(old_counts):] = self._indptr[-1]
        at = old_end[terms]
        self._pdocs = np.insert(self._pdocs, at, slots.astype(np.int32))
        self._pcounts = np.insert(self._pcounts, at, counts)
        per_term += np.bincount(terms, minlength=n_terms)
        self._indptr = np.concatenate([[0], np.cumsum(per_term)]).astype(np.int64)

    def remove(self, doc_id: int) -> None:
        """Forget a document; unknown ids are ignored. Postings are compacted lazily."""
        slot = self._slot.pop(int(doc_id))
        if slot is None:
            return
        self._idf = None
        self._alive[slot] = False
        start = int(self._key_start[slot])
        end = start + int(self._key_len[slot])
        self._proper_df[self._keys[start:end][self._key_proper[start:end]]] -= 1
        self._key_len[slot] = 0
        self._pending_removed.append(slot)
        if slot < len(self._norms):
            self._norms[slot] = 0.0  # a zero norm scores 0: removed docs never come back
        self._dead += 1
        if self._dead > max(1000, len(self._slot) // 4):
            self._compact()

    def _settle_removals(self) -> None:
        """Take removed documents back out of the document frequencies, in one pass.

        Removals only mark a slot; finding its terms means scanning the postings, so it is
        done once per batch of removals, before the next idf is read.
        """
        if not self._pending_removed:
            return
        gone = np.zeros(self._slots, dtype=bool)
        gone[np.asarray(self._pending_removed, dtype=np.int64)] = True
        self._pending_removed = []
        hit = np.flatnonzero(gone[self._pdocs])
        if len(hit):
            tids = np.searchsorted(self._indptr, hit, side="right") - 1
            self._df[: len(self._terms)] -= np.bincount(
                tids, minlength=len(self._terms)).astype(np.int32)
        for tid, (slots, _) in self._tail.items():
            self._df[tid] -= int(np.count_nonzero(gone[np.asarray(slots, dtype=np.int64)]))
        # Stop terms keep no postings: their df cannot be told back exactly; it drifts high by
        # the removed share, which only keeps them stop words.

    def _compact(self) -> None:
        """Drop dead slots: renumber live ones and rewrite postings and names without them."""
        self._settle_removals()
        self._merge_tail()
        live = np.flatnonzero(self._alive[: self._slots])
        new_slot = np.full(self._slots, -1, dtype=np.int64)
        new_slot[live] = np.arange(len(live))
        keep = new_slot[self._pdocs] >= 0
        tids = np.repeat(np.arange(len(self._indptr) - 1), np.diff(self._indptr))[keep]
        self._pdocs = new_slot[self._pdocs[keep]].astype(np.int32)
        self._pcounts = self._pcounts[keep]
        per_term = np.bincount(tids, minlength=len(self._indptr) - 1)
        self._indptr = np.concatenate([[0], np.cumsum(per_term)]).astype(np.int64)
        key_idx = self._key_positions(live)
        lens = self._key_len[live].astype(np.int64)
        self._keys = self._keys[key_idx].copy()
        self._key_proper = self._key_proper[key_idx].copy()
        self._keys_n = len(self._keys)
        self._key_start = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
        self._key_len = self._key_len[live].copy()
        self._doc_id = self._doc_id[live].copy()
        self._alive = np.ones(len(live), dtype=bool)
        self._slots = len(live)
        self._slot = IdMap()
        self._slot.set_many(self._doc_id, np.arange(len(live)))
        self._dead = 0
        self._norms = np.zeros(0, dtype=np.float32)
        self._norms_at_n = -1
        self._drop_dead_terms(per_term)

    def _drop_dead_terms(self, per_term: np.ndarray) -> None:
        """Forget the terms no live document holds, once they are a quarter of the vocabulary.

        News brings new names and numbers every day while retention deletes old stories: the
        terms of deleted stories stayed in the vocabulary (and every snapshot) for good, so a
        months-long `tidings run` grew by them without bound. Called by `_compact`, tail merged,
        with the live postings of each term; term ids are renumbered, keeping their order."""
        n_terms = len(self._terms)
        used = np.zeros(n_terms, dtype=bool)
        used[: len(per_term)] = per_term > 0
        used[self._keys[: self._keys_n]] = True  # names of live documents
        used |= self._df[:n_terms] > 0  # corpus stop words keep no postings but their count
        if n_terms - int(used.sum()) <= max(1000, n_terms // 4):
            return
        kept = np.flatnonzero(used)
        new_tid = np.cumsum(used) - 1
        self._terms = [self._terms[t] for t in kept.tolist()]
        self._vocab = {t: i for i, t in enumerate(self._terms)}  # already interned
        self._spell_all()
        self._df, self._proper_df, self._stop = self._df[kept], self._proper_df[kept], self._stop[kept]
        self._indptr = np.concatenate([[0], np.cumsum(per_term[kept[kept < len(per_term)]])]).astype(np.int64)
        self._keys = new_tid[self._keys[: self._keys_n]].astype(np.int32)
        self._idf = None

    def _update_stop_words(self) -> None:
        """Corpus stop words once the corpus is large; their postings are dropped."""
        n = len(self._slot)
        if n < self.stop_min_docs:
            return
        self._settle_removals()
        stop = self._df[: len(self._terms)] > self.stop_share * n
        new = stop & ~self._stop[: len(self._terms)]
        if not new.any():
            return
        self._stop[: len(self._terms)] |= stop
        self._merge_tail()
        counts = np.diff(self._indptr)
        keep = np.repeat(~self._stop[: len(counts)], counts)
        self._pdocs = self._pdocs[keep]
        self._pcounts = self._pcounts[keep]
        counts[self._stop[: len(counts)]] = 0
        self._indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._norms_at_n = -1  # the vector space changed: every norm is recomputed

    def _refresh_norms(self) -> None:
        """Document norms under the current idf; recomputed once the corpus moved by >5 %."""
        self._settle_removals()
        n = len(self._slot)
        if self._norms_at_n < 0 or abs(n - self._norms_at_n) > 0.05 * max(self._norms_at_n, 1):
            self._update_stop_words()
            self._norms = self._bulk_norms(0)
            self._norms_at_n = n
        elif len(self._norms) < self._slots:
            # New documents since the last refresh: give them norms under today's idf.
            grown = np.zeros(self._slots, dtype=np.float32)
            grown[: len(self._norms)] = self._norms
            grown[len(self._norms):] = self._bulk_norms(len(self._norms))[len(self._norms):]
            self._norms = grown

    def _bulk_norms(self, first_slot: int) -> np.ndarray:
        """sqrt(sum over terms of (tf * idf)^2) per slot, for slots from `first_slot` on."""
        idf = self._idf_array()
        idf[self._stop[: len(idf)]] = 0.0
        sq = np.zeros(self._slots, dtype=np.float64)
        n_terms = len(self._indptr) - 1
        step = 1 << 22
        start_term = 0
        while start_term < n_terms:
            lo = int(self._indptr[start_term])
            end_term = int(np.searchsorted(self._indptr, lo + step, side="right")) - 1
            end_term = min(max(end_term, start_term + 1), n_terms)
            hi = int(self._indptr[end_term])
            docs = self._pdocs[lo:hi]
            w = _TF[self._pcounts[lo:hi]] * np.repeat(
                idf[start_term:end_term], np.diff(self._indptr[start_term:end_term + 1]))
            if first_slot:
                mine = docs >= first_slot
                docs, w = docs[mine], w[mine]
            sq += np.bincount(docs, weights=w * w, minlength=self._slots)
            start_term = end_term
        for tid, (slots, counts) in self._tail.items():
            if self._stop[tid]:
                continue
            w = _TF[np.asarray(counts, dtype=np.int64)] * idf[tid]
            np.add.at(sq, np.asarray(slots, dtype=np.int64), w * w)
        sq[~self._alive[: self._slots]] = 0.0
        return np.sqrt(sq).astype(np.float32)

    def _run(self, tid: int) -> tuple[int, int]:
        """The term's postings in the base arrays: [lo, hi)."""
        if tid >= len(self._indptr) - 1:
            return 0, 0
        return int(self._indptr[tid]), int(self._indptr[tid + 1])

    def _postings_len(self, tid: int) -> int:
        lo, hi = self._run(tid)
        tail = self._tail.get(tid)
        return hi - lo + (len(tail[0]) if tail is not None else 0)

    # -- persistence -------------------------------------------------------------------------

    def params(self) -> np.ndarray:
        return np.asarray([self.title_weight, self.max_query_terms, self.stop_share,
                           self.stop_min_docs, self.walk_budget], dtype=np.float64)

    # The entries of `params()` that shape the saved arrays: the title weight (the counts) and
    # the corpus stop words (the postings). The query's term cap and walk budget only steer a
    # search, so they are this index's own and can be tuned without a rebuild.
    _BUILD_PARAMS = [0, 2, 3]

    def snapshot(self) -> dict[str, np.ndarray]:
        """The whole state as arrays, for `restore`: an exact copy, norms included, so a
        restored index ranks exactly as this one does.

        Cheap enough to take on the serving thread (a few MB copied at a million documents):
        arrays that are changed in place (df, norms, liveness) are copied; the postings and
        names are replaced, never written in place, so they are shared as they are.
        """
        n_terms = len(self._terms)
        tail_t, tail_s, tail_c = self._tail_arrays()
        vocab = "\n".join(self._terms[:n_terms])  # a token never holds a newline
        return {
            "params": self.params(),
            "vocab": np.frombuffer(vocab.encode("utf-8"), dtype=np.uint8),
            "n_terms": np.asarray(n_terms, dtype=np.int64),
            "df": self._df[:n_terms].copy(),
            "stop": self._stop[:n_terms].copy(),
            "indptr": self._indptr,
            "pdocs": self._pdocs,
            "pcounts": self._pcounts,
            "tail_t": tail_t, "tail_s": tail_s, "tail_c": tail_c,
            "doc_id": self._doc_id[: self._slots],
            "alive": self._alive[: self._slots].copy(),
            "key_start": self._key_start[: self._slots],
            "key_len": self._key_len[: self._slots].copy(),
            "keys": self._keys[: self._keys_n],
            "key_proper": self._key_proper[: self._keys_n],
            "norms": self._norms.copy(),
            "norms_at_n": np.asarray(self._norms_at_n, dtype=np.int64),
            "dead": np.asarray(self._dead, dtype=np.int64),
            "pending_removed": np.asarray(self._pending_removed, dtype=np.int64),
        }

    def restore(self, state: dict[str, np.ndarray]) -> None:
        """Become the index `snapshot` saved; ValueError when the arrays do not fit together
        or were taken with other parameters (the caller then rebuilds from the texts)."""
        saved = np.asarray(state["params"])
        if saved.shape != (5,) or not np.array_equal(saved[self._BUILD_PARAMS],
                                                     self.params()[self._BUILD_PARAMS]):
            raise ValueError("saved with other lexical parameters")
        if "key_proper" not in state:
            raise ValueError("saved before names were told from common words")
        a = {k: np.asarray(v) for k, v in state.items()}
        want = {"vocab": np.uint8, "df": np.int32, "stop": np.bool_, "indptr": np.int64,
                "pdocs": np.int32, "pcounts": np.uint16, "tail_t": np.int64,
                "tail_s": np.int32, "tail_c": np.uint16, "doc_id": np.int64,
                "alive": np.bool_, "key_start": np.int64, "key_len": np.uint8,
                "keys": np.int32, "key_proper": np.bool_, "norms": np.float32, "pending_removed": np.int64}
        for name, dtype in want.items():
            if a[name].dtype != dtype or a[name].ndim != 1:
                raise ValueError(f"{name}: {a[name].dtype}")
        n_terms, slots = int(a["n_terms"]), len(a["doc_id"])
        terms = a["vocab"].tobytes().decode("utf-8").split("\n") if n_terms else []
        indptr, pdocs = a["indptr"], a["pdocs"]
        tail_t, tail_s = a["tail_t"], a["tail_s"]
        alive = a["alive"]
        key_end = a["key_start"] + a["key_len"]
        if (len(terms) != n_terms or len(a["df"]) != n_terms or len(a["stop"]) != n_terms
                or not 1 <= len(indptr) <= n_terms + 1 or indptr[0] != 0
                or np.any(np.diff(indptr) < 0) or indptr[-1] != len(pdocs)
                or len(a["pcounts"]) != len(pdocs)
                or len(tail_s) != len(tail_t) or len(a["tail_c"]) != len(tail_t)
                or any(len(a[k]) != slots for k in ("alive", "key_start", "key_len"))
                or len(a["norms"]) > slots
                or (len(pdocs) and not 0 <= pdocs.min() <= pdocs.max() < slots)
                or (len(tail_t) and not 0 <= tail_t.min() <= tail_t.max() < n_terms)
                or (len(tail_s) and not 0 <= tail_s.min() <= tail_s.max() < slots)
                or (len(a["keys"]) and not 0 <= a["keys"].min() <= a["keys"].max() < n_terms)
                or len(a["key_proper"]) != len(a["keys"])
                or (slots and (a["key_start"].min() < 0 or key_end.max() > len(a["keys"])))
                or (len(a["pending_removed"]) and not 0 <= a["pending_removed"].min()
                    <= a["pending_removed"].max() < slots)):
            raise ValueError("lexical arrays do not fit together")
        live_ids = a["doc_id"][alive]
        if len(live_ids) and (live_ids.min() < 0 or len(np.unique(live_ids)) != len(live_ids)):
            raise ValueError("lexical ids are not distinct")
        self._terms = terms
        self._vocab = {sys.intern(t): i for i, t in enumerate(terms)}
        if len(self._vocab) != n_terms:
            raise ValueError("vocabulary has repeated terms")
        self._spell_all()
        self._df, self._stop = a["df"].copy(), a["stop"].copy()
        self._indptr, self._pdocs, self._pcounts = indptr, pdocs, a["pcounts"]
        # The tail, term by term in the order it was saved (its runs are contiguous).
        self._tail = {}
        if len(tail_t):
            starts = np.flatnonzero(np.concatenate([[True], tail_t[1:] != tail_t[:-1]]))
            ends = np.append(starts[1:], len(tail_t))
            for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
                self._tail[int(tail_t[lo])] = (tail_s[lo:hi].tolist(), a["tail_c"][lo:hi].tolist())
        self._tail_n = len(tail_t)
        self._doc_id, self._alive = a["doc_id"].copy(), alive.copy()
        self._key_start, self._key_len = a["key_start"].copy(), a["key_len"].copy()
        self._slots = slots
        self._keys, self._keys_n = a["keys"], len(a["keys"])
        self._key_proper = a["key_proper"]
        self._proper_df = self._live_proper_df(n_terms)
        self._slot = IdMap()
        self._slot.set_many(live_ids, np.flatnonzero(alive))
        self._norms = a["norms"].copy()
        self._norms_at_n = int(a["norms_at_n"])
        self._dead = int(a["dead"])
        self._pending_removed = a["pending_removed"].tolist()
        self._idf = None

    def _key_positions(self, slots: np.ndarray) -> np.ndarray:
        """Where the names of `slots` lie in `_keys`, slot after slot."""
        starts, lens = self._key_start[slots], self._key_len[slots].astype(np.int64)
        return np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens) + np.arange(lens.sum())

    def _live_proper_df(self, n_terms: int) -> np.ndarray:
        """`_proper_df` counted afresh from the names of live slots (removed ones keep none)."""
        idx = self._key_positions(np.arange(self._slots))
        return np.bincount(self._keys[idx][self._key_proper[idx]], minlength=n_terms).astype(np.int32)

    def ids(self) -> np.ndarray:
        """Every indexed id, ascending."""
        return self._slot.ids()

    # -- queries -----------------------------------------------------------------------------

    def search(self, title: str, text: str, k: int) -> list[tuple[int, float]]:
        """Top-k (id, cosine in [0, 1]) for a query title and text, best first."""
        if k <= 0 or not len(self._slot):
            return []
        query = self._weights(title, text)
        if not query:
            return []
        self._refresh_norms()
        n = len(self._slot)
        vocab, df, stop = self._vocab, self._df, self._stop
        weighted: dict[int, float] = {}  # term id -> query weight q_t = tf * idf
        contribution: dict[int, float] = {}  # q_t * idf(t): the document side's idf folded in
        query_sq = 0.0
        for term, w in query.items():
            tid = vocab.get(term)
            d = int(df[tid]) if tid is not None else 0
            if d and stop[tid]:
                continue  # a corpus stop word is in no document vector, nor in the query's
            idf = math.log((1.0 + n) / (1.0 + d)) + 1.0
            query_sq += (w * idf) ** 2
            if d:
                weighted[tid] = w * idf
                contribution[tid] = weighted[tid] * idf
        query_norm = math.sqrt(query_sq)
        terms = sorted(weighted, key=lambda t: -weighted[t])[: self.max_query_terms]
        budget = self.walk_budget if n >= self.stop_min_docs else math.inf
        if not terms:
            return []
        walked = 0
        docs_parts: list[np.ndarray] = []
        count_parts: list[np.ndarray] = []
        scale: list[float] = []
        lengths: list[int] = []
        for i, tid in enumerate(terms):
            size = self._postings_len(tid)
            if i and walked + size > budget:
                continue  # lighter terms may still fit the budget
            walked += size
            lo, hi = self._run(tid)
            docs_parts.append(self._pdocs[lo:hi])
            count_parts.append(self._pcounts[lo:hi])
            tail = self._tail.get(tid)
            if tail is not None:
                docs_parts.append(np.asarray(tail[0], dtype=np.int32))
                count_parts.append(np.asarray(tail[1], dtype=np.uint16))
            scale.append(contribution[tid])
            lengths.append(size)
        # One gather and one bincount over every walked posting (term order kept, so each
        # document's float64 sum adds the same float32 terms in the same order as a loop would).
        docs = np.concatenate(docs_parts)
        weights = _TF32[np.concatenate(count_parts)] * np.repeat(
            np.asarray(scale, dtype=np.float32), lengths)
        scores = np.bincount(docs, weights=weights, minlength=self._slots)
        cand = walked_slots(docs, scores)
        raw = scores[cand]
        norms = self._norms[cand].astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            sims = np.where(norms > 0, raw / (norms * query_norm), 0.0)
        if len(cand) > k:
            top = np.argpartition(-sims, k - 1)[:k]
            cand, sims = cand[top], sims[top]
        live = sims > 0  # after the cut: zeros only fill a top-k that had too few matches
        cand, sims = cand[live], sims[live]
        order = np.lexsort((cand, -sims))
        return [(int(self._doc_id[cand[j]]), float(min(sims[j], 1.0))) for j in order]


# Postings at least this share of the slots: scanning the scores beats sorting the postings.
_SCAN_SHARE = 0.5


def walked_slots(docs: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The distinct slots among the walked postings `docs`, ascending; `scores` their
    bincount (every walked posting adds a positive weight, so a walked slot scores > 0).

    Few postings against many slots (a large corpus under the walk budget): sort the
    postings (a SIMD sort, ~0.6 ms for 120k) and keep the first of each run, without
    scanning every slot. At 1M slots nearly every walked posting is a distinct document, and
    reading scores and norms in slot order halves what the random-order gathers cost (1M
    synthetic stories: this stage went from 8.5 to 4.5 ms a query). Many postings against
    few slots (a small corpus, no budget: a query's common words walk most documents): one
    scan of the scores finds the same slots in the same order, for less (2-core AMD EPYC,
    10k slots: 0.04 ms against 0.37 ms to sort 40k postings and ~1.5 ms for the ~150k of a
    synthetic 10k-story corpus's related query).
    """
    if len(docs) >= _SCAN_SHARE * len(scores):
        return np.flatnonzero(scores)
    slots = np.sort(docs)
    first = np.empty(len(slots), dtype=bool)
    first[:1] = True
    np.not_equal(slots[1:], slots[:-1], out=first[1:])
    return slots[first]


class IdfTable(dict):
    """idf by term, computed on first ask by `compute` (a missing key is never an error)."""

    def __init__(self, compute: Callable[[str], float]):
        super().__init__()
        self._compute = compute

    def __missing__(self, term: str) -> float:
        value = self[term] = self._compute(term)
        return value


def _grown(arr: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros(size, dtype=arr.dtype)
    out[: len(arr)] = arr
    return out
