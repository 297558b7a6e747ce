"""Load the operator's settings (config/tidings.toml + TIDINGS_* variables) into frozen dataclasses.

Strict on purpose (STYLE.md habit 10): unknown sections and keys, wrong types and out-of-range
values raise ConfigError naming file, line and key, so a typo never falls back to a default
in silence. This module only reads the file and the mapping it is handed; the result is passed
down explicitly and nothing here keeps global state.

Environment overrides (DESIGN.md 4.2), applied after the file:
  TIDINGS_<KEY>            a top-level key, e.g. TIDINGS_DATABASE_URL, TIDINGS_DATA_DIR
  TIDINGS_<SECTION>_<KEY>  a section key, e.g. TIDINGS_API_PORT, TIDINGS_INDEX_EMBEDDER
  TIDINGS_API_KEY          alias of TIDINGS_API_API_KEY (api.api_key); the long form wins
Values are parsed by the field's type: booleans 1/true/yes/on or 0/false/no/off, tuples
comma-separated (empty = empty tuple), relative paths against the working directory.
A variable that names a known section but no key of it (TIDINGS_API_PROT), or that is one
typo away from a top-level one (TIDINGS_DATABASE_URI) or from a section's name before one of
its keys (TIDINGS_COLECT_ENABLED), is an error; other TIDINGS_* names are left alone, since
other tools may use the prefix.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import json
import math
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aggregator.errors import ConfigError
from aggregator.robots import product_token

DEFAULT_CONFIG_PATH = Path("config") / "tidings.toml"
ENV_PREFIX = "TIDINGS_"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# recommender.embed.make_embedder knows these names
EMBEDDERS = ("minilm", "minilm-int8", "minilm-int8-ort", "minilm-int8-ov", "minilm-onnx", "hash")


def closest(word: str, known: typing.Iterable[str], cutoff: float) -> str | None:
    """The known name one typo from `word`, if one is (pure)."""
    near = difflib.get_close_matches(word, list(known), n=1, cutoff=cutoff)
    return near[0] if near else None


def did_you_mean(word: str, known: typing.Iterable[str]) -> str:
    """" (did you mean 'weight'?)" for a key one typo from a known one ("wieght",
    "intervall", "tick"), else "" (pure). The list of known keys alone left the operator to
    spot the typo among a dozen names."""
    near = closest(word.lower(), known, 0.75)
    return f" (did you mean {near!r}?)" if near else ""


def _opt(default: Any, *, lo: float | None = None, hi: float | None = None,
         choices: tuple[str, ...] | None = None) -> Any:
    """A dataclass field whose bounds are checked on load (inclusive)."""
    return field(default=default, metadata={"lo": lo, "hi": hi, "choices": choices})


@dataclass(frozen=True)
class CollectSettings:
    enabled: bool = True
    tick_s: float = _opt(15.0, lo=0.1, hi=3600)
    default_interval_s: int = _opt(900, lo=1, hi=7 * 86400)
    min_interval_s: int = _opt(300, lo=1, hi=7 * 86400)
    max_interval_s: int = _opt(21600, lo=1, hi=30 * 86400)
    max_backoff_s: int = _opt(43200, lo=1, hi=30 * 86400)
    jitter_ratio: float = _opt(0.1, lo=0.0, hi=0.5)
    global_limit: int = _opt(50, lo=1, hi=10_000)
    per_host_limit: int = _opt(2, lo=1, hi=100)
    connect_timeout_s: float = _opt(10.0, lo=0.1, hi=600)
    total_timeout_s: float = _opt(30.0, lo=0.1, hi=3600)
    max_body_bytes: int = _opt(10_000_000, lo=1024, hi=1_000_000_000)
    parse_timeout_s: float = _opt(60.0, lo=0.1, hi=3600)  # per body, in a worker process
    user_agent: str = "Tidings/0.1 (self-hosted news aggregator)"
    full_text_limit: int = _opt(20, lo=0, hi=10_000)  # article pages per source per round
    lease_s: int = _opt(300, lo=1, hi=86400)
    reload_sources_s: float = _opt(5.0, lo=0, hi=86400)  # 0 = read sources.toml only at start
    # Hosts no source names (article links, redirects) must resolve to public addresses.
    public_links_only: bool = True


@dataclass(frozen=True)
class IndexSettings:
    enabled: bool = True
    embedder: str = _opt("minilm-int8", choices=EMBEDDERS)
    batch_size: int = _opt(32, lo=1, hi=4096)
    threads: int = _opt(0, lo=0, hi=1024)  # 0 = all cores
    tick_s: float = _opt(2.0, lo=0.05, hi=3600)
    hnsw_threshold: int = _opt(50_000, lo=0, hi=10**10)
    hnsw_m: int = _opt(32, lo=4, hi=256)
    ef_search: int = _opt(64, lo=1, hi=10_000)
    sq8_threshold: int = _opt(500_000, lo=0, hi=10**10)
    nprobe: int = _opt(32, lo=1, hi=65_536)
    lease_s: int = _opt(600, lo=1, hi=86400)  # claim on a backlog chunk (crashed indexers)


@dataclass(frozen=True)
class ApiSettings:
    host: str = "127.0.0.1"
    port: int = _opt(8000, lo=0, hi=65535)  # 0 = any free port
    api_key: str = ""
    cors_origins: tuple[str, ...] = ("*",)
    fetch_allow_hosts: tuple[str, ...] = ()
    fetch_timeout_s: float = _opt(8.0, lo=0.1, hi=600)
    fetch_max_bytes: int = _opt(3_000_000, lo=1024, hi=1_000_000_000)
    page_read_timeout_s: float = _opt(15.0, lo=0.1, hi=600)
    # The longest one database call of an API request waits (a 503 past it); jobs have none.
    database_timeout_s: float = _opt(10.0, lo=0.1, hi=600)
    url_cache_s: int = _opt(3600, lo=0, hi=30 * 86400)
    default_k: int = _opt(5, lo=1, hi=1000)
    max_k: int = _opt(50, lo=1, hi=1000)
    events_per_minute: int = _opt(600, lo=0, hi=10**9)  # 0 = no limit
    related_url_per_minute: int = _opt(60, lo=0, hi=10**9)  # 0 = no limit
    related_url_reads_at_once: int = _opt(4, lo=0, hi=10**6)  # 0 = no limit
    related_text_per_minute: int = _opt(120, lo=0, hi=10**9)  # 0 = no limit
    public_url: str = ""
    workers: int = _opt(1, lo=1, hi=64)  # `tidings serve` processes (api/workers.py)
    fast_path: bool = True  # replay cached related blocks before FastAPI (api/fastpath.py)
    access_log: bool = False  # one log line per request (api.app.AccessLog)


@dataclass(frozen=True)
class MetricsSettings:
    # `/healthz` and `/metrics` of a process that serves no API (`collect`, `index --watch`).
    host: str = "127.0.0.1"
    port: int = _opt(0, lo=0, hi=65535)  # 0 = no listener


@dataclass(frozen=True)
class RelatedSettings:
    max_age_days: float = _opt(0.0, lo=0, hi=36500)  # 0 = no limit
    freshness_half_life_h: float = _opt(72.0, lo=0.01, hi=10**6)
    # recommender.related.RankParams.min_relevance (0 = fill every block).
    min_relevance: float = _opt(0.3, lo=0.0, hi=2.0)


@dataclass(frozen=True)
class FeedSettings:
    page_size: int = _opt(20, lo=1, hi=500)
    max_per_source: int = _opt(3, lo=1, hi=500)
    exploration_share: float = _opt(0.1, lo=0.0, hi=1.0)
    history_days: int = _opt(30, lo=1, hi=36500)


@dataclass(frozen=True)
class RetentionSettings:
    stories_days: int = _opt(0, lo=0, hi=36500)  # 0 = keep forever
    events_days: int = _opt(90, lo=0, hi=36500)  # 0 = keep forever
    # The index change log (replicas follow it). A replica stopped or stalled longer than this
    # reloads every story from the database (~10 min at a million) instead of replaying.
    change_log_days: int = _opt(30, lo=0, hi=36500)  # 0 = keep forever


@dataclass(frozen=True)
class Settings:
    database_url: str
    data_dir: Path
    sources_file: Path
    config_file: Path | None = None
    # Where the database's place was set ("TIDINGS_DATA_DIR=/srv/tidings", "data_dir in
    # config/tidings.toml:14"), for the commands that refuse a missing database to name it.
    database_from: str = ""
    # Where sources_file was set ("TIDINGS_SOURCES_FILE=conf/sources.toml", "sources_file in
    # config/tidings.toml:9"), for the error of a sources file that is not there to name it.
    sources_from: str = ""
    collect: CollectSettings = field(default_factory=CollectSettings)
    index: IndexSettings = field(default_factory=IndexSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    related: RelatedSettings = field(default_factory=RelatedSettings)
    feed: FeedSettings = field(default_factory=FeedSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    log_level: str = "info"


SECTIONS: dict[str, type] = {
    "collect": CollectSettings,
    "index": IndexSettings,
    "api": ApiSettings,
    "metrics": MetricsSettings,
    "related": RelatedSettings,
    "feed": FeedSettings,
    "retention": RetentionSettings,
}
# Top-level keys a file may set (config_file is where the settings came from, not a setting).
# URL schemes that name no driver, and the async one Tidings ships for each. SQLAlchemy reads
# `postgresql://` as psycopg (not installed: "No module named 'psycopg'" at start) and refuses
# `sqlite://` in its async engine; `postgres://` (Heroku, many hosts) it does not read at all.
DRIVERLESS_SCHEMES = {"postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg",
                      "sqlite": "sqlite+aiosqlite"}


def with_async_driver(url: str) -> str:
    """`url` with the shipped async driver when its scheme names none (the libpq form that
    psql and pg_dump take); a URL that names a driver is left as written."""
    scheme, sep, rest = url.partition("://")
    driver = DRIVERLESS_SCHEMES.get(scheme.strip().lower()) if sep else None
    return f"{driver}://{rest}" if driver else url


def _sqlite_database(url: str) -> str | None:
    """The database part of an SQLite URL ("" for none), None for another database. Pure."""
    if not url.lower().startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url

    return make_url(url).database or ""


def sqlite_without_file(url: str) -> bool:
    """Whether `url` is an SQLite URL with no database path at all ("sqlite+aiosqlite:///"),
    which SQLAlchemy takes for an in-memory database. Pure."""
    return _sqlite_database(url) == ""


def default_database_url(data_dir: Path) -> str:
    """The SQLite file in `data_dir` (absolute) that an empty `database_url` means. Pure."""
    # sqlite:/// + /abs/path gives the four slashes SQLAlchemy expects.
    return f"sqlite+aiosqlite:///{(data_dir / 'tidings.db').as_posix()}"


def sqlite_file(url: str) -> Path | None:
    """The file an SQLite URL names; None for another database, an in-memory one or a
    `file:` URI (its path is SQLite's to read). Pure."""
    db = _sqlite_database(url)
    return None if not db or db == ":memory:" or db.startswith("file:") else Path(db)


def anchored_sqlite_url(url: str, base_dir: Path) -> str:
    """`url` with a relative SQLite file path taken from `base_dir` (absolute). SQLite opened
    it from the working directory, so `tidings --config /etc/tidings/tidings.toml run` started
    elsewhere made a new empty database beside the shell, while data_dir (index files) was
    taken from the settings file's directory: stories and index parted."""
    if not url.lower().startswith("sqlite"):
        return url
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    db = parsed.database or ""
    if not db or db == ":memory:" or db.startswith("file:") or Path(db).is_absolute():
        return url
    return parsed.set(database=str((base_dir / db).resolve())).render_as_string(hide_password=False)


TOP_LEVEL_KEYS: dict[str, Any] = {"database_url": str, "data_dir": Path, "sources_file": Path,
                                  "log_level": str}


def env_names() -> dict[str, tuple[str, str]]:
    """Every accepted variable -> (section or "", key); the alias comes from DESIGN.md 4.1."""
    names = {ENV_PREFIX + key.upper(): ("", key) for key in TOP_LEVEL_KEYS}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            names[f"{ENV_PREFIX}{section.upper()}_{f.name.upper()}"] = (section, f.name)
    names[ENV_PREFIX + "API_KEY"] = ("api", "api_key")
    return names


# --- where keys are in a TOML text -------------------------------------------------------------

_BARE_OR_QUOTED = r'(?:[A-Za-z0-9_-]+|"[^"\n]*"|\'[^\'\n]*\')'
_KEY_RE = re.compile(rf"\s*({_BARE_OR_QUOTED}(?:\s*\.\s*{_BARE_OR_QUOTED})*)\s*=")
_ARRAY_TABLE_RE = re.compile(r"\s*\[\[\s*([^\]]+?)\s*\]\]")
_TABLE_RE = re.compile(r"\s*\[\s*([^\]]+?)\s*\]")
_TOML_AT_RE = re.compile(r"at line (\d+)")

LinePath = tuple[str | int, ...]


@dataclass(frozen=True)
class KeyLines:
    """Line numbers of tables and keys in a TOML text: tomllib reports none.

    Paths mirror the parsed data: `("collect", "tick_s")`, or `("source", 2, "url")` for a key
    of the third `[[source]]` table. Found by scanning lines, which is exact for the way config
    files are written (one key a line); anything fancier falls back to its table's line.
    """

    lines: Mapping[LinePath, int]
    # The line and key of a multi-line string (""" or ''') the text never closes, if any:
    # tomllib reports that one at the end of the document, far from where it went wrong.
    unclosed_string: tuple[int, LinePath] | None = None

    def of(self, *path: str | int) -> int | None:
        """The line of `path`, else of its nearest enclosing table or key, else None."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None


def _split_key(text: str) -> tuple[str, ...]:
    parts = re.findall(_BARE_OR_QUOTED, text)
    return tuple(p[1:-1] if p[:1] in "\"'" else p for p in parts)


def scan_key_lines(text: str) -> KeyLines:
    """Index the headers and `key =` lines of a TOML text by the path they define."""
    lines: dict[LinePath, int] = {}
    array_counts: dict[tuple[str, ...], int] = {}  # [[x]] seen so far, by its dotted name
    table: LinePath = ()
    open_string = ""  # the delimiter of a multi-line string we are inside, if any
    opened: tuple[int, LinePath] | None = None  # where that string began, and its key

    def resolve(parts: tuple[str, ...]) -> list[str | int]:
        # [source.selectors] belongs to the latest [[source]]: insert its index after "source".
        out: list[str | int] = []
        for i, part in enumerate(parts):
            out.append(part)
            if parts[: i + 1] in array_counts:
                out.append(array_counts[parts[: i + 1]])
        return out

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if open_string:
            if line.count(open_string) % 2 == 1:
                open_string = ""
            continue
        if not line or line.startswith("#"):
            continue
        if m := _ARRAY_TABLE_RE.match(line):
            parts = _split_key(m[1])
            array_counts[parts] = array_counts.get(parts, -1) + 1
            table = tuple(resolve(parts))
            lines[table] = number
            lines.setdefault(table[:-1], number)  # the array itself: where it starts
            continue
        if m := _TABLE_RE.match(line):
            table = tuple(resolve(_split_key(m[1])))
            lines.setdefault(table, number)
            continue
        if m := _KEY_RE.match(line):
            parts = _split_key(m[1])
            for end in range(1, len(parts) + 1):  # a.b = 1 also defines table a
                lines.setdefault(table + parts[:end], number)
            rest = line[m.end():]
            for delim in ('"""', "'''"):
                if rest.lstrip().startswith(delim) and rest.count(delim) % 2 == 1:
                    open_string, opened = delim, (number, table + parts)
    return KeyLines(lines, opened if open_string else None)


def key_on_line(text: str, number: int) -> str:
    """The dotted key (tables included, `source.name`) that line `number` of a TOML text sets,
    "" when it sets none (pure). A syntax error names its line alone ("invalid TOML: Illegal
    character '\\n' (at line 12, column 14)"), while every other error of the file names its
    key too; this one's is read from the line's `key =` and the table header above it."""
    # Lines as TOML (and tomllib's number) count them: at "\n" alone. `splitlines` also
    # breaks at a line separator a string or comment may hold (U+2028, U+0085...), and the
    # line above the error was read.
    lines = text.split("\n")
    if not 1 <= number <= len(lines) or not _KEY_RE.match(lines[number - 1]):
        return ""
    header = next((line for line in reversed(lines[:number - 1])
                   if _ARRAY_TABLE_RE.match(line) or _TABLE_RE.match(line)), "")
    # The header and the line alone: the lines between (or a repeated key, which the scan
    # keeps at its first line) cannot hide this one's path.
    found = scan_key_lines(f"{header}\n{lines[number - 1]}").lines
    paths = [path for path, at in found.items() if at == 2]
    return ".".join(p for p in max(paths, key=len) if isinstance(p, str)) if paths else ""


def _end_of_document_error(text: str, error: str) -> tuple[str, int | None, str]:
    """Message, line and key for a tomllib error "at end of document" (what the file's end
    left open), which names no line (pure). A multi-line string never closed is named where
    it opens, with its key: the end of the file may be hundreds of lines below it. Anything
    else (an unclosed `[source`, a string without its closing quote on the last line) is
    named at the last line with something on it."""
    message = f"invalid TOML: {error}"
    if "at end of document" not in error or not text.strip():
        return message, None, ""
    if opened := scan_key_lines(text).unclosed_string:
        line, path = opened
        key = ".".join(p for p in path if isinstance(p, str))  # ("source", 2, "x"): source.x
        return f"{message}: the multi-line string that opens here is never closed", line, key
    return message, text.rstrip().count("\n") + 1, ""


def read_toml(path: Path) -> tuple[dict[str, Any], KeyLines]:
    """Parse a TOML file; a missing, unreadable or malformed file is a ConfigError."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as e:
        raise ConfigError("file not found", file=str(path)) from e
    except OSError as e:
        raise ConfigError(f"cannot read: {e}", file=str(path)) from e
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text (byte 0x{raw[e.start]:02x})", file=str(path),
                          line=raw.count(b"\n", 0, e.start) + 1) from None
    # A byte order mark (Windows Notepad saves UTF-8 with one) is no content: tomllib read
    # it as a statement, "Invalid statement (at line 1, column 1)" on a file that looks fine.
    text = text.removeprefix("\ufeff")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        if m := _TOML_AT_RE.search(str(e)):
            line = int(m[1])
            raise ConfigError(f"invalid TOML: {e}", file=str(path), line=line,
                              key=key_on_line(text, line)) from e
        message, line, key = _end_of_document_error(text, str(e))
        raise ConfigError(message, file=str(path), line=line, key=key) from e
    except RecursionError:  # tomllib recurses per nesting level: thousands of [[[...
        raise ConfigError("invalid TOML: values nested too deeply", file=str(path)) from None
    return data, scan_key_lines(text)


# --- values ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Origin:
    """Where a value came from, so an error can point there."""

    file: str = ""
    line: int | None = None
    env_var: str = ""

    def error(self, message: str, key: str) -> ConfigError:
        if self.env_var:
            return ConfigError(f"environment variable {self.env_var}: {message}", key=key)
        return ConfigError(message, file=self.file, line=self.line, key=key)

    def source(self, key: str, shown: object = None) -> str:
        """Where `key` was set, in a few words; `shown`: its value, beside a variable's name."""
        if self.env_var:
            return self.env_var if shown is None else f"{self.env_var}={shown}"
        return f"{key} in {self.file}" + (f":{self.line}" if self.line else "")


_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
               Path: "a path string"}
