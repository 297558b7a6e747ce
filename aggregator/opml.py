"""OPML subscription lists in and out: a feed reader's OPML file -> the sources to add, and
the sources -> an OPML 2.0 document a feed reader imports.

Pure: bytes and SourceSpecs in, specs, messages and bytes out. It opens no file and fetches
nothing (the CLI reads and writes the files; whether a feed answers is the collector's
business), and it never expands what an OPML file declares (no DTD, no entities, no network).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import format_datetime

from lxml import etree

from aggregator.canonical import canonical_url
from aggregator.errors import ParseError
from aggregator.model import MAX_SOURCE_NAME_CHARS, SourceSpec
from aggregator.settings import CONTROL_CHARS
from aggregator.sources import (
    _NAME_RE,
    category_slug,
    name_slug,
    source_table,
    trial_source,
    unique_name,
    url_problem,
)

# Readers' exports are a few hundred KB for a thousand feeds; past this it is not a
# subscription list, and the parse (a tree in memory) is refused before it starts.
MAX_OPML_BYTES = 10 * 1024 * 1024

_ENTITIES = "declares XML entities (<!ENTITY>), which an OPML file never needs: refused"
_AT_STRING_RE = re.compile(r"\s*\(<string>, line \d+\)\Z")  # lxml's, when parsing bytes


@dataclass(frozen=True)
class OpmlFeed:
    """One outline with an xmlUrl, as the file gives it."""

    url: str
    title: str  # its text, else its title; "" when it has neither
    folder: str  # the text/title of the nearest folder outline around it; "" at the top
    line: int | None  # where it is in the file, for the operator


@dataclass(frozen=True)
class Skipped:
    """A feed of the OPML file that is not imported, and why."""

    line: int | None
    title: str
    reason: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        what = f"{self.title[:80]!r}" if self.title else "outline"
        return f"{where}skipped {what}: {self.reason}"


@dataclass(frozen=True)
class ImportPlan:
    """What an import adds (in the file's order) and what it leaves, with why."""

    specs: tuple[SourceSpec, ...]
    skipped: tuple[Skipped, ...]
    already: int  # feeds skipped because the sources file has them: a rerun adds nothing


def _local(el) -> str:
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def _attrs(el) -> dict[str, str]:
    # OPML spells them xmlUrl and text; some old tools wrote xmlurl or XMLURL.
    return {k.lower(): v for k, v in el.attrib.items()}


def _label(attrs: dict[str, str]) -> str:
    """An outline's label: `text` is what OPML 2.0 says readers display (a feed renamed by
    its subscriber), `title` the feed's own title, which most exports repeat."""
    return " ".join((attrs.get("text") or attrs.get("title") or "").split())


def read_opml(body: bytes) -> list[OpmlFeed]:
    """Every outline with an xmlUrl in the `<body>` of an OPML 1.0/2.0 document, nested
    ones included, in document order; ParseError (one line) when `body` is not XML, not
    OPML, holds no feed at all, is over MAX_OPML_BYTES or declares entities."""
    if len(body) > MAX_OPML_BYTES:
        raise ParseError(f"larger than {MAX_OPML_BYTES // (1024 * 1024)} MB: not a subscription list")
    # No DTD, no entities, no network: an OPML file needs none, and one that declares an
    # external entity would read a local file ("file:///etc/passwd") into a source's title.
    # Declarations come before the root element: refused there unparsed (a "billion laughs"
    # expands ten levels of entities), and after the parse for encodings this test misses.
    if b"<!ENTITY" in body.split(b"<opml", 1)[0]:
        raise ParseError(_ENTITIES)
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=False, remove_pis=True)
    try:
        root = etree.fromstring(body, parser)
    except etree.XMLSyntaxError as e:
        # libxml2 also stops an entity "billion laughs" here ("amplification factor").
        reason = _AT_STRING_RE.sub("", " ".join(str(e).split()))
        raise ParseError(f"not an XML document: {reason}") from None
    if _local(root).lower() != "opml":  # an HTML page saved by mistake, an RSS feed itself
        raise ParseError(f"not an OPML document: its root element is <{_local(root)}>, "
                         "not <opml>")
    dtd = root.getroottree().docinfo.internalDTD
    # resolve_entities=False keeps them out of text, but libxml2 still replaces them in
    # attributes, where OPML keeps everything: the file is refused instead.
    if dtd is not None and any(True for _ in dtd.iterentities()):
        raise ParseError(_ENTITIES)
    body_el = next((el for el in root if _local(el) == "body"), None)
    if body_el is None:
        raise ParseError("not an OPML document: it has no <body>")
    feeds = []
    for el in body_el.iter():
        if _local(el) != "outline":
            continue
        attrs = _attrs(el)
        url = attrs.get("xmlurl", "").strip()
        if not url:  # a folder, or a plain outline (notes, links): not a feed
            continue
        feeds.append(OpmlFeed(url=url, title=_label(attrs), folder=_folder(el), line=el.sourceline))
    if not feeds:
        raise ParseError("no feeds in it: no <outline> has an xmlUrl")
    return feeds


