"""Load config/sources.toml (`[[source]]` tables) into validated SourceSpecs.

Strict like the settings: unknown keys, bad names, URLs, kinds, intervals, weights,
selectors and item rules raise ConfigError naming the file, the source (by name, else by
position), its line and the key. It reads the one file it is given and fetches nothing;
whether a URL answers is `tidings sources check`'s business, not the loader's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import logging
import re
import unicodedata
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cssselect import GenericTranslator, SelectorError

from aggregator.canonical import canonical_url
from aggregator.errors import ConfigError, NoSources
from aggregator.itemrules import compile_rule
from aggregator.model import (
    MAX_CATEGORY_CHARS,
    MAX_SOURCE_NAME_CHARS,
    Selectors,
    SourceSpec,
    zone_only,
)
from aggregator.settings import CONTROL_CHARS, KeyLines, did_you_mean, read_toml, toml_value

log = logging.getLogger("tidings.sources")

KINDS = ("auto", "feed", "sitemap", "html")
SOURCE_KEYS = ("name", "url", "category", "kind", "interval", "enabled", "weight", "full_text",
               "keep", "block", "timezone", "selectors")
# `timezone` rides in Selectors (see its docstring) but is written on the source itself.
SELECTOR_KEYS = tuple(f.name for f in dataclasses.fields(Selectors) if f.name != "timezone")
MAX_WEIGHT = 10.0
# Pages of one listing read a round at most: each is a request to the publisher's site.
MAX_LISTING_PAGES = 10

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")
_DURATION_PART_RE = re.compile(r"(\d+)\s*([smhd])")
_DURATION_RE = re.compile(r"\s*(?:\d+\s*[smhd]\s*)+\Z")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION_S = 365 * 86400


def parse_duration(value: str | int) -> int:
    """'90s', '15m', '2h', '1d', '1h30m', '900' or 900 -> seconds (> 0); ValueError otherwise."""
    if isinstance(value, bool):  # bool is an int to Python, never a duration to an operator
        raise ValueError(f"expected a duration like \"15m\" or seconds, got {toml_value(value)}")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str) and value.strip().isdigit():
        seconds = int(value.strip())
    elif isinstance(value, str) and _DURATION_RE.match(value.lower()):
        seconds = sum(int(n) * _UNIT_S[u] for n, u in _DURATION_PART_RE.findall(value.lower()))
    else:
        raise ValueError(f"expected a duration like \"90s\", \"15m\", \"2h\", \"1d\" or whole "
                         f"seconds, got {toml_value(value)}")
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {toml_value(value)}")
    if seconds > MAX_DURATION_S:  # a database column holds it: an absurd one overflowed there
        raise ValueError(f"a duration must be at most 365d, got {toml_value(value)}")
    return seconds


def duration_text(seconds: int) -> str:
    """`seconds` as sources.toml writes an interval, the inverse of `parse_duration`:
    900 -> "15m", 5400 -> "1h30m", 86400 -> "1d", 90 -> "1m30s"."""
    if seconds <= 0:
        return f"{seconds}s"
    parts = []
    for unit in "dhms":
        n, seconds = divmod(seconds, _UNIT_S[unit])
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts)


class _SourceErrors:
    """Builds errors that point at one source table: file, line, source label, key."""

    def __init__(self, file: str, lines: KeyLines, index: int, table: dict[str, Any]):
        self.file, self.lines, self.index = file, lines, index
        name = table.get("name")
        self.name = name if isinstance(name, str) and _NAME_RE.match(name) else None
        self.label = f"source '{name}' (#{index + 1})" if self.name else f"source #{index + 1}"

    def __call__(self, message: str, *path: str) -> ConfigError:
        return ConfigError(f"{self.label}: {message}", file=self.file,
                           line=self.lines.of("source", self.index, *path),
                           key=".".join(path))


def trial_source(url: str, title: str = "", taken: Iterable[str] = ()) -> SourceSpec | None:
    """A source for `url` that no sources file names, for `tidings sources check URL`: an
    operator tries a feed before adding it. None when `url` is not an absolute http(s) URL
    (it is then a source's name). Named after its host ("www.news-site.example" ->
    "news-site-example", `trial_name`), kind auto, no category yet; `title`, the feed's
    once read, names one on an IP address. `taken`: the file's names, which it avoids
    ("news-example-2"): a second feed of a host the file reads was suggested under the first
    one's name, and the file, pasted into, no longer loaded (two sources of one name)."""
    if url_problem(url) is not None:
        return None
    name = unique_name(trial_name(url.strip(), title), set(taken))
    return SourceSpec(name=name, url=url.strip(), category="")


