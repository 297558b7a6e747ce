"""`tidings`: the command line, and the composition root of the roles (DESIGN.md 4.1).

Imports stay light at module level so `tidings --help` is instant; each command imports
what it needs. Bad input gets one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import logging
import math
import os
import re
import signal
import sys
from pathlib import Path

from api.filewrite import write_beside
from api.stats import MAX_DAYS

EXIT_USAGE = 2


def _time(value: str):
    """An ISO 8601 time argument (naive = UTC), parsed as story files' published_at is. A
    blank one is refused, as `_given` refuses a blank name: parse_time reads it as a line
    without a time (None), so `export --since "$LAST_RUN"` with the variable unset exported
    every story, and `related --published-at ""` dated the text by its dateline."""
    from aggregator.importer import parse_time

    if not value.strip():
        raise argparse.ArgumentTypeError("the time is empty")
    try:
        return parse_time(value)
    except ValueError:  # parse_time's message names story files' published_at field
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO 8601 time "
                                         "(e.g. 2026-11-20 or 2026-11-20T09:30:00Z)") from None


def _ranged(kind: type, low: float, high: float, *, low_open: bool = False):
    """An argparse type: a `kind` number within [low, high] ((low, high] with `low_open`), the
    same bounds the HTTP API and the settings check."""
    def parse(value: str):
        try:
            n = kind(value)
        except ValueError:  # `--days 1.5` said "'1.5' is not a number"
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{value!r} is not {what}") from None
        if not math.isfinite(n):  # NaN passed no bound and was told it was outside them
            raise argparse.ArgumentTypeError(f"{value!r} is not a finite number")
        if not (low < n if low_open else low <= n) or n > high:
            left = "(" if low_open else "["
            raise argparse.ArgumentTypeError(f"{value} is outside {left}{low:g}, {high:g}]")
        return n
    return parse


_PORT = _ranged(int, 0, 65535)
# -k's range, 1 to `[api] max_k`, is known once the settings are read (`_cli_k`): a bound of
# 1000 here (max_k's own ceiling) was the range `-k 0` was told, "outside [1, 1000]", where
# 51 was refused at the default max_k of 50.
_K = _ranged(int, -math.inf, math.inf)


def _story_id(value: str) -> int:
    from aggregator.model import MAX_STORY_ID

    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a story id") from None
    if not 1 <= n <= MAX_STORY_ID:
        raise argparse.ArgumentTypeError(f"{value} is not a story id (1 to {MAX_STORY_ID})")
    return n


def _text(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("the text is empty")
    return value


def _given(what: str):
    """An argparse type: a value that is not empty. An empty one read as "not given", as a
    script's unset variable gives it: `--config "$CONF"` ran on the default settings (another
    database), `collect --source "$SRC"` started the scheduled collector of every source,
    which never exits, and `serve --host ""` listened on the default host."""
    def parse(value: str) -> str:
        if not value.strip():
            raise argparse.ArgumentTypeError(f"the {what} is empty")
        return value
    return parse


_config_path = _given("path")


def _embedder(value: str) -> str:
    """`eval --embedder`: a name [index] embedder takes, or the tests' "hash[:dim]" (an
    unknown name ended in make_embedder's ValueError and a traceback)."""
    from aggregator.settings import EMBEDDERS

    if value in EMBEDDERS or re.fullmatch(r"hash(:[1-9][0-9]{0,4})?", value):
        return value
    raise argparse.ArgumentTypeError(f"unknown embedder {value!r} (expected one of "
                                     f"{', '.join(EMBEDDERS)})")


def _category(value: str) -> str:
    """`sources import-opml --category`: a category the sources loader takes."""
    from aggregator.model import MAX_CATEGORY_CHARS
    from aggregator.settings import CONTROL_CHARS

    value = value.strip()
    if not value:
        raise argparse.ArgumentTypeError("the category is empty")
    if len(value) > MAX_CATEGORY_CHARS:
        raise argparse.ArgumentTypeError(f"a category is at most {MAX_CATEGORY_CHARS} characters")
    if CONTROL_CHARS.search(value):
        raise argparse.ArgumentTypeError("a category must not hold control characters")
    return value


def _search_query(value: str) -> str:
    from recommender.search import normal_query, query_problem

    query = normal_query(value)
    if problem := query_problem(query):
        raise argparse.ArgumentTypeError(f"the query {problem}")
    return query


def _block_filters(p: argparse.ArgumentParser) -> None:
    """The filters of a related block and a search (the API's `BlockFilters`). A blank name is
    refused, as `export --category` refuses it: `--category " "` filtered to the stories
    without a category (a block of nothing, a search of imported lines), and `--category
    "$CAT"` with the variable unset gave the block of every category."""
    p.add_argument("--category", type=_given("category"))
    p.add_argument("--site", type=_given("site"))
    p.add_argument("--exclude-site", type=_given("site"))
    p.add_argument("--max-age-days", type=_ranged(float, 0, 36500, low_open=True))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, type=_config_path,
                   help="settings file (default config/tidings.toml)")


def _metrics_port(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics-port", type=_PORT, metavar="P",
                   help="long-running form only: answer /healthz and /metrics on this port "
                        "(default [metrics] port; 0 = no listener)")


