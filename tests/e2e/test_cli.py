"""The `tidings` command line end to end (DESIGN.md 4.1): real subprocesses, real SQLite."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys

from tests.datasets import bbc_records, write_jsonl
from tests.e2e.conftest import REPO, TIDINGS, make_database, run_cli


def test_help_is_fast_and_lists_commands(cli_env):
    r = run_cli(["--help"], cli_env, timeout=20)
    assert r.returncode == 0
    for cmd in ("run", "serve", "collect", "index", "import", "export", "related", "sources", "takedown", "backup",
                "retention", "eval"):
        assert cmd in r.stdout


def test_import_then_related(cli_env, tmp_path, shared_data):
    records = bbc_records(shared_data, limit=30)
    path = write_jsonl(records, tmp_path / "stories.jsonl")
    with open(path, "a", encoding="utf-8") as f:
        f.write("{broken json\n")
        f.write(json.dumps({"title": "no url"}) + "\n")
    r = run_cli(["import", str(path)], cli_env)
    assert r.returncode == 0, r.stderr
    assert "line 61: invalid JSON" in r.stderr and "line 62: 'url' is required" in r.stderr
    assert "60 new" in r.stdout and "2 bad lines" in r.stdout
    assert "Traceback" not in r.stderr

    # Re-importing updates, never duplicates.
    r = run_cli(["import", str(path)], cli_env)
    assert "0 new" in r.stdout

    r = run_cli(["related", "--id", "1", "-k", "3", "--json"], cli_env)
    assert r.returncode == 0, r.stderr
    block = json.loads(r.stdout)
    assert block["article"]["id"] == 1 and len(block["related"]) == 3
    assert 1 not in [c["id"] for c in block["related"]]
    # A category in any case: "Entertainment" is the stored "entertainment".
    r = run_cli(["related", "--id", "1", "-k", "3", "--json", "--category", "Entertainment"], cli_env)
    cards = json.loads(r.stdout)["related"]
    assert len(cards) == 3 and {c["category"] for c in cards} == {"entertainment"}, r.stderr

    r = run_cli(["related", "--text", "Blair and Brown clash over the election campaign and taxes"], cli_env)
    assert r.returncode == 0 and "Related to:" in r.stdout and " 1. " in r.stdout
    r = run_cli(["related", "--text", "Blair and Brown clash", "--published-at", "2005-02-01T09:00:00Z"],
                cli_env)
    assert r.returncode == 0 and " 1. " in r.stdout, r.stderr
    r = run_cli(["related", "--text", "Blair and Brown clash", "--published-at", "yesterday"], cli_env)
    assert r.returncode == 2 and "not an ISO 8601 time" in r.stderr

    r = run_cli(["related", "--url", records[0]["url"], "-k", "2"], cli_env)
    assert r.returncode == 0 and records[0]["title"] in r.stdout


def test_import_from_stdin(cli_env, shared_data):
    lines = "\n".join(json.dumps(r) for r in bbc_records(shared_data, limit=3))
    r = run_cli(["import", "-", "--no-index"], cli_env, input=lines)
    assert r.returncode == 0 and "6 new" in r.stdout


def test_index_rebuild(cli_env, tmp_path, shared_data):
    path = write_jsonl(bbc_records(shared_data, limit=10), tmp_path / "s.jsonl")
    assert run_cli(["import", str(path), "--no-index"], cli_env).returncode == 0
    r = run_cli(["index"], cli_env)
    assert r.returncode == 0 and "embedded 20" in r.stdout
    r = run_cli(["index", "--rebuild"], cli_env)
    assert r.returncode == 0 and "20 vectors" in r.stdout


def test_bad_input_is_one_line_not_a_traceback(cli_env, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('data_dir = "x"\n[api]\nprot = 1\n')
    r = run_cli(["--config", str(bad), "sources", "list"], cli_env)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "bad.toml:3" in r.stderr and "api.prot" in r.stderr
    r = run_cli(["import", str(tmp_path / "missing.jsonl")], cli_env)
    assert r.returncode == 2 and "cannot read" in r.stderr
    make_database(cli_env)
    r = run_cli(["related", "--id", "5"], cli_env)
    assert r.returncode == 2 and "no story with id 5" in r.stderr
    env = {**cli_env, "TIDINGS_API_PORT": "eighty"}
    r = run_cli(["sources", "list"], env)
    assert r.returncode == 2 and "TIDINGS_API_PORT" in r.stderr
    # Arguments get the bounds the settings and the HTTP API give them.
    for args, says in ((["serve", "--port", "99999"], "--port: 99999 is outside [0, 65535]"),
                       (["serve", "--workers", "0"], "--workers: 0 is outside [1, 64]"),
                       (["related", "--text", " "], "--text: the text is empty"),
                       (["related", "--text", "x", "-k", "0"], "-k: 0 is outside [1, 50]"),
                       (["related", "--text", "x", "--max-age-days", "-1"], "outside (0, 36500]")):
        r = run_cli(args, cli_env, timeout=20)
        assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    (tmp_path / "a-file").write_text("")
    r = run_cli(["import", "-", "--no-index"], {**cli_env, "TIDINGS_DATA_DIR": str(tmp_path / "a-file" / "d")},
                input="")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "data_dir" in r.stderr and "cannot be created" in r.stderr


def test_a_max_age_that_is_no_number_says_so(cli_env):
    """`--max-age-days nan` passed no bound and was told "nan is outside (0, 36500]", as the
    HTTP API's `max_age_days=nan` was told "less than or equal to 36500"."""
    for value in ("nan", "inf"):
        r = run_cli(["related", "--text", "x", "--max-age-days", value], cli_env, timeout=20)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert f"--max-age-days: '{value}' is not a finite number" in r.stderr, r.stderr