def unique_name(base: str, taken: set[str]) -> str:
    """`base`, else `base-2`, `base-3`, ... : the first not in `taken`, cut to fit the
    name's width (a valid name stays valid: it starts with a letter or digit)."""
    if base not in taken:
        return base
    n = 2
    while True:
        suffix = f"-{n}"
        candidate = base[:MAX_SOURCE_NAME_CHARS - len(suffix)].rstrip("-_") + suffix
        if candidate not in taken:
            return candidate
        n += 1


def trial_name(url: str, title: str = "") -> str:
    """The name `sources check URL` suggests for a feed at `url` (pure): its host's, without
    "www.". An IP address names no publisher ("http://127.0.0.1:8080/feed.xml" was
    "127-0-0-1", and "http://[::1]:8080/" was "1"): the feed's `title` names it then, as
    `import-opml` names feeds, else the address with its port ("127-0-0-1-8080", an IPv6
    one "ipv6-1-8080"), so two local feeds on two ports are two names."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return name_slug(host.removeprefix("www.")) or "source"
    if slug := name_slug(title):
        return slug
    port = f" {parts.port}" if parts.port else ""
    if address.version == 6:  # "::1" alone is "1", a name that says nothing
        return name_slug(f"ipv6 {address.compressed}{port}")
    return name_slug(f"{address}{port}")


def sources_reading(specs: Iterable[SourceSpec], url: str) -> list[SourceSpec]:
    """The sources whose URL is `url` (canonical: "HTTP://Site.example/feed#x" is
    "http://site.example/feed"), enabled ones first, in file order (pure). `sources check URL`
    of a feed the file already reads checks that source, with its rules, instead of a trial
    source whose table, pasted, read the feed twice a round."""
    try:
        wanted = canonical_url(url.strip())
    except ValueError:
        return []
    found = [s for s in specs if canonical_url(s.url) == wanted]
    return sorted(found, key=lambda s: not s.enabled)


def name_slug(text: str, max_chars: int = MAX_SOURCE_NAME_CHARS) -> str:
    """`text` as a source name, "" when nothing of it is left: accents folded ("Économie" ->
    "economie", "Straße" -> "strasse"), lower case, each run of other characters one "-",
    no "-" or "_" at either end, at most `max_chars`. Letters without an ASCII form (Cyrillic,
    CJK) are dropped: the caller falls back to the host's name."""
    folded = unicodedata.normalize("NFKD", text.casefold()).encode("ascii", "ignore").decode()
    return one_dash(re.sub(r"[^a-z0-9_-]+", "-", folded)).strip("-_")[:max_chars].rstrip("-_")


def one_dash(slug: str) -> str:
    """Each run of "-" (with any "_" beside them) as one "-": a title's own dashes, kept as
    allowed characters, met the "-" its spaces became ("tagesschau.de - Die Nachrichten der
    ARD" was "tagesschau-de---die-nachrichten-der-ard"). A lone "_" ("bbc_news") stays."""
    return re.sub(r"[-_]*-[-_]*", "-", slug)


