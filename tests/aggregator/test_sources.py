"""Sources: the shipped sources.toml, durations, defaults, the digest and every error path."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator.errors import ConfigError
from aggregator.model import Selectors, SourceSpec
from aggregator.settings import load_settings
from aggregator.sources import (
    MAX_DURATION_S,
    SELECTOR_KEYS,
    SOURCE_KEYS,
    category_slug,
    duration_text,
    load_sources,
    name_slug,
    parse_duration,
    source_table,
    sources_digest,
    trial_source,
)

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "config" / "sources.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sources.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --- the shipped file ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> list[SourceSpec]:
    return load_sources(SHIPPED)


def test_shipped_settings_point_at_the_shipped_sources():
    settings = load_settings(REPO / "config" / "tidings.toml", env={})
    specs = load_sources(settings.sources_file,
                         default_interval_s=settings.collect.default_interval_s)
    assert settings.sources_file == SHIPPED.resolve()
    assert len(specs) >= 20


def test_shipped_sources_are_enough_and_balanced(shipped):
    enabled = [s for s in shipped if s.enabled]
    assert len(enabled) >= 20
    by_category = Counter(s.category for s in enabled)
    politics, entertainment = by_category["politics"], by_category["entertainment"]
    assert politics >= 10 and entertainment >= 10
    assert abs(politics - entertainment) <= 3
    assert politics + entertainment == len(enabled)


def test_shipped_sources_are_many_publishers_on_https(shipped):
    hosts = {urlsplit(s.url).hostname for s in shipped if s.enabled}
    assert len(hosts) >= 15
    # Country-code domains beside .com: .uk, .ca, .au at least (several countries).
    suffixes = {h.rsplit(".", 1)[-1] for h in hosts}
    assert {"uk", "ca", "au", "com"} <= suffixes
    assert all(s.url.startswith("https://") for s in shipped)
    assert len({s.url for s in shipped}) == len(shipped)


def test_shipped_sources_show_every_kind(shipped):
    kinds = {s.kind for s in shipped}
    assert {"sitemap", "html"} <= kinds
    html = [s for s in shipped if s.kind == "html"]
    assert all(isinstance(s.selectors, Selectors) and s.selectors.item and s.selectors.link
               for s in html)


def test_shipped_header_explains_every_key():
    text = SHIPPED.read_text(encoding="utf-8")
    header = text.split("\n[[source]]", 1)[0]
    assert all(line.startswith("#") for line in header.splitlines() if line.strip())
    for key in SOURCE_KEYS:
        if key == "selectors":
            assert "#   [source.selectors]" in header
        else:  # each key opens its own paragraph: "#   key   what it does"
            assert re.search(rf"^#   {key} ", header, re.M), key
    for key in SELECTOR_KEYS:
        assert re.search(rf"^#\s+.*\b{key}\b.*\((required|optional)\)", header, re.M), key
    for kind in ("auto", "feed", "sitemap", "html"):
        assert f'"{kind}"' in header


def test_every_shipped_source_has_a_comment():
    lines = SHIPPED.read_text(encoding="utf-8").splitlines()
    names = [line for line in lines if re.match(r"name\s*=", line)]
    assert len(names) >= 20
    assert all("#" in line.split("=", 1)[1] for line in names), "each name line says what it is"


# --- durations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "seconds"), [
    ("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400), ("1h30m", 5400),
    (" 1H 30M ", 5400), ("900", 900), (900, 900), (1, 1)])
def test_parse_duration(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "soon", "15x", "m15", "-5m", "0s", "0", 0, -3, True,
                                   1.5, "1.5h", None, "15 minutes"])
def test_parse_duration_rejects(value):
    with pytest.raises(ValueError):
        parse_duration(value)


@given(st.integers(1, 10**6), st.sampled_from([("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]))
def test_parse_duration_units(n, unit):
    suffix, factor = unit
    if n * factor > MAX_DURATION_S:  # a year at most: a database column holds it
        with pytest.raises(ValueError, match="at most 365d"):
            parse_duration(f"{n}{suffix}")
    else:
        assert parse_duration(f"{n}{suffix}") == n * factor
    assert parse_duration(n) == parse_duration(str(n)) == n


# --- defaults -----------------------------------------------------------------------------------


def test_minimal_source_gets_defaults(tmp_path):
    path = write(tmp_path, '[[source]]\nname = "a"\nurl = "http://127.0.0.1:8080/f.xml"\n'
                           'category = " politics "\n')
    (spec,) = load_sources(path, default_interval_s=1234)
    assert spec == SourceSpec(name="a", url="http://127.0.0.1:8080/f.xml", category="politics",
                              kind="auto", interval_s=1234, enabled=True, weight=1.0,
                              full_text=False, selectors=None)


def test_full_source_round_trips(tmp_path):
    path = write(tmp_path, """
