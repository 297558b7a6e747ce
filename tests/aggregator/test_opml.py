"""OPML in and out (aggregator.opml): feed readers' exports as they come (folders, nested
folders, notes, duplicates, bad URLs), hostile files, naming, the appended sources file and
the exported document, which must come back as it went."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from aggregator.errors import ParseError
from aggregator.model import MAX_SOURCE_NAME_CHARS, Selectors, SourceSpec
from aggregator.opml import (
    MAX_OPML_BYTES,
    OpmlFeed,
    appended,
    export_opml,
    plan_import,
    read_opml,
    unique_name,
)
from aggregator.sources import _NAME_RE, category_slug, load_sources, name_slug

# Shaped like Inoreader's and Feedly's exports: folders with text and title, a nested folder,
# a feed at the top, a note and a link that are not feeds, one feed filed in two folders.
READER_EXPORT = """<?xml version="1.0" encoding="UTF-8"?>
<opml version="1.0">
  <head><title>Subscriptions of jo in Inoreader</title></head>
  <body>
    <outline text="Tech &amp; Science" title="Tech &amp; Science">
      <outline text="Ars Technica" title="Ars Technica - All content" type="rss"
               xmlUrl="https://feeds.arstechnica.com/arstechnica/index" htmlUrl="https://arstechnica.com"/>
      <outline text="Space">
        <outline title="NASA Breaking News" type="rss" xmlUrl="https://www.nasa.gov/rss/dyn/breaking_news.rss"/>
      </outline>
      <outline text="A note, not a feed"/>
      <outline text="A link" type="link" url="https://example.org/"/>
    </outline>
    <outline text="Politics">
      <outline text="BBC Politics" type="rss" xmlUrl="https://feeds.bbci.co.uk/news/politics/rss.xml"/>
      <outline text="Ars again" type="rss" xmlUrl="https://feeds.arstechnica.com/arstechnica/index?utm_source=x"/>
      <outline text="Passwords" type="rss" xmlUrl="file:///etc/passwd"/>
      <outline text="With a login" type="rss" xmlUrl="https://jo:secret@private.example/feed"/>
    </outline>
    <outline text="Новости" type="rss" xmlurl="https://www.lenta.example/rss"/>
  </body>
