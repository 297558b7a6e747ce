"""`tidings search` end to end: stories imported by the real command, searched by another."""

from __future__ import annotations

import json

from tests.datasets import bbc_records, write_jsonl
from tests.e2e.conftest import run_cli


def test_import_then_search(cli_env, tmp_path, shared_data):
    records = bbc_records(shared_data, limit=20)
    r = run_cli(["import", str(write_jsonl(records, tmp_path / "stories.jsonl"))], cli_env)
    assert r.returncode == 0, r.stderr
    wanted = records[7]  # politics; ids follow the file's order

    r = run_cli(["search", wanted["title"], "-k", "3", "--json"], cli_env)
    assert r.returncode == 0, r.stderr
    found = json.loads(r.stdout)
    assert found["query"] == " ".join(wanted["title"].split()).casefold()
    assert len(found["items"]) == 3 and found["items"][0]["url"] == wanted["url"]

    r = run_cli(["search", wanted["title"], "-k", "4", "--category", "Entertainment"], cli_env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    # The entertainment stories that share a word with the headline ("women"), not four:
    # those found by meaning alone are too far from it (`search.SEARCH_MIN_DENSE`).
    assert lines[0].split() == ["id", "site", "time", "title"] and len(lines) > 1
    ent = {rec["title"] for rec in records if rec["category"] == "entertainment"}
    assert all(any(line.endswith(t) for t in ent) for line in lines[1:]), r.stdout
    assert wanted["title"] not in r.stdout

    # A query no story matches finds none, and says so: it listed three stories.
    r = run_cli(["search", "xyzzy", "-k", "3"], cli_env)
    assert (r.returncode, r.stdout) == (0, "(no stories found)\n"), r.stderr

    for args, message in ((["search", " -- "], "the query holds no words"),
                          (["search", "x" * 201], "longer than 200 characters"),
                          (["search", "budget", "-k", "0"], "-k: 0 is outside [1, 50]")):
        r = run_cli(args, cli_env)
        assert r.returncode == 2 and message in r.stderr, (args, r.stderr)


def test_without_k_the_commands_size_as_the_api(cli_env, tmp_path, shared_data):
    """Without -k, `related` gives `[api] default_k` stories and `search` 10, or max_k when
    lower, as the API does: they had 5 and 10 of their own, so an operator who set max_k = 3
    had both refused ("-k must be between 1 and 3") for a -k they never gave."""
    records = bbc_records(shared_data, limit=20)
    r = run_cli(["import", str(write_jsonl(records, tmp_path / "stories.jsonl"))], cli_env)
    assert r.returncode == 0, r.stderr
    env = {**cli_env, "TIDINGS_API_MAX_K": "3", "TIDINGS_API_DEFAULT_K": "2"}

    r = run_cli(["search", records[7]["title"], "--json"], env)
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["items"]) == 3

    r = run_cli(["related", "--id", "8", "--json"], env)
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["related"]) == 2

    r = run_cli(["related", "--id", "8", "-k", "4"], env)
    assert r.returncode == 2 and "-k: 4 is outside [1, 3]" in r.stderr, r.stderr


def test_related_and_search_refuse_a_category_no_stored_story_has(cli_env, tmp_path):
    """`related --category politcs` printed "(nothing related found)" with exit 0, and
    `search` "(no stories found)": a typo read as an answer. They refuse it as `export
    --category` does: one line, the stored category meant, exit 2."""
    stories = [{"url": f"https://news.example/{n}", "title": title, "category": category}
               for n, (title, category) in enumerate([
                   ("Budget passes after a late vote", "Politics"),
                   ("Budget vote delayed again", "politics"),
                   ("Premiere draws crowds", "entertainment")])]
    r = run_cli(["import", str(write_jsonl(stories, tmp_path / "s.jsonl"))], cli_env)
    assert r.returncode == 0, r.stderr

    for command in (["related", "--id", "1"], ["related", "--text", "budget vote"],
                    ["search", "budget"]):
        r = run_cli([*command, "--category", "politcs"], cli_env)
        assert (r.returncode, r.stdout) == (2, ""), (command, r.stdout + r.stderr)
        assert r.stderr.splitlines() == ["tidings: error: no stored story has the category "
                                         "'politcs' (did you mean 'politics'?)"], command
        # A stored category, in another case: the filter's answer, not a refusal.
        r = run_cli([*command, "--category", "POLITICS", "--json"], cli_env)
        assert r.returncode == 0, (command, r.stderr)
        cards = json.loads(r.stdout).get("related") or json.loads(r.stdout)["items"]
        assert cards and {c["category"] for c in cards} <= {"Politics", "politics"}, command