class OneLineParser(argparse.ArgumentParser):
    """Usage errors in one line (DESIGN.md 4.1: bad input gets a one-line error), where
    argparse prints its usage block first: a script that logs stderr got six lines for a
    missing argument, the problem at the bottom. `--help` still prints the usage."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def parser() -> argparse.ArgumentParser:
    top = OneLineParser(prog="tidings", description="Tidings: news aggregator with related stories and personalized feeds.")
    _common(top)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="collector + indexer + API in one process (the main job)")
    _common(p)
    p.add_argument("--host", type=_given("host"))
    p.add_argument("--port", type=_PORT)

    p = sub.add_parser("serve", help="API only")
    _common(p)
    p.add_argument("--host", type=_given("host"))
    p.add_argument("--port", type=_PORT)
    p.add_argument("--workers", type=_ranged(int, 1, 64), metavar="N",
                   help="API processes sharing one memory-mapped index (default [api] workers)")

    p = sub.add_parser("collect", help="run the collectors (scheduled; --once: one round)")
    _common(p)
    p.add_argument("--once", action="store_true", help="every due source once, then exit")
    p.add_argument("--source", metavar="NAME", type=_given("source name"),
                   help="only this source (fetched even if not due)")
    _metrics_port(p)

    p = sub.add_parser("index", help="embed stories that lack a vector")
    _common(p)
    p.add_argument("--rebuild", action="store_true", help="rebuild the index from the database")
    p.add_argument("--watch", action="store_true", help="keep running: embed new stories as they arrive")
    _metrics_port(p)

    p = sub.add_parser("import", help="import stories from JSON Lines (- = stdin)")
    _common(p)
    p.add_argument("file", metavar="FILE")
    p.add_argument("--no-index", action="store_true", help="store only; embed later")

    p = sub.add_parser("export", help="write stories as JSON Lines, the file `import` reads (- = stdout)")
    _common(p)
    p.add_argument("file", metavar="FILE")
    p.add_argument("--source", metavar="NAME", type=_given("source name"), help="only this source's stories")
    p.add_argument("--category", type=_given("category"), help="only this category")
    p.add_argument("--since", type=_time, metavar="T",
                   help="only stories of T or later (ISO 8601; published, else collected)")
    p.add_argument("--until", type=_time, metavar="T", help="only stories before T")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")

    p = sub.add_parser("backup", help="copy the SQLite database, while it runs, with the settings "
                                      "and sources files into the new folder DEST")
    _common(p)
    p.add_argument("dest", metavar="DEST", type=_given("backup folder"),
                   help="the folder to make (it must not exist); restore: README, Backup and restore")

    p = sub.add_parser("related", help="print a related block")
    _common(p)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--id", type=_story_id)
    g.add_argument("--url")
    g.add_argument("--text", type=_text)
    p.add_argument("--title", help="title for --text (default: its first words)")
    p.add_argument("--published-at", type=_time,
                   help="when the --text article came out, ISO 8601 (default: its dateline)")
    p.add_argument("-k", type=_K,
                   help="stories in the block (default [api] default_k, 5)")
    _block_filters(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("search", help="print the stories that answer a few words")
    _common(p)
    p.add_argument("query", metavar="QUERY", type=_search_query,
                   help="the words to search for (quote them: one argument)")
    p.add_argument("-k", type=_K,
                   help="stories to show (default 10, or [api] max_k when lower)")
    _block_filters(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("sources", help="source health and dry runs")
    _common(p)
    ss = p.add_subparsers(dest="sources_command", required=True, metavar="ACTION")
    q = ss.add_parser("list", help="table of sources with their health")
    _common(q)
    q.add_argument("--json", action="store_true")
    q = ss.add_parser("check", help="fetch and parse one source (or a feed's URL) once; store nothing")
    _common(q)
    q.add_argument("name", help="a source's name, or the http(s) URL of a feed to try")
    q = ss.add_parser("reset", help="clear a source's errors and make it due now")
    _common(q)
    q.add_argument("name")
    q = ss.add_parser("purge", help="remove the stories of a source removed from the sources "
                      "file (without --yes: say how many, remove nothing)")
    _common(q)
    q.add_argument("name")
    q.add_argument("--yes", action="store_true", help="remove them (there is no undo)")
    q = ss.add_parser("import-opml", help="[[source]] tables for the feeds of a feed reader's "
                      "OPML file (--append: add them to the sources file)")
    _common(q)
    q.add_argument("file", metavar="FILE", help="the OPML file (- = stdin)")
    q.add_argument("--category", type=_category,
                   help="every source's category (default: its folder's name as a slug)")
    q.add_argument("--append", action="store_true",
                   help="add the tables to the sources file instead of printing them")
    q = ss.add_parser("export-opml", help="the sources as an OPML 2.0 file for a feed reader")
    _common(q)
    q.add_argument("-o", "--output", metavar="FILE", default="-", type=_given("output path"),
                   help="write it to FILE (default: standard output)")
    q.add_argument("--force", action="store_true", help="replace FILE if it exists")

    p = sub.add_parser("takedown", help="remove stories for good (a legal request, a retraction)")
    _common(p)
    ts = p.add_subparsers(dest="takedown_command", required=True, metavar="ACTION")
    q = ts.add_parser("add", help="remove the stories at these URLs, with their copies, and keep them out")
    _common(q)
    q.add_argument("urls", nargs="+", metavar="URL")
    q.add_argument("--reason", default="", help="kept with the takedown (who asked, why)")
    q = ts.add_parser("list", help="the URLs taken down")
    _common(q)
    q.add_argument("--json", action="store_true")
    q = ts.add_parser("lift", help="let these URLs and their bodies back in (the next round brings them)")
    _common(q)
    q.add_argument("urls", nargs="+", metavar="URL")

    p = sub.add_parser("retention", help="run retention once: delete what [retention] keeps no "
                                         "longer (the hourly job of run, serve, collect, index --watch)")
    _common(p)
    p.add_argument("--dry-run", action="store_true", help="count what would go; delete nothing")
    p.add_argument("--json", action="store_true", help="the counts and cutoffs as JSON")

    p = sub.add_parser("stats", help="how the widget performs: impressions, clicks and CTR per day, "
                                     "top sites, stories and pages")
    _common(p)
    p.add_argument("--days", type=_ranged(int, 1, MAX_DAYS), default=7, metavar="N",
                   help=f"the last N UTC days, today included (1 to {MAX_DAYS}; default 7)")
    p.add_argument("--site", type=_given("site"), help="only the stories of this site")
    p.add_argument("--json", action="store_true", help="the JSON of GET /v1/stats")

    p = sub.add_parser("eval", help="offline quality evaluation on labelled datasets")
    _common(p)
    es = p.add_subparsers(dest="eval_command", required=True, metavar="WHAT")
    q = es.add_parser("related", help="related blocks: ECB+ same-event precision, BBC categories, seed case")
    _common(q)
    q.add_argument("--data", metavar="DIR", help="shared data folder (default ../shared/data)")
    q.add_argument("--embedder", type=_embedder, help="default: [index] embedder from the settings")
    q.add_argument("--only", choices=["ecbplus", "bbc", "uci", "seed"], help="one part only")
    q = es.add_parser("feed", help="personalized feed: MIND next-read HR@10 / MRR")
    _common(q)
    q.add_argument("--data", metavar="DIR",
                   help="shared data folder (default ../shared/data), or its mind-small-sample folder")
    q.add_argument("--embedder", type=_embedder, help="default: [index] embedder from the settings")
    return top


def plug_closed_stderr() -> None:
    """Started with standard error closed (`2>&-`), Python sets `sys.stderr` to None, and
    `print(..., file=sys.stderr)` then writes to standard OUTPUT: `export -` ended its story
    file with "exported N stories" (a bad line for `import`), `--json` outputs got notes
    after them. And the next file opened took descriptor 2, where C libraries write their
    warnings. Descriptor 2 goes to /dev/null instead: the messages are lost, as the caller
    chose, and the exit status still tells a failure."""
    if sys.stderr is not None:
        return
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    if fd != 2:  # a closed stdin or stdout took the lowest number: leave it closed
        os.dup2(fd, 2)
        os.close(fd)
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115


def main(argv: list[str] | None = None) -> int:
    plug_closed_stderr()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = parser().parse_args(argv)
    from aggregator.errors import TidingsError

    try:
        return asyncio.run(dispatch(args)) or 0
    except KeyboardInterrupt:
        # One line, as for SIGTERM: a one-shot command stopped by Ctrl-C exited 130 without
        # a word, where SIGTERM said what stopped it. (The long-running roles take both
        # signals themselves and stop cleanly, exit 0.)
        print("tidings: stopped by SIGINT (Ctrl-C)", file=sys.stderr)
        return 128 + signal.SIGINT
    except asyncio.CancelledError:  # SIGTERM (`_stop_on_sigterm`)
        print("tidings: stopped by SIGTERM", file=sys.stderr)
        return 128 + signal.SIGTERM
    except TidingsError as e:
        print(f"tidings: error: {e}", file=sys.stderr)
        return error_status(e)
    except BrokenPipeError:
        return 0
    except OSError as e:  # the machine's, not ours: a read-only or full disk, a folder in the way
        print(f"tidings: error: {e}", file=sys.stderr)
        return 1
    except Exception as e:
        reason = _database_refusal(e)
        if reason is None:
            raise  # a bug: its traceback
        print(f"tidings: error: database: {reason}", file=sys.stderr)
        return 1


def error_status(e: BaseException) -> int:
    """2 when the command line, the config or an input file is wrong (fix it and rerun);
    1 when the work failed for a reason outside them: the database (a full disk, a lost
    connection, a timeout), a page or feed that could not be fetched or read, a taken-down
    URL. Every TidingsError was 2: `import` on a full disk exited as if its file were wrong,
    while `index` exited 1 for the same failure."""
    from aggregator.errors import ConfigError, NotFound

    return EXIT_USAGE if isinstance(e, ConfigError | NotFound) else 1


# SQLSTATEs of a database that is there but will not take writes: a read-only transaction
# (a hot standby, default_transaction_read_only) and a role without the grant.
REFUSING_SQLSTATES = ("25006", "42501")


def _database_refusal(e: BaseException) -> str | None:
    """One line for a database that is away or refuses to write, else None. Most store calls
    raise the driver's errors as they come (api/runner.py `db_away`): a `collect --once` or a
    `sources reset` on a read-only replica ended in SQLAlchemy's traceback, with the SQL."""
    from aggregator.store import database_unavailable, driver_reason

    chain, seen = e, set()
    refused = False
    while chain is not None and id(chain) not in seen:
        seen.add(id(chain))
        refused = refused or getattr(chain, "sqlstate", None) in REFUSING_SQLSTATES
        chain = chain.__cause__ or chain.__context__
    return driver_reason(e) if refused or database_unavailable(e) else None


def _settings(args):
    from aggregator.settings import load_settings

    cfg = getattr(args, "config", None)
    settings = load_settings(Path(cfg) if cfg else None)
    configure_logging(settings)
    return settings


def configure_logging(settings) -> None:
    """Also called in each `serve --workers` process (api/workers.py), a fresh interpreter."""
    level = getattr(logging, settings.log_level.upper(), logging.INFO)
    # The process id beside the logger's name (syslog's `name[pid]`): the N workers of
    # `serve --workers N` write to one stream, and their lines could not be told apart.
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s[%(process)d] %(message)s")
    # Third-party chatter (per-request logs, model loading) stays at warning.
    # APScheduler says "skipped: maximum number of running instances reached" at every tick
    # that comes while the last one runs (each second for `follow`): a slow tick is normal,
    # and one that never ends is counted and said once by api.runner (`count_skipped`,
    # `report_stuck`), not once a second.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    for noisy in ("httpx", "sentence_transformers", "trafilatura", "htmldate",
                  "alembic", "faiss", "faiss.loader"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # trafilatura logs a page without an article ("empty HTML tree", "discarding data") at
    # ERROR: three lines before `related --url`'s own one-line error, and false ERRORs in a
    # collector's log; aggregator.extract reports the page itself (ParseError).
    logging.getLogger("trafilatura").setLevel(logging.CRITICAL)
    logging.getLogger("uvicorn.error").addFilter(_not_cut_at_stop)


def _not_cut_at_stop(record: logging.LogRecord) -> bool:
    """Drop uvicorn's traceback for a request it cancelled because the stop's grace ran out
    (api.services.STOP_GRACE_S): its line just before ("Cancel 1 running task(s)") says it, and
    a stop is no failure of the app."""
    exc = record.exc_info[1] if record.exc_info else None
    return not isinstance(exc, asyncio.CancelledError)


def _stop_on_sigterm() -> None:
    """SIGTERM (systemd, `docker stop`, timeout(1)) stops the command as Ctrl-C does: the
    main task is cancelled, so an import or an index run hands its embedding claims back and
    a `collect --once` its source claims, instead of leaving them held until their leases
    run out (Python's default for SIGTERM ends the process at once, cleaning nothing up).
    Not for the long-running roles: `api.runner` and uvicorn's `serve --workers` supervisor
    take the signal themselves and exit 0 on it."""
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)


def _long_running(args) -> bool:
    cmd = args.command
    return (cmd in ("run", "serve") or (cmd == "collect" and not (args.once or args.source))
            or (cmd == "index" and args.watch))


async def dispatch(args) -> int:
    if getattr(args, "metrics_port", None) is not None and not _long_running(args):
        # A one-off round ends before any scrape: the port would have been taken for nothing.
        print("tidings: error: --metrics-port is for the long-running forms "
              "(`collect` without --once or --source, `index --watch`)", file=sys.stderr)
        return EXIT_USAGE
    if not _long_running(args):
        _stop_on_sigterm()
    settings = _settings(args)
    cmd = args.command
    workers = settings.api.workers if getattr(args, "workers", None) is None else args.workers
    if cmd == "serve" and not 1 <= workers <= 64:
        print("tidings: error: --workers must be between 1 and 64", file=sys.stderr)
        return EXIT_USAGE
    if cmd == "serve" and workers > 1:
        from api.workers import serve

        await serve(settings, args.host or settings.api.host,
                    args.port if args.port is not None else settings.api.port, workers)
        return 0
    if cmd in ("run", "serve"):
        from api.runner import run_roles

        both = cmd == "run"
        await run_roles(settings, serve=True, collect=both and settings.collect.enabled,
                        index=both and settings.index.enabled, host=args.host, port=args.port)
        return 0
    if cmd == "collect":
        return await cmd_collect(settings, args)
    if cmd == "index":
        return await cmd_index(settings, args)
    if cmd == "import":
        return await cmd_import(settings, args)
    if cmd == "export":
        return await cmd_export(settings, args)
    if cmd == "backup":
        return await cmd_backup(settings, args)
    if cmd == "related":
        return await cmd_related(settings, args)
    if cmd == "search":
        return await cmd_search(settings, args)
    if cmd == "sources":
        return await cmd_sources(settings, args)
    if cmd == "takedown":
        return await cmd_takedown(settings, args)
    if cmd == "stats":
        return await cmd_stats(settings, args)
    if cmd == "retention":
        return await cmd_retention(settings, args)
    if cmd == "eval":
        from api.evalcmd import cmd_eval

        return await cmd_eval(settings, args)
    raise AssertionError(cmd)


