"""Numpy arrays and raw files saved beside the FAISS index, with the same crash discipline.

Each file is written under a temporary name, fsynced, hashed, then renamed into place; the
manifest naming every file's size and sha256 is renamed last. A crash anywhere leaves either
the previous complete set or files that no longer match the manifest, which `load` reports as
None (the caller then rebuilds from the database). Arrays go through `np.savez` without pickle.

This module knows nothing of what the arrays mean: the corpus decides what to save and checks
that what comes back agrees with the vector index (same watermark, same ids).
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from recommender.vindex import fsync_and_hash, fsync_dir, sweep_temps, temp_tag

SNAPSHOT_FORMAT = 1


@dataclass
class Snapshot:
    info: dict[str, Any]  # what the caller recorded (watermark, ids digest, scalars)
    arrays: dict[str, dict[str, np.ndarray]]  # per .npz file: its arrays, in memory
    files: dict[str, BinaryIO]  # raw files, open for reading: the bytes hashed are the bytes read


def save(directory: Path, manifest_name: str, *, arrays: Mapping[str, Mapping[str, np.ndarray]],
         files: Mapping[str, Callable[[BinaryIO], None]], info: Mapping[str, Any]) -> dict[str, Any]:
    """Write `<name>.npz` for each entry of `arrays`, `<name>` for each writer of `files`,
    then the manifest `manifest_name`; return the manifest."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    sweep_temps(directory)
    tag = temp_tag()
    final: dict[str, Path] = {}
    tmp: dict[str, Path] = {}
    for name in [f"{n}.npz" for n in arrays] + list(files) + [manifest_name]:
        final[name] = directory / name
        tmp[name] = directory / f".{name}.{tag}.tmp"
    try:
        sizes: dict[str, list] = {}
        for name, members in arrays.items():
            with open(tmp[f"{name}.npz"], "wb") as f:
                np.savez(f, **members)
            sizes[f"{name}.npz"] = list(fsync_and_hash(tmp[f"{name}.npz"]))
        for name, write in files.items():
            with open(tmp[name], "wb") as f:
                write(f)
            sizes[name] = list(fsync_and_hash(tmp[name]))
        manifest = {"format": SNAPSHOT_FORMAT, **info, "files": sizes}
        tmp[manifest_name].write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        fsync_and_hash(tmp[manifest_name])
        # Data files first, manifest last: a crash between them leaves files that do not match
        # the old manifest, which `load` refuses.
        for name in sizes:
            os.replace(tmp[name], final[name])
        os.replace(tmp[manifest_name], final[manifest_name])
        fsync_dir(directory)
    finally:
        for path in tmp.values():
            path.unlink(missing_ok=True)
    return manifest


def differences(directory: Path, manifest_name: str,
                expect: Mapping[str, Any]) -> dict[str, tuple[Any, Any]] | None:
    """The `expect` fields the saved manifest holds otherwise, each as (saved, expected); None
    when there is no readable manifest. For saying why `load` gave None."""
    try:
        manifest = json.loads((Path(directory) / manifest_name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict):
        return None
    return {k: (manifest.get(k), v) for k, v in expect.items() if manifest.get(k) != v}


def load(directory: Path, manifest_name: str, *, arrays: tuple[str, ...],
         files: tuple[str, ...], expect: Mapping[str, Any]) -> Snapshot | None:
    """The saved arrays and files, or None when any is missing or differs from the manifest,
    or the manifest's `expect` fields differ (checked first: a stale set is not even read)."""
    directory = Path(directory)
    try:
        manifest = json.loads((directory / manifest_name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != SNAPSHOT_FORMAT:
        return None
    if any(manifest.get(k) != v for k, v in expect.items()):
        return None
    opened: dict[str, BinaryIO] = {}
    try:
        sizes = manifest["files"]
        for name in [f"{n}.npz" for n in arrays] + list(files):
            f = opened[name] = open(directory / name, "rb")  # noqa: SIM115 (kept open on success)
            if [*_hash(f)] != list(sizes[name]):
                raise ValueError(f"{name} does not match the manifest")
            f.seek(0)
        loaded = {}
        for n in arrays:
            with opened.pop(f"{n}.npz") as f, np.load(f, allow_pickle=False) as z:
                loaded[n] = {k: z[k] for k in z.files}
    except (KeyError, TypeError, ValueError, OSError, EOFError, zipfile.BadZipFile):
        for f in opened.values():
            f.close()
        return None
    return Snapshot(manifest, loaded, opened)


def _hash(f: BinaryIO) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    while chunk := f.read(1 << 20):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()
