"""Rank the "related stories" block: pure decisions over candidates the engine gathered.

Order of work in `rank_related` (each step a small function below):
1. drop the article itself (same id, same URL, or the same title with a near-identical vector
   or wording)
   and whatever the filters exclude, what is too unrelated to show (`min_relevance`), and a
   story in another language without same-event evidence (`other_language_min_event`);
2. relevance = fused dense and lexical similarity, plus same-event evidence (shared rare names
   and numbers, publication within a couple of days), times freshness, the source's weight
   and a mild discount for a story of another section than the article's;
3. collapse near-duplicates (syndicated wire copies, one story in two feeds) to the best copy:
   the original over copies marked `duplicate_of`, then the fresher, then one with an image,
   then the fuller one; its reason names the other sites that carried it;
4. diversify with maximal marginal relevance so the block is not five takes on one paragraph,
   and cut to k.
No I/O, no clocks (`now` is passed in), no model: vectors arrive on the candidates.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cached_property, lru_cache

import numpy as np

from aggregator.canonical import canonical_url, site_key, site_of
from aggregator.names import name_key
from aggregator.textclean import headline_key
from recommender.lexical import (
    CALENDAR_WORDS,
    LANGUAGE_SAMPLE_CHARS,
    STOPWORDS,
    IdfTable,
    fold,
    key_terms,
    language_of,
)


@dataclass(frozen=True, eq=False)
class Query:
    """The article whose block we build. `vector` is its unit embedding (None: lexical only)."""

    title: str
    text: str
    vector: np.ndarray | None
    published_at: datetime | None
    url: str = ""
    id: int | None = None
    site: str = ""
    category: str = ""
    # The article's other ids: a syndicated copy's original (the stored story it was linked
    # to). Never in its block, whatever its headline: it is the same article on another site.
    same_as: frozenset[int] = frozenset()
    # Words no index reads that a candidate shares by writing them as written, case and all:
    # a search's words in capitals ("WHO", `search.capitals`), which fold to stop words, and
    # its words the corpus writes too often to index (`search.unindexed`).
    written: tuple[str, ...] = ()

    @cached_property
    def url_key(self) -> str:
        # Once per block: `is_self` compares it with every candidate's (~200 at 1M stories).
        return url_key(self.url)


@dataclass(eq=False)
class Candidate:
    """A stored story that retrieval proposed, with what each retriever said about it.

    Not frozen, though nothing changes one: a block makes ~120, and a frozen dataclass's
    __init__ (a setattr call per field) costs 3.5 us against 1.3 us.

    `dense_score` / `lexical_score` are cosines in [0, 1] (None: that retriever did not return
    it; the dense one is then computed from `vector`, the lexical one counts as 0).
    `key_terms` may be precomputed from the full text at index time; empty means "derive them
    from title and summary".
    """

    id: int
    title: str
    summary: str
    url: str
    site: str
    source: str
    category: str
    published_at: datetime | None
    vector: np.ndarray | None
    dense_score: float | None
    lexical_score: float | None
    source_weight: float = 1.0
    duplicate_of: int | None = None
    content_hash: str = ""
    image_url: str = ""
    key_terms: tuple[str, ...] = ()
    # Sites of the syndicated copies stored word for word (`duplicate_of` this story), which no
    # index holds: the site filters keep the story when one of them passes (its copy is shown).
    copy_sites: tuple[str, ...] = ()

    @cached_property
    def url_key(self) -> str:
        # Asked twice per block (is it the article itself, is it a copy of another).
        return url_key(self.url)


@dataclass(frozen=True)
class Filters:
    category: str | None = None
    site: str | None = None
    exclude_site: str | None = None
    max_age_days: float | None = None


@dataclass(frozen=True)
class RankParams:
    """Weights and thresholds, each chosen on ECB+ (first 40 words) and checked on held-out data.

    The figures behind every default are in the evaluation notes of recommender/evaluate.py.
    Freshness and the event window cannot be measured on ECB+ (undated): they are set from
    the news cycle (a story is "today's" for a day or two) and kept mild.
    """

    # Relevance = dense_weight * dense cosine + lexical_weight * lexical cosine. The two cosines
    # live on different scales (MiniLM ~0.3-0.9, TF-IDF ~0.05-0.6), so weights are not equal.
    dense_weight: float = 1.0
    lexical_weight: float = 1.0
    # Same-event evidence: the idf-weighted share of the candidate's names that the query has.
    event_weight: float = 0.25
    # Publication times further apart than this weaken the same-event evidence.
    event_window_h: float = 48.0
    # A month both texts write as a date ("May 3", "Dec. 5, 2008"; `dated_months`) adds this:
    # reports of one event date what happened alike, a sibling event (the same kind of event,
    # another time) other months. ECB+ topic pairs naming such a month, same event / sibling:
    # one shared 1,756 / 6, none shared 400 / 150, so it is a bonus, never a penalty. Int8
    # MiniLM (ort), 0 / 0.1 / 0.25 / 0.5: first40 0.9516 / 0.9533 / 0.9547 / 0.954, hard 0.0495
    # / 0.0478 / 0.0464 / 0.0458; full 0.974 / 0.9762 / 0.9768 / 0.9731; BBC politics /
    # entertainment 0.9543 / 0.9282 -> 0.9543 / 0.9276 at 0.25. See recommender/evaluate.py.
    month_weight: float = 0.25
    # Freshness multiplies relevance by (1 - w) + w * 0.5 ** (age / half-life); unknown age is
    # scored as one half-life old (neutral between fresh and stale).
    freshness_weight: float = 0.15
    freshness_half_life_days: float = 3.0
    # Two candidates this close (dense cosine) are copies of one story: keep the best one.
    duplicate_cosine: float = 0.95
    # The query itself republished: same title and this close.
    self_cosine: float = 0.97
    # ... or, under the same non-empty title, this close by vector or by wording: a copy with
    # a byline or a footer added is still the article (a "By staff of ..." line before a BBC
    # body: int8 MiniLM cosine 0.956 for politics-005, 0.83-0.97 over the 803 BBC stories,
    # p1 0.887; its TF-IDF cosine stays near 1 as only a few words change). The 41 pairs of
    # BBC stories sharing a title are all the same text twice (cosine 1.0), so a distinct
    # story under the same title would have to read nearly the same to be taken for it.
    # Untitled documents (ECB+) keep `self_cosine` alone.
    self_title_cosine: float = 0.9
    self_title_lexical: float = 0.9
    # Two candidates under one non-empty headline this close are copies of one story, by the
    # rule above for the article itself (a wire story with each site's byline or footer: int8
    # MiniLM 0.93-0.95 to the original, under `duplicate_cosine`). Apart from it, as a search
    # turns the article's rule off and still shows copies once.
    copy_title_cosine: float = 0.9
    # MMR trade-off: 1.0 = pure relevance. Redundancy below `mmr_floor` cosine is not penalised,
    # so several distinct reports of one event stay together; near-paraphrases are pushed apart.
    mmr_lambda: float = 0.85
    mmr_floor: float = 0.9
    # Reason wording: evidence above this says "same event".
    same_event_reason_min: float = 0.3
    # Neighbourhood agreement (a soft k-reciprocal re-ranking, Zhong et al., CVPR 2017): a
    # story of the query's event resembles the same candidates the query resembles, while a
    # sibling event (same kind of event, other people and place) sits in its own cluster.
    # Relevance gains `agreement_weight` / 2 x r x share ** `agreement_power`: r the
    # correlation between the query's relevance to its `agreement_context` best candidates
    # and the candidate's cosine to those same ones, share its relevance / the best one's.
    # Unscaled, it lifted ECB+ but let weakly relevant candidates with a well correlated
    # profile into BBC blocks (politics 0.941 -> 0.898); scaled, it reorders the strong
    # candidates and cannot lift a weak one. Int8 MiniLM: ECB+ 0.928 -> 0.937 (40 words),
    # 0.965 -> 0.967 (full text); BBC politics 0.941 -> 0.939. See recommender/evaluate.py.
    agreement_weight: float = 1.0
    agreement_context: int = 20
    agreement_power: float = 4.0
    # Close publication times: reports of one event come out within a day or two of each
    # other, a sibling event (the same kind of event, another time) months or years apart.
    # Relevance gains `time_weight` x closeness x share ** `time_power`: closeness 1 within
    # `event_window_h` of the query's time, window / gap beyond (a week: 0.29), 0 when either
    # time is unknown; share as for agreement, so time reorders the strong candidates and
    # cannot lift a weak one. ECB+ (dated by datelines, a third of it; the rest undated),
    # weight 0 / 0.5 / 1 / 2: first40 0.936 / 0.945 / 0.950 / 0.953, full 0.964 / 0.971 /
    # 0.973 / 0.975, a plateau from 1. See recommender/evaluate.py.
    time_weight: float = 1.0
    time_power: float = 2.0
    # The share above is of the best candidate's relevance, or of `time_full_relevance` when
    # the best is weaker: a block whose candidates are all weak (an article with nothing like
    # it stored) gave a same-day story scarcely related to it (a football item at 0.22 under
    # a government vetting row) nearly the whole bonus, above a more relevant older one
    # (0.29). The best candidate of 86% / 82% of ECB+ queries (40 words / full text) and 78%
    # of UCI headlines reaches fused similarity 1.0 (same-event reports; BBC sections: 23%,
    # median 0.82). BBC with publication times spread at random over 30 days (time says
    # nothing there), same-section share, all five sections: 0.941 -> 0.946 (no time bonus:
    # 0.949); ECB+ 0.9533 / 0.974 -> 0.9525 / 0.9737 (3 and 1 slots of 3,535),
    # UCI 0.9022 -> 0.9018. At 0.8: 0.9446, 0.953 / 0.974; at 1.5: ECB+ 0.9508 / 0.9726.
    time_full_relevance: float = 1.0
    # Section coherence: readers of a politics article expect politics around it, and a
    # candidate from another section that is about as relevant by wording is usually a false
    # friend (a reggae "truce" under a ceasefire story). Its relevance is multiplied by
    # `section_weight`. The article's section is its own category when it has one, else the
    # category of at least `section_min_share` of its `section_context` best candidates.
    # Without it, the seed case's block over 120-word BBC bodies showed that reggae story
    # (int8 MiniLM; its neighbourhood agreement happened to correlate). BBC same-section
    # share, politics / entertainment, at 1 / 0.95 / 0.9 / 0.8: 0.935 / 0.912, 0.945 / 0.925,
    # 0.954 / 0.936, 0.964 / 0.943; ECB+ carries no sections (unchanged). The cost the BBC
    # share cannot show: a truly related story of another section, or a network whose sites
    # name one section differently, must be ~11% more relevant to take a slot.
    section_weight: float = 0.9
    section_context: int = 10
    section_min_share: float = 0.6
    # Relevance floor: a candidate whose fused similarity (dense + lexical, before evidence and
    # bonuses) stays under this is no related story, and a shorter block beats one filled with
    # unrelated stories (the widget we replace shows a musician's death under a ceasefire
    # call). Int8 MiniLM: unrelated news pairs reach 0.2-0.3 (the seed article over BBC
    # entertainment, sport and tech alone: Federer 0.19, "US TV cuts nudity" 0.22, "Real will
    # finish abandoned match" 0.26); of the stories the blocks showed, the share under 0.3 is
    # 0.2% on BBC same-section, 0.03% / 0% on ECB+ same-event (40 words / full text), 0.09% on
    # UCI same-story headlines. Only where the dense cosine is known: a story not yet embedded
    # is judged by its words, not dropped (see `unrelated`). Only for an article of at least
    # `min_relevance_words` words (title and text): a short one sits lower on the scale (BBC
    # headlines alone against the stories: 4.8% of the same-section stories shown fall under
    # 0.3; a headline and 15 words 1.2%), and a search has none (`search.search_params`).
    min_relevance: float = 0.3
    min_relevance_words: int = 40
    # ... and a shorter article (a feed's headline and one-line summary) is held to this lower
    # floor, never above `min_relevance`: without one, over stories of nothing like it, its
    # block was filled with whatever came nearest. Of the stories its blocks show, the share
    # under 0.2 is 0.29% / 0.02% of BBC same-section ones (headline alone / and 15 words)
    # against 1.65% / 0.35% of other-section ones, and 0 of UCI same-story headlines against
    # 2% of other stories; the blocks keep their same-section share (0.868 / 0.920). 0.25
    # would leave 12 of 2,100 BBC headline blocks short and take 1.2% of their same-section
    # stories. See recommender/evaluate.py.
    min_relevance_short: float = 0.2
    # A candidate that shares no word with the article (no lexical score, no shared name)
    # and whose dense cosine is under this is left out: found by meaning alone, and weakly.
    # Off in blocks (the floors above judge them); a search sets it (`search.SEARCH_MIN_DENSE`).
    min_dense_unmatched: float = -math.inf
    # A story in another language than the article (`language_of`, both known) is shown only
    # on same-event evidence (`event_evidence`: names both write, published close in time) of
    # at least this. The bundled model reads English: a German or Portuguese text sits at
    # cosine 0.2-0.56 to any English one, as close as the weakest same-language stories a block
    # takes, so dense similarity cannot vouch for it, and its lexical score rests on the few
    # names the two languages share. Of the 19 captured news feeds (English, German,
    # Portuguese; int8 MiniLM, blocks of 5 for the 429 English stories), 1,591 other-language
    # candidates passed the relevance floor among the best 60 and 85 were shown, nearly all
    # filler (a Tesla earnings story from 2026 under Chris Lattner leaving Tesla in 2017,
    # cosine 0.45; a TSMC roadmap under lab-grown meat). The reports of one event had evidence
    # 0.20-0.33 (tagesschau on the Mali attacks for the BBC's: 0.33 at cosine 0.53; on the
    # Russian strikes on Ukraine: 0.26 at cosine 0.23; on Trump and Iran for a Trump interview
    # on Iran: 0.20), filler 0.11 at most (one common name among many, "Iran" under an EU
    # summit), mostly 0 (its names years apart): 0.15 keeps the four and leaves 19 others,
    # all under articles whose language their words do not tell (a Science headline alone; a
    # heise teaser of nouns, whose German neighbours are its own language's).
    # 0 keeps every other-language story the floors pass.
    other_language_min_event: float = 0.15
    # Whether each story's reason is written. A search writes its own (`search.search_reason`)
    # and ranks 20 or more stories to show k (`search.SEARCH_DEPTH`): the related reasons it threw
    # away were ~a fifth of its CPU (own-name and name-run reading for every story ranked).
    # Off, a story's reason is "" (the sites that also carried it are still in `also`).
    reasons: bool = True


@dataclass(frozen=True)
class Ranked:
    id: int
    score: float
    reason: str
    # The other sites that carried this story (copies collapsed into it); the reason names
    # the first three.
    also: tuple[str, ...] = ()
    # The ids of the copies collapsed into it: a search's deeper ranking may pick another copy
    # of the same story to stand for them (`search.merged` shows one).
    copies: tuple[int, ...] = ()


@dataclass
class _Scored:
    cand: Candidate
    dense: float
    lexical: float
    event: float
    shared: list[str]
    score: float
    terms: Sequence[str] = ()
    copies: list[Candidate] = field(default_factory=list)


TermsOf = Callable[[int], Sequence[str]]  # a candidate's names by id (the lexical index's)
CommonWord = Callable[[str], bool]  # whether a key term is a common word (the lexical index's)
_POOL_PER_K = 8
# A correlation over fewer neighbours than this is noise: agreement stays neutral.
_MIN_AGREEMENT_CONTEXT = 5
# Fewer labelled candidates than this say nothing about the article's section.
_MIN_SECTION_LABELS = 5


def name_weights(term_idf: Mapping[str, float] | None) -> IdfTable:
    """Each name's weight for one block, a dict that answers every name: the lexical index's
    own `IdfTable` as it is (kept across blocks); any other mapping looked up once per name,
    1.0 where it does not know the name; 1.0 for every name without one."""
    if isinstance(term_idf, IdfTable):
        return term_idf
    if term_idf is None:
        return IdfTable(lambda _term: 1.0)
    return IdfTable(lambda term: term_idf.get(term, 1.0))


# A URL that `canonical_url` returns unchanged and that is cheap to recognise: lowercase
# host without port, path of unreserved characters only and without "." or ".." segments
# (canonicalising removes those), no query or fragment. Most stored story URLs look like
# this, and at a million stories the LRU cache below misses on nearly every candidate, where
# canonicalising cost a third of a related block (profile at 100k).
_PLAIN_URL = re.compile(
    r"https?://(?:www\.)?([a-z0-9-]+(?:\.[a-z0-9-]+)*)((?!.*/\.\.?(?:/|\Z))/[A-Za-z0-9._~/-]*)"
)


def url_key(url: str) -> str:
    """A loose identity for "is this the same page": canonical, scheme and www. ignored."""
    plain = _PLAIN_URL.fullmatch(url)
    if plain is not None:
        return (plain[1] + plain[2]).rstrip("/")
    return _url_key_slow(url)


@lru_cache(maxsize=65536)
def _url_key_slow(url: str) -> str:
    if not url:
        return ""
    try:
        url = canonical_url(url)
    except ValueError:
        return url.strip().lower()
    url = re.sub(r"^https?://(www\.)?", "", url)
    return url.rstrip("/")


def copies_under_title(query: Query, candidates: Sequence[Candidate]) -> int:
    """How many candidates carry the article's own (non-empty) headline: republished copies,
    which drop out as the article itself."""
    key = headline_key(query.title)
    return sum(1 for c in candidates if c.title and headline_key(c.title) == key) if key else 0


def _cos(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    if a is None or b is None:
        return None
    return float(np.dot(a, b))


def is_self(query: Query, cand: Candidate, params: RankParams) -> bool:
    """The article itself: same id, same page, or its own text republished under its title."""
    if (query.id is not None and cand.id == query.id) or cand.id in query.same_as:
        return True
    qkey = query.url_key
    if qkey and qkey == cand.url_key:
        return True
    cos = _cos(query.vector, cand.vector)
    near = cos is not None and cos >= params.self_cosine
    near_titled = ((cos is not None and cos >= params.self_title_cosine)
                   or (cand.lexical_score or 0.0) >= params.self_title_lexical)
    if not (near or near_titled):  # most candidates: no title to normalise
        return False
    qt, ct = headline_key(query.title), headline_key(cand.title)
    if near_titled and qt and qt == ct:
        return True
    return near and (qt == ct or cos >= 0.995)


def with_floor_for(query: Query, params: RankParams) -> RankParams:
    """`params`, with the lower relevance floor for an article too short for the full one.
    A floor of 0 or less is none, as `[related] min_relevance = 0` says (fill every block):
    read literally it dropped the stories of negative similarity."""
    if params.min_relevance <= 0:
        return params if params.min_relevance == -math.inf else replace(
            params, min_relevance=-math.inf)
    words = len(f"{query.title} {query.text[:1000]}".split())  # enough to count to the bar
    if words >= params.min_relevance_words:
        return params
    floor = min(params.min_relevance_short, params.min_relevance)
    return replace(params, min_relevance=floor if floor > 0 else -math.inf)


def unrelated(query: Query, cand: Candidate, dense: float, lexical: float,
              params: RankParams, shared: Sequence[str] = ()) -> bool:
    """Under the relevance floor, or sharing no word with the article (`shared`: its names
    the candidate has; `Query.written`: its words the candidate writes) and under
    `min_dense_unmatched`, where both sides' similarity is known: without a vector on either
    side (a story still in the embedding queue, an article not embedded) the dense cosine
    reads 0 and would drop a story its words relate."""
    dense_known = cand.dense_score is not None or (query.vector is not None
                                                  and cand.vector is not None)
    if not dense_known:
        return False
    if _base_relevance(dense, lexical, params) < params.min_relevance:
        return True
    return (dense < params.min_dense_unmatched and lexical <= 0 and not shared
            and not writes_any(f"{cand.title} {cand.summary}", query.written))


def other_language_unproven(language: str, s: _Scored, params: RankParams) -> bool:
    """A candidate written in another language than the article (`language`: the article's,
    "" when unknown), without the same-event evidence that stands in for the similarity the
    model cannot measure across languages (`RankParams.other_language_min_event`). A story of
    unknown language is judged as any other."""
    if not language or s.event >= params.other_language_min_event:
        return False
    other = story_language(s.cand.title, s.cand.summary)
    return bool(other) and other != language


def story_language(title: str, text: str) -> str:
    """`language_of` a story's title and text, once per story: each block asks it of some
    sixty candidates, most of them in the next block too. Cached by the title and the part
    of the text it reads: keyed by a whole text, the cache kept each article's (up to
    100,000 characters, read afresh for each block) for 65,536 articles."""
    return _story_language(title, text[:LANGUAGE_SAMPLE_CHARS])


@lru_cache(maxsize=65536)
def _story_language(title: str, sample: str) -> str:
    # Keyed by the strings themselves (their hashes kept), so an edited story is read again.
    return language_of(f"{title}\n{sample}")


def writes_any(text: str, words: Sequence[str]) -> bool:
    """Whether `text` has one of `words` whole, as written: "WHO", not "Who" nor "WHOM";
    "AT&T" too, which is no one word to `\\w+`."""
    return any(re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text) for word in words)


def site_passes(site: str, filters: Filters) -> bool:
    """Whether a story of `site` passes the `site` and `exclude_site` filters. Sites compare by
    key: callers write "BBC.CO.UK", "www.bbc.co.uk" or a URL for the site stored as
    "bbc.co.uk", and an exact match silently filtered nothing (or everything)."""
    if filters.site and site_key(site) != site_key(filters.site):
        return False
    return not (filters.exclude_site and site_key(site) == site_key(filters.exclude_site))


def passes(cand: Candidate, filters: Filters, now: datetime | None) -> bool:
    # Categories compare by key: `category=Politics` found nothing stored as "politics".
    if filters.category and name_key(cand.category) != name_key(filters.category):
        return False
    if not site_passes(cand.site, filters) and not any(
            site_passes(s, filters) for s in cand.copy_sites):
        return False
    if filters.max_age_days is not None and now is not None:
        if cand.published_at is None:
            return False  # cannot prove it is recent enough
        if (now - cand.published_at).total_seconds() > filters.max_age_days * 86400:
            return False
    return True


def freshness(published_at: datetime | None, now: datetime | None, params: RankParams) -> float:
    """Multiplier in [1 - w, 1]: 1 for a story published now, halving its bonus every half-life."""
    w = params.freshness_weight
    if published_at is None or now is None:
        decay = 0.5
    else:
        age_days = max(0.0, (now - published_at).total_seconds() / 86400)
        decay = 0.5 ** (age_days / params.freshness_half_life_days)
    return (1.0 - w) + w * decay


@dataclass(frozen=True, eq=False)
class Names:
    """A set of names and their summed idf weight: the article's, made once per block and
    weighed against every candidate's (a hundred times, with some forty names in a report)."""

    terms: set[str]
    weight: float