def category_slug(text: str, max_chars: int = MAX_CATEGORY_CHARS) -> str:
    """`text` (an OPML folder's title) as a category, "" when it has no letter or digit:
    lower case, accents folded as in a name ("Économie" -> "economie"), each run of other
    characters one "-". Unlike a name, letters without an ASCII form stay ("Новости" ->
    "новости", "政治"): a category is free text, and dropping them left every feed of such a
    folder without one (so exported sources came back without their category)."""
    kept = []
    for ch in text.casefold():
        base = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
        kept.append(base or ch)
    return one_dash(re.sub(r"[^\w-]+", "-", "".join(kept))).strip("-_")[:max_chars].rstrip("-_")


def toml_string(value: str) -> str:
    """`value` as a TOML basic string. Not json.dumps alone: its ASCII escapes write a
    character beyond U+FFFF as a surrogate pair ("\\ud83d\\ude00"), which TOML refuses, and
    without them DEL stays raw, which TOML refuses too."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def source_table(spec: SourceSpec) -> str:
    """The `[[source]]` table of a source to add (kind auto finds feeds, JSON Feeds and
    sitemaps alike), to paste into sources.toml: a checked trial source, a feed read from an
    OPML file. Without a category it is left for the operator to fill in (loading refuses it
    empty, naming the line)."""
    category = (f"category = {toml_string(spec.category)}" if spec.category else
                'category = ""  # required: the section of its stories, e.g. "politics"')
    return "\n".join(["[[source]]", f"name = {toml_string(spec.name)}",
                      f"url = {toml_string(spec.url)}", category])


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a source's URL, else None (pure)."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError when out of range or not a number
    except ValueError as e:  # "http://[::1/x", ":99999": the fetch would fail on every round
        return f"url is not a valid URL ({e}), got {url!r}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"url must be an absolute http(s) URL, got {url!r}"
    if parts.port == 0:  # no server listens on it: loaded, the source failed every round
        return f"url has port 0, which no server can answer on, got {url!r}"
    if parts.username is not None or parts.password is not None:
        # The fetcher refuses them (aggregator.netguard): accepted here, the source failed
        # every round with the password in the log, its last_error and `sources list`.
        # Not echoed: this error reaches the log too (a hot reload keeps the old sources).
        return ("url must not carry a user name or password (user:password@host): the "
                "collector does not send them")
    try:  # a host no URL can have ("a b.example", "a..example"): loaded, it could never be
        canonical_url(url)  # fetched, and comparing the sources' URLs stopped at it
    except ValueError as e:
        return f"url is not a valid URL ({e}), got {url!r}"
    return None


def _check_url(url: Any, err: _SourceErrors) -> str:
    if not isinstance(url, str):
        raise err(f"url must be a string, got {toml_value(url)}", "url")
    problem = url_problem(url)
    if problem is not None:
        raise err(problem, "url")
    return url.strip()


def _check_selectors(raw: Any, err: _SourceErrors) -> Selectors:
    if not isinstance(raw, dict):
        raise err("selectors must be a table ([source.selectors])", "selectors")
    for key in raw:
        if key not in SELECTOR_KEYS:
            raise err(f"unknown selector{did_you_mean(key, SELECTOR_KEYS)} (known: "
                      f"{', '.join(SELECTOR_KEYS)})", "selectors", key)
    for required in ("item", "link"):
        if required not in raw:
            raise err(f"selectors need '{required}'", "selectors")
    pages = raw.get("pages", 1)
    if isinstance(pages, bool) or not isinstance(pages, int) or not 1 <= pages <= MAX_LISTING_PAGES:
        raise err(f"pages must be a whole number from 1 to {MAX_LISTING_PAGES}, got {toml_value(pages)}",
                  "selectors", "pages")
    if raw.get("next") and pages == 1:  # it would never be followed: say so, not ignore it
        raise err("next is followed only with pages > 1 (pages = 1 reads the first page alone)",
                  "selectors", "next")
    raw = {k: v for k, v in raw.items() if k != "pages"}
    translator = GenericTranslator()
    for key, css in raw.items():
        if not isinstance(css, str) or (key in ("item", "link") and not css.strip()):
            raise err(f"selector must be a non-empty string, got {toml_value(css)}", "selectors", key)
        if css.strip():
            try:  # compile now, so a typo fails at start and not on every fetch
                translator.css_to_xpath(css)
            except (SelectorError, RecursionError) as e:  # a selector nested thousands deep
                raise err(f"invalid CSS selector {css!r}: {e}", "selectors", key) from None
    return Selectors(**{k: v.strip() for k, v in raw.items()}, pages=pages)


def _check_rule(table: dict[str, Any], key: str, err: _SourceErrors) -> str:
    """The `keep` or `block` rule as written ("" when absent), compiled now so that a typo
    fails at load, naming its line, and not in every round's parse."""
    if key not in table:
        return ""
    pattern = table[key]
    if not isinstance(pattern, str):
        raise err(f"{key} must be a regular expression in a string, got {toml_value(pattern)}", key)
    try:
        compile_rule(pattern)
    except ValueError as e:
        raise err(f"{key} {e}", key) from None
    return pattern