async def _sync_sources(svc) -> list:
    from aggregator.sources import written_at
    from api.runner import sources_to_sync

    specs = await sources_to_sync(svc, svc.settings.sources_file)  # an emptied file is refused
    await svc.store.sync_sources(specs, written_at=written_at(svc.settings.sources_file),
                                 min_interval_s=svc.settings.collect.min_interval_s)
    return specs


async def cmd_collect(settings, args) -> int:
    from api.progress import Progress
    from api.services import build

    if not args.once and not args.source:
        from api.runner import run_roles

        await run_roles(settings, serve=False, collect=True, index=False,
                        metrics_port=args.metrics_port)
        return 0
    svc = await build(settings, collect=True)
    try:
        specs = await _sync_sources(svc)
        spec = next((s for s in specs if s.name == args.source), None)
        if args.source and spec is None:
            problem = no_source_named(args.source, [s.name for s in specs], f"in {settings.sources_file}")
            print(f"tidings: error: {problem}", file=sys.stderr)
            return EXIT_USAGE
        if spec is not None and not spec.enabled:
            # sources.toml promises a disabled source is never fetched; `check` is the way
            # to try one (a dry run, nothing stored).
            print(f"tidings: error: source {args.source!r} is disabled (enabled = false in "
                  f"{settings.sources_file}); `tidings sources check {args.source}` tries it "
                  f"without storing", file=sys.stderr)
            return EXIT_USAGE
        with Progress("collect", unit="source") as bar:
            report = await svc.collector.run_round(name=args.source, force=bool(args.source),
                                                   progress=lambda r: bar.step())
        if args.source and not report.sources and (claim := await svc.store.source_claim(args.source)):
            # Another collector is fetching it (or a killed one's claim has not run out):
            # "0 sources, 0 new stories" with exit 0 read as a fetch that found nothing.
            print(f"tidings: error: {source_claimed_text(args.source, *claim)}", file=sys.stderr)
            return 1
        for r in sorted(report.sources, key=lambda r: r.name):
            if r.ok:
                what = "not modified" if r.not_modified else f"{r.items} items, {r.new} new, {r.updated} updated"
                if r.left_out:
                    what += f", {r.left_out} left out by rules"
                if r.recovered_after:  # its last run said `error`: say that is over
                    what += (f" (recovered after {counted(r.recovered_after, 'failed fetch', 'failed fetches')})")
                print(f"ok     {r.name}: {what}")
            else:
                print(f"error  {r.name}: {r.error}")
        print(f"{counted(len(report.sources), 'source', 'sources')}, "
              f"{counted(report.new, 'new story', 'new stories')}, {report.failed} failed "
              f"in {report.elapsed_s:.1f}s")
        # Exit 1 when every source fetched failed (the network is down, a proxy refuses us):
        # a cron job saw 0 and reported success. Some failing among others is a normal round.
        return 1 if report.sources and report.failed == len(report.sources) else 0
    finally:
        await svc.close()


async def cmd_index(settings, args) -> int:
    if args.watch:
        from api.runner import run_roles

        # --rebuild with --watch was ignored without a word: the rebuild first, then the watch.
        if args.rebuild and (rc := await index_once(settings, rebuild=True, watch=True)):
            return rc
        await run_roles(settings, serve=False, collect=False, index=True,
                        metrics_port=args.metrics_port)
        return 0
    return await index_once(settings, rebuild=args.rebuild)


async def index_once(settings, *, rebuild: bool, watch: bool = False) -> int:
    """Embed the backlog, then save the index (`rebuild`: build it anew from the database).

    Without a database it refuses (`watch`: the role that follows makes it, as `run_roles`
    does, since an indexer may start before the collectors): a mistyped data dir printed
    "rebuilt the index: 0 vectors" and was left with an empty database and index."""
    from api.progress import Progress
    from api.services import build

    svc = await build(settings, index=True, owner_of_files=True, create_database=watch)
    try:
        # The repair, or a whole build when no file is usable; counts vectors and cards read.
        with Progress("load", unit="item") as bar:
            started = await svc.corpus.start(progress=bar.callback())
        with Progress("embed") as bar:
            rep = await svc.indexer.drain(progress=bar.callback())
        if rep.waiting_for is not None:
            _say_waiting(rep.waiting_for, svc.embedder.recipe)
            return 1
        if rebuild and not started["from_files"]:
            # No usable saved index: the start just built it from the database's vectors, and
            # a rebuild would do it all again (minutes at a million stories).
            await svc.corpus.follow()
            if not await svc.corpus.save():
                return _save_skipped(rebuild)
            print(f"rebuilt the index from the database: {len(svc.corpus)} vectors "
                  "(once, at the start: no usable saved index)")
        elif rebuild:
            # All or nothing: the new index replaces the saved files only when complete, so
            # an interrupted rebuild leaves the previous files (repaired from the database at
            # the next start), and a rerun skips the embedding already stored.
            with Progress("rebuild") as bar:
                n = await svc.corpus.rebuild(progress=bar.callback())
            if svc.corpus.dirty:  # its save was skipped (`Corpus.save`)
                return _save_skipped(rebuild)
            print(f"rebuilt the index from the database: {n} vectors")
        else:
            await svc.corpus.follow()
            if not await svc.corpus.save():
                _save_skipped(rebuild)
        rate = rep.embedded / rep.elapsed_s if rep.elapsed_s else 0
        print(f"embedded {counted(rep.embedded, 'story', 'stories')} in {rep.elapsed_s:.1f}s ({rate:.1f}/s); "
              f"index holds {len(svc.corpus)}; backlog {rep.backlog}")
        _say_leased(rep.backlog, svc.indexer.lease_s)
        return 0
    finally:
        await svc.close()


def _save_skipped(rebuild: bool) -> int:
    """Another process kept the index folder's save lock past the wait (`Corpus.save`): a
    rebuild not written is a failure; vectors embedded are in the database, and the process
    that holds the folder saves its own index, which follows them."""
    print("tidings: the index files were not written: another process (tidings run?) kept "
          "them locked" + ("; run the rebuild again once it is done" if rebuild else
                           "; it saves its own, and the next start repairs them"),
          file=sys.stderr)
    return 1


def _say_waiting(leader, recipe: str) -> None:
    """Nothing was embedded: another recipe leads this database (`Indexer.may_embed`)."""
    print(f"error: this database's stories are embedded with another recipe, by {leader.owner} "
          f"(running since {leader.started_at.isoformat(timespec='seconds')}):\n"
          f"  leading: {leader.recipe}\n  this:    {recipe}\n"
          "nothing was embedded here. Stop that process to switch recipes, or give this machine "
          "the same [index] embedder and model files (README, Operations: Changing the embedder)",
          file=sys.stderr)


def _say_leased(backlog: int, lease_s: int) -> None:
    """What is left after a drain is claimed elsewhere: by another indexer, or by a run that
    was killed (SIGKILL) mid-chunk; an interrupt (Ctrl-C, SIGTERM) hands its claims back at once."""
    if backlog:
        print(f"{counted(backlog, 'story still lacks', 'stories still lack')} a vector: claimed by another indexer or a killed run; "
              f"`tidings index` embeds them once the claim runs out (at most {lease_s // 60} min)")