def names_of(terms: Sequence[str], weights: Mapping[str, float]) -> Names:
    """`weights` answers every name (`name_weights`)."""
    unique = set(terms)
    return Names(unique, sum(map(weights.__getitem__, unique)))


def event_evidence(
    query_names: Names,
    cand_terms: Sequence[str],
    weights: Mapping[str, float],
    query_at: datetime | None,
    cand_at: datetime | None,
    params: RankParams,
) -> tuple[float, list[str]]:
    """Same-event evidence in [0, 1] and the shared names, rarest first.

    Shared names are weighed by idf over the smaller of the two name sets (a short summary
    naming two people both in the query is strong evidence). Dates far apart weaken it: the
    same people a month later are usually another event. `weights` answers every name
    (`name_weights`); map and sum over its lookups keep the ~25 names of each of ~100 candidates in C.
    """
    if not query_names.terms or not cand_terms:
        return 0.0, []
    cset = set(cand_terms)
    weight = weights.__getitem__
    shared = sorted(query_names.terms & cset, key=lambda t: (-weight(t), t))
    if not shared:
        return 0.0, []
    denom = min(query_names.weight, sum(map(weight, cset)))
    evidence = sum(map(weight, shared)) / denom if denom > 0 else 0.0
    if query_at is not None and cand_at is not None:
        evidence *= time_closeness(query_at, cand_at, params)
    return min(evidence, 1.0), shared