def _check_timezone(table: dict[str, Any], err: _SourceErrors) -> str:
    """The source's IANA time zone ("" when absent), looked up now so that a typo fails at
    load with its line, not as stories an hour or two off. Every kind reads it: listings,
    and feeds' and sitemaps' dates written without a zone."""
    if "timezone" not in table:
        return ""
    zone = table["timezone"]
    if not isinstance(zone, str) or not zone.strip():
        raise err(f"timezone must be an IANA time zone name like \"Europe/Berlin\", got "
                  f"{toml_value(zone)}", "timezone")
    try:
        ZoneInfo(zone.strip())
    # ValueError: "../x" or an absolute path; OSError: a folder of zones ("Europe"). Their
    # text names files of the zone database, no help to an operator: not echoed.
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise err(f"unknown time zone {zone!r} (an IANA name like \"Europe/Berlin\" or "
                  f"\"America/New_York\")", "timezone") from None
    return zone.strip()


def _spec(table: dict[str, Any], err: _SourceErrors, default_interval_s: int) -> SourceSpec:
    for key in table:
        if key not in SOURCE_KEYS:
            raise err(f"unknown key{did_you_mean(key, SOURCE_KEYS)} (known: "
                      f"{', '.join(SOURCE_KEYS)})", key)
    for required in ("name", "url", "category"):
        if required not in table:
            raise err(f"missing required key '{required}'", required)
    for key, value in table.items():  # TOML's "\u0000" escape: PostgreSQL refuses NUL in text
        if isinstance(value, str) and CONTROL_CHARS.search(value):
            raise err(f"{key} must not hold control characters, got {toml_value(value)}", key)

    name = table["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise err(f"name must be a slug of a-z, 0-9, '-' and '_' starting with a letter or "
                  f"digit, got {toml_value(name)}", "name")
    if len(name) > MAX_SOURCE_NAME_CHARS:  # the database's column: PostgreSQL refused it
        raise err(f"name must be at most {MAX_SOURCE_NAME_CHARS} characters, got {len(name)}",
                  "name")
    url = _check_url(table["url"], err)
    category = table["category"]
    if not isinstance(category, str) or not category.strip():
        raise err(f"category must be a non-empty string, got {toml_value(category)}", "category")
    if len(category.strip()) > MAX_CATEGORY_CHARS:
        raise err(f"category must be at most {MAX_CATEGORY_CHARS} characters, got "
                  f"{len(category.strip())}", "category")

    kind = table.get("kind", "auto")
    if kind not in KINDS:
        raise err(f"kind must be one of {', '.join(KINDS)}, got {toml_value(kind)}", "kind")

    interval_s = default_interval_s
    if "interval" in table:
        try:
            interval_s = parse_duration(table["interval"])
        except ValueError as e:
            raise err(str(e), "interval") from None

    flags: dict[str, bool] = {}
    for key, default in (("enabled", True), ("full_text", False)):
        value = table.get(key, default)
        if not isinstance(value, bool):
            raise err(f"{key} must be true or false, got {toml_value(value)}", key)
        flags[key] = value

    weight = table.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, int | float):
        raise err(f"weight must be a number, got {toml_value(weight)}", "weight")
    if not 0.0 <= weight <= MAX_WEIGHT:
        raise err(f"weight must be between 0 and {MAX_WEIGHT:g}, got {toml_value(weight)}", "weight")

    zone = _check_timezone(table, err)
    selectors = zone_only(zone)  # a feed's or sitemap's zone rides in Selectors (see there)
    if "selectors" in table:
        if kind != "html":
            raise err(f"selectors are only for kind = \"html\" (this source is {kind!r})",
                      "selectors")
        selectors = _check_selectors(table["selectors"], err)
        selectors = dataclasses.replace(selectors, timezone=zone)
    elif kind == "html":
        raise err("kind = \"html\" needs a [source.selectors] table with at least item and link",
                  "kind")

    return SourceSpec(name=name, url=url, category=category.strip(), kind=kind,
                      interval_s=interval_s, enabled=flags["enabled"], weight=float(weight),
                      full_text=flags["full_text"], selectors=selectors,
                      keep=_check_rule(table, "keep", err), block=_check_rule(table, "block", err))


