"""`tidings export`: the story file `tidings import` reads (DESIGN.md 4.4), real subprocesses
and SQLite; a move to another data dir keeps every story as it was."""

from __future__ import annotations

import json

from tests.e2e.conftest import run_cli

RECORDS = [
    {"url": "https://news.example/politics/budget", "title": "Budget passes after late vote",
     "summary": "MPs back the budget.", "text": "MPs back the budget.\n\nThe vote was close.",
     "published_at": "2026-11-20T09:30:00Z", "source": "wire", "category": "politics",
     "author": "Jane Roe", "image_url": "https://news.example/img/budget.jpg",
     "tags": ["Budget", "UK politics", "Économie"]},
    {"url": "https://news.example/arts/premiere", "title": "Premiere draws crowds — «été» 🎬",
     "summary": "Stars arrive.", "published_at": "2026-11-22T18:00:00+01:00",
     "source": "wire", "category": "entertainment"},
    # No time and no dateline: the import dates it by the import itself.
    {"url": "https://blog.example/notes", "title": "Notes", "text": "A short note."},
]


def _import(env, tmp_path, records, name="in.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                    encoding="utf-8")
    r = run_cli(["import", str(path), "--no-index"], env)
    assert r.returncode == 0, r.stderr
    return r


def _lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_an_export_imports_elsewhere_as_the_same_stories(cli_env, tmp_path):
    _import(cli_env, tmp_path, RECORDS)
    out = tmp_path / "export.jsonl"
    r = run_cli(["export", str(out)], cli_env)
    assert r.returncode == 0 and "exported 3 stories" in r.stdout, r.stderr
    first = _lines(out)
    assert [x["url"] for x in first] == [x["url"] for x in RECORDS]  # story id order
    budget, premiere, notes = first
    assert budget == {**RECORDS[0], "site": "news.example"}
    assert premiere["published_at"] == "2026-11-22T17:00:00Z"  # UTC
    assert premiere["title"] == RECORDS[1]["title"] and "text" not in premiere
    assert notes["source"] == "import" and notes["published_at"].endswith("Z")
    assert not list(tmp_path.glob(".*.part"))

    # Into another data dir and out again: the same file, byte for byte.
    other = {**cli_env, "TIDINGS_DATA_DIR": str(tmp_path / "other")}
    r = run_cli(["import", str(out), "--no-index"], other)
    assert r.returncode == 0 and "3 new" in r.stdout, r.stderr
    again = tmp_path / "again.jsonl"
    assert run_cli(["export", str(again)], other).returncode == 0
    assert again.read_bytes() == out.read_bytes()


def test_export_selects_by_source_category_and_time(cli_env, tmp_path):
    _import(cli_env, tmp_path, RECORDS)

    def urls(*args):
        r = run_cli(["export", "-", *args], cli_env)
        assert r.returncode == 0, r.stderr
        assert r.stderr.strip().startswith("exported")  # stdout holds the stories only
        return [json.loads(line)["url"] for line in r.stdout.splitlines()]

    assert urls("--category", "politics") == [RECORDS[0]["url"]]
    assert urls("--source", "wire") == [RECORDS[0]["url"], RECORDS[1]["url"]]
    # Named in any case ("Politics" found nothing stored as "politics").
    assert urls("--category", "Politics", "--source", "WIRE") == [RECORDS[0]["url"]]
    assert urls("--since", "2026-11-21", "--until", "2026-11-23") == [RECORDS[1]["url"]]
    assert urls("--until", "2026-11-22T17:00:00Z") == [RECORDS[0]["url"]]  # before, not at
    # A category stories have, with none of them in the window: nothing, and no refusal.
    assert urls("--category", "politics", "--since", "2026-11-21") == []


def test_export_refuses_a_category_no_stored_story_has_with_the_name_meant(cli_env, tmp_path):
    """`export --category politcs` exported 0 stories with exit 0, where `--source` refused
    its typo (exit 2, the name meant): a category is refused alike, compared by its key."""
    _import(cli_env, tmp_path, RECORDS)
    for name, said in (("politcs", "(did you mean 'politics'?)"), ("sport", "'sport'")):
        r = run_cli(["export", "-", "--category", name], cli_env)
        assert r.returncode == 2 and r.stdout == "", (name, r.stdout + r.stderr)
        [line] = r.stderr.splitlines()
        assert line.startswith(f"tidings: error: no stored story has the category {name!r}"), line
        assert line.endswith(said), line
    r = run_cli(["export", "-", "--category", " Entertainment"], cli_env)  # by key, as before
    assert r.returncode == 0 and "exported 1 story" in r.stderr, r.stderr


def test_export_bad_input_is_one_line_and_leaves_no_file(cli_env, tmp_path):
    _import(cli_env, tmp_path, RECORDS)
    r = run_cli(["export", str(tmp_path / "no-such-dir" / "x.jsonl")], cli_env)
    assert r.returncode == 2 and "cannot write" in r.stderr and "Traceback" not in r.stderr
    r = run_cli(["export", "-", "--since", "2026-11-23", "--until", "2026-11-21"], cli_env)
    assert r.returncode == 2 and "--since must be before --until" in r.stderr
    r = run_cli(["export", "-", "--since", "last week"], cli_env)
    assert r.returncode == 2 and "not an ISO 8601 time" in r.stderr
    assert not list(tmp_path.rglob("*.part"))


def test_export_refuses_a_blank_source_or_category(cli_env, tmp_path):
    # A script's unset variable (`--category "$CAT"`): it exported the stories without a
    # category, or with --source none at all, and said so with exit status 0.
    _import(cli_env, tmp_path, RECORDS)
    for flag in ("--source", "--category"):
        for blank in ("", "  "):
            r = run_cli(["export", "-", flag, blank], cli_env)
            assert r.returncode == 2 and "is empty" in r.stderr and r.stdout == "", (flag, blank)


def test_export_writes_through_links_and_into_pipes_and_sweeps_killed_partials(cli_env, tmp_path):
    import os
    import subprocess
    import threading

    _import(cli_env, tmp_path, RECORDS)
    # A symlink: the file it names gets the export, the link stays.
    real, link = tmp_path / "real.jsonl", tmp_path / "link.jsonl"
    real.write_text("old\n")
    link.symlink_to(real)
    # The partial file of an export killed by SIGKILL (its process is gone).
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".real.jsonl.{dead.pid}.part"
    stale.write_text("half an export")
    assert run_cli(["export", str(link), "--force"], cli_env).returncode == 0
    assert link.is_symlink() and len(_lines(real)) == 3 and not stale.exists()
    # A named pipe: its reader gets the lines; the pipe is not replaced by a file.
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text(encoding="utf-8")))
    reader.start()
    r = run_cli(["export", str(fifo), "--category", "politics"], cli_env)
    reader.join(30)
    assert r.returncode == 0, r.stderr
    assert [json.loads(x)["url"] for x in got[0].splitlines()] == [RECORDS[0]["url"]]
    assert fifo.is_fifo() and not list(tmp_path.glob(".*.part"))


