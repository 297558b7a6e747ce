"""Files replaced or created whole: written and flushed beside their target first, then
renamed (or linked) into place, so no reader sees half of one. Knows nothing of what they hold."""

from __future__ import annotations

import os
from pathlib import Path


def write_beside(target: Path, data: bytes) -> Path:
    """`data` in a new file beside `target`, flushed to disk: renamed over `target`, it
    replaces it whole (same directory, same file system), so no reader sees half of it."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # of an earlier run of this pid, killed before its rename
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp
