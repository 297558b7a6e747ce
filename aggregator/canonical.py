"""Canonical story URLs: the identity a story is upserted by. Pure string work, no I/O.

Rules (decided here, relied on by the store and dedupe):
- resolve against `base` if given; only http and https with a host are accepted, anything
  else raises ValueError (callers treat it as "not a story link");
- scheme and host lowercased, IDN hosts to punycode, default ports (80/443) and user:password
  dropped, the fragment dropped unless it is a hashbang ("#!/story/1": AJAX-crawlable apps
  route on it, so it names the story; a bare "#!" names nothing and goes), whose escapes are
  normalized as the path's;
- tracking parameters dropped (utm_*, fbclid, gclid, … see `TRACKING_PARAMS`; names too
  generic to drop everywhere only on the sites in `SITE_TRACKING_PARAMS`), the rest sorted by
  name (stable, so repeated names keep their order), blank values kept;
- the path keeps its trailing slash: "/a/" and "/a" can be different pages on real servers,
  so only an empty path becomes "/" (RFC 3986 §6.2.3 makes "" and "/" equivalent for http);
- escaped unreserved characters are decoded ("%7E" -> "~", RFC 3986 §6.2.2.2), other
  escapes upper-cased (§6.2.2.1) and never decoded, so "%2F" stays distinct from "/";
  unsafe characters (spaces, non-ASCII) are escaped as UTF-8;
- then dot segments are removed from the path (§6.2.2.3 with §5.2.4's remove_dot_segments):
  "/a/./b/../c" -> "/a/c". In that order, as §6.2.2 lists the steps: "%2E" is "." (an
  unreserved character), so "/a/%2e%2e/b" -> "/b" as browsers resolve it, while "%2F" is no
  "/", so "/a%2F..%2Fb" holds no dot segment and stays;
- http and https are kept apart: the two usually serve the same story, but merging them is
  a dedupe decision (content hash, same-event), not an identity rule.
`canonical_url(canonical_url(x)) == canonical_url(x)` holds for every accepted x.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import SplitResult, parse_qsl, quote, urlencode, urljoin, urlsplit, urlunsplit

import idna

_ASCII_SPACE = " \t\n\r\f\v"

TRACKING_PREFIXES = ("utm_", "pk_", "mtm_", "hsa_", "_hs")
TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "gclsrc",
        "dclid",
        "msclkid",
        "yclid",
        "igshid",
        "twclid",
        "ttclid",
        "mc_cid",
        "mc_eid",
        "ocid",
        "cmpid",
        "cmp",
        "at_medium",
        "at_campaign",
        "at_custom1",
        "at_custom2",
        "at_custom3",
        "at_custom4",
        "_ga",
        "_gl",
        "ito",
        "ns_mchannel",
        "ns_source",
        "ns_campaign",
        "ns_linkname",
        "ns_fee",
        "smid",
        "smtyp",
        "cid_source",
        "xtor",
        "icid",
        "ref_src",
        "ref_url",
        "wt.mc_id",
        "wt_mc_id",
        "s_cid",
        "sr_share",
        "spm",
        "__twitter_impression",
        "wprss",
        # Webtrekk / Mapp Intelligence campaign codes: heise links every feed item with
        # `wt_mc=rss.red.ho.ho.atom.beitrag.beitrag` (320 times in the captured feeds); `wt_zmc`
        # is the same tracker's code on other German sites (ZEIT ONLINE), not in the captured
        # feeds. Both names belong to that tracker, not to any site's content.
        "wt_mc",
        "wt_zmc",
    }
)
# Names that are tracking on the sites listed, but too generic to drop everywhere: another
# site may select content with `partner`, `mod`, `rss` or `tid`. (`ref` is left alone
# everywhere: a referrer tag on many blogs, but content elsewhere, e.g. the branch in GitHub's
# `?ref=`; no captured feed has it.) Keyed by domain, which also covers its subdomains.
# Every name here was seen on that site's links in the captured feeds
# (../shared/data/news-feeds) with a value that names a channel, not a story.
SITE_TRACKING_PARAMS: dict[str, frozenset[str]] = {
    # NYT: `partner=rss&emc=rss` (feed links), `smid`/`mwrsm` (share buttons; `smid` is in
    # TRACKING_PARAMS already), `_r=0` (the paywall meter's counter).
    "nytimes.com": frozenset({"partner", "emc", "mwrsm", "_r"}),
    # Washington Post: `tid=a_inl`, `tid=ss_tw` (link placement, share target).
    "washingtonpost.com": frozenset({"tid"}),
    # WSJ: `mod=e2tw`, `mod=ST1` (the page module or share button a click came from).
    "wsj.com": frozenset({"mod"}),
    # TIME: `xid=time_socialflow_twitter` (the social scheduler that posted the link).
    "time.com": frozenset({"xid"}),
    # Science (HighWire platform): `rss=1` on every item link of its RSS 1.0 feed.
    "sciencemag.org": frozenset({"rss"}),
}
# The BBC's AT Internet (Piano) campaign parameters, of which TRACKING_PARAMS has the common
# ones: its links also carry at_mid, at_nation, at_ptr_name, at_format, … (ads in feeds).
SITE_TRACKING_PREFIXES: dict[str, tuple[str, ...]] = {"bbc.co.uk": ("at_",), "bbc.com": ("at_",)}
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_OK = re.compile(r"^[a-z0-9._~!$&'()*+,;=-]+$|^\[[0-9a-f:.]+\]$")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PCT = re.compile(r"%[0-9a-fA-F]{2}")
_LONE_PCT = re.compile(r"%(?![0-9a-fA-F]{2})")
# RFC 3986 pchar plus "/" and "%": existing escapes are left for `_escape` to normalize.
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"
# A fragment may also hold "?" (RFC 3986 §3.5); a second "#" is escaped.
_FRAGMENT_SAFE = _PATH_SAFE + "?"
# The longest host a DNS name can be (RFC 1035: 255 octets on the wire, 253 written). A longer
# one names no server, and a story's site (its host) is stored in 255 characters: PostgreSQL
# refused such a link's story, and the whole batch stored with it (a source's round).
MAX_HOST_CHARS = 253


def canonical_url(url: str, base: str | None = None) -> str:
    """The canonical form of an http(s) URL; ValueError when it is not one."""
    if not isinstance(url, str):
        raise ValueError("URL must be a string")
    # ASCII whitespace only: str.strip() would also eat U+0085 and friends, which are data
    # at the end of a query value (found by Hypothesis: '?_=\x85').
    url = url.strip(_ASCII_SPACE)
    if not url:
        raise ValueError("empty URL")
    if base:
        url = urljoin(base.strip(_ASCII_SPACE), url)
    parts = urlsplit(url)  # may raise ValueError (bad IPv6 literal)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"not an http(s) URL: {url[:80]!r}")
    host = _normalize_host(_written_host(parts))
    port = parts.port  # raises ValueError when out of range or not a number
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = _remove_dot_segments(_normalize_escapes(parts.path)) or "/"
    query = _normalize_query(parts.query, host)
    fragment = parts.fragment
    if not fragment.startswith("!") or fragment == "!":
        fragment = ""
    return urlunsplit((scheme, netloc, path, query, _normalize_escapes(fragment, _FRAGMENT_SAFE)))


def joined(base: str, link: str) -> str:
    """`link` resolved against `base` as `urljoin` does, or "" when either is no URL at all
    (a bad IPv6 literal: "http://[object Object]/a"). urljoin raises there, and parsers
    joining a document's links failed the whole document on one item's link or image."""
    if joined_as_is(base, link):
        return link
    try:
        return urljoin(base, link)
    except ValueError:
        return ""


# An absolute http(s) URL, printable ASCII, with a host right after "//" and none of what
# urljoin would change or check: the tab, CR and LF it removes, a ";" (it splits off a
# path's parameters and drops an empty one), "[" and "]" (an IPv6 literal it validates).
_AS_IS = re.compile(r"https?://[^/?#\[\];\x00-\x20\x7f-\U0010ffff][^\[\];\x00-\x20\x7f-\U0010ffff]*")


def joined_as_is(base: str | None, link: str) -> bool:
    """Whether `urljoin(base, link)` gives `link` back as it is, told without parsing either
    (a sufficient test, not a necessary one): `link` is an `_AS_IS` URL without an empty query
    or fragment, which urljoin drops ("…?", "…?#x", "…#"), and `base` one urljoin parses without
    raising (ASCII, no brackets: see `joined`). Nearly every link of a feed is such a URL, and
    parsing the two of them took ~10% of the CPU of parsing a feed (pure)."""
    return (_AS_IS.fullmatch(link) is not None and not link.endswith(("?", "#"))
            and "?#" not in link
            and (not base or (base.isascii() and "[" not in base and "]" not in base)))


def page_key(url: str) -> str:
    """Which page fetching `url` reads: its canonical form without any fragment, for telling
    pages read apart (a listing's next pages). A server never sees the fragment, a hashbang's
    included, so "/news#more" is "/news" again; as are its tracking parameters. The URL as
    written when it has no canonical form."""
    try:
        return canonical_url(url).partition("#")[0]
    except ValueError:
        return url


def url_variants(canonical: str) -> list[str]:
    """Other spellings a site commonly gives one page, nearest first: the path with or without
    its trailing slash, the other of http and https, then both; then each of those on the host
    with or without "www.". Not identity (the module's rules keep them apart): a lookup's
    fallback, for a caller's URL that is not stored as written (a widget on an http page, a
    CMS that adds the slash, a link to the bare domain of a site whose feed says "www.").
    "www." is one site everywhere else too (`site_of`, `site_key`, a related block's "same
    page"): a related block asked by the bare domain's spelling fetched a story we had."""
    parts = urlsplit(canonical)
    path = parts.path
    paths = [path] if path == "/" else [path, path[:-1] if path.endswith("/") else path + "/"]
    other = "http" if parts.scheme == "https" else "https"
    out = [urlunsplit((scheme, netloc, p, parts.query, parts.fragment))
           for netloc in (parts.netloc, *_www_toggled(parts.netloc))
           for scheme in (parts.scheme, other) for p in paths]
    return [u for u in out if u != canonical]


def spelling_key(canonical: str) -> str:
    """One key for a URL and its `url_variants` (the same for each of them): the URLs a
    takedown names counted once however many spellings of one page were given."""
    return min((canonical, *url_variants(canonical)))


def _www_toggled(netloc: str) -> list[str]:
    """The host with "www." taken off or put on ("" for an address or a one-label host such
    as localhost, which have no "www." spelling)."""
    if netloc.startswith("www."):
        return [netloc[4:]] if "." in netloc[4:].split(":")[0] else []
    host = netloc.split(":")[0]
    if netloc.startswith("[") or "." not in host or host.replace(".", "").isdigit():
        return []
    return ["www." + netloc]


def site_of(url: str) -> str:
    """The site a URL belongs to: its lowercased host without "www." ("" when there is none)."""
    try:
        host = (urlsplit(url.strip(_ASCII_SPACE)).hostname or "").lower().rstrip(".")
    except ValueError:
        return ""
    return host[4:] if host.startswith("www.") else host


# The first labels of the hosts a publisher serves its one site from: "www.", and its mobile
# and AMP copies ("m.bbc.co.uk", "mobile.twitter.com", "amp.theguardian.com"). All of them, in
# any order: a stored "www.x" (from "www.www.x") is "x" too. Kept apart, a network's
# `exclude_site` left in its own m. copies, and a widget on the m. site linked the desktop
# site's stories as another's. m., mobile. and amp. only where a name with a dot is left:
# "mobile.de" and "amp.dev" are sites of their own, not copies of "de". Other subdomains
# ("news.", "sport.") are other sites. widget.js's siteKey has the same expression.
_SAME_SITE_LABELS = re.compile(r"^(?:www\.|(?:m|mobile|amp)\.(?=[^.]*\.))+")


@lru_cache(maxsize=4096)  # called for every candidate of a filtered block: mostly a few sites
def site_key(site: str) -> str:
    """What site filters compare: "BBC.co.uk", "www.bbc.co.uk", "m.bbc.co.uk" and
    "https://www.bbc.co.uk/news" are one site (lowercased host without the labels of
    `_SAME_SITE_LABELS`; `site_of` names collected stories by their host less "www.", so
    "m.bbc.co.uk" is stored as it came and compared here); a free-form name from an imported
    line ("Example") compares without case. IDN hosts as punycode, the form canonical URLs,
    and so the stored sites, have."""
    s = site.strip(_ASCII_SPACE)
    if "://" in s:
        try:
            s = _written_host(urlsplit(s)) or s
        except ValueError:  # a bad IPv6 literal
            pass
    else:
        # A host with its port, as `location.host` or a Host header gives it on a staging
        # site ("www.alpha.example:8080"): stored sites have none, so it matched no story and
        # an `exclude_site` written so left the page's own site in its block.
        host, colon, port = s.rpartition(":")
        if colon and port.isdigit() and ":" not in host:  # not an IPv6 address
            s = host
    try:
        s = lower_host(s)
    except UnicodeError:  # not a host name: compared as written, without case
        s = s.lower().rstrip(".")
    return _SAME_SITE_LABELS.sub("", s)


def ascii_host(host: str) -> str:
    """A non-ASCII host name as punycode, as browsers (UTS #46, non-transitional) and
    aiohttp's yarl spell it: "faß.de" is "xn--fa-hia.de". Python's "idna" codec (IDNA 2003)
    made it "fass.de", another domain: its stories were stored under that site's URLs, and
    a widget's page (the browser's spelling) matched no stored story.
    Hosts IDNA 2008 refuses (symbols) fall back to the codec, as yarl does. UnicodeError
    when neither takes it."""
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except UnicodeError:  # idna.IDNAError is one
        return host.encode("idna").decode("ascii")


def lower_host(host: str) -> str:
    """A host name in lower case, as the fetcher spells it (`ascii_host`), without its
    trailing dot. A non-ASCII name is lowered by IDNA's own mapping, never by str.lower():
    that one makes a capital sigma before a hyphen or a digit a final sigma ("ΑΣ-1" is
    "ας-1"), which IDNA keeps as another letter, so the URL named another domain than the one
    fetched ("ασ-1"). The dots IDNA maps ("．", "。") are dots: a name ending in one has
    a trailing dot, dropped as "." is. UnicodeError when IDNA refuses the name."""
    if not host.isascii():
        host = ascii_host(host)
    return host.lower().rstrip(".")


def _written_host(parts: SplitResult) -> str:
    """The host of `parts` as written: `hostname` has it through str.lower() (`lower_host`
    says why that is wrong for IDN names). An IPv6 literal is ASCII: `hostname` has it."""
    host = parts.netloc.rpartition("@")[2]
    return parts.hostname or "" if host.startswith("[") else host.partition(":")[0]


def is_tracking_param(name: str, host: str = "") -> bool:
    """Whether query parameter `name` only tracks clicks: everywhere, or on `host` (lowercase,
    as `canonical_url` has it) when the name is one of that site's own."""
    return _is_tracking(name.lower(), *_site_rules(host))


def _is_tracking(low: str, names: frozenset[str], prefixes: tuple[str, ...]) -> bool:
    return (
        low in TRACKING_PARAMS
        or low.startswith(TRACKING_PREFIXES)
        or low in names
        or low.startswith(prefixes)
    )


def _site_rules(host: str) -> tuple[frozenset[str], tuple[str, ...]]:
    """The site-only tracking names and prefixes for `host` and the domains above it."""
    names: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    labels = host.split(".")
    for i in range(len(labels) - 1):  # "www.nytimes.com": "www.nytimes.com", "nytimes.com"
        domain = ".".join(labels[i:])
        names |= SITE_TRACKING_PARAMS.get(domain, frozenset())
        prefixes += SITE_TRACKING_PREFIXES.get(domain, ())
    return names, prefixes


def _normalize_host(host: str) -> str:
    if ":" in host:  # IPv6 literal (urlsplit dropped the brackets)
        host = f"[{host.lower()}]"
    else:
        try:
            host = lower_host(host)
        except UnicodeError as e:
            raise ValueError(f"bad host name {host!r}") from e
    if not host:
        raise ValueError("URL has no host")
    if len(host) > MAX_HOST_CHARS:
        raise ValueError(f"host name longer than {MAX_HOST_CHARS} characters")
    if not _HOST_OK.match(host) or ".." in host or host.startswith("."):
        raise ValueError(f"bad host name {host!r}")
    return host


def _normalize_escapes(text: str, safe: str = _PATH_SAFE) -> str:
    text = quote(text, safe=safe)
    if "%" not in text:  # most paths: nothing below to do, and two regex scans saved
        return text
    # A lone "%" not followed by two hex digits is escaped, so decoding stays unambiguous.
    text = _LONE_PCT.sub("%25", text)
    return _PCT.sub(_escape, text)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 for the absolute (or empty) path of a URL with a host: "." segments
    go, ".." takes the segment before it along (never above the root); a path ending in a
    dot segment keeps a trailing "/" ("/a/b/.." -> "/a/")."""
    if "." not in path:
        return path
    segments = path.split("/")  # path starts with "/": segments[0] == ""
    out: list[str] = []
    for seg in segments[1:]:
        if seg == "..":
            if out:
                out.pop()
        elif seg != ".":
            out.append(seg)
    if segments[-1] in (".", ".."):
        out.append("")
    return "/" + "/".join(out)


def _escape(m: re.Match[str]) -> str:
    # Escaped unreserved characters ("%7E" for "~") mean the character itself (§2.3).
    char = chr(int(m.group(0)[1:], 16))
    return char if char in _UNRESERVED else m.group(0).upper()


def _normalize_query(query: str, host: str) -> str:
    if not query:
        return ""
    names, prefixes = _site_rules(host)
    pairs = [
        (k, v)
        for k, v in parse_qsl(query, keep_blank_values=True)
        if not _is_tracking(k.lower(), names, prefixes)
    ]
    pairs.sort(key=lambda kv: kv[0])
    return urlencode(pairs, quote_via=quote, safe="/:@!$'()*,;-._~")