def test_related_search_and_stats_refuse_a_site_no_stored_story_has(cli_env, tmp_path):
    """`related --site bbc.co.ku` printed "(nothing related found)", `search` "(no stories
    found)", `stats` a report of zeros, and `--exclude-site bbc.co.ku` kept bbc.co.uk's
    stories in: exit 0 each time, a typo read as an answer. They refuse it as `--category`
    is refused, with the stored site meant; a site written another way than stored (case,
    `www.`, `m.`, a URL of it) is the filter's answer."""
    stories = [{"url": url, "title": title, "site": site} for url, title, site in [
        ("https://www.bbc.co.uk/news/1", "Budget passes after a late vote", "bbc.co.uk"),
        ("https://www.bbc.co.uk/news/2", "Budget vote delayed again", "www.BBC.co.uk"),
        ("https://m.guardian.example/3", "Budget film draws crowds", "m.guardian.example")]]
    r = run_cli(["import", str(write_jsonl(stories, tmp_path / "s.jsonl"))], cli_env)
    assert r.returncode == 0, r.stderr

    refused = "tidings: error: no stored story has the site '{}' (did you mean '{}'?)"
    # One typo a command (each `tidings` run costs a second or two): a plain one, and one
    # with `www.` that the comparison drops.
    for command, typo, meant in ((["related", "--id", "1"], "bbc.co.ku", "bbc.co.uk"),
                                 (["search", "budget"], "www.gaurdian.example", "guardian.example"),
                                 (["stats"], "bbc.co.ku", "bbc.co.uk")):
        r = run_cli([*command, "--site", typo, "--json"], cli_env)
        assert (r.returncode, r.stdout) == (2, ""), (command, r.stdout + r.stderr)
        assert r.stderr.splitlines() == [refused.format(typo, meant)], command
    # An exclusion of a site no story has is answered (there is nothing to exclude: a
    # publisher excluding its own site before its first collection), with a warning that
    # shows a typo and the site meant.
    warned = ("tidings: warning: no stored story has the site 'bbc.co.ku' (did you mean "
              "'bbc.co.uk'?): --exclude-site excludes nothing")
    r = run_cli(["related", "--id", "1", "--exclude-site", "bbc.co.ku", "--json"], cli_env)
    assert r.returncode == 0, r.stderr
    assert warned in r.stderr.splitlines(), r.stderr
    assert [c["id"] for c in json.loads(r.stdout)["related"]] == [2]  # bbc.co.uk kept

    r = run_cli(["related", "--id", "1", "--site", "https://www.BBC.co.uk/news", "--json"], cli_env)
    assert r.returncode == 0, r.stderr
    assert [c["id"] for c in json.loads(r.stdout)["related"]] == [2]
    r = run_cli(["search", "budget", "--exclude-site", "BBC.CO.UK", "--json"], cli_env)
    assert r.returncode == 0, r.stderr
    assert [c["site"] for c in json.loads(r.stdout)["items"]] == ["m.guardian.example"]
    r = run_cli(["stats", "--site", "guardian.example", "--json"], cli_env)
    assert r.returncode == 0 and json.loads(r.stdout)["total"]["clicks"] == 0, r.stderr


def test_k_is_refused_with_the_range_the_api_takes(cli_env):
    """`-k 0` was told "outside [1, 1000]" (max_k's own ceiling) and `-k 51` "must be between
    1 and 50": two ranges for one option, the first false, as 1000 was refused too. Every -k
    out of range is told the API's, 1 to `[api] max_k`, in one line before any work."""
    env = {**cli_env, "TIDINGS_API_MAX_K": "3", "TIDINGS_API_DEFAULT_K": "2"}
    # The values split between the two commands (each `tidings` run costs a second or two):
    # both take -k through the same `_cli_k`.
    for command, ks in ((["related", "--text", "Budget vote tonight"], ("0", "4", "1000")),
                        (["search", "budget"], ("-1", "99999999999999999999"))):
        for k in ks:
            r = run_cli([*command, "-k", k], env, timeout=20)
            assert (r.returncode, r.stdout) == (2, ""), (command, k, r.stderr)
            assert r.stderr.splitlines() == [f"tidings: error: -k: {k} is outside [1, 3] ([api] max_k)"]
        r = run_cli([*command, "-k", "2.5"], env, timeout=20)
        assert r.returncode == 2 and "argument -k: '2.5' is not a whole number" in r.stderr, r.stderr


def test_the_table_lines_up_under_wide_characters(cli_env, tmp_path):
    """A site named in Japanese ("朝日新聞", an import line's own name for itself) takes two
    columns a character on a terminal: padded by characters, its row's time and title stood
    four columns right of the others'."""
    stories = [{"url": f"https://news.example/{n}", "title": f"Earthquake drill held in {city}",
                "site": site, "category": "world"}
               for n, (city, site) in enumerate([("Tokyo", "朝日新聞"), ("Osaka", "bbc.co.uk"),
                                                 ("Kobe", "Nouvelles Français")])]
    r = run_cli(["import", str(write_jsonl(stories, tmp_path / "s.jsonl"))], cli_env)
    assert r.returncode == 0, r.stderr

    r = run_cli(["search", "earthquake drill", "-k", "3"], cli_env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 4, r.stdout
    # Where each line's time (or its heading) begins, in terminal columns.
    starts = {display_width(line[:line.index(mark)])
              for line, mark in zip(lines, ["time", *["20"] * 3], strict=True)}
    assert len(starts) == 1, r.stdout


def display_width(text: str) -> int:
    """Columns a terminal gives `text`: two for a wide (East Asian) character."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
