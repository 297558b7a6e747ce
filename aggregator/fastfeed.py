"""A fast path for well-formed RSS 2.0, RSS 1.0 (RDF) and Atom 1.0: lxml instead of feedparser.

feedparser runs every document through expat and a Python SAX handler (~2-4 ms an item here,
docs/benchmarks.md §1). This module reads the same documents with lxml (C) and builds the
same feedparser-shaped entry dicts, so `aggregator.feeds` turns them into ParsedItems with
the very same code. It mirrors feedparser 6's rules for the fields we read (first non-empty
title wins, guid-as-link, description vs content:encoded, author "email (Name)" parsing,
tags de-duplicated, media:content/thumbnail, enclosures, an item's itunes:image), and
reuses feedparser's own date parser, URI joining and cp1252 table, so the results are
equal by construction where it matters; tests/aggregator/test_fastfeed_equivalence.py
checks it field by field on every captured feed.

Anything it does not model returns None, and the caller uses feedparser: a document lxml
will not parse strictly (malformed, undeclared prefix, bad bytes), a DOCTYPE (entities),
xml:base, an HTTP charset that differs from the document's, markup inside a text element,
Atom xhtml/base64/src content, and any element inside an entry that feedparser gives a
meaning to which this module does not model (a whitelist: _HANDLED and _HARMLESS).
"""

from __future__ import annotations

import codecs
import re
from typing import Any

from feedparser.datetimes import _parse_date
from feedparser.html import _cp1252
from feedparser.mixin import _FeedParserMixin as XMLParserMixin
from feedparser.urls import _urljoin as _feedparser_urljoin
from lxml import etree

from aggregator import feeddates  # noqa: F401 (registers the reader of localised dates)
from aggregator.canonical import joined_as_is

_ATOM = "http://www.w3.org/2005/Atom"
_RSS1 = "http://purl.org/rss/1.0/"
_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_PREFIXES = {uri.lower(): prefix for uri, prefix in XMLParserMixin.namespaces.items()}
_HAS_HANDLER = frozenset(
    name[len("_start_"):] for name in dir(XMLParserMixin) if name.startswith("_start_")
) | frozenset(name[len("_end_"):] for name in dir(XMLParserMixin) if name.startswith("_end_"))
_HTML_TYPES = {"application/xhtml+xml", "text/html"}
# Entry elements this module models (named as feedparser names them: prefix_local).
_TITLE = {"title", "dc_title"}
_SUMMARY = {"description", "dc_description", "summary"}
_PUBLISHED = {"pubdate", "published", "issued", "dcterms_issued"}
_UPDATED = {"updated", "modified", "dc_date", "dcterms_modified"}
_AUTHOR = {"author", "dc_creator", "dc_author", "itunes_author"}
_CATEGORY = {"category", "dc_subject", "media_category"}
_HANDLED = (_TITLE | _SUMMARY | {"media_description", "image", "source"} | _PUBLISHED | _UPDATED | _AUTHOR | _CATEGORY
            | {"link", "guid", "id", "content_encoded", "content", "enclosure", "media_content",
               "media_thumbnail", "media_group", "media_keywords", "media_title", "contributor",
               "itunes_image"})
# Elements feedparser has handlers for that touch no field aggregator.feeds reads.
_HARMLESS = {"comments", "media_credit", "media_rating", "media_restriction", "media_license",
             "media_copyright", "media_hash", "media_text", "media_player", "expirationdate",
             "itunes_duration", "itunes_explicit", "itunes_subtitle",
             "itunes_block", "itunes_episode", "itunes_season", "itunes_episodetype",
             "georss_point", "georss_line", "georss_polygon", "georss_box", "language",
             "created", "dcterms_created", "dc_publisher", "dc_rights", "dc_language",
             "rights", "copyright", "generator", "slash_comments", "wfw_commentrss", "wfw_comment"}
# Keys aggregator.feeds reads; an unmodelled element stored under one of them means fall back.
_READ_KEYS = {"link", "links", "id", "guidislink", "title", "content", "summary", "published",
              "updated", "published_parsed", "updated_parsed", "author", "author_detail",
              "authors", "tags", "media_content", "media_thumbnail", "enclosures", "image"}