def test_import_skips_lines_no_database_could_store(cli_env, tmp_path):
    """Each such line is one bad line (or repaired); before, any of them stopped the import
    with a traceback and lost the batch of up to 500 lines it was in."""
    good = [json.dumps({"url": f"https://example.org/{i}", "title": f"Story {i}"}).encode()
            for i in range(3)]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join([
        good[0],
        b'{"url": "https://example.org/latin1", "title": "caf\xe9"}',
        json.dumps({"url": "https://example.org/s", "title": "Lone \ud800 surrogate"}).encode(),
        json.dumps({"url": "https://example.org/t", "title": "T",
                    "published_at": "0001-01-01T00:00:00+14:00"}).encode(),
        good[1], good[2]]) + b"\n")
    r = run_cli(["import", str(path), "--no-index"], cli_env)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "line 2: not UTF-8 text" in r.stderr and "line 4: published_at" in r.stderr
    assert "4 new" in r.stdout and "2 bad lines" in r.stdout, r.stdout
    # The same bytes from stdin (read as bytes too, not with the locale's decoding).
    p = subprocess.run([*TIDINGS, "import", "-", "--no-index"], cwd=REPO, env=cli_env,
                       input=path.read_bytes(), capture_output=True, timeout=120)
    out, err = p.stdout.decode(), p.stderr.decode()
    assert p.returncode == 0 and "Traceback" not in err, err
    assert "line 2: not UTF-8 text" in err and "0 new" in out and "2 bad lines" in out, out


