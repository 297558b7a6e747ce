"""The SQLite copy of `tidings backup` (aggregator/backup.py) on real WAL databases, with a
writer committing in another connection all through the copy."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from aggregator import backup
from aggregator.errors import ConfigError


def _database(path, rows: int = 4000) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE alembic_version (version_num TEXT)")
    db.execute("INSERT INTO alembic_version VALUES ('0021')")
    db.execute("CREATE TABLE stories (id INTEGER PRIMARY KEY, pair INTEGER, body TEXT)")
    db.executemany("INSERT INTO stories (pair, body) VALUES (?, ?)",
                   [(i // 2, "x" * 400) for i in range(rows)])
    db.commit()
    db.close()


def test_the_copy_is_one_moment_of_a_database_written_all_through_it(tmp_path, monkeypatch):
    """Every commit of the writer adds two rows: a copy that caught one without the other, or
    rows of commits made after it began, is no moment of the database. One page a step makes
    the copy long and lets the writer commit between steps (a step-by-step backup without a
    read transaction around it starts again at each such commit)."""
    source = tmp_path / "tidings.db"
    _database(source)
    monkeypatch.setattr(backup, "STEP_PAGES", 1)
    done = threading.Event()
    commits = [0]

    def write() -> None:
        db = sqlite3.connect(source, timeout=30)
        while not done.is_set():
            with db:
                db.executemany("INSERT INTO stories (pair, body) VALUES (?, ?)",
                               [(-commits[0], "y" * 400)] * 2)
            commits[0] += 1
        db.close()

    seen = []  # the writer's commits at each step of the copy
    writer = threading.Thread(target=write)
    writer.start()
    try:
        revision, counts = backup.copy_database(source, tmp_path / "copy.db",
                                                progress=lambda done_, total: seen.append(commits[0]))
    finally:
        done.set()
        writer.join()
    assert seen[0] < seen[-1], "the writer made no commit during the copy: nothing was tested"
    copy = sqlite3.connect(tmp_path / "copy.db")
    assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert copy.execute("SELECT count(*) FROM stories").fetchone()[0] == counts["stories"]
    assert copy.execute("SELECT count(*) FROM stories GROUP BY pair HAVING count(*) != 2").fetchall() == []
    assert revision == "0021" and counts["stories"] < 4000 + 2 * commits[0]
    copy.close()


def test_a_stopped_backup_leaves_no_folder(tmp_path):
    source = tmp_path / "tidings.db"
    _database(source)
    stop = threading.Event()
    stop.set()  # Ctrl-C before the first step's end
    dest = tmp_path / "b"
    with pytest.raises(backup.BackupStopped):
        backup.write_backup(source, dest, {}, stop=stop)
    # The source's -wal and -shm (a reader's, in WAL mode) beside it, and nothing else.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tidings.db", "tidings.db-shm", "tidings.db-wal"]


def test_a_database_without_tidings_schema_is_refused_before_any_copy(tmp_path):
    source = tmp_path / "other.db"
    sqlite3.connect(source).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(ConfigError, match="holds no Tidings database"):
        backup.write_backup(source, tmp_path / "b", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(ConfigError, match="is not an SQLite database"):
        backup.write_backup(tmp_path / "junk.db", tmp_path / "b", {})
    assert not (tmp_path / "b").exists()


def test_destination_problems(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    assert "exists" in backup.destination_problem(tmp_path / "file")
    assert "exists" in backup.destination_problem(tmp_path / "link")  # dangling, still in the way
    assert "no such folder" in backup.destination_problem(tmp_path / "no" / "b")
    assert backup.destination_problem(tmp_path / "new") is None