async def cmd_import(settings, args) -> int:
    from aggregator.collect import within_retention
    from aggregator.importer import (
        LineError,
        LineNote,
        read_jsonl,
        refused_encoding,
        story_lines,
    )
    from aggregator.store import utcnow
    from api.progress import Progress
    from api.services import build

    # Bytes: a line that is not UTF-8 is reported and skipped like any bad line (read_jsonl).
    if args.file == "-":
        if sys.stdin is None:  # started with stdin closed (`<&-`): an AttributeError before
            print("tidings: error: cannot read -: standard input is closed", file=sys.stderr)
            return EXIT_USAGE
        stream = sys.stdin.buffer
    else:
        try:
            stream = open(args.file, "rb")  # noqa: SIM115 - closed below
        except OSError as e:
            print(f"tidings: error: cannot read {args.file}: {e.strerror}", file=sys.stderr)
            return EXIT_USAGE
    # A file in no encoding it reads (gzip, UTF-16 without its mark, Latin-1) is refused
    # whole, before a database is opened: read a line at a time, it was one error a line.
    if why := refused_encoding(stream.peek(1) if hasattr(stream, "peek") else b""):
        if args.file != "-":
            stream.close()
        name = "standard input" if args.file == "-" else args.file
        print(f"tidings: error: {name} {why}", file=sys.stderr)
        return EXIT_USAGE
    svc = await build(settings, index=not args.no_index, owner_of_files=True)
    new = updated = same = dups = bad = down = past = 0
    keep_days = settings.retention.stories_days
    try:
        batch: dict = {}  # canonical URL -> draft: a URL at most once per batch (see below)
        now = utcnow()

        async def flush() -> None:
            # Each batch commits on its own: an interrupted import keeps what it stored, and
            # a rerun finds those lines unchanged (no write, no re-embedding) and goes on.
            nonlocal new, updated, same, dups, down, past
            # Lines published before `[retention] stories_days` are skipped, as the collector
            # skips such feed items: stored, they were embedded and indexed, then deleted by
            # the next retention run within the hour (and stored again by every rerun).
            drafts, old = within_retention(batch.values(), now, keep_days)
            past += old
            r = await svc.store.upsert_stories(drafts, now)
            # Each stored line counted once: a linked duplicate (kept, not indexed) is not a
            # new or updated story too, so `new` is what the index gains. "2225 new, …, 138
            # linked duplicates" then "index holds 2087" read as if stories were lost.
            new += len(r.new_ids) - (r.duplicates - r.relinked)
            updated += len(r.updated_ids) - r.relinked
            dups += r.duplicates
            same, down = same + r.unchanged, down + r.taken_down
            batch.clear()

        # A file: progress in bytes read of its size (counting lines, the bar only ever showed
        # 100% of the lines read so far). A pipe has no size: lines.
        size = _regular_size(stream)
        lines_done = False
        try:
            with Progress("import", unit="line", bytes_=size is not None) as bar:
                for n, item in enumerate(read_jsonl(story_lines(stream), now), start=1):
                    if isinstance(item, LineNote) and not isinstance(item, LineError):
                        bar.note(f"tidings: {args.file}: {item}")  # on the next draft
                        continue
                    if size is None:
                        bar.step()
                    elif n % 200 == 0:
                        bar.update(stream.tell(), size)
                    if isinstance(item, LineError):
                        bad += 1
                        bar.note(f"tidings: {args.file}: {item}")
                        continue
                    if item.url in batch:
                        # A URL an earlier line had (noted above): that line goes in first, and
                        # this one updates its story as a re-import does. In one batch the later
                        # draft replaced the earlier whole, and what only the earlier named (a
                        # category) was lost, where lines 500 apart kept it.
                        await flush()
                    batch[item.url] = item
                    if len(batch) >= 500:
                        await flush()
                if batch:
                    await flush()
                if size is not None:
                    bar.update(size, size)
            print(f"imported: {new} new, {updated} updated, {same} already stored, {dups} linked duplicates (not indexed), "
                  f"{bad} bad lines skipped" + (f", {down} taken down (skipped)" if down else "")
                  + (f", {past} older than [retention] stories_days = {keep_days} (skipped)"
                     if past else ""))
            lines_done = True
            if svc.indexer is not None:
                # The index's load and repair, as `tidings index` shows it: without saved files
                # (deleted, another recipe's) it reads every stored vector and card, minutes at a
                # million stories, which an import on a terminal spent in silence.
                with Progress("load", unit="item") as bar:  # vectors and cards read
                    await svc.corpus.start(progress=bar.callback())
                with Progress("embed") as bar:
                    rep = await svc.indexer.drain(progress=bar.callback())
                await svc.corpus.follow()
                if not await svc.corpus.save():
                    _save_skipped(rebuild=False)
                print(f"embedded {counted(rep.embedded, 'story', 'stories')}; index holds {len(svc.corpus)}")
                if rep.waiting_for is not None:
                    _say_waiting(rep.waiting_for, svc.embedder.recipe)
                else:
                    _say_leased(rep.backlog, svc.indexer.lease_s)
        except (asyncio.CancelledError, KeyboardInterrupt):
            # Ctrl-C or SIGTERM: main() says which; this says what is kept, and that a rerun
            # goes on. "stopped by SIGINT" alone left a backfill's operator to guess whether
            # the lines read so far were lost, or would go in twice.
            print(stopped_import_note(args.file, new + updated + same + dups, lines_done),
                  file=sys.stderr)
            raise
        # 1 only when no line was good: a rerun of a file with bad lines (its good lines
        # already stored) succeeded as much as the first run did. A line past retention was
        # good, and left out as the settings ask.
        return 1 if bad and not (new or updated or same or dups or past) else 0
    finally:
        # Not `stream is not sys.stdin.buffer`: with stdin closed (`<&-`, as some schedulers
        # start jobs) sys.stdin is None, and a FILE's import ended in an AttributeError
        # traceback, exit 1, its embedding claims and indexer seat never given back.
        if args.file != "-":
            stream.close()
        await svc.close()


def stopped_import_note(name: str, stored: int, lines_done: bool) -> str:
    """What an interrupted import kept (pure). Each batch of lines commits as it is written
    (the one being read when it stopped is lost), and a rerun skips the stored lines
    (unchanged: no write, no embedding) and goes on."""
    if not lines_done:
        return (f"tidings: {name}: {counted(stored, 'line', 'lines')} stored before the stop; "
                "run the same import again to go on (stored lines are skipped)")
    return (f"tidings: {name}: all its lines are stored ({stored}), not all embedded yet: "
            "`tidings index`, or the same import again, embeds the rest")


# A write that failed because the disk did, not because the path given was wrong. A
# read-only file system too: main() answers it 1 anywhere else, and Linux remounts a disk
# read-only after I/O errors; the path given was right.
DISK_FAILURES = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS})


def write_failure_status(e: OSError) -> int:
    """A write to the file the command line named: 2 when the name is wrong (no such folder,
    no permission, a folder in the way), 1 when the disk failed (full, over quota, I/O,
    read-only):
    `sources export-opml` on a full disk exited 2, as if its -o were a typo, where `export`
    exited 1 for the same disk (README, exit status)."""
    return 1 if e.errno in DISK_FAILURES else EXIT_USAGE


def output_problem(name: str, target: Path | None, force: bool) -> str | None:
    """Why an export may not be written to `target` (None: standard output), else None.
    Standard output closed (`>&-`) was an AttributeError traceback. A mistyped path (a config
    file, yesterday's export) was replaced without a word: a regular file is kept unless
    `force`; a pipe or a device is written to."""
    if target is None and sys.stdout is None:
        return "cannot write -: standard output is closed"
    if target is not None and target.is_file() and not force:
        return f"{name} exists; pass --force to replace it"
    return None


