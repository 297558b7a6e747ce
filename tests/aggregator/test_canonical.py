"""canonical_url and site_of: fixed examples plus Hypothesis properties."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from aggregator.canonical import (
    SITE_TRACKING_PARAMS,
    TRACKING_PARAMS,
    canonical_url,
    is_tracking_param,
    site_key,
    site_of,
    spelling_key,
    url_variants,
)
from aggregator.parse import parse_document

FEEDS_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "news-feeds"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("HTTP://WWW.Example.COM:80", "http://www.example.com/"),
        ("https://a.com:443/x/?utm_source=a&b=2&a=1#frag", "https://a.com/x/?a=1&b=2"),
        ("https://a.com:8443/x", "https://a.com:8443/x"),
        (
            "https://a.com/p?CMP=share_btn&fbclid=x&gclid=y&mc_cid=1&mc_eid=2&ocid=3",
            "https://a.com/p",
        ),
        (
            "https://www.bbc.com/news/articles/cq59?at_medium=RSS&at_campaign=rss",
            "https://www.bbc.com/news/articles/cq59",
        ),
        ("http://bücher.de/ä ö?q=ü", "http://xn--bcher-kva.de/%C3%A4%20%C3%B6?q=%C3%BC"),
        ("https://a.com/%7ea/%2f", "https://a.com/~a/%2F"),
        ("https://user:pw@A.com./x", "https://a.com/x"),
        ("  https://a.com/a/  ", "https://a.com/a/"),
        ("https://a.com/search?q=a+b&page=2", "https://a.com/search?page=2&q=a%20b"),
        ("https://a.com/?b=1&a=2&b=0", "https://a.com/?a=2&b=1&b=0"),
        ("https://[2001:DB8::1]:443/x", "https://[2001:db8::1]/x"),
    ],
)
def test_examples(raw: str, expected: str) -> None:
    assert canonical_url(raw) == expected


@pytest.mark.parametrize(
    "raw, expected",
    [
        (
            "http://www.heise.de/developer/meldung/Java-3088438.html"
            "?wt_mc=rss.developer.beitrag.atom",
            "http://www.heise.de/developer/meldung/Java-3088438.html",
        ),
        ("https://www.zeit.de/x?wt_zmc=nl.int.zonaudev&id=4", "https://www.zeit.de/x?id=4"),
        (
            "http://www.nytimes.com/pages/index.html?partner=rss&emc=rss",
            "http://www.nytimes.com/pages/index.html",
        ),
        (
            "http://www.nytimes.com/2016/02/21/technology/apple.html?mwrsm=Twitter&_r=0",
            "http://www.nytimes.com/2016/02/21/technology/apple.html",
        ),
        ("https://mobile.NYTimes.com/a.html?PARTNER=rss", "https://mobile.nytimes.com/a.html"),
        ("https://www.washingtonpost.com/local/a/?tid=a_inl", "https://www.washingtonpost.com/local/a/"),
        ("https://www.wsj.com/articles/a-1509633797?mod=e2tw", "https://www.wsj.com/articles/a-1509633797"),
        ("http://time.com/4108421/a/?xid=time_socialflow_twitter", "http://time.com/4108421/a/"),
        (
            "http://science.sciencemag.org/cgi/content/short/356/6343/1134-a?rss=1",
            "http://science.sciencemag.org/cgi/content/short/356/6343/1134-a",
        ),
        (
            "https://www.bbc.co.uk/iplayer/episode/b01p6y1c?at_mid=ovYA&at_nation=uk&at_format=x",
            "https://www.bbc.co.uk/iplayer/episode/b01p6y1c",
        ),
    ],
)
def test_tracking_params_found_in_captured_feeds_are_dropped(raw: str, expected: str) -> None:
    assert canonical_url(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        # The site-only names are content (or unknown) on other sites: kept there.
        "https://shop.example/p?partner=acme",
        "https://forum.example/t?emc=1",
        "https://cms.example/index.php?id=3&mod=news",
        "https://blog.example/?rss=1",
        "https://tickets.example/?tid=42",
        "https://x.example/a?_r=0",
        "https://x.example/a?xid=9",
        "https://x.example/a?at_mid=9",
        "https://notnytimes.com/a?partner=rss",
        "https://nytimes.com.evil.example/a?partner=rss",
        # `ref` is nowhere a tracking name: it can select content (a branch, a product).
        "https://api.github.example/repos/a/b/contents/x?ref=main",
        "https://www.nytimes.com/a?ref=x",
        # Content selectors stay, also on the sites with their own tracking names.
        "https://www.nytimes.com/a?id=1&p=2&page=3&story=4",
        "https://www.bbc.co.uk/news?page=2",
    ],
)
def test_generic_names_are_kept_off_their_sites(raw: str) -> None:
    assert urlsplit(canonical_url(raw)).query == urlsplit(raw).query


def test_is_tracking_param_by_site() -> None:
    assert is_tracking_param("wt_mc") and is_tracking_param("WT_ZMC")
    assert is_tracking_param("partner", "www.nytimes.com")
    assert is_tracking_param("partner", "nytimes.com")
    assert not is_tracking_param("partner")
    assert not is_tracking_param("partner", "example.com")
    assert is_tracking_param("at_nation", "www.bbc.com")
    assert not is_tracking_param("at_nation", "example.com")
    assert all("." in domain for domain in SITE_TRACKING_PARAMS)


@pytest.mark.skipif(not FEEDS_DIR.is_dir(), reason="needs ../shared/data/news-feeds")
@pytest.mark.parametrize(
    "feed, names",
    [
        ("fast-news-reader/heise.xml", {"wt_mc"}),
        ("rss-parser/heise.atom", {"wt_mc"}),
        ("rss-parser/rss-1.rss", {"rss"}),
        ("fast-news-reader/bbc.xml", {"at_medium", "at_campaign"}),
    ],
)
def test_captured_feed_links_lose_their_tracking(feed: str, names: set[str]) -> None:
    doc = parse_document((FEEDS_DIR / feed).read_bytes(), base_url="https://feed.example/")
    raw = [it.url for it in doc.items]
    assert any(names & {k for k, _ in parse_qsl(urlsplit(u).query)} for u in raw)
    for url in raw:
        query = urlsplit(canonical_url(url)).query
        assert not names & {k for k, _ in parse_qsl(query, keep_blank_values=True)}, url


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("https://a.com/news/b/../a", "https://a.com/news/a"),
        ("https://a.com/news/./a", "https://a.com/news/a"),
        ("https://a.com/news/a/.", "https://a.com/news/a/"),
        ("https://a.com/news/a/b/..", "https://a.com/news/a/"),
        ("https://a.com/../../a", "https://a.com/a"),
        ("https://a.com/a/b/c/./../../g?x=1", "https://a.com/a/g?x=1"),  # RFC 3986 §5.4.2
        ("https://a.com/a//../b", "https://a.com/a/b"),
        ("https://a.com/..", "https://a.com/"),
        # Escaped dots are dots (unreserved, decoded first, §6.2.2), in any case and mix.
        ("https://a.com/news/b/%2e%2e/a", "https://a.com/news/a"),
        ("https://a.com/news/b/.%2E/a", "https://a.com/news/a"),
        ("https://a.com/news/%2e/a", "https://a.com/news/a"),
        # Not dot segments: an escaped "/" is not a separator, and dots inside a name stay.
        ("https://a.com/a%2F..%2Fb", "https://a.com/a%2F..%2Fb"),
        ("https://a.com/a/%2F../b", "https://a.com/a/%2F../b"),
        ("https://a.com/a/.b/..c/.../v1.2", "https://a.com/a/.b/..c/.../v1.2"),
        # The query is no path: its dots stay.
        ("https://a.com/a?p=../b", "https://a.com/a?p=../b"),
    ],
)
def test_dot_segments_are_removed(raw: str, expected: str) -> None:
    assert canonical_url(raw) == expected


def test_dot_segment_spellings_are_one_story() -> None:
    spellings = [
        "https://a.com/news/a",
        "https://a.com/news/./a",
        "https://a.com/news/b/../a",
        "https://a.com/news/b/%2E%2E/a",
        "https://a.com/x/../news/%2e/a",
    ]
    assert {canonical_url(u) for u in spellings} == {"https://a.com/news/a"}


def test_hashbang_fragments_are_kept_apart() -> None:
    # AJAX-crawlable apps route on "#!": these are two stories, not one page.
    one = canonical_url("https://spa.example/#!/story/1")
    two = canonical_url("https://spa.example/#!/story/2")
    assert (one, two) == ("https://spa.example/#!/story/1", "https://spa.example/#!/story/2")


@pytest.mark.parametrize(
    "raw, expected",
    [
        # Other fragments are places in one page: dropped, as before.
        ("https://a.com/x#top", "https://a.com/x"),
        ("https://a.com/x#", "https://a.com/x"),
        ("https://a.com/x#/story/1", "https://a.com/x"),
        ("https://a.com/x#%21/story/1", "https://a.com/x"),  # "%21" is no "!" (reserved)
        ("https://a.com/x#!", "https://a.com/x"),  # a bare hashbang names nothing more
        # A hashbang's escapes are normalized like the path's; the query is cleaned before it.
        ("https://a.com/?utm_source=x&b=1#!/a b/%7e/%2f", "https://a.com/?b=1#!/a%20b/~/%2F"),
        ("https://a.com/#!/x?id=3&utm_source=y", "https://a.com/#!/x?id=3&utm_source=y"),
        ("https://a.com/#!/x#y", "https://a.com/#!/x%23y"),
        ("https://a.com/#!/ü", "https://a.com/#!/%C3%BC"),
        ("https://A.com:443/a/../#!/s/1", "https://a.com/#!/s/1"),
    ],
)
def test_fragments(raw: str, expected: str) -> None:
    assert canonical_url(raw) == expected


def test_hashbang_relative_to_base() -> None:
    assert canonical_url("#!/story/3", "https://spa.example/app") == "https://spa.example/app#!/story/3"


def test_relative_with_base() -> None:
    assert (
        canonical_url("../b?utm_term=x", "https://News.example/a/c/d") == "https://news.example/a/b"
    )
    assert canonical_url("//cdn.example/x", "https://a.example/") == "https://cdn.example/x"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "ftp://x.example/a",
        "javascript:alert(1)",
        "mailto:a@b.c",
        "https:///nohost",
        "http://a b.com/",
        "http://[::1/",
        "http://a.com:99999/",
        "/relative/only",
        "data:text/plain,x",
    ],
)
def test_rejected_with_value_error(raw: str) -> None:
    with pytest.raises(ValueError):
        canonical_url(raw)


def test_site_of() -> None:
    assert site_of("https://WWW.BBC.co.uk:443/news") == "bbc.co.uk"
    assert site_of("https://edition.cnn.com/x") == "edition.cnn.com"
    assert site_of("not a url") == ""
    assert site_of("http://[::1") == ""


def test_site_key() -> None:
    for written in ("bbc.co.uk", "BBC.CO.UK", "www.bbc.co.uk", "bbc.co.uk.", "https://WWW.BBC.co.uk/news",
                    "http://bbc.co.uk:8080/x", "www.bbc.co.uk:8080", "BBC.co.uk.:443"):
        assert site_key(written) == "bbc.co.uk", written
    assert site_key("::1") == "::1"  # an IPv6 address keeps its last group
    assert site_key("news.bbc.co.uk") == "news.bbc.co.uk"
    assert site_key("Example") == site_key("EXAMPLE") == "example"
    assert site_key("Bücher.example") == site_key("xn--bcher-kva.example") == "xn--bcher-kva.example"
    assert site_key("www.www.example") == site_key("www.example") == "example"
    # A publisher's mobile and AMP hosts are its site, as "www." is; other subdomains are not,
    # nor are m., mobile. and amp. taken off where no name with a dot would be left.
    for written in ("m.bbc.co.uk", "MOBILE.bbc.co.uk", "https://amp.bbc.co.uk/news", "www.m.bbc.co.uk",
                    "amp.www.mobile.m.bbc.co.uk.", "m.bbc.co.uk:8080"):
        assert site_key(written) == "bbc.co.uk", written
    for other in ("mobile.de", "amp.dev", "m.example", "mm.bbc.co.uk", "sport.m.bbc.co.uk"):
        assert site_key(other) == other
    assert site_key("m.mobile.de") == site_key("www.mobile.de") == "mobile.de"
    assert site_key("m.news.bbc.co.uk") == "news.bbc.co.uk"


# --- properties --------------------------------------------------------------------------

hosts = st.from_regex(r"\A(www\.)?[a-zA-Z0-9-]{1,12}(\.[a-zA-Z]{2,6}){1,2}\Z")
segments = st.one_of(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/?#"),
        max_size=12,
    ),
    st.sampled_from([".", "..", "%2e", "%2E%2e", ".%2E", "%2F..", "..%2F"]),
)
param_names = st.one_of(
    st.sampled_from(sorted(TRACKING_PARAMS) + ["utm_source", "UTM_Campaign", "id", "page", "q"]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8),
)
params = st.lists(st.tuples(param_names, st.text(max_size=8)), max_size=6)


ASCII_SPACE = " \t\n\r\f\v"


@st.composite
def web_urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["http", "https", "HTTP", "HttpS"]))
    port = draw(st.sampled_from(["", ":80", ":443", ":8080"]))
    path = "/".join(draw(st.lists(segments, max_size=4)))
    query = "&".join(f"{k}={v}" for k, v in draw(params))
    fragment = draw(st.sampled_from(["", "#", "#top", "#!", "#!/x"]) | segments.map("#!/".__add__))
    return f"{scheme}://{draw(hosts)}{port}/{path}" + (f"?{query}" if query else "") + fragment


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(web_urls())
@example("https://a.com/%zz%7e?x=%zz&y=%")
def test_idempotent_and_clean(url: str) -> None:
    once = canonical_url(url)
    assert canonical_url(once) == once
    parts = urlsplit(once)
    assert parts.scheme in ("http", "https")
    # Only a hashbang fragment is kept, once escaped: no second "#", no space.
    assert parts.fragment == "" or (parts.fragment.startswith("!") and parts.fragment != "!")
    assert once.count("#") == (1 if parts.fragment else 0)
    assert parts.netloc == parts.netloc.lower()
    assert not parts.netloc.endswith({"http": ":80", "https": ":443"}[parts.scheme])
    names = [k for k, _ in parse_qsl(parts.query, keep_blank_values=True)]
    assert not any(is_tracking_param(k) for k in names)
    assert names == sorted(names)
    assert " " not in once
    assert not {".", ".."} & set(parts.path.split("/"))


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(web_urls(), st.sampled_from(sorted(TRACKING_PARAMS) + ["utm_medium"]), st.text(max_size=5))
def test_adding_a_tracking_param_changes_nothing(url: str, name: str, value: str) -> None:
    base, hash_, fragment = url.partition("#")
    assume(base == base.rstrip(ASCII_SPACE))  # see the site test below
    tracked = base + ("&" if "?" in base else "?") + f"{name}={quote(value, safe='')}"
    assert canonical_url(tracked + hash_ + fragment) == canonical_url(url)


site_params = st.sampled_from(
    sorted((site, name) for site, names in SITE_TRACKING_PARAMS.items() for name in names)
)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(web_urls(), site_params, st.sampled_from(["", "www.", "M."]), st.text(max_size=5))
def test_adding_a_site_tracking_param_on_its_site_changes_nothing(
    url: str, site_param: tuple[str, str], sub: str, value: str
) -> None:
    site, name = site_param
    # A URL's surrounding whitespace goes (pasted links): a query value that ends the URL in a
    # space loses it while it is last, and keeps it (escaped) once a parameter follows.
    assume(url.split("#")[0] == url.split("#")[0].rstrip(ASCII_SPACE))
    parts = urlsplit(url.split("#")[0])
    on_site = parts._replace(netloc=sub + site).geturl()
    tracked = on_site + ("&" if parts.query else "?") + f"{name}={quote(value, safe='')}"
    assert canonical_url(tracked) == canonical_url(on_site)


@settings(max_examples=500)
@given(st.text(max_size=60))
@example("http://[::1")
@example("http://a.com:65536/")
@example("http://\ud800.com/")
@example("https://a.com/\ud800")
def test_arbitrary_text_is_a_url_or_value_error(text: str) -> None:
    try:
        out = canonical_url(text)
    except ValueError:
        return
    assert out.startswith(("http://", "https://"))
    assert canonical_url(out) == out


# Text made mostly of the characters the rules act on: separators, dots, escapes, "#!".
url_tails = st.lists(
    st.sampled_from(["/", ".", "..", "%2e", "%2E", "%2f", "%", "%7e", "#", "#!", "!", "?", "&",
                     "=", "utm_source", "wt_mc", "partner", "a", "Z", " ", "ü", "\x85", "+"]),
    max_size=16,
).map("".join)


@settings(max_examples=1000)
@given(st.sampled_from(["https://a.com", "http://www.nytimes.com:80", "https://B.bbc.co.uk."]),
       url_tails)
@example("https://a.com", "/a/%2e%2e/%2E/b#!/x#!/../y?%")
def test_idempotent_on_tails_with_dots_escapes_and_hashbangs(origin: str, tail: str) -> None:
    try:
        once = canonical_url(origin + tail)
    except ValueError:
        return
    assert canonical_url(once) == once
    assert not {".", ".."} & set(urlsplit(once).path.split("/"))


@settings(max_examples=300)
@given(st.text(max_size=30), st.text(max_size=30))
def test_arbitrary_relative_text_with_base(text: str, path: str) -> None:
    try:
        out = canonical_url(text, f"https://base.example/{path}")
    except ValueError:
        return
    assert canonical_url(out) == out


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(web_urls(), st.sampled_from(["", "www.", "WWW.", "www.www."]))
def test_site_key_matches_a_stored_site_however_the_filter_names_it(url: str, www: str) -> None:
    stored = site_of(canonical_url(url))  # what collected stories carry
    host = urlsplit(url).hostname or ""
    for written in (url, stored, stored.upper(), www + host, www + host.upper() + "."):
        assert site_key(written) == site_key(stored), written
    assert site_key(site_key(url)) == site_key(url)


def test_url_variants_are_the_other_scheme_trailing_slash_and_www_nearest_first() -> None:
    assert url_variants("https://a.example/news/1?x=2") == [
        "https://a.example/news/1/?x=2", "http://a.example/news/1?x=2", "http://a.example/news/1/?x=2",
        "https://www.a.example/news/1?x=2", "https://www.a.example/news/1/?x=2",
        "http://www.a.example/news/1?x=2", "http://www.a.example/news/1/?x=2"]
    assert url_variants("http://www.a.example/news/1/")[:4] == [
        "http://www.a.example/news/1", "https://www.a.example/news/1/", "https://www.a.example/news/1",
        "http://a.example/news/1/"]  # a link to the bare domain of a "www." site
    assert url_variants("https://www.a.example/") == [  # the root has one path
        "http://www.a.example/", "https://a.example/", "http://a.example/"]
    assert url_variants("https://a.example:8443/x")[2:4] == [  # a port stays as it is
        "http://a.example:8443/x/", "https://www.a.example:8443/x"]
    # Addresses and one-label hosts have no "www." spelling; "www.com" is no "com".
    for url in ("https://127.0.0.1:8080/a", "http://localhost/a", "http://[::1]/a",
                "https://www.com/a"):
        assert all(urlsplit(v).netloc == urlsplit(url).netloc for v in url_variants(url)), url


def test_every_spelling_of_a_page_has_one_spelling_key() -> None:
    url = "https://a.example/news/1?x=2"
    assert {spelling_key(u) for u in (url, *url_variants(url))} == {spelling_key(url)}
    assert spelling_key("https://a.example/news/2") != spelling_key(url)


@pytest.mark.parametrize(("host", "ascii"), [
    ("faß.de", "xn--fa-hia.de"),  # IDNA 2003 made it fass.de: another domain
    ("σίσυφος.gr", "xn--kxa6ajbbmh.gr"),  # the final sigma kept (IDNA 2003: σ)
    ("Bücher.de", "xn--bcher-kva.de"),
    ("☃.net", "xn--n3h.net"),  # a symbol IDNA 2008 refuses: browsers and yarl still take it
    # A capital sigma before a hyphen or a digit: str.lower() made it a final sigma, so the
    # URL named the domain "ας-ασ.gr" while "ασ-ασ.gr" was fetched (and its page kept as the
    # other domain's, for every caller asking by that other domain's URL).
    ("ΑΣ-ΑΣ.gr", "xn----ylbb4ec.gr"),
    ("ΑΣ1.gr", "xn--1-ylb8c.gr"),
    # A full-width (or ideographic) dot at the end is a trailing dot: it stayed, so the URL
    # was not the one of the same page without it, nor canonical (a second pass dropped it).
    ("News.Example\uff0e", "news.example"),
    ("news.example\u3002", "news.example"),
])
def test_idn_hosts_are_spelt_as_browsers_and_the_fetcher_spell_them(host, ascii):
    import yarl

    url = f"https://{host}/a"
    assert canonical_url(url) == f"https://{ascii}/a"
    assert canonical_url(canonical_url(url)) == canonical_url(url)
    assert site_key(url) == site_key(host) == ascii
    # What aiohttp asks DNS for and fetches (a trailing dot names the same DNS name).
    assert yarl.URL(url).raw_host.rstrip(".") == ascii
