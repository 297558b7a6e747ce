"""Operator input the command line must refuse in one line, or take (DESIGN.md 4.1): found
by an audit that drove each command with good and bad input. Real subprocesses, real SQLite."""

from __future__ import annotations

import json
import resource
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, TIDINGS, make_database, run_cli


def one_line_error(r, status: int = 2) -> str:
    assert r.returncode == status and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tidings"), r.stderr
    return lines[0]


def test_an_empty_config_path_is_refused_not_read_as_the_default(cli_env, tmp_path):
    """`--config "$CONF"` with the variable unset ran on the default settings (another
    database, another sources file) without a word."""
    for args in (["--config", "", "sources", "list"], ["sources", "list", "--config", ""]):
        r = run_cli(args, cli_env, timeout=20)
        assert r.returncode == 2 and "--config: the path is empty" in r.stderr, r.stderr
        assert r.stdout == ""


def test_an_empty_source_or_host_is_refused_not_read_as_not_given(cli_env):
    """`collect --source "$SRC"` with the variable unset started the scheduled collector of
    every source, which never exits (a cron job's processes piled up); `serve --host ""`
    listened on the default host."""
    for args, says in ((["collect", "--source", ""], "--source: the source name is empty"),
                       (["collect", "--once", "--source", " "], "--source: the source name is empty"),
                       (["serve", "--host", ""], "--host: the host is empty"),
                       (["run", "--host", ""], "--host: the host is empty")):
        r = run_cli(args, cli_env, timeout=20)
        assert r.returncode == 2 and says in r.stderr, (args, r.stderr)


def test_a_blank_filter_of_related_or_search_is_refused(cli_env):
    """`related --category " "` filtered to the stories without a category, a block of
    nothing; `search` answered with imported lines; `--category ""` gave every category."""
    for cmd in (["related", "--id", "1"], ["search", "ceasefire"]):
        for flag, value, says in (("--category", " ", "--category: the category is empty"),
                                  ("--category", "", "--category: the category is empty"),
                                  ("--site", " ", "--site: the site is empty"),
                                  ("--exclude-site", "", "--exclude-site: the site is empty")):
            r = run_cli([*cmd, flag, value], cli_env, timeout=20)
            assert r.returncode == 2 and says in r.stderr, (cmd, flag, r.stderr)
            assert len(r.stderr.splitlines()) == 1 and r.stdout == "", r.stderr


def test_a_blank_time_is_refused_not_read_as_not_given(cli_env, tmp_path):
    """`export - --since "$LAST_RUN"` with the variable unset exported every story, exit 0
    (the time read as a story line's missing one), and `related --published-at ""` dated
    the text by its dateline: a blank time is refused, as a blank name is."""
    for cmd, flag in ((["export", "-"], "--since"), (["export", str(tmp_path / "o.jsonl")], "--until"),
                      (["related", "--text", "Budget vote tonight"], "--published-at")):
        for value in ("", " "):
            r = run_cli([*cmd, flag, value], cli_env, timeout=20)
            assert one_line_error(r).endswith(f"{flag}: the time is empty (see `tidings "
                                              f"{cmd[0]} --help`)"), (cmd, flag, value)
            assert r.stdout == ""
    assert not (tmp_path / "o.jsonl").exists()


def test_an_unknown_eval_embedder_is_one_line(cli_env, tmp_path):
    """make_embedder's ValueError reached the top: a traceback."""
    r = run_cli(["eval", "related", "--embedder", "nope", "--data", str(tmp_path)], cli_env, timeout=20)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "--embedder: unknown embedder 'nope'" in r.stderr


def test_title_and_published_at_without_text_are_refused(cli_env, tmp_path):
    """They describe the --text article; with --id they were dropped in silence."""
    story = {"url": "https://example.org/a", "title": "Ceasefire talks in Jeddah"}
    r = run_cli(["import", "-", "--no-index"], cli_env, input=json.dumps(story) + "\n")
    assert r.returncode == 0, r.stderr
    for extra in (["--title", "Another title"], ["--published-at", "2026-01-01"]):
        for what in (["--id", "1"], ["--url", story["url"]]):
            line = one_line_error(run_cli(["related", *what, *extra], cli_env))
            assert f"{extra[0]} goes with --text only" in line
    r = run_cli(["related", "--text", "talks in Jeddah", "--title", "Talks"], cli_env)
    assert r.returncode == 0 and "Related to: Talks" in r.stdout, r.stderr