def _folder(el) -> str:
    """The label of the nearest outline around `el` that is a folder (no xmlUrl of its own),
    skipping unlabelled ones. Iterative: nesting is bounded by libxml2 (256 levels), not by
    Python's recursion."""
    for up in el.iterancestors():
        if _local(up) != "outline":
            continue
        attrs = _attrs(up)
        if not attrs.get("xmlurl", "").strip() and (label := _label(attrs)):
            return label
    return ""


def source_name(feed: OpmlFeed) -> str:
    """A name for the feed before it is made unique: its label when that is already a valid
    name (so an exported source comes back under its own name), else the label as a slug,
    else its host's name as `tidings sources check URL` gives it."""
    if _NAME_RE.match(feed.title) and len(feed.title) <= MAX_SOURCE_NAME_CHARS:
        return feed.title
    trial = trial_source(feed.url)  # never None here: the URL was checked
    return name_slug(feed.title) or (trial.name if trial else "source")


def _url_problem(url: str) -> str | None:
    if problem := url_problem(url):
        return problem
    if CONTROL_CHARS.search(url):  # an attribute's &#10;: the loader refuses it too
        return f"url must not hold control characters, got {url!r}"
    return None


def plan_import(feeds: Iterable[OpmlFeed], existing: Sequence[SourceSpec], *,
                category: str | None = None) -> ImportPlan:
    """The sources to add for `feeds` beside the `existing` ones (the sources file's, disabled
    included), with each feed left out and why: a URL the loader would refuse, a feed the
    file has already, a feed met earlier in the OPML (readers file one feed in two folders).

    Feeds are compared by canonical URL, as `repeated_feeds` compares sources, and against
    every existing source whatever its kind, rules or `enabled`: the operator already reads
    that feed (or chose not to), and a second source would fetch it twice a round.
    `category`: every source's, else the feed's folder as a slug, else "" (to fill in).
    Names are unique among the new sources and the existing ones."""
    taken = {s.name for s in existing}
    have: dict[str, str] = {}
    for s in existing:
        have.setdefault(canonical_url(s.url), s.name)
    met: dict[str, tuple[str, int | None]] = {}
    specs: list[SourceSpec] = []
    skipped: list[Skipped] = []
    already = 0
    for feed in feeds:
        if (problem := _url_problem(feed.url)) is not None:
            skipped.append(Skipped(feed.line, feed.title, problem))
            continue
        key = canonical_url(feed.url)  # the loader's check (url_problem) has read it
        if key in have:
            already += 1
            skipped.append(Skipped(feed.line, feed.title,
                                   f"the sources file has this feed already, as {have[key]!r}"))
            continue
        if key in met:
            name, line = met[key]
            skipped.append(Skipped(feed.line, feed.title, f"same feed as line {line} ({name!r})"))
            continue
        name = unique_name(source_name(feed), taken)
        taken.add(name)
        met[key] = (name, feed.line)
        cat = category if category is not None else category_slug(feed.folder)
        specs.append(SourceSpec(name=name, url=feed.url.strip(), category=cat))
    return ImportPlan(specs=tuple(specs), skipped=tuple(skipped), already=already)


