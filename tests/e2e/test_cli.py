"""The `tidings` command line end to end (DESIGN.md 4.1): real subprocesses, real SQLite."""

from __future__ import annotations

import json

from tests.datasets import bbc_records, write_jsonl
from tests.e2e.conftest import run_cli


def test_help_is_fast_and_lists_commands(cli_env):
    r = run_cli(["--help"], cli_env, timeout=20)
    assert r.returncode == 0
    for cmd in ("run", "serve", "collect", "index", "import", "related", "sources", "eval"):
        assert cmd in r.stdout


def test_import_then_related(cli_env, tmp_path, shared_data):
    records = bbc_records(shared_data, limit=30)
    path = write_jsonl(records, tmp_path / "stories.jsonl")
    with open(path, "a", encoding="utf-8") as f:
        f.write("{broken json\n")
        f.write(json.dumps({"title": "no url"}) + "\n")
    r = run_cli(["import", str(path)], cli_env)
    assert r.returncode == 0, r.stderr
    assert "line 61: invalid JSON" in r.stderr and "line 62: 'url' is required" in r.stderr
    assert "60 new" in r.stdout and "2 bad lines" in r.stdout
    assert "Traceback" not in r.stderr

    # Re-importing updates, never duplicates.
    r = run_cli(["import", str(path)], cli_env)
    assert "0 new" in r.stdout

    r = run_cli(["related", "--id", "1", "-k", "3", "--json"], cli_env)
    assert r.returncode == 0, r.stderr
    block = json.loads(r.stdout)
    assert block["article"]["id"] == 1 and len(block["related"]) == 3
    assert 1 not in [c["id"] for c in block["related"]]

    r = run_cli(["related", "--text", "Blair and Brown clash over the election campaign and taxes"], cli_env)
    assert r.returncode == 0 and "Related to:" in r.stdout and " 1. " in r.stdout
    r = run_cli(["related", "--text", "Blair and Brown clash", "--published-at", "2005-02-01T09:00:00Z"],
                cli_env)
    assert r.returncode == 0 and " 1. " in r.stdout, r.stderr
    r = run_cli(["related", "--text", "Blair and Brown clash", "--published-at", "yesterday"], cli_env)
    assert r.returncode == 2 and "not ISO 8601" in r.stderr

    r = run_cli(["related", "--url", records[0]["url"], "-k", "2"], cli_env)
    assert r.returncode == 0 and records[0]["title"] in r.stdout


def test_import_from_stdin(cli_env, shared_data):
    lines = "\n".join(json.dumps(r) for r in bbc_records(shared_data, limit=3))
    r = run_cli(["import", "-", "--no-index"], cli_env, input=lines)
    assert r.returncode == 0 and "6 new" in r.stdout


def test_index_rebuild(cli_env, tmp_path, shared_data):
    path = write_jsonl(bbc_records(shared_data, limit=10), tmp_path / "s.jsonl")
    assert run_cli(["import", str(path), "--no-index"], cli_env).returncode == 0
    r = run_cli(["index"], cli_env)
    assert r.returncode == 0 and "embedded 20" in r.stdout
    r = run_cli(["index", "--rebuild"], cli_env)
    assert r.returncode == 0 and "20 vectors" in r.stdout


def test_bad_input_is_one_line_not_a_traceback(cli_env, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('data_dir = "x"\n[api]\nprot = 1\n')
    r = run_cli(["--config", str(bad), "sources", "list"], cli_env)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "bad.toml:3" in r.stderr and "api.prot" in r.stderr
    r = run_cli(["import", str(tmp_path / "missing.jsonl")], cli_env)
    assert r.returncode == 2 and "cannot read" in r.stderr
    r = run_cli(["related", "--id", "5"], cli_env)
    assert r.returncode == 2 and "no story with id 5" in r.stderr
    env = {**cli_env, "TIDINGS_API_PORT": "eighty"}
    r = run_cli(["sources", "list"], env)
    assert r.returncode == 2 and "TIDINGS_API_PORT" in r.stderr


def test_sources_list_shows_shipped_sources(cli_env):
    r = run_cli(["sources", "list"], cli_env)
    assert r.returncode == 0, r.stderr
    assert "bbc-politics" in r.stdout and "pending" in r.stdout
    r = run_cli(["sources", "check", "no-such-source"], cli_env)
    assert r.returncode == 2 and "no-such-source" in r.stderr