# How far apart a file's time and a process's clock may be and still agree: the file's machine
# and this one keep time within milliseconds with NTP, and a file's mtime is the kernel's
# coarse clock, a few milliseconds behind a process's. Here (a file's time past the clock)
# and in `store._newer_rows_kept` (a row edited after the file was written).
FILE_CLOCK_SLACK_S = 2.0


def written_at(path: Path, now: datetime | None = None) -> datetime | None:
    """When the sources file was last written (its mtime), None when it cannot be read: a
    sync compares it with the database's edits (`Store.sync_sources`). A time after `now`
    (the clock, by default) is none: the file was copied, its time kept (`cp -p`, `rsync
    -a`), from a machine whose clock ran ahead. Taken as written, it was newer than every
    other machine's edit until that date, and undid them at each sync. It counts as when
    the file last changed on this machine (its ctime, which this machine's clock stamped at
    the copy and no copy can set), not after `now`; a WARNING names the file and its time."""
    try:
        stat = path.stat()
    except OSError:
        return None
    now = now or datetime.now(UTC)
    at = datetime.fromtimestamp(stat.st_mtime, UTC)
    if at <= now + timedelta(seconds=FILE_CLOCK_SLACK_S):
        return at
    here = min(datetime.fromtimestamp(stat.st_ctime, UTC), now)
    log.warning("sources.future_time file=%s modified=%s is after this machine's clock (%s): "
                "counted as changed here at %s; `touch` it to apply it whole",
                path, at.isoformat(), now.isoformat(), here.isoformat())
    return here