def test_a_story_id_no_database_holds_is_one_line(cli_env):
    """An id past BIGINT was the driver's OverflowError, with a traceback."""
    r = run_cli(["related", "--id", "99999999999999999999999"], cli_env, timeout=20)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "--id: 99999999999999999999999 is not a story id" in r.stderr


def test_import_from_a_closed_stdin_and_export_to_a_closed_stdout_are_one_line(cli_env):
    """`tidings import - <&-`, `tidings export - >&-`: sys.stdin / sys.stdout is None, and
    using it was an AttributeError traceback."""
    import os

    r = subprocess.run([*TIDINGS, "import", "-", "--no-index"], cwd=REPO, env=cli_env, text=True,
                       capture_output=True, timeout=60, preexec_fn=lambda: os.close(0))
    assert one_line_error(r) == "tidings: error: cannot read -: standard input is closed"
    r = subprocess.run([*TIDINGS, "export", "-"], cwd=REPO, env=cli_env, text=True,
                       stderr=subprocess.PIPE, timeout=60, preexec_fn=lambda: os.close(1))
    assert one_line_error(r) == "tidings: error: cannot write -: standard output is closed"
    # `sources import-opml -` too (found by a later hunt).
    r = subprocess.run([*TIDINGS, "sources", "import-opml", "-"], cwd=REPO, env=cli_env, text=True,
                       capture_output=True, timeout=60, preexec_fn=lambda: os.close(0))
    assert one_line_error(r) == "tidings: error: cannot read -: standard input is closed"


def test_import_refuses_a_gzip_or_latin1_file_whole_in_one_line(cli_env, tmp_path):
    """Each of their lines was a bad line: 50,000 errors for 50,000 lines, the hint (gunzip,
    convert to UTF-8) on the first alone. From a file or from standard input."""
    import gzip

    lines = "".join(json.dumps({"url": f"https://example.org/{i}", "title": f"Café {i}"},
                               ensure_ascii=False) + "\n" for i in range(50))
    packed = tmp_path / "s.jsonl.gz"
    packed.write_bytes(gzip.compress(lines.encode()))
    r = run_cli(["import", str(packed), "--no-index"], cli_env)
    assert one_line_error(r) == (f"tidings: error: {packed} is a gzip file: "
                                 "`gunzip -c FILE | tidings import -` reads it")
    r = subprocess.run([*TIDINGS, "import", "-", "--no-index"], cwd=REPO, env=cli_env,
                       input=lines.encode("latin-1"), capture_output=True, timeout=60)
    r.stderr = r.stderr.decode()
    assert one_line_error(r).startswith("tidings: error: standard input is not UTF-8 text "
                                        "(byte 0xe9 at column 47 of line 1)"), r.stderr
    assert r.stdout == b""


def test_import_of_a_file_with_stdin_closed_ends_cleanly(cli_env, tmp_path):
    """`tidings import FILE <&-` (a scheduler that starts jobs without stdin): the stories went
    in, then the clean-up's `sys.stdin.buffer` (None) ended the run in an AttributeError
    traceback, exit 1, before the indexer gave back its seat."""
    import os

    story = tmp_path / "s.jsonl"
    story.write_text(json.dumps({"url": "https://example.org/a", "title": "Talks"}) + "\n",
                     encoding="utf-8")
    r = subprocess.run([*TIDINGS, "import", str(story)], cwd=REPO, env=cli_env, text=True,
                       capture_output=True, timeout=120, preexec_fn=lambda: os.close(0))
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert r.stdout.startswith("imported: 1 new") and "index holds 1" in r.stdout, r.stdout


def test_a_command_started_with_stderr_closed_does_its_work(cli_env, tmp_path):
    """`2>&-` (a cron line): sys.stderr is None, and the progress bar's check of it stopped
    `import` with an AttributeError, exit 1, nothing stored."""
    import os

    story = tmp_path / "s.jsonl"
    story.write_text(json.dumps({"url": "https://example.org/a", "title": "Talks"}) + "\n",
                     encoding="utf-8")
    r = subprocess.run([*TIDINGS, "import", str(story), "--no-index"], cwd=REPO, env=cli_env,
                       text=True, stdout=subprocess.PIPE, timeout=60,
                       preexec_fn=lambda: os.close(2))
    assert r.returncode == 0 and r.stdout.startswith("imported: 1 new"), r.stdout