# Elements feedparser has no handler for, kept under their name, that aggregator.feeds reads:
# feed proxies' real links, Livemint's plain image elements.
_COPY_KEYS = {"feedburner_origlink", "pheedo_origlink", "bigimage", "smallimage"}
# The names of tags in known namespaces (`_Reader.name`), which depend on the tag alone: a
# feed names the same few dozen in every item, each split and lowercased again. Bounded, as
# a hostile document may make up any number of tags.
_KNOWN_NAMES: dict[str, str] = {}
_MAX_KNOWN_NAMES = 4096
_ENTITY_LIKE = re.compile(r"&([A-Za-z0-9_]+);")
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=True,
                          remove_pis=True, strip_cdata=True, huge_tree=False, recover=False)


def _urljoin(base: str, uri: str) -> str:
    """feedparser's `_urljoin` (which parses both URLs), skipped for a link it gives back as
    it is (`joined_as_is`): nearly every link of a feed."""
    return uri if joined_as_is(base, uri) else _feedparser_urljoin(base, uri)


class Unsupported(Exception):
    """Something the fast path does not model: use feedparser."""


def read_fast(body: bytes, *, base_url: str, content_type: str | None = None
              ) -> tuple[dict, list[dict]] | None:
    """(feed, entries) as feedparser would give them for the fields we read, or None."""
    head = body[:4096]
    if b"<!DOCTYPE" in head.upper():
        return None
    try:
        root = etree.fromstring(body, _PARSER)
    except (etree.XMLSyntaxError, ValueError):
        return None
    encoding = (root.getroottree().docinfo.encoding or "utf-8").lower()
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        return None
    if not _same_charset(content_type, codec):
        return None
    reader = _Reader(base_url, utf8=codec == "utf-8", atom=root.tag == f"{{{_ATOM}}}feed",
                     xml_base=b"base=" in body)
    try:
        feed, entries = reader.document(root)
    except Unsupported:
        return None
    feed["_atom"] = reader.atom  # feedparser's `version` says it (aggregator.feeds reads it)
    return feed, entries


def _same_charset(content_type: str | None, codec: str) -> bool:
    m = re.search(r"charset\s*=\s*[\"']?([\w.:-]+)", content_type or "", re.I)
    if not m:
        return True
    try:
        return codecs.lookup(m.group(1)).name == codec
    except LookupError:
        return False