def test_export_keeps_an_existing_file_unless_forced(cli_env, tmp_path):
    """A mistyped path over an existing file (a config file, yesterday's export) replaced it
    without a word."""
    _import(cli_env, tmp_path, RECORDS)
    kept, link = tmp_path / "tidings.toml", tmp_path / "link.toml"
    kept.write_text("[api]\nport = 8080\n")
    link.symlink_to(kept)
    for given in (kept, link):  # through a symlink too: the file it names is the one replaced
        r = run_cli(["export", str(given)], cli_env)
        assert r.returncode == 2 and r.stdout == "", r.stderr
        assert r.stderr.splitlines() == [f"tidings: error: {given} exists; pass --force to replace it"]
        assert kept.read_text() == "[api]\nport = 8080\n" and link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "in.jsonl", "link.toml", "tidings.toml"]

    r = run_cli(["export", str(kept), "--force"], cli_env)
    assert r.returncode == 0 and "exported 3 stories" in r.stdout, r.stderr
    assert len(_lines(kept)) == 3
    # A new path and stdout need no --force, as before.
    r = run_cli(["export", str(tmp_path / "new.jsonl")], cli_env)
    assert r.returncode == 0 and len(_lines(tmp_path / "new.jsonl")) == 3, r.stderr
    r = run_cli(["export", "-", "--category", "politics"], cli_env)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 1, r.stderr