def test_sources_check_of_a_url_it_cannot_try_says_what_is_wrong_with_it(cli_env):
    """A URL the loader refuses was looked up as a source's name: "no source named
    'http://news.example:99999/feed' (a feed's http(s) URL is tried as it is)"."""
    for url, says in (("http://news.example:99999/feed", "Port out of range"),
                      ("http://news example/feed", "bad host name 'news example'"),
                      ("ftp://news.example/feed", "absolute http(s) URL")):
        line = one_line_error(run_cli(["sources", "check", url], cli_env, timeout=60))
        assert line.startswith("tidings: error: cannot try this URL: ") and says in line, line


def test_a_database_error_is_one_line_without_the_statement_or_the_stories(cli_env, tmp_path):
    """SQLAlchemy's text goes on with the SQL, its parameters (an import batch: the stories'
    texts) and a link: kilobytes on four lines for a full disk, two for a file that is not a
    database."""
    not_db = tmp_path / "not-a-db.sqlite"
    not_db.write_bytes(b"this is no SQLite file, " * 200)
    env = {**cli_env, "TIDINGS_DATABASE_URL": f"sqlite+aiosqlite:///{not_db}"}
    # 1, not 2: the work failed, the command line was right (README, exit status).
    line = one_line_error(run_cli(["related", "--text", "talks"], env), 1)
    assert "file is not a database" in line and "sqlalche.me" not in line

    # A full disk, as a file size limit: the database is made, then the import's first
    # batch cannot be written.
    r = run_cli(["import", "-", "--no-index"], cli_env, input="")
    assert r.returncode == 0, r.stderr
    stories = tmp_path / "stories.jsonl"
    with open(stories, "w", encoding="utf-8") as f:
        for i in range(600):
            f.write(json.dumps({"url": f"https://example.org/{i}", "title": f"Story {i}",
                                "text": "secret body words " * 300}) + "\n")

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, resource.RLIM_INFINITY))

    r = subprocess.run([*TIDINGS, "import", str(stories), "--no-index"], cwd=REPO, env=cli_env,
                       text=True, capture_output=True, timeout=120, preexec_fn=small_files)
    line = one_line_error(r, 1)  # as `tidings index` exits for the same failure
    assert line.startswith("tidings: error: storing stories failed: (sqlite3.OperationalError)")
    assert "secret body" not in r.stderr and "INSERT" not in r.stderr


async def test_a_label_longer_than_its_column_is_one_bad_line_on_either_database(cli_env, tmp_path, db_url):
    """On PostgreSQL a category of 81 characters failed the batch it was in: the import
    stopped at `storing stories failed`, and the good lines around it were not stored."""
    import asyncio

    lines = [{"url": f"https://example.org/{i}", "title": f"Story {i}"} for i in range(4)]
    lines[1]["category"] = "c" * 81
    env = {**cli_env, "TIDINGS_DATABASE_URL": db_url}
    text = "".join(json.dumps(x) + "\n" for x in lines)
    r = await asyncio.to_thread(run_cli, ["import", "-", "--no-index"], env, input=text)
    assert r.returncode == 0, r.stderr
    assert "line 2: 'category' is longer than 80 characters (81)" in r.stderr
    assert "3 new" in r.stdout and "1 bad lines skipped" in r.stdout
    r = await asyncio.to_thread(run_cli, ["export", "-"], env)
    assert sorted(json.loads(x)["url"] for x in r.stdout.splitlines()) == [
        "https://example.org/0", "https://example.org/2", "https://example.org/3"]


async def test_a_takedown_of_a_url_no_story_can_have_is_one_line_on_either_database(cli_env, db_url):
    """A URL past a story's 2,048 characters: on PostgreSQL the takedowns' key index refused
    the row (a random one does not compress), and the answer was a traceback with the SQL and
    the whole URL; SQLite kept a takedown that could never match."""
    import asyncio
    import random
    import string

    env = {**cli_env, "TIDINGS_DATABASE_URL": db_url}
    await asyncio.to_thread(make_database, env)
    path = "".join(random.Random(7).choices(string.ascii_letters, k=9000))
    r = await asyncio.to_thread(run_cli, ["takedown", "add", f"https://news.example/{path}"], env)
    line = one_line_error(r)
    assert "a URL of 9021 characters: no story's is longer than 2048" in line and path not in line
    r = await asyncio.to_thread(run_cli, ["takedown", "list", "--json"], env)
    assert r.returncode == 0 and json.loads(r.stdout) == [], r.stderr