async def cmd_export(settings, args) -> int:
    """Stories to a story file. A file is written beside its final name and renamed when
    complete: an interrupted export never leaves a shorter file that looks whole."""
    from aggregator.exporter import story_line
    from aggregator.store import StorySelection
    from api.progress import Progress
    from api.services import build

    if args.since and args.until and args.since >= args.until:
        print("tidings: error: --since must be before --until", file=sys.stderr)
        return EXIT_USAGE
    selection = StorySelection(source=args.source, category=args.category,
                               since=args.since, until=args.until)
    # A symlink is followed (the file it names is the one replaced); a pipe or a device is
    # written as it is: renaming a file over it replaced a FIFO's reader, or /dev/null itself.
    target = None if args.file == "-" else Path(args.file).resolve()
    if (problem := output_problem(args.file, target, args.force)) is not None:
        print(f"tidings: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    svc = await build(settings, create_database=False)
    partial = None
    try:
        if args.source and (problem := await export_source_problem(svc.store, args.source, settings)):
            print(f"tidings: error: {problem}", file=sys.stderr)
            return EXIT_USAGE
        if args.category and (problem := await stored_category_problem(svc.store, args.category)):
            print(f"tidings: error: {problem}", file=sys.stderr)
            return EXIT_USAGE
        total = await svc.store.count_stories(selection)
        if target is None:
            out = sys.stdout
        else:
            direct = target.exists() and not target.is_file()
            if not direct:
                _sweep_partials(target)  # of exports to this file killed mid-way
                partial = target.with_name(f".{target.name}.{os.getpid()}.part")
            try:
                out = open(target if direct else partial, "w", encoding="utf-8", newline="\n")  # noqa: SIM115 - closed below
            except OSError as e:
                partial = None
                print(f"tidings: error: cannot write {args.file}: {e.strerror}", file=sys.stderr)
                return write_failure_status(e)
        written = 0
        try:
            with Progress("export") as bar:
                async for stories in svc.store.iter_stories(selection):
                    out.writelines(story_line(s) for s in stories)
                    written += len(stories)
                    bar.update(written, max(total, written))
            out.flush()
            if partial is not None:
                os.fsync(out.fileno())
                out.close()
                os.replace(partial, target)
                partial = None
        except BrokenPipeError:
            raise  # the reader went away (`| head`): main's quiet exit
        except OSError as e:
            # Named as the open's failure is: main's catch-all said only "[Errno 28] No
            # space left on device", and `export - > /dev/full` did not say which output.
            name = "standard output" if target is None else args.file
            print(f"tidings: error: cannot write {name}: {e.strerror or e}", file=sys.stderr)
            return write_failure_status(e)
        finally:
            if out is not sys.stdout and not out.closed:
                with contextlib.suppress(OSError):  # a failed write's buffer: already said
                    out.close()
        print(f"exported {counted(written, 'story', 'stories')}" + (f" to {target}" if target else ""),
              file=sys.stderr if target is None else sys.stdout)
        return 0
    finally:
        if partial is not None:
            partial.unlink(missing_ok=True)
        await svc.close()


async def cmd_backup(settings, args) -> int:
    """`tidings backup DEST`: the SQLite database, copied online and consistently, and the
    settings and sources files, in the new folder DEST (aggregator/backup.py)."""
    import threading

    from aggregator.backup import (
        SETTINGS_NAME,
        SOURCES_NAME,
        destination_problem,
        write_backup,
    )
    from aggregator.errors import NoDatabase
    from aggregator.settings import sqlite_file
    from aggregator.store import shown_url
    from api.progress import Progress
    from api.services import no_database_message

    database = sqlite_file(settings.database_url)
    if database is None:  # PostgreSQL, or an SQLite URI SQLite reads itself
        print(f"tidings: error: backup copies an SQLite database file, and the database is "
              f"{shown_url(settings.database_url)}: back PostgreSQL up with pg_dump "
              "(README, Backup and restore)", file=sys.stderr)
        return EXIT_USAGE
    if not database.is_file():
        raise NoDatabase(no_database_message(settings))
    # Not resolved: a symlink named DEST is something in the way, not a folder to write into.
    dest = Path(os.path.abspath(args.dest))
    if (problem := destination_problem(dest)) is not None:
        print(f"tidings: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    _sweep_backup_partials(dest)
    files = {SETTINGS_NAME: settings.config_file, SOURCES_NAME: settings.sources_file}
    stop = threading.Event()
    try:
        with Progress("backup", unit="page") as bar:
            work = asyncio.ensure_future(asyncio.to_thread(
                write_backup, database, dest, files, progress=bar.update, stop=stop))
            try:
                report = await asyncio.shield(work)
            except asyncio.CancelledError:
                # Ctrl-C or SIGTERM: the copy stops at its next step and removes its folder;
                # the process waits for that, or a half-written folder would stay behind.
                stop.set()
                with contextlib.suppress(BaseException):
                    await work
                raise
    except OSError as e:
        print(f"tidings: error: cannot write {args.dest}: {e.strerror or e}", file=sys.stderr)
        return write_failure_status(e)
    counts = ", ".join(f"{n} {what}" for what, n in report.counts.items())
    copied = [name for name in files if (dest / name).is_file()]
    print(f"backed up {database} ({report.size / 1e6:.1f} MB, schema {report.revision}: {counts}) "
          f"and {' and '.join(copied) or 'no settings or sources file'} to {dest}")
    return 0


def _sweep_backup_partials(dest: Path) -> None:
    """Remove the temporary folders of backups to `dest` whose process is gone (killed
    mid-copy: a partial folder as large as the database)."""
    import shutil

    from aggregator.backup import PARTIAL
    from recommender.vindex import process_alive

    with contextlib.suppress(OSError):
        for entry in dest.parent.iterdir():
            match = PARTIAL.fullmatch(entry.name)
            if match and match[1] == dest.name and not process_alive(int(match[2])):
                shutil.rmtree(entry, ignore_errors=True)


async def export_source_problem(store, name: str, settings) -> str | None:
    """Why `export --source name` selects nothing the operator could have meant, else None:
    it takes the name of a source the file names (with stories or none yet), of a retired
    one, or one stories are stored under (an import line's own)."""
    from aggregator.errors import ConfigError
    from aggregator.sources import load_sources
    from aggregator.store import key_column

    known = await store.source_keys()
    if key_column(name) in known:
        return None
    try:  # a source added to the file since the last sync is no typo either
        named = {s.name for s in load_sources(settings.sources_file,
                                              default_interval_s=settings.collect.default_interval_s)}
    except ConfigError:  # the commands that read the file say what is wrong with it
        named = set()
    if key_column(name) in named:
        return None
    return no_source_named(name, known | named,
                           f"in {settings.sources_file}, nor stories stored under that name")


async def stored_category_problem(store, name: str) -> str | None:
    """Why `--category name` (of `export`, `related`, `search`) selects nothing the operator
    could have meant, else None: a category no stored story has, compared by key as the
    filter compares it ("Politics" is "politics"). `export --category politcs` exported 0
    stories with exit 0 where `--source` refused its typo, and `related`/`search` printed
    "nothing related found", which reads as an answer; the near category is named as the
    near source is. Only stories are asked, not sources.toml: a category is stored on its
    stories, and one the file names without a story yet selects nothing either."""
    from aggregator.store import key_column

    return unstored_problem("category", name, key_column(name), await store.category_keys())


async def stored_site_problem(store, name: str) -> str | None:
    """Why `--site name` or `--exclude-site name` (of `related`, `search`, `stats`) matches
    no story, else None: a site no stored story has, compared as the filters compare sites
    (canonical.site_key: "www.BBC.co.uk" and "https://bbc.co.uk/news" are "bbc.co.uk").
    `related --site bbc.co.ku` printed "(nothing related found)", `stats --site` a report of
    zeros, and `--exclude-site bbc.co.ku` left bbc.co.uk's stories in without a word: the
    typo excluded nothing, and the block looked like the one asked for. `--exclude-site`
    only warns (`block_filter_problem`)."""
    from aggregator.canonical import site_key

    return unstored_problem("site", name, site_key(name), await store.site_keys())


async def block_filter_problem(store, args) -> str | None:
    """Why the filters of `related` or `search` (`_block_filters`) select nothing the operator
    could have meant, else None: the first that names what no stored story has. An
    `--exclude-site` no story has is said on stderr, not refused: the answer is right either
    way (there is nothing to exclude), and a publisher's script excluding its own site, which
    has no story before its first collection, must not start failing then; a typo still
    shows, with the site meant."""
    if args.category and (problem := await stored_category_problem(store, args.category)):
        return problem
    if args.site and (problem := await stored_site_problem(store, args.site)):
        return problem
    if args.exclude_site and (problem := await stored_site_problem(store, args.exclude_site)):
        print(f"tidings: warning: {problem}: --exclude-site excludes nothing", file=sys.stderr)
    return None


def unstored_problem(what: str, name: str, key: str, known: set[str]) -> str | None:
    """The one refusal of a filter's value that no stored story has (pure): None when its
    `key` is among the stored ones (`known`), else the value as given and the stored key one
    typo from it."""
    from aggregator.settings import did_you_mean

    if key in known:
        return None
    return f"no stored story has the {what} {name!r}" + did_you_mean(key, known)


def _regular_size(stream) -> int | None:
    """The size of the regular file behind `stream`, None for a pipe or a terminal."""
    import stat

    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def _sweep_partials(target: Path) -> None:
    """Remove the partial files of exports to `target` whose process is gone (killed by
    SIGTERM or SIGKILL mid-export: a partial file as large as the export), as index saves
    sweep theirs."""
    import re

    from recommender.vindex import sweep_temps

    sweep_temps(target.parent, re.compile(re.escape(f".{target.name}.") + r"(\d+)\.part"))


def _cli_k(given: int | None, default: int, max_k: int) -> int | None:
    """-k as the API takes k: its default when not given, a given one outside [1, `api.max_k`]
    refused (None). The commands had defaults of their own (5, 10), so without -k they answered with
    another size than the API, and were refused outright where an operator set max_k lower."""
    if given is None:
        return min(default, max_k)
    return given if 1 <= given <= max_k else None


def _k_refused(given: int, max_k: int) -> int:
    """The one line for a -k `_cli_k` refuses, with the range the API's k has too."""
    print(f"tidings: error: -k: {given} is outside [1, {max_k}] ([api] max_k)", file=sys.stderr)
    return EXIT_USAGE


async def cmd_related(settings, args) -> int:
    from api.cards import block_json
    from api.services import build
    from recommender.related import Filters

    if args.text is None:
        # They describe the --text article; with --id or --url they were dropped in silence,
        # and the block looked like an answer for the title given.
        given = [o for o, v in (("--title", args.title), ("--published-at", args.published_at))
                 if v is not None]
        if given:
            print(f"tidings: error: {' and '.join(given)} go{'es' if len(given) == 1 else ''} "
                  "with --text only (--id and --url blocks use the stored or fetched article's)",
                  file=sys.stderr)
            return EXIT_USAGE
    # The operator's own command: an intranet or loopback page may be read, as their sources
    # may be on any host (DESIGN.md 4.2 restricts only the API's callers).
    k = _cli_k(args.k, settings.api.default_k, settings.api.max_k)
    if k is None:
        return _k_refused(args.k, settings.api.max_k)
    svc = await build(settings, serve=True, guard_callers=False, create_database=False)
    try:
        if problem := await block_filter_problem(svc.store, args):
            print(f"tidings: error: {problem}", file=sys.stderr)
            return EXIT_USAGE
        await svc.corpus.start()
        f = Filters(args.category, args.site, args.exclude_site, args.max_age_days)
        if args.id is not None:
            block = await svc.related.for_story(args.id, k=k, filters=f)
        elif args.url is not None:  # "" is a URL given (and refused), not --text's turn
            try:
                block = await svc.related.for_url(args.url, k=k, filters=f)
            except ValueError as e:
                print(f"tidings: error: {e}", file=sys.stderr)
                return EXIT_USAGE
        else:
            title = args.title or " ".join(args.text.split()[:12])
            block = await svc.related.for_text(title, args.text, k=k, filters=f,
                                               published_at=args.published_at)
        data = block_json(block)
        await _note_unindexed(svc)
        if args.json:
            print(json.dumps(data, ensure_ascii=False, indent=2))
            return 0
        a = data["article"]
        print(f"Related to: {a['title']}" + (f"  [{a['site']}]" if a["site"] else ""))
        if not data["related"]:
            print("  (nothing related found)")
        for i, c in enumerate(data["related"], 1):
            print(f"{i:2}. {c['title']}  [{c['site']}, {(c['published_at'] or '')[:10]}]")
            print(f"    {c['reason']} · score {c['score']:.3f} · id {c['id']}")
        return 0
    finally:
        await svc.close()


async def _note_unindexed(svc) -> None:
    """After `import --no-index` (or while no indexer runs) blocks came back thin or empty with
    nothing said: a note on stderr, the answer itself stays what it is."""
    if unindexed := await svc.store.backlog_size(svc.embedder.recipe):
        print(f"tidings: note: {unindexed} stor{'y has' if unindexed == 1 else 'ies have'} no "
              "vector yet and took no part; run `tidings index` (or `tidings run`)", file=sys.stderr)


async def cmd_search(settings, args) -> int:
    from api.app import SEARCH_DEFAULT_K
    from api.cards import search_json
    from api.services import build
    from recommender.related import Filters

    k = _cli_k(args.k, SEARCH_DEFAULT_K, settings.api.max_k)
    if k is None:
        return _k_refused(args.k, settings.api.max_k)
    svc = await build(settings, serve=True, create_database=False)
    try:
        if problem := await block_filter_problem(svc.store, args):
            print(f"tidings: error: {problem}", file=sys.stderr)
            return EXIT_USAGE
        await svc.corpus.start()
        f = Filters(args.category, args.site, args.exclude_site, args.max_age_days)
        data = search_json(args.query, await svc.related.search(args.query, k=k, filters=f))
        await _note_unindexed(svc)
        if args.json:
            print(json.dumps(data, ensure_ascii=False, indent=2))
            return 0
        if not data["items"]:
            print("(no stories found)")
            return 0
        rows = [["id", "site", "time", "title"]] + [
            [str(c["id"]), c["site"] or "", (c["published_at"] or "")[:16].replace("T", " "),
             c["title"]] for c in data["items"]]
        print(_table(rows))
        return 0
    finally:
        await svc.close()


def _table(rows: list[list[str]]) -> str:
    """Rows as aligned columns, one line each: a cell's own line breaks and tabs (a takedown's
    reason, a source's error) become single spaces, or they broke the table's lines. Padded by
    the columns a terminal gives each cell (`display_width`), not its characters: a site or
    category in Japanese pushed the rest of its row two columns right a character."""
    rows = [[" ".join(c.split()) for c in r] for r in rows]
    widths = [max(display_width(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c + " " * (w - display_width(c))
                               for c, w in zip(r, widths, strict=False)).rstrip() for r in rows)


def display_width(text: str) -> int:
    """Columns `text` takes on a terminal (pure): two for a wide or full-width character (CJK,
    most emoji), none for a combining mark or a format character, one for the rest."""
    import unicodedata

    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(ch) or unicodedata.category(ch) in ("Me", "Mn", "Cf")
               else 2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def counted(n: int, one: str, many: str) -> str:
    """`n` and its noun, singular for 1 (pure): the summaries said "1 sources", "1 stored
    stories removed", "1 URL(s)"."""
    return f"{n} {one if n == 1 else many}"


def source_claimed_text(name: str, owner: str, until) -> str:
    """Why `collect --source NAME` fetched nothing (pure): another collector's claim, which
    it does not take (two fetches of one source at once), named with its end, as `tidings
    retention` refuses to run beside a run under way."""
    return (f"source {name!r} is claimed by another collector ({owner or 'unknown'}) until "
            f"{until.strftime('%H:%M:%S UTC')}: being fetched there now, or that collector was killed "
            f"and its claim runs out then; not fetched here, try again after")


def no_source_named(name: str, known, where: str, *, otherwise: str = "") -> str:
    """The one refusal of a source name that names nothing (pure), whichever command took it
    (`collect --source`, `sources check`, `sources reset`, `export --source`; `sources purge`
    says so of a name without stories): the name, where it was looked for, and the known name
    one typo from it, else `otherwise`. `export --source bbc-wrold` exported 0 stories with
    exit 0, and the others left the operator to spot the typo among the names."""
    from aggregator.settings import did_you_mean

    return f"no source named {name!r} {where}" + (did_you_mean(name, known) or otherwise)


def _ago(at, now=None) -> str:
    if at is None:
        return "-"
    from datetime import UTC, datetime

    s = ((now or datetime.now(UTC)) - at).total_seconds()
    sign = "in " if s < 0 else ""
    s = abs(s)
    text = f"{s:.0f}s" if s < 90 else f"{s / 60:.0f}m" if s < 5400 else f"{s / 3600:.1f}h" if s < 172800 else f"{s / 86400:.0f}d"
    return sign + text + ("" if sign else " ago")


def next_check(at, now=None) -> str:
    """The NEXT column of `sources list`: "due" once the time has come (a pending source read "0s ago",
    an overdue one "5m ago", as if that check had happened), else "in ..."."""
    from datetime import UTC, datetime

    if at is not None and at <= (now or datetime.now(UTC)):
        return "due"
    return _ago(at, now)


def shown_title(title: str) -> str:
    """A document's title as `sources check` prints it (pure): quoted, or "(no title)" for a
    sitemap, or a page without one, which read `sitemap ''`."""
    return f"'{title}'" if title.strip() else "(no title)"


def check_counts(items: int, found) -> str:
    """`sources check`'s counts (`found`: a collect.SourceCheck): usable items, the items
    that repeated a link (one story: its first copy), how many the source's keep/block rules
    left out, and of a full_text source how many were
    read in full (a sample) and how many links still wait for their page to give a title."""
    out = f"{items} items, {len(found.drafts)} usable"
    if found.repeated:  # merged into their link's first copy: "27 items, 26 usable" said no why
        out += f", {counted(found.repeated, 'repeated link', 'repeated links')}"
    if found.left_out:
        out += f", {found.left_out} left out by rules"
    if found.read_in_full:
        out += f", {found.read_in_full} read in full as a sample"
    if found.untitled:
        out += f", {found.untitled} more untitled until their pages are read"
    return out


async def cmd_sources(settings, args) -> int:
    from aggregator.errors import FetchError, ParseError
    from aggregator.sources import (
        load_sources,
        source_table,
        sources_reading,
        trial_source,
        url_problem,
    )
    from api.services import build

    if args.sources_command == "import-opml":  # files only: no database
        return import_opml(settings, args)
    if args.sources_command == "export-opml":
        return export_opml(settings, args)
    specs = load_sources(settings.sources_file, set_by=settings.sources_from,
                         default_interval_s=settings.collect.default_interval_s,
                         min_interval_s=settings.collect.min_interval_s)
    if args.sources_command == "check":
        spec = next((s for s in specs if s.name == args.name), None)
        readers = sources_reading(specs, args.name) if spec is None else []
        if readers:  # a URL the file reads already: that source, with its rules
            spec = readers[0]
            others = f" (so does {', '.join(repr(s.name) for s in readers[1:])})" if readers[1:] else ""
            print(f"tidings: checking source {spec.name!r}, which reads this URL in "
                  f"{settings.sources_file}{others}", file=sys.stderr)
        # A feed's URL that no source names: tried before it is added to the file.
        taken = [s.name for s in specs]  # the name to paste is one the file does not have
        trial = trial_source(args.name, taken=taken) if spec is None else None
        spec = spec or trial
        if spec is None and "://" in args.name:  # meant as a URL: say what is wrong with it
            # (it said "no source named 'http://x:99999/'", as if URLs were not tried)
            print(f"tidings: error: cannot try this URL: {url_problem(args.name)}", file=sys.stderr)
            return EXIT_USAGE
        if spec is None:
            problem = no_source_named(args.name, taken, f"in {settings.sources_file}",
                                      otherwise=" (a feed's http(s) URL is tried as it is)")
            print(f"tidings: error: {problem}", file=sys.stderr)
            return EXIT_USAGE
        from aggregator.collect import Collector

        # No services built: a dry run reads nothing stored, and building them made an empty
        # database (and its folder) in a mistyped data dir.
        collector = Collector(None, settings.collect)
        try:
            found = await collector.check(spec, [s.url for s in specs])
        except (FetchError, ParseError) as e:
            # The source failed, not the command line: exit 1 as `collect --source` does for
            # it (it fell through to main's usage status 2, and a script could not tell a
            # feed that is down from a typo in its name).
            print(f"tidings: error: {spec.name}: {e}", file=sys.stderr)
            return 1
        finally:
            await collector.close()
        doc, drafts = found.doc, found.drafts
        if trial is not None:  # its title may name a feed its host does not (an IP address)
            spec = trial = trial_source(args.name, doc.title, taken) or trial
        print(f"{spec.name}: {doc.kind} {shown_title(doc.title)}, {check_counts(len(doc.items), found)} "
              "(nothing stored)")
        for p in doc.problems[:10]:
            print(f"  problem: {p}")
        for d in drafts[:10]:
            when = d.published_at.isoformat() if d.published_at else "no date"
            print(f"  - {d.title}\n    {d.url}  ({when}{', image' if d.image_url else ''}{', full text' if d.text else ''})")
        if trial is not None and drafts:
            print(f"\nTo collect it, add to {settings.sources_file}:\n\n{source_table(trial)}")
        return 0
    # No sync here: only collecting processes (`run`, `collect`) apply the file. `sources
    # list` run with another file (TIDINGS_SOURCES_FILE, another machine's) retired every
    # source that file did not name, and the real file's collector, whose file was older
    # than that edit, then kept them retired (`Store.sync_sources`, written_at).
    from aggregator.errors import NoDatabase
    from aggregator.store import unapplied_health, utcnow

    try:
        svc = await build(settings, create_database=False)
    except NoDatabase as e:
        if args.sources_command != "list":
            raise
        # A new install's first look at its sources, before any collector made the database:
        # the file's sources, all pending, with nothing made on the disk (refused, it read as
        # if the shipped config were broken).
        now = utcnow()
        print(f"tidings: note: {e}; listed as {settings.sources_file} names them, all pending",
              file=sys.stderr)
        return _show_sources([unapplied_health(s, now, settings.collect.min_interval_s)
                              for s in sorted(specs, key=lambda s: s.name)], args)
    try:
        named = {s.name for s in specs}
        if args.sources_command == "reset":
            if args.name not in named:
                problem = no_source_named(args.name, [s.name for s in specs], f"in {settings.sources_file}")
                print(f"tidings: error: {problem}", file=sys.stderr)
                return EXIT_USAGE
            status = await svc.store.reset_source(args.name, utcnow())
            if status is None:  # new in the file: due once applied
                print(f"{args.name}: not in the database yet; due as soon as a collector "
                      f"(`tidings run`, `tidings collect`) applies {settings.sources_file}")
                return 0
            if status == "disabled":
                print(f"{args.name}: errors cleared; disabled in {settings.sources_file}, "
                      f"so not fetched until enabled")
            elif claim := await svc.store.source_claim(args.name):
                # The reset leaves a collector's claim (no second fetch beside it): "due now"
                # alone had the operator wait for a fetch up to `lease_s` away.
                print(f"{args.name}: errors cleared, due now; claimed by a collector "
                      f"({claim[0] or 'unknown'}) until {claim[1].strftime('%H:%M:%S UTC')}: "
                      f"a fetch under way (begun before the reset: it records nothing over it, and the source "
                      f"is fetched again once it ends), or, the collector killed, it is fetched then")
            else:
                print(f"{args.name}: errors cleared, due now")
            return 0
        if args.sources_command == "purge":
            if args.name in named:
                print(f"tidings: error: source {args.name!r} is in {settings.sources_file}: "
                      "remove it from the file first (its next round would bring its stories "
                      "back)", file=sys.stderr)
                return EXIT_USAGE
            return await purge_source(svc.store, args.name, yes=args.yes,
                                      sources_file=settings.sources_file)
        now = utcnow()
        difference = await svc.store.file_difference(specs, now)
        rows = await svc.store.list_sources(retired=True,
                                            min_interval_s=settings.collect.min_interval_s)
    finally:
        await svc.close()
    listed = {r.name for r in rows}
    rows = with_unapplied(rows, [unapplied_health(s, now, settings.collect.min_interval_s)
                                 for s in specs if s.name in difference.new and s.name not in listed])
    note = difference_note(difference, settings.sources_file)
    if note:
        print(note, file=sys.stderr)
    return _show_sources(rows, args)


def _show_sources(rows, args) -> int:
    """`sources list`'s output: the table, or the API's rows with `--json`."""
    if args.json:
        from api.cards import source_json  # the API's rows, times and all

        print(json.dumps([source_json(r) for r in rows], indent=2))
        return 0
    print(sources_table(rows))
    print(sources_summary(rows))
    return 0


def sources_summary(rows) -> str:
    """The line under the `sources list` table (pure; `rows`: store.SourceHealth): the
    enabled sources by status, and a warning when every one is failing. On a machine with no
    network or DNS, each of the 25 shipped sources showed its own error: nothing at a glance
    said that the trouble was the machine, not the feeds."""
    from collections import Counter

    from aggregator.store import SourcesGlance, all_failing_warning

    by = Counter(r.status for r in rows)
    enabled = by["ok"] + by["error"] + by["pending"]
    line = (f"{counted(enabled, 'enabled source', 'enabled sources')}: {by['ok']} ok, "
            f"{by['error']} failing, {by['pending']} pending")
    line += "".join(f", {counted(by[status], status, status)}"
                    for status in ("disabled", "retired") if by[status])
    warning = all_failing_warning(SourcesGlance(enabled, by["error"]))
    return f"{line}\nwarning: {warning}" if warning else line


def with_unapplied(rows, unapplied) -> list:
    """The listed rows with the file's sources no collector has added yet, among the
    configured ones by name, before the retired ones (pure): a new install's `sources list`
    shows its sources, pending, before the first collect."""
    configured = sorted([r for r in rows if r.status != "retired"] + list(unapplied),
                        key=lambda r: r.name)
    return configured + [r for r in rows if r.status == "retired"]


def difference_note(difference, sources_file) -> str | None:
    """The line `sources list` writes to stderr when the sources file is not what the
    database holds (pure; `difference`: store.FileDifference), None when it is. Listing
    applies nothing: it says what a collector would apply."""
    if not difference:
        return None

    def names(group: tuple[str, ...]) -> str:
        shown = ", ".join(group[:5])
        return shown + (f" and {len(group) - 5} more" if len(group) > 5 else "")

    parts = []
    if difference.new:
        parts.append(f"new in the file: {names(difference.new)}")
    if difference.edited:
        parts.append(f"edited in the file: {names(difference.edited)}")
    if difference.unnamed:
        parts.append(f"configured but not in the file: {names(difference.unnamed)}")
    return (f"tidings: note: {sources_file} differs from the database ({'; '.join(parts)}); "
            "listed as the database holds them (new ones pending): a collector (`tidings "
            "run`, `tidings collect`) applies the file, `sources list` changes nothing")


# `sources list` fits a terminal this wide with the shipped sources; a source's last error
# goes on a line of its own under it, cut to this width (whole in `--json`).
LIST_WIDTH = 100


def cut_middle(text: str, width: int) -> str:
    """`text` in `width` characters, cut in the middle (pure). A fetch error reads "X fetching
    URL: reason": cut at the end, a long feed URL pushed the reason out ("…: Cannot co…"),
    which is what the operator needs; the URL is the row's own, in the sources file."""
    if len(text) <= width:
        return text
    head = width // 3
    tail = width - head - 1
    return text[:head].rstrip() + "…" + text[len(text) - tail:].lstrip()


def sources_table(rows, now=None) -> str:
    """The `sources list` table (pure; `rows`: store.SourceHealth). Besides health, what an
    operator tunes, which only `--json` showed: the kind read (auto's as detected), the
    weight, and the interval (EVERY: the one the schedule chose last, within the [collect]
    bounds). The error under its row: as a last column (cut at 60 characters) it pushed the
    rows past 130 columns, and with three more columns nothing was left for it."""
    from aggregator.sources import duration_text

    table = [["NAME", "STATUS", "KIND", "CATEGORY", "WEIGHT", "EVERY", "STORIES", "LAST OK", "NEXT"]]
    for r in rows:
        status = f"retired {_ago(r.retired_at, now)}" if r.status == "retired" else r.status
        table.append([r.name, status, r.kind, r.category,
                      f"{r.weight:g}", duration_text(r.interval_s), str(r.stories),
                      _ago(r.last_success_at, now), next_check(r.next_check_at, now)])
    out = []
    for line, r in zip(_table(table).splitlines(), [None, *rows], strict=True):
        out.append(line)
        # A retired or disabled source fetches nothing: its last error is history, not a
        # failing feed to fix (`--json` keeps it). Under a disabled row it read as a
        # current failure.
        if r is not None and r.last_error and r.status not in ("retired", "disabled"):
            count = f" (x{r.error_count})" if r.error_count > 1 else ""
            err = " ".join(r.last_error.split())
            room = LIST_WIDTH - len("  error: ") - len(count)
            out.append(f"  error: {cut_middle(err, room)}{count}")
        # Failed article pages leave the source "ok" (its feed was read): said here, else
        # only the log's INFO lines told a full_text source whose pages all answered 404.
        if r is not None and r.failing_pages and r.status not in ("retired", "disabled"):
            pages = "article page" if r.failing_pages == 1 else "article pages"
            out.append(f"  pages: {r.failing_pages} {pages} not read at the last try "
                       f"(`tidings sources check {r.name}` says why)")
    return "\n".join(out)


async def purge_source(store, name: str, *, yes: bool, sources_file) -> int:
    """`sources purge NAME`: the stories of a source the file no longer names, counted, and
    with `yes` removed (as retention removes them: the indexes follow). A source the
    database still holds configured is refused, as the caller refuses one `sources_file`
    names: its next round would bring its stories back."""
    count = await store.purgeable_stories(name)
    if count is None:
        print(f"tidings: error: {still_configured(name, sources_file)}", file=sys.stderr)
        return EXIT_USAGE
    if not count:
        # A typo ("bbc-wrold") read as a source with nothing stored: name the one meant.
        from aggregator.settings import did_you_mean

        hint = did_you_mean(name, [r.name for r in await store.list_sources(retired=True)])
        print(f"tidings: error: no stories stored under source {name!r}{hint} (`tidings "
              "sources list` shows the retired sources that still have some)", file=sys.stderr)
        return EXIT_USAGE
    if not yes:
        print(f"{name}: {counted(count, 'story', 'stories')} would be removed; nothing removed yet: run "
              f"`tidings sources purge {name} --yes` to remove them")
        return 0
    removed = await store.purge_source(name)
    if removed is None:  # a collector added it back meanwhile
        print(f"tidings: error: {still_configured(name, sources_file)}; nothing removed",
              file=sys.stderr)
        return EXIT_USAGE
    print(f"{name}: {counted(len(removed), 'story', 'stories')} removed; running indexes drop them within seconds")
    return 0


def still_configured(name: str, sources_file) -> str:
    """Why `purge` refuses a source that `sources_file` does not name (pure): the database
    still holds it configured, as only a collector applies the file."""
    return (f"source {name!r} is still configured in the database: no collector has applied "
            f"{sources_file} since it was removed from it (`tidings collect --once` does, as "
            "a running `tidings run` does within seconds), or another machine's sources file "
            "names it")


def import_opml(settings, args) -> int:
    """`sources import-opml`: the tables for an OPML file's feeds, printed or appended to the
    sources file. Appending keeps the operator's file byte for byte, checks that the result
    loads, and renames it into place: a running `tidings run` reloads it whole or not at all."""
    from datetime import UTC, datetime

    from aggregator.errors import ParseError
    from aggregator.opml import MAX_OPML_BYTES, appended, plan_import, read_opml
    from aggregator.sources import load_sources, source_table

    path = settings.sources_file
    if args.file == "-" and sys.stdin is None:  # `<&-`: as `import -` says it
        print("tidings: error: cannot read -: standard input is closed", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.file == "-":
            body = sys.stdin.buffer.read(MAX_OPML_BYTES + 1)
        else:
            with open(args.file, "rb") as f:
                body = f.read(MAX_OPML_BYTES + 1)
    except OSError as e:
        print(f"tidings: error: cannot read {args.file}: {e.strerror}", file=sys.stderr)
        return EXIT_USAGE
    label = "standard input" if args.file == "-" else args.file
    try:
        feeds = read_opml(body)
    except ParseError as e:
        print(f"tidings: error: {label}: {e}", file=sys.stderr)
        return EXIT_USAGE
    existing = load_sources(path, set_by=settings.sources_from,
                            default_interval_s=settings.collect.default_interval_s,
                            min_interval_s=settings.collect.min_interval_s)
    plan = plan_import(feeds, existing, category=args.category)
    for skip in plan.skipped:
        print(f"tidings: {label}: {skip}", file=sys.stderr)
    uncategorized = sum(1 for s in plan.specs if not s.category)
    if args.append and uncategorized:
        # Not only feeds in no folder: a folder titled without Latin letters or digits
        # ("Новости", "政治") gives no slug either, and they were said to be in none.
        print(f"tidings: error: {uncategorized} feed(s) would have no category (in no folder, "
              "or one whose title gives no slug): pass --category C, or import without "
              "--append and fill them in; "
              f"{path} left as it was", file=sys.stderr)
        return EXIT_USAGE
    if not plan.specs:
        print(f"tidings: nothing to add from {label} ({len(plan.skipped)} skipped)", file=sys.stderr)
        # 1 only when no feed was usable: a rerun, every feed already there, succeeded.
        return 0 if plan.already else 1
    if not args.append:
        print("\n\n".join(source_table(s) for s in plan.specs))
        note = (f"; {uncategorized} need a category filled in (or pass --category)"
                if uncategorized else "")
        print(f"tidings: {counted(len(plan.specs), 'source', 'sources')} from {label}, to add to {path} (or rerun "
              f"with --append){note}", file=sys.stderr)
        return 0
    target = Path(path).resolve()  # a symlink's file is the one replaced; the link stays
    original = target.read_bytes()
    new = appended(original, plan.specs, opml_name=label, on=datetime.now(UTC).date())
    tmp: Path | None = write_beside(target, new)
    try:
        os.chmod(tmp, target.stat().st_mode & 0o7777)
        # Loaded as the collector will load it, before it replaces anything.
        if (problem := _load_problem(settings, tmp)) is not None:
            print(f"tidings: error: {path} would not load with these tables: {problem}; "
                  "left as it was", file=sys.stderr)
            return EXIT_USAGE
        if target.read_bytes() != original:  # an operator's edit meanwhile is not overwritten
            print(f"tidings: error: {path} changed while importing; left as it was, run the "
                  "command again", file=sys.stderr)
            return 1
        os.replace(tmp, target)
        tmp = None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    print(f"added {counted(len(plan.specs), 'source', 'sources')} to {path}")
    return 0


def _load_problem(settings, path: Path) -> str | None:
    """Why the sources file at `path` would not load (message, line, key), else None."""
    from aggregator.errors import ConfigError
    from aggregator.sources import load_sources

    log = logging.getLogger("tidings.sources")
    was, log.disabled = log.disabled, True  # its warnings came with the first load already
    try:
        load_sources(path, default_interval_s=settings.collect.default_interval_s)
    except ConfigError as e:  # its file is the temporary one: the message names no file
        where = f" (line {e.line}{f', key {e.key!r}' if e.key else ''})" if e.line else ""
        return f"{e.message}{where}"
    finally:
        log.disabled = was
    return None


def export_opml(settings, args) -> int:
    """`sources export-opml`: the sources a feed reader can read, as OPML 2.0; each source left
    out is named on stderr. A file is written beside its name and renamed into place."""
    from datetime import UTC, datetime

    from aggregator.opml import export_opml as opml_of
    from aggregator.sources import load_sources

    specs = load_sources(settings.sources_file, set_by=settings.sources_from,
                         default_interval_s=settings.collect.default_interval_s,
                         min_interval_s=settings.collect.min_interval_s)
    doc, left_out = opml_of(specs, created_at=datetime.now(UTC))
    for line in left_out:
        print(f"tidings: left out {line}", file=sys.stderr)
    exported = len(specs) - len(left_out)
    target = None if args.output == "-" else Path(args.output).resolve()
    if (problem := output_problem(args.output, target, args.force)) is not None:
        print(f"tidings: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if target is None:
        sys.stdout.buffer.write(doc)
        sys.stdout.flush()
        print(f"tidings: exported {counted(exported, 'source', 'sources')}", file=sys.stderr)
        return 0
    try:
        if target.exists() and not target.is_file():  # a pipe or a device: written to
            target.write_bytes(doc)
        else:
            os.replace(write_beside(target, doc), target)
    except OSError as e:
        print(f"tidings: error: cannot write {args.output}: {e.strerror}", file=sys.stderr)
        return write_failure_status(e)
    print(f"exported {counted(exported, 'source', 'sources')} to {target}")
    return 0


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.2f}%"


def stats_text(report: dict) -> str:
    """`tidings stats` as tables: the days, then the top sites, stories and pages (pure)."""
    days = [["DAY", "IMPRESSIONS", "CLICKS", "READS", "CTR"]]
    days += [[d["date"], str(d["impressions"]), str(d["clicks"]), str(d["reads"]), _percent(d["ctr"])]
             for d in report["days"]]
    t = report["total"]
    days.append(["total", str(t["impressions"]), str(t["clicks"]), str(t["reads"]), _percent(t["ctr"])])
    out = [_table(days)]
    if report["sites"]:
        sites = [["SITE", "IMPRESSIONS", "CLICKS", "CTR"]]
        sites += [[s["site"] or "-", str(s["impressions"]), str(s["clicks"]), _percent(s["ctr"])]
                  for s in report["sites"]]
        out.append(_table(sites))
    if report["stories"]:
        stories = [["ID", "IMPRESSIONS", "CLICKS", "CTR", "SITE", "TITLE"]]
        stories += [[str(s["id"]), str(s["impressions"]), str(s["clicks"]), _percent(s["ctr"]),
                     s["site"] or "-", s["title"][:70]] for s in report["stories"]]
        out.append(_table(stories))
    if report["pages"]:
        # The URL last and whole: columns after a long one would be pushed out of sight.
        pages = [["IMPRESSIONS", "CLICKS", "CTR", "PAGE"]]
        pages += [[str(p["impressions"]), str(p["clicks"]), _percent(p["ctr"]), p["page"]]
                  for p in report["pages"]]
        out.append(_table(pages))
    return "\n\n".join(out)


async def cmd_stats(settings, args) -> int:
    """The report of GET /v1/stats, read from the database directly (no API needed)."""
    from datetime import UTC, datetime

    from api.services import build
    from api.stats import stats_period, stats_report

    since, until = stats_period(datetime.now(UTC), args.days)
    svc = await build(settings, create_database=False)
    try:
        if args.site and (problem := await stored_site_problem(svc.store, args.site)):
            # The API's `site=` answers such a site with zeros, as any filter matching nothing.
            print(f"tidings: error: {problem}", file=sys.stderr)
            return EXIT_USAGE
        counts = await svc.store.widget_stats(since, until, site=args.site)
    finally:
        await svc.close()
    report = stats_report(counts, since, until)
    print(json.dumps(report, indent=2) if args.json else stats_text(report))
    return 0


async def cmd_retention(settings, args) -> int:
    """One retention run, the one the long-running roles run each hour (`api.runner.retention`):
    a deployment driven by one-shots (cron's `collect --once`) ran it never, and kept every
    story and event for ever whatever `[retention]` said. Its removals reach the running
    processes' indexes as the job's do: the database logs each deleted story in the change
    log (a trigger), which they follow, and a saved index replays it at its next start."""
    from api.runner import RETENTION_LEASE_S, retention, retention_preview
    from api.services import build

    svc = await build(settings, create_database=False)
    try:
        if args.dry_run:
            report = await retention_preview(svc)
        else:
            # every_s=0: the operator's run does not wait for the job's hour, only for a run
            # under way elsewhere (the same deletions twice at once).
            report = await retention(svc, every_s=0)
            if report is None:
                print("tidings: error: another process is running retention now; try again "
                      "once it is done (the claim of a run whose process died runs out within "
                      f"{RETENTION_LEASE_S // 60} min)", file=sys.stderr)
                return 1
    finally:
        await svc.close()
    if args.json:
        print(json.dumps(retention_json(report, dry_run=args.dry_run), indent=2))
    else:
        print(retention_text(report, settings.retention, dry_run=args.dry_run))
    return 0


def retention_json(report, *, dry_run: bool) -> dict:
    """`retention --json` (pure): how many of each kind went (would go), and each kind's
    cutoff (what is older goes; null: kept for ever)."""
    from api.cards import iso

    c = report.cutoffs
    return {"dry_run": dry_run, "stories": report.stories, "events": report.events,
            "readers": report.readers, "event_days": report.event_days,
            "change_log": report.change_log,
            "before": {"stories": iso(c.stories_since), "events": iso(c.events_since),
                       "readers": iso(c.events_since), "event_days": c.event_days_from.isoformat(),
                       "change_log": iso(c.changes_since)}}


def retention_text(report, r, *, dry_run: bool) -> str:
    """`retention`'s table (pure): one row a kind, with its count and why (`r`: the
    `[retention]` settings it ran with)."""
    c = report.cutoffs
    verb = "would go" if dry_run else "removed"

    def at(t) -> str:
        return t.strftime("%Y-%m-%d %H:%M UTC")

    def row(what: str, n: int, since, days: int, key: str, of: str) -> list[str]:
        if since is None:
            return [what, "-", f"kept for ever ([retention] {key} = 0)"]
        return [what, f"{n:,}", f"{verb}: {of} before {at(since)} ({key} = {days})"]

    rows = [["KIND", "COUNT", ""],
            row("stories", report.stories, c.stories_since, r.stories_days, "stories_days",
                "stories dated"),
            row("events", report.events, c.events_since, r.events_days, "events_days",
                "reader events"),
            row("readers", report.readers, c.events_since, r.events_days, "events_days",
                "readers with no preferences or event since, last seen"),
            ["report days", f"{report.event_days:,}",
             f"{verb}: days before {c.event_days_from.isoformat()} (the report's {MAX_DAYS} days)"],
            row("change log", report.change_log, c.changes_since, r.change_log_days,
                "change_log_days", "entries logged")]
    lines = _table(rows).splitlines()
    if report.stories and not dry_run:
        lines.append("The stories' own events and vectors went with them; running processes "
                     "drop them from their indexes within seconds (they follow the change log).")
    if dry_run:
        lines.append("Dry run: nothing was deleted.")
    return "\n".join(lines)


async def cmd_takedown(settings, args) -> int:
    """Takedowns go to the database: running processes drop the stories from their indexes
    within a second or two (the change log), and collectors and imports skip them."""
    from aggregator.canonical import canonical_url, spelling_key
    from aggregator.normalize import MAX_URL_CHARS
    from api.services import build

    urls: list[str] = []
    for u in getattr(args, "urls", []):
        try:
            urls.append(canonical_url(u))
        except ValueError as e:
            print(f"tidings: error: {e}", file=sys.stderr)
            return EXIT_USAGE
        if len(urls[-1]) > MAX_URL_CHARS:
            # No story has one (normalize refuses them), and on PostgreSQL the takedowns'
            # key index refused the row: a traceback with the SQL and the whole URL.
            print(f"tidings: error: a URL of {len(urls[-1])} characters: no story's is longer "
                  f"than {MAX_URL_CHARS}", file=sys.stderr)
            return EXIT_USAGE
    svc = await build(settings, create_database=False)
    store = svc.store
    try:
        if args.takedown_command == "add":
            removed = await store.take_down(urls, reason=args.reason)
            # Spellings of one page (http and https, a trailing slash) are one URL taken down.
            named = len({spelling_key(u) for u in urls})
            print(f"taken down: {counted(named, 'URL', 'URLs')}; "
                  f"{counted(len(removed), 'stored story', 'stored stories')} removed "
                  f"(copies included); collectors and imports will skip them")
        elif args.takedown_command == "lift":
            n = await store.lift_takedowns(urls)
            if not n:
                print("tidings: error: none of these URLs is taken down", file=sys.stderr)
                return EXIT_USAGE
            print(f"lifted: {counted(n, 'URL', 'URLs')} (copies included); the stories come back with their "
                  "feeds' next rounds")
        else:
            everything = await store.takedowns()
            rows = [t for t in everything if not t.variant_of]  # one line a URL taken down
            spellings: dict[str, list[str]] = {}
            for t in everything:
                if t.variant_of:
                    spellings.setdefault(t.variant_of, []).append(t.url)
            if args.json:
                from api.cards import iso

                print(json.dumps([{"url": t.url, "reason": t.reason, "at": iso(t.at),
                                   "spellings": sorted(spellings.get(t.url, []))}
                                  for t in rows], indent=2))
            else:
                table = [["URL", "TAKEN DOWN", "REASON"]]
                table += [[t.url, t.at.strftime("%Y-%m-%d %H:%M"), t.reason] for t in rows]
                print(_table(table))
    finally:
        await svc.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