def load_sources(path: Path, *, default_interval_s: int = 900,
                 min_interval_s: int = 0, set_by: str = "",
                 refuse_empty: bool = False) -> list[SourceSpec]:
    """Read and validate every `[[source]]` of `path`, in file order (disabled ones included).
    `min_interval_s` ([collect] min_interval_s; 0: not checked): an enabled source's interval
    below it is logged, naming its file, line and key (`interval_raised`). `set_by`: where
    `path` was set (Settings.sources_from), named when the file cannot be read at all.
    `refuse_empty`: a file with no `source` key at all is NoSources (`source = []` is not)."""
    try:
        data, lines = read_toml(Path(path))
    except ConfigError as e:
        if not set_by or e.line is not None:
            raise
        # `TIDINGS_SOURCES_FILE=/srv/tidngs/sources.toml` said only "/srv/tidngs/sources.toml:
        # file not found": the operator looked for the typo in the settings file, not in the
        # environment, as a missing database names TIDINGS_DATA_DIR (NoDatabase).
        raise ConfigError(f"{e.message} ({set_by})", file=e.file) from e
    file = str(path)
    for key in data:
        if key != "source":
            raise ConfigError(f"unknown top-level key{did_you_mean(key, ['source'])} (a "
                              "sources file holds only [[source]] tables)", file=file,
                              line=lines.of(key), key=key)
    if refuse_empty and "source" not in data:
        raise NoSources(file)
    tables = data.get("source", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError("'source' must be an array of [[source]] tables", file=file,
                          line=lines.of("source"), key="source")

    specs: list[SourceSpec] = []
    first_line: dict[str, int | None] = {}
    url_lines: list[int | None] = []
    # Every bad source is reported in one pass (the first problem of each), so an operator
    # fixes the file in one go instead of one rerun per source.
    errors: list[ConfigError] = []
    for index, table in enumerate(tables):
        err = _SourceErrors(file, lines, index, table)
        try:
            spec = _spec(table, err, default_interval_s)
            if spec.name in first_line:
                where = f" (first at line {first_line[spec.name]})" if first_line[spec.name] else ""
                raise err(f"duplicate name {spec.name!r}{where}", "name")
        except ConfigError as e:
            errors.append(e)
            if err.name:  # a later source of that name is still a duplicate
                first_line.setdefault(err.name, lines.of("source", index, "name"))
            continue
        first_line[spec.name] = lines.of("source", index, "name")
        specs.append(spec)
        url_lines.append(lines.of("source", index, "url"))
        if "interval" in table and (why := interval_raised(spec, min_interval_s)):
            log.warning("sources.interval_raised %s", err(why, "interval"))
    if errors:
        first = errors[0]
        raise ConfigError(first.message, file=first.file, line=first.line, key=first.key,
                          also=tuple(errors[1:]))
    for message in repeated_feeds(specs, url_lines):
        log.warning("sources.repeated %s: %s", file, message)
    return specs


def interval_raised(spec: SourceSpec, min_interval_s: int) -> str | None:
    """Why the schedule checks `spec` less often than its `interval` says, else None (pure).
    Not an error (the schedule raises it to the minimum, a bound for every source), but it
    was silent: an operator who wrote "90s" saw the source checked every 5 minutes."""
    if not spec.enabled or spec.interval_s >= min_interval_s:
        return None
    floor = duration_text(min_interval_s)
    return (f"interval {duration_text(spec.interval_s)} is below [collect] min_interval_s "
            f"({floor}), so the source is checked no more often than every {floor}; lower "
            "min_interval_s in the settings file to check it more often")


def repeated_feeds(specs: list[SourceSpec], url_lines: list[int | None]) -> list[str]:
    """One message for each enabled source that reads what an earlier one reads: the same URL
    (canonical), kind, selectors and rules. Not an error (an operator may be moving a feed
    between names), but it was silent: the feed was fetched twice a round, and each story is
    stored under whichever source stored it first. HTML pages read with other selectors are
    other sources, as is a feed split by rules (its sport in one category, the rest in
    another)."""
    first: dict[tuple, tuple[str, int | None]] = {}
    out = []
    for spec, line in zip(specs, url_lines, strict=True):
        if not spec.enabled:
            continue
        key = (canonical_url(spec.url), spec.kind, spec.selectors, spec.keep, spec.block)
        if key in first:
            name, at = first[key]
            where = f" (line {at})" if at else ""
            out.append(f"line {line}: source {spec.name!r} reads the same URL as {name!r}{where}; "
                       "it is fetched twice a round, and each story is stored under the source "
                       "that stores it first")
        else:
            first[key] = (spec.name, line)
    return out


def sources_digest(specs: Iterable[SourceSpec]) -> str:
    """A stable digest of what the specs say, order-free: it changes iff a source changed."""
    canonical = sorted((dataclasses.asdict(s) for s in specs), key=lambda d: d["name"])
    blob = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
