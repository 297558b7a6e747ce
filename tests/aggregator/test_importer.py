"""JSON Lines story files (DESIGN.md 4.4): bad lines reported by number, the rest goes in."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from aggregator.importer import LineError, LineNote, parse_time, read_jsonl
from aggregator.model import StoryDraft

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def test_good_and_bad_lines():
    lines = [
        json.dumps({"url": "https://Example.org/a?utm_source=x", "title": "A &amp; B",
                    "published_at": "2026-11-20T10:00:00Z", "category": "politics"}),
        "not json",
        json.dumps({"title": "no url"}),
        "",
        json.dumps({"url": "ftp://example.org/x", "title": "bad scheme"}),
        json.dumps({"url": "https://example.org/b", "title": "T", "published_at": "yesterday"}),
        json.dumps({"url": "https://example.org/c", "title": "T", "colour": "red"}),
        json.dumps(["a list"]),
        json.dumps({"url": "https://example.org/d", "title": "Dated", "published_at": "2026-11-20T10:00:00+02:00",
                    "site": "Example", "source": "wire"}),
    ]
    out = list(read_jsonl(lines, NOW))
    errors = {e.line: e.message for e in out if isinstance(e, LineError)}
    drafts = [d for d in out if not isinstance(d, LineError)]
    assert set(errors) == {2, 3, 5, 6, 7, 8}
    assert "invalid JSON" in errors[2]
    assert "'url' is required" in errors[3]
    assert "published_at" in errors[6]
    assert "colour" in errors[7]
    a, d = drafts
    assert a.url == "https://example.org/a" and a.title == "A & B" and a.category == "politics"
    assert a.published_at == datetime(2026, 11, 20, 10, tzinfo=UTC) and a.source == "import"
    assert d.site == "Example" and d.source == "wire"
    # What a line names replaces a stored story's on re-import; the defaults never do.
    assert a.restates == {"category"} and d.restates == {"site", "source"}
    assert d.published_at == datetime(2026, 11, 20, 8, tzinfo=UTC)


def test_an_undated_line_is_dated_by_its_dateline():
    lines = [
        json.dumps({"url": "https://example.org/a", "title": "Patch",
                    "text": "18 September 2013 Last updated at 13:59 GMT Microsoft has released a fix."}),
        json.dumps({"url": "https://example.org/b", "title": "Patch", "published_at": "2013-09-19T08:00:00Z",
                    "text": "18 September 2013: the metadata wins over the dateline."}),
        json.dumps({"url": "https://example.org/c", "title": "Plans", "text": "Due 4 May 2031, far ahead."}),
        json.dumps({"url": "https://example.org/d", "title": "No date", "text": "On Tuesday it rained."}),
    ]
    a, b, c, d = read_jsonl(lines, NOW)
    assert a.published_at == datetime(2013, 9, 18, tzinfo=UTC)
    assert b.published_at == datetime(2013, 9, 19, 8, tzinfo=UTC)
    assert c.published_at is None  # a date in the future is not when the story happened
    assert d.published_at is None


def test_lines_no_database_could_store_are_reported_and_skipped():
    """Bytes that are not UTF-8, a JSON lone surrogate, a time with no UTC form: each is one
    bad line (or a repaired one), never an error that stops the file."""
    good = json.dumps({"url": "https://example.org/ok", "title": "Fine"}).encode()
    lines = [
        b"\xef\xbb\xbf" + good,  # a BOM before the first line is no error
        b'{"url": "https://example.org/x", "title": "caf\xe9"}',  # Latin-1, not UTF-8
        json.dumps({"url": "https://example.org/s", "title": "Lone \ud800 surrogate",
                    "text": "Body \udcff here.", "author": "A\udc80"}).encode(),
        json.dumps({"url": "https://example.org/t", "title": "T",
                    "published_at": "0001-01-01T00:00:00+14:00"}).encode(),
        json.dumps({"url": "https://example.org/u\ud800", "title": "Bad link"}).encode(),
        json.dumps({"url": "https://example.org/v#\ud800", "title": "Fragment",
                    "image_url": "https://example.org/i\udc00.png"}).encode(),
    ]
    out = list(read_jsonl(lines, NOW))
    errors = {e.line: e.message for e in out if isinstance(e, LineError)}
    assert set(errors) == {2, 4, 5}, errors
    assert errors[2] == "not UTF-8 text: byte 0xe9 at column 47"
    assert "out of range" in errors[4]
    ok, s, v = (d for d in out if not isinstance(d, LineError))
    assert ok.url == "https://example.org/ok"
    # Replaced as a decoder marks what it cannot read; every field encodes as UTF-8 now.
    assert s.title == "Lone \ufffd surrogate" and s.text == "Body \ufffd here." and s.author == "A\ufffd"
    assert v.url == "https://example.org/v" and v.original_url == "" and v.image_url == ""
    for d in (ok, s, v):
        for value in vars(d).values():
            if isinstance(value, str):
                value.encode("utf-8")


def test_markup_in_summary_and_text_becomes_plain_text_and_plain_text_stays():
    lines = [
        json.dumps({"url": "https://example.org/a", "title": "<b>Budget</b> vote",
                    "summary": "<p>MPs back the <em>budget</em> &amp; the cuts.</p>",
                    "text": "<p>First paragraph.</p><script>track()</script><p>Second.</p>"}),
        json.dumps({"url": "https://example.org/b", "title": "Telecoms",
                    "summary": "AT&T shares rose as 3 < 4 &amp; more.", "text": "Plain body."}),
    ]
    a, b = read_jsonl(lines, NOW)
    assert a.title == "Budget vote"
    assert a.summary == "MPs back the budget & the cuts."
    assert a.text.split("\n\n") == ["First paragraph.", "Second."]
    assert b.summary == "AT&T shares rose as 3 < 4 &amp; more."  # no tag: taken as written


def test_lines_python_cannot_read_and_times_out_of_range_are_bad_lines_not_a_crash():
    lines = [
        '{"url": "https://x.example/a", "title": "t", "text": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"url": "https://x.example/b", "title": "t", "text": ' + "1" * 5000 + "}",
        json.dumps({"url": "https://x.example/c", "title": "Wall falls", "published_at": "1989-11-09T18:00:00+01:00"}),
        json.dumps({"url": "https://x.example/d", "title": "Ahead", "published_at": "2030-01-01T00:00:00Z"}),
        json.dumps({"url": "https://x.example/e", "title": "Too old", "published_at": "1700-01-01T00:00:00Z"}),
    ]
    out = list(read_jsonl(lines, NOW))
    errors = {e.line: e.message for e in out if isinstance(e, LineError)}
    assert set(errors) == {1, 2, 4, 5}
    assert "nested too deeply" in errors[1] and "invalid JSON" in errors[2]
    assert "out of range" in errors[4] and "out of range" in errors[5]
    # An archive's story keeps its own time (normalize's 1995 floor is for feeds).
    (wall,) = [d for d in out if not isinstance(d, LineError)]
    assert wall.published_at == datetime(1989, 11, 9, 17, tzinfo=UTC)


def test_a_url_an_earlier_line_had_is_noted_on_the_later_line():
    """Two lines of one URL (after canonicalization) were merged without a word."""
    lines = [
        json.dumps({"url": "https://example.org/a?utm_source=x", "title": "First", "category": "politics"}),
        json.dumps({"url": "https://example.org/b", "title": "Other"}),
        "not json",
        json.dumps({"url": "https://EXAMPLE.org/a#top", "title": "Second"}),
        json.dumps({"url": "https://example.org/a", "title": "Third"}),
    ]
    out = list(read_jsonl(lines, NOW))
    notes = [(n.line, n.message) for n in out if type(n) is LineNote]
    assert [line for line, _ in notes] == [4, 5]
    assert notes[0][1].startswith("same URL as line 1 (https://example.org/a): ")
    assert notes[1][1].startswith("same URL as line 1 ")
    assert "line 5 updates" in notes[1][1]
    # Each note comes just before the draft of its line; every good line still gives a draft.
    kinds = [type(x).__name__ for x in out]
    assert kinds == ["StoryDraft", "StoryDraft", "LineError", "LineNote", "StoryDraft",
                     "LineNote", "StoryDraft"]
    assert [d.title for d in out if isinstance(d, StoryDraft)] == ["First", "Other", "Second", "Third"]


def test_rfc_3339_lower_case_t_and_z_are_read():
    """RFC 3339 5.6: "T" and "Z" may be lower case; "...T10:00:00z" was a bad line."""
    at = datetime(2024, 3, 1, 10, tzinfo=UTC)
    for value in ("2024-03-01T10:00:00z", "2024-03-01t10:00:00z", "2024-03-01t10:00:00Z",
                  "2024-03-01T10:00:00Z", "2024-03-01T11:00:00+01:00"):
        assert parse_time(value) == at, value
    (d,) = read_jsonl([json.dumps({"url": "https://e.org/z", "title": "T",
                                   "published_at": "2024-03-01T10:00:00z"})], NOW)
    assert d.published_at == at
    with pytest.raises(ValueError, match="'z' is not ISO 8601"):  # the value as written
        parse_time("z")


def test_tags_are_read_as_a_list_of_strings():
    lines = [
        json.dumps({"url": "https://example.org/t", "title": "Villa drama",
                    "tags": ["Love Island", " love  island ", "ITV"]}),
        json.dumps({"url": "https://example.org/u", "title": "T", "tags": "Love Island"}),
        json.dumps({"url": "https://example.org/v", "title": "T", "tags": ["ok", 3]}),
        json.dumps({"url": "https://example.org/w", "title": "T", "tags": None}),
    ]
    out = list(read_jsonl(lines, NOW))
    assert out[0].tags == ("Love Island", "ITV")
    assert [str(e) for e in out[1:3]] == ["line 2: 'tags' must be a list of strings",
                                          "line 3: 'tags' must be a list of strings"]
    assert out[3].tags == ()


def test_spaces_around_a_time_do_not_lose_the_line():
    """A time with a space before or after it (a spreadsheet's cell) was "not ISO 8601",
    and the whole story was skipped; url and the texts were always read stripped."""
    at = datetime(2024, 3, 1, 10, tzinfo=UTC)
    for value in (" 2024-03-01T10:00:00Z", "2024-03-01T10:00:00Z ", "\t2024-03-01T11:00:00+01:00\r"):
        assert parse_time(value) == at, repr(value)
    assert parse_time("  ") is None  # blank is no time, as "" is
    (d,) = read_jsonl([json.dumps({"url": "https://e.org/s", "title": "T",
                                   "published_at": "2024-03-01T10:00:00Z "})], NOW)
    assert isinstance(d, StoryDraft) and d.published_at == at


def test_labels_longer_than_their_columns_are_bad_lines():
    """site, source and category go in columns of 255, 120 and 80 characters: on PostgreSQL
    one longer label failed the whole batch (500 lines) and stopped the import."""
    def line(**fields) -> str:
        return json.dumps({"url": f"https://e.org/{len(json.dumps(fields))}", "title": "T", **fields})

    lines = [line(category="c" * 81), line(site="s" * 256), line(source="x" * 121),
             line(category="c" * 80, site="s" * 255, source="x" * 120),
             line(category=" <b>" + "c" * 80 + "</b> ")]  # measured as stored: cleaned
    out = list(read_jsonl(lines, NOW))
    errors = {e.line: e.message for e in out if isinstance(e, LineError)}
    assert errors == {1: "'category' is longer than 80 characters (81)",
                      2: "'site' is longer than 255 characters (256)",
                      3: "'source' is longer than 120 characters (121)"}
    full, tagged = (d for d in out if isinstance(d, StoryDraft))
    assert (len(full.category), len(full.site), len(full.source)) == (80, 255, 120)
    assert tagged.category == "c" * 80


def test_a_utf16_file_with_its_byte_order_mark_is_read_as_utf16():
    """Windows PowerShell's `>` writes UTF-16 with a BOM and CRLF: read as UTF-8, every line
    was a bad line ("not UTF-8 text", then "invalid JSON" for each line after)."""
    import io

    from aggregator.importer import story_lines

    text = "".join(json.dumps({"url": f"https://e.org/{i}", "title": f"Café {i}"}, ensure_ascii=False)
                   + "\r\n" for i in range(3))
    for encoded in (text.encode("utf-16"), b"\xfe\xff" + text.encode("utf-16-be")):
        out = list(read_jsonl(story_lines(io.BufferedReader(io.BytesIO(encoded))), NOW))
        assert [d.title for d in out] == ["Café 0", "Café 1", "Café 2"], out
    # A UTF-8 file stays bytes, decoded a line at a time: one bad line stays one bad line.
    stream = io.BufferedReader(io.BytesIO(b'{"url": "https://e.org/x", "title": "caf\xe9"}\n'
                                          + text.encode("utf-8")))
    out = list(read_jsonl(story_lines(stream), NOW))
    assert isinstance(out[0], LineError) and len(out) == 4


def test_a_line_longer_than_any_story_is_one_bad_line_read_a_piece_at_a_time(tmp_path):
    """A whole export minified into one JSON array (or a binary file with few newlines) was
    read whole and parsed: a 60 MB array took 260 MB of memory, a 1 GB one gigabytes, to be
    called one bad line. It is still one bad line, named so, and the lines after it go in."""
    import io

    from aggregator.importer import MAX_LINE, story_lines

    records = [{"url": f"https://e.org/{i}", "title": f"T {i}", "summary": "word " * 40}
               for i in range(MAX_LINE // 200 + 1)]
    path = tmp_path / "array.json"
    with path.open("w", encoding="utf-8") as f:
        f.write(json.dumps(records) + "\n")
        f.write(json.dumps({"url": "https://e.org/after", "title": "After"}) + "\n")
    assert path.stat().st_size > MAX_LINE
    with path.open("rb") as stream:
        first, after = read_jsonl(story_lines(stream), NOW)
    assert isinstance(first, LineError) and first.line == 1
    assert first.message.startswith("longer than 16 MB, not a story line")
    assert "not a JSON array" in first.message  # the hint, from the line's first bytes
    assert after.url == "https://e.org/after"
    # UTF-16 (its limit counts characters): the same.
    text = json.dumps(records) + "\r\n" + json.dumps({"url": "https://e.org/z", "title": "Z"})
    first, after = read_jsonl(story_lines(io.BufferedReader(io.BytesIO(text.encode("utf-16")))), NOW)
    assert isinstance(first, LineError) and "longer than 16 MB" in first.message
    assert after.url == "https://e.org/z"


def test_a_line_cut_off_inside_a_string_says_so():
    """It said "Invalid control character at at column 35": the line break, read as part of
    the string, and json's message that ends in "at"."""
    (err,) = read_jsonl([b'{"url": "https://e.org/a", "title": "cut off\n'], NOW)
    assert err.message == "invalid JSON: Unterminated string starting at column 37"
    (err,) = read_jsonl(['{"url": "https://e.org/a", "title": "tab\there"}\r\n'], NOW)
    assert err.message == "invalid JSON: Invalid control character at column 41"


def test_a_json_array_or_utf16_without_its_mark_is_named_once_on_the_first_line():
    """A pretty-printed JSON array, or UTF-16 without its byte order mark, was one bare
    "invalid JSON" a line: hundreds of lines, none saying the file is in the wrong format."""
    records = [{"url": f"https://example.org/{i}", "title": f"Story {i}"} for i in range(2)]

    def errors(lines) -> list[str]:
        return [str(x) for x in read_jsonl(lines, NOW) if isinstance(x, LineError)]

    pretty = ("\n" + json.dumps(records, indent=2) + "\n").encode().splitlines(keepends=True)
    said = errors(pretty)
    assert "one JSON object per line" in said[0] and said[0].startswith("line 2: invalid JSON")
    assert len(said) > 3 and not any("JSON Lines" in s for s in said[1:])  # once
    one_line = errors([json.dumps(records).encode()])
    assert one_line[0].startswith("line 1: expected a JSON object") and "not a JSON array" in one_line[0]

    utf16 = "".join(json.dumps(r) + "\n" for r in records).encode("utf-16-le")
    said = errors(utf16.splitlines(keepends=True))
    assert "UTF-16 text without a byte order mark" in said[0]
    assert not any("UTF-16" in s for s in said[1:])

    # A good first line: a later bad one is a bad line, no hint about the file.
    said = errors([json.dumps(records[0]).encode() + b"\n", b"[1]\n"])
    assert said == ["line 2: expected a JSON object"]


def test_each_lines_texts_are_cleaned_once(monkeypatch):
    """The import asked rejection_reason, then normalize: each cleaned the line's texts (a
    third of an import's time, and of a rerun's that stores nothing). A bad line still says
    why."""
    import aggregator.normalize as normalize

    calls = []
    real = normalize._texts
    monkeypatch.setattr(normalize, "_texts", lambda item: calls.append(item.url) or real(item))
    lines = [json.dumps({"url": f"https://e.org/{i}", "title": f"T {i}", "text": "Body."})
             for i in range(3)] + [json.dumps({"url": "https://e.org/blank", "title": " \u200b"})]
    *drafts, bad = read_jsonl(lines, NOW)
    assert [d.title for d in drafts] == ["T 0", "T 1", "T 2"]
    assert bad.message == "no title and no summary"
    assert calls.count("https://e.org/0") == 1


def test_a_gzip_file_is_named_so_on_its_first_line(tmp_path):
    """An export compressed (`tidings export - | gzip`) and imported as it is: every line
    was "not UTF-8 text", and nothing said the file was compressed."""
    import gzip

    from aggregator.importer import story_lines

    path = tmp_path / "stories.jsonl.gz"
    path.write_bytes(gzip.compress(b"".join(
        json.dumps({"url": f"https://e.org/{i}", "title": f"Story {i}"}).encode() + b"\n"
        for i in range(500))))
    with path.open("rb") as stream:
        first, *_ = read_jsonl(story_lines(stream), NOW)
    assert isinstance(first, LineError) and first.line == 1
    assert first.message.startswith("not UTF-8 text") and "this is a gzip file" in first.message


def test_a_line_s_site_is_shown_as_a_page_s_declared_name():
    """A line's site follows the rules of the name a page declares (`sitenames`): a home
    page's address is its host, a copyright notice is no site (the URL's host is)."""
    def line(site: str) -> str:
        return json.dumps({"url": f"https://www.e.org/{len(site)}", "title": "T", "site": site})

    out = list(read_jsonl([line("https://www.tmz.com/"), line("Copyright 2014"), line("Example")], NOW))
    assert [d.site for d in out] == ["tmz.com", "e.org", "Example"]


def test_bidi_controls_are_dropped_from_a_line_s_texts_and_labels():
    """An RLO in an imported title or site was stored and served as is (a title shown
    reversed): a line's fields are cleaned as a collected item's are."""
    line = json.dumps({"url": "https://e.org/a", "title": "\u202eReversed\u202c title",
                       "summary": "A \u2067teaser\u2069", "author": "Ann\u202b Smith",
                       "site": "\u202dExample", "source": "wi\u202are", "category": "\u2066world"})
    (d,) = read_jsonl([line], NOW)
    assert (d.title, d.summary, d.author) == ("Reversed title", "A teaser", "Ann Smith")
    assert (d.site, d.source, d.category) == ("Example", "wire", "world")


def test_a_file_in_no_encoding_the_importer_reads_is_refused_from_its_first_bytes():
    """Gzip, UTF-16 without its byte order mark, or Latin-1 made one error a line (50,000
    for 50,000 lines), the reason said once among them: the file is refused whole."""
    import codecs
    import gzip

    from aggregator.importer import refused_encoding

    line = json.dumps({"url": "https://e.org/a", "title": "Café"}, ensure_ascii=False) + "\n"
    assert "gzip" in refused_encoding(gzip.compress(line.encode() * 3))
    assert "NUL bytes" in refused_encoding(line.encode("utf-16-le"))
    assert refused_encoding(line.encode("latin-1")) == (
        "is not UTF-8 text (byte 0xe9 at column 41 of line 1): a story file is UTF-8; "
        "`iconv -f LATIN1 -t UTF-8 FILE` converts a Latin-1 one")
    # Read as they are now: UTF-8 (a BOM too), UTF-16 with its mark, an empty file, a first
    # line cut inside a character by the read, and a later line that is not UTF-8 (one bad line).
    for head in (line.encode(), codecs.BOM_UTF8 + line.encode(), line.encode("utf-16"), b"",
                 line.encode()[:41], line.encode() + line.encode("latin-1")):
        assert refused_encoding(head) is None, head


def test_unknown_fields_are_quoted_so_a_trailing_space_shows():
    """`unknown field(s): url ` read as if `url` were unknown."""
    (err,) = read_jsonl([json.dumps({"url ": "https://e.org/a", "url": "https://e.org/a",
                                     "title": "T", "colour": "red"})], NOW)
    assert err.message == "unknown field(s): 'colour', 'url '"
