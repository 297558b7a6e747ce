"""Operating sources from the command line against a local site: redirects, health, resets
and disabled or removed sources, as an operator meets them (real subprocesses, real SQLite)."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import time
from datetime import UTC, datetime

import pytest

from tests.e2e.conftest import REPO, TIDINGS, make_database, run_cli
from tests.localsite import LocalSite

RSS = """<?xml version="1.0"?><rss version="2.0"><channel><title>Moved</title>
<link>http://news.example/</link><description>d</description>
<item><title>Parliament votes on the budget</title><link>http://news.example/a</link>
<description>The vote took place today after a long debate.</description></item>
<item><title>Minister resigns over the report</title><link>http://news.example/b</link>
<description>The minister stepped down on Monday.</description></item>
</channel></rss>"""


def sources_file(tmp_path, *tables: str):
    path = tmp_path / "sources.toml"
    path.write_text("\n".join(tables), encoding="utf-8")
    return path


def source(name: str, url: str, **extra) -> str:
    lines = [f'[[source]]\nname = "{name}"\nurl = "{url}"\ncategory = "politics"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


async def cli(args: list[str], env: dict):
    # In a thread: the local site answers on this test's event loop meanwhile.
    return await asyncio.to_thread(run_cli, args, env)


async def listed(env: dict) -> dict[str, dict]:
    r = await cli(["sources", "list", "--json"], env)
    assert r.returncode == 0, r.stderr
    return {row["name"]: row for row in json.loads(r.stdout)}


async def test_a_permanent_redirect_survives_the_commands_that_follow(cli_env, tmp_path):
    """After a 301 the next `sources list` put the old URL back (it synced the file's URL
    over the moved one), dropped the ETag and made the source due; the next collect then
    fetched the old URL again, unconditionally."""
    async with LocalSite() as site:
        site.route("/bbc.xml", body=RSS, etag='"v1"', content_type="application/rss+xml")
        site.route("/old2.xml", status=301, headers={"Location": site.url("/bbc.xml")})
        path = sources_file(tmp_path, source("moved2", site.url("/old2.xml")))
        env = {**cli_env, "TIDINGS_SOURCES_FILE": str(path)}
        r = await cli(["collect", "--once", "--source", "moved2"], env)
        assert r.returncode == 0 and "ok     moved2: 2 items" in r.stdout, r.stdout + r.stderr
        for _ in range(2):
            row = (await listed(env))["moved2"]
            assert row["url"] == site.url("/bbc.xml")
            assert datetime.fromisoformat(row["next_check_at"]) > datetime.now(UTC)
        site.reset_log()
        r = await cli(["collect", "--once", "--source", "moved2"], env)
        assert "not modified" in r.stdout, r.stdout + r.stderr
        assert [(p, h.get("If-None-Match")) for _, p, h in site.requests] == [("/bbc.xml", '"v1"')]


async def test_collect_says_when_a_failing_source_is_back(cli_env, tmp_path):
    """`collect --source` printed `error` for each failed fetch and then `ok … not modified`,
    the same line as for a source that never failed: the operator retrying a feed after an
    outage was not told that it had ended."""
    async with LocalSite() as site:
        site.route("/back.xml", body=RSS, etag='"v1"', content_type="application/rss+xml")
        env = {**cli_env, "TIDINGS_SOURCES_FILE": str(sources_file(tmp_path, source("back", site.url("/back.xml"))))}
        assert (await cli(["collect", "--once"], env)).returncode == 0
        site.route("/back.xml", status=500)
        r = await cli(["collect", "--source", "back"], env)
        assert r.returncode == 1 and "error  back: HTTP 500" in r.stdout, r.stdout + r.stderr
        site.route("/back.xml", body=RSS, etag='"v1"', content_type="application/rss+xml")
        r = await cli(["collect", "--source", "back"], env)
        assert "ok     back: not modified (recovered after 1 failed fetch)" in r.stdout, r.stdout
        assert "collect.recovered source=back after_errors=1" in r.stderr, r.stderr


async def test_disabled_and_removed_sources_are_refused_not_fetched(cli_env, tmp_path):
    """`collect --source` fetched a source the file disables ("never fetched", says
    sources.toml); `sources reset` of a source removed from the file said "due now"
    though nothing would ever fetch it; the API showed a disabled source's next check."""
    async with LocalSite() as site:
        for n in ("on", "off", "gone"):  # one feed each: a repeated URL is warned about
            # Links of its own each: a link in two feeds is the story of whichever stores it first.
            site.route(f"/{n}.xml", body=RSS.replace("news.example/", f"{n}.example/"),
                       content_type="application/rss+xml")
        on, off, gone = (source(n, site.url(f"/{n}.xml")) for n in ("on", "off", "gone"))
        off = off + "enabled = false\n"
        env = {**cli_env, "TIDINGS_SOURCES_FILE": str(sources_file(tmp_path, on, off, gone))}
        r = await cli(["collect", "--once"], env)
        assert r.returncode == 0, r.stderr
        site.reset_log()
        r = await cli(["collect", "--once", "--source", "off"], env)
        assert r.returncode == 2 and "disabled" in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and r.stdout == ""
        assert site.requests == []
        sources_file(tmp_path, on, off)
        r = await cli(["sources", "reset", "gone"], env)
        assert r.returncode == 2 and "no source named 'gone'" in r.stderr, r.stdout + r.stderr
        r = await cli(["sources", "reset", "off"], env)
        assert r.returncode == 0 and "not fetched until enabled" in r.stdout, r.stdout + r.stderr
        # A collector applies the file (listing does not): nothing was due, nothing fetched.
        assert (await cli(["collect", "--once"], env)).returncode == 0
        rows = await listed(env)
        assert set(rows) == {"on", "off", "gone"} and rows["off"]["next_check_at"] is None
        assert rows["on"]["next_check_at"] is not None
        # Removed, with stories stored: listed as retired, never due.
        assert (rows["gone"]["status"], rows["gone"]["next_check_at"]) == ("retired", None)
        assert site.requests == []


