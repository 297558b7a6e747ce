"""normalize(): ParsedItem -> StoryDraft decisions (identity, cleaning, limits, dates, hash)."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.model import ParsedItem, SourceSpec
from aggregator.normalize import (
    MAX_SUMMARY_CHARS,
    MAX_TEXT_CHARS,
    MAX_TITLE_CHARS,
    content_hash,
    first_of_each_link,
    normalize,
    rejection_reason,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SOURCE = SourceSpec(
    name="bbc-politics", url="https://feeds.bbci.co.uk/news/politics/rss.xml", category="politics"
)
BODY = " ".join(f"word{n}" for n in range(60))


def test_a_plain_item() -> None:
    item = ParsedItem(
        url="https://WWW.BBC.co.uk/news/uk-1?at_medium=RSS&at_campaign=rss#x",
        title="  Firm in data scandal &#8216;made election boasts&#8217; ",
        summary="The company <b>boasted</b>.",
        author="Jane  Doe",
        image_url="https://ichef.bbci.co.uk/a.jpg",
        published_at=NOW - timedelta(hours=3),
    )
    draft = normalize(item, source=SOURCE, now=NOW)
    assert draft is not None
    assert draft.url == "https://www.bbc.co.uk/news/uk-1"
    assert draft.original_url == item.url
    assert draft.title == "Firm in data scandal ‘made election boasts’"
    assert draft.author == "Jane Doe"
    assert draft.site == "bbc.co.uk"
    assert (draft.source, draft.category) == ("bbc-politics", "politics")
    assert draft.published_at == NOW - timedelta(hours=3)
    assert draft.content_hash == ""  # four words are not a body


@pytest.mark.parametrize(
    "item, reason",
    [
        (ParsedItem(url="https://a.example/x", title=""), "no title and no summary"),
        (ParsedItem(url="https://a.example/x", title="  <b></b> "), "no title and no summary"),
        (ParsedItem(url="javascript:void(0)", title="Click"), "unusable link"),
        (ParsedItem(url="ftp://a.example/x", title="File"), "unusable link"),
        (ParsedItem(url="", title="No link"), "unusable link"),
        # the story's unique key: 100,000 characters were stored as one
        (ParsedItem(url="https://a.example/" + "x" * 2100, title="Long"), "link longer than 2048"),
    ],
)
def test_unusable_items(item: ParsedItem, reason: str) -> None:
    assert rejection_reason(item).startswith(reason)
    assert normalize(item, source=None, now=NOW) is None


def test_title_from_summary_and_summary_from_text() -> None:
    words = " ".join(f"w{n}" for n in range(30))
    draft = normalize(
        ParsedItem(url="https://a.example/1", title="", summary=words), source=None, now=NOW
    )
    assert draft is not None and draft.title.startswith("w0 w1 w2") and draft.title.endswith("…")
    draft = normalize(
        ParsedItem(url="https://a.example/2", title="T", text="Para one.\n\nTwo."),
        source=None,
        now=NOW,
    )
    assert (
        draft is not None
        and draft.summary == "Para one. Two."
        and draft.text == "Para one.\n\nTwo."
    )


def test_absurd_fields_are_truncated() -> None:
    item = ParsedItem(
        url="https://a.example/1",
        title="title " * 500,
        summary="s " * 5000,
        text="t " * 200_000,
        author="a" * 1000,
        image_url="https://i.example/" + "x" * 5000,
    )
    draft = normalize(item, source=None, now=NOW)
    assert draft is not None
    assert len(draft.title) <= MAX_TITLE_CHARS and draft.title.endswith("…")
    assert len(draft.summary) <= MAX_SUMMARY_CHARS
    assert len(draft.text) <= MAX_TEXT_CHARS
    assert len(draft.author) <= 200
    assert draft.image_url == ""


@pytest.mark.parametrize(
    "published_at, expected",
    [
        (NOW + timedelta(hours=23), NOW + timedelta(hours=23)),  # time zones run ahead
        (NOW + timedelta(days=1, seconds=1), None),
        (NOW + timedelta(days=400), None),
        (datetime(1970, 1, 1, tzinfo=UTC), None),
        (datetime(2016, 5, 1, 8, 0), datetime(2016, 5, 1, 8, 0, tzinfo=UTC)),  # naive = UTC
        (None, None),
    ],
)
def test_published_at_bounds(published_at: datetime | None, expected: datetime | None) -> None:
    draft = normalize(
        ParsedItem(url="https://a.example/1", title="T", published_at=published_at),
        source=None,
        now=NOW,
    )
    assert draft is not None and draft.published_at == expected


def test_content_hash_links_exact_duplicates_across_sites() -> None:
    a = normalize(ParsedItem(url="https://a.example/1", title="A", text=BODY), source=None, now=NOW)
    b = normalize(
        ParsedItem(
            url="https://b.example/9",
            title="B",
            text="  " + BODY.upper().replace(" ", ",\n ") + ".",
        ),
        source=None,
        now=NOW,
    )
    c = normalize(
        ParsedItem(url="https://c.example/1", title="C", text=BODY + " extra"), source=None, now=NOW
    )
    assert a and b and c
    assert a.content_hash and a.content_hash == b.content_hash
    assert c.content_hash and c.content_hash != a.content_hash
    assert content_hash("only a few words here") == ""
    assert len(content_hash(BODY)) == 64


@settings(max_examples=150, deadline=None)
@given(
    st.text(max_size=40),
    st.text(max_size=60),
    st.text(max_size=200),
    st.one_of(st.none(), st.datetimes(timezones=st.just(UTC))),
)
def test_normalize_never_raises(url_tail: str, title: str, text: str, at: datetime | None) -> None:
    item = ParsedItem(url=f"https://a.example/{url_tail}", title=title, text=text, published_at=at)
    draft = normalize(item, source=SOURCE, now=NOW)
    if draft is None:
        assert rejection_reason(item)
        return
    assert draft.title and draft.url.startswith("https://a.example/")
    assert draft.published_at is None or draft.published_at <= NOW + timedelta(days=1)


@pytest.mark.parametrize(("given", "kept"), [
    ("By Jane Doe", "Jane Doe"), ("by  Jane Doe", "Jane Doe"), ("BY JANE", "JANE"),
    ("Byron Smith", "Byron Smith"), ("By", "By"), ("Jane Doe", "Jane Doe")])
def test_a_byline_loses_its_by(given: str, kept: str) -> None:
    """The widget and the fragment say "By" themselves: "By By Jane Doe" to screen readers."""
    item = ParsedItem(url="https://a.example/x", title="T", author=given)
    assert normalize(item, source=None, now=NOW).author == kept


def test_tags_are_cleaned_kept_once_and_bounded() -> None:
    from aggregator.normalize import MAX_TAG_CHARS, MAX_TAGS

    item = ParsedItem(url="https://a.example/t", title="T", tags=(
        " Love  Island ", "love island", "LOVE ISLAND", "ITV &amp; Reality", "", "  ",
        "<b>Politics</b>", "x" * (MAX_TAG_CHARS + 1), "Nul\x00l", *(f"tag {n}" for n in range(40))))
    tags = normalize(item, source=None, now=NOW).tags
    assert tags[:4] == ("Love Island", "ITV & Reality", "Politics", "Null")
    assert len(tags) == MAX_TAGS and tags[-1] == f"tag {MAX_TAGS - 5}"
    assert normalize(ParsedItem(url="https://a.example/u", title="T"), source=None, now=NOW).tags == ()


# "Continue reading..." and friends: links from a teaser to its own article (and NPR's photo
# credits). Captured data:
# 50 of the Guardian's 55 summaries ended so (5 more, cut at 1,000 characters, in
# "Continue…"), all 40 tagesschau bodies in "[mehr]", every WaPo summary in "Read full article".
READ_MORE = ("Continue reading", "Continue…", "[mehr]", "Read full article", "Related: ",
             "(Image credit:")


@pytest.mark.parametrize("feed", ["rss-parser/guardian.rss", "fast-news-reader/tagesschau.xml",
                                  "node-feedparser/wapowellness.xml", "photojournalism/npr.xml"])
def test_read_more_links_of_real_feeds_are_not_in_stories(shared_data, feed) -> None:
    from aggregator.parse import parse_document

    doc = parse_document((shared_data / "news-feeds" / feed).read_bytes(), base_url="https://x.example/")
    drafts = [d for d in (normalize(i, source=SOURCE, now=NOW) for i in doc.items) if d]
    assert len(drafts) >= 15
    left = [(d.url, field[-60:]) for d in drafts for field in (d.summary, d.text)
            if any(junk in field for junk in READ_MORE)]
    assert left == []
    # what was around them stays (WaPo's feed also carries empty ad items)
    assert sum(bool(d.summary or d.text) for d in drafts) >= 0.8 * len(drafts)


@pytest.mark.parametrize(("raw", "clean"), [
    ("<p>Teaser.</p><a href='/a'>Continue reading...</a>", "Teaser."),
    ("<p>Teaser. <em>Von Jana Sinram.</em>[<a href='/a'>mehr</a>]</p>", "Teaser. Von Jana Sinram."),
    ("<p>Teaser.</p><p>The post <a href='/a'>Teaser</a> appeared first on <a href='/'>Variety</a>.</p>",
     "Teaser."),
    ("<p>One.</p><p>Continue reading the main story</p><p>Two.</p>", "One.\n\nTwo."),
    ("<p>Teaser.</p><p><a href='/a'>Read more »</a></p>", "Teaser."),
    ("<p>Teaser.</p><p>(Image credit: Pool/Getty Images)</p>", "Teaser."),
    # reddit's footer links, with a count (2015) or without (today's feeds)
    ("submitted by x to pics <br/> <a href='/i'>[link]</a> <a href='/c'>[1,275 comments]</a>",
     "submitted by x to pics"),
    ("<p>Text.</p><p><a href='/i'>[link]</a> <a href='/c'>[comments]</a></p>", "Text."),
    # words that merely look alike stay
    ("<p>See the [link] [2 comments] below.</p>", "See the [link] [2 comments] below."),
    ("<p>Es gibt nicht mehr.</p>", "Es gibt nicht mehr."),
    ("<p>Readers read more books [more or less].</p>", "Readers read more books [more or less]."),
])
def test_read_more_links_are_dropped_from_summaries(raw: str, clean: str) -> None:
    from aggregator.textclean import html_to_text

    item = ParsedItem(url="https://s.example/a", title="A", summary=html_to_text(raw))
    draft = normalize(item, source=SOURCE, now=NOW)
    assert draft is not None and draft.summary == clean


def test_reddit_footer_links_are_not_in_stories(shared_data) -> None:
    """Every item of reddit's feed ended in "[link] [N comments]"; what came before stays."""
    from aggregator.parse import parse_document

    feed = shared_data / "news-feeds" / "rss-parser" / "reddit.rss"
    doc = parse_document(feed.read_bytes(), base_url="https://www.reddit.com/")
    drafts = [d for d in (normalize(i, source=SOURCE, now=NOW) for i in doc.items) if d]
    assert len(drafts) == 24
    assert [d.summary[-40:] for d in drafts if "[link]" in d.summary or "comments]" in d.summary] == []
    # (one self-post's text is longer than a summary, cut before its "submitted by" line)
    assert sum(d.summary.split("\n")[-1].startswith("submitted by ") for d in drafts) == 23