_STR_TUPLE = tuple[str, ...]


def _type_name(hint: Any) -> str:
    return "an array of strings" if hint == _STR_TUPLE else _TYPE_NAMES.get(hint, str(hint))


def _describe(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array",
            dict: "table", datetime.datetime: "date-time"}.get(type(value), type(value).__name__)
    return f"{kind} {toml_value(value)}" if kind != "table" else "a table"


_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+\Z")


def toml_value(value: Any) -> str:
    """`value`, read from a TOML file, as the file writes it, for an error to quote: `true`,
    not Python's `True`; `["feed"]`, `{a = 1}`, `1979-05-27`, not their Python reprs, which
    an operator who wrote `interval = true` had to translate back. A string keeps the single
    quotes every message used ('15x', a TOML literal string) unless it holds a quote or a
    control character: then a basic string with TOML's escapes ("it's", "a\u0000b")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        if "'" in value or CONTROL_CHARS.search(value):
            return json.dumps(value, ensure_ascii=False)
        return f"'{value}'"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        pairs = (f"{k if _BARE_KEY_RE.match(k) else json.dumps(k, ensure_ascii=False)} = "
                 f"{toml_value(v)}" for k, v in value.items())
        return "{" + ", ".join(pairs) + "}"
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return repr(value)  # int; float (inf and nan are TOML's spelling too)


def _from_toml(value: Any, hint: Any) -> Any:
    """TOML value -> the field's type; TypeError names what was expected."""
    ok: bool
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, str)
    elif hint is Path:
        ok = isinstance(value, str) and value.strip() != ""
        if ok:
            try:
                value = _path(value)
            except ValueError as e:
                raise TypeError(str(e)) from None
    elif hint == _STR_TUPLE:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value
    else:  # pragma: no cover - a field type this loader does not know is a bug here
        raise AssertionError(f"unsupported settings type {hint}")
    if not ok:
        raise TypeError(f"expected {_type_name(hint)}, got {_describe(value)}")
    return value


