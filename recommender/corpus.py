"""The searchable corpus one process holds: vector index, lexical index and card metadata.

It is a cache of the database and nothing more. At start it loads the saved FAISS file (if
its recipe matches), reconciles it with the vectors the database holds (repairing an index
left behind by a crash or a kill), then follows the `index_changes` log so that every replica
sees new and removed stories within a tick. Only the process that owns the files saves them.

The lexical index and the cards are saved beside the FAISS file (`recommender/snapshot.py`:
lexical.npz, meta.npz, meta.records, corpus.json). A start uses them only when they hold the
very ids of the loaded FAISS file at its watermark; the repair and the change log then bring
all three up to date together. Otherwise every story is read and tokenized again (~10 min at
a million stories, against seconds for the saved files).

Sized for a million stories in one process: card metadata is columnar (`MetaTable`), the
lexical index keeps numpy postings, and a start with an empty index reads every vector into
one matrix and builds the index once (HNSW+SQ8 at that size) instead of growing it in batches.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np

from aggregator.errors import ChangesPruned
from aggregator.model import Story
from aggregator.store import Store, sort_time
from recommender import snapshot
from recommender.halfvectors import HalfVectors
from recommender.idmap import IdMap
from recommender.lexical import LEXICAL_WORDS, TF_SLOPE, LexicalIndex, lead_words
from recommender.reach import Change, Journal
from recommender.vindex import EIGHT_BIT, FaissIndex, ids_digest, manifest, reconcile

log = logging.getLogger("tidings.corpus")

BULK_LOAD_MIN = 20_000  # an empty index facing more missing vectors than this is built at once
META_CHUNK = 10_000  # stories read and indexed per batch at start
# Saved beside the vector index: lexical.npz, meta.npz, the card records, then this manifest.
SNAPSHOT_MANIFEST = "corpus.json"
META_RECORDS = "meta.records"
# How long a start waits for a snapshot that is behind the index it loaded (another process
# saving: the snapshot is written after the index), checking every SNAPSHOT_POLL_S, while
# that process holds the folder's save lock. Past it, or at once when no process holds the
# lock (a saver that died between the two), the cards and lexical index are rebuilt.
SNAPSHOT_WAIT_S = 60.0
SNAPSHOT_POLL_S = 0.2
# Held by a save for all its writes (`take_save_lock`). How long a save waits for another
# process saving the same folder, checking every SAVE_LOCK_POLL_S: past it (a saver stopped
# mid-save) the save is skipped and left pending, as a failed one is.
SAVE_LOCK = ".save.lock"
SAVE_LOCK_WAIT_S = 120.0
SAVE_LOCK_POLL_S = 0.2


def take_save_lock(directory: Path) -> BinaryIO | None:
    """The folder's save lock, held (an open file: closing it lets go), or None when another
    process kept it for SAVE_LOCK_WAIT_S. Blocking: call it on a worker thread.

    Every owner of the files saves them: `tidings import` or `tidings index` run beside
    `tidings run` made two savers of one folder, whose files interleaved (one's index, the
    other's snapshot: the next start rebuilt the cards from the database), and one's sweep of
    temporary files could remove the other's mid-write when their pids do not see each other
    (containers sharing the volume). A lock file: the files are renamed into place, so a lock
    on one of them would not last. Loaders do not take it (manifests guard them)."""
    f = open(directory / SAVE_LOCK, "ab")  # noqa: SIM115 - returned open: it is the lock
    try:
        if _flock_within(f.fileno(), directory):
            return f
    except BaseException:
        f.close()
        raise
    f.close()
    return None


def save_under_way(directory: Path) -> bool:
    """Whether a process holds the folder's save lock now (`take_save_lock`); never waits.
    A shared lock taken and let go at once: a saver's exclusive one only ever polls for it.
    Read-only, so a replica on a read-only volume can ask too; a lock file it cannot open
    (no permission) counts as a save under way, as before the question was asked."""
    try:
        f = open(directory / SAVE_LOCK, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return False  # no save ever took it here
    except OSError:
        return True
    with f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return False


async def hold_save_lock(directory: Path) -> BinaryIO | None:
    """`take_save_lock` off the event loop. Cancelled while it waits, the thread goes on (it
    cannot be stopped): a lock it takes after that is let go at once, not left to the GC."""
    job = asyncio.ensure_future(asyncio.to_thread(take_save_lock, directory))
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        job.add_done_callback(_close_taken)
        raise


def _close_taken(job: asyncio.Future) -> None:
    if not job.cancelled() and job.exception() is None and job.result() is not None:
        job.result().close()


def _flock_within(fd: int, directory: Path) -> bool:
    # Polled: flock has no timeout, and a save blocked for good (its holder stopped with
    # SIGSTOP) would keep the follow lock, so the change log, from this process for good.
    give_up = time.monotonic() + SAVE_LOCK_WAIT_S
    waited = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        if not waited:
            log.info("index.save_waits dir=%s: another process is saving it", directory)
            waited = True
        if time.monotonic() >= give_up:
            return False
        time.sleep(SAVE_LOCK_POLL_S)  # on a worker thread (asyncio.to_thread)


@dataclass(frozen=True, slots=True)
class StoryMeta:
    """What a card and the ranking need, kept in memory so a block costs no SQL."""

    id: int
    url: str
    title: str
    summary: str
    site: str
    source: str
    category: str
    author: str
    image_url: str
    published_at: datetime | None
    collected_at: datetime
    tags: tuple[str, ...] = ()  # the publisher's, matched against a reader's muted topics

    @property
    def when(self) -> datetime:
        return self.published_at or self.collected_at

    @property
    def ranked_at(self) -> datetime:
        """The age ranking weighs, as `Card.ranked_at` (the store's `sort_at`)."""
        return sort_time(self.published_at, self.collected_at)


class Card(NamedTuple):
    """What ranking a candidate needs of its metadata (`MetaTable.cards`)."""

    id: int
    url: str
    title: str
    summary: str
    image_url: str
    author: str
    site: str
    source: str
    category: str
    # The age ranking weighs (freshness, `max_age_days`, the event window): the store's
    # `sort_at`, which listings and retention use. Not `published_at` when that is later than
    # the story's first collection: a feed that dates items ahead, or stamps every item with
    # the time it was built, kept an old story new in blocks and feeds, however old the
    # listing said it was. Cards show `published_at` as the publisher gave it.
    ranked_at: datetime | None
    tags: tuple[str, ...] = ()


def meta_of(s: Story) -> StoryMeta:
    return StoryMeta(s.id, s.url, s.title, s.summary[:SUMMARY_CHARS], s.site, s.source,
                     s.category, s.author, s.image_url, s.published_at, s.collected_at, s.tags)


SUMMARY_CHARS = 400
# What the saved lexical index was built with: a snapshot made otherwise is rebuilt. Bump the
# version when tokenize / key_terms / lexical_text change (the tf slope changes the norms), or
# what the index saves (3: which names each story capitalises mid-sentence; 4: words folded,
# scripts without spaces read as pairs of characters, French elisions split off; 5: Indic
# words read with their vowel signs; 6: English negations, "Isn't", are no names; 7: the
# function words of a story's language, when it is French, German, Spanish, Italian,
# Portuguese, Turkish or Russian, are stop words; 8: a German story's capitals name nothing,
# it capitalises every noun; 9: a hyphenated word is also read joined, "e-mail" as "email";
# 10: not a part that goes on in digits, "non-G7" was "nong").
LEXICAL_RECIPE = f"lexical-10 words={LEXICAL_WORDS} summary={SUMMARY_CHARS} tf={TF_SLOPE}"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NO_TIME = np.iinfo(np.int64).min
_SEP = "\x1f"  # unit separator: never in a title, URL or summary after extraction
_TAG_SEP = "\x1e"  # record separator, between the tags of the last field
_RUN_BYTES = 8 << 20  # records read at once when the card records are saved or compacted
# Dead record bytes (replaced or removed cards) a table leaves in its scratch file before it
# rewrites the live ones into a fresh file (`compaction_due`): ~130k dead cards. Below it a
# corpus never bothers (a small one's whole file is a few MiB).
META_COMPACT_MIN_BYTES = 64 << 20


def _micros(at: datetime | None) -> int:
    return _NO_TIME if at is None else (at - _EPOCH) // timedelta(microseconds=1)


def _at(micros: int) -> datetime | None:
    return None if micros == _NO_TIME else _EPOCH + timedelta(microseconds=int(micros))


class _Codes:
    """Interned strings (sites, sources, categories): a small code per story, each name once."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._code: dict[str, int] = {}

    def code(self, name: str) -> int:
        c = self._code.get(name)
        if c is None:
            c = self._code[name] = len(self.names)
            self.names.append(sys.intern(name))
        return c


def compaction_due(dead_bytes: int, live_bytes: int,
                   min_bytes: int = META_COMPACT_MIN_BYTES) -> bool:
    """Whether a card table should rewrite its live records into a fresh scratch file: once
    the dead ones (replaced or removed cards) outweigh them, and past `min_bytes`. The file
    then stays under twice the live records plus the floor, and each rewrite copies at most
    as much as was freed since the last one (the cost is spread over the changes that made
    it). The floor keeps a small corpus from rewriting its few MiB over and over."""
    return dead_bytes > live_bytes and dead_bytes > min_bytes


def _scratch_file(directory: Path | None) -> BinaryIO:
    try:
        return tempfile.TemporaryFile(dir=directory, prefix="tidings-meta-")
    except OSError:  # a read-only or missing data dir: the system's temp dir will do
        return tempfile.TemporaryFile(prefix="tidings-meta-")


class _Records:
    """The files a table's text records are in: a restored snapshot's (read-only, shared)
    for offsets below `base_end`, the scratch file (at offset - base_end) for the others.

    Only ever appended to: a compaction puts a new one in the table's place and leaves this
    one as it is, so a reader that took it with a set of offsets (a save's record writer,
    on another thread) reads what it was given them for. Its files close when the last
    reference goes (file objects close when collected), which frees the old scratch file's
    bytes once no save is still reading it."""

    def __init__(self, scratch: BinaryIO, base: BinaryIO | None = None, base_end: int = 0):
        self.scratch, self.fd = scratch, scratch.fileno()
        self.base, self.base_fd, self.base_end = base, -1 if base is None else base.fileno(), base_end

    def read(self, offset: int, length: int) -> bytes:
        if offset < self.base_end:
            return os.pread(self.base_fd, length, offset)
        return os.pread(self.fd, length, offset - self.base_end)

    def close(self) -> None:
        self.scratch.close()
        if self.base is not None:
            self.base.close()


class MetaTable(Mapping[int, StoryMeta]):
    """Every story's card metadata without a Python object per story.

    Times and site / source / category codes sit in numpy columns (~40 bytes a story); the
    text fields (url, title, summary, image, author, tags) are appended to an unlinked scratch file
    and read back with one `pread` per story asked for, so a million stories keep ~0.5 GiB of
    text in the page cache (shared, evictable) instead of the process's own memory. A block
    reads a few hundred records (~1 ms). Lookups build a `StoryMeta` on demand.

    A replaced card (every "add" in the change log replaces one) or a removed one leaves its
    record and its row behind: a months-long `tidings run` grew the file by ~1 GB a year
    (5k stories a day, each re-carded a few times). Once the dead records outweigh the live
    ones (`compaction_due`), the change that tipped it copies the live records into a fresh
    file and renumbers the live rows (`compact`).
    """

    def __init__(self, directory: Path | None = None, *,
                 compact_min_bytes: int = META_COMPACT_MIN_BYTES):
        self._dir = directory
        self._records = _Records(_scratch_file(directory))
        self._end = 0  # past the last record: base_end plus the scratch file's size
        self._dead_bytes = 0  # of records no id points at any more
        self._compact_min_bytes = compact_min_bytes
        self._compacting = False
        self._rows = IdMap()
        self._n = 0
        self._offset = np.zeros(0, dtype=np.int64)
        self._length = np.zeros(0, dtype=np.int32)
        self._published = np.zeros(0, dtype=np.int64)
        self._collected = np.zeros(0, dtype=np.int64)
        self._site = np.zeros(0, dtype=np.int32)
        self._source = np.zeros(0, dtype=np.int32)
        self._category = np.zeros(0, dtype=np.int32)
        self._codes = _Codes()  # one table for the three: the names overlap little
        # Codes ever used as a category, each with the sort time (µs) of its newest story: what
        # a cold feed's section heads are chosen by. A removed story leaves both behind until
        # the process restarts (asking a section for stories then finds fewer or none, which
        # costs one indexed query; retention removes the oldest stories, not a newest).
        self._category_newest: dict[int, int] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self._records.close()

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, doc_id: object) -> bool:
        return isinstance(doc_id, int | np.integer) and self._rows.get(int(doc_id)) is not None

    def __iter__(self) -> Iterator[int]:
        return iter(self._rows.ids().tolist())

    def __getitem__(self, doc_id: int) -> StoryMeta:
        row = self._rows.get(int(doc_id))
        if row is None:
            raise KeyError(doc_id)
        return self._meta(int(doc_id), row)

    def get(self, doc_id: int, default: StoryMeta | None = None) -> StoryMeta | None:  # type: ignore[override]
        row = self._rows.get(int(doc_id))
        return default if row is None else self._meta(int(doc_id), row)

    def _meta(self, doc_id: int, row: int) -> StoryMeta:
        url, title, summary, image_url, author, tags = _fields(
            self._read(int(self._offset[row]), int(self._length[row])))
        names = self._codes.names
        return StoryMeta(doc_id, url, title, summary, names[self._site[row]],
                         names[self._source[row]], names[self._category[row]], author, image_url,
                         _at(self._published[row]), _at(self._collected[row]), tags)

    def category_names(self) -> list[str]:
        """Every category a story here was stored with, as stored, sorted."""
        names = self._codes.names
        return sorted(names[c] for c in self._category_newest.copy())  # copied whole: put_many
        # may add a category on another thread meanwhile

    def source_names(self) -> list[str]:
        """Every source a story here was stored with, as stored, sorted: one pass over the
        codes column (a few ms a million stories), for an occasional caller."""
        with self._lock:  # rows past `_n` are unused (code 0, another name)
            codes = self._source[: self._n]
        names = self._codes.names
        return sorted(names[c] for c in np.unique(codes).tolist())

    def category_newest(self) -> dict[str, datetime | None]:
        """Every category a story here was stored with (as stored) and when its newest story
        was published (or collected: the store's sort time), from a small dict, no scan."""
        names = self._codes.names
        return {names[c]: _at(at) for c, at in self._category_newest.copy().items()}

    def categories(self, ids: Sequence[int]) -> list[str | None]:
        """Each id's category (None: not here), from the columns alone (no record read)."""
        rows = self._rows.rows(np.asarray(ids, dtype=np.int64))
        if not len(self._category):
            return [None] * len(rows)
        codes = self._category[np.maximum(rows, 0)].tolist()
        names = self._codes.names
        return [names[c] if r >= 0 else None for r, c in zip(rows.tolist(), codes, strict=True)]

    def cards(self, ids: Sequence[int]) -> list[Card]:
        """`Card`s of the known ids, in order (unknown ids skipped): a block's few hundred
        candidates at once, columns gathered with numpy and no `StoryMeta` made (at 1M stories
        `get` per candidate was a fifth of a block)."""
        wanted = np.asarray(ids, dtype=np.int64)
        rows = self._rows.rows(wanted)
        known = rows >= 0
        rows = rows[known]
        ranked_at = self._sort_at(rows).tolist()
        names = self._codes.names
        site, source, category = (self._site[rows].tolist(), self._source[rows].tolist(),
                                  self._category[rows].tolist())
        out = []
        for j, (doc_id, offset, length) in enumerate(zip(
                wanted[known].tolist(), self._offset[rows].tolist(), self._length[rows].tolist(),
                strict=True)):
            url, title, summary, image_url, author, tags = _fields(self._read(offset, length))
            out.append(Card(doc_id, url, title, summary, image_url, author, names[site[j]],
                            names[source[j]], names[category[j]], _at(ranked_at[j]), tags))
        return out

    def cards_off_thread(self, ids: Sequence[int]) -> list[Card]:
        """`cards` for a caller on another thread than the one that adds and pops stories (the
        crowd recount's worker): under the lock `put_many` and `pop` hold, so the id map is not
        read while it grows, nor a row before its columns are written."""
        with self._lock:
            return self.cards(ids)

    def put_many(self, metas: Iterable[StoryMeta]) -> None:
        """Add or replace stories (a replaced story's old record is dead, and counts towards
        a compaction)."""
        metas = list(metas)
        if not metas:
            return
        records = [_record(m) for m in metas]
        lengths = np.fromiter((len(r) for r in records), dtype=np.int64, count=len(records))
        with self._lock:
            start = self._end
            os.pwrite(self._records.fd, b"".join(records), start - self._records.base_end)
            self._end += int(lengths.sum())
            first = self._n
            self._grow(first + len(metas))
            rows = np.arange(first, first + len(metas))
            self._offset[rows] = start + np.concatenate([[0], np.cumsum(lengths)[:-1]])
            self._length[rows] = lengths
            self._published[rows] = [_micros(m.published_at) for m in metas]
            self._collected[rows] = [_micros(m.collected_at) for m in metas]
            self._site[rows] = [self._codes.code(m.site) for m in metas]
            self._source[rows] = [self._codes.code(m.source) for m in metas]
            self._category[rows] = [self._codes.code(m.category) for m in metas]
            for code, at in _newest_per_code(self._category[rows], self._sort_at(rows)).items():
                self._category_newest[code] = max(at, self._category_newest.get(code, at))
            self._n += len(metas)
            for m, row in zip(metas, rows.tolist(), strict=True):
                old = self._rows.get(int(m.id))
                if old is not None:
                    self._dead_bytes += int(self._length[old])
                self._rows.set(int(m.id), row)
        self._compact_if_due()

    def pop(self, doc_id: int) -> None:
        with self._lock:
            row = self._rows.pop(int(doc_id))
            if row is not None:
                self._dead_bytes += int(self._length[row])
        self._compact_if_due()

    def _read(self, offset: int, length: int) -> bytes:
        return self._records.read(offset, length)

    # -- compaction: live records into a fresh scratch file, live rows renumbered

    def file_bytes(self) -> tuple[int, int]:
        """(bytes of records in the files, of them the dead ones): what `compaction_due`
        weighs."""
        return self._end, self._dead_bytes

    def _compact_if_due(self) -> None:
        # Read without the lock: a stale answer only moves the compaction by one change.
        if not self._compacting and compaction_due(
                self._dead_bytes, self._end - self._dead_bytes, self._compact_min_bytes):
            self.compact()

    def compact(self) -> None:
        """Copy the live records into a fresh scratch file and swap it in, with the live rows
        renumbered (a replaced card left its row too: ~40 bytes of columns each).

        Runs on the thread that changes the table (inside `put_many` / `pop`), as the lexical
        index compacts inside `remove`; the lock is held only to take the rows and to swap,
        not while the records are copied (~1 s at a million cards), so `cards_off_thread`
        (the crowd recount) is not held up. Records are never rewritten in place: the copy
        reads the old files through the `_Records` it took, and a save's record writer that
        took them before keeps reading them. Cards added meanwhile by another thread are past
        the copied end, and are copied as they are when swapping. A failed copy (a full disk)
        leaves the table as it was and waits for twice the dead bytes before it tries again.
        """
        with self._lock:
            if self._compacting:
                return
            self._compacting = True
            records, end, n = self._records, self._end, self._n
            # In row order, which is file order (rows are appended with their records): the
            # copy then reads runs of records at once.
            rows = np.sort(self._rows.rows(self._rows.ids()))
            offsets, lengths = self._offset[rows].copy(), self._length[rows].astype(np.int64)
        scratch = None
        try:
            scratch = _scratch_file(self._dir)
            _copy_records(records, offsets, lengths, scratch)
            copied = int(lengths.sum())
            with self._lock:
                tail = self._end - end  # cards another thread added while copying
                if tail:
                    scratch.write(records.read(end, tail))
                scratch.flush()
                self._swap(scratch, n, end, copied, rows, np.cumsum(lengths) - lengths)
            log.info("meta.compacted file_bytes=%d -> %d", end, self._end)
        except OSError as e:
            if scratch is not None:
                scratch.close()
            self._compact_min_bytes = max(self._compact_min_bytes, 2 * self._dead_bytes)
            log.warning("meta.compact_failed: %s; the card records keep their dead bytes", e)
        finally:
            self._compacting = False

    def _swap(self, scratch: BinaryIO, n: int, end: int, copied: int, rows: np.ndarray,
              new_at: np.ndarray) -> None:
        """Point the live rows at their copies in `scratch` and renumber them in file order.
        `rows` (ascending, of the first `n`) were copied to `new_at`; rows from `n` on were
        added since, their records copied as they lay from `end` on, after `copied` bytes.
        A copied row no id points at any more (replaced or removed meanwhile) is dropped."""
        moved = np.full(max(n, 1), -1, dtype=np.int64)
        moved[rows] = new_at
        ids = self._rows.ids()
        live = self._rows.rows(ids)
        order = np.argsort(live, kind="stable")
        ids, live = ids[order], live[order]
        self._offset = np.where(live < n, moved[np.minimum(live, max(n - 1, 0))],
                                self._offset[live] - end + copied).astype(np.int64)
        for name in ("_length", "_published", "_collected", "_site", "_source", "_category"):
            setattr(self, name, getattr(self, name)[live].copy())
        self._n = len(live)
        self._rows = IdMap()
        self._rows.set_many(ids, np.arange(len(live)))
        self._records = _Records(scratch)  # the old one closes with its last reader
        self._end = copied + (self._end - end)
        self._dead_bytes = self._end - int(self._length.astype(np.int64).sum())

    # -- persistence: live rows only, records rewritten back to back

    def ids(self) -> np.ndarray:
        return self._rows.ids()

    def snapshot(self) -> tuple[dict[str, np.ndarray], Callable[[BinaryIO], None]]:
        """(columns of the live rows, a writer of their text records) for `restore`.

        The columns are copied now, under the lock; the writer may run later on another thread,
        as the records it reads are never rewritten: it reads the files it took now, which
        only grow, even when a compaction has put others in their place since."""
        with self._lock:
            records = self._records
            ids = self._rows.ids()
            rows = self._rows.rows(ids)
            old_offset, lengths = self._offset[rows], self._length[rows].astype(np.int64)
            arrays = {
                "ids": ids,
                # Exclusive prefix sums: one per row, none for an empty table.
                "offset": (np.cumsum(lengths) - lengths).astype(np.int64),
                "length": self._length[rows],
                "published": self._published[rows], "collected": self._collected[rows],
                "site": self._site[rows], "source": self._source[rows],
                "category": self._category[rows],
                "names": np.asarray(self._codes.names, dtype=np.str_),
            }

        def write(out: BinaryIO) -> None:
            _copy_records(records, old_offset, lengths, out)

        return arrays, write

    @classmethod
    def restore(cls, arrays: dict[str, np.ndarray], records: BinaryIO,
                directory: Path | None = None, *,
                compact_min_bytes: int = META_COMPACT_MIN_BYTES) -> MetaTable:
        """The table `snapshot` saved, reading its records from `records` (kept open: a later
        save replaces the file by name, so this one stays readable); ValueError when the
        arrays do not fit the records."""
        a = {k: np.asarray(v) for k, v in arrays.items()}
        n = len(a["ids"])
        size = os.fstat(records.fileno()).st_size
        want = {"ids": np.int64, "offset": np.int64, "length": np.int32, "published": np.int64,
                "collected": np.int64, "site": np.int32, "source": np.int32,
                "category": np.int32}
        for name, dtype in want.items():
            if a[name].dtype != dtype or a[name].shape != (n,):
                raise ValueError(f"meta {name}: {a[name].dtype} {a[name].shape}")
        names = [str(x) for x in a["names"].tolist()]
        codes = np.concatenate([a["site"], a["source"], a["category"]])
        ends = a["offset"] + a["length"]
        if n and (codes.min() < 0 or codes.max() >= len(names) or a["offset"].min() < 0
                  or a["length"].min() < 0 or ends.max() > size):
            raise ValueError("meta columns point outside their records")
        if len(np.unique(a["ids"])) != n or (n and a["ids"].min() < 0):
            raise ValueError("meta ids are not distinct")
        table = cls(directory, compact_min_bytes=compact_min_bytes)
        table._records = _Records(table._records.scratch, records, size)
        table._end = size
        table._dead_bytes = size - int(a["length"].astype(np.int64).sum())  # none as saved
        table._n = n
        table._offset, table._length = a["offset"].copy(), a["length"].copy()
        table._published, table._collected = a["published"].copy(), a["collected"].copy()
        table._site, table._source = a["site"].copy(), a["source"].copy()
        table._category = a["category"].copy()
        table._category_newest = _newest_per_code(table._category, table._sort_at(np.arange(n)))
        for name in names:
            table._codes.code(name)
        if len(table._codes.names) != len(names):
            raise ValueError("meta names repeat")
        table._rows.set_many(a["ids"], np.arange(n))
        return table

    def _sort_at(self, rows: np.ndarray) -> np.ndarray:
        """The rows' sort times (µs) as the store's `sort_time` gives them: published, unless
        absent or later than collected."""
        published, collected = self._published[rows], self._collected[rows]
        return np.where((published != _NO_TIME) & (published <= collected), published, collected)

    def _grow(self, size: int) -> None:
        if size <= len(self._offset):
            return
        size = max(size, 2 * len(self._offset), 1024)
        for name in ("_offset", "_length", "_published", "_collected", "_site", "_source",
                     "_category"):
            old = getattr(self, name)
            new = np.zeros(size, dtype=old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)


def _copy_records(records: _Records, offsets: np.ndarray, lengths: np.ndarray,
                  out: BinaryIO) -> None:
    """Write the records at `offsets` (of `lengths`) back to back to `out`. Rows are appended
    in file order, so offsets in row order ascend: each run of them within one file and a few
    MiB is read at once, then sliced (a pread per story cost seconds at a million)."""
    if np.any(np.diff(offsets) <= 0):  # in id order after a replacement: one by one
        for at, size in zip(offsets.tolist(), lengths.tolist(), strict=True):
            out.write(records.read(at, size))
        return
    split = int(np.searchsorted(offsets, records.base_end))  # first scratch row
    for first, stop in ((0, split), (split, len(offsets))):
        i = first
        while i < stop:
            lo = int(offsets[i])
            j = int(np.searchsorted(offsets, lo + _RUN_BYTES))
            j = min(max(j, i + 1), i + 4096, stop)
            hi = int(offsets[j - 1] + lengths[j - 1])
            run = memoryview(records.read(lo, hi - lo))
            starts = (offsets[i:j] - lo).tolist()
            out.write(b"".join(run[a:a + b] for a, b in
                               zip(starts, lengths[i:j].tolist(), strict=True)))
            i = j


def _newest_per_code(codes: np.ndarray, times: np.ndarray) -> dict[int, int]:
    """The latest of `times` for each of `codes` (unbuffered max by code: ~50 ms for the
    million rows a start restores, a seventh of sorting them)."""
    if not len(codes):
        return {}
    latest = np.full(int(codes.max()) + 1, _NO_TIME, dtype=np.int64)
    np.maximum.at(latest, codes, times)
    used = np.unique(codes)
    return dict(zip(used.tolist(), latest[used].tolist(), strict=True))


def _record(m: StoryMeta) -> bytes:
    """A card's text fields as one record of the scratch file: url, title, summary, image,
    author, then the tags (joined by `_TAG_SEP`, "" for none)."""
    tags = _TAG_SEP.join(t.replace(_SEP, " ").replace(_TAG_SEP, " ") for t in m.tags)
    return _SEP.join([*(f.replace(_SEP, " ") for f in
                        (m.url, m.title, m.summary[:SUMMARY_CHARS], m.image_url, m.author)),
                      tags]).encode("utf-8")


def _fields(record: bytes) -> tuple[str, str, str, str, str, tuple[str, ...]]:
    """The fields `_record` wrote. A record of a snapshot saved before tags were kept has five
    fields, and reads as a card without tags: those snapshots are still restored (a rebuild
    costs ~10 min at a million stories), and what the stories gained since comes with the
    change log like any card change (`Store.upsert_stories` logs it)."""
    url, title, summary, image_url, author, *rest = record.decode("utf-8").split(_SEP)
    tags = tuple(rest[0].split(_TAG_SEP)) if rest and rest[0] else ()
    return url, title, summary, image_url, author, tags


def lexical_text(s: Story) -> str:
    return lead_words(s.text or s.summary)


def put_cards(stories: list[Story], lexical: LexicalIndex, meta: MetaTable,
              texts: list[tuple[str, str]] | None = None) -> None:
    """The stories' cards and lexical entries; `texts`: their (title, `lexical_text`), when
    the caller has them already."""
    meta.put_many(meta_of(s) for s in stories)
    if texts is None:
        texts = [(s.title, lexical_text(s)) for s in stories]
    lexical.add_many((s.id, *t) for s, t in zip(stories, texts, strict=True))


async def read_cards(store: Store, ids: list[int], lexical: LexicalIndex, meta: MetaTable,
                     progress: Callable[[int, int], None] | None = None) -> None:
    """`put_cards` for the stories `ids`, read from the database in chunks."""
    for i in range(0, len(ids), META_CHUNK):
        stories = await store.get_stories(ids[i:i + META_CHUNK])
        put_cards(list(stories.values()), lexical, meta)
        if progress:
            progress(min(i + META_CHUNK, len(ids)), len(ids))


def passes(progress: Callable[[int, int], None] | None,
           sizes: Sequence[int]) -> list[Callable[[int, int], None] | None]:
    """One progress callback per pass of a job whose passes' sizes are known up front: each
    reports its own (done, total) as the whole job's, after the passes before it."""
    if progress is None:
        return [None] * len(sizes)
    whole = sum(sizes)

    def after(before: int) -> Callable[[int, int], None]:
        return lambda done, _total: progress(before + done, whole)

    return [after(sum(sizes[:i])) for i in range(len(sizes))]


def to_vectors(blobs: Iterable[bytes], dim: int) -> np.ndarray:
    rows = [np.frombuffer(b, dtype=np.float32) for b in blobs]
    if not rows:
        return np.zeros((0, dim), dtype=np.float32)
    return np.vstack(rows).astype(np.float32, copy=False)


class Corpus:
    def __init__(
        self,
        store: Store,
        *,
        recipe: str,
        dim: int,
        index_dir: Path,
        owner: bool,
        index_factory: Callable[[], FaissIndex],
        index_settings: dict | None = None,
        mmap: bool = False,
    ):
        self.store = store
        self.recipe = recipe
        self.dim = dim
        self.index_dir = index_dir
        self.owner = owner  # saves the index files; other replicas only read them
        self.index_factory = index_factory
        self.index_settings = index_settings or {}  # override what the saved file says (efSearch)
        self.mmap = mmap
        self.vindex = index_factory()
        self.lexical = LexicalIndex()
        self.meta = MetaTable(index_dir.parent)
        self.watermark = 0
        self.dirty = False
        self.version = 0  # bumped on every change: block caches key on it
        self.journal = Journal()  # what each version changed (recommender/reach.py)
        self._lock = threading.Lock()
        self._follow_lock = asyncio.Lock()

    # ------------------------------------------------------------ start and repair

    async def start(self, progress: Callable[[int, int], None] | None = None) -> dict:
        """Load or rebuild the index, lexical index and cards, then repair them against the
        database (all three: whatever the saved files lack or hold too many)."""
        # Replay the change log from where the saved file stopped (re-embedded stories keep
        # their id, so only the log says their vector changed); without a file, from now, as
        # the repair below loads every current vector. Read first: later changes get replayed.
        watermark = await self.store.change_seq()
        saved = manifest(self.index_dir)
        loaded = await asyncio.to_thread(FaissIndex.load, self.index_dir, mmap=self.mmap,
                                         recipe=self.recipe, **self.index_settings)
        horizon = await self.store.change_horizon()
        saved_at = int(getattr(loaded, "watermark", 0) or 0)
        pruned = loaded is not None and saved_at < horizon
        if pruned:
            # Retention pruned the log past the files: a story re-embedded or edited since
            # they were saved keeps its id, so the reconcile below would keep its old vector
            # and card. Only the database has them: start as if nothing were saved.
            log.warning("index.log_pruned dir=%s watermark=%d horizon=%d: the change log no "
                        "longer holds what changed since the files were saved; reloading every "
                        "story from the database", self.index_dir, saved_at, horizon)
            loaded = None
        restored = False
        if loaded is not None:
            self.vindex = loaded
            watermark = min(watermark, int(getattr(loaded, "watermark", 0) or 0))
            # The lexical index and the cards saved with it, when they hold exactly its ids at
            # its watermark: the repair and the change log below then keep all three in step.
            snap = await asyncio.to_thread(self._restore, loaded)
            if snap is not None:
                self.meta.close()
                self.lexical, self.meta = snap
                restored = True
        elif saved is not None and not pruned:
            # A file that does not match its manifest (torn write, another recipe): the
            # database has every vector, so start empty and let the repair below refill it.
            log.warning("index.unusable dir=%s saved_recipe=%s: rebuilding from the database",
                        self.index_dir, saved.get("recipe"))
        db_ids = np.asarray(await self.store.vector_ids(self.recipe), dtype=np.int64)
        missing, extra = reconcile(self.vindex, db_ids)
        if len(extra):
            self.remove([int(x) for x in extra])  # from the restored lexical index and cards too
        added = 0
        # Restored: only the stories the index lacked (the others are in the snapshot, minus
        # those removed above); otherwise every story, as the lexical index starts empty.
        card_ids = [int(x) for x in (missing if restored else db_ids)]
        # One bar for both passes: each counted as its own whole, the bar reached 100% with
        # the vectors (seconds) and fell back to 0% for the cards (~10 min at a million).
        vectors_progress, cards_progress = passes(progress, (len(missing), len(card_ids)))
        if not len(self.vindex) and len(missing) > BULK_LOAD_MIN:
            added = await self._bulk_vectors(missing, vectors_progress)
            missing = missing[:0]
        for i in range(0, len(missing), 2000):
            chunk = [int(x) for x in missing[i:i + 2000]]
            blobs = await self.store.load_vectors(chunk, self.recipe)
            ids = np.asarray(list(blobs), dtype=np.int64)
            if len(ids):
                self.vindex.add(ids, to_vectors(blobs.values(), self.dim))
                added += len(ids)
            if vectors_progress:
                vectors_progress(min(i + 2000, len(missing)), len(missing))
        await self._load_meta(card_ids, cards_progress)
        self.watermark = watermark
        self.dirty = bool(added or len(extra))
        self._reset_version()
        if self.dirty:
            # News only where the files get fixed: a process that does not own them (`serve`,
            # `tidings related`) repairs its own copy at every start, and said so at INFO each
            # time (`removed=2` after a takedown at every one-shot) until an owner saved them.
            log.log(logging.INFO if self.owner else logging.DEBUG,
                    "index.repaired added=%d removed=%d%s", added, len(extra),
                    "" if self.owner else " (in memory; the files are saved by their owner)")
        await self.follow()
        if self.owner and (self.dirty or not restored):
            await self.try_save()  # also when only the snapshot was missing or stale
        # `from_files`: the vector index came from the saved files (else it was built from the
        # database's vectors here, which a rebuild would only repeat).
        return {"indexed": len(self.vindex), "repaired_added": added,
                "repaired_removed": int(len(extra)), "restored": restored,
                "from_files": loaded is not None}

    def _say_why_unusable(self, expect: dict) -> None:
        """Log why the saved lexical index and cards are rebuilt. After an upgrade that changed
        the lexical recipe, every start and CLI one-shot said "damaged" until the next save,
        when nothing was wrong: that is said as the news it is, at INFO."""
        differ = snapshot.differences(self.index_dir, SNAPSHOT_MANIFEST, expect)
        if differ is None:
            return  # none saved yet
        if "lexical" in differ:
            saved, wanted = differ["lexical"]
            log.info("corpus.snapshot_outdated dir=%s saved=%r now=%r: the lexical index is "
                     "rebuilt (by each process that loads it, until the next index save)",
                     self.index_dir, saved, wanted)
        else:
            log.warning("corpus.snapshot_unusable dir=%s (%s): rebuilding", self.index_dir,
                        "not saved with this index" if differ else "damaged")

    def _restore(self, loaded: FaissIndex) -> tuple[LexicalIndex, MetaTable] | None:
        """The saved lexical index and cards, or None (then rebuilt) unless they are intact,
        saved with the same lexical recipe at the index's watermark, and hold its very ids."""
        digest = ids_digest(loaded.ids())
        watermark = int(getattr(loaded, "watermark", -1))
        give_up = time.monotonic() + SNAPSHOT_WAIT_S
        saving = True
        while True:
            # An index newer than its snapshot: another process is saving (the index is
            # written first, the snapshot after it, seconds later at a million stories). A
            # worker of `serve --workers` starting then rebuilt the cards and lexical index
            # from the database (minutes at a million) instead of waiting for them. Read
            # before the load: read after it, a snapshot landing between the two looked
            # caught up though the load had seen the old one, and the worker rebuilt.
            behind = self._snapshot_watermark()
            expect = {"lexical": LEXICAL_RECIPE, "ids_digest": digest, "watermark": watermark}
            snap = snapshot.load(self.index_dir, SNAPSHOT_MANIFEST, arrays=("lexical", "meta"),
                                 files=(META_RECORDS,), expect=expect)
            if snap is not None or behind is None or behind >= watermark or not saving or \
                    time.monotonic() > give_up:
                break
            # Only a save under way ends: a saver killed between the index and the snapshot
            # (kill -9, the OOM killer) left them so for good, and every start, `serve`
            # worker and one-shot `tidings related` waited the whole minute for it until an
            # owner saved again. With the folder's lock free, one more look (the saver may
            # have just finished), then the rebuild.
            saving = save_under_way(self.index_dir)
            if saving:
                time.sleep(SNAPSHOT_POLL_S)  # on a worker thread (asyncio.to_thread)
        if snap is None:
            self._say_why_unusable(expect)
            return None
        records = snap.files[META_RECORDS]
        lexical = LexicalIndex()
        try:
            lexical.restore(snap.arrays["lexical"])
            meta = MetaTable.restore(snap.arrays["meta"], records, self.index_dir.parent)
        except (KeyError, TypeError, ValueError, UnicodeDecodeError) as e:
            log.warning("corpus.snapshot_unusable dir=%s: %s: rebuilding", self.index_dir, e)
            records.close()
            return None
        if ids_digest(lexical.ids()) != digest or ids_digest(meta.ids()) != digest:
            log.warning("corpus.snapshot_mismatch dir=%s: rebuilding", self.index_dir)
            meta.close()
            return None
        return lexical, meta

    def _snapshot_watermark(self) -> int | None:
        """The watermark the saved snapshot says it is at, or None without a readable one."""
        try:
            info = json.loads((self.index_dir / SNAPSHOT_MANIFEST).read_text(encoding="utf-8"))
            return int(info["watermark"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    async def _bulk_vectors(self, missing: np.ndarray,
                            progress: Callable[[int, int], None] | None) -> int:
        """An empty index and a full database: build it once from the missing ids' vectors."""
        return await self._build_from_store(len(missing), progress, only=missing)

    async def _build_from_store(self, total: int, progress: Callable[[int, int], None] | None,
                                only: np.ndarray | None = None) -> int:
        """Read the stored vectors (of `only` ids when given) in id order and build the index
        once, the right kind for `total`, rather than growing it batch by batch. The floats go
        into one preallocated matrix; an index that keeps 8-bit codes (past ~500k) is fed
        through its half-float file instead, never holding them (1.5 GiB at 1M), so the API's
        memory stays what it serves with. Vectors stored after `total` was counted are left
        to the change log."""
        streamed = None
        if isinstance(self.vindex, FaissIndex) and self.vindex.kind_for(total) in EIGHT_BIT:
            streamed = HalfVectors(self.dim, self.index_dir.parent)
        else:
            vecs = np.empty((total, self.dim), dtype=np.float32)
        ids = np.empty(total, dtype=np.int64)
        n = 0
        async for batch in self.store.iter_vectors(self.recipe):
            got = np.asarray([r[0] for r in batch], dtype=np.int64)
            keep = (np.ones(len(got), dtype=bool) if only is None
                    else np.isin(got, only, assume_unique=True))
            rows = [r[1] for r, k in zip(batch, keep, strict=True) if k]
            take = min(len(rows), total - n)
            if not take:
                continue
            ids[n:n + take] = got[keep][:take]
            chunk = np.frombuffer(b"".join(rows[:take]), dtype=np.float32).reshape(take, self.dim)
            if streamed is not None:
                streamed.append(chunk)
            else:
                vecs[n:n + take] = chunk
            n += take
            if progress:
                progress(n, total)
        if streamed is not None:
            await asyncio.to_thread(self.vindex.rebuild_streamed, ids[:n], streamed)
        else:
            await asyncio.to_thread(self.vindex.rebuild, ids[:n], vecs[:n])
        return n

    async def _load_meta(self, ids: list[int],
                         progress: Callable[[int, int], None] | None = None) -> None:
        """Cards and lexical entries of `ids`, read from the database. Reported to `progress`
        (after the vectors, as a second pass): without a usable snapshot this is most of a
        start (~10 min at a million stories), which a terminal showed as silence."""
        await read_cards(self.store, ids, self.lexical, self.meta, progress)

    # ------------------------------------------------------------ following the change log

    async def follow(self) -> int:
        """Apply index changes logged since the watermark; returns how many were applied."""
        async with self._follow_lock:
            applied = 0
            while True:
                try:
                    changes = await self.store.changes_since(self.watermark, limit=5000)
                except ChangesPruned as e:
                    # Stopped or stalled past the pruned horizon: the re-embeds and edits it
                    # missed are gone from the log, so skipping ahead would serve them stale.
                    log.warning("index.log_pruned watermark=%d horizon=%d: this replica fell "
                                "behind the change log; reloading every story from the database",
                                e.seq, e.horizon)
                    await self._reload()
                    continue
                if not changes:
                    break
                adds: dict[int, int] = {}
                removes: set[int] = set()
                for seq, sid, op in changes:
                    if op == "add":
                        adds[sid] = seq
                        removes.discard(sid)
                    else:
                        removes.add(sid)
                        adds.pop(sid, None)
                if removes:
                    self.remove(sorted(removes))
                if adds:
                    ids = sorted(adds)
                    blobs = await self.store.load_vectors(ids, self.recipe)
                    stories = await self.store.get_stories(list(blobs))
                    keep = [i for i in ids if i in blobs and i in stories and stories[i].duplicate_of is None]
                    self.add_stories([stories[i] for i in keep], to_vectors([blobs[i] for i in keep], self.dim))
                applied += len(changes)
                self.watermark = changes[-1][0]
            return applied

    async def _reload(self) -> None:
        """Everything from the database again, while serving what it holds: the cards and
        lexical index are built aside, the vector index rebuilt (`rebuild` swaps it in at
        once), then the two swapped in together. Changes logged meanwhile are replayed by the
        caller, `follow`, from the watermark read first (re-adding replaces). Its lock held."""
        watermark = await self.store.change_seq()
        ids = [int(x) for x in await self.store.vector_ids(self.recipe)]
        lexical, meta = LexicalIndex(), MetaTable(self.index_dir.parent)
        await read_cards(self.store, ids, lexical, meta)
        await self._build_from_store(len(ids), None)
        with self._lock:
            # The old table is not closed: a query on another thread may still read its
            # records; its files close when the last reference goes.
            self.lexical, self.meta = lexical, meta
            self.watermark = watermark
            self.dirty = True
            self._reset_version()

    def add_stories(self, stories: list[Story], vectors: np.ndarray) -> None:
        if not stories:
            return
        # Each story's lead read once, for the index and the journal (~10 ms per 1,000 stories
        # read twice, on the event loop).
        texts = [(s.title, lexical_text(s)) for s in stories]
        with self._lock:
            ids = np.asarray([s.id for s in stories], dtype=np.int64)
            self.vindex.add(ids, vectors)
            put_cards(stories, self.lexical, self.meta, texts)
            self.dirty = True
            self.version += 1
            self.journal.record(Change(self.version, added=ids, vectors=vectors, texts=texts))

    def _reset_version(self) -> None:
        """A new version no journal step describes: every block cached before is ranked anew."""
        self.version += 1
        self.journal.record(Change(self.version, reset=True))

    def remove(self, ids: list[int]) -> None:
        with self._lock:
            self.vindex.remove(np.asarray(ids, dtype=np.int64))
            for i in ids:
                self.meta.pop(i)
                self.lexical.remove(i)
            self.dirty = True
            self.version += 1
            self.journal.record(Change(self.version, removed=np.asarray(ids, dtype=np.int64)))

    async def save(self) -> bool:
        """Write the vector index, then the lexical index and cards beside it (owner only);
        whether it wrote them (not when another process kept the folder's save lock).

        The change log is not followed while the files are written, so the three hold the
        same stories at the same watermark (a restart checks that before using the snapshot).
        The folder's lock is taken first, without the follow lock: behind another process's
        save (`tidings import` beside `tidings run`) a save waits up to SAVE_LOCK_WAIT_S, and
        holding the follow lock meanwhile kept new stories and takedowns from this process's
        answers for as long. The lexical state and the card columns are copied here, on the
        serving thread (a few ms): queries refresh norms in place, and the copy must not move
        while the files are written.
        """
        if not self.owner:
            return False
        self.index_dir.mkdir(parents=True, exist_ok=True)
        held = await hold_save_lock(self.index_dir)
        if held is None:
            log.warning("index.save_skipped dir=%s: another process kept it locked for %.0f s "
                        "(two owners of one index: `tidings import` or `tidings index` beside "
                        "`tidings run`); saved again later", self.index_dir, SAVE_LOCK_WAIT_S)
            self.dirty = True
            return False
        try:
            async with self._follow_lock:
                with self._lock:
                    watermark = self.watermark
                    self.dirty = False
                    lexical = self.lexical.snapshot()
                    meta, write_records = self.meta.snapshot()
                # The writing thread lets the lock go when its writes end: cancelled here, the
                # thread goes on writing, and another saver must not start meanwhile.
                writing, held = asyncio.to_thread(self._write_files_then_let_go, held,
                                                  watermark, lexical, meta, write_records), None
                try:
                    await writing
                except BaseException:
                    self.dirty = True  # not on disk: the next save tries again
                    raise
            return True
        finally:
            if held is not None:
                held.close()

    async def try_save(self) -> bool:
        """`save`, with a failure to write (a full or read-only disk) logged instead of
        raised; whether it saved. The files are a cache of the database: a process that cannot
        write them serves from memory, and a later save, or the next start's repair, brings
        them up to date. Raised, it stopped `tidings run` at start and lost the pending save
        (the index was marked clean) when a periodic save failed."""
        try:
            return await self.save()
        except OSError as e:
            log.warning("index.save_failed dir=%s: %s; serving from memory, saved again later",
                        self.index_dir, e)
            return False

    def _write_files_then_let_go(self, held: BinaryIO, *args) -> None:
        try:
            self._write_files(*args)
        finally:
            held.close()

    def _write_files(self, watermark: int, lexical: dict[str, np.ndarray],
                     meta: dict[str, np.ndarray], write_records: Callable[[BinaryIO], None]) -> None:
        saved = self.vindex.save(self.index_dir, recipe=self.recipe, watermark=watermark)
        if ids_digest(lexical["doc_id"][lexical["alive"]]) != saved["ids_digest"] or \
                ids_digest(meta["ids"]) != saved["ids_digest"]:
            # A story with a vector but no card (deleted between the two reads at start): the
            # snapshot would not be used, so write none and let the next start rebuild it.
            log.warning("corpus.snapshot_skipped: lexical/cards differ from the vector index")
            (self.index_dir / SNAPSHOT_MANIFEST).unlink(missing_ok=True)
            return
        snapshot.save(self.index_dir, SNAPSHOT_MANIFEST, arrays={"lexical": lexical, "meta": meta},
                      files={META_RECORDS: write_records},
                      info={"watermark": int(watermark), "ids_digest": saved["ids_digest"],
                            "count": int(len(meta["ids"])), "lexical": LEXICAL_RECIPE})

    # ------------------------------------------------------------ rebuild

    async def rebuild(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Rebuild the index from the database's vectors, without blocking queries: they are
        read in batches and handed to the index at once; queries run on the old index until
        the new one is swapped in."""
        watermark = await self.store.change_seq()
        total = len(await self.store.vector_ids(self.recipe))
        done = await self._build_from_store(total, progress)
        with self._lock:
            self.watermark = min(self.watermark, watermark) if self.watermark else watermark
            self._reset_version()
            self.dirty = True
        await self.follow()  # changes logged while we read are replayed (re-adding replaces)
        await self.save()
        return done

    def __len__(self) -> int:
        return len(self.vindex)

    async def take_recipe(self, recipe: str, index_dir: Path) -> bool:
        """Serve another recipe's vectors: only while empty, so there is nothing to rebuild
        (False, unchanged, once it holds stories). The next follow replays the change log from
        its start with that recipe (the adds it applied under the old one found no vectors)."""
        async with self._follow_lock:
            if len(self):
                return False
            with self._lock:
                self.recipe, self.index_dir = recipe, index_dir
                self.watermark = 0
                self._reset_version()  # blocks cached for the old recipe are not reused
            return True
