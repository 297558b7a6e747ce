"""This deployment's machine id: a random UUID kept in `data_dir/machine-id`, created once.

It names "this machine" where the host name cannot: Docker names a container by its id and
Kubernetes a pod by its rollout, so a recreated container saw its own earlier retention run
as another machine's (api.runner.retention_agrees). It decides nothing by itself and must
never fail a start: a data dir it cannot read or write leaves the process without one
(None), and the callers fall back to the host name, as before the id.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from pathlib import Path

from api.filewrite import write_beside

log = logging.getLogger("tidings")

MACHINE_ID_FILE = "machine-id"


def machine_id(data_dir: Path) -> str | None:
    """The id in `data_dir/machine-id`, written there first if there is none; None where the
    data dir is read-only (or the file is not an id), with a line in the log saying why.

    Two processes starting on a fresh data dir at once both end with the id of the first
    to write it: each writes its own beside the file and links it in, which fails if the
    file is there, so no process keeps an id the file no longer holds."""
    path = data_dir / MACHINE_ID_FILE
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        log.info("machine_id.unreadable: %s: %s; this process goes by its host name", path,
                 e.strerror)
        return None
    try:
        _create(path)
        return _read(path)
    except OSError as e:  # a read-only data dir (a replica's volume), no permission, disk full
        log.info("machine_id.not_written: %s: %s; this process goes by its host name", path,
                 e.strerror)
        return None


def _read(path: Path) -> str | None:
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        return str(uuid.UUID(text))
    except ValueError:  # cut short by a crash while it was written (see `_create`), or edited
        log.warning("machine_id.invalid: %s holds no UUID (%r); this process goes by its host "
                    "name until the file is removed (a new id is written then)", path, text[:40])
        return None


def _create(path: Path) -> None:
    """Write a new id to `path` unless a file is there already (then that one stays)."""
    data = f"{uuid.uuid4()}\n".encode("ascii")
    tmp = write_beside(path, data)
    try:
        try:
            # Whole, and never over another's: os.replace would let the second of two
            # processes overwrite the id the first already went by.
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process wrote it first: its id is this machine's
        except OSError:
            # A file system without hard links (FAT, some SMB and FUSE mounts): created in
            # place, exclusively; a reader at that very moment may find it still empty
            # and go by its host name (`_read`).
            with contextlib.suppress(FileExistsError), open(path, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
    finally:
        tmp.unlink(missing_ok=True)