def _path(s: str) -> Path:
    """A path setting, `~` expanded; ValueError for one no file system takes (a NUL) or a
    `~user` this machine does not have."""
    if "\0" in s:
        raise ValueError(f"a path cannot hold a NUL character, got {s!r}")
    try:
        return Path(s).expanduser()
    except RuntimeError as e:  # "Could not determine home directory"
        raise ValueError(f"cannot expand {s!r}: {e}") from None


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _from_env(text: str, hint: Any) -> Any:
    """Environment string -> the field's type; ValueError names what was expected."""
    s = text.strip()
    if hint is bool:
        if s.lower() in _TRUE | _FALSE:
            return s.lower() in _TRUE
        raise ValueError(f"expected 1/true/yes/on or 0/false/no/off, got {text!r}")
    if hint is int:
        try:
            return int(s)
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
    if hint is float:
        try:
            return float(s)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
    if hint is str:
        return text
    if hint is Path:
        if not s:
            raise ValueError("expected a path, got an empty value")
        return _path(s)
    if hint == _STR_TUPLE:
        return tuple(p.strip() for p in s.split(",") if p.strip())
    raise AssertionError(f"unsupported settings type {hint}")  # pragma: no cover


# No setting or source value holds these (PostgreSQL refuses NUL; a header cannot hold a newline).
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def _check_bounds(value: Any, meta: Mapping[str, Any]) -> str:
    """Why `value` is out of bounds, or "" when it is fine."""
    lo, hi, choices = meta.get("lo"), meta.get("hi"), meta.get("choices")
    # NaN compares false both ways, so it passed every bound (jitter_ratio = nan made each
    # source due a second after its fetch); inf is no setting either.
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {value!r}"
    # No setting is multi-line: a newline in user_agent made every fetch fail (a header).
    if isinstance(value, str) and CONTROL_CHARS.search(value):
        return f"must not hold control characters, got {value!r}"
    if choices is not None and value not in choices:
        return f"must be one of {', '.join(repr(c) for c in choices)}, got {value!r}"
    if lo is not None and value < lo:
        return f"must be >= {lo:g}, got {value:g}"
    if hi is not None and value > hi:
        return f"must be <= {hi:g}, got {value:g}"
    return ""