def test_decomposed_text_is_composed() -> None:
    # "e" + U+0301 and Hangul as loose jamo (as macOS writes names): the same story read two
    # ways was two titles, two content hashes and two sets of index words.
    composed = ParsedItem(url="https://example.fr/a", title="Café à Séoul 서울",
                          summary="Résumé", text="Le café " + BODY)
    decomposed = ParsedItem(url="https://example.fr/b",
                            title=unicodedata.normalize("NFD", composed.title),
                            summary=unicodedata.normalize("NFD", composed.summary),
                            text=unicodedata.normalize("NFD", composed.text))
    a = normalize(composed, source=SOURCE, now=NOW)
    b = normalize(decomposed, source=SOURCE, now=NOW)
    assert a is not None and b is not None
    assert (b.title, b.summary, b.text) == (a.title, a.summary, a.text) == (
        composed.title, composed.summary, composed.text)
    assert b.content_hash == a.content_hash != ""


def test_the_first_copy_of_a_link_wins_and_later_copies_fill_its_gaps() -> None:
    """The store kept the last copy of a link in a batch: of the BBC's two copies of a story
    (the top one titled "Rochdale v York City: …", a lower one without the match), the lower."""
    top = normalize(ParsedItem(url="https://news.example/a?utm_source=rss", title="Top title",
                               summary="Top teaser"), source=SOURCE, now=NOW)
    other = normalize(ParsedItem(url="https://news.example/b", title="Other"), source=SOURCE, now=NOW)
    lower = normalize(ParsedItem(url="https://news.example/a", title="Lower title", summary="Lower",
                                 text=BODY, author="Jane Doe", image_url="https://news.example/a.jpg",
                                 image_width_px=640, published_at=NOW - timedelta(hours=1),
                                 tags=("Politics",)), source=SOURCE, now=NOW)
    assert top is not None and other is not None and lower is not None
    got = first_of_each_link([top, other, lower])
    assert [d.url for d in got] == ["https://news.example/a", "https://news.example/b"]
    a = got[0]
    assert (a.title, a.summary, a.original_url) == ("Top title", "Top teaser", top.original_url)
    assert (a.text, a.author, a.image_url, a.image_width_px, a.tags) == (
        BODY, "Jane Doe", "https://news.example/a.jpg", 640, ("Politics",))
    assert a.published_at == NOW - timedelta(hours=1)
    assert a.content_hash == content_hash(BODY) != ""
    # an untitled link (a plain sitemap's, full_text) takes a later copy's title
    bare = normalize(ParsedItem(url="https://news.example/a", title=""), source=SOURCE, now=NOW,
                     keep_untitled=True)
    assert bare is not None
    assert first_of_each_link([bare, top])[0].title == "Top title"