async def test_a_database_that_refuses_writes_is_one_line(cli_env, tmp_path, pg_url):
    """Pointed at a read-only PostgreSQL (a hot standby, default_transaction_read_only),
    `sources reset`, `collect --once` and `index` ended in SQLAlchemy's traceback with the
    SQL: the store raises the driver's errors as they come."""
    import asyncio
    from urllib.parse import urlsplit

    from tests.conftest import _admin

    (tmp_path / "sources.toml").write_text(
        '[[source]]\nname = "a"\nurl = "http://127.0.0.1:9/feed"\ncategory = "news"\n')
    env = {**cli_env, "TIDINGS_DATABASE_URL": pg_url,
           "TIDINGS_SOURCES_FILE": str(tmp_path / "sources.toml")}
    await asyncio.to_thread(make_database, env)
    name = urlsplit(pg_url).path.lstrip("/")
    await _admin(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    for args in (["sources", "reset", "a"], ["index"]):
        r = await asyncio.to_thread(run_cli, args, env)
        assert r.returncode == 1 and "Traceback" not in r.stderr, (args, r.stderr[-2000:])
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("tidings: error: database: "), r.stderr
        assert "read-only transaction" in lines[0]


async def test_related_by_url_of_a_page_without_an_article_is_one_line(cli_env, tmp_path):
    """trafilatura logged "empty HTML tree" and "discarding data" at ERROR before the
    command's own error: three lines of a library's log for one bad URL."""
    import asyncio

    from tests.localsite import LocalSite

    async with LocalSite() as site:
        site.route("/feed.xml", body='<?xml version="1.0"?><rss version="2.0"><channel>'
                   "<title>Feed</title></channel></rss>", content_type="application/rss+xml")
        env = {**cli_env, "TIDINGS_API_FETCH_ALLOW_HOSTS": "127.0.0.1"}
        await asyncio.to_thread(make_database, env)
        r = await asyncio.to_thread(run_cli, ["related", "--url", site.url("/feed.xml")], env)
        closed = site.url("/gone.html").replace(f":{site.port}/", f":{_closed_port()}/")
        down = await asyncio.to_thread(run_cli, ["related", "--url", closed], env)
    # 1, not 2 (README, exit status): the page failed, the command line was right.
    line = one_line_error(r, 1)
    assert line.startswith("tidings: error: no readable article at"), line
    line = one_line_error(down, 1)
    assert line.startswith("tidings: error: ") and closed in line, line


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_import_reads_a_utf16_file_as_powershell_writes_it(cli_env, tmp_path):
    text = "".join(json.dumps({"url": f"https://example.org/{i}", "title": f"Café {i}"},
                              ensure_ascii=False) + "\r\n" for i in range(3))
    path = tmp_path / "stories.jsonl"
    path.write_bytes(text.encode("utf-16"))
    r = run_cli(["import", str(path), "--no-index"], cli_env)
    assert r.returncode == 0 and "3 new" in r.stdout and "0 bad lines" in r.stdout, r.stderr


def import_unindexed_harbour_stories(cli_env, tmp_path) -> None:
    """Three small stories imported with --no-index: stored, no vector yet."""
    lines = [json.dumps({"url": f"https://news.example/{i}", "title": f"Harbour story {i}",
                         "text": f"Boats fill the harbour on day {i}."}) for i in range(3)]
    stories = tmp_path / "stories.jsonl"
    stories.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert run_cli(["import", str(stories), "--no-index"], cli_env).returncode == 0


def test_index_rebuild_with_watch_rebuilds_then_keeps_watching(cli_env, tmp_path):
    """`index --rebuild --watch` started the watch and ignored --rebuild without a word."""
    import select
    import signal
    import time

    import_unindexed_harbour_stories(cli_env, tmp_path)
    proc = subprocess.Popen([*TIDINGS, "index", "--rebuild", "--watch"], cwd=REPO, env=cli_env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out = ""
        deadline = time.monotonic() + 60
        while "rebuilt the index" not in out and time.monotonic() < deadline and proc.poll() is None:
            if select.select([proc.stdout], [], [], 1.0)[0]:  # the watch alone prints nothing
                out += proc.stdout.readline()
        assert "rebuilt the index from the database: 3 vectors" in out, out
        time.sleep(0.5)
        assert proc.poll() is None  # still watching
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 143) and "Traceback" not in err, err


def test_related_says_when_stories_are_not_indexed_yet(cli_env, tmp_path):
    """After `import --no-index`, `related` found nothing and gave no hint why."""
    import_unindexed_harbour_stories(cli_env, tmp_path)
    r = run_cli(["related", "--text", "boats in the harbour", "--json"], cli_env)
    assert r.returncode == 0 and json.loads(r.stdout)["related"] == []
    assert "3 stories have no vector yet" in r.stderr and "tidings index" in r.stderr
    assert run_cli(["index"], cli_env).returncode == 0
    r = run_cli(["related", "--text", "boats in the harbour", "--json"], cli_env)
    assert r.returncode == 0 and json.loads(r.stdout)["related"] and "no vector" not in r.stderr


async def test_related_by_url_in_the_cli_reads_an_intranet_page(cli_env):
    """The operator's `related --url` refused a loopback or intranet page ("resolves to
    non-public address"), though only API callers' URLs are restricted (DESIGN.md 4.2)."""
    import asyncio

    from tests.localsite import LocalSite

    words = " ".join(f"The harbour board met on day {i} to talk about the new ferry." for i in range(20))
    page = (f"<html><head><title>Ferry plan</title></head><body><article><h1>Ferry plan agreed"
            f"</h1><p>{words}</p><p>{words}</p></article></body></html>")
    async with LocalSite() as site:
        site.route("/ferry.html", body=page, content_type="text/html")
        await asyncio.to_thread(make_database, cli_env)
        r = await asyncio.to_thread(run_cli, ["related", "--url", site.url("/ferry.html"), "--json"],
                                    cli_env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["article"]["title"].startswith("Ferry plan")


def test_sources_list_says_due_for_a_source_waiting_for_its_check(cli_env, tmp_path):
    """NEXT CHECK read "0s ago" for a source never fetched (and "5m ago" for an overdue one),
    as if that check had happened."""
    from datetime import UTC, datetime, timedelta

    from api.cli import next_check

    now = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    assert next_check(now, now) == next_check(now - timedelta(minutes=5), now) == "due"
    assert next_check(now + timedelta(minutes=5), now) == "in 5m"
    assert next_check(None, now) == "-"
    path = tmp_path / "sources.toml"
    path.write_text('[[source]]\nname = "waiting"\nurl = "https://news.example/feed.xml"\n'
                    'category = "news"\n', encoding="utf-8")
    make_database(cli_env)
    r = run_cli(["sources", "list"], {**cli_env, "TIDINGS_SOURCES_FILE": str(path)})
    assert r.returncode == 0, r.stderr
    row = next(line for line in r.stdout.splitlines() if line.startswith("waiting"))
    assert " due" in row and "ago" not in row, r.stdout


def test_eval_feed_takes_the_mind_folder_itself_and_names_a_missing_sample(cli_env, tmp_path, shared_data):
    """`eval feed --data .../mind-small-sample` (the folder the figures come from) read
    .../mind-small-sample/mind-small-sample/news.tsv; that and a folder without the sample
    stopped on a bare "[Errno 2] No such file or directory" and exit 1."""
    line = one_line_error(run_cli(["eval", "feed", "--data", str(tmp_path)], cli_env, timeout=60))
    assert f"no MIND sample at {tmp_path / 'mind-small-sample'}" in line, line
    r = run_cli(["eval", "feed", "--data", str(shared_data / "mind-small-sample")], cli_env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["n"] == 808


def test_eval_related_names_the_datasets_its_data_folder_lacks(cli_env, tmp_path):
    """A --data folder without them stopped on a bare "[Errno 2] No such file or directory"
    and exit 1, and `--only seed` printed an empty block and succeeded."""
    (tmp_path / "ecbplus").mkdir()
    line = one_line_error(run_cli(["eval", "related", "--data", str(tmp_path), "--only", "seed"],
                                  cli_env, timeout=60))
    assert line == f"tidings: error: no bbc-news folder in {tmp_path}: pass --data the shared data folder"
    line = one_line_error(run_cli(["eval", "related", "--data", str(tmp_path)], cli_env, timeout=60))
    assert f"no bbc-news, uci-news-aggregator-head folder in {tmp_path}" in line, line


# keepalives is translated now (url_keepalive): the database is reached, and its absence is
# the failure (1); sslrootcert is refused before connecting, the URL is wrong (2).
@pytest.mark.parametrize(("option", "status", "named"), [
    ("keepalives=1", 1, "tidings_never_created"), ("sslrootcert=/etc/ssl/rds.pem", 2, "sslrootcert")])
def test_a_libpq_parameter_asyncpg_cannot_take_is_one_line(cli_env, pg_server, option, status, named):
    # A libpq option in the URL reached asyncpg's connect() and ended in a 40-line TypeError
    # traceback. The common ones are translated now (tests/aggregator/test_store.py); the
    # rest are named in one line, whether Tidings (sslrootcert) or the driver (keepalives)
    # refuses them. (No database is reached: the parameter is refused before connecting.)
    base = pg_server.rsplit("/", 1)[0]
    env = {**cli_env, "TIDINGS_DATABASE_URL": f"{base}/tidings_never_created?{option}"}
    r = run_cli(["sources", "list"], env, timeout=60)
    assert r.returncode == status and "Traceback" not in r.stderr, r.stderr[-2000:]
    (line,) = r.stderr.strip().splitlines()
    assert named in line, line


def test_a_usage_error_is_one_line_without_the_usage_block(cli_env):
    """argparse printed its usage block (up to six lines) before the error: DESIGN.md 4.1 says
    bad input gets a one-line error naming the problem."""
    for args, says in ((["related"], "one of the arguments --id --url --text is required"),
                       (["related", "--id", "1", "-k", "2.5"], "argument -k: '2.5' is not a whole number"),
                       (["sources", "check"], "the following arguments are required: name"),
                       (["nosuchcommand"], "invalid choice: 'nosuchcommand'"),
                       (["index", "--bogus"], "unrecognized arguments: --bogus")):
        line = one_line_error(run_cli(args, cli_env, timeout=20))
        assert says in line and "--help" in line, (args, line)
    r = run_cli(["related", "--help"], cli_env, timeout=20)
    assert r.returncode == 0 and r.stdout.startswith("usage: tidings related")


def test_exit_status_2_is_for_input_to_fix_1_for_work_that_failed():
    """Every deliberate error exited 2, "bad input": a full disk during `import` too, where
    `index` exited 1 for the same failure (README, exit status)."""
    from aggregator.errors import (
        BadDatabaseURL,
        ConfigError,
        DatabaseTimeout,
        FetchError,
        NotFound,
        ParseError,
        StoreError,
        TakenDown,
    )
    from api.cli import error_status

    assert [error_status(e) for e in (ConfigError("x"), NotFound("x"), BadDatabaseURL("x"))] == [2, 2, 2]
    failed = (StoreError("x"), DatabaseTimeout("x"), FetchError("x"), ParseError("x"), TakenDown("x"))
    assert [error_status(e) for e in failed] == [1] * 5
    assert isinstance(BadDatabaseURL("x"), StoreError) and str(BadDatabaseURL("x")) == "x"


def test_eval_builds_no_model_files_in_the_data_dir(cli_env, tmp_path, shared_data, ov_path):
    """`tidings eval` with a real embedder made `DATA_DIR/models` (and the data dir itself) and
    built the model files there, though the service had never run on that data dir: they come
    from the user's cache (XDG_CACHE_HOME, where `ov_path` is linked as built), and the data
    dir's `models` is used only where the service built it."""
    mind = tmp_path / "mind"
    mind.mkdir()
    for name, rows in (("news.tsv", 200), ("behaviors.tsv", 40)):  # a slice: the point is the files
        lines = (shared_data / "mind-small-sample" / name).read_text(encoding="utf-8").splitlines()
        (mind / name).write_text("\n".join(lines[:rows]) + "\n", encoding="utf-8")
    cache = tmp_path / "cache" / "tidings" / "models"
    cache.mkdir(parents=True)
    (cache / "minilm-int8-ov").symlink_to(ov_path.parent)
    env = {**cli_env, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    data = Path(env["TIDINGS_DATA_DIR"])
    r = run_cli(["eval", "feed", "--embedder", "minilm-int8-ov", "--data", str(mind)], env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "seconds" in json.loads(r.stdout)  # the figures were printed
    assert not (data / "models").exists()
    # A data dir the service ran on: the files it built there are used, none built in the cache.
    (cache / "minilm-int8-ov").unlink()
    (data / "models").mkdir(parents=True)
    (data / "models" / "minilm-int8-ov").symlink_to(ov_path.parent)
    r = run_cli(["eval", "feed", "--embedder", "minilm-int8-ov", "--data", str(mind)], env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert list(cache.iterdir()) == []