def _build_section(cls: type, name: str, given: Mapping[str, tuple[Any, _Origin]]) -> Any:
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in given:
            continue
        raw, origin = given[f.name]
        key = f"{name}.{f.name}"
        try:
            value = raw if origin.env_var else _from_toml(raw, hints[f.name])
        except TypeError as e:
            raise origin.error(str(e), key) from None
        if why := _check_bounds(value, f.metadata):
            raise origin.error(why, key)
        values[f.name] = value
    return cls(**values)


# Cross-field rules: (section, smaller key, larger key). Blame whichever was set (`blamed`);
# defaults always satisfy them.
_ORDERED = (
    ("collect", "min_interval_s", "default_interval_s"),
    ("collect", "default_interval_s", "max_interval_s"),
    ("collect", "max_interval_s", "max_backoff_s"),
    ("collect", "connect_timeout_s", "total_timeout_s"),
    ("api", "default_k", "max_k"),
)


def blamed(small: str, large: str, given: Mapping[str, tuple[Any, _Origin]]) -> str:
    """Which of two keys out of order to name (pure): the one an environment variable set
    when only one was, else the larger when both were given, else the one given. The shipped
    file shows every key, so both are always "given": TIDINGS_API_DEFAULT_K=100 was reported
    at the file's `max_k = 50` line, a line nobody changed, and the variable went unnamed."""
    if small in given and large in given:
        from_env = [k for k in (small, large) if given[k][1].env_var]
        return from_env[0] if len(from_env) == 1 else large
    return large if large in given else small


