"""Story files (JSON Lines, DESIGN.md 4.4) in: one object a line, `url` and `title` required.

Each line becomes a StoryDraft through the same normalizing as collected items, so an import
and a collection of the same URL meet on one canonical row. A bad line is reported with its
number and skipped; the rest goes in.
"""

from __future__ import annotations

import codecs
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import BinaryIO

from aggregator.canonical import site_of
from aggregator.dateline import time_from_lead
from aggregator.model import (
    MAX_CATEGORY_CHARS,
    MAX_SITE_CHARS,
    MAX_SOURCE_NAME_CHARS,
    ParsedItem,
    StoryDraft,
)
from aggregator.normalize import MAX_FUTURE, normalize, rejection_reason
from aggregator.sitenames import declared_site
from aggregator.textclean import clean_inline, has_markup, html_to_text

# The story file's fields, in the order of DESIGN.md 4.4 (exports write them in this order),
# then `tags`, added since (optional: files without it import as before).
FIELDS = ("url", "title", "summary", "text", "published_at", "site", "source", "category",
          "author", "image_url", "tags")
# A story file's times: an archive may go back a long way; a time ahead is a wrong clock.
EARLIEST_IMPORT_AT = datetime(1800, 1, 1, tzinfo=UTC)
# Fields a re-imported line updates on its stored story when it names them.
RESTATED = ("site", "source", "category")
# The widths of their columns: on PostgreSQL one longer label failed the whole batch of 500
# lines and stopped the import, where a bad line is to be skipped (DESIGN.md 4.4).
LABEL_LIMITS = {"site": MAX_SITE_CHARS, "source": MAX_SOURCE_NAME_CHARS,
                "category": MAX_CATEGORY_CHARS}


