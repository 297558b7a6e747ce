"""A mistyped data dir or database URL: the commands that only read (or change what is stored)
refuse it in one line and make nothing there, where they made an empty database and answered
as if the corpus were empty; the commands that bring stories in still make it. The real CLI
entry, in-process (tests/e2e runs the subprocess), on real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from aggregator.errors import NoDatabase
from aggregator.settings import load_settings
from aggregator.store import Store
from api import cli
from api.services import build, no_database_message

REFUSING = [
    ["search", "budget"], ["related", "--id", "5"], ["related", "--text", "budget talks"],
    ["stats"], ["export", "-"], ["sources", "reset", "bbc-politics"],
    ["sources", "purge", "gone"], ["retention", "--dry-run"], ["retention"],
    ["takedown", "list"], ["takedown", "add", "https://news.example/a"],
    ["takedown", "lift", "https://news.example/a"], ["index"], ["index", "--rebuild"],
]


@pytest.fixture
def mistyped(tmp_path, monkeypatch):
    """TIDINGS_DATA_DIR naming a folder that does not exist."""
    missing = tmp_path / "tidngs"
    monkeypatch.setenv("TIDINGS_DATA_DIR", str(missing))
    monkeypatch.setenv("TIDINGS_INDEX_EMBEDDER", "hash")
    monkeypatch.setenv("TIDINGS_LOG_LEVEL", "warning")
    return missing


@pytest.mark.parametrize("args", REFUSING, ids=" ".join)
def test_a_read_command_refuses_a_data_dir_without_a_database(args, mistyped, tmp_path, capsys):
    assert cli.main(args) == cli.EXIT_USAGE
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == (f"tidings: error: no database at {mistyped}/tidings.db (TIDINGS_DATA_DIR="
                       f"{mistyped}): run `tidings run`, `tidings collect` or `tidings import` "
                       "first, or check the data dir\n")
    assert list(tmp_path.iterdir()) == []  # no folder, no database, no machine-id


def test_sources_list_without_a_database_lists_the_file_pending_and_makes_nothing(
        mistyped, tmp_path, capsys):
    """A new install's first look at its sources, before any collector ran: refused, it read
    as if the shipped config were broken."""
    from aggregator.settings import load_settings
    from aggregator.sources import load_sources

    names = sorted(s.name for s in load_sources(load_settings().sources_file) if s.enabled)
    assert cli.main(["sources", "list"]) == 0
    out = capsys.readouterr()
    assert out.err.startswith(f"tidings: note: no database at {mistyped}/tidings.db ")
    assert out.err.rstrip().endswith("all pending")
    rows = {line.split()[0]: line for line in out.out.splitlines()[1:] if line.strip()}
    assert names and all("pending" in rows[n] for n in names)
    assert list(tmp_path.iterdir()) == []


def test_an_import_still_makes_the_database_and_the_readers_then_answer(mistyped, tmp_path, capsys):
    empty = tmp_path / "none.jsonl"
    empty.write_text("", encoding="utf-8")
    assert cli.main(["import", str(empty), "--no-index"]) == 0
    assert (mistyped / "tidings.db").is_file()
    assert cli.main(["stats", "--days", "1"]) == 0
    assert "total" in capsys.readouterr().out


def test_the_line_names_the_setting_that_placed_the_database(tmp_path):
    (tmp_path / "tidings.toml").write_text('data_dir = "tidngs"\n', encoding="utf-8")
    by_file = load_settings(tmp_path / "tidings.toml", env={})
    assert no_database_message(by_file) == (
        f"no database at {tmp_path}/tidngs/tidings.db (data_dir in {tmp_path}/tidings.toml:1): "
        "run `tidings run`, `tidings collect` or `tidings import` first, or check the data dir")
    url = f"sqlite:///{tmp_path}/old/tidings.db"
    by_url = load_settings(tmp_path / "tidings.toml", env={"TIDINGS_DATABASE_URL": url})
    assert no_database_message(by_url).startswith(
        f"no database at {tmp_path}/old/tidings.db (TIDINGS_DATABASE_URL): ")
    assert no_database_message(by_url).endswith("or check database_url")


async def test_an_empty_postgresql_database_is_refused_and_left_empty(pg_url, tmp_path):
    """PostgreSQL's analogue of the missing file: a database without Tidings' tables (a
    mistyped database name on a server where it exists empty). The readers migrated it."""
    settings = load_settings(None, env={"TIDINGS_DATABASE_URL": pg_url,
                                        "TIDINGS_DATA_DIR": str(tmp_path / "data")})
    with pytest.raises(NoDatabase, match=r"^an empty database at .*, without Tidings' tables "
                                         r"\(TIDINGS_DATABASE_URL\): .* or check database_url$"):
        await build(settings, create_database=False)
    assert list(tmp_path.iterdir()) == []  # nor the data dir: it was made before the refusal
    store = Store(pg_url)
    try:
        assert await store.migrate(create=False) is None  # still without tables
        assert await store.migrate() is None  # made now, as `collect` makes it
        svc = await build(settings, create_database=False)
        await svc.close()
        assert (tmp_path / "data").is_dir()  # a reader's, once there is a database
    finally:
        await store.close()


def test_an_empty_sqlite_file_is_refused_too(tmp_path):
    (tmp_path / "tidings.db").write_bytes(b"")
    settings = load_settings(None, env={"TIDINGS_DATA_DIR": str(tmp_path)})
    with pytest.raises(NoDatabase, match=r"^an empty database at "):
        asyncio.run(build(settings, create_database=False))


async def test_a_database_file_deleted_under_a_running_process_is_reported_at_every_check(tmp_path):
    """The connections opened before the `rm` kept reading the deleted file, and each new one
    made an empty database at the path: /healthz said ok or 503 by the connection it was
    handed, and the metrics' database_up alike."""
    from api.jobhealth import health
    from api.metrics import Metrics

    settings = load_settings(None, env={"TIDINGS_DATA_DIR": str(tmp_path),
                                        "TIDINGS_INDEX_EMBEDDER": "hash"})
    svc = await build(settings)
    metrics = Metrics(api=False)
    metrics.watch(svc)
    try:
        assert (await health(svc))[1] == 200
        (tmp_path / "tidings.db").unlink()
        for _ in range(3):  # old connections in the pool answered each of these "ok"
            body, status = await health(svc)
            assert (status, body["database"], body["status"]) == (503, False, "degraded")
            assert b"tidings_database_up 0.0" in await metrics.scrape(svc)
    finally:
        await svc.close()
