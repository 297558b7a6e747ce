"""Long-running roles: `run` (all in one), `serve`, `collect`, `index --watch`.

APScheduler only ticks; what is due is decided by the database (sources' next_check_at,
the embedding backlog, the index change log). Each job runs alone (max_instances=1) and a
failing tick is logged and retried on the next one, never kills the process. A tick that
runs on past its job's stuck-after (api.jobhealth) is reported, not cut: once in the log,
in /healthz and in /metrics, with the ticks skipped meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import gc
import json
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from aggregator.errors import ConfigError, NoSources, StoreError
from aggregator.model import SourceSpec
from aggregator.settings import RetentionSettings, Settings
from aggregator.sources import FILE_CLOCK_SLACK_S, load_sources, written_at
from aggregator.store import database_unavailable, driver_reason
from aggregator.urlsecrets import masked_secrets
from api.jobhealth import JobHealth, away_line, back_line
from api.opslistener import OpsListener
from api.services import Services, build, recipe_adopter
from api.stats import MAX_DAYS
from recommender.embed import warm_up
from recommender.indexer import LEAD_CHECK_S

log = logging.getLogger("tidings.run")
# How often an API-only process re-reads the sources' weights from the database.
WEIGHTS_CHECK_S = 30.0


class SourcesWatcher:
    """Re-reads sources.toml when it changes; a broken edit keeps the previous sources."""

    def __init__(self, svc: Services, path: Path, clock=time.time):
        self.svc, self.path, self.clock = svc, path, clock
        self.mtime: int | None = None  # of the file last read, in ns; None: read it again
        self.unreadable = False  # said once, not at every look until the file is back
        # The last look found the file broken: its fix is said too. Otherwise an operator
        # who had seen `sources.invalid` and corrected the file saw nothing more, whether
        # the fix was taken or not (a fix that restores the old sources syncs nothing).
        self.invalid = False

    async def check(self, *, strict: bool = False) -> None:
        """`strict` (a collecting process's start): a bad file is the ConfigError itself, so
        the process stops with it (file, line, key) instead of collecting from whatever
        sources the database held; later edits keep the previous sources."""
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError as e:
            if strict:
                raise ConfigError(f"cannot read: {e.strerror}", file=str(self.path)) from None
            if not self.unreadable:
                log.error("sources.unreadable file=%s error=%s", self.path, e)
            self.unreadable = True
            return
        if self.unreadable:
            log.info("sources.readable file=%s", self.path)
        self.unreadable = False
        if mtime == self.mtime:
            return
        self.mtime = None if written_just_now(mtime, self.clock()) else mtime
        file_at = written_at(self.path)  # before the read: an edit during it is the newer
        try:
            specs = await sources_to_sync(self.svc, self.path)
        except ConfigError as e:
            if strict:
                raise
            # Masked: the line a bad URL is quoted in may carry a private feed's key.
            log.error("sources.invalid keeping previous sources: %s", masked_secrets(str(e)))
            self.invalid = True
            return
        except Exception:
            self.mtime = None  # the database away while it counted the sources: read it again
            raise
        try:
            changes = await self.svc.store.sync_sources(
                specs, written_at=file_at, min_interval_s=self.svc.settings.collect.min_interval_s)
            await reload_weights(self.svc)
        except Exception:
            # Not applied (the database away a moment): the next look tries again. Kept as
            # seen, the edit waited for the file's next change, or a restart.
            self.mtime = None
            raise
        kept = changes.pop("kept", 0)
        if kept:
            # Two collecting machines with different files: say so, rather than take turns.
            log.warning("sources.stale file=%s kept=%d: sources edited in the database after "
                        "this file was written (by another machine's sources.toml) keep that "
                        "edit; copy the newer file here", self.path, kept)
        if changes.get("retired") and not specs:
            # `source = []`, meant (sources_to_sync refuses a file with no [[source]] at all):
            # still not a line to find among the info ones.
            log.warning("sources.retired_all file=%s retired=%d: the file names no source, "
                        "nothing is collected until it does", self.path, changes["retired"])
        if self.invalid:
            log.info("sources.valid again file=%s sources=%d %s", self.path, len(specs), fields(changes))
            self.invalid = False
        elif any(changes.values()):
            log.info("sources.synced %s", fields(changes))


async def sources_to_sync(svc: Services, path: Path) -> list[SourceSpec]:
    """The sources of the file at `path`, for a collecting process to apply. A file that names
    no [[source]] at all while the database holds configured sources is refused (ConfigError):
    an editor's save caught between truncate and write, or a file emptied by mistake, retired
    every source with one info line, `sources.synced retired=N`. An operator who means it
    writes `source = []`; a save caught midway is read again at its next change."""
    settings = svc.settings
    try:
        return load_sources(path, default_interval_s=settings.collect.default_interval_s,
                            min_interval_s=settings.collect.min_interval_s,
                            set_by=settings.sources_from, refuse_empty=True)
    except NoSources as e:
        configured = len(await svc.store.source_sections())
        if not configured:
            return []  # nothing to retire: a new install's empty file
        raise ConfigError(f"{e.message}: applied, it would retire all {configured} configured "
                          "sources, so they are kept; to retire every source on purpose, "
                          "write `source = []` in it", file=e.file) from None


def written_just_now(mtime_ns: int, now_s: float) -> bool:
    """Whether a file's mtime is within the grain of the file's clock of `now_s` (pure): a
    write later in the same tick (a few ms on ext4, 1 or 2 s on FAT, SMB and some bind
    mounts) leaves the same mtime. The watcher skipped a look whose mtime it had read, so
    the second write of a truncate-then-write save, or of a script's two, was never applied;
    such a file is read again at the next look (as git treats its "racily clean" entries).
    A time far in the future (a copy from a machine whose clock ran ahead) is trusted, or the
    file was read, and its warnings logged, at every look until this clock caught up."""
    return abs(mtime_ns / 1e9 - now_s) <= FILE_CLOCK_SLACK_S


def fields(info: dict) -> str:
    """A dict as a log line's `key=value` fields, as every other line writes them: printed as
    a dict (`{'added': 1, 'changed': 0}`), a line matched no `added=` or `indexed=` search."""
    return " ".join(f"{key}={value}" for key, value in info.items())


async def reload_weights(svc: Services) -> None:
    """The sources' weights as the database holds them, into the object related blocks and
    feeds share (replaced in place: each kept a reference). An API-only replica runs this on
    a timer: the collector that syncs the sources file is another process."""
    if svc.related is not None and svc.related.source_weights.replace(await svc.store.source_weights()):
        log.info("sources.weights_changed")


def db_away(e: Exception) -> str | None:
    """The one-line reason when `e` is the database being away (retried at the next tick),
    else None. Most store calls raise the driver's own errors (a bare `DBAPIError` from
    asyncpg), not StoreError: logged with log.exception, an outage cost a traceback per job
    per tick (tests/cluster/test_db_outage_collect.py)."""
    if isinstance(e, StoreError) or database_unavailable(e):
        return (str(e).splitlines() or [type(e).__name__])[0]
    return None


def log_failure(name: str, e: Exception, health: JobHealth | None = None) -> None:
    """A failed tick: the database being away in one line, anything else with its traceback.
    With `health` (a job that ticks), an outage is said at its first failure, then at most
    once a minute (api.jobhealth.Outage); `log_ok` says its end."""
    reason = db_away(e)
    if reason is None:
        log.error("%s.failed", name, exc_info=e)
        return
    if health is None:  # a one-off call: nothing repeats it
        log.warning("%s.db_unavailable %s", name, reason)
        return
    away = health.away(name)
    if away is not None:  # else said less than a minute ago
        log.warning(away_line(name, away, health.clock(), reason))


def log_ok(name: str, health: JobHealth) -> None:
    """A tick succeeded: counted in `health`, and the end of a database outage said."""
    ended = health.ok(name)
    if ended is not None:
        log.info(back_line(name, ended, health.clock()))


async def _guard(name: str, job, health: JobHealth | None = None, *, tick: bool = False) -> None:
    """One tick of a job: errors are logged (and counted in `health`), the next tick tries
    again. `tick`: a scheduled tick, whose time running is watched (`watch_jobs`); the
    follows the index loop starts between them are not (they wait on the scheduled one)."""
    if tick and health is not None:
        health.started(name)
    try:
        await job()
        if health is not None:
            log_ok(name, health)
    except asyncio.CancelledError:
        # The process is stopping (a signal, or the API's port taken) and cancels the jobs
        # under way: their end, not a failure. Raised on, APScheduler logged each with a
        # traceback ("Job ... raised an exception"), after the one-line error (DESIGN 4.1).
        # Nothing awaits a job's task for its cancellation, so it is not propagated.
        log.debug("%s.cancelled", name)
    except Exception as e:
        log_failure(name, e, health)
        if health is not None:
            health.failed(name)
    finally:
        if tick and health is not None:
            ran = health.ended(name)
            if ran.reported and ran.running_since is not None:
                log.warning("%s.unstuck: the tick ended after %.0f s, %d ticks skipped meanwhile",
                            name, (health.clock() - ran.running_since).total_seconds(), ran.skipped)


# How often the scheduled ticks under way are looked at: stuck-after is 15 min at least.
STUCK_CHECK_S = 30.0


def report_stuck(health: JobHealth) -> list[str]:
    """Log each tick newly found stuck, once (its job's metric and /healthz say it too, for
    as long as it runs); returns their jobs."""
    found = health.newly_stuck()
    for name, state in found:
        assert state.running_since is not None and state.stuck_after_s is not None
        log.error("%s.stuck: its tick has run %.0f s (stuck after %.0f s) and %d ticks were "
                  "skipped meanwhile; it is not cut: a database connection that went silent "
                  "is the usual cause (docs: README, Operations, Health)", name,
                  (health.clock() - state.running_since).total_seconds(), state.stuck_after_s,
                  state.skipped)
    return [name for name, _ in found]


async def watch_jobs(health: JobHealth, every_s: float | None = None) -> None:
    """Report stuck ticks until cancelled. Its own task, not a scheduled job: it reads no
    database, and a job of the scheduler could be skipped by what it watches."""
    while True:
        await asyncio.sleep(every_s if every_s is not None else STUCK_CHECK_S)
        report_stuck(health)


def schedule(sched: AsyncIOScheduler, health: JobHealth, name: str, job, seconds: float,
             **start) -> None:
    """Tick `job` every `seconds`, one tick at a time, its ticks counted and watched in
    `health` (add `count_skipped` to the scheduler once). `start`: next_run_time, to start
    other than one interval from now (APScheduler 3 reads next_run_time=None as "paused")."""
    health.watch(name, seconds)
    # The id is the job's name: a skipped tick's event names it (`count_skipped`).
    sched.add_job(_guard, "interval", args=[name, job, health], kwargs={"tick": True},
                  id=name, name=name, seconds=seconds, max_instances=1,
                  coalesce=True, misfire_grace_time=60, **start)


def count_skipped(health: JobHealth):
    """An APScheduler listener: a tick skipped because the job's last one still runs
    (max_instances=1) is counted against the job. APScheduler's own warning, one line per
    skipped tick (each second for `follow`), stays silenced (api/cli.py); `report_stuck`
    says the count once the tick under way is stuck, `_guard` again when it ends."""
    def listener(event: JobSubmissionEvent) -> None:
        health.skipped(event.job_id)
    return listener


# Retention runs once an hour in the cluster and ticks every RETENTION_TICK_S in each process.
RETENTION_EVERY_S = 3600
RETENTION_TICK_S = 600
# A run's claim: shorter than a tick, so a failed run is tried again at the next one, and
# renewed every third of it while the run goes on (`_keep_claim`). A run usually takes far
# less (213,600 stories: 30 s), but the first run after `stories_days` is lowered, or one on a
# busy database, can take longer, and an unrenewed claim then let a second process start the
# same deletions beside it.
RETENTION_LEASE_S = 300


@dataclass(frozen=True)
class RetentionCutoffs:
    """What one retention run keeps, as of its start: stories collected (or published) since
    `stories_since`, events since `events_since`, the report's days from `event_days_from`,
    change log entries logged since `changes_since`; None keeps all of that kind."""

    stories_since: datetime | None
    events_since: datetime | None
    event_days_from: date
    changes_since: datetime | None


def retention_cutoffs(r: RetentionSettings, now: datetime) -> RetentionCutoffs:
    """The cutoffs of `[retention]` as of `now` (0 days keeps for ever). Pure.

    The report's counts per day (`event_days`) outlive the events they were counted from
    (`events_days` may be shorter than a report reaches), and keep the longest report's days,
    and the day before (a report asked just before midnight); none is personal."""
    def before(days: int) -> datetime | None:
        return now - timedelta(days=days) if days else None

    return RetentionCutoffs(before(r.stories_days), before(r.events_days),
                            (now - timedelta(days=MAX_DAYS)).date(), before(r.change_log_days))


@dataclass(frozen=True)
class RetentionReport:
    """What a retention run removed (or, a dry run, would remove)."""

    cutoffs: RetentionCutoffs
    stories: int = 0
    events: int = 0
    event_days: int = 0
    change_log: int = 0
    readers: int = 0  # readers left with nothing: no events, no preferences (events' cutoff)


RETENTION_KEYS = tuple(f.name for f in dataclasses.fields(RetentionSettings))


def retention_json_of(r: RetentionSettings, machine: str | None = None, owner: str = "") -> str:
    """`[retention]` as a run records it in the database (`job_locks.settings`), with the
    run's machine id (api.machineid) where it has one, and the process that ran it (`owner`,
    host:pid): the row's own `owner` is the last claim's, which a claim that failed
    (the process killed mid-run) leaves naming a process whose run was never recorded."""
    return json.dumps(dataclasses.asdict(r) | ({"machine": machine} if machine else {})
                      | ({"owner": owner} if owner else {}), sort_keys=True)


def retention_of_json(text: str) -> RetentionSettings:
    """A recorded run's settings; a key this version does not know is left out, and one it
    does not find keeps its default. (So the `machine` a newer run records is read as
    before by a version that knows none, and a version that does reads older runs.)"""
    got = json.loads(text)
    return RetentionSettings(**{k: int(got[k]) for k in RETENTION_KEYS if k in got})


def recorded_field(text: str, key: str) -> str | None:
    """A text a recorded run's settings hold beside `[retention]` (`retention_json_of`:
    `machine`, `owner`); None where the run recorded none (a version before them, or a
    process whose data dir was read-only)."""
    got = json.loads(text).get(key)
    return got if isinstance(got, str) and got else None


def machine_of_json(text: str) -> str | None:
    """The machine id a recorded run recorded, if any."""
    return recorded_field(text, "machine")


def deletes_more(mine: RetentionSettings, last: RetentionSettings) -> list[str]:
    """The `[retention]` keys by which `mine` deletes what `last` keeps (a day count where
    `last` keeps for ever, or a shorter one). Pure."""
    def more(new: int, old: int) -> bool:
        return new != 0 and (old == 0 or new < old)

    return [k for k in RETENTION_KEYS if more(getattr(mine, k), getattr(last, k))]


def same_host(owner: str, other: str) -> bool:
    """Whether two `host:pid` owners are processes of one machine (pure)."""
    return owner.rpartition(":")[0] == other.rpartition(":")[0] != ""


def same_machine(owner: str, machine: str | None, other: str, other_machine: str | None) -> bool:
    """Whether two processes (`host:pid` owners, with their machine ids where known) are of
    one machine: by the ids when both have one, else by the host names (pure).

    The ids, not the host names, where both have one: a container recreated with a new host
    name (Docker's default is the container's id; a Kubernetes pod's changes each rollout) on
    the same data dir is the same deployment, and two machines that were given one host
    name, each with its own data dir, are two. The id is the data dir's, so machines that
    share one data dir (a network file system) are one machine here; that is still right
    where it matters: this question is "is a lowered `[retention]` the edit of the operator
    of the machine that ran last?", and a shared data dir is one deployment's, with one
    operator (the README has each machine keep its own data dir; a copied one, with its
    `machine-id`, is the case to avoid: delete the file in the copy)."""
    if machine and other_machine:
        return machine == other_machine
    return same_host(owner, other)


def settings_text(r: RetentionSettings) -> str:
    return " ".join(f"{k}={getattr(r, k)}" for k in RETENTION_KEYS)


async def retention_agrees(svc: Services) -> tuple[bool, str | None]:
    """Whether this process may run the hourly job with its own `[retention]`: yes unless they
    delete more than the last run's and that run was another machine's (`same_machine`: by the
    machine ids, which the runs record, else by the host name of `owner`, host:pid).
    An edit of this machine's settings applies as before: on one machine, lowering a day
    count is the operator's choice, not a disagreement.

    The job runs with the settings of whichever process takes it, so one machine set to 30
    days deleted for a cluster whose others keep stories for ever. Deleting is not undone:
    such settings wait for the operator to confirm them (`tidings retention` runs them and
    records them); settings that keep more run (and are recorded), so a cluster that
    disagrees keeps the most. Either way the difference is logged, naming both: a refusal
    here, at each tick; settings that keep more by `retention` once it has claimed the run,
    returned as the second item (every process ticks every 10 minutes and one runs an hour:
    logged here, each tick of each process said "run with these" while none ran)."""
    last = await svc.store.job_last_run("retention")
    if last is None:
        return True, None  # the first run in this database
    recorded, claimant = last
    # The process that ran it, as the run recorded it; a run of a version that recorded none
    # goes by the row's owner (the last claim's), as before.
    owner = recorded_field(recorded, "owner") or claimant
    theirs, mine = retention_of_json(recorded), svc.settings.retention
    if theirs == mine:
        return True, None
    wider = deletes_more(mine, theirs)
    machine = machine_of_json(recorded)
    by = f"{owner}, machine {machine}" if machine else owner  # what "another machine's" went by
    if wider and same_machine(owner, machine, svc.owner, svc.machine):
        log.info("retention.settings_changed: [retention] %s here, %s at the last run (by %s, "
                 "this machine)", settings_text(mine), settings_text(theirs), by)
        return True, None
    if wider:
        log.warning("retention.settings_differ: not run: this process's [retention] %s deletes "
                    "more (%s) than the last run's %s (by %s); make [retention] the same on "
                    "every machine, or run `tidings retention` here to apply these",
                    settings_text(mine), ", ".join(wider), settings_text(theirs), by)
        return False, None
    return True, (f"retention.settings_differ: this process's [retention] {settings_text(mine)} "
                  f"keeps more than the last run's {settings_text(theirs)} (by {by}): run with "
                  "these, which the other processes will not apply until the operator confirms "
                  "theirs")


async def retention(svc: Services, now: datetime | None = None, *,
                    every_s: int = RETENTION_EVERY_S) -> RetentionReport | None:
    """Run retention if this process may (once per `every_s` in the cluster, one run at a
    time, with settings that delete no more than the last run's: `retention_agrees`); None
    when it may not, or another process ran it within `every_s`, or runs it now. `tidings
    retention` passes 0: the operator's run waits for no hour, only for a run under way, and
    its settings are the operator's confirmation."""
    now = now or datetime.now(UTC)
    agrees, differs = await retention_agrees(svc) if every_s else (True, None)
    if not agrees:
        return None
    if not await svc.store.claim_job("retention", owner=svc.owner, every_s=every_s,
                                     lease_s=RETENTION_LEASE_S, now=now):
        return None  # another process of the cluster ran it within the hour, or runs it now
    if differs:
        log.warning(differs)
    keeper = asyncio.create_task(_keep_claim(svc, "retention", now, RETENTION_LEASE_S))
    try:
        report = await _retention_run(svc, now)
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
    # Only now: a run that raised before this is claimed again once its lease runs out.
    await svc.store.job_done("retention", owner=svc.owner, started_at=now,
                             settings=retention_json_of(svc.settings.retention, svc.machine,
                                                       svc.owner))
    return report


async def _keep_claim(svc: Services, name: str, claimed_at: datetime, lease_s: int) -> None:
    """Renew the claim of job `name` every third of its lease until cancelled. Time runs on
    from `claimed_at` (the run's own clock, as the claim's). A renewal that fails (the
    database away for a moment) is tried again at the next; a claim lost stops the renewals."""
    started = time.monotonic()
    while True:
        await asyncio.sleep(lease_s / 3)
        at = claimed_at + timedelta(seconds=time.monotonic() - started)
        try:
            if not await svc.store.renew_job(name, owner=svc.owner, lease_s=lease_s, now=at):
                log.warning("%s.claim_lost: another process took the job over; this run "
                            "goes on to its end", name)
                return
        except Exception as e:  # the run itself meets the same database and says so
            log.info("%s.claim_renewal_failed: %s", name, driver_reason(e))


async def _retention_run(svc: Services, now: datetime) -> RetentionReport:
    """Deletes what `retention_cutoffs` leaves out. The database logs each story's removal in
    the change log (a trigger), which every running process's index follows."""
    c = retention_cutoffs(svc.settings.retention, now)
    stories = events = readers = changes = 0
    if c.stories_since:
        stories = len(await svc.store.delete_stories_before(c.stories_since))
        if stories:
            log.info("retention.stories removed=%d", stories)
    if c.events_since:
        events = await svc.store.delete_events_before(c.events_since)
        if events:
            log.info("retention.events removed=%d", events)
        # After the events: the readers whose last events just went.
        readers = await svc.store.delete_idle_readers(c.events_since)
        if readers:
            log.info("retention.readers removed=%d", readers)
    # Whatever the settings: a forgotten reader's id, kept a minute to drop their events still
    # on their way, is no data anyone chose to keep.
    await svc.store.prune_reader_deletions(now)
    days = await svc.store.delete_event_days_before(c.event_days_from)
    if days:
        log.info("retention.event_days removed=%d", days)
    if c.changes_since:
        # After the stories: their removals just logged are recent, and kept.
        changes = await svc.store.prune_changes_before(c.changes_since)
        if changes:
            log.info("retention.change_log removed=%d horizon=%d", changes,
                     await svc.store.change_horizon())
    return RetentionReport(c, stories, events, days, changes, readers)


async def retention_preview(svc: Services, now: datetime | None = None) -> RetentionReport:
    """What a retention run at `now` would remove, removing nothing (`retention --dry-run`)."""
    c = retention_cutoffs(svc.settings.retention, now or datetime.now(UTC))
    store = svc.store
    return RetentionReport(
        c,
        await store.count_stories_before(c.stories_since) if c.stories_since else 0,
        await store.count_events_before(c.events_since) if c.events_since else 0,
        await store.count_event_days_before(c.event_days_from),
        await store.count_changes_before(c.changes_since) if c.changes_since else 0,
        await store.count_idle_readers(c.events_since) if c.events_since else 0)


def refuse_taken_port(host: str, port: int) -> None:
    """A ConfigError (exit 2) naming the address and the settings to change when the API
    cannot listen on it, said before the model and the index load. A second `tidings run`
    (`make demo` beside `make run`) loaded both, ~20 s, then died on uvicorn's raw
    "[Errno 98] address already in use", exit 3. Bound and closed again at once, as uvicorn
    binds it (SO_REUSEADDR: a port in TIME_WAIT after a restart is free). Port 0 (any free
    port) cannot be taken."""
    if not port:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as e:
        taken = e.errno == errno.EADDRINUSE
        why = ("already in use (another `tidings run` or `serve`, such as `make run`?)" if taken
               else os.strerror(e.errno) if e.errno else str(e))
        raise ConfigError(f"cannot listen on {host}:{port}: {why}; choose another with --port, "
                          "or [api] host and port (TIDINGS_API_HOST, TIDINGS_API_PORT)") from None


async def run_roles(settings: Settings, *, serve: bool, collect: bool, index: bool,
                    host: str | None = None, port: int | None = None,
                    metrics_port: int | None = None,
                    resolver_factory=None, ready: asyncio.Event | None = None) -> None:
    """`metrics_port` (`--metrics-port`): a process that does not serve listens for /healthz
    and /metrics there instead of `[metrics] port` (0: not at all)."""
    if collect:
        # A bad sources file stops a collecting process before the model loads (the strict
        # check below syncs it): it was said only after the embedder was built, ~20 s into a
        # first start.
        # (Its warnings come with that check.)
        load_sources(settings.sources_file, default_interval_s=settings.collect.default_interval_s,
                     set_by=settings.sources_from)
    api_host = host or settings.api.host
    api_port = port if port is not None else settings.api.port
    if serve:
        refuse_taken_port(api_host, api_port)
    svc = await build(settings, serve=serve, index=index, collect=collect,
                      owner_of_files=index, resolver_factory=resolver_factory)
    watcher = SourcesWatcher(svc, settings.sources_file)
    # The sources file is the collectors' config: an API-only replica on another machine
    # (its own or the shipped sources.toml) synced it into the shared database and retired
    # every source it did not hold. Serving reads sources and weights from the database.
    if collect:
        try:
            await watcher.check(strict=True)
        except ConfigError:
            await svc.close()
            raise
    if metrics_port is None:
        metrics_port = settings.metrics.port
    ops = None
    if not serve and metrics_port:  # a serving process has both paths on the API's port
        # Before any job starts, so that each is counted, and a port taken stops the process
        # before it has work under way.
        ops = OpsListener(svc, [role for role, on in (("collect", collect), ("index", index)) if on])
        try:
            await ops.start(settings.metrics.host, metrics_port)
        except OSError:
            await ops.stop()
            await svc.close()
            raise
    if collect:
        # The parse workers start beside the corpus and the model; the first round waits for
        # them (a failure to start them leaves each round its own pool, as one-off rounds do).
        # Logged if it fails, not a job of /healthz: it runs once, so it could never be
        # "failing" (3 failed ticks), and it was listed among the jobs as if it ticked.
        workers_started = asyncio.create_task(_guard("collect.parse_workers", svc.collector.start))
    if svc.corpus is not None:
        info = await svc.corpus.start()
        log.info("index.loaded %s", fields(info))
    settle_heap()
    sched = AsyncIOScheduler(timezone=UTC)

    def every(name: str, job, seconds: float, *, now: bool = False, delay_s: float = 0) -> None:
        # APScheduler 3 reads next_run_time=None as "paused": pass it only to start early.
        start = {"next_run_time": datetime.now(UTC) + timedelta(seconds=delay_s)} if (now or delay_s) else {}
        schedule(sched, svc.jobs, name, job, seconds, **start)

    sched.add_listener(count_skipped(svc.jobs), EVENT_JOB_MAX_INSTANCES)

    model_ready = asyncio.Event()
    if not index:
        model_ready.set()
    rounds: set[asyncio.Task] = set()  # the collection round under way
    if collect:
        async def collect_round() -> None:
            await _wait_model(model_ready)
            await workers_started  # never raises: _guard logs a failure
            task = asyncio.current_task()
            rounds.add(task)
            try:
                await svc.collector.run_round()
            finally:
                rounds.discard(task)

        every("collect", collect_round, settings.collect.tick_s, now=True)
        if settings.collect.reload_sources_s:
            every("sources", watcher.check, settings.collect.reload_sources_s)
    loops: list[asyncio.Task] = []
    if index:
        wake = asyncio.Event()
        if svc.collector is not None:
            svc.collector.stored.append(wake.set)
        loops.append(asyncio.create_task(index_loop(svc, settings.index.tick_s, wake, model_ready)))
        save_clock = _SaveClock()
        every("save", lambda: _save_if_dirty(svc, save_clock), 30)
    if svc.corpus is not None:
        every("follow", svc.corpus.follow, min(settings.index.tick_s, 1.0))
    if serve and not index:
        every("recipe", recipe_adopter(svc), LEAD_CHECK_S)
    if serve and not collect:
        every("weights", lambda: reload_weights(svc), WEIGHTS_CHECK_S)
    every("retention", lambda: retention(svc), RETENTION_TICK_S, delay_s=30)
    loops.append(asyncio.create_task(watch_jobs(svc.jobs)))
    sched.start()
    try:
        if serve:
            await _serve(svc, api_host, api_port, ready)
        else:
            if ready:
                ready.set()
            await _wait_for_signal()
    finally:
        if ops is not None:
            await ops.stop()
        sched.shutdown(wait=False)
        stopping = [*loops, *rounds]
        for task in stopping:
            task.cancel()
        # A cancelled claim hands its claims back (Indexer.run, Collector.run_round) before
        # the store closes.
        await asyncio.gather(*stopping, return_exceptions=True)
        if svc.corpus is not None and svc.corpus.owner:
            await svc.corpus.try_save()  # the next start repairs what it could not write
        await svc.close()
        gc.unfreeze()  # a caller that goes on (tests, the ingest benchmark) collects as before


def settle_heap() -> None:
    """Take what start-up left alive (modules, the model, the loaded index) out of the cycle
    collector's walks (`gc.freeze`), once a process is about to serve.

    Each full collection walked all of it, with the event loop stopped: with 100k stories
    ~160k objects, a ~50 ms pause every 2-3 s of feed requests, and the whole of the feed's
    p99 tail (feed benchmark's data, 600 requests: p99 37.7 -> 23.2 ms, full collections
    53 -> 1.4 ms). Safe because what start-up built and is later replaced (the index's state
    on a rebuild or a switch of kind, the crowd on a recount) is freed by reference counting:
    a frozen cycle would never be collected. tests/recommender pin that for the index."""
    gc.collect()  # garbage of start-up goes now rather than being frozen
    gc.freeze()


# How long the first collection round waits for the embedding model to load (see _wait_model).
MODEL_WAIT_S = 60.0


async def _wait_model(ready: asyncio.Event, timeout_s: float = MODEL_WAIT_S) -> None:
    """At start, collection waits (a bounded time) until the indexer's model is loaded.

    Stories collected earlier would only wait in the backlog, and the load (~0.2 s for
    onnxruntime, 2-3 s for OpenVINO's compile on a loaded 2-core machine) would compete for
    the cores with the first round instead of being done when its stories arrive (the
    warm-up, `embed.warm_up`, also compiles the per-core streams and common shapes). Later
    rounds find the event set and do not wait."""
    if not ready.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready.wait(), timeout_s)


async def index_loop(svc: Services, tick_s: float, wake: asyncio.Event,
                     model_ready: asyncio.Event | None = None) -> None:
    """Embed while there is backlog, leased claims back to back (`Indexer.run`), and make each
    saved piece searchable at once. Idle, it sleeps until the collector stores stories
    (`wake`) or a tick passes (stories stored by other processes): a fixed tick left the model
    idle up to tick_s after every collected batch and the corpus up to a second behind the
    vectors."""
    following: set[asyncio.Task] = set()

    def saved(_n: int) -> None:
        if svc.corpus is not None:  # overlaps the next piece's embedding
            task = asyncio.create_task(_guard("follow", svc.corpus.follow, svc.jobs))
            following.add(task)
            task.add_done_callback(following.discard)

    try:  # the session loads before the first story waits on it
        with contextlib.suppress(Exception):
            # Registered before stories arrive: the first claim then finds the recipe's
            # verdict made, instead of queueing a write behind the collector's first round.
            await svc.indexer.may_embed()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(warm_up, svc.embedder)
    finally:
        if model_ready is not None:
            model_ready.set()  # loaded or failed: collection goes on either way
    while True:
        wake.clear()  # stories stored from here on wake the next wait
        done = 0
        try:
            done = await svc.indexer.run(saved=saved, arrived=wake)
            log_ok("index", svc.jobs)
        except Exception as e:
            log_failure("index", e, svc.jobs)
            svc.jobs.failed("index")
        if done:
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), tick_s)