def test_import_notes_a_url_an_earlier_line_had_and_applies_the_lines_in_order(cli_env, tmp_path):
    """Two lines of one URL were merged without a word, and within a batch the later line
    replaced the earlier whole: a category only the first named was lost (it stayed when the
    lines were 500 apart, as a re-import keeps it)."""
    path = tmp_path / "twice.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in [
        {"url": "https://example.org/a?utm_source=feed", "title": "First take",
         "category": "politics", "author": "Jo Smith"},
        {"url": "https://example.org/b", "title": "Other", "published_at": "2024-03-01t10:00:00z"},
        {"url": "https://example.org/a", "title": "Second take"},
    ]) + "\n", encoding="utf-8")
    r = run_cli(["import", str(path), "--no-index"], cli_env)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == (f"tidings: {path}: line 3: same URL as line 1 "
                                "(https://example.org/a): one story, which line 3 updates as a "
                                "re-import would")
    assert "2 new, 1 updated" in r.stdout and "0 bad lines" in r.stdout, r.stdout
    with sqlite3.connect(tmp_path / "data" / "tidings.db") as con:
        rows = con.execute("SELECT url, title, category, author, published_at FROM stories "
                           "ORDER BY url").fetchall()
    assert [row[:4] for row in rows] == [
        ("https://example.org/a", "Second take", "politics", "Jo Smith"),
        ("https://example.org/b", "Other", "", "")]
    assert rows[1][4].startswith("2024-03-01 10:00:00")


def test_commands_that_do_not_embed_load_no_model(cli_env, tmp_path):
    """With the default embedder, `sources list` on a new data dir built both int8 models
    (~40 s, a race, 45 MB on disk) only to print a table; a collect-only process loaded
    one it never used. Now only roles that embed (serve, index, import) make it."""
    env = {**cli_env, "TIDINGS_INDEX_EMBEDDER": "minilm-int8"}
    for args in (["sources", "list"], ["collect", "--source", "no-such-source"]):
        r = run_cli(args, env)
        assert "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "data" / "models").exists()


def test_a_mistyped_data_dir_is_refused_by_the_readers_and_made_by_a_collector(cli_env, tmp_path):
    """TIDINGS_DATA_DIR=/srv/tidngs: `search` made an empty database there and said "(no
    stories found)", as if the corpus were empty. Now one line, exit 2, nothing made; a
    collector still makes the database, and the readers then answer."""
    missing = tmp_path / "tidngs"
    (tmp_path / "sources.toml").write_text("", encoding="utf-8")
    env = {**cli_env, "TIDINGS_DATA_DIR": str(missing),
           "TIDINGS_SOURCES_FILE": str(tmp_path / "sources.toml")}
    r = run_cli(["search", "budget"], env)
    assert (r.returncode, r.stdout) == (2, ""), r.stderr
    assert r.stderr == (f"tidings: error: no database at {missing}/tidings.db (TIDINGS_DATA_DIR="
                        f"{missing}): run `tidings run`, `tidings collect` or `tidings import` "
                        "first, or check the data dir\n")
    assert not missing.exists()
    assert run_cli(["collect", "--once"], env).returncode == 0
    assert (missing / "tidings.db").is_file()
    r = run_cli(["search", "budget"], env)
    assert r.returncode == 0 and "(no stories found)" in r.stdout, r.stderr


def test_sources_list_shows_shipped_sources(cli_env):
    make_database(cli_env)  # before a collector applies the file
    r = run_cli(["sources", "list"], cli_env)
    assert r.returncode == 0, r.stderr
    assert "bbc-politics" in r.stdout and "pending" in r.stdout
    r = run_cli(["sources", "check", "no-such-source"], cli_env)
    assert r.returncode == 2 and "no-such-source" in r.stderr


def test_an_os_error_is_one_line_not_a_traceback(monkeypatch, capsys):
    """A read-only or full disk, or a folder where the index file goes, ended in a traceback
    (found by killing and damaging runs); the machine's errors now get one line, exit 1."""
    from api import cli

    async def failing(args):
        raise IsADirectoryError(21, "Is a directory", "data/index/abc/index.faiss")

    monkeypatch.setattr(cli, "dispatch", failing)
    assert cli.main(["sources", "list"]) == 1
    err = capsys.readouterr().err
    assert err == "tidings: error: [Errno 21] Is a directory: 'data/index/abc/index.faiss'\n"