# A month written as part of a date: followed by a day or a year ("May 3", "Dec. 5", "March
# 2009"); a month name alone ("in December") is too loose, "may" alone is a verb. Written
# with its capital, as news writes a month ("MAY 3" too): in lower case it is the verb
# before a number ("talks may 2 weeks") far more often than a date. Any word before a
# number, then a set lookup: an alternation of the month names cost 80 us a 400-character
# summary, this 29 us.
_WORD_BEFORE_NUMBER = re.compile(r"\b([A-Z][A-Za-z]{2,8})\.?\s*\d")
_MONTHS = frozenset("january february march april may june july august september october "
                    "november december jan feb mar apr jun jul aug sep sept oct nov dec".split())


def dated_months(text: str) -> frozenset[str]:
    """The months `text` writes in dates, as their first three letters ("may", "dec")."""
    return frozenset(w[:3] for w in map(str.lower, _WORD_BEFORE_NUMBER.findall(text))
                     if w in _MONTHS)


# Cached for the candidates alone: a block reads the summaries of some 60, mostly the same
# stories as the blocks of the articles near it, and a title and summary are short (the
# summary is cut at 1,000 characters). An article's text is read once a ranking and may
# be 100,000 characters (sent ones too): keyed by it, 8,192 entries could hold ~820 MB.
_summary_months = lru_cache(maxsize=8192)(dated_months)


def query_months(query: Query, params: RankParams) -> frozenset[str]:
    """The months the article dates things in (none to look for when `month_weight` is off)."""
    return dated_months(f"{query.title}\n{query.text}") if params.month_weight else frozenset()


def month_agreement(query_months: frozenset[str], cand: Candidate) -> float:
    """1 when the candidate's title or summary dates something in a month the article's
    text does (`dated_months`), else 0 (also when either dates nothing)."""
    if not query_months:
        return 0.0
    return 1.0 if query_months & _summary_months(f"{cand.title}\n{cand.summary}") else 0.0


def time_closeness(query_at: datetime | None, cand_at: datetime | None,
                   params: RankParams) -> float:
    """1 within the event window, window / gap beyond it; 0 when either time is unknown."""
    if query_at is None or cand_at is None:
        return 0.0
    gap_h = abs((query_at - cand_at).total_seconds()) / 3600
    return 1.0 if gap_h <= params.event_window_h else params.event_window_h / gap_h


def evidence_cap(query: Query, cand: Candidate, params: RankParams) -> float:
    """The most same-event evidence `cand` can have: names shared at best count 1, and dates
    further apart than the event window scale that down (`event_evidence`). A hair over, so a
    sum of idf weights rounded the other way never makes the cap too tight."""
    if query.published_at is None or cand.published_at is None:
        return 1.0
    return time_closeness(query.published_at, cand.published_at, params) + 1e-9