# Index files are saved at most this share of the time: at 1M stories a save writes ~1.9 GB
# (vectors, half floats, lexical index, cards) and takes ~10 s, which every 30 s would keep the
# disk and a core busy a third of the time while stories arrive.
SAVE_SHARE = 0.1


def save_due(now: float, last_end: float | None, last_took_s: float, every_s: float = 30.0,
             share: float = SAVE_SHARE) -> bool:
    """Whether a dirty index should be saved now: `every_s` after the last save, or longer
    when saves are slow, so that saving takes at most `share` of the time."""
    if last_end is None:
        return True
    return now - last_end >= max(every_s, last_took_s / share - last_took_s)


class _SaveClock:
    last_end: float | None = None
    last_took_s: float = 0.0


async def _save_if_dirty(svc: Services, clock: _SaveClock | None = None) -> None:
    if svc.corpus is None or not svc.corpus.dirty:
        return
    loop = asyncio.get_running_loop()
    if clock is not None and not save_due(loop.time(), clock.last_end, clock.last_took_s):
        return
    started = loop.time()
    await svc.corpus.try_save()  # a failure is paced like a save: a full disk is not hammered
    if clock is not None:
        clock.last_end, clock.last_took_s = loop.time(), loop.time() - started


async def _serve(svc: Services, host: str, port: int, ready: asyncio.Event | None) -> None:
    import uvicorn

    from api.app import create_app, server_config

    app = create_app(svc)
    config = server_config(app, host, port, lifespan="off")
    server = uvicorn.Server(config)
    # uvicorn re-raises SIGTERM/SIGINT after its own shutdown, which would kill the process
    # before the index is saved; we take the signals and ask it to exit instead.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    async def announce():
        while not server.started:
            await asyncio.sleep(0.05)
        # Said once bound, with the port bound: `[api] port = 0` ("any free port") was
        # logged as "http://127.0.0.1:0", and the operator had no way to learn the port
        # (`serve --workers N` names it likewise, api/workers.py).
        bound = [s.getsockname()[1] for srv in server.servers for s in srv.sockets]
        log.info("api.listening http://%s:%d", f"[{host}]" if ":" in host else host,
                 bound[0] if bound else port)
        if ready is not None:
            ready.set()

    announced = asyncio.create_task(announce())
    try:
        await server.serve()
    finally:
        announced.cancel()  # a port taken: never started
        # The server takes no more events: those it accepted are written before the store
        # closes (run_roles), not lost with the process.
        await app.state.events.close()


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