async def test_a_removed_source_is_listed_retired_and_its_stories_purged_on_purpose(
        cli_env, tmp_path):
    """A source removed from the file vanished from `sources list` while its stories stayed
    and were served, and nothing but SQL removed them."""
    async with LocalSite() as site:
        site.route("/gone.xml", body=RSS, content_type="application/rss+xml")
        site.route("/on.xml", body=RSS.replace("news.example/", "on.example/"),
                   content_type="application/rss+xml")
        on, gone = source("on", site.url("/on.xml")), source("gone", site.url("/gone.xml"))
        env = {**cli_env, "TIDINGS_SOURCES_FILE": str(sources_file(tmp_path, on, gone))}
        r = await cli(["collect", "--once"], env)
        assert r.returncode == 0, r.stderr
        r = await cli(["sources", "purge", "gone"], env)
        assert r.returncode == 2 and "remove it from the file first" in r.stderr, r.stderr
        sources_file(tmp_path, on)
        # Until a collector applies the edit, the database still holds it configured.
        r = await cli(["sources", "purge", "gone"], env)
        assert r.returncode == 2 and "still configured in the database" in r.stderr, r.stderr
        assert (await cli(["collect", "--once"], env)).returncode == 0
        r = await cli(["sources", "list"], env)
        assert r.returncode == 0, r.stderr
        line = next(x for x in r.stdout.splitlines() if x.startswith("gone "))
        assert "retired " in line and " 2 " in line, r.stdout
        row = (await listed(env))["gone"]
        assert (row["status"], row["stories"]) == ("retired", 2) and row["retired_at"], row
        # A typo of a retired or a configured source is named, not read as an empty source.
        r = await cli(["sources", "purge", "gnoe"], env)
        assert r.returncode == 2 and "(did you mean 'gone'?)" in r.stderr, r.stderr
        r = await cli(["sources", "purge", "onn"], env)
        assert r.returncode == 2 and "(did you mean 'on'?)" in r.stderr, r.stderr
        r = await cli(["sources", "purge", "never-was"], env)
        assert r.returncode == 2 and "did you mean" not in r.stderr, r.stderr
        assert "no stories stored under source 'never-was'" in r.stderr
        # A dry run first: counted, nothing removed.
        r = await cli(["sources", "purge", "gone"], env)
        assert r.returncode == 0 and "2 stories would be removed" in r.stdout, r.stdout + r.stderr
        assert (await listed(env))["gone"]["stories"] == 2
        r = await cli(["sources", "purge", "gone", "--yes"], env)
        assert r.returncode == 0 and "2 stories removed" in r.stdout, r.stdout + r.stderr
        assert set(await listed(env)) == {"on"}
        r = await cli(["export", "-"], env)
        assert "on.example" in r.stdout and "news.example" not in r.stdout, r.stdout
        r = await cli(["sources", "purge", "gone", "--yes"], env)
        assert r.returncode == 2 and "no stories stored under source 'gone'" in r.stderr


async def test_commands_run_with_another_sources_file_change_no_source(cli_env, tmp_path):
    """`sources list` (and `reset`, `purge`) synced the sources file they were given: run
    with another one (TIDINGS_SOURCES_FILE, an empty file) against the same database, it
    retired every source that file did not name, and `collect`/`run` with the real file then
    kept them retired, blaming "another machine's sources.toml". Only collectors apply it."""
    async with LocalSite() as site:
        for n in ("on", "also"):
            site.route(f"/{n}.xml", body=RSS.replace("news.example/", f"{n}.example/"),
                       content_type="application/rss+xml")
        real = sources_file(tmp_path, source("on", site.url("/on.xml")),
                            source("also", site.url("/also.xml")))
        env = {**cli_env, "TIDINGS_SOURCES_FILE": str(real)}
        assert (await cli(["collect", "--once"], env)).returncode == 0
        other = tmp_path / "other"
        other.mkdir()
        other_env = {**cli_env, "TIDINGS_SOURCES_FILE": str(sources_file(
            other, source("on", site.url("/on.xml"), weight=2.0),
            source("extra", "http://127.0.0.1:9/extra.xml")))}
        r = await cli(["sources", "list"], other_env)
        assert r.returncode == 0, r.stderr
        rows = {line.split()[0]: line.split() for line in r.stdout.splitlines()[1:]}
        # The database's sources as they are, the other file's new one pending beside them.
        assert [rows[n][1] for n in ("also", "extra", "on")] == ["ok", "pending", "ok"], r.stdout
        assert rows["on"][4] == "1", r.stdout  # its weight as applied, not the other file's
        (note,) = [x for x in r.stderr.splitlines() if x.startswith("tidings: note: ")]
        assert (f"{other / 'sources.toml'} differs from the database (new in the file: extra; "
                "edited in the file: on; configured but not in the file: also)") in note, note
        for args in (["sources", "reset", "on"], ["sources", "purge", "also"],
                     ["sources", "list", "--json"]):
            await cli(args, other_env)
        site.reset_log()
        r = await cli(["collect", "--once"], env)
        assert r.returncode == 0 and "sources.stale" not in r.stderr, r.stderr
        rows = await listed(env)
        assert {n: (row["status"], row["weight"]) for n, row in rows.items()} == {
            "on": ("ok", 1.0), "also": ("ok", 1.0)}, rows
        assert [row["stories"] for row in rows.values()] == [2, 2]
        # `reset on` cleared its schedule in the database: the one write asked for.
        assert [p for _, p, _ in site.requests] == ["/on.xml"]