@dataclass(frozen=True)
class LineNote:
    """What the operator should hear about a line that is stored: its URL is an earlier
    line's (`LineError`, a note on a line skipped, says why it was)."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True)
class LineError(LineNote):
    """A bad line, skipped."""


def repeated_url_note(line: int, first_line: int, url: str) -> LineNote:
    """Both lines are one story: the later updates it as re-importing it would (a file's
    lines go in in order, as files imported one after the other do)."""
    return LineNote(line, f"same URL as line {first_line} ({url}): one story, which line "
                          f"{line} updates as a re-import would")


def parse_time(value: object) -> datetime | None:
    if isinstance(value, str):
        # Spaces around the time (a spreadsheet's cell, "2024-03-01T10:00:00Z ") lost the
        # whole line as "not ISO 8601", where url and the texts are read stripped.
        value = value.strip()
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ValueError("published_at must be an ISO 8601 string")
    # RFC 3339 (5.6, NOTE) allows "t" and "z" in lower case; fromisoformat reads "Z" and any
    # separator, not "z". Only at the end: a "Z" inside was never a zone.
    try:
        at = datetime.fromisoformat(value[:-1] + "+00:00" if value[-1:] in ("z", "Z") else value)
    except ValueError as e:
        raise ValueError(f"published_at {value!r} is not ISO 8601") from e
    try:
        return at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)
    except OverflowError:
        raise ValueError(f"published_at {value!r} is out of range") from None


def _plain(value: str | None) -> str:
    """A summary or body exported by a CMS with its markup, as plain text with paragraphs
    kept (the API would serve the tags as text, and the embedder read them); text without
    a tag as it is, so a file Tidings exported imports unchanged ("AT&T", "a < b")."""
    if not value:
        return ""
    return html_to_text(value) if has_markup(value) else value


def draft_from_record(obj: object, now: datetime) -> StoryDraft:
    """One JSON object to a StoryDraft; ValueError says what is wrong with it."""
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object")
    unknown = sorted(set(obj) - set(FIELDS))
    if unknown:
        # Quoted: `url ` (a spreadsheet's header with a trailing space) read as `url`.
        raise ValueError(f"unknown field(s): {', '.join(map(repr, unknown))}")
    for key in ("url", "title"):
        if not isinstance(obj.get(key), str) or not obj[key].strip():
            raise ValueError(f"'{key}' is required and must be a non-empty string")
    for key in (f for f in FIELDS if f not in ("published_at", "tags")):  # in file order: a stable message
        if key in obj and obj[key] is not None and not isinstance(obj[key], str):
            raise ValueError(f"'{key}' must be a string")
    tags = obj.get("tags")
    if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)):
        raise ValueError("'tags' must be a list of strings")
    at = parse_time(obj.get("published_at"))
    if at is not None and not EARLIEST_IMPORT_AT <= at <= now + MAX_FUTURE:
        raise ValueError(f"published_at {obj['published_at']!r} is out of range (before "
                         f"{EARLIEST_IMPORT_AT.year} or more than a day ahead)")
    item = ParsedItem(
        url=obj["url"].strip(), title=obj["title"], summary=_plain(obj.get("summary")),
        text=_plain(obj.get("text")), author=obj.get("author") or "",
        image_url=obj.get("image_url") or "", published_at=at, tags=tuple(tags or ()),
    )
    # Why only when it fails, as the collector asks (parsepool): asked first, every line's
    # texts were cleaned twice, a third of an import's time (and of a rerun's, that
    # stores nothing).
    draft = normalize(item, source=None, now=now)
    if draft is None:
        raise ValueError(rejection_reason(item))
    # An archive line without a time: its dateline, else the store uses the import's time,
    # which would date a decade of stories today (and make them all one event by time).
    # The line's own time, not normalize's: its floor (1995) is for feeds' placeholder dates,
    # and an archive's 1989 story became today's (dated at the import, exported so).
    published_at = at or time_from_lead(draft.text or draft.summary, now)
    named = {key: clean_inline(obj.get(key) or "") for key in RESTATED}
    for key, limit in LABEL_LIMITS.items():
        if len(named[key]) > limit:
            raise ValueError(f"'{key}' is longer than {limit} characters ({len(named[key])})")
    return replace(
        draft,
        published_at=published_at,
        # a line's site as a page's declared one is shown: "https://www.tmz.com" is tmz.com
        site=declared_site([named["site"]]) or site_of(draft.url),
        source=named["source"] or "import",
        category=named["category"],
        # What the line names replaces what is stored; what it leaves out keeps the stored value.
        restates=frozenset(key for key, value in named.items() if value),
        authoritative=True,  # its texts update the story whichever source collected it
    )


UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# A story's line holds at most ~0.5 MB once cut (text 100,000 characters); an input line may
# carry more, cut on import, but one past this is no story: a whole export minified into one
# JSON array, a binary file. Read whole and parsed, a 60 MB array took 260 MB of memory
# (a 1 GB one, gigabytes) only to be called one bad line.
MAX_LINE = 16 * 1024 * 1024  # bytes, or characters of a UTF-16 file


def refused_encoding(head: bytes) -> str | None:
    """Why a file whose first bytes are `head` is no story file at all (None: it may be one).
    Gzip, UTF-16 without its byte order mark, or Latin-1 read a line at a time made one error
    per line, 50,000 for 50,000 lines, the reason said once among them. Only the first line
    is judged: a later line that is not UTF-8 is one bad line, skipped."""
    if head[:2] in UTF16_BOMS:
        return None  # read as UTF-16 (story_lines)
    if head[:2] == b"\x1f\x8b":
        return "is a gzip file: `gunzip -c FILE | tidings import -` reads it"
    line, end, _ = head.partition(b"\n")
    if b"\x00" in line:  # UTF-16's ASCII read as bytes: a NUL beside each character
        return ("holds NUL bytes (UTF-16 without a byte order mark?): a story file is UTF-8, "
                "or UTF-16 with the mark; `iconv -f UTF-16LE -t UTF-8 FILE` converts one")
    try:
        # Incremental: a character cut off at the end of what was read is no error.
        codecs.getincrementaldecoder("utf-8")().decode(line, final=bool(end))
    except UnicodeDecodeError as e:
        return (f"is not UTF-8 text (byte 0x{line[e.start]:02x} at column {e.start + 1} of "
                "line 1): a story file is UTF-8; `iconv -f LATIN1 -t UTF-8 FILE` converts "
                "a Latin-1 one")
    return None


class LongLine(bytes):
    """The first bytes of a line longer than MAX_LINE, the rest of it skipped unread."""


def story_lines(stream: BinaryIO) -> Iterable[str | bytes]:
    """The lines of a story file opened "rb", for `read_jsonl`: bytes, each decoded as UTF-8
    on its own (one bad line is one bad line), except in a file that starts with a UTF-16
    byte order mark, as Windows PowerShell's `>` writes them: that file is decoded as UTF-16
    (a byte it cannot read becomes U+FFFD). Read as UTF-8, each of its lines was a bad line.
    A line longer than MAX_LINE comes as a `LongLine`, read a piece at a time."""
    head = stream.peek(2)[:2] if hasattr(stream, "peek") else b""
    if head in UTF16_BOMS:
        return _bounded(io.TextIOWrapper(stream, encoding="utf-16", errors="replace"))
    return _bounded(stream)


def _bounded(stream) -> Iterator[str | bytes]:
    while line := stream.readline(MAX_LINE):
        end = "\n" if isinstance(line, str) else b"\n"
        if len(line) < MAX_LINE or line.endswith(end):
            yield line
            continue
        head = line[:200]
        while (rest := stream.readline(MAX_LINE)) and not rest.endswith(end):
            pass
        yield LongLine(head.encode("utf-8") if isinstance(head, str) else head)


def read_jsonl(lines: Iterable[str | bytes],
               now: datetime) -> Iterator[StoryDraft | LineNote]:
    """Drafts and bad lines (`LineError`), in order. Give it bytes (a file opened "rb"): a line that is not
    UTF-8 is then one bad line, where a text stream would stop the whole file at it.

    A line whose canonical URL an earlier line had comes with a `LineNote` just before its
    draft: both are one story, and the operator hears it (a file's two takes of one story
    used to merge without a word). The URLs are remembered by their hash (~100 bytes a line,
    not the URL's ~200): a chance collision of 64-bit hashes in a file of a million lines is
    about 1 in 30 million, and costs only a wrong note."""
    first_line: dict[int, int] = {}
    for number, item in _read_lines(lines, now):
        if isinstance(item, StoryDraft):
            first = first_line.setdefault(hash(item.url), number)
            if first != number:
                yield repeated_url_note(number, first, item.url)
        yield item


def format_hint(first_line: str) -> str:
    """What to add to the error of a file's first line when the whole file is likely in the
    wrong format: each line of a pretty-printed JSON array, or of UTF-16 text without its
    byte order mark, was "invalid JSON" on its own, hundreds of lines that never said why."""
    if "\x00" in first_line:  # UTF-16's ASCII read as UTF-8: a NUL beside each character
        return (" (this looks like UTF-16 text without a byte order mark: a story file is "
                "UTF-8, or UTF-16 with the mark)")
    if first_line.lstrip().startswith("["):
        return (" (a story file is JSON Lines, one JSON object per line, not a JSON array: "
                "`jq -c '.[]' FILE` converts one)")
    return ""


def _read_lines(lines: Iterable[str | bytes],
                now: datetime) -> Iterator[tuple[int, StoryDraft | LineError]]:
    seen = False  # a line with something on it: only the first one's error gets format_hint
    for number, line in enumerate(lines, start=1):
        if isinstance(line, LongLine):
            hint = "" if seen else format_hint(line.decode("utf-8", "replace"))
            seen = True
            yield number, LineError(number, f"longer than {MAX_LINE // 2**20} MB, not a story "
                                            f"line{hint}")
            continue
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8-sig" if number == 1 else "utf-8")  # a BOM is no error
            except UnicodeDecodeError as e:
                # `export | gzip` imported as it is: each of its lines "not UTF-8", never why.
                hint = (" (this is a gzip file: `gunzip -c FILE | tidings import -` reads it)"
                        if number == 1 and line.startswith(b"\x1f\x8b") else "")
                yield number, LineError(number, f"not UTF-8 text: byte 0x{line[e.start]:02x} "
                                                f"at column {e.start + 1}{hint}")
                continue
        if not line.strip():
            continue
        hint, seen = ("" if seen else format_hint(line)), True
        try:
            # Without its line break: a line cut off inside a string read as "Invalid control
            # character" (the break), where the line is unterminated.
            obj = json.loads(line.rstrip("\r\n"))
        except json.JSONDecodeError as e:
            # Some of json's messages end in "at" ("Unterminated string starting at").
            why = e.msg.removesuffix(" at")
            yield number, LineError(number, f"invalid JSON: {why} at column {e.colno}{hint}")
            continue
        except (ValueError, RecursionError) as e:
            # Valid JSON Python will not read (an integer of 5,000 digits, 100,000 nested
            # arrays): a traceback before, and the batch read so far was lost with it.
            reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)
            yield number, LineError(number, f"invalid JSON: {reason}{hint}")
            continue
        try:
            yield number, draft_from_record(obj, now)
        except ValueError as e:
            yield number, LineError(number, f"{e}{hint}")
