"""`tidings sources import-opml` and `export-opml` as an operator runs them (real subprocesses):
a feed reader's export printed as tables or appended to the sources file, which keeps its
bytes and still loads; bad files refused in one line with the sources file untouched; and an
export that imports back as the same sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from aggregator.sources import load_sources
from tests.e2e.conftest import run_cli

SOURCES = """# My sources: comments and layout are mine.

[[source]]
name   = "bbc-politics"     # the BBC
url    = "https://feeds.bbci.co.uk/news/politics/rss.xml"
category = "politics"

[[source]]
name = "ars-technica"
url = "https://ars.example/old.xml"
category = "tech"
enabled = false
"""  # no blank line at its end, as some editors leave it

OPML = """<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0">
  <head><title>Feeds from Miniflux</title></head>
  <body>
    <outline text="Tech">
      <outline text="Ars Technica" type="rss" xmlUrl="https://feeds.arstechnica.com/arstechnica/index"/>
      <outline text="Science">
        <outline text="NASA" type="rss" xmlUrl="https://www.nasa.gov/rss/dyn/breaking_news.rss"/>
      </outline>
      <outline text="not a feed"/>
    </outline>
    <outline text="News">
      <outline text="BBC" type="rss" xmlUrl="https://feeds.bbci.co.uk/news/politics/rss.xml?at_medium=RSS"/>
      <outline text="NASA twice" type="rss" xmlUrl="https://www.nasa.gov/rss/dyn/breaking_news.rss"/>
      <outline text="Local file" type="rss" xmlUrl="file:///etc/passwd"/>
    </outline>
  </body>
</opml>
"""


@pytest.fixture
def setup(cli_env, tmp_path):
    path = tmp_path / "sources.toml"
    path.write_text(SOURCES.rstrip("\n"), encoding="utf-8")
    opml = tmp_path / "subscriptions.opml"
    opml.write_text(OPML, encoding="utf-8")
    return {**cli_env, "TIDINGS_SOURCES_FILE": str(path)}, path, opml


def triples(specs) -> list[tuple[str, str, str]]:
    return [(s.name, s.url, s.category) for s in specs]


NEW = [("ars-technica-2", "https://feeds.arstechnica.com/arstechnica/index", "tech"),
       ("nasa", "https://www.nasa.gov/rss/dyn/breaking_news.rss", "science")]


def test_import_prints_the_tables_and_says_what_it_skipped(setup, tmp_path):
    env, path, opml = setup
    before = path.read_bytes()
    r = run_cli(["sources", "import-opml", str(opml)], env)
    assert r.returncode == 0, r.stderr
    assert path.read_bytes() == before
    assert r.stdout.startswith('[[source]]\nname = "ars-technica-2"\n'), r.stdout
    skipped = [line for line in r.stderr.splitlines() if "skipped" in line]
    assert skipped == [
        f"tidings: {opml}: line 13: skipped 'BBC': the sources file has this feed already, "
        "as 'bbc-politics'",
        f"tidings: {opml}: line 14: skipped 'NASA twice': same feed as line 8 ('nasa')",
        f"tidings: {opml}: line 15: skipped 'Local file': url must be an absolute http(s) URL, "
        "got 'file:///etc/passwd'",
    ], r.stderr
    pasted = tmp_path / "pasted.toml"  # the tables as printed are a sources file
    pasted.write_text(r.stdout, encoding="utf-8")
    assert triples(load_sources(pasted)) == NEW
    # From stdin, with every source's category given.
    r = run_cli(["sources", "import-opml", "--category", "World", "-"], env, input=OPML)
    assert r.returncode == 0 and 'category = "World"' in r.stdout and "standard input: line 13" in r.stderr


def test_append_keeps_the_file_byte_for_byte_and_the_result_loads(setup, tmp_path):
    env, path, opml = setup
    before = path.read_bytes()
    path.chmod(0o640)
    # Configured through a symlink (a file kept in a config repository): the link stays, the
    # file it names is the one replaced.
    link = tmp_path / "linked.toml"
    link.symlink_to(path)
    env = {**env, "TIDINGS_SOURCES_FILE": str(link)}
    r = run_cli(["sources", "import-opml", "--append", str(opml)], env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"added 2 sources to {path}\n"  # the settings name the file itself
    assert link.is_symlink() and path.stat().st_mode & 0o777 == 0o640
    after = path.read_bytes()
    assert after.startswith(before + b"\n\n# Imported from " + f'"{opml}"'.encode())
    specs = load_sources(path)
    assert triples(specs)[:2] == [("bbc-politics", "https://feeds.bbci.co.uk/news/politics/rss.xml", "politics"),
                                  ("ars-technica", "https://ars.example/old.xml", "tech")]
    assert triples(specs)[2:] == NEW
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".sources.toml")]
    # Again: everything is there already, nothing is written, and that is no failure.
    r = run_cli(["sources", "import-opml", "--append", str(opml)], env)
    assert r.returncode == 0 and "nothing to add" in r.stderr, r.stderr
    assert path.read_bytes() == after


BROKEN = {
    "not-xml.opml": '<opml version="2.0"><body><outline text="A" xmlUrl="https://a.example/"',
    "page.opml": "<!DOCTYPE html><html><body><p>Please sign in</p></body></html>",
    "laughs.opml": """<?xml version="1.0"?>