def appended(original: bytes, specs: Sequence[SourceSpec], *, opml_name: str, on: date) -> bytes:
    """The sources file `original` with the tables of `specs` after it: its own bytes kept as
    they are (comments, layout, line ends), then a blank line and a comment saying where the
    new tables came from. The file's line ends are followed: CRLF if it has them."""
    nl = b"\r\n" if b"\r\n" in original else b"\n"
    # The name as a JSON string, ASCII-escaped: a file name may hold a newline, which would
    # end the comment and make the rest of the name TOML (and TOML refuses DEL in comments).
    head = (f"# Imported from {json.dumps(opml_name)} by `tidings sources import-opml` "
            f"on {on.isoformat()}")
    # Strings in the tables are TOML-escaped: the only raw newlines are between lines.
    text = "\n".join([head, "\n\n".join(source_table(s) for s in specs)]) + "\n"
    start = b"" if not original else (b"" if original.endswith(b"\n") else nl) + nl
    return original + start + text.encode("utf-8").replace(b"\n", nl)


# --- export ------------------------------------------------------------------------------------

def not_for_feed_readers(spec: SourceSpec) -> str | None:
    """Why a source stays out of an exported OPML file, None when it goes in. A feed reader
    subscribes to every outline it is given and reads each as RSS, Atom or JSON Feed: not a
    disabled source (OPML has no way to say "not now"), not an HTML listing page or a sitemap,
    which it cannot read. `auto` sources go in: nearly all are feeds."""
    if not spec.enabled:
        return "disabled (enabled = false): a feed reader would subscribe to it"
    if spec.kind == "html":
        return 'kind = "html": a listing page read with CSS selectors, which feed readers cannot read'
    if spec.kind == "sitemap":
        return 'kind = "sitemap": feed readers do not read sitemaps'
    return None


def export_opml(specs: Iterable[SourceSpec], *, created_at: datetime,
                title: str = "Tidings sources") -> tuple[bytes, list[str]]:
    """An OPML 2.0 document of the sources a feed reader can read, one folder outline per
    category (in the order the categories first come), each feed `type="rss"` with the
    source's name as its text and title; and a line for each source left out. lxml writes it,
    so every name and URL is escaped."""
    folders: dict[str, list[SourceSpec]] = {}
    left_out = []
    for spec in specs:
        if (reason := not_for_feed_readers(spec)) is not None:
            left_out.append(f"{spec.name}: {reason}")
        else:
            folders.setdefault(spec.category, []).append(spec)
    root = etree.Element("opml", version="2.0")
    head = etree.SubElement(root, "head")
    etree.SubElement(head, "title").text = title
    # OPML 2.0 dates are RFC 822's, as RSS's are.
    etree.SubElement(head, "dateCreated").text = format_datetime(created_at.astimezone(UTC),
                                                                 usegmt=True)
    body = etree.SubElement(root, "body")
    for category, members in folders.items():
        folder = etree.SubElement(body, "outline", text=category, title=category)
        for spec in members:
            attrs = {"type": "rss", "text": spec.name, "title": spec.name, "xmlUrl": spec.url}
            try:
                etree.SubElement(folder, "outline", attrs)
            except ValueError:  # a character XML 1.0 cannot carry (U+FFFE), which TOML can
                left_out.append(f"{spec.name}: its URL holds a character XML cannot carry")
        if not len(folder):
            body.remove(folder)
    # The declaration written out: lxml's own has single quotes, which some readers' importers
    # (regular expressions rather than XML parsers) do not expect.
    doc = b'<?xml version="1.0" encoding="UTF-8"?>\n' + etree.tostring(
        root, xml_declaration=False, encoding="UTF-8", pretty_print=True)
    return doc, left_out