async def test_sources_check_of_a_full_text_feed_counts_every_usable_item(cli_env, tmp_path):
    """It printed "6 items, 3 usable" for a feed whose 6 items are all usable: only the
    3 read in full as a sample were counted."""
    page = ("<html><head><title>{t}</title></head><body><article><h1>{t}</h1>"
            + "<p>The council met on Tuesday to debate the harbour plan and its costs.</p>" * 20
            + "</article></body></html>")
    async with LocalSite() as site:
        for i in range(6):
            site.route(f"/a/{i}", body=page.format(t=f"Harbour {i}"), content_type="text/html")
        items = "".join(f"<item><title>Story {i}</title><link>{site.url(f'/a/{i}')}</link></item>"
                        for i in range(6))
        site.route("/ft.xml", body=f'<rss version="2.0"><channel><title>FT</title>{items}</channel></rss>',
                   content_type="application/rss+xml")
        path = sources_file(tmp_path, source("ft", site.url("/ft.xml"), full_text=True))
        r = await cli(["sources", "check", "ft"], {**cli_env, "TIDINGS_SOURCES_FILE": str(path)})
        assert r.returncode == 0, r.stderr
        assert "ft: feed 'FT', 6 items, 6 usable, 3 read in full as a sample (nothing stored)" in r.stdout, r.stdout


def _sources(db) -> dict[str, tuple]:
    """name -> (lease_owner, last_check_at) as the collector's SQLite file holds them."""
    try:
        with sqlite3.connect(db, timeout=30) as con:
            return {r[0]: r[1:] for r in con.execute(
                "SELECT name, lease_owner, last_check_at FROM sources")}
    except sqlite3.Error:  # not created or migrated yet
        return {}