<!DOCTYPE opml [
<!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
<!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
<!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
]>
<opml version="2.0"><body><outline text="&e;" xmlUrl="https://a.example/&e;"/></body></opml>""",
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_opml_is_one_line_and_the_file_is_untouched(setup, tmp_path, name):
    env, path, _ = setup
    bad = tmp_path / name
    bad.write_text(BROKEN[name], encoding="utf-8")
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    r = run_cli(["sources", "import-opml", "--append", str(bad)], env)
    assert r.returncode == 2 and r.stdout == "", r.stdout + r.stderr
    [line] = r.stderr.splitlines()
    assert line.startswith(f"tidings: error: {bad}: ") and "Traceback" not in r.stderr
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime
    assert "aaaaaaaaaa" * 10 not in r.stderr


def test_append_refuses_what_would_not_load_and_feeds_without_a_category(setup, tmp_path):
    env, path, opml = setup
    # A sources file written as an inline array loads, but [[source]] tables cannot follow it.
    inline = ('source = [{name = "one", url = "https://one.example/feed", '
              'category = "politics"}]\n')
    path.write_text(inline, encoding="utf-8")
    r = run_cli(["sources", "import-opml", "--append", str(opml)], env)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.splitlines()[-1].startswith(f"tidings: error: {path} would not load with "
                                                "these tables: invalid TOML"), r.stderr
    assert path.read_text(encoding="utf-8") == inline
    # A feed at the top level has no folder to take a category from.
    path.write_text(SOURCES, encoding="utf-8")
    top = tmp_path / "top.opml"
    top.write_text('<opml version="1.0"><body><outline text="Top" xmlUrl="https://top.example/rss"/>'
                   "</body></opml>", encoding="utf-8")
    r = run_cli(["sources", "import-opml", "--append", str(top)], env)
    assert r.returncode == 2 and "pass --category" in r.stderr and path.read_text(encoding="utf-8") == SOURCES
    # A folder whose title gives no slug leaves its feeds without a category too: the error
    # said they were "in no folder".
    starred = tmp_path / "starred.opml"
    starred.write_text('<opml version="1.0"><body><outline text="★★★"><outline text="Lenta" '
                       'xmlUrl="https://lenta.example/rss"/></outline></body></opml>', encoding="utf-8")
    r = run_cli(["sources", "import-opml", "--append", str(starred)], env)
    assert r.returncode == 2 and path.read_text(encoding="utf-8") == SOURCES
    assert ("1 feed(s) would have no category (in no folder, or one whose title gives no slug): "
            "pass --category C") in r.stderr, r.stderr
    # A title in another script gives its category (Cyrillic letters were dropped: none).
    cyrillic = tmp_path / "cyrillic.opml"
    cyrillic.write_text('<opml version="1.0"><body><outline text="Новости"><outline text="Lenta" '
                        'xmlUrl="https://lenta.example/rss"/></outline></body></opml>', encoding="utf-8")
    r = run_cli(["sources", "import-opml", "--append", str(cyrillic)], env)
    assert r.returncode == 0, r.stderr
    assert triples(load_sources(path))[-1] == ("lenta", "https://lenta.example/rss", "новости")
    path.write_text(SOURCES, encoding="utf-8")
    r = run_cli(["sources", "import-opml", "--append", "--category", "world", str(top)], env)
    assert r.returncode == 0, r.stderr
    assert triples(load_sources(path))[-1] == ("top", "https://top.example/rss", "world")


def test_an_exported_file_imports_into_an_empty_sources_file_as_the_same_sources(cli_env, tmp_path):
    shipped = Path(__file__).resolve().parents[2] / "config" / "sources.toml"
    out = tmp_path / "tidings.opml"
    env = {**cli_env, "TIDINGS_SOURCES_FILE": str(shipped)}
    r = run_cli(["sources", "export-opml", "-o", str(out)], env)
    assert r.returncode == 0, r.stderr
    specs = load_sources(shipped)
    left_out = [line for line in r.stderr.splitlines() if line.startswith("tidings: left out ")]
    kept = [s for s in specs if s.enabled and s.kind not in ("html", "sitemap")]
    assert len(left_out) == len(specs) - len(kept) > 0, r.stderr
    assert r.stdout == f"exported {len(kept)} sources to {out}\n"
    # Again without --force: the file is kept.
    r = run_cli(["sources", "export-opml", "-o", str(out)], env)
    assert r.returncode == 2 and "pass --force" in r.stderr
    empty = tmp_path / "empty.toml"
    empty.write_text("", encoding="utf-8")
    env = {**cli_env, "TIDINGS_SOURCES_FILE": str(empty)}
    r = run_cli(["sources", "import-opml", "--append", str(out)], env)
    assert r.returncode == 0, r.stderr
    assert sorted(triples(load_sources(empty))) == sorted(triples(kept))
    # To standard output, the same document.
    r = run_cli(["sources", "export-opml"], {**cli_env, "TIDINGS_SOURCES_FILE": str(shipped)})
    assert r.returncode == 0 and r.stdout.encode().split(b"<dateCreated>")[0] == out.read_bytes().split(b"<dateCreated>")[0]


def test_an_opml_export_on_a_full_disk_exits_1_and_a_wrong_path_2(cli_env, tmp_path):
    """A full disk (as a file size limit) exited 2, "bad input", though -o was right; a
    folder that does not exist is the command line's, 2 (README, exit status)."""
    import resource
    import subprocess

    from tests.e2e.conftest import REPO, TIDINGS

    shipped = Path(__file__).resolve().parents[2] / "config" / "sources.toml"
    env = {**cli_env, "TIDINGS_SOURCES_FILE": str(shipped)}

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (64, resource.RLIM_INFINITY))

    out = tmp_path / "tidings.opml"
    r = subprocess.run([*TIDINGS, "sources", "export-opml", "-o", str(out)], cwd=REPO, env=env,
                       text=True, capture_output=True, timeout=60, preexec_fn=small_files)
    assert r.returncode == 1 and "cannot write" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not out.exists()
    r = run_cli(["sources", "export-opml", "-o", str(tmp_path / "no-such" / "x.opml")], env)
    assert r.returncode == 2 and "cannot write" in r.stderr, r.stderr