def _matrix(vectors: Sequence[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray] | None:
    """The vectors as the float32 rows of one matrix (zeros where one is missing) and which
    rows have one; None when they do not share one dimension."""
    has = np.array([v is not None for v in vectors], dtype=bool)
    dims = {v.shape[0] for v in vectors if v is not None}
    if len(dims) != 1:
        return None
    if has.all():  # the usual block: one copy instead of a row assignment per candidate
        return np.stack(vectors).astype(np.float32, copy=False), has
    mat = np.zeros((len(vectors), dims.pop()), dtype=np.float32)
    for i, v in enumerate(vectors):
        if v is not None:
            mat[i] = v
    return mat, has


def _pairwise_cosines(scored: Sequence[_Scored]) -> np.ndarray:
    """Cosine between every two candidates; NaN where a vector is missing."""
    n = len(scored)
    rows = _matrix([s.cand.vector for s in scored])
    if rows is None:
        return np.full((n, n), np.nan)
    mat, has = rows
    missing = ~has
    # Row by row (matrix-vector): a small matrix-matrix product spins up every BLAS thread,
    # which costs 10-30x more than the arithmetic on a busy 2-core machine (measured).
    sims = np.stack([mat @ mat[i] for i in range(n)]).astype(np.float64) if n else np.zeros((0, 0))
    sims[missing, :] = np.nan
    sims[:, missing] = np.nan
    return sims


class _Cosines:
    """Cosines between a block's best candidates, computed once: collapsing copies and
    diversifying both need them, for the same candidates or a subset of them."""

    def __init__(self, scored: Sequence[_Scored]):
        self._row = {id(s): i for i, s in enumerate(scored)}
        self._sims = _pairwise_cosines(scored)

    def among(self, scored: Sequence[_Scored]) -> np.ndarray:
        rows = [self._row[id(s)] for s in scored]
        return self._sims[np.ix_(rows, rows)]


def neighbourhood_agreement(
    vectors: Sequence[np.ndarray | None], relevance: Sequence[float], context: int
) -> np.ndarray:
    """Per candidate, the Pearson correlation in [-1, 1] between its cosines to the `context`
    most relevant candidates and the query's relevance to those same candidates.

    Uses only candidate vectors, so it also works for a query without a vector (lexical only).
    0 for a candidate without a vector, and for all when fewer than five candidates have one.
    """
    n = len(vectors)
    out = np.zeros(n)
    rel = np.asarray(relevance, dtype=np.float64)
    ctx = [i for i in np.argsort(-rel, kind="stable").tolist() if vectors[i] is not None][:context]
    rows = _matrix(vectors)
    if len(ctx) < _MIN_AGREEMENT_CONTEXT or rows is None:
        return out
    mat, has = rows
    # Column by column (matrix-vector): see _pairwise_cosines on small BLAS products.
    sims = np.stack([mat @ mat[j] for j in ctx], axis=1).astype(np.float64)  # n x context
    # A context story's cosine to itself (1.0) says nothing about agreement but dominates the
    # correlation of its row: replace it by the mean of the rest of that row.
    cols = np.arange(len(ctx))
    sims[ctx, cols] = np.nan
    sims[ctx, cols] = np.nanmean(sims[ctx], axis=1)
    profile = rel[ctx] - rel[ctx].mean()
    centred = sims - sims.mean(axis=1, keepdims=True)
    denom = np.linalg.norm(centred, axis=1) * np.linalg.norm(profile)
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.where(denom > 0, (centred @ profile) / denom, 0.0)
    out[has] = corr[has]
    return out


def _copy_preference(s: _Scored) -> tuple:
    """Best copy first: original, then fresher, then with an image, then fuller."""
    c = s.cand
    at = c.published_at.timestamp() if c.published_at is not None else -math.inf
    return (c.duplicate_of is None, at, bool(c.image_url), len(c.summary), s.score)


def collapse_duplicates(scored: list[_Scored], params: RankParams,
                        cosines: _Cosines) -> list[_Scored]:
    """Group copies of one story and keep the preferred copy of each group.

    Copies: linked by `duplicate_of`, same content hash, same page, dense cosine at least
    `duplicate_cosine`, or under the same headline at least `copy_title_cosine` close (the
    original and a copy with another site's byline stood side by side in blocks, under the
    very same headline). The kept copy inherits the group's best score, so choosing the
    fresher copy never costs the story its place.
    """
    if not scored:
        return []
    ordered = sorted(scored, key=lambda s: -s.score)
    sims = cosines.among(ordered)
    # For each candidate, the first earlier one close enough (-1: none), for all rows at
    # once rather than a numpy call per row.
    with np.errstate(invalid="ignore"):
        close = np.tril((sims >= params.duplicate_cosine)
                        | (same_headline(ordered) & (sims >= params.copy_title_cosine)), -1)
    first_close = np.where(close.any(axis=1), close.argmax(axis=1), -1).tolist()
    group_of: list[int] = []
    groups: list[list[_Scored]] = []
    by_id: dict[int, int] = {}
    by_hash: dict[str, int] = {}
    by_url: dict[str, int] = {}
    copied: dict[int, int] = {}  # story id -> group of the first earlier copy pointing at it
    for i, s in enumerate(ordered):
        c = s.cand
        g = None
        for link in (c.duplicate_of,):
            if link is not None and link in by_id:
                g = by_id[link]
        if g is None and c.content_hash:
            g = by_hash.get(c.content_hash)
        ukey = c.url_key
        if g is None and ukey:
            g = by_url.get(ukey)
        if g is None and first_close[i] >= 0:
            g = group_of[first_close[i]]
        if g is None:
            # An earlier candidate may be a copy of this one (its duplicate_of points here).
            g = copied.get(c.id)
        if g is None:
            g = len(groups)
            groups.append([])
        groups[g].append(s)
        group_of.append(g)
        by_id.setdefault(c.id, g)
        if c.duplicate_of is not None:
            copied.setdefault(c.duplicate_of, g)
        if c.content_hash:
            by_hash.setdefault(c.content_hash, g)
        if ukey:
            by_url.setdefault(ukey, g)
    out = []
    for group in groups:
        best = group[0] if len(group) == 1 else max(group, key=_copy_preference)
        best.score = max(m.score for m in group)
        best.copies = [m.cand for m in group if m is not best]
        out.append(best)
    return out


def same_headline(scored: Sequence[_Scored]) -> np.ndarray:
    """Which pairs of candidates carry one non-empty headline (`headline_key`); untitled
    documents (ECB+) share none."""
    codes: dict[str, int] = {}
    keys = [headline_key(s.cand.title) for s in scored]
    row = np.array([codes.setdefault(key, len(codes)) if key else -1 - i
                    for i, key in enumerate(keys)])
    return row[:, None] == row[None, :]


def diversify(scored: list[_Scored], k: int, params: RankParams,
              cosines: _Cosines) -> list[_Scored]:
    """Maximal marginal relevance, penalising only redundancy above `mmr_floor` cosine."""
    pool = sorted(scored, key=lambda s: -s.score)
    if not pool:
        return []
    sims = np.nan_to_num(cosines.among(pool), nan=0.0)
    redundancy_all = np.clip((sims - params.mmr_floor) / (1.0 - params.mmr_floor), 0.0, None)
    top = pool[0].score if pool[0].score > 0 else 1.0
    relevance = np.array([s.score / top for s in pool])
    lam = params.mmr_lambda
    redundancy = np.zeros(len(pool))
    free = np.ones(len(pool), dtype=bool)
    chosen: list[int] = []
    while len(chosen) < min(k, len(pool)):
        value = np.where(free, lam * relevance - (1.0 - lam) * redundancy, -np.inf)
        i = int(np.argmax(value))  # first maximum: ties keep relevance order
        chosen.append(i)
        free[i] = False
        redundancy = np.maximum(redundancy, redundancy_all[i])
    return [pool[i] for i in chosen]


# How much of the query's text `spellings` reads for the names' own spelling: names that two
# reports share come early, and a reason must not cost a scan of a 100,000-character body.
DISPLAY_TEXT_CHARS = 3000
_WORDS = re.compile(r"\w+")


def spellings(text: str) -> dict[str, str]:
    """Each word that `text` writes with a capital, folded -> its first such spelling
    ("mps" -> "MPs"): one scan for a block's reasons, however many names they show."""
    found: dict[str, str] = {}
    for word in _WORDS.findall(text[:DISPLAY_TEXT_CHARS]):
        if word != word.lower():
            found.setdefault(fold(word), word)  # as key terms spell it ("İstanbul": "istanbul")
    return found


# A name of several words as the query writes them: (folded word, as written, the separator
# before it) for each word.
NameRun = tuple[tuple[str, str, str], ...]


def name_runs(text: str) -> list[NameRun]:
    """The runs of capitalised words that `text` writes side by side, one space or a hyphen
    apart ("Rancho Mirage", "Lib Dems", "Mat-Su"): the names of several words whose parts
    key terms hold apart ("rancho", "mirage"). One scan, as `spellings`.

    Nothing else joins two words: punctuation (a sentence or clause ending, a possessive's
    apostrophe) or a line break between them ends a name. Two more ends a run cannot see
    from its separators: a title before a person's name (`TITLE_WORDS`: "Children's
    Minister Margaret Hodge", "Culture Secretary Tessa Jowell" were one name each), and a
    line in title case (`_title_case`), whose capitals mark no names: "Lindsay Lohan Checks
    Into Betty Ford Rehab" gave "Lindsay Lohan Checks", "Driver Charged In Fatal Queens Hit"
    "Queens Hit". The names of such a line are joined where the text writes them again."""
    runs: list[NameRun] = []
    for line in _lines(text):
        if not _title_case(line):
            runs.extend(_line_runs(line))
    return runs


# A line at least this long that ends in a word, before a line that opens with one, was
# broken to a width: Daring Fireball quotes a report in lines of some 65 characters.
_WRAP_CHARS = 55


def _lines(text: str) -> list[str]:
    """The lines of `text` (of its first `DISPLAY_TEXT_CHARS`), those of a hard-wrapped
    paragraph joined: a name broken over two lines ("the San\nBernardino terrorist
    attacks", "All Writs\nAct") read "Bernardino, San" and "Writs Act". Not the first line,
    a story's headline, whose last word is no part of a name its text opens with."""
    first, *rest = text[:DISPLAY_TEXT_CHARS].split("\n")
    out = [first]
    for i, line in enumerate(rest):
        before = rest[i - 1] if i else ""
        if (i and len(before) >= _WRAP_CHARS and before[-1:].isalnum()
                and line[:1].isalnum()):
            out[-1] += " " + line
        else:
            out.append(line)
    return out


def headline_runs(text: str) -> list[NameRun]:
    """The runs of `text`'s title-case lines, which `name_runs` leaves out: a name of such a
    line is joined only where the other story writes it too (`joined_names`), as two stories
    writing "Black Friday" side by side is that name, not a headline's capitals."""
    return [run for line in _lines(text) if _title_case(line)
            for run in _line_runs(line)]


def _line_runs(line: str) -> list[NameRun]:
    runs: list[NameRun] = []
    run: list[tuple[str, str, str]] = []
    end = -1
    for m in _WORDS.finditer(line):
        word = m.group()
        if not (word[0].isupper() or _camel(word)):
            end = -1
            continue
        folded = fold(word)
        sep = line[end:m.start()] if end >= 0 else None
        after_title = bool(run) and run[-1][0] in TITLE_WORDS and folded not in TITLE_WORDS
        if (sep not in (" ", "-") and not _after_initial(run, sep) or after_title) and run:
            if len(run) > 1:
                runs.append(tuple(run))
            run = []
        run.append((folded, word, sep if run else ""))
        end = m.end()
    if len(run) > 1:
        runs.append(tuple(run))
    return runs


def _camel(word: str) -> bool:
    """A word in lower case with a capital inside ("iPad", "iPhone", "eBay"): a product's or
    a company's name, whose capital no sentence start explains. Key terms leave it out (they
    read capitals first), so a name it opens ("iPad Pro") read "Pro" alone."""
    return word[0].islower() and any(ch.isupper() for ch in word[1:])


def _after_initial(run: Sequence[tuple[str, str, str]], sep: str | None) -> bool:
    """Whether a word follows a middle initial inside a name ("George W. Bush"): a name went
    on over a space or a hyphen only, and the TPM feed's reports read "Bush, George"."""
    return sep == ". " and len(run) > 1 and len(run[-1][1]) == 1


# A line of at least this many words of four letters or more, all capitalised, is in title
# case ("Driver Charged In Fatal Queens Hit & Run", "PROVISIONAL TRIAL DATE SET"): a sentence
# writes some of its longer words in lower case.
_TITLE_CASE_WORDS = 3
_LONG_WORD = re.compile(r"[^\W\d_]{4,}")


def _title_case(line: str) -> bool:
    """Whether `line` capitalises every longer word, as headlines in title case do."""
    long = _LONG_WORD.findall(line)
    return len(long) >= _TITLE_CASE_WORDS and all(w[0].isupper() for w in long)


def joined_names(terms: Sequence[str], spelt: Mapping[str, str] | None = None,
                 runs: Sequence[NameRun] = (), tails: Collection[str] = (),
                 other: str = "", headlines: Sequence[NameRun] = (),
                 two_names: Callable[[str], bool] | None = None, mine: str = "",
                 fixed: Mapping[str, str] | None = None) -> list[str]:
    """Shared key terms (rarest first) as a reason lists them: the words of one name that the
    query writes side by side (`runs`) once, whole and in its order, where its rarest word
    stands ("Rancho Mirage", not "Mirage, Rancho"; "Jack Straw", not "Straw, Jack"); any
    other term by `display_name`. `tails`: shared words never shown alone that still end a
    name after a shown one ("Black Friday", which read "Black" without its weekday).

    `other`: the other story's title and summary, where its names are confirmed. A name
    grows by a stop word opening it when the query (`mine`: its title and text) and
    `other` both write it so ("New Zealand": "new" is a stop word, never a key term, and
    the reason read "Zealand"); a headline's name (`headlines`) is joined only where
    `other` writes it. A word left alone is left out when `two_names(term)` says it is a
    word of two different names. `fixed`: names already found for some terms (`of_names`),
    whose words join no other name."""
    whole: dict[str, str] = dict(fixed or {})
    shared = set(terms) - whole.keys()

    def join(run: NameRun, i: int, j: int, trusted: bool) -> None:
        # Grown over a stop word opening the run ("New", "The") where both stories write
        # it so mid-sentence, where a capital is a name's ("In China" opened sentences); not
        # over one inside a run ("Surviving After Suicide" read "After Suicide, Surviving"),
        # nor over a word that could be a key term: not shared, it names nothing both write
        # ("Former", "Economic" are no part of a name either shares).
        # The other story may write nothing of it in its title and summary (its names known
        # from its text): then the article's spelling stands ("the All Writs Act" read
        # "Writs Act"), as it does not where the other writes the name without the word.
        if (trusted and other and i == 1 and _may_join(run[0][0])
                and _writes_inside(mine, _joined(run, 0, j))
                and (_writes_inside(other, _joined(run, 0, j))
                     or not _writes(other, _joined(run, 1, j)))):
            i = 0
        # ... and over a word in camel case before it ("iPad Pro"), no key term, where both
        # write the name, or the other none of it: Daring Fireball's posts on the iPad Pro
        # read "similar topic: Pro".
        if i > 0 and _camel(run[i - 1][1]) and (_writes(other, _joined(run, i - 1, j))
                                                 or not _writes(other, _joined(run, i, j))):
            i -= 1
            trusted = True
        if j - i > 1 and (trusted or _writes(other, _joined(run, i, j))):
            name = _joined(run, i, j)
            for folded, _, _ in run[i:j]:
                whole.setdefault(folded, name)

    for trusted, group in ((True, runs), (False, headlines)):
        for run in group:
            i = 0
            while i < len(run):
                j = _name_end(run, i, shared, tails)
                if j > i:
                    join(run, i, j, trusted)
                i = max(j, i + 1)
    out: dict[str, None] = {}
    for t in terms:
        name = whole.get(t)
        if name is None:
            if two_names is not None and two_names(t):
                continue
            name = display_name(t, spelt)
        if not any(same_name(name, other_name) for other_name in out):
            out.setdefault(name, None)
    return list(out)


# Two capitalised words with " of " or " of the " between them, as names of bodies, events
# and places write it ("State of the Union", "Bank of England", "Department of Justice").
_OF_NAME = re.compile(r"(?<!\w)([^\W\d_][\w'’]*)( of the | of )([^\W\d_]\w*)(?!\w)")
_NAME_WORD = re.compile(r"(?<!\w)([^\W\d_]\w*) $")  # a word just before a name
_NAME_NEXT = re.compile(r" ([^\W\d_]\w*)(?!\w)")  # ... and just after it


def of_names(terms: Collection[str], mine: str, other: str) -> dict[str, str]:
    """Shared key terms (`terms`) that two stories both write in one name joined by "of"
    ("State of the Union": the key terms "state" and "union") -> that name, as `mine` (the
    query's title and text) writes it; grown over a capitalised word before or after it that
    both write there too and `mine` writes nowhere else ("Royal Bank of Scotland", "Court of
    the United States"). Runs of capitals stop at the lower-case "of": the Guardian's reports
    on Trump's first State of the Union read "same event: Republican, Union, State", and
    "Union, Trump State" under its headline "Trump State of the Union address ...", whose
    "Trump" it writes apart too ("Donald Trump has promised ..."). Not grown over a title
    (`TITLE_WORDS`): "Bank of England Governor Mark Carney" read "Bank of England Governor
    Mark", a title and half a person's name."""
    found: dict[str, str] = {}
    text = mine[:DISPLAY_TEXT_CHARS]
    for m in _of_matches(text):
        head, tail = m.group(1), m.group(3)
        if (not (head[0].isupper() and tail[0].isupper()) or fold(head) not in terms
                or fold(tail) not in terms or fold(head) in found or fold(tail) in found
                or not _writes_any_case(other, m.group())):
            continue
        start, end = m.start(), m.end()
        while ((before := _NAME_WORD.search(text[:start])) and _name_word(before.group(1))
               and _only_in(text, before.group(1), text[before.start(1):end])
               and _writes_any_case(other, text[before.start(1):end])):
            start = before.start(1)
        while ((after := _NAME_NEXT.match(text, end)) and _name_word(after.group(1))
               and _only_in(text, after.group(1), text[start:after.end()])
               and _writes_any_case(other, text[start:after.end()])):
            end = after.end()
        name = text[start:end]
        for word in _WORDS.findall(name):
            if word[0].isupper():
                found.setdefault(fold(word), name)
    return found


def _name_word(word: str) -> bool:
    """Whether `word` may grow a name joined by "of" (`of_names`): capitalised, and no title,
    which opens a person's name rather than going on with the body's."""
    return word[0].isupper() and fold(word) not in TITLE_WORDS


def _only_in(text: str, word: str, name: str) -> bool:
    """Whether `text` writes `word` only inside `name`: then it is a word of that name."""
    def count(s: str) -> int:
        return len(re.findall(rf"(?<!\w){re.escape(s)}(?!\w)", text))
    return count(word) == count(name)


def _of_matches(text: str) -> Iterable[re.Match[str]]:
    """Every "X of (the) Y" in `text`, overlapping ones too ("Bank of England of ...")."""
    pos = 0
    while (m := _OF_NAME.search(text, pos)) is not None:
        yield m
        pos = m.start(3)


def _writes_any_case(text: str, name: str) -> bool:
    """`_writes`, reading "of" and "the" in any case: title-case headlines write "State Of
    The Union"."""
    pattern = re.sub(r"\\ (of|the)(?=\\ )", lambda m: rf"\ (?i:{m.group(1)})", re.escape(name))
    return bool(text) and re.search(rf"(?<!\w){pattern}(?!\w)", text) is not None


def _name_end(run: NameRun, i: int, shared: Collection[str], tails: Collection[str]) -> int:
    """Where the name of shared words that opens at `run[i]` ends: over shared words and the
    weekdays and initials among them (`tails`: "Black Friday"; "George W. Bush", the
    initial no key term), but only after a shown word: a weekday
    before a name is a dateline's ("Friday Boris Johnson"), no part of it. A name goes on past
    its weekday: it stopped there, and "Good Friday Agreement" read "Agreement, Good Friday"."""
    j = i
    while j < len(run) and (run[j][0] in shared
                            or (j > i and (run[j][0] in tails or len(run[j][1]) == 1))):
        j += 1
    while j > i + 1 and len(run[j - 1][1]) == 1:  # an initial ends no name ("George W.")
        j -= 1
    return j


def _joined(run: NameRun, i: int, j: int) -> str:
    return run[i][1] + "".join(sep + word for _, word, sep in run[i + 1:j])


def _writes_inside(text: str, name: str) -> bool:
    """Whether `text` writes `name` after a word, a comma or a semicolon (not to open a
    sentence, a line or a headline's clause)."""
    return bool(text) and re.search(rf"(?<=[\w,;] ){re.escape(name)}(?!\w)", text) is not None


def _may_join(folded: str) -> bool:
    """A stop word that may open a name ("New Zealand", "The Hague"), not an honorific
    ("Mr Obama" is Obama)."""
    return folded in STOPWORDS and folded not in HONORIFICS


def _writes(text: str, name: str) -> bool:
    """Whether `text` writes `name` as it stands, a whole word or words, case and all."""
    return bool(text) and re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text) is not None