[[source]]
name = "site_1"
url = "https://example.org/news"
category = "entertainment"
kind = "html"
interval = "2h"
enabled = false
weight = 3
full_text = true
timezone = "Europe/Berlin"
[source.selectors]
item = "article"
link = "h2 a"
date = "time"
next = "a.older"
pages = 3

[[source]]
name = "b"
url = "https://example.org/sitemap.xml"
category = "politics"
kind = "sitemap"
interval = 600
""")
    first, second = load_sources(path)
    assert first == SourceSpec(name="site_1", url="https://example.org/news",
                               category="entertainment", kind="html", interval_s=7200,
                               enabled=False, weight=3.0, full_text=True,
                               selectors=Selectors(item="article", link="h2 a", date="time",
                                                   next="a.older", pages=3,
                                                   timezone="Europe/Berlin"))
    assert (second.kind, second.interval_s, second.selectors) == ("sitemap", 600, None)


@pytest.mark.parametrize("kind", ["auto", "feed", "sitemap"])
def test_a_feeds_or_sitemaps_timezone_loads(tmp_path, kind):
    """Feeds and sitemaps write dates without a zone too ("Tue, 25 Nov 2026 14:05:00"): the
    key was refused on them. It rides in selectors that carry it alone (model.zone_only)."""
    path = write(tmp_path, A.replace("[[source]]", f'[[source]]\nkind = "{kind}"')
                 + 'timezone = " Asia/Kolkata "\n' + A.replace('"a"', '"b"'))
    zoned, plain = load_sources(path)
    assert zoned.selectors == Selectors(item="", link="", timezone="Asia/Kolkata")
    assert plain.selectors is None


def test_empty_file_has_no_sources(tmp_path):
    assert load_sources(write(tmp_path, "# nothing yet\n")) == []


# --- errors: each names file, line, source and key ----------------------------------------------

A = '[[source]]\nname = "a"\nurl = "https://a.example/feed"\ncategory = "politics"\n'  # lines 1-4

SOURCE_ERRORS = [
    # A key one typo from a known one is named: the list of every key left it to be spotted.
    (A + 'intervall = "15m"\n', 5, "intervall", "source 'a' (#1)",
     "unknown key (did you mean 'interval'?) (known: name,"),
    (A + A.replace('"a"', '"b"') + "wieght = 2\n", 9, "wieght", "source 'b' (#2)",
     "unknown key (did you mean 'weight'?)"),
    (A + "language = 'en'\n", 5, "language", "source 'a' (#1)", "unknown key (known: name,"),
    ('[[source]]\nname = "a"\ncategory = "x"\n', 1, "url", "source 'a' (#1)",
     "missing required key 'url'"),
    ('[[source]]\nurl = "https://a.example/"\ncategory = "x"\n', 1, "name", "source #1",
     "missing required key 'name'"),
    (A.replace('"a"', '"BBC News"'), 2, "name", "source #1", "name must be a slug"),
    (A.replace('"a"', '"-a"'), 2, "name", "source #1", "name must be a slug"),
    (A.replace('"a"', "7"), 2, "name", "source #1", "name must be a slug"),
    (A + "\n" + A, 7, "name", "source 'a' (#2)", "duplicate name 'a' (first at line 2)"),
    (A.replace("https://a.example/feed", "ftp://a.example/feed"), 3, "url", "source 'a'",
     "absolute http(s) URL"),
    (A.replace("https://a.example/feed", "/feed.xml"), 3, "url", "source 'a'",
     "absolute http(s) URL"),
    (A.replace('"https://a.example/feed"', "1"), 3, "url", "source 'a'", "url must be a string"),
    (A.replace('"politics"', '"  "'), 4, "category", "source 'a'", "non-empty string"),
    (A.replace('"politics"', '"poli\\u0000tics"'), 4, "category", "source 'a'",
     "must not hold control characters"),
    # Longer than their database columns: PostgreSQL refused the sync, with a traceback.
    (A.replace('"politics"', '"' + "p" * 81 + '"'), 4, "category", "source 'a'",
     "category must be at most 80 characters, got 81"),
    (A.replace('"a"', '"' + "a" * 121 + '"'), 2, "name", "source 'aaa",
     "name must be at most 120 characters, got 121"),
    (A + 'kind = "rss"\n', 5, "kind", "source 'a'", "kind must be one of auto, feed"),
    (A + 'interval = "soon"\n', 5, "interval", "source 'a'", "expected a duration"),
    (A + "interval = 0\n", 5, "interval", "source 'a'", "must be positive"),
    (A + "interval = true\n", 5, "interval", "source 'a'", "expected a duration"),
    (A + 'interval = "99999999999999999999999d"\n', 5, "interval", "source 'a'", "at most 365d"),
    (A.replace("https://a.example/feed", "http://[::1/x"), 3, "url", "source 'a'",
     "not a valid URL"),
    (A.replace("https://a.example/feed", "http://127.0.0.1:99999/"), 3, "url", "source 'a'",
     "not a valid URL"),
    # Port 0 is no server's: loaded, the source failed every round ("Cannot connect").
    (A.replace("https://a.example/feed", "http://127.0.0.1:0/feed"), 3, "url", "source 'a'",
     "url has port 0"),
    # A host no URL can have: the loader took it, and comparing the sources' canonical URLs
    # (repeated_feeds) then stopped every command that loads the file with a traceback.
    (A.replace("https://a.example/feed", "http://a example.com/feed"), 3, "url", "source 'a'",
     "not a valid URL (bad host name 'a example.com')"),
    (A.replace("https://a.example/feed", "http://a..example/feed"), 3, "url", "source 'a'",
     "not a valid URL"),
    (A + "weight = 11\n", 5, "weight", "source 'a'", "between 0 and 10"),
    (A + "weight = -0.5\n", 5, "weight", "source 'a'", "between 0 and 10"),
    (A + 'weight = "high"\n', 5, "weight", "source 'a'", "weight must be a number"),
    (A + "weight = true\n", 5, "weight", "source 'a'", "weight must be a number"),
    (A + 'enabled = "yes"\n', 5, "enabled", "source 'a'", "true or false"),
    (A + "full_text = 1\n", 5, "full_text", "source 'a'", "true or false"),
    (A + '[source.selectors]\nitem = "li"\nlink = "a"\n', 5, "selectors", "source 'a'",
     "only for kind = \"html\""),
    (A + 'kind = "html"\n', 5, "kind", "source 'a'", "needs a [source.selectors] table"),
    (A + 'kind = "html"\n[source.selectors]\nitem = "li"\n', 6, "selectors", "source 'a'",
     "selectors need 'link'"),
    (A + 'kind = "html"\n[source.selectors]\nitem = "li"\nlink = "a"\nheadline = "h2"\n', 9,
     "selectors.headline", "source 'a'", "unknown selector"),
    (A + 'kind = "html"\n[source.selectors]\nitem = "li"\nlnk = "a"\n', 8,
     "selectors.lnk", "source 'a'", "unknown selector (did you mean 'link'?)"),
    (A + 'kind = "html"\n[source.selectors]\nitem = "li"\nlink = "a["\n', 8, "selectors.link",
     "source 'a'", "invalid CSS selector"),
    (A + 'kind = "html"\n[source.selectors]\nitem = ""\nlink = "a"\n', 7, "selectors.item",
     "source 'a'", "non-empty string"),
    (A + 'kind = "html"\n[source.selectors]\nitem = "li"\nlink = "a"\ndate = 5\n', 9,
     "selectors.date", "source 'a'", "non-empty string"),
    (A + 'kind = "html"\nselectors = { item = "li", link = "a", author = ".by" }\n', 6,
     "selectors.author", "source 'a'", "unknown selector"),
    (A + 'kind = "html"\nselectors = "li"\n', 6, "selectors", "source 'a'", "must be a table"),
    (A + 'kind = "html"\n[source.selectors]\nitem = "li"\nlink = "a"\npages = 11\n', 9,
     "selectors.pages", "source 'a'", "pages must be a whole number from 1 to 10, got 11"),
    (A + 'kind = "html"\n[source.selectors]\nitem = "li"\nlink = "a"\npages = "2"\n', 9,
     "selectors.pages", "source 'a'", "pages must be a whole number"),
    (A + 'kind = "html"\n[source.selectors]\nitem = "li"\nlink = "' + ":is(" * 3000 + "a"
     + ")" * 3000 + '"\n', 8, "selectors.link", "source 'a'", "invalid CSS selector"),
    # A listing's time zone, looked up at load: a typo was stories an hour or two off.
    (A + 'kind = "html"\ntimezone = "Europe/Berlinn"\n[source.selectors]\nitem = "li"\n'
     'link = "a"\n', 6, "timezone", "source 'a'", "unknown time zone 'Europe/Berlinn' (an IANA"),
    (A + 'kind = "html"\ntimezone = "Europe"\n[source.selectors]\nitem = "li"\nlink = "a"\n',
     6, "timezone", "source 'a'", "unknown time zone 'Europe'"),
    (A + 'kind = "html"\ntimezone = "../../etc/passwd"\n[source.selectors]\nitem = "li"\n'
     'link = "a"\n', 6, "timezone", "source 'a'", "unknown time zone"),
    (A + 'kind = "html"\ntimezone = 1\n[source.selectors]\nitem = "li"\nlink = "a"\n', 6,
     "timezone", "source 'a'", "timezone must be an IANA time zone name"),
    # Every kind reads it now, and checks it the same way.
    (A + 'kind = "feed"\ntimezone = "Europe/Berlinn"\n', 6, "timezone", "source 'a'",
     "unknown time zone 'Europe/Berlinn' (an IANA"),
    (A + 'timezone = ""\nkind = "sitemap"\n', 5, "timezone", "source 'a'",
     "timezone must be an IANA time zone name"),
    (A + 'kind = "html"\n[source.selectors]\nitem = "li"\nlink = "a"\nnext = "a.older"\n', 9,
     "selectors.next", "source 'a'", "next is followed only with pages > 1"),
    (A + 'kind = "html"\n[source.selectors]\nitem = "li"\nlink = "a"\nnext = "a["\npages = 2\n',
     9, "selectors.next", "source 'a'", "invalid CSS selector"),
    # Item rules: compiled at load, so a typo is its line, not a failure in every round.
    (A + "keep = '(sport'\n", 5, "keep", "source 'a'",
     "keep is not a valid regular expression: missing ) at position 6"),
    (A + 'enabled = true\nblock = \'[Ll]ive:\\\'\n', 6, "block", "source 'a'",
     "block is not a valid regular expression"),
    (A + "block = 'a{99999999999}'\n", 5, "block", "source 'a'", "not a valid regular expression"),
    (A + "block = '[z-a]'\n", 5, "block", "source 'a'", "bad character range"),
    (A + "keep = ''\n", 5, "keep", "source 'a'", "must not be empty (leave the key out"),
    (A + "keep = ['sport', 'music']\n", 5, "keep", "source 'a'",
     "keep must be a regular expression in a string"),
    (A + "block = '" + "x|" * 250 + "y'\n", 5, "block", "source 'a'",
     "block must be at most 500 characters, got 501"),
]


@pytest.mark.parametrize(("text", "line", "key", "label", "fragment"), SOURCE_ERRORS)
def test_source_errors_name_file_source_line_and_key(tmp_path, text, line, key, label,
                                                     fragment):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_sources(path)
    err, message = info.value, str(info.value)
    assert (err.file, err.line, err.key) == (str(path), line, key)
    assert message.startswith(f"{path}:{line}: {label}")
    assert f"(key '{key}')" in message
    assert fragment in message


# What an error quotes is the value as the file writes it: `interval = true` was answered
# "got True", Python's spelling, which the operator had to translate back to find the line.
QUOTED_AS_WRITTEN = [
    ("interval = true", "got true"),
    ("enabled = 1", "got 1"),
    ("full_text = {on = true}", "got {on = true}"),
    ('kind = ["feed"]', "got ['feed']"),
    ("weight = false", "got false"),
    ("weight = nan", "got nan"),
    ("interval = 1979-05-27", "got 1979-05-27"),
    ("keep = 07:32:00", "got 07:32:00"),
    ("timezone = 1979-05-27T07:32:00Z", "got 1979-05-27T07:32:00+00:00"),
    ('keep = ["a", false, {"x y" = 1}]', """got ['a', false, {"x y" = 1}]"""),
]


@pytest.mark.parametrize(("line", "quoted"), QUOTED_AS_WRITTEN)
def test_errors_quote_values_as_toml_writes_them(tmp_path, line, quoted):
    with pytest.raises(ConfigError) as info:
        load_sources(write(tmp_path, A + line + "\n"))
    assert str(info.value).endswith(f"{quoted} (key '{line.split()[0]}')"), str(info.value)
    assert not re.search(r"True|False|None|datetime", str(info.value))


def test_a_string_with_a_quote_or_a_control_character_is_quoted_as_toml_escapes_it(tmp_path):
    with pytest.raises(ConfigError, match="""got "it's" \\(key 'name'\\)"""):
        load_sources(write(tmp_path, A.replace('"a"', '"it\'s"')))
    with pytest.raises(ConfigError) as info:
        load_sources(write(tmp_path, A.replace('"politics"', '"a\\u0000b"')))
    assert 'got "a\\u0000b"' in str(info.value), str(info.value)


def test_names_and_categories_as_long_as_their_columns_load(tmp_path):
    path = write(tmp_path, A.replace('"a"', '"' + "a" * 120 + '"').replace('"politics"', '"' + "p" * 80 + '"'))
    (spec,) = load_sources(path)
    assert len(spec.name) == 120 and len(spec.category) == 80


def test_every_bad_source_is_reported_at_once(tmp_path):
    """One pass names each broken source (its first problem), so one edit fixes the file."""
    path = write(tmp_path, A.replace("https://a.example/feed", "notaurl") + "\n"
                 + A.replace('"a"', '"b"') + 'interval = "5 parsecs"\n' + "\n"
                 + A.replace('"a"', '"c"') + "\n" + A)
    with pytest.raises(ConfigError) as info:
        load_sources(path)
    err = info.value
    assert (err.line, err.key) == (3, "url") and [(e.line, e.key) for e in err.also] == [
        (10, "interval"), (18, "name")]
    lines = str(err).splitlines()
    assert len(lines) == 3 and lines[0].startswith(f"{path}:3: source 'a' (#1)")
    assert lines[1].startswith(f"{path}:10: source 'b' (#2)") and "duration" in lines[1]
    # The second 'a' is a duplicate of a source that failed: still reported, as a duplicate.
    assert lines[2].startswith(f"{path}:18: source 'a' (#4)") and "duplicate name" in lines[2]


@pytest.mark.parametrize(("text", "line", "key", "fragment"), [
    ('title = "my sources"\n' + A, 1, "title", "unknown top-level key (a sources file"),
    (A.replace("[[source]]", "[[sources]]"), 1, "sources",
     "unknown top-level key (did you mean 'source'?)"),
    ('source = "bbc"\n', 1, "source", "array of [[source]] tables"),
    ("[source]\nname = 'a'\n", 1, "source", "array of [[source]] tables"),
])
def test_file_level_errors(tmp_path, text, line, key, fragment):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_sources(path)
    assert (info.value.line, info.value.key) == (line, key)
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert fragment in str(info.value)


def test_toml_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, A + 'weight = \n')
    with pytest.raises(ConfigError, match="invalid TOML") as info:
        load_sources(path)
    assert info.value.line == 5
    assert str(info.value).startswith(f"{path}:5: ")


@pytest.mark.parametrize(("text", "line", "key"), [
    (A + A.replace('"a"', '"b"') + 'name = "b\n', 9, "source.name"),  # an unclosed string
    (A + 'name = "again"\n', 5, "source.name"),  # a key set twice
    (A + 'kind = "html"\n[source.selectors]\nitem = "div"\nlink = a\n', 8, "source.selectors.link"),
    (A + "this is no key\n", 5, ""),  # no key to name: the line alone
    # A line separator in a string (pasted from a web page) is no line of TOML's: counted as
    # one, the line above the error was read and named "source.url".
    ('[[source]]\nname = "a\u2028b"\nurl = "https://a.example/feed"\ncategory = 1 2\n', 4,
     "source.category"),
])
def test_toml_syntax_error_names_its_key(tmp_path, text, line, key):
    """A syntax error in the middle of the file named its file and line, not its key, as
    every other error in it does (an operator editing a running tidings reads the log's
    `sources.invalid` line): the key is read from the line, its table from the header above."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match="invalid TOML") as info:
        load_sources(path)
    assert (info.value.line, info.value.key) == (line, key)
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert str(info.value).endswith(f" (key '{key}')" if key else ")")