def test_with_stderr_closed_the_export_on_stdout_stays_a_story_file(cli_env, tmp_path):
    """Started with standard error closed (`2>&-`, a cron line that keeps stdout only),
    Python's `print(file=sys.stderr)` wrote to stdout: the export ended with "exported 3
    stories", and importing it reported a bad line. Errors are lost then, but the status
    still says one happened."""
    import os
    import subprocess

    from tests.e2e.conftest import REPO, TIDINGS

    _import(cli_env, tmp_path, RECORDS)

    def closed_stderr(args):
        return subprocess.run([*TIDINGS, *args], cwd=REPO, env=cli_env, text=True,
                              stdout=subprocess.PIPE, preexec_fn=lambda: os.close(2),
                              timeout=120)

    r = closed_stderr(["export", "-"])
    assert r.returncode == 0
    assert "exported" not in r.stdout, r.stdout
    exported = [json.loads(line)["url"] for line in r.stdout.splitlines()]
    assert sorted(exported) == sorted(rec["url"] for rec in RECORDS), r.stdout
    r = closed_stderr(["related", "--id", "999"])
    assert r.returncode == 2 and r.stdout == "", r.stdout


def test_an_export_to_a_read_only_disk_is_work_that_failed_not_bad_input(cli_env, tmp_path):
    """A read-only file system (mounted so, or remounted read-only after disk errors) exited
    2, "fix the command line", where the README's rules say 1: the path was right, the disk
    refused. A real read-only mount when the test may make one (root); the decision always."""
    import errno
    import os
    import subprocess

    import pytest

    from api.cli import write_failure_status

    assert write_failure_status(OSError(errno.EROFS, "Read-only file system")) == 1
    assert write_failure_status(OSError(errno.ENOENT, "No such file or directory")) == 2
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs",
                                            str(ro)], capture_output=True).returncode != 0:
        pytest.skip("no read-only mount here (needs root)")
    try:
        _import(cli_env, tmp_path, RECORDS)
        r = run_cli(["export", str(ro / "stories.jsonl")], cli_env)
        assert r.returncode == 1 and "Read-only file system" in r.stderr, r.stderr
    finally:
        subprocess.run(["umount", str(ro)], check=True)


def test_an_export_to_a_full_disk_names_the_output(cli_env, tmp_path):
    """`export - > /dev/full` exited 1 with "[Errno 28] No space left on device": main's
    catch-all, which did not say what could not be written. A full disk under standard
    output or a named file is one line naming it, status 1 (the disk failed, not the
    command line)."""
    import os
    import subprocess

    import pytest

    from tests.e2e.conftest import REPO, TIDINGS

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    _import(cli_env, tmp_path, RECORDS)
    with open("/dev/full", "w") as full:
        r = subprocess.run([*TIDINGS, "export", "-"], cwd=REPO, env=cli_env, text=True,
                           stdout=full, stderr=subprocess.PIPE, timeout=120)
    assert (r.returncode, r.stderr) == (
        1, "tidings: error: cannot write standard output: No space left on device\n")
    r = run_cli(["export", "/dev/full"], cli_env)
    assert (r.returncode, r.stderr) == (
        1, "tidings: error: cannot write /dev/full: No space left on device\n")