# A capitalised word beside another one, one space or a hyphen apart, or the word after
# " of ": `_forms` reads the name a word ends ("York City") or opens ("League of Ireland").
_NAME_BEFORE = re.compile(r"(?:^|\W)([^\W\d_][\w'’]*)[ -]$")
_NAME_AFTER = re.compile(r"^( of |[ -])([^\W\d_]\w*)")


def _forms(text: str, term: str) -> set[str] | None:
    """How `text` writes `term` capitalised outside title-case lines: as the head of a longer
    name, folded, where the name's last word ("york city") or the word before its " of "
    ("league of ireland"), else the word on its own (`term`: "Apple" of "Apple Watch",
    "Manchester" of "Manchester City" name a company and a city themselves). None when it
    writes it so nowhere (nothing known)."""
    forms: set[str] = set()
    for line in text[:DISPLAY_TEXT_CHARS].split("\n"):
        if _title_case(line):
            continue
        for m in _WORDS.finditer(line):
            word = m.group()
            if not word[0].isupper() or fold(word) != term:
                continue
            before = _NAME_BEFORE.search(line[:m.start()])
            after = _NAME_AFTER.match(line[m.end():])
            if after and not after.group(2)[0].isupper():
                after = None
            if after and after.group(1) != " of ":
                forms.add(term)  # it opens a name or stands inside one
            elif before and before.group(1)[0].isupper() and fold(before.group(1)) not in STOPWORDS:
                # (after a stop word it is the word alone: "Mr Trump", "How Trump ...")
                forms.add(fold(f"{before.group(1)} {word}"))
            elif after:
                forms.add(fold(f"{word} of {after.group(2)}"))
            else:
                forms.add(term)
    return forms or None