@pytest.mark.parametrize(("title", "kept"), [
    ("Why std::vector<int> is fast", "Why std::vector<int> is fast"),
    ("Map<K, V> or List<T>?", "Map<K, V> or List<T>?"),
    ("Is 3 < 4 > 2?", "Is 3 < 4 > 2?"),
    ("Bold <b>news</b> &amp; <a href='/x'>links</a>", "Bold news & links"),
    ("Word's<o:p></o:p> leftovers <blink2>gone</blink2>", "Word's leftovers gone"),
])
def test_a_title_loses_its_html_tags_but_not_text_in_angle_brackets(title: str, kept: str) -> None:
    """Any text in angle brackets was taken for a tag: a feed's "Why std::vector&lt;int&gt;
    is fast" (the parser decodes it) was stored as "Why std::vector is fast"."""
    draft = normalize(ParsedItem(url="https://news.example/a", title=title), source=SOURCE, now=NOW)
    assert draft is not None and draft.title == kept


@pytest.mark.parametrize("title,core", [
    ("Hewitt decries career sexism | Reuters", "Hewitt decries career sexism"),
    ("Modi in Delhi - Times of India", "Modi in Delhi"),
    ("Obama speaks – News & Observer", "Obama speaks"),
    ("Storm hits coast · bbc.co.uk", "Storm hits coast"),
    ("Putin calls Trump :: Lenta.ru", "Putin calls Trump"),
    ("मोदी ने रैली की | दैनिक जागरण", "मोदी ने रैली की"),  # a script without case
    ("Brexit talks - Part 2", "Brexit talks - Part 2"),  # a series, no site
    ("Brexit talks - what happens next", "Brexit talks - what happens next"),
    ("Opening Bell | Asian markets slump", "Opening Bell | Asian markets slump"),
    ("Brexit - BBC News", "Brexit - BBC News"),  # one word would be left
    ("Big storm hits | A Very Long Site Name", "Big storm hits | A Very Long Site Name"),
    ("No separator here", "No separator here"),
])
def test_a_headline_loses_a_publisher_s_name_after_its_last_separator(title: str, core: str) -> None:
    from aggregator.textclean import without_name_tail

    assert without_name_tail(title) == core


@pytest.mark.parametrize("title,core", [
    ("Opinion | Is Football Violence a Crime?", "Is Football Violence a Crime?"),  # NYT, WSJ
    ("heise+ | Drei Plattenspieler mit Bluetooth im Test", "Drei Plattenspieler mit Bluetooth im Test"),
    ("The Big Read | Why markets slumped", "Why markets slumped"),
    ("Top 10 | Die besten Beamer", "Top 10 | Die besten Beamer"),  # a digit: no section
    ("The Raccoons of the Resistance watch the State | First Dog", "The Raccoons of the Resistance watch the State | First Dog"),
    ("Opinion | Brexit", "Opinion | Brexit"),  # one word would be left
    ("No separator here", "No separator here"),
])
def test_a_headline_loses_a_section_label_before_its_first_bar(title: str, core: str) -> None:
    from aggregator.textclean import without_label_head

    assert without_label_head(title) == core


def test_headlines_compare_without_case_punctuation_or_a_publishers_name() -> None:
    """`headline_key`: the one rule related blocks and feeds tell one story's copies by."""
    from aggregator.textclean import headline_key

    key = headline_key("Hewitt decries 'career sexism' | Reuters")
    assert key == "hewitt decries career sexism"
    assert key == headline_key("HEWITT decries career-sexism  - BBC News") == headline_key(
        "Hewitt decries career sexism")
    assert headline_key("Brexit talks - Part 2") != headline_key("Brexit talks")
    # A section label before the headline, and a publisher after it, both go.
    assert headline_key("Opinion | Hewitt decries 'career sexism' | Reuters") == key
