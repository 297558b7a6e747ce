"""Backups of an SQLite deployment (`tidings backup DEST`, README "Backup and restore").

A backup is a new folder holding a consistent copy of the database, taken while `tidings run`
goes on writing, and the settings and sources files, which nothing else holds (a sources
file's rules, selectors and comments are not in the database). It appears whole: it is
written under a temporary name beside DEST and renamed when complete, so a backup cut short
(a full disk, a kill) never looks like one.

Not copied, because a start makes them again: the FAISS and lexical index files (a cache of
the vectors stored in the database; a start without them reloads every story, no
re-embedding) and the models exported from the bundled one (`data_dir/models`). Nor the
machine id: a restore elsewhere is another machine (README, Retention).

PostgreSQL has pg_dump; this is for the SQLite file only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aggregator.errors import ConfigError, TidingsError

DATABASE_NAME = "tidings.db"
SETTINGS_NAME = "tidings.toml"
SOURCES_NAME = "sources.toml"
MANIFEST_NAME = "backup.json"
# Pages copied per step of SQLite's backup: between steps the progress bar moves and a stop
# (Ctrl-C, SIGTERM) is seen. 1024 pages of 4 kB: a few ms each.
STEP_PAGES = 1024
# What the summary counts, as the operator checks a restore by them.
COUNTED = ("stories", "events", "readers", "takedowns", "sources")
PARTIAL = re.compile(r"\.(.+)\.(\d+)\.part")


class BackupStopped(Exception):
    """The copy was stopped between two steps (the command was interrupted)."""


@dataclass(frozen=True)
class BackupReport:
    path: Path
    size: int  # bytes of the database copy
    revision: str
    counts: dict[str, int]


def destination_problem(dest: Path) -> str | None:
    """Why no backup may be written at `dest`, else None. A backup is never written over
    anything: an earlier backup under that name is the one thing it must not destroy."""
    if dest.exists() or dest.is_symlink():
        return f"{dest} exists; a backup is never written over: give a new name (a date, say)"
    if not dest.parent.is_dir():
        return f"cannot write {dest}: no such folder {dest.parent}"
    return None


def partial_path(dest: Path, pid: int) -> Path:
    """The temporary folder a backup to `dest` is written in by process `pid`."""
    return dest.with_name(f".{dest.name}.{pid}.part")


def write_backup(database: Path, dest: Path, files: dict[str, Path | None], *,
                 progress: Callable[[int, int], None] | None = None,
                 stop: threading.Event | None = None) -> BackupReport:
    """Back `database` up into the new folder `dest`, with `files` (name in the backup ->
    file to copy, None or a missing file: left out). Raises OSError for what the disk under
    `dest` refused, TidingsError for a database that cannot be copied."""
    tmp = partial_path(dest, os.getpid())
    # 0700: the copy holds readers' events, the settings file may hold the API key.
    os.mkdir(tmp, 0o700)
    try:
        copy = tmp / DATABASE_NAME
        revision, counts = copy_database(database, copy, progress=progress, stop=stop)
        check_copy(copy)
        copied = {}
        for name, path in files.items():
            if path is not None and path.is_file():
                shutil.copyfile(path, tmp / name)
                copied[name] = str(path)
        manifest = {"created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "schema_revision": revision, "counts": counts,
                    "from": {DATABASE_NAME: str(database), **copied}}
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        for entry in tmp.iterdir():
            _fsync(entry)
        _fsync(tmp)
        if dest.exists():  # made while this copy ran: renaming would replace an empty folder
            raise FileExistsError(f"{dest} exists; a backup is never written over")
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync(dest.parent)
    return BackupReport(dest, copy_size(dest), revision, counts)


def copy_size(dest: Path) -> int:
    return (dest / DATABASE_NAME).stat().st_size


def copy_database(source: Path, target: Path, *,
                  progress: Callable[[int, int], None] | None = None,
                  stop: threading.Event | None = None) -> tuple[str, dict[str, int]]:
    """Copy `source` to the new file `target` with SQLite's online backup, and return the
    schema revision and row counts of what was copied.

    One read transaction holds the whole copy: in WAL mode the writers go on meanwhile (their
    commits land in the -wal file, which the next checkpoint after the copy folds back), and
    the copy is the database as of the transaction's first read, whatever they write. Without
    it each step of the backup would read the database afresh, and SQLite restarts a backup
    whose source changed between steps: under a steady stream of readers' events, for ever.
    A file copy (`cp`) is not a backup of a live WAL database at all: the last commits are in
    the -wal file, and the main file may be caught mid-checkpoint."""
    # Read-only: the backup never writes to the live database, and cannot create one where
    # the settings point at a mistyped path (the caller checked the file is there).
    src = sqlite3.connect(f"{source.as_uri()}?mode=ro", uri=True, isolation_level=None,
                          timeout=30)
    try:
        try:
            src.execute("BEGIN")
            revision, counts = _snapshot_facts(src, source)  # the first read starts the snapshot
            dst = sqlite3.connect(target, isolation_level=None)
            try:
                src.backup(dst, pages=STEP_PAGES, progress=_stepper(progress, stop))
            finally:
                dst.close()
            src.execute("COMMIT")
        except sqlite3.Error as e:
            raise _copy_error(e, source, target) from None
    finally:
        src.close()
    return revision, counts


def _snapshot_facts(conn: sqlite3.Connection, source: Path) -> tuple[str, dict[str, int]]:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "alembic_version" not in tables:
        raise ConfigError(f"{source} holds no Tidings database (no schema revision in it)")
    revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608 - our names
              for t in COUNTED if t in tables}
    return (revision[0] if revision else ""), counts


def _stepper(progress, stop):
    def step(_status: int, remaining: int, total: int) -> None:
        if stop is not None and stop.is_set():
            raise BackupStopped  # raised in the callback, it aborts the backup (sqlite3)
        if progress is not None:
            progress(total - remaining, total)
    return step


def _copy_error(e: sqlite3.Error, source: Path, target: Path) -> Exception:
    """SQLite's error during the copy as the command reports it: the disk under the backup
    full, as the OSError a file write gives (exit 1, "No space left on device"); a source
    that is no database, the settings' to fix; anything else, the copy's failure."""
    name = getattr(e, "sqlite_errorname", "")
    if name == "SQLITE_FULL":
        import errno

        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
    if name == "SQLITE_NOTADB":
        return ConfigError(f"{source} is not an SQLite database")
    return TidingsError(f"backup of {source} failed: {e}")


def check_copy(copy: Path) -> None:
    """SQLite's quick check of the copy, so that a backup said to be made can be opened. It
    reads the copy in its own journal mode (WAL, as the source's): the -wal and -shm files this
    makes go when the connection closes."""
    conn = sqlite3.connect(copy, isolation_level=None)
    try:
        result = [r[0] for r in conn.execute("PRAGMA quick_check")]
    except sqlite3.Error as e:
        raise _copy_error(e, copy, copy) from None
    finally:
        conn.close()
    if result != ["ok"]:
        raise TidingsError(f"the copy of the database failed SQLite's check: {'; '.join(result[:3])}")


def _fsync(path: Path) -> None:
    """Flush a file or a folder's entries to disk: a backup said to be written survives a
    power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