class _Reader:
    def __init__(self, base_url: str, *, utf8: bool, atom: bool, xml_base: bool = False):
        self.base = base_url
        self.utf8 = utf8
        self.atom = atom
        self.xml_base = xml_base  # only then look for xml:base attributes (rare, and costly)

    # ------------------------------------------------------------------ structure

    def document(self, root: etree._Element) -> tuple[dict, list[dict]]:
        if self.xml_base:
            for el in root.iter():
                if el.get("base") is not None:  # feedparser honours a bare base= too
                    raise Unsupported("base attribute")
                if el.get(_XML_BASE) is not None and self.name(el) not in ("content", "summary"):
                    raise Unsupported("xml:base outside content")
        if self.atom:
            return self.feed_level(root), [self.entry(e) for e in root if self.name(e) == "entry"]
        if root.tag == "rss":
            if root.get("version", "2.0") not in ("2.0", "0.91", "0.92", "0.93", "0.94"):
                raise Unsupported("rss version")
            channels = [c for c in root if c.tag == "channel"]
            if len(channels) != 1:
                raise Unsupported("channels")
            channel = channels[0]
            return self.feed_level(channel), [self.entry(i) for i in channel if i.tag == "item"]
        if root.tag == f"{{{_RDF}}}RDF":
            channels = [c for c in root if c.tag == f"{{{_RSS1}}}channel"]
            items = [i for i in root if i.tag == f"{{{_RSS1}}}item"]
            if len(channels) != 1 or any(i.tag == "item" for i in root):
                raise Unsupported("rdf layout")
            return self.feed_level(channels[0]), [self.entry(i) for i in items]
        raise Unsupported("root")

    def name(self, el: etree._Element) -> str:
        """feedparser's name for an element: known prefix (or the document's) + local name."""
        tag = el.tag
        if not isinstance(tag, str):
            return ""
        if tag[0] != "{":
            return tag.lower()
        known = _KNOWN_NAMES.get(tag)
        if known is not None:
            return known
        uri, local = tag[1:].split("}", 1)
        prefix = _PREFIXES.get(uri.lower())
        if prefix is not None:
            known = f"{prefix.lower()}_{local.lower()}" if prefix else local.lower()
            if len(_KNOWN_NAMES) < _MAX_KNOWN_NAMES:
                _KNOWN_NAMES[tag] = known
            return known
        prefix = el.prefix  # an unknown namespace: the document's prefix, which may vary
        if not prefix:
            raise Unsupported(f"unprefixed element in unknown namespace {uri}")
        return f"{prefix.lower()}_{local.lower()}"

    # ------------------------------------------------------------------ values

    def text(self, el: etree._Element, name: str, *, content_type: str | None = None) -> str:
        if len(el):
            raise Unsupported(f"markup inside <{name}>")
        out = (el.text or "").strip()
        if name in XMLParserMixin.can_be_relative_uri and out:
            out = _urljoin(self.base, out)
        content_type = self.guessed_type(content_type, out)
        htmlish = content_type is not None and content_type in _HTML_TYPES
        if htmlish and out and ("<" in out or "&" in out):
            # feedparser re-serialises this markup while resolving relative URIs; a body
            # that is not plain text is left to it rather than guessed at here.
            if not _simple_markup(out):
                raise Unsupported(f"complex markup in <{name}>")
        return self.text_fixups(out)

    def guessed_type(self, ctype: str | None, value: str) -> str | None:
        """feedparser's guess in RSS: a text/plain value (typed so, or by default) that looks
        like HTML is text/html. aggregator.feeds keeps an RSS item's HTML content as its body
        and drops a text/plain one as a caption, so a type that differs loses the body."""
        if ctype == "text/plain" and not self.atom and XMLParserMixin.looks_like_html(value):
            return "text/html"
        return ctype

    def content_type(self, el: etree._Element, default: str) -> str:
        if el.get("mode") or el.get("src"):
            raise Unsupported("atom 0.3 mode / content src")
        ctype = XMLParserMixin.map_content_type(el.get("type", default))
        if ctype not in _HTML_TYPES and ctype != "text/plain" or ctype == "application/xhtml+xml":
            raise Unsupported(f"content type {ctype}")
        return ctype

    @staticmethod
    def attrs(el: etree._Element) -> dict:
        out = {}
        for key, value in el.attrib.items():
            if key.startswith("{"):
                raise Unsupported("namespaced attribute")
            key = key.lower()
            out[key] = value.lower() if key in ("rel", "type") else value
        return out

    # ------------------------------------------------------------------ feed and entries

    def feed_level(self, channel: etree._Element) -> dict:
        feed: dict[str, Any] = {}
        title_locked = False
        for el in channel:
            name = self.name(el)
            if name in ("entry", "item"):
                continue
            if name in _TITLE:
                if not title_locked:
                    ctype = self.content_type(el, "text/plain") if self.atom else "text/plain"
                    feed["title"] = self.text(el, "title", content_type=ctype)
                    title_locked = bool(feed["title"])
            elif name == "media_title":
                raise Unsupported("feed media:title")
            elif name == "link":
                self.link(feed, el, entry=False)
            elif name in ("ttl", "sy_updateperiod", "sy_updatefrequency") and name not in _HAS_HANDLER:
                feed[name] = self.text(el, name)
        return feed

    def link(self, context: dict, el: etree._Element, *, entry: bool) -> None:
        attrs = self.attrs(el)
        attrs.setdefault("rel", "alternate")
        attrs.setdefault("type", "application/atom+xml" if attrs["rel"] == "self" else "text/html")
        attrs = _enforce_href(attrs)
        if "href" in attrs:
            attrs["href"] = _urljoin(self.base, attrs["href"])
        context.setdefault("links", []).append(attrs)
        if "href" in attrs:
            if attrs["rel"] == "alternate" and XMLParserMixin.map_content_type(attrs["type"]) in _HTML_TYPES:
                context["link"] = attrs["href"]
            return
        value = self.text(el, "link")
        if entry:
            value = _ENTITY_LIKE.sub(r"&\g<1>", value.replace("&amp;", "&"))
        else:
            value = _ENTITY_LIKE.sub(r"&\g<1>", value)
        context["link"] = value
        if value:
            context["links"][-1]["href"] = value

    def entry(self, item: etree._Element) -> dict:
        e: dict[str, Any] = {}
        about = item.get(f"{{{_RDF}}}about")
        if about:
            e["id"] = about
        state = {"title_locked": False, "has_content": False, "summary_depth": None}
        self.children(e, item, state, 1)
        # FeedParserDict derives "enclosures" from the links; a plain dict needs it spelt out.
        e["enclosures"] = [ln for ln in e.get("links", ()) if ln.get("rel") == "enclosure"]
        return e

    def children(self, e: dict, parent: etree._Element, state: dict, depth: int) -> None:
        for el in parent:
            name = self.name(el)
            if not name:
                continue
            if name not in _HANDLED:
                if name in _HAS_HANDLER and name not in _HARMLESS:
                    raise Unsupported(f"element {name}")
                if name in _READ_KEYS:
                    raise Unsupported(f"element {name} stored under a key we read")
                if name in _COPY_KEYS:
                    e[name] = self.text(el, name)
                elif name in _HARMLESS and len(el):
                    raise Unsupported(f"children in {name}")
                continue
            self.element(e, el, name, state, depth)

    def element(self, e: dict, el: etree._Element, name: str, state: dict, depth: int) -> None:
        if name in _TITLE:
            ctype = self.content_type(el, "text/plain") if self.atom else "text/plain"
            value = self.text(el, "title", content_type=ctype)
            if not state["title_locked"]:
                e["title"] = value
                state["title_locked"] = bool(value)
        elif name == "media_title":
            if not state["title_locked"]:
                raise Unsupported("media:title before the title")
        elif name in _SUMMARY or name == "media_description":
            if "summary" in e and not state["has_content"]:
                # feedparser reads a second summary-like element as the content
                ctype = self.content_type(el, "text/plain") if self.atom else "text/plain"
                if not self.atom and el.get("type"):
                    raise Unsupported("typed description")
                state["has_content"] = True
                value = self.text(el, "content", content_type=ctype)
                ctype = self.guessed_type(ctype, value)
                e.setdefault("content", []).append({"type": ctype, "value": value})
                self.markup_base(e, el)
                return
            default = "text/plain" if name == "summary" else "text/html"
            ctype = self.content_type(el, default) if self.atom or el.get("type") else default
            value = self.text(el, "summary" if name == "summary" else "description",
                              content_type=ctype)
            # feedparser keeps the shallowest one (a media:description deep in a media:group
            # does not replace the item's own description)
            if state["summary_depth"] is None or depth <= state["summary_depth"]:
                state["summary_depth"] = depth
                e["summary"] = value
                self.markup_base(e, el)
        elif name == "image":  # a non-standard <image> in an item: feedparser ignores its
            if len(el):        # text but forgets the title it had, so a later one wins
                raise Unsupported("image with children")
            state["title_locked"] = False
        elif name == "itunes_image":  # feedparser: the item's `image`, the last one given
            if len(el):
                raise Unsupported("children in itunes_image")
            attrs = self.attrs(el)
            href = attrs.get("href") or attrs.get("url")
            if href:
                e["image"] = {"href": href}
        elif name == "source":
            if len(el):
                raise Unsupported("atom source")
            state["title_locked"] = False
        elif name in ("content_encoded", "content"):
            ctype = "text/html" if name == "content_encoded" else self.content_type(el, "text/plain")
            state["has_content"] = True
            value = self.text(el, "content", content_type=ctype)
            # an untyped RSS <content> holding markup (some feeds' article body)
            ctype = self.guessed_type(ctype, value)
            e.setdefault("content", []).append({"type": ctype, "value": value})
            e.setdefault("summary", value)
            self.markup_base(e, el)
        elif name == "link":
            self.link(e, el, entry=True)
        elif name in ("guid", "id"):
            self.guid(e, el)
        elif name in _PUBLISHED:
            e["published"] = self.text(el, "published")
            e["published_parsed"] = _parse_date(e["published"])
        elif name in _UPDATED:
            e["updated"] = self.text(el, "updated")
            e["updated_parsed"] = _parse_date(e["updated"])
        elif name in _AUTHOR:
            self.author(e, el)
        elif name == "contributor":
            return
        elif name in _CATEGORY:
            attrs = self.attrs(el)
            if name == "media_category":
                attrs.setdefault("scheme", "http://search.yahoo.com/mrss/category_schema")
            _add_tag(e, attrs.get("term"), attrs.get("scheme", attrs.get("domain")), attrs.get("label"))
            value = self.text(el, "category")
            if value:
                tags = e["tags"] if "tags" in e else []
                if tags and not tags[-1]["term"]:
                    tags[-1]["term"] = value
                else:
                    _add_tag(e, value, None, None)
        elif name == "media_keywords":
            for term in self.text(el, "media_keywords").split(","):
                if term.strip():
                    _add_tag(e, term.strip(), None, None)
        elif name == "enclosure":
            attrs = _enforce_href(self.attrs(el))
            attrs["rel"] = "enclosure"
            e.setdefault("links", []).append(attrs)
        elif name == "media_content":
            e.setdefault("media_content", []).append(self.attrs(el))
            self.children(e, el, state, depth + 1)
        elif name == "media_thumbnail":
            attrs = self.attrs(el)
            url = self.text(el, "url")
            if url and "url" not in attrs:
                attrs["url"] = url
            e.setdefault("media_thumbnail", []).append(attrs)
        elif name == "media_group":
            self.children(e, el, state, depth + 1)

    def markup_base(self, e: dict, el: etree._Element) -> None:
        """Record an xml:base on the markup element: relative <img src> resolve against it."""
        if self.xml_base:
            base = el.get(_XML_BASE)
            if base is not None:
                e["_markup_base"] = _urljoin(self.base, base)

    def guid(self, e: dict, el: etree._Element) -> None:
        is_link = self.attrs(el).get("ispermalink", "true") == "true"
        value = (el.text or "").strip()
        if len(el):
            raise Unsupported("markup inside <guid>")
        if value and is_link:
            value = _urljoin(self.base, value)
        value = self.text_fixups(value)
        e["id"] = value
        e.setdefault("guidislink", is_link and "link" not in e)
        if is_link:
            e.setdefault("link", value)

    def text_fixups(self, out: str) -> str:
        """feedparser's last steps on every value: undo UTF-8 read as Latin-1, map C1 controls
        to their cp1252 characters. Neither can change an ASCII string (most values)."""
        if out.isascii():
            return out
        if self.utf8:
            try:
                out = out.encode("iso-8859-1").decode("utf-8")
            except (UnicodeEncodeError, UnicodeDecodeError):
                pass
        return out.translate(_cp1252) if _C1.search(out) else out

    def author(self, e: dict, el: etree._Element) -> None:
        authors = e.setdefault("authors", [])
        detail: dict = {}
        authors.append(detail)
        if len(el):  # Atom person construct: name, email, uri
            for child in el:
                cname = self.name(child)
                if cname in ("name", "email"):
                    value = self.text(child, cname)
                    e.setdefault("author_detail", {})[cname] = value
                    detail[cname] = value
                elif cname != "uri":
                    raise Unsupported(f"{cname} in an author")
            e["author"] = ""
            name, email = detail.get("name"), detail.get("email")
            if name and email:
                e["author"] = f"{name} ({email})"
            elif name or email:
                e["author"] = name or email
            return
        value = self.text(el, "author")
        e["author"] = value
        author, email = value, None
        if not author:
            return
        m = _EMAIL.search(author)
        if m:
            email = m.group(0)
            author = author.replace(email, "").replace("()", "").replace("<>", "")
            author = author.replace("&lt;&gt;", "").strip()
            if author and author[0] == "(":
                author = author[1:]
            if author and author[-1] == ")":
                author = author[:-1]
            author = author.strip()
        if author or email:
            e.setdefault("author_detail", detail)
        if author:
            detail["name"] = author
        if email:
            detail["email"] = email


