"""The data dir's machine id (api.machineid): written once, kept, never overwritten, and
never a failed start where the data dir cannot hold it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from api import machineid
from api.machineid import MACHINE_ID_FILE, machine_id

REPO = Path(__file__).resolve().parents[2]


def test_the_id_is_written_once_and_read_back(tmp_path):
    first = machine_id(tmp_path)
    assert str(uuid.UUID(first)) == first
    assert machine_id(tmp_path) == first
    assert (tmp_path / MACHINE_ID_FILE).read_text() == f"{first}\n"
    assert [p.name for p in tmp_path.iterdir()] == [MACHINE_ID_FILE]  # no temporary file left


def test_an_id_written_meanwhile_by_another_process_is_kept(tmp_path):
    """Two processes on a fresh data dir: the second to write must not replace the id the
    first already went by (os.replace would), so both end with one id."""
    theirs = str(uuid.uuid4())
    (tmp_path / MACHINE_ID_FILE).write_text(f"{theirs}\n")
    machineid._create(tmp_path / MACHINE_ID_FILE)  # this process's write, found no file first
    assert machine_id(tmp_path) == theirs
    assert [p.name for p in tmp_path.iterdir()] == [MACHINE_ID_FILE]


def test_processes_starting_at_once_on_one_data_dir_share_one_id(tmp_path):
    """Four processes wait for one signal, then each asks for the id of a fresh data dir."""
    go = tmp_path / "go"
    data = tmp_path / "data"
    data.mkdir()
    child = ("import sys, time; from pathlib import Path; from api.machineid import machine_id\n"
             "go = Path(sys.argv[1])\n"
             "while not go.exists(): time.sleep(0.001)\n"
             "print(machine_id(Path(sys.argv[2])))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", child, str(go), str(data)], env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(4)]
    go.touch()
    ids = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert ids == {(data / MACHINE_ID_FILE).read_text().strip()}
    assert [p.name for p in data.iterdir()] == [MACHINE_ID_FILE]


def test_a_file_system_without_hard_links_gets_its_id_in_place(tmp_path, monkeypatch):
    """FAT, some SMB and FUSE mounts refuse links: the id is then created in place, and
    kept as well if another process's is there first."""
    def refused(src, dst):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", refused)
    first = machine_id(tmp_path)
    assert first is not None and machine_id(tmp_path) == first
    machineid._create(tmp_path / MACHINE_ID_FILE)
    assert machine_id(tmp_path) == first
    assert [p.name for p in tmp_path.iterdir()] == [MACHINE_ID_FILE]


def test_a_read_only_data_dir_leaves_the_process_without_an_id(tmp_path, caplog):
    """An API replica's data dir mounted read-only: no id, no failed start; the host name
    decides (api.runner.same_machine)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("this user (root) writes to a read-only directory")
        with caplog.at_level("INFO", logger="tidings"):
            assert machine_id(ro) is None
        assert list(ro.iterdir()) == []
        assert any("machine_id.not_written" in r.getMessage() for r in caplog.records)
    finally:
        ro.chmod(0o755)


def test_a_file_that_holds_no_id_is_not_one(tmp_path, caplog):
    """A file cut short by a crash (or edited) is no id, and is not overwritten: the process
    goes by its host name and says how to get a new one."""
    (tmp_path / MACHINE_ID_FILE).write_text("3f2a9c1b-")
    with caplog.at_level("WARNING", logger="tidings"):
        assert machine_id(tmp_path) is None
    assert "machine_id.invalid" in caplog.text
    assert (tmp_path / MACHINE_ID_FILE).read_text() == "3f2a9c1b-"
    (tmp_path / MACHINE_ID_FILE).unlink()
    assert machine_id(tmp_path) is not None


async def test_each_process_built_on_a_data_dir_goes_by_its_id(tmp_path):
    from aggregator.settings import load_settings
    from api.services import build

    settings = load_settings(REPO / "config" / "tidings.toml",
                             env={"TIDINGS_DATA_DIR": str(tmp_path / "data")})
    machines = []
    for _ in range(2):  # a process, then its recreated container's
        svc = await build(settings)
        machines.append(svc.machine)
        await svc.close()
    assert machines == [(tmp_path / "data" / MACHINE_ID_FILE).read_text().strip()] * 2