def two_names(term: str, mine: str, other: str) -> bool:
    """Whether `term` is a word of two names: the query (`mine`) and the other story each
    write it only as the head of a longer name (`_forms`), and no name of the one is the
    other's ("City" of York City and Manchester City, "League" of the National League and the
    League of Ireland: a Rochdale v York City report read "similar topic: League, City"
    under a transfer-day live blog). Not when either writes the word alone ("Obama" of
    "Barack Obama" and "President Obama") or nothing is known of the other's."""
    theirs = _forms(other, term)
    if theirs is None or term in theirs:
        return False
    mine_forms = _forms(mine, term)
    return mine_forms is not None and term not in mine_forms and not mine_forms & theirs


def headline_capital(term: str, mine: str, other: str) -> bool:
    """Whether `term` has its capital from headlines alone: neither story writes it so outside
    a title-case line (`_forms`), and one writes it in lower case, a word, not a name. Two
    TPM headlines on the Virginia results, "Top Dems Say Election Day Rout Is 2018
    Bellwether" and "... Despite Election Day Rout By Dems", read "similar topic: Day Rout"
    where one report wrote "a thorough state-level rout"."""
    return (_forms(mine, term) is None and _forms(other, term) is None
            and (_writes_lower(mine, term) or _writes_lower(other, term)))


def _writes_lower(text: str, term: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(term)}(?!\w)", text[:DISPLAY_TEXT_CHARS]) is not None


def same_name(a: str, b: str) -> bool:
    """Whether two names of several words are one name spelt short and long: word for word
    the same or one abbreviating the other (`_abbreviates`), as "Lib Dems" is "Liberal
    Democrats" and "Mt Cook" "Mount Cook". Shown as two, one party read as the two names
    that "same event" asks for."""
    wa, wb = a.replace("-", " ").split(), b.replace("-", " ").split()
    if len(wa) == len(wb) == 1:
        return one_stem(fold(a), fold(b))
    if len(wa) < 2 or len(wa) != len(wb):
        return False
    return all(x == y or _abbreviates(x, y) or _abbreviates(y, x)
               for x, y in zip(map(fold, wa), map(fold, wb), strict=True))


# Two words of one stem share at least this many letters from their start, and this many
# where neither opens the other ("Democr-atic", "-ats"; not "Trum-p", "-an").
_MIN_STEM = 4
_MIN_INFLECTED = 6
# What a name's own forms add to it when one opens the other: a plural or a demonym
# ("America-ns", "Georgia-n", "Iraq-i", "Sudan-ese"), or four letters and more, the rest
# of a word a newsroom shortens ("Calif", "California"). Any other ending makes another
# name: "India", "Indiana"; "Niger", "Nigeria"; "Mali", "Malibu"; "Williams", "Williamson".
_FORM_ENDINGS = frozenset({"s", "es", "n", "an", "ns", "ans", "i", "is", "ese", "ian", "ish"})
_SHORTENED = 4


def one_stem(a: str, b: str) -> bool:
    """Whether two one-word names (folded) are forms of one: the one opens the other
    ("America", "Americans"; "Calif", "California") or they differ in the last three letters
    of the longer at most ("Democratic", "Democrats"; not "Trump" and "Truman"). Shown as
    two, the Guardian's State of the Union reports read "same event: Americans, America"
    under a story on public lands and an opioid documentary. Not "Austria" and "Australia",
    "Iran" and "Iraq", nor a name that another opens with another ending (`_FORM_ENDINGS`):
    "India" and "Indiana" were one, and a reason dropped one of them."""
    common = len(os.path.commonprefix([a, b]))
    if common < _MIN_STEM:
        return False
    if common == min(len(a), len(b)):
        ending = (a if len(a) > len(b) else b)[common:]
        return ending in _FORM_ENDINGS or len(ending) >= _SHORTENED
    return common >= max(len(a) - 3, len(b) - 3, _MIN_INFLECTED)


def _abbreviates(short: str, long: str) -> bool:
    """`short` is `long` shortened: same first letter, the rest of its letters in `long` in
    order ("dems" of "democrats", "mt" of "mount", "lib" of "liberal")."""
    if len(short) >= len(long) or short[:1] != long[:1]:
        return False
    rest = iter(long[1:])
    return all(ch in rest for ch in short[1:])


def display_name(term: str, spelt: Mapping[str, str] | None = None) -> str:
    """A key term (lower-cased) as a reason shows it: as the query writes it with a capital
    (`spellings`: "BBC", "MPs", "FBI", "McCain"), else capitalised, two letters in capitals
    ("US"). Capitalised alone, acronyms read "Bbc", "Mps"."""
    if spelt and term in spelt:
        return spelt[term]
    return term.upper() if len(term) <= 2 else term.capitalize()


# Abbreviations of time zones and months, which datelines and timestamps carry ("08:06 AM PT",
# "12:42 GMT", "Aug. 16-22"): any two reports of one region and season share them whatever
# their event, as they share a weekday ("same event: Boras, EST, Sox", "Fairfax County, Aug").
# Reasons only, as the calendar words. Not "Jan", "Mar" or "Jun", which are names too.
DATELINE_WORDS = frozenset(
    """gmt bst utc est edt cst cdt mst mdt pst pdt et pt cet cest aest aedt
    feb apr aug sep sept oct nov dec""".split()
)


# Titles and offices written before a person's name ("Minister Margaret Hodge", "Secretary
# Patricia Hewitt", "President Obama", "Sir Trevor McDonald", "Police Chief Scott Russell"):
# a name of several words ends before the person (`name_runs`), and a reason never shows one
# alone, as it names no event ("same event: Minister, Hodge"). Folded as key terms are. "Mr",
# "Mrs" and "Ms" are stop words (`lexical.STOPWORDS`), never key terms; api/render.py's
# byline prefixes are the honorifics here. Not "General", "Justice" or "Premier", which
# are parts of the names of bodies ("Attorney General", "General Motors", "Premier League").
TITLE_WORDS = frozenset(
    """dr prof sir dame rev lord baroness president minister secretary chancellor governor
    gov senator mayor judge sheriff deputy commissioner speaker inspector coroner
    chief director chairman captain capt lt sgt gen mp mep ceo officer""".split()
)


# Honorifics before a name: stop words, never key terms, and no part of a name that a reason
# grows over the words beside it (`joined_names`: "Mr Obama" is Obama).
HONORIFICS = frozenset("mr mrs ms".split())