def _check_cross_fields(sections: Mapping[str, Any],
                        given: Mapping[str, Mapping[str, tuple[Any, _Origin]]]) -> None:
    for section, small, large in _ORDERED:
        obj = sections[section]
        a, b = getattr(obj, small), getattr(obj, large)
        if a > b:
            blamed_key = blamed(small, large, given[section])
            origin = given[section][blamed_key][1]
            raise origin.error(f"{section}.{small} ({a:g}) must not exceed "
                               f"{section}.{large} ({b:g})", f"{section}.{blamed_key}")
    for section in ("api", "metrics"):
        if not sections[section].host.strip():  # the default is never empty: it was given
            # uvicorn (and aiohttp) bind "" to every interface: `TIDINGS_API_HOST=${HOST}` with
            # HOST unset put the API (and its unauthenticated calls) on the network instead of
            # 127.0.0.1.
            raise given[section]["host"][1].error(
                'must not be empty (to listen on every interface, write "0.0.0.0" or "::")',
                f"{section}.host")
    user_agent = sections["collect"].user_agent
    if not product_token(user_agent):  # the default has one: it was given
        # Sent as it is: a blank one (`TIDINGS_COLLECT_USER_AGENT=${UA}` with UA unset) was an
        # empty User-Agent header, and robots.txt rules for Tidings no longer applied to it.
        raise given["collect"]["user_agent"][1].error(
            'must begin with a product name that robots.txt rules can name, like "Tidings/0.1 '
            f'(+https://news.example/about)", got {user_agent!r}', "collect.user_agent")
    for key, why_not in (("cors_origins", _origin_problem), ("fetch_allow_hosts", _host_problem)):
        for entry in getattr(sections["api"], key):
            if why := why_not(entry):
                origin = given["api"][key][1]
                raise origin.error(f"{why}, got {entry!r}", f"api.{key}")
    public_url = sections["api"].public_url
    if public_url:
        parts = urlsplit(public_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            origin = given["api"]["public_url"][1]
            raise origin.error(f"must be an absolute http(s) URL or empty, got {public_url!r}",
                               "api.public_url")


def _origin_problem(entry: str) -> str:
    """Why `entry` can never equal a browser's Origin header, or "". The CORS middleware
    compares whole strings: "https://site.example/" (a slash) or "Site.example" matched no
    request, and the widget failed on that site with nothing said at start."""
    if entry == "*":
        return ""
    try:
        parts = urlsplit(entry)
        parts.port  # noqa: B018 - raises ValueError when not a number or out of range
    except ValueError:
        parts = None
    if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname
            or parts.username is not None or parts.password is not None):
        return "each origin must be \"*\" or scheme://host[:port], like \"https://news.example\""
    if parts.path or parts.query or parts.fragment or "?" in entry or "#" in entry:
        return "an origin has no path: write scheme://host[:port] only, no trailing slash"
    if entry != entry.lower():
        return "an origin is lower case, as browsers send it"
    return ""