</opml>
""".encode()

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def triples(specs) -> list[tuple[str, str, str]]:
    return [(s.name, s.url, s.category) for s in specs]


def test_a_readers_export_gives_every_feed_with_its_folder_and_line():
    feeds = read_opml(READER_EXPORT)
    assert [(f.title, f.folder) for f in feeds] == [
        ("Ars Technica", "Tech & Science"),
        ("NASA Breaking News", "Space"),  # the nearest folder, not the outer one
        ("BBC Politics", "Politics"),
        ("Ars again", "Politics"),
        ("Passwords", "Politics"),
        ("With a login", "Politics"),
        ("Новости", ""),  # top level, and `xmlurl` as some old tools spell it
    ]
    assert feeds[0].line == 7 and feeds[-1].line == 20  # a tag's last line, as libxml2 counts


def test_a_plan_names_files_and_skips_as_the_loader_and_the_file_would():
    existing = [SourceSpec(name="ars-technica", url="https://ars.example/other.xml", category="tech"),
                SourceSpec(name="bbc", url="https://feeds.bbci.co.uk/news/politics/rss.xml#top",
                           category="politics", enabled=False)]
    plan = plan_import(read_opml(READER_EXPORT), existing)
    assert triples(plan.specs) == [
        # The name the file has already gets a suffix; the folder's title is the category.
        ("ars-technica-2", "https://feeds.arstechnica.com/arstechnica/index", "tech-science"),
        ("nasa-breaking-news", "https://www.nasa.gov/rss/dyn/breaking_news.rss", "space"),
        # A title in no Latin letters: the host's name, as `sources check URL` gives it.
        ("lenta-example", "https://www.lenta.example/rss", ""),
    ]
    reasons = [str(s) for s in plan.skipped]
    assert reasons[0] == ("line 15: skipped 'BBC Politics': the sources file has this feed "
                          "already, as 'bbc'")  # disabled there, and spelt with a fragment
    assert reasons[1] == "line 16: skipped 'Ars again': same feed as line 7 ('ars-technica-2')"
    assert reasons[2].startswith("line 17: skipped 'Passwords': url must be an absolute http(s) URL")
    assert "user name or password" in reasons[3] and "secret" not in reasons[3]
    assert len(reasons) == 4 and plan.already == 1


def test_the_category_given_is_every_sources_and_names_are_unique_among_the_new_ones():
    feeds = [OpmlFeed(url=f"https://a{i}.example/feed", title="Daily News!", folder="x", line=i)
             for i in range(3)]
    plan = plan_import(feeds, [SourceSpec(name="daily-news-2", url="https://b.example/", category="c")],
                       category="World News")
    assert triples(plan.specs) == [("daily-news", "https://a0.example/feed", "World News"),
                                   ("daily-news-3", "https://a1.example/feed", "World News"),
                                   ("daily-news-4", "https://a2.example/feed", "World News")]


@pytest.mark.parametrize(("folder", "category"), [
    ("Tech & Science", "tech-science"), ("Économie & Straße", "economie-strasse"),
    ("Новости", "новости"), ("Новый мир", "новый-мир"), ("政治", "政治"), ("  World—News ", "world-news"),
    ("!!!", ""), ("", ""),
])
def test_a_folder_gives_its_category_in_any_script(folder, category):
    assert category_slug(folder) == category


def test_names_from_titles_fold_accents_and_keep_to_the_width():
    assert name_slug("Économie & Straße — le fil") == "economie-strasse-le-fil"
    assert name_slug("!!!") == "" and name_slug("Новости") == ""
    long = "a" * MAX_SOURCE_NAME_CHARS
    assert unique_name(long, {long}) == "a" * (MAX_SOURCE_NAME_CHARS - 2) + "-2"
    # A label that is already a valid name is kept as it is (a name ending in "-" included),
    # so an exported source comes back under its own name.
    [spec] = plan_import([OpmlFeed("https://a.example/", "odd_name-", "", 1)], []).specs
    assert spec.name == "odd_name-"


@given(st.text(max_size=300), st.sets(st.text(alphabet="ab-2", min_size=1, max_size=4), max_size=5))
def test_a_slug_is_a_valid_name_or_nothing_and_a_unique_name_is_valid_and_new(text, taken):
    slug = name_slug(text)
    assert slug == "" or (_NAME_RE.match(slug) and len(slug) <= MAX_SOURCE_NAME_CHARS)
    base = slug or "source"
    name = unique_name(base, taken | {base})
    assert _NAME_RE.match(name) and len(name) <= MAX_SOURCE_NAME_CHARS and name not in taken | {base}


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE opml [
<!ENTITY lol "lol">
""" + b"".join(b'<!ENTITY lol%d "%s">\n' % (i, (b"&lol%s;" % (str(i - 1).encode() if i > 1 else b"")) * 10)
               for i in range(1, 10)) + b"""]>
<opml version="2.0"><head/><body><outline text="&lol9;" xmlUrl="https://a.example/&lol9;"/></body></opml>
"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE opml [<!ENTITY passwd SYSTEM "file:///etc/passwd">]>
<opml version="2.0"><head/><body><outline text="x" xmlUrl="https://a.example/feed"/>
<outline text="y">&passwd;</outline></body></opml>
"""


def utf16(doc: bytes) -> bytes:
    return doc.replace(b'"1.0"?>', b'"1.0" encoding="UTF-16"?>', 1).decode().encode("utf-16")


@pytest.mark.parametrize(("body", "says"), [
    (BILLION_LAUGHS, "declares XML entities"),
    (EXTERNAL_ENTITY, "declares XML entities"),
    # The same in UTF-16, which the byte test before the parse does not see: libxml2 stops
    # the expansion (2.12 on), or the declarations are found after the parse.
    (utf16(BILLION_LAUGHS), "entity amplification|declares XML entities"),
    (utf16(EXTERNAL_ENTITY), "declares XML entities"),
    (b"<opml><body><outline xmlUrl='https://a.example/'", "not an XML document: "),
    (b"", "not an XML document"),
    (b"<html><body><p>Sign in</p></body></html>", "its root element is <html>, not <opml>"),
    (b'<rss version="2.0"><channel/></rss>', "its root element is <rss>"),
    (b"<opml><head/></opml>", "it has no <body>"),
    (b'<opml><body><outline text="Folder"><outline text="note"/></outline></body></opml>',
     "no feeds in it"),
    (b"<opml><body>" + b" " * MAX_OPML_BYTES + b"</body></opml>", "larger than 10 MB"),
])
def test_what_is_not_a_subscription_list_is_one_line_and_nothing_expands(body, says):
    with pytest.raises(ParseError) as e:
        read_opml(body)
    assert any(s in str(e.value) for s in says.split("|")), e.value
    assert "\n" not in str(e.value) and "root:" not in str(e.value)  # /etc/passwd's first line