# feedparser's own pattern (mixin._sync_author_detail), so "email (Name)" splits the same way.
_EMAIL = re.compile(r"""(([a-zA-Z0-9\_\-\.\+]+)@((\[[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.)|(([a-zA-Z0-9\-]+\.)+))([a-zA-Z]{2,4}|[0-9]{1,3})(\]?))(\?subject=\S+)?""")
# Markup that feedparser's re-serialisation leaves unchanged as text: no comments, CDATA,
# processing instructions or declarations, no stray "<" that is not a tag.
_NOT_SIMPLE = re.compile(r"<!(?!--)|<\?|<(?![A-Za-z/!])")
_C1 = re.compile("[\x80-\x9f]")
_XML_BASE = "{http://www.w3.org/XML/1998/namespace}base"


def _simple_markup(markup: str) -> bool:
    return not _NOT_SIMPLE.search(markup)


def _enforce_href(attrs: dict) -> dict:
    href = attrs.get("url", attrs.get("uri", attrs.get("href")))
    if href:
        attrs.pop("url", None)
        attrs.pop("uri", None)
        attrs["href"] = href
    return attrs


def _add_tag(e: dict, term: str | None, scheme: str | None, label: str | None) -> None:
    tags = e.setdefault("tags", [])
    if not term and not scheme and not label:
        return
    value = {"term": term, "scheme": scheme, "label": label}
    if value not in tags:
        tags.append(value)