def _host_problem(entry: str) -> str:
    """Why `entry` can never equal the host of a URL, or "": "http://intranet.example" or
    "intranet.example:8080" in fetch_allow_hosts allowed nothing (hosts are compared bare)."""
    if not entry.strip() or any(c.isspace() or c in "/@?#" for c in entry):
        return "each entry must be a bare host name or address, like \"intranet.example\" or \"10.0.0.5\""
    if re.fullmatch(r"[^:\[\]]+:\d*|\[.*\]:\d*", entry):
        return "a host without its port (the port does not matter)"
    if "[" in entry or "]" in entry:  # a URL's host is compared without them
        return "an IPv6 address without brackets, like \"::1\""
    return ""


def misspelt_section(rest: str) -> str | None:
    """The variable meant by `rest` (a TIDINGS_* name without the prefix, lower case) when
    its section is one typo from a section's name and the rest is exactly a key of that
    section (pure): TIDINGS_COLECT_ENABLED=false left the collector on in silence, as
    TIDINGS_INDX_EMBEDDER left the default model. The exact key keeps other tools' names
    out (the tests' TIDINGS_CLUSTER_LEASE_S is not COLLECT's: "cluster" is no typo)."""
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            prefix = rest.removesuffix("_" + f.name)
            if prefix != rest and prefix != section and closest(prefix, [section], 0.75):
                return f"{ENV_PREFIX}{section.upper()}_{f.name.upper()}"
    return None