def own_name_words(site: str, text: str) -> frozenset[str]:
    """The words of a site's own name as its story `text` writes them, folded: a label of its
    host ("bbc" of bbc.co.uk) and the words of a name beside it ("BBC News"), or a name
    whose words make up a label ("ABC News" of abcnews.go.com, "The Guardian" of
    theguardian.com). Every story of the site may write them (a byline, "the BBC's
    correspondent"), so they are no evidence that two stories tell one event; reasons
    showed "similar topic: BBC" and "News" ("BBC News app") between unrelated stories.

    A word beside the label is the name's only where the text writes it nowhere else
    (`_written_apart`): "BBC Scotland's political editor" on a story about Scotland kept
    "Scotland" out of the reasons of every story on Scotland."""
    labels = {label for label in site_key(site).split(".")[:-1]
              if len(label) > 2 and label.isalpha()}
    if not labels:
        return frozenset()
    words = set(labels)
    beside: set[str] = set()
    names: list[str] = []  # the site's names as the text writes them ("BBC Scotland")
    for run in (*name_runs(text), *headline_runs(text)):
        folded = [w for w, _, _ in run]
        for i in range(len(folded)):
            if folded[i] in labels:
                beside.update(folded[max(i - 1, 0):i + 2])  # "BBC News", "The Guardian"
                names.append(_joined(run, max(i - 1, 0), min(i + 2, len(run))))
            for j in range(i + 2, len(folded) + 1):
                if "".join(folded[i:j]) in labels:
                    words.update(folded[i:j])
    return frozenset(words | (beside - _written_apart(text, names)))


def _written_apart(text: str, names: Sequence[str]) -> set[str]:
    """The words `text` writes with a capital outside `names`, folded."""
    rest = text[:DISPLAY_TEXT_CHARS]
    for name in sorted(names, key=len, reverse=True):
        rest = rest.replace(name, "\n")
    return {fold(w) for w in _WORDS.findall(rest) if w[0].isupper()}


def withheld(own: Mapping[str, frozenset[str]], other_sites: Collection[str],
             other_headline: Collection[str]) -> frozenset[str]:
    """The words of sites' own names (`own`: by site key, `own_name_words`) that a reason
    leaves out against a story on `other_sites` (site keys) whose headline writes
    `other_headline` (folded words, less its own site's name). A story on another site whose
    headline writes one is about it, not quoting it: a Daring Fireball post linking to
    apple.com read "similar topic" under "White House Petition to Side With Apple in FBI
    Fight", a post on whitehouse.gov the same under "White House ..." headlines. A story of
    the same site writes its name anyway."""
    out: set[str] = set()
    for site, words in own.items():
        out |= words if site in other_sites else words - set(other_headline)
    return frozenset(out)


def headline_words(title: str, own: Collection[str] = ()) -> frozenset[str]:
    """The words a headline writes with a capital, folded, less `own` (its site's name)."""
    return frozenset(fold(w) for w in _WORDS.findall(title) if w[0].isupper()) - set(own)


def shown_name(term: str, common_word: CommonWord | None = None) -> bool:
    """Whether a shared key term may name the evidence in a reason. Not a number: key terms
    hold numbers split at their punctuation ("20,000" is "20" and "000"), which read as noise
    on their own. Not a weekday, a month or a time zone (`DATELINE_WORDS`), shared by any two
    reports of one week and region. Not a title (`TITLE_WORDS`). Not a word the corpus writes
    in lower case (`common_word`): "Among", "However" or "Top" are key terms only for starting
    a sentence."""
    return (not term[0].isdigit() and term not in CALENDAR_WORDS and term not in DATELINE_WORDS
            and term not in TITLE_WORDS and not (common_word is not None and common_word(term)))


@dataclass(frozen=True)
class ReasonText:
    """What a block's reasons read of its article, once per block: its title and text
    (`lead`), its spellings of names (`spellings`), its names of several words (`name_runs`)
    and those of its title-case lines (`headline_runs`), and the words of its site's own
    name (`own_name_words`)."""

    lead: str = ""
    spelt: Mapping[str, str] = field(default_factory=dict)
    runs: Sequence[NameRun] = ()
    headlines: Sequence[NameRun] = ()
    own: Mapping[str, frozenset[str]] = field(default_factory=dict)  # by site key
    headline: frozenset[str] = frozenset()  # `headline_words` of its title


def reason_text(query: Query) -> ReasonText:
    lead = f"{query.title}\n{query.text}"
    # Its own name's words by its URL's host too: a page read for a block (not stored) has
    # the site's name for `site` ("BBC News", its og:site_name), in which `own_name_words`
    # finds no host's label, and its block read "same event: Aleppo, BBC" where the stored
    # story's read "similar topic: Aleppo".
    own = {site_key(site): own_name_words(site, lead) for site in {query.site, site_of(query.url)}}
    headline = headline_words(query.title, frozenset().union(*own.values()))
    return ReasonText(lead, spellings(lead), name_runs(lead), headline_runs(lead), own, headline)


def _reason(s: _Scored, params: RankParams, common_word: CommonWord | None = None,
            text: ReasonText = ReasonText()) -> str:
    """`text`: the article's names as reasons show them (`reason_text`); the candidate's
    title and summary confirm the names both write (`joined_names`). "Same event" only with
    two names to
    show, counted as shown (`joined_names`): evidence of common words, numbers or dates alone
    ("Woman" opening two headlines, "2018") said it of a hit-and-run in Queens under a house
    fire in Wolverhampton, and one name, all a feed's headline and summary may carry, of
    any story naming it ("same event: Veterans" for Veterans Day menus under a story on
    scams, "California" for a tumbleweed on a highway). One name of two words is still one
    name: a person, a party or a country is a topic, not an event ("same event: Islamic
    State" for a drone strike in Palmyra under an alert in Sinai; on BBC News, "Tony Blair"
    for his Turkey remarks under a Blair-Brown rift, "Jimi Hendrix" for a guitar auction under
    a museum row: none of its 13 one-name claims was one event). On ECB+, where one
    person is mostly one event, 8% of the true same-event claims (40-word texts; 1% on full
    texts) read "similar topic: Tara Reid" instead: understating a tie misleads less than
    claiming one, and the ranking does not change. Words of either site's own name
    (`own_name_words`) name nothing shared, unless the other story's headline writes them
    (`withheld`)."""
    other = f"{s.cand.title}\n{s.cand.summary}"
    theirs = {site_key(s.cand.site): own_name_words(s.cand.site, other)}
    own = (withheld(text.own, theirs, headline_words(s.cand.title, *theirs.values()))
           | withheld(theirs, text.own, text.headline))
    shown = [t for t in s.shared if shown_name(t, common_word) and t not in own
             and not headline_capital(t, text.lead, other)]
    dates = [t for t in s.shared if t in CALENDAR_WORDS]  # "Friday" of "Black Friday"
    names = joined_names(shown, text.spelt, text.runs, dates, other, text.headlines,
                         lambda t: two_names(t, text.lead, other), text.lead,
                         of_names(shown, text.lead, other))
    if s.event >= params.same_event_reason_min and len(names) >= 2:
        return f"same event: {', '.join(names[:3])}"
    return f"similar topic: {', '.join(names[:2])}" if names else "similar topic"


_ALSO = "; also reported by "


def _with_also(reason: str, also: Sequence[str]) -> str:
    return reason + _ALSO + ", ".join(also[:3]) if also else reason


def with_reason(ranked: Ranked, reason: str) -> Ranked:
    """`ranked` with another reason, still naming the other sites that carried it."""
    return replace(ranked, reason=_with_also(reason, ranked.also))


def other_sites(site: str, sites: Iterable[str]) -> tuple[str, ...]:
    """The sites of `sites` other than `site`, each once, by name: compared as the site
    filters compare them (`site_key`), a publisher's own copy on its m. host or under an
    import's "www.X" was named as another outlet that "also reported" its story."""
    own, named = site_key(site), {}
    for name in sorted((n for n in sites if n), key=lambda n: (len(n), n)):  # plainest first
        named.setdefault(site_key(name), name)
    named.pop(own, None)
    return tuple(sorted(named.values()))


def also_reported(ranked: Ranked, site: str, sites: Iterable[str]) -> Ranked:
    """`ranked` with more sites that carried it (the syndicated copies linked to it in the
    store, which retrieval never sees), `site` its own; the reason names the first three."""
    also = other_sites(site, {*ranked.also, *sites})
    if also == ranked.also:
        return ranked
    base = ranked.reason.split(_ALSO, 1)[0]
    return replace(ranked, reason=_with_also(base, also), also=also)


def _dense(query: Query, cand: Candidate) -> float:
    """The dense retriever's cosine, or the vectors' when it did not return the candidate."""
    if cand.dense_score is not None:
        return cand.dense_score
    return _cos(query.vector, cand.vector) or 0.0


def _with_evidence(query: Query, cand: Candidate, dense: float, lexical: float,
                   query_names: Names, weights: Mapping[str, float],
                   params: RankParams, terms_of: TermsOf | None = None,
                   query_months: frozenset[str] = frozenset()) -> _Scored:
    """Relevance: fused similarity plus same-event evidence and a month both date things in
    (before freshness and weight)."""
    terms = (cand.key_terms or (terms_of(cand.id) if terms_of is not None else ())
             or key_terms(cand.title, cand.summary))
    event, shared = event_evidence(
        query_names, terms, weights, query.published_at, cand.published_at, params
    )
    relevance = (
        params.dense_weight * dense + params.lexical_weight * lexical
        + params.event_weight * event
        + params.month_weight * month_agreement(query_months, cand)
    )
    return _Scored(cand, dense, lexical, event, shared, relevance, terms)


def _base_relevance(dense: float, lexical: float, params: RankParams) -> float:
    return params.dense_weight * dense + params.lexical_weight * lexical


def _shares(base: Sequence[float], full: float = 0.0) -> list[float]:
    """Each base relevance as a share of the best one, or of `full` when the best is below
    it, in [0, 1]."""
    top = max(max(base, default=0.0), full)
    return [min(max(b / top, 0.0), 1.0) if top > 0 else 0.0 for b in base]