def test_an_opml_that_names_a_doctype_without_entities_is_read():
    feeds = read_opml(b'<?xml version="1.0"?>\n<!DOCTYPE opml>\n<opml version="2.0"><body>'
                      b'<outline text="A" xmlUrl="https://a.example/feed"/></body></opml>')
    assert [f.url for f in feeds] == ["https://a.example/feed"]


def test_the_appended_file_keeps_the_operators_bytes_and_loads(tmp_path):
    original = (b"# my sources\r\n[[source]]\r\nname = \"mine\"   # kept as written\r\n"
                b"url = \"https://mine.example/feed\"\r\ncategory = \"politics\"")
    specs = [SourceSpec(name="new", url="https://new.example/😀?a=1&b=\"2\"", category="world"),
             SourceSpec(name="other", url="https://other.example/", category="Tech & Science")]
    out = appended(original, specs, opml_name='we\nird "name".opml', on=date(2026, 3, 1))
    assert out.startswith(original + b"\r\n\r\n# Imported from \"we\\nird \\\"name\\\".opml\" by "
                                     b"`tidings sources import-opml` on 2026-03-01\r\n[[source]]")
    assert b"\n" not in out.replace(b"\r\n", b"")  # its line ends followed
    path = tmp_path / "sources.toml"
    path.write_bytes(out)
    assert triples(load_sources(path)) == [("mine", "https://mine.example/feed", "politics"),
                                           *triples(specs)]
    assert appended(b"", specs[:1], opml_name="a", on=date(2026, 3, 1)).startswith(b"# Imported")


def test_the_export_groups_by_category_escapes_and_leaves_out_what_readers_cannot_read():
    specs = [
        SourceSpec(name="bbc", url="https://bbc.example/rss?a=1&b=2", category="politics"),
        SourceSpec(name="ars", url="https://ars.example/feed", category='Tech & "Science" <x>'),
        SourceSpec(name="guardian", url="https://guardian.example/rss", category="politics", kind="feed"),
        SourceSpec(name="off", url="https://off.example/rss", category="politics", enabled=False),
        SourceSpec(name="page", url="https://page.example/", category="politics", kind="html",
                   selectors=Selectors(item="li", link="a")),
        SourceSpec(name="map", url="https://map.example/sitemap.xml", category="x", kind="sitemap"),
    ]
    doc, left_out = export_opml(specs, created_at=NOW)
    assert doc.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<opml version="2.0">')
    root = etree.fromstring(doc)
    assert root.findtext("head/dateCreated") == "Sun, 01 Mar 2026 09:30:00 GMT"
    folders = root.findall("body/outline")
    assert [(f.get("text"), f.get("title")) for f in folders] == [
        ("politics", "politics"), ('Tech & "Science" <x>', 'Tech & "Science" <x>')]
    assert [dict(o.attrib) for o in folders[0]] == [
        {"type": "rss", "text": "bbc", "title": "bbc", "xmlUrl": "https://bbc.example/rss?a=1&b=2"},
        {"type": "rss", "text": "guardian", "title": "guardian", "xmlUrl": "https://guardian.example/rss"}]
    assert [line.split(":")[0] for line in left_out] == ["off", "page", "map"]
    assert "disabled" in left_out[0] and 'kind = "html"' in left_out[1]


def test_an_exported_file_imports_as_the_same_sources():
    specs = [SourceSpec(name="bbc-politics", url="https://feeds.bbci.co.uk/news/politics/rss.xml",
                        category="politics"),
             SourceSpec(name="ars_tech", url="https://ars.example/feed?x=1&y=2", category="tech"),
             SourceSpec(name="nasa", url="https://www.nasa.gov/rss/dyn/breaking_news.rss",
                        category="science", kind="feed"),
             SourceSpec(name="guardian", url="https://guardian.example/rss", category="politics"),
             # A category in letters without an ASCII form came back without one.
             SourceSpec(name="lenta", url="https://lenta.example/rss", category="политика"),
             SourceSpec(name="xinhua", url="https://xinhua.example/rss", category="政治")]
    doc, left_out = export_opml(specs, created_at=NOW)
    assert left_out == []
    plan = plan_import(read_opml(doc), [])
    assert sorted(triples(plan.specs)) == sorted(triples(specs)) and plan.skipped == ()


def test_feeds_read_from_a_file_are_compared_with_the_sources_file(tmp_path):
    """Against every source of the loaded file, whatever its kind and rules: the shipped
    sources, imported back from their own export, add nothing."""
    shipped = load_sources(Path(__file__).resolve().parents[2] / "config" / "sources.toml")
    doc, left_out = export_opml(shipped, created_at=NOW)
    plan = plan_import(read_opml(doc), shipped)
    assert plan.specs == () and plan.already == len(shipped) - len(left_out) > 0