def _env_overrides(env: Mapping[str, str]) -> dict[tuple[str, str], tuple[Any, _Origin]]:
    names = env_names()
    hints = {("", k): t for k, t in TOP_LEVEL_KEYS.items()}
    for section, cls in SECTIONS.items():
        for k, t in typing.get_type_hints(cls).items():
            hints[(section, k)] = t
    found: dict[tuple[str, str], tuple[Any, _Origin]] = {}
    top_level_names = [ENV_PREFIX + key.upper() for key in TOP_LEVEL_KEYS]
    # The alias first, so that the long, unambiguous name wins when both are set.
    ordered = sorted((v for v in env if v.startswith(ENV_PREFIX)),
                     key=lambda v: (v != ENV_PREFIX + "API_KEY", v))
    for var in ordered:
        target = names.get(var)
        if target is None:
            rest = var[len(ENV_PREFIX):].lower()
            # A near miss of a top-level name is a typo, not another tool's variable:
            # TIDINGS_DATABASE_URI or TIDINGS_SOURCE_FILE ran on the default database or
            # sources file without a word. (Whole section variables are not matched: the
            # test knob TIDINGS_CLUSTER_LEASE_S is as near to TIDINGS_COLLECT_LEASE_S; only
            # a section's name one typo off before one of its keys, misspelt_section.)
            near = closest(var, top_level_names, 0.8) or misspelt_section(rest)
            if near or any(rest.startswith(s + "_") for s in SECTIONS):
                hint = f" (did you mean {near}?)" if near else ""
                raise ConfigError(f"unknown environment variable {var}: no such settings key"
                                  f"{hint}", key=var)
            continue
        section, key = target
        dotted = f"{section}.{key}" if section else key
        try:
            value = _from_env(env[var], hints[target])
        except ValueError as e:
            raise ConfigError(f"environment variable {var}: {e}", key=dotted) from None
        found[target] = (value, _Origin(env_var=var))
    return found