def agreement_bonus(vectors: Sequence[np.ndarray | None], base: Sequence[float],
                    params: RankParams) -> list[float]:
    """What neighbourhood agreement adds to each candidate's relevance (negative when its
    neighbourhood disagrees with the query's), scaled by its share of the best base relevance
    so that agreement reorders close contenders and cannot lift a weak candidate."""
    if not params.agreement_weight or not base:
        return [0.0] * len(base)
    agreement = neighbourhood_agreement(vectors, base, params.agreement_context)
    return [params.agreement_weight / 2.0 * share ** params.agreement_power * float(a)
            for share, a in zip(_shares(base), agreement, strict=True)]


def time_bonus(query_at: datetime | None, times: Sequence[datetime | None],
               base: Sequence[float], params: RankParams) -> list[float]:
    """What close publication times add to each candidate's relevance, scaled like agreement
    but against at least `time_full_relevance`, so it cannot lift a weak candidate even
    where every candidate is weak."""
    if not params.time_weight or query_at is None or not base:
        return [0.0] * len(base)
    return [params.time_weight * share ** params.time_power * time_closeness(query_at, at, params)
            for share, at in zip(_shares(base, params.time_full_relevance), times,
                                    strict=True)]


def bonuses(query: Query, cands: Sequence[Candidate], base: Sequence[float],
            params: RankParams) -> list[float]:
    """Agreement and time together: both depend on similarity and dates only, not on names."""
    agreement = agreement_bonus([c.vector for c in cands], base, params)
    times = time_bonus(query.published_at, [c.published_at for c in cands], base, params)
    return [a + t for a, t in zip(agreement, times, strict=True)]


def query_section(query: Query, cands: Sequence[Candidate], base: Sequence[float],
                  params: RankParams) -> str:
    """The article's section as a name key (`name_key`): its category, else the one most of
    its best candidates share (empty when they do not agree enough, or carry none). Stored
    names keep the collector's or the import's spelling: compared as stored, "Politics" and
    "politics" split one section's vote and were each another section to the other."""
    if query.category.strip():
        return name_key(query.category)
    best = sorted(range(len(cands)), key=lambda i: -base[i])[: params.section_context]
    labels = [key for i in best if (key := name_key(cands[i].category))]
    if len(labels) < _MIN_SECTION_LABELS:
        return ""
    top, count = Counter(labels).most_common(1)[0]
    return top if count >= params.section_min_share * len(labels) else ""


def section_factor(section: str, cand: Candidate, params: RankParams) -> float:
    """`section_weight` for a candidate of another section (`section`: a name key, from
    `query_section`), 1 otherwise (or without one)."""
    if not section:
        return 1.0
    key = name_key(cand.category)
    if not key or key == section:
        return 1.0
    return params.section_weight


def _with_bonus(relevance: float, bonus: float) -> float:
    # Floored at 0 so relevance stays non-negative before it is multiplied by freshness (a
    # disagreeing neighbourhood subtracts).
    return max(0.0, relevance + bonus)


def _score_all(query: Query, candidates: Sequence[Candidate], query_names: Names,
               weights: Mapping[str, float], params: RankParams, now: datetime | None,
               filters: Filters, terms_of: TermsOf | None = None) -> list[_Scored]:
    """Every candidate's full score (the path neighbourhood agreement needs)."""
    months = query_months(query, params)
    seen: set[int] = set()
    scored: list[_Scored] = []
    for cand in candidates:
        if cand.id in seen or is_self(query, cand, params) or not passes(cand, filters, now):
            continue
        seen.add(cand.id)
        scored.append(_with_evidence(query, cand, _dense(query, cand), cand.lexical_score or 0.0,
                                     query_names, weights, params, terms_of, months))
    cands = [s.cand for s in scored]
    base = [_base_relevance(s.dense, s.lexical, params) for s in scored]
    bonus = bonuses(query, cands, base, params)
    for s, b in zip(scored, bonus, strict=True):
        s.score = _with_bonus(s.score, b)
    section = query_section(query, cands, base, params)
    for s in scored:
        s.score *= (freshness(s.cand.published_at, now, params) * s.cand.source_weight
                    * section_factor(section, s.cand, params))
    return scored


def _score_pruned(query: Query, candidates: Sequence[Candidate], query_names: Names,
                  weights: Mapping[str, float], params: RankParams,
                  now: datetime | None, filters: Filters, pool: int,
                  terms_of: TermsOf | None = None) -> list[_Scored]:
    """The scores `_score_all` gives, computed in full only for candidates that can reach the
    pool of the `pool` best; the result ranks exactly as `_score_all`'s does.

    Same-event evidence adds at most `event_weight` times its cap (`evidence_cap`: 1, less for
    stories further apart in time than the event window), and a shared month `month_weight`
    (when the article dates anything), so a candidate whose score with full evidence stays
    below the `pool`-th best score without any evidence can never enter the pool: its names,
    and whether it is the article itself, are not looked at.
    """
    months = query_months(query, params)
    month_cap = params.month_weight if months else 0.0
    # Agreement, time and the section are computed over every candidate that is not the
    # article itself (agreement's context, both shares and the inferred section come from the
    # best of them), so with any of them on the self check cannot wait for the pruning.
    self_first = bool(params.agreement_weight or params.time_weight
                      or params.section_weight != 1.0)
    seen: set[int] = set()
    cheap: list[tuple[Candidate, float, float, float]] = []
    for cand in candidates:
        if (cand.id in seen or cand.id == query.id or cand.id in query.same_as
                or not passes(cand, filters, now)):
            continue
        seen.add(cand.id)
        if self_first and is_self(query, cand, params):
            continue
        dense = _dense(query, cand)
        lexical = cand.lexical_score or 0.0
        weight = freshness(cand.published_at, now, params) * cand.source_weight
        cheap.append((cand, dense, lexical, weight))
    raw = [_base_relevance(d, lx, params) for _, d, lx, _ in cheap]
    # Agreement and time depend on similarity and dates only, not on the names: they are
    # known before the pruning, and bounds stay exact with them added.
    bonus = bonuses(query, [c for c, *_ in cheap], raw, params)
    section = query_section(query, [c for c, *_ in cheap], raw, params)
    cheap = [(c, d, lx, w * section_factor(section, c, params)) for c, d, lx, w in cheap]
    base = [_with_bonus(r, b) * c[3] for r, b, c in zip(raw, bonus, cheap, strict=True)]
    self_of: dict[int, bool] = {i: False for i in range(len(cheap))} if self_first else {}
    threshold = -math.inf
    if len(cheap) > pool:
        found = 0
        for i in sorted(range(len(cheap)), key=lambda i: -base[i]):
            if not self_first:  # else the article itself is already out of `cheap`
                self_of[i] = is_self(query, cheap[i][0], params)
            if not self_of[i]:
                found += 1
                if found == pool:
                    threshold = base[i]
                    break
    scored: list[_Scored] = []
    for i, (cand, dense, lexical, weight) in enumerate(cheap):
        upper = _with_bonus(raw[i] + params.event_weight * evidence_cap(query, cand, params)
                            + month_cap, bonus[i]) * weight
        if upper < threshold:
            continue
        if self_of[i] if i in self_of else is_self(query, cand, params):
            continue
        s = _with_evidence(query, cand, dense, lexical, query_names, weights, params, terms_of,
                           months)
        s.score = _with_bonus(s.score, bonus[i]) * weight
        scored.append(s)
    return scored


def rank_related(
    query: Query,
    candidates: Sequence[Candidate],
    *,
    k: int,
    params: RankParams | None = None,
    now: datetime | None = None,
    filters: Filters | None = None,
    term_idf: Mapping[str, float] | None = None,
    terms_of: TermsOf | None = None,
    common_word: CommonWord | None = None,
) -> list[Ranked]:
    """The related block for `query`: at most k candidates, best first, each with a reason.

    `term_idf` weighs shared names by rarity (from the lexical index); without it every name
    counts the same. `terms_of(id)` gives a candidate's names when it carries none; asked only
    for the candidates the pruning keeps (a few dozen of a few hundred). `common_word(term)`
    keeps a shared term out of the reasons when the corpus writes it as a common word (the
    lexical index's); it does not change the ranking.
    """
    params = with_floor_for(query, params or RankParams())
    filters = filters or Filters()
    if k <= 0:
        return []
    weights = name_weights(term_idf)  # each name's idf once, not once per candidate
    query_names = names_of(key_terms(query.title, query.text), weights)
    pool = _POOL_PER_K * k + 20
    if len({c.id for c in candidates}) != len(candidates):
        # A repeated id (never from the engine) keeps the first copy that is not the article
        # itself, which only the full pass decides.
        scored = _score_all(query, candidates, query_names, weights, params, now, filters,
                            terms_of)
    else:
        scored = _score_pruned(query, candidates, query_names, weights, params, now, filters,
                               pool, terms_of)
    # Only the best few can reach the block, even after copies are merged: rank those.
    scored.sort(key=lambda s: -s.score)
    # The floor and the language rule only leave stories out: they still counted in the
    # agreement's context, the shares and the article's section above, so the others rank as
    # they did without them.
    language = (story_language(query.title, query.text)
                if params.other_language_min_event > 0 else "")
    best = [s for s in scored
            if not unrelated(query, s.cand, s.dense, s.lexical, params, s.shared)
            and not other_language_unproven(language, s, params)][:pool]
    cosines = _Cosines(best)
    kept = collapse_duplicates(best, params, cosines)
    chosen = diversify(kept, k, params, cosines)
    out = []
    text = reason_text(query) if params.reasons else ReasonText()
    for s in chosen:
        also = other_sites(s.cand.site, (c.site for c in s.copies))
        reason = _with_also(_reason(s, params, common_word, text), also) if params.reasons else ""
        out.append(Ranked(s.cand.id, round(s.score, 6), reason, also,
                          tuple(c.id for c in s.copies)))
    return out