def test_the_block_of_a_syndicated_copy_never_shows_its_original(cli_env, tmp_path):
    """Copies carry new headlines, so only the link says the original is the same article."""
    body = ("Ceasefire talks between the two governments resumed on Monday in Geneva, where "
            "negotiators discussed prisoner exchanges, humanitarian corridors and the "
            "monitoring of the front line by international observers, officials said after "
            "the first session ended late in the evening, with a second round planned for the "
            "end of the week.")
    lines = [{"url": "https://wire.example/ceasefire", "title": "Ceasefire talks resume",
              "text": body, "published_at": "2026-11-20T09:00:00Z"},
             {"url": "https://daily.example/geneva", "title": "Negotiators meet in Geneva again",
              "text": body, "published_at": "2026-11-20T10:00:00Z"},
             *({"url": f"https://other.example/{i}", "title": f"Ceasefire monitors report {i}",
                "text": f"Observers on the front line filed report {i} on the ceasefire talks.",
                "published_at": "2026-11-20T11:00:00Z"} for i in range(4))]
    path = tmp_path / "s.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    r = run_cli(["import", str(path)], cli_env)
    # The copy is counted once, as a linked duplicate, not among the new stories too: they
    # are what the index gains ("6 new, …, 1 linked duplicates" then "index holds 5").
    assert r.returncode == 0, r.stdout + r.stderr
    assert "imported: 5 new, 0 updated, 0 already stored, 1 linked duplicates (not indexed)" in r.stdout
    assert "index holds 5" in r.stdout, r.stdout
    for args in (["--id", "2"], ["--url", "https://daily.example/geneva"]):
        r = run_cli(["related", *args, "-k", "5", "--json"], cli_env)
        assert r.returncode == 0, r.stderr
        block = json.loads(r.stdout)
        shown = [c["url"] for c in block["related"]]
        assert block["article"]["id"] == 2 and len(shown) == 4, shown
        assert "https://wire.example/ceasefire" not in shown
    # Under another article the story shows once, and its reason names the copy's site
    # (exact copies are not indexed: only the store knows them).
    r = run_cli(["related", "--url", "https://other.example/0", "-k", "5", "--json"], cli_env)
    cards = {c["url"]: c for c in json.loads(r.stdout)["related"]}
    assert "https://daily.example/geneva" not in cards
    assert cards["https://wire.example/ceasefire"]["reason"].endswith("; also reported by daily.example")