@pytest.mark.parametrize(("text", "line"), [
    (A + "\n[source", 6),  # a table header left open on the last line
    (A + 'weight = 1.0\nsummary = """a\n\n', 6),  # a string left open, blank lines after
])
def test_toml_syntax_error_at_the_end_of_the_file_names_its_last_line(tmp_path, text, line):
    """tomllib says "(at end of document)" for what the end of the file left open: the
    error had no line while every other syntax error names one."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match="invalid TOML") as info:
        load_sources(path)
    assert info.value.line == line
    assert str(info.value).startswith(f"{path}:{line}: ")


def test_a_multiline_string_never_closed_is_named_where_it_opens(tmp_path):
    """tomllib reports it "(at end of document)": the last line of the file was named, a
    whole sources file away from the string to close."""
    path = write(tmp_path, A + "keep = '''(?i)news\n" + A.replace('"a"', '"b"') + "\n")
    with pytest.raises(ConfigError, match="invalid TOML") as info:
        load_sources(path)
    assert (info.value.line, info.value.key) == (5, "source.keep")
    assert str(info.value).startswith(f"{path}:5: ")
    assert str(info.value).endswith("is never closed (key 'source.keep')")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found") as info:
        load_sources(tmp_path / "none.toml")
    assert str(tmp_path / "none.toml") in str(info.value)


# --- digest -------------------------------------------------------------------------------------


def test_digest_ignores_order_and_sees_every_field(shipped):
    digest = sources_digest(shipped)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert sources_digest(reversed(shipped)) == digest
    assert sources_digest(load_sources(SHIPPED)) == digest
    html = next(s for s in shipped if s.selectors is not None)
    changes = {"name": "renamed", "url": "https://changed.example/", "category": "sport",
               "kind": "feed", "interval_s": html.interval_s + 1, "enabled": not html.enabled,
               "weight": html.weight + 0.5, "full_text": not html.full_text,
               "selectors": dataclasses.replace(html.selectors, image="picture img"),
               "keep": "politics", "block": "^Live:"}
    assert set(changes) == {f.name for f in dataclasses.fields(SourceSpec)}
    for field_name, value in changes.items():
        changed = [dataclasses.replace(s, **{field_name: value}) if s is html else s
                   for s in shipped]
        assert sources_digest(changed) != digest, field_name
    assert sources_digest([s for s in shipped if s is not html]) != digest


def test_a_source_reading_what_an_earlier_one_reads_is_named_in_a_warning(tmp_path, caplog):
    """Two sources with one URL were fetched twice a round without a word."""
    path = write(tmp_path, (
        '[[source]]\nname = "a"\nurl = "https://news.example/feed.xml"\ncategory = "x"\n'
        '[[source]]\nname = "b"\nurl = "https://NEWS.example/feed.xml?utm_source=x"\ncategory = "y"\n'
        '[[source]]\nname = "c"\nurl = "https://news.example/feed.xml"\ncategory = "x"\nenabled = false\n'
        '[[source]]\nname = "d"\nurl = "https://news.example/"\ncategory = "x"\nkind = "html"\n'
        '[source.selectors]\nitem = "article"\nlink = "a"\n'
        '[[source]]\nname = "e"\nurl = "https://news.example/"\ncategory = "y"\nkind = "html"\n'
        '[source.selectors]\nitem = "li.story"\nlink = "a"\n'))
    with caplog.at_level("WARNING", logger="tidings.sources"):
        specs = load_sources(path)
    assert [s.name for s in specs] == ["a", "b", "c", "d", "e"]  # nothing refused
    warned = [r.getMessage() for r in caplog.records if r.name == "tidings.sources"]
    # b repeats a (the same page once canonical); c is disabled; d and e read other items.
    assert len(warned) == 1, warned
    assert "line 7: source 'b' reads the same URL as 'a' (line 3)" in warned[0]
    assert str(path) in warned[0]


def test_rules_load_as_written_and_a_feed_split_by_them_is_not_a_repeat(tmp_path, caplog):
    """One general feed filed under two categories by rules is two sources, not a feed read
    twice by mistake; the rules are kept as written (a literal string keeps its backslashes)."""
    path = write(tmp_path, (
        '[[source]]\nname = "news"\nurl = "https://news.example/all.xml"\ncategory = "politics"\n'
        "block = '^Live:|/sport/'\n"
        '[[source]]\nname = "sport"\nurl = "https://news.example/all.xml"\ncategory = "sport"\n'
        "keep = '\\bsport\\b'\n"))
    with caplog.at_level("WARNING", logger="tidings.sources"):
        news, sport = load_sources(path)
    assert (news.keep, news.block) == ("", "^Live:|/sport/")
    assert (sport.keep, sport.block) == (r"\bsport\b", "")
    assert not [r for r in caplog.records if r.name == "tidings.sources"]


def test_shipped_sources_read_each_feed_once(caplog):
    with caplog.at_level("WARNING", logger="tidings.sources"):
        load_sources(SHIPPED)
    assert not [r for r in caplog.records if r.name == "tidings.sources"]


def test_a_url_with_a_password_is_refused_at_load_without_echoing_it(tmp_path):
    # The fetcher refuses URLs with credentials, but the file took them: the source then
    # failed every round with "URLs with credentials are not allowed: http://reader:s3cret@…",
    # the password in the log, the database's last_error and `sources list`.
    path = write(tmp_path, '[[source]]\nname = "a"\nurl = "http://reader:s3cret@feeds.example/rss"\n'
                           'category = "politics"\n')
    with pytest.raises(ConfigError) as e:
        load_sources(path)
    assert "user name or password" in str(e.value) and "s3cret" not in str(e.value)
    assert ":3:" in str(e.value)  # the line of the url


def test_a_source_table_with_a_character_beyond_the_bmp_loads(tmp_path):
    """json.dumps wrote it as a surrogate pair, which TOML refuses: `sources check URL`'s
    table to paste did not load."""
    spec = trial_source("https://a.example/🙂")
    assert spec is not None and spec.name == "a-example"
    path = tmp_path / "s.toml"
    path.write_text(source_table(spec).replace('category = ""', 'category = "x"'), encoding="utf-8")
    assert load_sources(path)[0].url == "https://a.example/🙂"


def test_a_trial_source_is_named_after_its_host_folded_to_ascii():
    assert trial_source("https://www.bücher.example/feed").name == "bucher-example"
    assert name_slug("Économie — le fil") == "economie-le-fil"


def test_a_title_with_its_own_dashes_gives_one_dash_between_words():
    """A feed titled "tagesschau.de - Die Nachrichten der ARD" was suggested as
    "tagesschau-de---die-nachrichten-der-ard": the title's "-" was kept between the two "-"
    its spaces became. An OPML folder named so gave such a category too."""
    assert trial_source("http://127.0.0.1:8080/feed", "tagesschau.de - Die Nachrichten der ARD").name == \
        "tagesschau-de-die-nachrichten-der-ard"
    assert name_slug("Lab -- Notes _-_ 2026") == "lab-notes-2026"
    assert name_slug("bbc_news") == "bbc_news"  # an underscore alone is no separator to collapse
    assert category_slug("Politik - Inland") == "politik-inland"


def test_a_trial_source_on_an_ip_address_is_named_after_its_feed_or_address_and_port():
    """`sources check http://127.0.0.1:8080/feed.xml` suggested "127-0-0-1" (and
    `http://[::1]:8080/feed` "1"): an address names no publisher, and two local feeds on
    two ports got one name. The feed's title names it, else the address with its port."""
    assert trial_source("http://127.0.0.1:8080/feed.xml").name == "127-0-0-1-8080"
    assert trial_source("http://127.0.0.1:8080/feed.xml", "Local Wire").name == "local-wire"
    assert trial_source("http://[::1]:8080/feed").name == "ipv6-1-8080"
    assert trial_source("http://[2001:db8::5]/feed", "日本").name == "ipv6-2001-db8-5"
    assert trial_source("http://[::1]/feed", "Lab — Notes").name == "lab-notes"
    # A host's name is the publisher's: a feed's title does not replace it.
    assert trial_source("https://www.news.example/feed", "Top Stories").name == "news-example"