@pytest.mark.parametrize(("command", "sig", "status", "says"), [
    (["collect", "--once"], signal.SIGTERM, 128 + signal.SIGTERM, "tidings: stopped by SIGTERM"),
    # Ctrl-C said nothing where SIGTERM says its line: one line for both.
    (["collect", "--once"], signal.SIGINT, 130, "tidings: stopped by SIGINT (Ctrl-C)"),
    (["collect"], signal.SIGTERM, 0, None),
])
async def test_an_interrupted_collect_hands_back_the_sources_it_had_not_fetched(
        cli_env, tmp_path, command, sig, status, says):
    """Interrupted mid-round, a collector kept its claims on the sources it was fetching, so
    the next `collect --once` (or another collector) skipped them until the lease ran out
    (`collect.lease_s`, 5 min): "0 sources". Now it hands them back, as `index` does."""
    db = tmp_path / "data" / "tidings.db"
    async with LocalSite() as site:
        site.route("/fast.xml", body=RSS, content_type="application/rss+xml")
        site.route("/stall.xml", body=RSS.replace("news.example", "other.example"), delay_s=3600,
                   content_type="application/rss+xml")
        path = sources_file(tmp_path, source("fast", site.url("/fast.xml")),
                            source("stall", site.url("/stall.xml")))
        # The stalled fetch must still be under way when the signal comes, however slow the
        # machine: no timeout of its own ends it first.
        env = {**cli_env, "TIDINGS_SOURCES_FILE": str(path),
               "TIDINGS_COLLECT_TOTAL_TIMEOUT_S": "3600"}
        proc = subprocess.Popen([*TIDINGS, *command], cwd=REPO, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            # Mid-round: one source fetched and recorded, the other's fetch stalled.
            deadline = time.monotonic() + 60
            while not (_sources(db).get("fast", (None, None))[1]
                       and "/stall.xml" in site.paths_requested()):
                assert proc.poll() is None and time.monotonic() < deadline, proc.poll()
                await asyncio.sleep(0.05)
            held = _sources(db)
            assert held["stall"][0] is not None and held["fast"][0] is None, held
            proc.send_signal(sig)
            _, err = await asyncio.to_thread(proc.communicate, timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == status, err
        assert "Traceback" not in err, err
        if says is not None:
            assert err.strip() == says, err
        assert _sources(db)["stall"][0] is None
        # The next round fetches the stalled source at once; the fetched one is not due.
        site.route("/stall.xml", body=RSS.replace("news.example", "other.example"),
                   content_type="application/rss+xml")
        r = await cli(["collect", "--once"], env)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0] == "ok     stall: 2 items, 2 new, 0 updated", r.stdout
        assert lines[1].startswith("1 source, 2 new stories, 0 failed"), r.stdout  # not "1 sources"


async def test_collect_once_exits_1_when_every_source_failed(cli_env, tmp_path):
    """`collect --once` exited 0 when every source failed (the network down): a cron job
    reported success. Some failures among successes are a normal round (exit 0)."""
    async with LocalSite() as site:
        site.route("/rss.xml", body=RSS, content_type="application/rss+xml")
        site.route("/gone.xml", status=410)
        env = {**cli_env, "TIDINGS_SOURCES_FILE": str(sources_file(
            tmp_path, source("good", site.url("/rss.xml")), source("bad", site.url("/gone.xml"))))}
        r = await cli(["collect", "--once"], env)
        assert r.returncode == 0 and "1 failed" in r.stdout, r.stdout + r.stderr
        r = await cli(["collect", "--once", "--source", "bad"], env)
        assert r.returncode == 1 and "error  bad:" in r.stdout, r.stdout + r.stderr
        assert "Traceback" not in r.stderr


async def test_sources_check_of_a_failing_source_exits_1_not_the_usage_status(cli_env, tmp_path):
    """A source that answers 410 or no feed made `sources check` exit 2, the status of a
    typo in the command: a script could not tell a feed that is down from a wrong name.
    Its failure is 1, as `collect --source` gives it; a name no source has stays 2."""
    async with LocalSite() as site:
        site.route("/gone.xml", status=410)
        site.route("/page", body="<html><body><p>No feed here</p></body></html>",
                   content_type="text/html")
        env = {**cli_env, "TIDINGS_SOURCES_FILE": str(sources_file(
            tmp_path, source("gone", site.url("/gone.xml")), source("page", site.url("/page"))))}
        for name, says in (("gone", "410"), ("page", "expected a feed")):
            r = await cli(["sources", "check", name], env)
            assert r.returncode == 1, (name, r.stdout + r.stderr)
            assert r.stderr.startswith(f"tidings: error: {name}: ") and says in r.stderr, r.stderr
            assert "Traceback" not in r.stderr and r.stdout == ""
        r = await cli(["sources", "check", "nameless"], env)
        assert r.returncode == 2 and "no source named 'nameless'" in r.stderr


def test_a_name_no_source_has_is_refused_alike_by_every_command(cli_env, tmp_path):
    """`export --source bbc-wrold` exported 0 stories with exit 0, and only `purge` named
    the source meant: a name that names nothing is exit 2 with the near name, whichever
    command took it. `export` also knows the names stories are stored under (retired
    sources, an import's own) and a source the file names that has nothing stored yet."""
    path = sources_file(tmp_path, source("bbc-world", "http://127.0.0.1:9/feed.xml"))
    env = {**cli_env, "TIDINGS_SOURCES_FILE": str(path)}
    story = tmp_path / "s.jsonl"
    story.write_text(json.dumps({"url": "https://wire.example/a", "title": "Talks resume",
                                 "source": "wire"}) + "\n", encoding="utf-8")
    # An import makes the database without syncing the file to it (only collectors apply
    # the file): the file alone names bbc-world.
    assert run_cli(["import", str(story), "--no-index"], env).returncode == 0
    r = run_cli(["export", "-", "--source", "bbc-world"], env)
    assert r.returncode == 0 and r.stdout == "" and "exported 0 stories" in r.stderr, r.stderr
    for args, meant in ((["collect", "--source", "bbc-wrold"], "bbc-world"),
                        (["sources", "check", "bbc-wrold"], "bbc-world"),
                        (["sources", "reset", "bbc-wrold"], "bbc-world"),
                        (["export", "-", "--source", "bbc-wrold"], "bbc-world"),
                        (["export", "-", "--source", "wrie"], "wire")):
        r = run_cli(args, env)
        assert r.returncode == 2 and r.stdout == "", (args, r.stdout + r.stderr)
        [line] = r.stderr.splitlines()
        assert line.startswith(f"tidings: error: no source named '{args[-1]}' in {path}"), line
        assert line.endswith(f"(did you mean '{meant}'?)"), line
    r = run_cli(["export", "-", "--source", "Wire"], env)  # names in any case, as before
    assert r.returncode == 0 and "exported 1 story" in r.stderr, r.stderr


async def test_sources_check_says_no_title_and_counts_repeated_links(cli_env, tmp_path):
    """A sitemap has no title: the line read "news: sitemap '', 3 items, 2 usable", an
    empty quote and an item missing without a word (the sitemap lists a link twice)."""
    urls = "".join(f"<url><loc>http://news.example/{n}</loc><news:news><news:title>{n} story"
                   "</news:title><news:publication_date>2026-11-25T08:00:00Z"
                   "</news:publication_date></news:news></url>" for n in ("one", "two", "one"))
    async with LocalSite() as site:
        site.route("/news.xml", content_type="application/xml", body=(
            '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
            f'xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">{urls}</urlset>'))
        path = sources_file(tmp_path, source("news", site.url("/news.xml"), kind="sitemap"))
        r = await cli(["sources", "check", "news"], {**cli_env, "TIDINGS_SOURCES_FILE": str(path)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith(
        "news: sitemap (no title), 3 items, 2 usable, 1 repeated link (nothing stored)"), r.stdout


async def test_sources_check_tries_a_feed_url_before_it_is_added(cli_env, tmp_path):
    """An operator trying a feed had to add it to sources.toml first (`sources check` took
    names only): now a URL is checked as it is, nothing stored, and the table to paste is
    printed; a site's page names the feeds it links."""
    from aggregator.sources import load_sources

    async with LocalSite() as site:
        site.route("/politics.xml", body=RSS, content_type="application/rss+xml")
        site.route("/home", content_type="text/html", body=(
            '<html><head><link rel="alternate" type="application/rss+xml" href="/politics.xml">'
            "</head><body><p>Welcome</p></body></html>"))
        path = sources_file(tmp_path, source("other", site.url("/other.xml")))
        env = {**cli_env, "TIDINGS_SOURCES_FILE": str(path)}
        r = await cli(["sources", "check", site.url("/politics.xml")], env)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "feed 'Moved', 2 items, 2 usable (nothing stored)" in r.stdout, r.stdout
        assert "Parliament votes on the budget" in r.stdout
        table = r.stdout.split(f"To collect it, add to {path}:")[1].strip()
        assert table.startswith("[[source]]") and site.url("/politics.xml") in table
        pasted = tmp_path / "pasted.toml"
        pasted.write_text(table.replace('category = ""', 'category = "politics"'), encoding="utf-8")
        [spec] = load_sources(pasted)
        # Named after the feed's title: its host, an IP address, named it "127-0-0-1".
        assert spec.url == site.url("/politics.xml") and spec.name == "moved"
        assert r.stdout.startswith("moved: feed 'Moved'"), r.stdout
        r = await cli(["sources", "check", site.url("/home")], env)
        assert r.returncode != 0 and site.url("/politics.xml") in r.stderr, r.stdout + r.stderr
        assert set(await listed(env)) == {"other"}
        r = await cli(["sources", "check", "not-a-source"], env)
        assert r.returncode == 2 and "no source named 'not-a-source'" in r.stderr


async def test_sources_check_makes_nothing_in_a_mistyped_data_dir(cli_env, tmp_path):
    """A dry run stores nothing, yet it made the data dir, an empty database and a machine id
    wherever TIDINGS_DATA_DIR pointed. The name it suggests is one the file does not have."""
    missing = tmp_path / "tidngs"
    async with LocalSite() as site:
        site.route("/politics.xml", body=RSS, content_type="application/rss+xml")
        path = sources_file(tmp_path, source("moved", site.url("/other.xml")))
        env = {**cli_env, "TIDINGS_SOURCES_FILE": str(path), "TIDINGS_DATA_DIR": str(missing)}
        r = await cli(["sources", "check", site.url("/politics.xml")], env)
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.startswith("moved-2: feed 'Moved', 2 items, 2 usable"), r.stdout
        assert 'name = "moved-2"' in r.stdout, r.stdout
        r = await cli(["sources", "check", "moved"], env)  # a named source, down
        assert r.returncode == 1 and "moved: HTTP 404" in r.stderr, r.stdout + r.stderr
    assert not missing.exists()


async def test_sources_check_of_a_url_the_file_reads_checks_that_source(cli_env, tmp_path):
    """`sources check URL` of a feed a source already reads tried it as a new one: its rules
    left out, and a table to paste that would have read the feed twice a round."""
    async with LocalSite() as site:
        site.route("/rss.xml", body=RSS, content_type="application/rss+xml")
        path = sources_file(tmp_path, source("off", site.url("/rss.xml"), enabled=False),
                            source("ruled", site.url("/rss.xml"), block=r"\bminister\b"))
        env = {**cli_env, "TIDINGS_SOURCES_FILE": str(path)}
        r = await cli(["sources", "check", site.url("/rss.xml#top")], env)
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.startswith("ruled: feed 'Moved', 2 items, 1 usable, 1 left out by rules"), r.stdout
        assert "To collect it" not in r.stdout and "[[source]]" not in r.stdout
        assert "checking source 'ruled'" in r.stderr and "(so does 'off')" in r.stderr, r.stderr


async def test_sources_check_and_collect_count_the_items_left_out_by_rules(cli_env, tmp_path):
    """A source's keep/block rules leave items out: `sources check` and `collect` say how
    many, so an operator sees a rule at work (or too greedy) before and after it collects;
    a bad rule is refused naming its file, line and key."""
    async with LocalSite() as site:
        site.route("/rss.xml", body=RSS, content_type="application/rss+xml")
        path = sources_file(tmp_path, source("ruled", site.url("/rss.xml"), block=r"\bminister\b"))
        env = {**cli_env, "TIDINGS_SOURCES_FILE": str(path)}
        r = await cli(["sources", "check", "ruled"], env)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "ruled: feed 'Moved', 2 items, 1 usable, 1 left out by rules (nothing stored)" in r.stdout, r.stdout
        assert "Parliament votes" in r.stdout and "Minister resigns" not in r.stdout
        r = await cli(["collect", "--once", "--source", "ruled"], env)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "ok     ruled: 2 items, 1 new, 0 updated, 1 left out by rules" in r.stdout, r.stdout
        row = (await listed(env))["ruled"]  # what leaves its items out is in plain sight
        assert (row["keep"], row["block"]) == (None, r"\bminister\b"), row

        sources_file(tmp_path, source("ruled", site.url("/rss.xml"), block="minister("))
        r = await cli(["sources", "check", "ruled"], env)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stdout + r.stderr
        assert r.stderr.startswith(f"tidings: error: {path}:5: source 'ruled' (#1): block is not a "
                                   "valid regular expression"), r.stderr
        assert "(key 'block')" in r.stderr


async def test_sources_list_shows_what_an_operator_tunes(cli_env, tmp_path):
    """The table had no kind, weight or interval (only `--json` showed them): an operator
    tuning sources read the file and the JSON side by side. They are columns now, and a
    source's error, which as a last column pushed rows past 130 columns, is on a line of
    its own under it, cut to the table's 100."""
    async with LocalSite() as site:
        site.route("/rss.xml", body=RSS, content_type="application/rss+xml")
        site.route("/gone.xml", status=410)
        long_name = "x" * 40
        site.route(f"/{long_name}.xml", status=404)
        path = sources_file(tmp_path,
                            source("tuned", site.url("/rss.xml"), weight=0.5, interval="2h"),
                            source("failing", site.url(f"/{long_name}.xml"), kind="feed",
                                   interval="1h30m"),
                            source("idle", site.url("/gone.xml"), enabled=False))
        env = {**cli_env, "TIDINGS_SOURCES_FILE": str(path)}
        r = await cli(["collect", "--once"], env)
        assert "ok     tuned" in r.stdout, r.stdout + r.stderr
        r = await cli(["sources", "list"], env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "KIND", "CATEGORY", "WEIGHT", "EVERY", "STORIES",
                                "LAST", "OK", "NEXT"], r.stdout
    rows = {line.split()[0]: line.split() for line in lines[1:] if not line.startswith(" ")}
    assert rows["tuned"][:7] == ["tuned", "ok", "feed", "politics", "0.5", "2h", "2"], r.stdout
    assert rows["failing"][:6] == ["failing", "error", "feed", "politics", "1", "1h30m"], r.stdout
    assert rows["idle"][:5] == ["idle", "disabled", "auto", "politics", "1"], r.stdout
    (err,) = [line for line in lines if line.startswith("  error: ")]
    assert lines[lines.index(err) - 1].startswith("failing ") and "404" in err, r.stdout
    assert max(len(line) for line in lines) <= 100, r.stdout


async def test_sources_list_shows_the_interval_the_schedule_will_use(cli_env, tmp_path):
    """Until its first fetch (and after an edit of its interval) EVERY showed the file's
    "1m", while the collector checks it no more often than [collect] min_interval_s (5m)."""
    path = sources_file(tmp_path, source("quick", "http://127.0.0.1:9/q.xml", interval="1m"),
                        source("slow", "http://127.0.0.1:9/s.xml", interval="2h"))
    env = {**cli_env, "TIDINGS_SOURCES_FILE": str(path)}
    await asyncio.to_thread(make_database, env)  # no collector has applied the file yet
    rows = await listed(env)
    assert (rows["quick"]["interval_s"], rows["slow"]["interval_s"]) == (300, 7200)
    r = await cli(["sources", "list"], env)
    line = next(x for x in r.stdout.splitlines() if x.startswith("quick "))
    assert line.split()[5] == "5m", r.stdout


def test_a_long_error_is_cut_to_the_width_of_the_table():
    from aggregator.store import SourceHealth
    from api.cli import sources_table

    row = SourceHealth("s", "https://e.org/f", "news", "feed", True, 1.0, "error", 0, None, None,
                       "HTTP 503 from https://e.org/" + "a" * 200, 4, None, 900)
    lines = sources_table([row]).splitlines()
    assert lines[2].startswith("  error: HTTP 503 from https://e.org/") and lines[2].endswith("aaa (x4)")
    assert "…" in lines[2] and len(lines[2]) == 100


def test_sources_list_says_at_a_glance_that_every_source_is_failing():
    """On a machine without DNS each of the 25 shipped sources showed its own error, and
    nothing said that the trouble was the machine, not the feeds."""
    from aggregator.store import SourceHealth
    from api.cli import sources_summary

    def row(name: str, status: str) -> SourceHealth:
        return SourceHealth(name, "https://e.org/f", "news", "feed", status != "disabled", 1.0,
                            status, 0, None, None, "DNS" if status == "error" else None,
                            1 if status == "error" else 0, None, 900)

    failing = [row(f"s{n}", "error") for n in range(25)]
    assert sources_summary([*failing, row("off", "disabled")]).splitlines() == [
        "25 enabled sources: 0 ok, 25 failing, 0 pending, 1 disabled",
        "warning: all 25 enabled sources are failing: is this machine's network (or DNS) down?"]
    assert sources_summary([*failing, row("fine", "ok")]) == (
        "26 enabled sources: 1 ok, 25 failing, 0 pending")
    assert sources_summary([row("new", "pending")]) == "1 enabled source: 0 ok, 0 failing, 1 pending"


def test_a_long_error_keeps_its_reason():
    """The shipped sources on a machine without DNS: each error ends with why, after the
    feed's URL, and the list cut it at the end ("Cannot co…"), leaving only the URL the row
    already names."""
    from aggregator.store import SourceHealth
    from api.cli import sources_table

    url = "https://feeds.bbci.co.uk/news/entertainment_and_arts/rss.xml"
    error = (f"ClientConnectorDNSError fetching {url}: Cannot connect to host "
             "feeds.bbci.co.uk:443 ssl:default [Domain name not found]")
    row = SourceHealth("bbc", url, "news", "auto", True, 1.0, "error", 0, None, None, error, 1,
                       None, 1800)
    err = sources_table([row]).splitlines()[2]
    assert err.startswith("  error: ClientConnectorDNSError") and len(err) <= 100, err
    assert err.endswith("ssl:default [Domain name not found]"), err


def test_a_retired_sources_stale_error_is_not_under_its_row():
    """A source removed from the file fetches nothing, yet `sources list` showed the error it
    last had under it, as if it were failing now. `--json` keeps it (the rows as stored)."""
    from datetime import UTC, datetime

    from aggregator.store import SourceHealth
    from api.cli import sources_table

    at = datetime(2026, 12, 1, tzinfo=UTC)
    failing = SourceHealth("live", "https://e.org/f", "news", "feed", True, 1.0, "error", 3, at,
                           None, "HTTP 404 Not Found from https://e.org/f", 2, at, 900)
    retired = SourceHealth("gone", "https://e.org/g", "news", "feed", True, 1.0, "retired", 5, at,
                           None, "HTTP 410 Gone from https://e.org/g", 3, None, 900, retired_at=at)
    lines = sources_table([failing, retired], now=at).splitlines()
    assert [line for line in lines if line.startswith("  error: ")] == [
        "  error: HTTP 404 Not Found from https://e.org/f (x2)"]
    assert lines[-1].startswith("gone ") and "retired" in lines[-1]


def test_a_disabled_sources_old_error_is_not_under_its_row():
    """A source the file disables fetches nothing, yet its last error stayed under its
    `disabled` row, read as a failure to fix now. `--json` keeps it."""
    from aggregator.store import SourceHealth
    from api.cli import sources_table

    at = datetime(2026, 12, 1, tzinfo=UTC)
    off = SourceHealth("off", "https://e.org/o", "news", "feed", False, 1.0, "disabled", 4, at,
                       None, "HTTP 503 Service Unavailable from https://e.org/o", 3, None, 900)
    lines = sources_table([off], now=at).splitlines()
    assert len(lines) == 2 and lines[1].split()[:2] == ["off", "disabled"], lines


def test_commands_that_read_the_sources_file_name_an_interval_below_the_minimum(cli_env, tmp_path):
    """`interval = "90s"` under the shipped min_interval_s (5 min) was raised in silence."""
    path = sources_file(tmp_path, source("fast", "https://news.example/feed.xml", interval="90s"))
    make_database(cli_env)
    r = run_cli(["sources", "list"], {**cli_env, "TIDINGS_SOURCES_FILE": str(path)})
    assert r.returncode == 0, r.stderr
    (line,) = [ln for ln in r.stderr.splitlines() if "sources.interval_raised" in ln]
    assert f"{path}:5: source 'fast' (#1): interval 1m30s is below [collect] min_interval_s (5m)" in line
    assert line.endswith("(key 'interval')"), line


async def test_sources_list_json_is_the_apis_listing(cli_env, tmp_path):
    """`sources list --json` wrote its times as `…+00:00` where `GET /v1/sources` writes
    `…Z` for the same rows: a script moving from one to the other compared strings that
    never matched. The same rows, field for field."""
    import httpx

    from aggregator.settings import load_settings
    from api.app import create_app
    from api.services import build

    path = sources_file(tmp_path, source("down", "http://127.0.0.1:9/feed.xml"),
                        source("idle", "http://127.0.0.1:9/idle.xml", enabled=False))
    env = {**cli_env, "TIDINGS_SOURCES_FILE": str(path)}
    await cli(["collect", "--once"], env)
    rows = list((await listed(env)).values())
    assert rows[0]["last_check_at"] is not None, rows
    settings = load_settings(REPO / "config" / "tidings.toml",
                             env={k: v for k, v in env.items() if k.startswith("TIDINGS_")})
    api = await build(settings, serve=True)
    try:
        transport = httpx.ASGITransport(app=create_app(api))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            items = (await http.get("/v1/sources")).json()["items"]
    finally:
        await api.close()
    assert rows == items


def test_a_missing_sources_file_names_the_setting_that_pointed_there(cli_env, tmp_path):
    """`TIDINGS_SOURCES_FILE=/srv/tidngs/sources.toml` said only "…: file not found": the
    operator looked for the typo in the settings file, not in the environment. As a missing
    database names TIDINGS_DATA_DIR, the error names the variable (or the settings line)."""
    missing = tmp_path / "tidngs" / "sources.toml"
    env = {**cli_env, "TIDINGS_SOURCES_FILE": str(missing)}
    for args in (["sources", "list"], ["collect", "--once"]):
        r = run_cli(args, env)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.strip() == (f"tidings: error: {missing}: file not found "
                                    f"(TIDINGS_SOURCES_FILE={missing})"), (args, r.stderr)
    settings = tmp_path / "tidings.toml"
    settings.write_text('# the sources\nsources_file = "tidngs/sources.toml"\n', encoding="utf-8")
    r = run_cli(["--config", str(settings), "sources", "list"], cli_env)
    assert r.returncode == 2 and r.stderr.strip() == (
        f"tidings: error: {missing}: file not found (sources_file in {settings}:2)"), r.stderr


def _article(title: str) -> bytes:
    words = " ".join(f"{title} was reported today by our correspondent, paragraph {i}." for i in range(20))
    return (f"<html><head><title>{title}</title></head><body><article><h1>{title}</h1>"
            f"<p>{words}</p><p>{words}</p></article></body></html>").encode()


async def test_failing_article_pages_are_listed_and_a_reset_reads_them(cli_env, tmp_path):
    """A full_text source whose article page answered 404 was "ok" in `sources list` and
    `--json`, nothing said of the page but the log's INFO lines; and `sources reset`, once
    the publisher mended it, left the page unread (its failed rounds kept, the sitemap's
    304 taken). Now the list names the failing pages, and a reset has them read."""
    async with LocalSite() as site:
        site.route("/post/good", body=_article("A good story"), content_type="text/html")
        site.route("/post/bad", status=404, body=b"no", content_type="text/html")
        urls = "".join(f"<url><loc>{site.url(p)}</loc></url>" for p in ("/post/good", "/post/bad"))
        site.route("/sitemap.xml", etag='"s1"', content_type="application/xml", body=(
            '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            f"{urls}</urlset>").encode())
        path = sources_file(tmp_path, source("sm", site.url("/sitemap.xml"), kind="sitemap",
                                             full_text=True))
        env = {**cli_env, "TIDINGS_SOURCES_FILE": str(path)}
        assert (r := await cli(["collect", "--once"], env)).returncode == 0, r.stderr
        row = (await listed(env))["sm"]
        assert (row["status"], row["stories"], row["failing_pages"]) == ("ok", 1, 1)
        r = await cli(["sources", "list"], env)
        assert "  pages: 1 article page not read at the last try (`tidings sources check sm` says why)" \
            in r.stdout.splitlines(), r.stdout

        site.route("/post/bad", body=_article("A mended story"), content_type="text/html")
        assert (r := await cli(["sources", "reset", "sm"], env)).returncode == 0, r.stderr
        assert (r := await cli(["collect", "--once"], env)).returncode == 0, r.stderr
        row = (await listed(env))["sm"]
        assert (row["status"], row["stories"], row["failing_pages"]) == ("ok", 2, 0)
        assert "pages:" not in (await cli(["sources", "list"], env)).stdout


async def test_collect_or_reset_of_a_source_another_collector_holds_names_its_claim(
        cli_env, tmp_path, db_url):
    """`collect --source NAME` while another collector held NAME's claim (fetching it, or
    killed with its lease still running) printed "0 sources, 0 new stories, 0 failed" and
    exited 0, as if the feed had nothing new. It names the claim and exits 1, and still never
    fetches beside the holder."""
    from aggregator.model import SourceSpec
    from aggregator.store import Store

    async with LocalSite() as site:
        feed = site.route("/feed.xml", body=b"<rss version='2.0'><channel><title>t</title>"
                                            b"</channel></rss>")
        url = site.url("/feed.xml")
        (tmp_path / "sources.toml").write_text(
            f'[[source]]\nname = "held"\nurl = "{url}"\ncategory = "politics"\n')
        store = Store(db_url)
        try:
            await store.migrate()
            await store.sync_sources([SourceSpec("held", url, "politics")])
            assert await store.claim_due_sources(datetime.now(UTC), owner="other-host:4242",
                                                 lease_s=300)
        finally:
            await store.close()
        env = {**cli_env, "TIDINGS_DATABASE_URL": db_url,
               "TIDINGS_SOURCES_FILE": str(tmp_path / "sources.toml")}
        r = await asyncio.to_thread(run_cli, ["collect", "--source", "held"], env)
        # A reset leaves the claim (no second fetch beside it), and says whose it is: "due
        # now" alone had the operator wait for a fetch that was up to `lease_s` away.
        reset = await asyncio.to_thread(run_cli, ["sources", "reset", "held"], env)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "claimed by another collector (other-host:4242)" in r.stderr
    assert "0 sources" not in r.stdout
    assert feed.hits == 0
    assert reset.returncode == 0, reset.stderr
    assert "claimed by a collector (other-host:4242) until" in reset.stdout