def _stderr_on_a_terminal(args: list[str], env: dict, *, piped: bytes | None = None,
                          sized: bool = True) -> str:
    """What the command writes to its standard error when that is a terminal (160 columns);
    `piped`: bytes written to its standard input through a pipe; `sized=False`: a terminal
    whose size nobody set (0x0, as `script` or `docker run -t` make)."""
    import fcntl
    import pty
    import struct
    import termios
    import threading

    master, slave = pty.openpty()
    if sized:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # a real width
    try:
        p = subprocess.Popen([*TIDINGS, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=slave, stdin=None if piped is None else subprocess.PIPE)
        os.close(slave)
        if piped is not None:  # from a thread: the terminal is read meanwhile
            def feed() -> None:
                with p.stdin:
                    p.stdin.write(piped)
            threading.Thread(target=feed, daemon=True).start()
        out = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        assert p.wait(120) == 0, out[-2000:]
    finally:
        os.close(master)
    return out.decode(errors="replace")


def test_import_progress_on_a_terminal_counts_bytes_of_the_file(cli_env, tmp_path):
    """On a terminal the bar showed lines read so far as their own total (always 100%); a
    file now shows bytes read of its size, so a long backfill says how far it is."""
    path = tmp_path / "big.jsonl"
    lines = [json.dumps({"url": f"https://example.org/{i}", "title": f"Story {i}",
                         "text": "word " * 50}) for i in range(3000)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    shown = _stderr_on_a_terminal(["import", str(path), "--no-index"], cli_env)
    size_kib = f"{path.stat().st_size / 1024:.0f}k"  # tqdm's scaled bytes, as in "938k/938k"
    assert "import: 100%" in shown and f"{size_kib}/{size_kib}" in shown, shown[-300:]
    assert "3000/3000" not in shown  # not lines as their own total
    # A pipe has no size: the lines read and their rate, not their count as their own total.
    shown = _stderr_on_a_terminal(["import", "-", "--no-index"], cli_env, piped=path.read_bytes())
    assert "import: 3000line [" in shown and "100%" not in shown, shown[-300:]


def test_bad_lines_on_a_terminal_are_lines_of_their_own(cli_env, tmp_path):
    """A bad line's note was printed where the bar's last drawing ended: "... 5.08MB/s]tidings:
    FILE: line 1002: invalid JSON ...", the line number lost in the middle of the bar."""
    good = [json.dumps({"url": f"https://example.org/{i}", "title": f"Story {i}",
                        "text": "word " * 50}) for i in range(1000)]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join([*good[:500], '{"url": ', *good[500:], '{"title": "no url"}'])
                    + "\n", encoding="utf-8")
    shown = _stderr_on_a_terminal(["import", str(path), "--no-index"], cli_env)
    # Each bar drawing starts with "\r"; a note is its own piece between "\r" and "\n".
    pieces = [p.strip() for p in re.split(r"[\r\n]", shown)]
    notes = [p for p in pieces if f"{path}: line " in p]
    assert notes == [f"tidings: {path}: line 501: invalid JSON: Expecting value at column 9",
                     f"tidings: {path}: line 1002: 'url' is required and must be a non-empty "
                     "string"], shown[-600:]
    assert "import: 100%" in shown


def test_a_terminal_without_a_size_shows_the_bar(cli_env, tmp_path):
    """A terminal that reports 0 lines (`script -qc`, `docker run -t` before its first resize)
    got an empty line where the bar goes: tqdm draws nothing below a terminal's last line."""
    path = write_jsonl([{"url": f"https://example.org/{i}", "title": f"Story {i}"}
                        for i in range(50)], tmp_path / "few.jsonl")
    shown = _stderr_on_a_terminal(["import", str(path), "--no-index"], cli_env, sized=False)
    assert "import: 100%" in shown, shown[-300:]


def test_import_shows_the_index_load_on_a_terminal(cli_env, tmp_path):
    """After its lines, an import loads the index and repairs it from the database: without
    saved files, every stored story's vector and card (minutes at a million), which the
    terminal showed as silence between "imported: ..." and the embedding bar."""
    import shutil

    first = write_jsonl([{"url": f"https://example.org/{i}", "title": f"Story {i}",
                          "text": f"Report {i} on the talks."} for i in range(300)],
                        tmp_path / "first.jsonl")
    assert run_cli(["import", str(first)], cli_env).returncode == 0
    shutil.rmtree(tmp_path / "data" / "index")
    more = write_jsonl([{"url": "https://example.org/new", "title": "One more"}],
                       tmp_path / "more.jsonl")
    shown = _stderr_on_a_terminal(["import", str(more)], cli_env)
    assert "load: 100%" in shown and "600/600" in shown, shown[-600:]  # vectors, then cards


def test_log_lines_on_a_terminal_go_above_the_bar(cli_env, tmp_path):
    """A rerun after an interrupted import repairs the saved index from the database, and its
    `index.repaired` line began where the load bar's last drawing ended ("...item/s]2026-12-07
    09:25:05,233 INFO tidings.corpus[8532] index.repaired ...")."""
    import shutil

    index = tmp_path / "data" / "index"
    first = write_jsonl([{"url": f"https://example.org/{i}", "title": f"Story {i}",
                          "text": f"Report {i} on the talks."} for i in range(100)],
                        tmp_path / "first.jsonl")
    assert run_cli(["import", str(first)], cli_env).returncode == 0
    shutil.copytree(index, tmp_path / "saved")
    second = write_jsonl([{"url": f"https://example.org/b{i}", "title": f"Later {i}",
                           "text": f"Later report {i} on the vote."} for i in range(100)],
                         tmp_path / "second.jsonl")
    assert run_cli(["import", str(second)], cli_env).returncode == 0
    # The files as an import killed before its save left them: the second file's vectors
    # stored, not in the index.
    shutil.rmtree(index)
    shutil.copytree(tmp_path / "saved", index)
    more = write_jsonl([{"url": "https://example.org/new", "title": "One more"}],
                       tmp_path / "more.jsonl")
    shown = _stderr_on_a_terminal(["import", str(more)], {**cli_env, "TIDINGS_LOG_LEVEL": "info"})
    pieces = [p.strip() for p in re.split(r"[\r\n]", shown)]
    repaired = [p for p in pieces if "index.repaired" in p]
    assert repaired and all(p.endswith("index.repaired added=100 removed=0") and
                            " INFO tidings.corpus[" in p and "load:" not in p
                            for p in repaired), shown[-800:]


def test_run_on_a_port_in_use_is_one_line_not_a_traceback(cli_env, tmp_path):
    """The API's bind failed with uvicorn's one line, then the stop cancelled the collect
    round waiting for the model, and APScheduler logged that with a traceback."""
    import socket

    (tmp_path / "sources.toml").write_text("", encoding="utf-8")
    env = {**cli_env, "TIDINGS_SOURCES_FILE": str(tmp_path / "sources.toml"),
           "TIDINGS_LOG_LEVEL": "info"}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run_cli(["run", "--port", str(port)], env)
        # `make demo` beside `make run`: the port was found taken only after the model and
        # the index had loaded, in uvicorn's words ("[Errno 98] ..."), exit 3. Now before
        # anything is made (no database yet), one line naming the port and what to change,
        # exit 2 (an input to fix); `serve --workers N` likewise, before preparing the index.
        workers = run_cli(["serve", "--workers", "2", "--port", str(port)], env)
    for got in (r, workers):
        assert got.returncode == 2 and "Traceback" not in got.stderr, got.stderr
        assert "raised an exception" not in got.stderr, got.stderr
        (line,) = got.stderr.strip().splitlines()
        assert line.startswith(f"tidings: error: cannot listen on 127.0.0.1:{port}: already in use"), line
        assert "--port" in line and "TIDINGS_API_PORT" in line, line
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


def test_related_with_an_empty_url_is_one_line(cli_env):
    """`--url ""` fell through to the --text branch: AttributeError and a traceback."""
    r = run_cli(["related", "--url", ""], cli_env)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("tidings: error:") and len(r.stderr.strip().splitlines()) == 1


def test_the_article_republished_under_its_title_stays_out_and_the_block_stays_full(
        cli_env, tmp_path, shared_data):
    """A CLI probe's case: sixty sites republished BBC politics-005 with a byline line added
    (so no copy shares its body hash). One of them led the article's own block, and the block
    of 5 had 1 item: the copies filled the first fetch and collapsed to one."""
    records = bbc_records(shared_data, limit=30)
    orig = records[4]
    assert orig["url"].endswith("politics-005")
    records += [{**orig, "url": f"https://paper{i}.example/politics-005",
                 "site": f"paper{i}.example", "source": f"paper{i}",
                 "text": f"By staff of Paper {i}.\n\n" + orig["text"]} for i in range(60)]
    r = run_cli(["import", str(write_jsonl(records, tmp_path / "s.jsonl"))], cli_env)
    assert r.returncode == 0, r.stderr
    r = run_cli(["related", "--id", "5", "-k", "5", "--json"], cli_env)
    assert r.returncode == 0, r.stderr
    block = json.loads(r.stdout)
    assert block["article"]["title"] == orig["title"]
    shown = [(c["title"], c["site"]) for c in block["related"]]
    assert len(shown) == 5, shown
    assert all(title != orig["title"] for title, _ in shown), shown


def test_takedown_keeps_a_story_out_of_imports_until_lifted(cli_env, tmp_path, shared_data):
    """A story deleted by hand came back with the next import or collection round of a file or
    feed that still held it: `tidings takedown` removes it and keeps it out."""
    records = bbc_records(shared_data, limit=5)
    path = write_jsonl(records, tmp_path / "stories.jsonl")
    assert run_cli(["import", str(path), "--no-index"], cli_env).returncode == 0
    url = records[0]["url"].replace("https://", "http://")  # any spelling names it

    # Spellings of one page are one URL taken down (it said "3 URL(s)").
    r = run_cli(["takedown", "add", url, url + "/", records[0]["url"], "--reason",
                 "court order 42\nfiled by legal"], cli_env)
    assert r.returncode == 0 and "1 stored story removed" in r.stdout, r.stderr
    assert r.stdout.startswith("taken down: 1 URL;"), r.stdout
    r = run_cli(["import", str(path), "--no-index"], cli_env)
    assert "0 new" in r.stdout and "1 taken down (skipped)" in r.stdout, r.stdout
    listed = json.loads(run_cli(["takedown", "list", "--json"], cli_env).stdout)
    assert [t["url"] for t in listed] == [records[0]["url"]]  # one line, the stored spelling
    assert url in listed[0]["spellings"] and listed[0]["reason"] == "court order 42\nfiled by legal"
    assert listed[0]["at"].endswith("Z"), listed  # as the API writes times (it was "+00:00")
    table = run_cli(["takedown", "list"], cli_env).stdout.splitlines()
    # One line a takedown: the reason's line break broke the table.
    assert len(table) == 2 and records[0]["url"] in table[1]
    assert table[1].endswith("court order 42 filed by legal")

    r = run_cli(["takedown", "add", "not a url"], cli_env)
    assert r.returncode == 2 and r.stderr.startswith("tidings: error:") and "Traceback" not in r.stderr
    r = run_cli(["takedown", "lift", records[0]["url"]], cli_env)
    assert r.returncode == 0 and r.stdout.startswith("lifted: 1 URL "), r.stdout
    assert run_cli(["takedown", "list", "--json"], cli_env).stdout.strip() == "[]"
    r = run_cli(["import", str(path), "--no-index"], cli_env)
    assert "1 new" in r.stdout, r.stdout
    r = run_cli(["takedown", "lift", records[0]["url"]], cli_env)
    assert r.returncode == 2 and "none of these URLs is taken down" in r.stderr


def test_a_database_only_command_does_not_import_the_roles_it_does_not_run():
    """`sources`, `takedown`, `export`, ... build services with no role: importing every
    role's parts (the collector with trafilatura and aiohttp, FAISS, the ranking) took ~0.4 s
    of each such command's ~1.3 s start."""
    code = ("import sys, api.cli, api.services; print(sorted(m for m in ('trafilatura', "
            "'aiohttp', 'faiss', 'aggregator.collect', 'recommender.blocks', "
            "'recommender.corpus') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def test_stats_reports_the_widgets_days_sites_stories_and_pages(cli_env, tmp_path):
    """`tidings stats`: a table by default, the endpoint's JSON with --json; events before
    the period and, with --site, other sites' stories are left out; a quiet day is zeros;
    the pages the block was on are the last table."""
    import asyncio
    from datetime import timedelta

    from aggregator.store import EventRecord, Store, event_key

    path = tmp_path / "two.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in [
        {"url": "https://news.example/a", "title": "Widget story", "site": "news.example"},
        {"url": "https://other.example/b", "title": "Other story", "site": "other.example"},
    ]) + "\n", encoding="utf-8")
    assert run_cli(["import", str(path), "--no-index"], cli_env).returncode == 0
    from tests.api.test_stats import past_midnight_if_near

    now = past_midnight_if_near()
    page = "https://pub.example/2026/article"

    async def add_events() -> None:
        store = Store(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'tidings.db'}")
        evs = [(1, "impression", now, 4), (1, "click", now, 1), (2, "click", now, 2),
               (1, "click", now - timedelta(days=3), 5)]  # before a 2-day period
        try:
            await store.add_events([EventRecord(event_key(f"r{i}", sid, kind, at, None), f"r{i}",
                                                sid, kind, at, page=page if sid == 1 else None)
                                    for sid, kind, at, n in evs for i in range(n)], now)
        finally:
            await store.close()

    asyncio.run(add_events())
    r = run_cli(["stats", "--days", "2", "--json"], cli_env)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert [d["clicks"] for d in report["days"]] == [0, 3]  # yesterday quiet, the old 5 out
    assert report["days"][0]["ctr"] is None
    assert report["total"] == {"impressions": 4, "clicks": 3, "reads": 0, "ctr": 0.75}
    assert [(s["site"], s["clicks"]) for s in report["sites"]] == [("other.example", 2),
                                                                   ("news.example", 1)]
    assert report["pages"] == [{"page": page, "impressions": 4, "clicks": 1, "ctr": 0.25}]
    r = run_cli(["stats", "--days", "2", "--site", "News.Example"], cli_env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["DAY", "IMPRESSIONS", "CLICKS", "READS", "CTR"]
    assert lines[2].split() == [now.date().isoformat(), "4", "1", "0", "25.00%"]
    assert "Widget story" in r.stdout and "other.example" not in r.stdout
    assert lines[-2:] == ["IMPRESSIONS  CLICKS  CTR     PAGE", f"4            1       25.00%  {page}"]
    r = run_cli(["stats", "--days", "91"], cli_env)
    assert r.returncode == 2 and "91 is outside [1, 90]" in r.stderr and "Traceback" not in r.stderr


def test_import_skips_and_counts_lines_older_than_retention_keeps(cli_env, tmp_path):
    """A line published before `[retention] stories_days` was stored, embedded and indexed,
    then deleted by the next retention run within the hour (and stored again by a rerun).
    It is skipped and counted now, as the collector skips such feed items; an undated line
    is dated by the import, and kept."""
    from datetime import UTC, datetime, timedelta

    recent = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    path = tmp_path / "archive.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in [
        {"url": "https://example.org/old", "title": "Old", "published_at": "2019-05-01T10:00:00Z"},
        {"url": "https://example.org/recent", "title": "Recent", "published_at": recent},
        {"url": "https://example.org/undated", "title": "Undated"},
        {"url": "https://example.org/older", "title": "Older", "published_at": "2001-01-01T00:00:00Z"},
    ]) + "\n", encoding="utf-8")
    env = {**cli_env, "TIDINGS_RETENTION_STORIES_DAYS": "30"}
    r = run_cli(["import", str(path)], env)
    assert r.returncode == 0, r.stderr
    assert "2 new" in r.stdout and "2 older than [retention] stories_days = 30 (skipped)" in r.stdout, r.stdout
    assert "embedded 2 stories" in r.stdout, r.stdout
    with sqlite3.connect(tmp_path / "data" / "tidings.db") as con:
        urls = [u for (u,) in con.execute("SELECT url FROM stories ORDER BY url")]
    assert urls == ["https://example.org/recent", "https://example.org/undated"]
    # Without retention (0 keeps for ever) every line goes in, however old.
    r = run_cli(["import", str(path), "--no-index"], cli_env)
    assert r.returncode == 0 and "2 new, 0 updated, 2 already stored" in r.stdout, r.stdout
    assert "older than" not in r.stdout