def test_a_trial_source_is_not_named_as_a_source_of_the_file():
    """A second feed of a host the file reads was suggested under the first one's name:
    pasted, the file no longer loaded (two sources of one name)."""
    taken = ["news-example", "news-example-2", "local-wire"]
    assert trial_source("https://www.news.example/world.xml", taken=taken).name == "news-example-3"
    assert trial_source("http://127.0.0.1:8080/feed.xml", "Local Wire", taken).name == "local-wire-2"
    assert trial_source("https://other.example/feed", taken=taken).name == "other-example"


@given(st.integers(1, MAX_DURATION_S))
def test_duration_text_is_what_the_file_would_say(seconds):
    """`sources list` shows intervals as sources.toml writes them: read back, the same."""
    assert parse_duration(duration_text(seconds)) == seconds
    assert [duration_text(s) for s in (90, 900, 5400, 86400)] == ["1m30s", "15m", "1h30m", "1d"]


def test_an_interval_below_the_minimum_is_named_in_a_warning(tmp_path, caplog):
    """An `interval` under [collect] min_interval_s ("90s" beside the shipped 300) was raised
    to the minimum without a word: the source was checked every 5 minutes, not 90 s. Named
    now, as the file's errors are (file, line, key); still loaded, not refused. A disabled
    source, one at the minimum, and one that sets no interval say nothing."""
    min_s = load_settings(REPO / "config" / "tidings.toml", env={}).collect.min_interval_s
    assert min_s == 300
    path = write(tmp_path, (
        '[[source]]\nname = "fast"\nurl = "https://news.example/a.xml"\ncategory = "x"\n'
        'interval = "90s"\n'
        '[[source]]\nname = "edge"\nurl = "https://news.example/b.xml"\ncategory = "x"\n'
        'interval = "5m"\n'
        '[[source]]\nname = "off"\nurl = "https://news.example/c.xml"\ncategory = "x"\n'
        'interval = 60\nenabled = false\n'
        '[[source]]\nname = "plain"\nurl = "https://news.example/d.xml"\ncategory = "x"\n'))
    with caplog.at_level("WARNING", logger="tidings.sources"):
        specs = load_sources(path, default_interval_s=900, min_interval_s=min_s)
    assert [(s.name, s.interval_s) for s in specs] == [("fast", 90), ("edge", 300), ("off", 60),
                                                       ("plain", 900)]
    warned = [r.getMessage() for r in caplog.records if r.name == "tidings.sources"]
    assert warned == [f"sources.interval_raised {path}:5: source 'fast' (#1): interval 1m30s is "
                      "below [collect] min_interval_s (5m), so the source is checked no more "
                      "often than every 5m; lower min_interval_s in the settings file to check "
                      "it more often (key 'interval')"], warned