def load_settings(path: Path | None = None, env: Mapping[str, str] = os.environ) -> Settings:
    """Read the settings file (default config/tidings.toml, optional) and the environment.

    Relative `data_dir`, `sources_file` and SQLite `database_url` paths in the file are taken
    from the file's directory; from the environment, from the working directory. Without a file every setting has its
    default: data_dir "data", sources_file "config/sources.toml" (both from the working dir).
    """
    explicit = path is not None
    path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    data: dict[str, Any] = {}
    lines = KeyLines({})
    config_file: Path | None = None
    if explicit or path.exists():
        data, lines = read_toml(path)
        config_file = path.resolve()
    file = str(path)
    base_dir = path.parent

    top: dict[str, tuple[Any, _Origin]] = {}
    given: dict[str, dict[str, tuple[Any, _Origin]]] = {s: {} for s in SECTIONS}
    for key, value in data.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"[{key}] must be a table, got {_describe(value)}",
                                  file=file, line=lines.of(key), key=key)
            for sub, sub_value in value.items():
                names = [f.name for f in dataclasses.fields(SECTIONS[key])]
                if sub not in names:
                    raise ConfigError(f"unknown key in [{key}]{did_you_mean(sub, names)} "
                                      f"(known: {', '.join(names)})", file=file,
                                      line=lines.of(key, sub), key=f"{key}.{sub}")
                given[key][sub] = (sub_value, _Origin(file, lines.of(key, sub)))
        elif key in TOP_LEVEL_KEYS:
            top[key] = (value, _Origin(file, lines.of(key)))
        else:
            known = ", ".join([*TOP_LEVEL_KEYS, *(f"[{s}]" for s in SECTIONS)])
            hint = did_you_mean(key, [*TOP_LEVEL_KEYS, *SECTIONS])
            raise ConfigError(f"unknown top-level key or section{hint} (known: {known})",
                              file=file, line=lines.of(key), key=key)

    file_key = given["api"].get("api_key")
    for (section, key), override in _env_overrides(env).items():
        (given[section] if section else top)[key] = override
    key_now = given["api"].get("api_key")
    if (file_key and str(file_key[0]).strip() and key_now is not file_key
            and not str(key_now[0]).strip()):
        # `TIDINGS_API_KEY=${KEY}` with KEY unset turned the file's key off without a word: the
        # operator routes (reader export and deletion, source resets) open to anyone.
        raise key_now[1].error(
            "is empty while the settings file sets api.api_key: that would turn authentication "
            "off. Unset the variable to use the file's key (or remove api_key from the file to "
            "run without one)", "api.api_key")

    top_values: dict[str, Any] = {}
    for key, (raw, origin) in top.items():
        try:
            top_values[key] = raw if origin.env_var else _from_toml(raw, TOP_LEVEL_KEYS[key])
        except TypeError as e:
            raise origin.error(str(e), key) from None

    sections = {name: _build_section(cls, name, given[name]) for name, cls in SECTIONS.items()}
    _check_cross_fields(sections, given)

    def place(key: str, default: Path) -> Path:
        if key not in top_values:
            return default.resolve()
        value: Path = top_values[key]
        from_file = not top[key][1].env_var
        return (base_dir / value if from_file else value).resolve()

    data_dir = place("data_dir", Path("data"))
    sources_file = place("sources_file", base_dir / "sources.toml")
    sources_from = (top["sources_file"][1].source("sources_file", top_values["sources_file"])
                    if "sources_file" in top else "the default sources_file, beside the settings file")

    log_level = str(top_values.get("log_level", "info")).lower()
    if log_level not in LOG_LEVELS:
        raise top["log_level"][1].error(
            f"must be one of {', '.join(LOG_LEVELS)}, got {top_values['log_level']!r}",
            "log_level")

    database_url = top_values.get("database_url", "")
    if not database_url.strip() and "database_url" in top and top["database_url"][1].env_var:
        # As TIDINGS_DATA_DIR="" is refused: a deployment's `TIDINGS_DATABASE_URL=${DB_URL}`
        # with DB_URL unset ran on a new SQLite file, whatever database the file named.
        raise top["database_url"][1].error(
            "expected an SQLAlchemy URL, got an empty value (unset the variable for the "
            "settings file's database_url)", "database_url")
    if database_url and "://" not in database_url:
        raise top["database_url"][1].error(
            f"expected an SQLAlchemy URL like sqlite+aiosqlite:///path, got {database_url!r}",
            "database_url")
    database_url = with_async_driver(database_url)
    if sqlite_without_file(database_url):
        # SQLAlchemy opens an in-memory database for it: a run, or an import, kept nothing.
        raise top["database_url"][1].error(
            f"{database_url!r} names no SQLite file (sqlite+aiosqlite:///path/tidings.db; "
            "sqlite+aiosqlite:///:memory: if a database that ends with the process is meant)",
            "database_url")
    if database_url:  # a relative SQLite path: from the file's directory, as data_dir's
        from_file = not top["database_url"][1].env_var
        database_url = anchored_sqlite_url(database_url, base_dir if from_file else Path.cwd())
    if database_url:  # its value unshown: a PostgreSQL URL may hold a password
        database_from = top["database_url"][1].source("database_url")
    else:
        database_url = default_database_url(data_dir)
        database_from = (top["data_dir"][1].source("data_dir", top_values["data_dir"])
                         if "data_dir" in top else "the default data_dir, from the working directory")

    return Settings(database_url=database_url, data_dir=data_dir, sources_file=sources_file,
                    config_file=config_file, database_from=database_from, sources_from=sources_from,
                    log_level=log_level,
                    **sections)
