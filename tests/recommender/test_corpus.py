"""The corpus is a cache of the database: repaired at start, kept in step by the change log,
identical across replicas (run on SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import threading
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import text

from aggregator.model import StoryDraft
from recommender import corpus as corpus_module
from recommender.corpus import Corpus
from recommender.embed import HashingEmbedder
from recommender.indexer import Indexer
from recommender.lexical import LEXICAL_WORDS, key_terms, lead_words
from recommender.vindex import FaissIndex

NOW = datetime(2026, 11, 26, tzinfo=UTC)
EMB = HashingEmbedder(32)


def corpus(store, path, owner=True) -> Corpus:
    return Corpus(store, recipe=EMB.recipe, dim=EMB.dim, index_dir=path, owner=owner,
                  index_factory=lambda: FaissIndex(EMB.dim))


async def seed(store, n=20, start=0):
    drafts = [StoryDraft(url=f"https://e.org/{i}", title=f"Story {i} about topic {i % 4}",
                         text=f"body words {i} topic {i % 4}") for i in range(start, start + n)]
    await store.upsert_stories(drafts, NOW)
    await Indexer(store, EMB).drain()


async def test_index_is_saved_loaded_and_repaired(store, tmp_path):
    await seed(store)
    c = corpus(store, tmp_path / "ix")
    info = await c.start()
    assert info["indexed"] == 20 and info["repaired_added"] == 20
    await c.save()

    # Stories added and removed while the process was down: the next start repairs the file.
    await seed(store, 5, start=100)
    removed = await store.delete_stories_before(NOW + timedelta(days=1))
    await seed(store, 3, start=200)
    c2 = corpus(store, tmp_path / "ix")
    await c2.start()
    assert sorted(c2.vindex.ids().tolist()) == sorted(await store.vector_ids(EMB.recipe))
    assert len(c2) == 3 and not set(removed) & set(c2.meta)


async def test_a_repair_is_news_only_where_the_files_get_fixed(store, tmp_path, caplog):
    """Every `tidings related` after a takedown logged `index.repaired removed=2` at INFO: a
    process that does not own the files repairs its copy in memory at each start, and the
    files stay as they were until their owner saves them. The owner's repair (it saves
    them) is said once; a reader's is a debug line."""
    await seed(store)
    owner = corpus(store, tmp_path / "ix")
    await owner.start()
    await owner.save()
    await store.take_down(["https://e.org/3", "https://e.org/4"])

    def repaired():
        return [r.levelno for r in caplog.records if "index.repaired" in r.getMessage()]

    with caplog.at_level(logging.DEBUG, logger="tidings.corpus"):
        for _ in range(2):  # two one-shots: the files are not rewritten between them
            info = await corpus(store, tmp_path / "ix", owner=False).start()
            assert info["repaired_removed"] == 2
        assert repaired() == [logging.DEBUG, logging.DEBUG]
        caplog.clear()
        await corpus(store, tmp_path / "ix").start()  # the owner fixes and saves the files
        await corpus(store, tmp_path / "ix", owner=False).start()
    assert repaired() == [logging.INFO]


async def test_corrupt_index_file_is_rebuilt_from_the_database(store, tmp_path):
    await seed(store)
    c = corpus(store, tmp_path / "ix")
    await c.start()
    await c.save()
    f = tmp_path / "ix" / "index.faiss"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])  # a kill mid-write
    c2 = corpus(store, tmp_path / "ix")
    info = await c2.start()
    assert info["indexed"] == 20 and info["repaired_added"] == 20


async def test_replicas_follow_the_change_log_and_agree(store, tmp_path):
    await seed(store, 10)
    a, b = corpus(store, tmp_path / "a"), corpus(store, tmp_path / "b", owner=False)
    await a.start()
    await b.start()
    await seed(store, 5, start=50)  # the indexer writes vectors and logs changes
    for c in (a, b):
        await c.follow()
    assert len(a) == len(b) == 15
    q = EMB.encode(["Story 51 about topic 3"])[0]
    assert a.vindex.search(q, 5) == b.vindex.search(q, 5)
    # Retention removes stories: no replica returns them afterwards.
    gone = await store.delete_stories_before(NOW + timedelta(days=1))
    for c in (a, b):
        await c.follow()
        assert len(c) == 0 and all(i not in c.meta for i in gone)
        assert c.vindex.search(q, 5) == []
    assert isinstance(a.version, int) and a.version > 1
    assert np.asarray(a.vindex.ids()).size == 0


async def test_a_new_story_s_lead_is_read_once_for_the_index_and_the_journal(store, tmp_path,
                                                                              monkeypatch):
    # Each story the change log brought had its lead read twice (~10 ms per 1,000 stories,
    # on the event loop): for the lexical index, and again for the journal of changes.
    await seed(store, 3)
    c = corpus(store, tmp_path / "ix")
    await c.start()
    await seed(store, 4, start=50)
    read = []
    monkeypatch.setattr(corpus_module, "lead_words",
                        lambda text, words=LEXICAL_WORDS: read.append(text) or lead_words(text, words))
    assert await c.follow() == 4
    assert sorted(read) == sorted(f"body words {i} topic {i % 4}" for i in range(50, 54))
    added = c.journal.since(c.version - 1)[0]
    assert sorted(added.texts) == sorted((f"Story {i} about topic {i % 4}",
                                          f"body words {i} topic {i % 4}") for i in range(50, 54))
    for doc_id, (title, lead) in zip(added.added.tolist(), added.texts, strict=True):
        assert c.lexical.key_terms_of(doc_id) == key_terms(title, lead)  # indexed as before


async def test_a_story_deleted_by_sql_leaves_every_running_replica(store, tmp_path):
    """An operator's DELETE (a takedown) bypasses the store: the database logs it itself."""
    await seed(store, 6)
    a, b = corpus(store, tmp_path / "a"), corpus(store, tmp_path / "b", owner=False)
    for c in (a, b):
        await c.start()
    async with store.engine.begin() as conn:
        doomed = (await conn.execute(text("SELECT id FROM stories WHERE url = 'https://e.org/3'"))).scalar_one()
        await conn.execute(text("DELETE FROM stories WHERE id = :id"), {"id": doomed})
    q = EMB.encode(["Story 3 about topic 3 body words 3 topic 3"])[0]
    for c in (a, b):
        assert doomed in c.meta
        assert await c.follow() == 1
        assert doomed not in c.meta and len(c) == 5
        assert doomed not in [i for i, _ in c.vindex.search(q, 6)]
        assert doomed not in dict(c.lexical.search("Story 3", "body words 3", 6))
    # A later start agrees with the followers (the log's entry reads back as a time).
    await a.save()
    c = corpus(store, tmp_path / "a")
    await c.start()
    assert sorted(c.meta) == sorted(a.meta)


async def test_story_reembedded_while_down_gets_its_new_vector(store, tmp_path):
    await seed(store, 4)
    c = corpus(store, tmp_path / "ix")
    await c.start()
    await c.save()
    story = (await store.latest_stories(limit=1))[0]
    await store.upsert_stories([StoryDraft(url=story.url, title="Completely different words now",
                                           text="unrelated replacement text")], NOW)
    await Indexer(store, EMB).drain()
    c2 = corpus(store, tmp_path / "ix")
    await c2.start()
    want = EMB.encode(["Completely different words now unrelated replacement text"])[0]
    got = c2.vindex.get(np.asarray([story.id]))[0]
    assert float(got @ want) > 0.99


async def test_parallel_indexers_embed_each_story_once(db_url, tmp_path):
    """Two indexers (separate stores, as separate processes) drain one backlog together."""
    import asyncio

    from aggregator.store import Store

    stores = [Store(db_url) for _ in range(2)]
    await stores[0].migrate()
    try:
        await stores[0].upsert_stories([StoryDraft(url=f"https://e.org/{i}", title=f"Story {i}")
                                        for i in range(300)], NOW)
        seen: list[list[int]] = [[], []]

        class Counting(HashingEmbedder):
            def __init__(self, n):
                super().__init__(32)
                self.n = n

        indexers = [Indexer(s, Counting(n), chunk=16) for n, s in enumerate(stores)]
        originals = [ix.store.save_vectors for ix in indexers]
        # The first indexer's first save waits (30 s at most) until the second has saved
        # something: on a loaded machine the first could otherwise drain the whole backlog
        # before the second got the loop, and "the work was shared" failed with nothing wrong.
        second_saved = asyncio.Event()
        for n, ix in enumerate(indexers):
            async def save(rows, recipe, now=None, n=n):
                if n == 0 and not seen[0]:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(second_saved.wait(), 30)
                seen[n] += [r[0] for r in rows]
                if n == 1:
                    second_saved.set()
                return await originals[n](rows, recipe, now)
            ix.store.save_vectors = save
        await asyncio.gather(*(ix.drain() for ix in indexers))
        both = seen[0] + seen[1]
        assert len(both) == len(set(both)) == 300  # every story embedded exactly once
        assert seen[0] and seen[1]  # and the work was shared
        assert await stores[0].backlog_size(EMB.recipe) == 0
    finally:
        for s in stores:
            await s.close()


def test_meta_table_round_trips_cards_and_forgets_removed_stories(tmp_path):
    from recommender.corpus import MetaTable, StoryMeta

    table = MetaTable(tmp_path)
    metas = [StoryMeta(i, f"https://e.org/{i}", f"Title {i} – ünïcode", "s" * 500, f"site{i % 3}",
                       "src", "politics", "An Author", "", NOW - timedelta(hours=i) if i % 2 else None,
                       NOW) for i in range(1, 50)]
    table.put_many(metas)
    assert len(table) == 49 and 7 in table and 99 not in table and list(table)[:3] == [1, 2, 3]
    got = table[7]
    assert got == StoryMeta(7, metas[6].url, metas[6].title, "s" * 400, "site1", "src", "politics",
                            "An Author", "", NOW - timedelta(hours=7), NOW)
    assert table[8].published_at is None and table[8].when == NOW
    table.put_many([StoryMeta(7, "https://e.org/new", "New title", "", "x", "y", "z", "", "img",
                              None, NOW)])  # replaces
    assert table[7].title == "New title" and len(table) == 49
    table.pop(7)
    assert 7 not in table and table.get(7) is None and len(table) == 48
    table.close()


def count_streamed_rebuilds(monkeypatch) -> list[int]:
    """Sizes of the index rebuilds fed through a half-float file, as they happen."""
    streamed: list[int] = []
    plain = FaissIndex.rebuild_streamed
    monkeypatch.setattr(FaissIndex, "rebuild_streamed",
                        lambda self, ids, rows: streamed.append(len(ids)) or plain(self, ids, rows))
    return streamed


def eight_bit_corpus(store, path) -> Corpus:
    return Corpus(store, recipe=EMB.recipe, dim=EMB.dim, index_dir=path, owner=True,
                  index_factory=lambda: FaissIndex(EMB.dim, hnsw_threshold=20, sq8_threshold=40,
                                                   rebuild_mode="inline"))


async def assert_holds_the_stored_vectors(store, c: Corpus) -> None:
    ids = sorted(await store.vector_ids(EMB.recipe))
    assert sorted(c.vindex.ids().tolist()) == ids
    for i, blob in (await store.load_vectors(ids[:5], EMB.recipe)).items():
        want = np.frombuffer(blob, dtype=np.float32)
        np.testing.assert_allclose(c.vindex.get(np.array([i]))[0], want, atol=2e-3)
        assert c.vindex.search(want, 1)[0][0] == i


async def test_large_bulk_load_streams_into_the_8bit_index(store, tmp_path, monkeypatch):
    # Past sq8_threshold the start builds the index from the half-float file it streams the
    # stored vectors into (no float matrix of the whole corpus): same ids, same vectors ~1e-3.
    import recommender.corpus as corpus_module

    monkeypatch.setattr(corpus_module, "BULK_LOAD_MIN", 10)
    streamed = count_streamed_rebuilds(monkeypatch)
    await seed(store, 60)
    c = eight_bit_corpus(store, tmp_path / "ix")
    info = await c.start()
    assert info["indexed"] == 60 and c.vindex.kind == "ivf_sq8" and streamed == [60]
    await assert_holds_the_stored_vectors(store, c)


async def test_rebuild_past_sq8_threshold_streams_and_keeps_every_vector(store, tmp_path,
                                                                        monkeypatch):
    # `tidings index --rebuild` at that size does the same.
    streamed = count_streamed_rebuilds(monkeypatch)
    await seed(store, 50)
    c = eight_bit_corpus(store, tmp_path / "ix")
    await c.start()
    assert await c.rebuild() == 50
    assert streamed[-1] == 50 and c.vindex.kind == "ivf_sq8"
    await assert_holds_the_stored_vectors(store, c)


# ------------------------------------------------ the lexical index and cards saved beside it

QUERIES = [("Story 3 about topic 3", "body words 3 topic 3"), ("topic", "words 7"),
           ("Story 101", "body words 101"), ("Completely different", "replacement")]


def _view(c: Corpus):
    """What a restart must keep: lexical results, every card, every story's names."""
    ids = sorted(c.meta)
    return ([c.lexical.search(t, x, 50) for t, x in QUERIES], [c.meta[i] for i in ids],
            [c.lexical.key_terms_of(i) for i in ids])


def _count_meta_loads(monkeypatch) -> list[list[int]]:
    calls: list[list[int]] = []
    plain = Corpus._load_meta

    async def counting(self, ids, progress=None):
        calls.append(list(ids))
        return await plain(self, ids, progress)

    monkeypatch.setattr(Corpus, "_load_meta", counting)
    return calls


async def test_an_empty_saved_corpus_restarts_from_its_snapshot(store, tmp_path, caplog):
    """A fresh install (no stories yet) restarted: its saved files are used, not rebuilt
    with a "snapshot unusable" warning."""
    c = corpus(store, tmp_path / "ix")
    await c.start()
    await c.save()
    c2 = corpus(store, tmp_path / "ix")
    with caplog.at_level("WARNING", logger="tidings.corpus"):
        assert (await c2.start())["restored"]
    assert "snapshot_unusable" not in caplog.text and len(c2.meta) == 0


async def test_a_saved_corpus_restarts_without_reading_every_story(store, tmp_path, monkeypatch):
    await seed(store)
    c = corpus(store, tmp_path / "ix")
    assert not (await c.start())["restored"]  # nothing saved yet: built, and saved by the owner
    assert (tmp_path / "ix" / "corpus.json").is_file()
    before = _view(c)
    assert before[0][0] and len(before[1]) == 20
    calls = _count_meta_loads(monkeypatch)
    c2 = corpus(store, tmp_path / "ix")
    info = await c2.start()
    assert info["restored"] and calls == [[]]  # no story read from the database
    assert _view(c2) == before
    assert c2.lexical.ids().tolist() == sorted(c2.meta) == sorted(c2.vindex.ids().tolist())
    # A replica that maps the files (a worker) restores them too, and never writes them.
    w = Corpus(store, recipe=EMB.recipe, dim=EMB.dim, index_dir=tmp_path / "ix", owner=False,
               index_factory=lambda: FaissIndex(EMB.dim), mmap=True)
    saved = (tmp_path / "ix" / "corpus.json").read_bytes()
    assert (await w.start())["restored"] and _view(w) == before
    await seed(store, 2, start=300)
    await w.follow()  # new stories go to its scratch records, the restored ones stay readable
    assert len(w.meta) == 22 and w.lexical.search("Story 301", "", 1)[0][0] in w.meta
    assert all(w.meta[i] == c2.meta[i] for i in c2.meta)
    await w.save()
    assert (tmp_path / "ix" / "corpus.json").read_bytes() == saved


async def test_changes_while_down_are_repaired_in_all_three(store, tmp_path, monkeypatch):
    import dataclasses

    await seed(store, 10)
    old = [StoryDraft(url=f"https://e.org/old{i}", title=f"Old story {i}", text="old words",
                      published_at=NOW - timedelta(days=30)) for i in range(3)]
    await store.upsert_stories(old, NOW)
    await Indexer(store, EMB).drain()
    c = corpus(store, tmp_path / "ix")
    await c.start()
    # The saved files disagree with the database without a logged change: one story the
    # database has is missing from them, one it never had is in them (a crash, a restore).
    dropped = sorted(c.meta)[4]
    c.remove([dropped])
    real = (await store.get_stories([sorted(c.meta)[0]]))[sorted(c.meta)[0]]
    ghost = dataclasses.replace(real, id=99_999, url="https://e.org/ghost", title="Ghost story")
    c.add_stories([ghost], EMB.encode(["Ghost story"]))
    await c.save()
    saved = set(c.meta)
    # While down: stories added, retention removes the old ones, one story gets a new text.
    await seed(store, 4, start=100)
    gone = await store.delete_stories_before(NOW - timedelta(days=1))
    changed = sorted(c.meta)[1]
    await store.upsert_stories([StoryDraft(url=c.meta[changed].url, title="Completely different",
                                           text="replacement text")], NOW)
    await Indexer(store, EMB).drain()

    calls = _count_meta_loads(monkeypatch)
    c2 = corpus(store, tmp_path / "ix")
    info = await c2.start()
    db = sorted(await store.vector_ids(EMB.recipe))
    assert len(gone) == 3 and len(db) == 14
    # Only the stories the files lack are read: the dropped one and the four new ones.
    assert info["restored"] and calls == [sorted(set(db) - saved)] and len(calls[0]) == 5
    assert dropped in calls[0]
    assert c2.lexical.ids().tolist() == sorted(c2.meta) == sorted(c2.vindex.ids().tolist()) == db
    assert c2.meta[changed].title == "Completely different"
    assert c2.lexical.search("Completely different", "", 1)[0][0] == changed
    assert c2.lexical.search("Ghost", "", 5) == [] and 99_999 not in c2.meta
    # The same as a corpus built from the database alone (scores to float rounding; equal
    # scores come in slot order, which differs).
    fresh = corpus(store, tmp_path / "fresh", owner=False)
    assert not (await fresh.start())["restored"]
    got, want = _view(c2), _view(fresh)
    assert got[1:] == want[1:]
    for a, b in zip(got[0], want[0], strict=True):
        assert dict(a) == pytest.approx(dict(b), abs=1e-6)
    # And the repaired state was saved: the next start restores it as it is.
    c3 = corpus(store, tmp_path / "ix")
    assert (await c3.start())["restored"] and _view(c3) == got


async def _saved_corpus(store, ix):
    """A corpus of 20 seeded stories, started (and saved) in `ix`, and its `_view`."""
    await seed(store)
    c = corpus(store, ix)
    await c.start()
    return c, _view(c)


def _cut_in_half(f) -> None:
    """A file as a kill mid-write leaves it."""
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


@pytest.mark.parametrize("damage", ["lexical.npz", "meta.npz", "meta.records", "flip",
                                    "watermark", "no manifest"])
async def test_a_damaged_or_stale_snapshot_falls_back_to_the_rebuild(store, tmp_path,
                                                                      monkeypatch, damage):
    ix = tmp_path / "ix"
    c, before = await _saved_corpus(store, ix)
    if damage == "flip":  # same size, one byte changed
        f = ix / "meta.records"
        raw = bytearray(f.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        f.write_bytes(bytes(raw))
    elif damage == "watermark":  # the vector index saved again later, the snapshot not
        c.vindex.save(ix, recipe=EMB.recipe, watermark=c.watermark + 1)
        # A saver that died between the two: the start waits for the snapshot, then gives up.
        monkeypatch.setattr("recommender.corpus.SNAPSHOT_WAIT_S", 0.5)
    elif damage == "no manifest":
        (ix / "corpus.json").unlink()
    else:  # a kill mid-write
        _cut_in_half(ix / damage)
    calls = _count_meta_loads(monkeypatch)
    c2 = corpus(store, tmp_path / "ix")
    info = await c2.start()
    assert not info["restored"] and len(calls) == 1 and len(calls[0]) == 20
    assert _view(c2) == before
    calls.clear()
    c3 = corpus(store, tmp_path / "ix")  # the rebuild was saved: the next start restores
    assert (await c3.start())["restored"] and calls == [[]] and _view(c3) == before


async def test_a_snapshot_of_an_older_lexical_recipe_is_rebuilt_saying_so(store, tmp_path,
                                                                          monkeypatch, caplog):
    # After an upgrade that changed the lexical recipe, every start and every CLI one-shot
    # warned "snapshot_unusable (damaged, or not saved with this index)" until the next save:
    # nothing was damaged. It is said as an upgrade, at INFO, with both recipes.
    _, before = await _saved_corpus(store, tmp_path / "ix")
    monkeypatch.setattr("recommender.corpus.LEXICAL_RECIPE", "lexical-next")
    c2 = corpus(store, tmp_path / "ix", owner=False)  # a one-shot: it saves nothing
    with caplog.at_level("INFO", logger="tidings.corpus"):
        assert not (await c2.start())["restored"]
    assert _view(c2) == before
    outdated = [r for r in caplog.records if "snapshot_outdated" in r.getMessage()]
    assert len(outdated) == 1 and outdated[0].levelname == "INFO"
    assert "lexical-next" in outdated[0].getMessage()
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    # A damaged snapshot is still a warning.
    _cut_in_half(tmp_path / "ix" / "meta.records")
    monkeypatch.undo()
    caplog.clear()
    with caplog.at_level("INFO", logger="tidings.corpus"):
        assert not (await corpus(store, tmp_path / "ix", owner=False).start())["restored"]
    assert any(r.levelname == "WARNING" and "damaged" in r.getMessage() for r in caplog.records)


async def test_a_start_during_a_save_waits_for_the_snapshot(store, tmp_path, monkeypatch):
    """A worker of `serve --workers` started while the indexer saved: it loaded the new vector
    index, found the snapshot (written after it) still at the old watermark, and rebuilt the
    cards and lexical index from the database (minutes at a million stories)."""
    import threading

    import recommender.corpus as corpus_module

    await seed(store)
    c = corpus(store, tmp_path / "ix")
    await c.start()
    await seed(store, 3, start=100)
    await c.follow()
    real_save = corpus_module.snapshot.save
    index_written = threading.Event()

    def slow_snapshot(*args, **kwargs):  # the snapshot takes a while, after the index
        index_written.set()
        time.sleep(1.0)
        return real_save(*args, **kwargs)

    monkeypatch.setattr(corpus_module.snapshot, "save", slow_snapshot)
    saving = asyncio.create_task(c.save())
    await asyncio.to_thread(index_written.wait, 10)
    calls = _count_meta_loads(monkeypatch)
    w = corpus(store, tmp_path / "ix", owner=False)
    info = await w.start()
    await saving
    assert info["restored"] and calls == [[]] and len(w.meta) == 23
    assert _view(w) == _view(c)


async def test_a_saver_killed_between_index_and_snapshot_does_not_hold_starts(store, tmp_path):
    """`kill -9` of `tidings run` (or `index`, `import`) after it wrote the vector index and
    before the snapshot: every later start (`run`, each `serve` worker, each `tidings
    related`) waited the whole SNAPSHOT_WAIT_S (60 s) for a snapshot no process was writing,
    until an owner saved again. No process holds the save lock: the start rebuilds at once."""
    ix = tmp_path / "ix"
    c, _ = await _saved_corpus(store, ix)
    await seed(store, 3, start=100)
    await c.follow()
    died = corpus_module.take_save_lock(ix)  # the saver's turn: its index lands, then it dies
    c.vindex.save(ix, recipe=EMB.recipe, watermark=c.watermark)
    died.close()
    w = corpus(store, ix, owner=False)
    info = await asyncio.wait_for(w.start(), 30)  # the old code waited 60 s
    assert not info["restored"] and info["from_files"] and len(w.meta) == 23
    assert _view(w) == _view(c)


async def test_a_snapshot_landing_during_the_wait_is_loaded(store, tmp_path, monkeypatch):
    """The snapshot's manifest replaced between the worker's load (which saw the old one) and
    its look at the snapshot's watermark (which saw the new one): the worker took the snapshot
    for caught up yet unusable and rebuilt from the database (a CI flake, now forced here)."""
    import recommender.corpus as corpus_module

    await seed(store)
    c = corpus(store, tmp_path / "ix")
    await c.start()
    await seed(store, 3, start=100)
    await c.follow()
    real_save, real_load = corpus_module.snapshot.save, corpus_module.snapshot.load
    held: dict = {}

    def index_only(*args, **kwargs):  # the owner stops between the index and the snapshot
        held["save"] = (args, kwargs)

    monkeypatch.setattr(corpus_module.snapshot, "save", index_only)
    await c.save()
    loads: list[bool] = []

    def load_then_land(*args, **kwargs):
        got = real_load(*args, **kwargs)
        if not loads:  # the owner's snapshot lands right after the worker's first load
            real_save(*held["save"][0], **held["save"][1])
        loads.append(got is not None)
        return got

    monkeypatch.setattr(corpus_module.snapshot, "load", load_then_land)
    calls = _count_meta_loads(monkeypatch)
    w = corpus(store, tmp_path / "ix", owner=False)
    info = await w.start()
    assert loads == [False, True]
    assert info["restored"] and calls == [[]] and _view(w) == _view(c)


class _SecondSaverTurn(logging.Handler):
    """Set once the second saver has had its turn: it saved, or it says it waits for the
    first (then, with the save lock, it cannot run before the first is done)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("index.save_waits"):
            self.event.set()


@contextlib.contextmanager
def _second_saver_turn(caplog):
    turn = _SecondSaverTurn()
    caplog.set_level(logging.INFO, logger="tidings.corpus")
    logging.getLogger("tidings.corpus").addHandler(turn)
    try:
        yield turn.event
    finally:
        logging.getLogger("tidings.corpus").removeHandler(turn)


async def _two_owners(store, path) -> tuple[Corpus, Corpus]:
    """`tidings run` (a, 20 stories) and a `tidings import` started later (b, 3 more)."""
    await seed(store)
    a = corpus(store, path)
    await a.start()
    await seed(store, 3, start=100)
    b = corpus(store, path)
    await b.start()
    assert len(a) == 20 and len(b) == 23 and a.watermark < b.watermark
    return a, b


async def test_two_savers_of_one_folder_take_turns(store, tmp_path, monkeypatch, caplog):
    """`tidings import` saving while `tidings run` saved the same folder: the two processes'
    files interleaved (a's index, b's index and snapshot, a's snapshot), and the next start
    found a snapshot that did not match its index and rebuilt the cards and lexical index
    from the database (~10 min at a million stories)."""
    import recommender.corpus as corpus_module

    a, b = await _two_owners(store, tmp_path / "ix")
    monkeypatch.setattr(corpus_module, "SNAPSHOT_WAIT_S", 0.0)  # the old code's files: no wait
    real_save = corpus_module.snapshot.save
    a_index_written = threading.Event()
    with _second_saver_turn(caplog) as b_turn:

        def a_slow_snapshot(*args, **kwargs):  # a's snapshot waits for b's turn
            if kwargs["info"]["count"] == len(a):
                a_index_written.set()
                assert b_turn.wait(60)
            return real_save(*args, **kwargs)

        monkeypatch.setattr(corpus_module.snapshot, "save", a_slow_snapshot)
        a_saving = asyncio.create_task(a.save())
        await asyncio.to_thread(a_index_written.wait, 60)
        b_saving = asyncio.create_task(b.save())
        b_saving.add_done_callback(lambda _: b_turn.set())
        await asyncio.gather(a_saving, b_saving)
    monkeypatch.setattr(corpus_module.snapshot, "save", real_save)

    calls = _count_meta_loads(monkeypatch)
    c = corpus(store, tmp_path / "ix", owner=False)
    info = await c.start()
    assert info["restored"] and calls == [[]]  # nothing read from the database again
    assert FaissIndex.load(tmp_path / "ix").watermark == b.watermark  # b saved last, whole
    assert c.watermark == b.watermark and _view(c) == _view(b)


async def test_a_saver_does_not_sweep_the_temporary_files_of_another(store, tmp_path,
                                                                     monkeypatch, caplog):
    """Two savers whose pids do not see each other (containers sharing the data volume): the
    second one's sweep took the first one's temporary files for a dead process's and removed
    them mid-write, and the first save failed."""
    import recommender.vindex as vindex_module

    a, b = await _two_owners(store, tmp_path / "ix")
    monkeypatch.setattr(vindex_module, "process_alive", lambda pid: False)  # another namespace
    real_hash = vindex_module.fsync_and_hash
    a_writing = threading.Event()
    with _second_saver_turn(caplog) as b_turn:

        def a_slow_hash(path):  # a's FAISS file written, not yet renamed: b sweeps meanwhile
            if not a_writing.is_set():
                a_writing.set()
                assert b_turn.wait(60)
            return real_hash(path)

        monkeypatch.setattr(vindex_module, "fsync_and_hash", a_slow_hash)
        a_saving = asyncio.create_task(a.save())
        await asyncio.to_thread(a_writing.wait, 60)
        b_saving = asyncio.create_task(b.save())
        b_saving.add_done_callback(lambda _: b_turn.set())
        await asyncio.gather(a_saving, b_saving)
    assert len(FaissIndex.load(tmp_path / "ix")) == 23


async def test_a_save_that_cannot_take_the_lock_is_skipped_and_kept_pending(store, tmp_path,
                                                                          monkeypatch, caplog):
    """Another process holding the folder's save lock past the wait (stopped mid-save): the
    save is skipped, logged, and left pending; `tidings run` goes on serving."""
    import fcntl

    import recommender.corpus as corpus_module

    await seed(store)
    c = corpus(store, tmp_path / "ix")
    await c.start()
    before = FaissIndex.load(tmp_path / "ix").watermark
    await seed(store, 3, start=100)
    await c.follow()
    monkeypatch.setattr(corpus_module, "SAVE_LOCK_WAIT_S", 0.0)
    with open(tmp_path / "ix" / ".save.lock", "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        assert not await c.try_save() and not await c.save()
        fcntl.flock(held.fileno(), fcntl.LOCK_UN)
    assert c.dirty and "index.save_skipped" in caplog.text
    assert FaissIndex.load(tmp_path / "ix").watermark == before  # nothing written meanwhile
    assert await c.try_save() and not c.dirty
    assert FaissIndex.load(tmp_path / "ix").watermark == c.watermark != before


async def test_a_save_waiting_for_another_savers_lock_lets_the_change_log_be_followed(
        store, tmp_path, monkeypatch):
    """`tidings import` saving the folder beside `tidings run`: run's save waits for the lock
    (up to SAVE_LOCK_WAIT_S, 120 s), and while it waited it held the follow lock, so the
    stories stored and the takedowns made meanwhile stayed out of run's answers that long.
    Now the wait holds nothing: follows go on, and the save writes once it has the lock."""
    import fcntl

    import recommender.corpus as corpus_module

    await seed(store)
    c = corpus(store, tmp_path / "ix")
    await c.start()
    monkeypatch.setattr(corpus_module, "SAVE_LOCK_WAIT_S", 60.0)
    monkeypatch.setattr(corpus_module, "SAVE_LOCK_POLL_S", 0.02)
    with open(tmp_path / "ix" / corpus_module.SAVE_LOCK, "a") as other_saver:
        fcntl.flock(other_saver.fileno(), fcntl.LOCK_EX)
        saving = asyncio.create_task(c.save())
        await asyncio.sleep(0.2)  # the save is waiting for the lock
        await seed(store, 3, start=100)
        # The old code blocked here until the save gave up (60 s); 20 s leaves room for a
        # loaded machine and still fails it.
        assert await asyncio.wait_for(c.follow(), 20) > 0
        assert len(c) == 23 and not saving.done()
        fcntl.flock(other_saver.fileno(), fcntl.LOCK_UN)
        assert await asyncio.wait_for(saving, 20)
    saved = FaissIndex.load(tmp_path / "ix")
    assert len(saved) == 23 and saved.watermark == c.watermark and not c.dirty


async def test_a_cancelled_save_lets_go_of_the_lock_only_when_its_writes_end(store, tmp_path,
                                                                            monkeypatch):
    """Cancelled mid-write (a shutdown), the thread writing the files cannot be stopped: the
    folder's lock stays held until it ends, so another saver never writes beside it."""
    import recommender.corpus as corpus_module

    await seed(store)
    c = corpus(store, tmp_path / "ix")
    await c.start()
    writing, finish = threading.Event(), threading.Event()
    real_write = corpus_module.Corpus._write_files

    def slow_write(self, *args):
        writing.set()
        finish.wait(30)
        real_write(self, *args)

    monkeypatch.setattr(corpus_module.Corpus, "_write_files", slow_write)
    saving = asyncio.create_task(c.save())
    assert await asyncio.to_thread(writing.wait, 20)
    saving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await saving

    def lock_free() -> bool:
        return not corpus_module.save_under_way(tmp_path / "ix")

    assert not lock_free()  # still writing
    finish.set()
    for _ in range(200):
        if lock_free():
            break
        await asyncio.sleep(0.05)
    assert lock_free() and c.dirty


async def test_related_blocks_are_the_same_after_a_restart(store, tmp_path):
    from recommender.blocks import RelatedService
    from recommender.related import Filters

    drafts = [StoryDraft(url=f"https://site{i % 3}.org/{i}",
                         title=f"Putin and Trump talk ceasefire round {i % 5} Kyiv {i % 7}",
                         text=f"Vladimir Putin spoke to Donald Trump about Ukraine, {i % 4} energy "
                              f"sites and the war {i}; Zelensky in Kyiv {i % 6}.")
              for i in range(40)]
    await store.upsert_stories(drafts, NOW)
    await Indexer(store, EMB).drain()

    async def blocks(c: Corpus):
        svc = RelatedService(c, EMB, store, clock=lambda: NOW + timedelta(hours=2))
        out = []
        for sid in sorted(c.meta)[:12]:
            block = await svc.for_story(sid, k=5, filters=Filters())
            out.append([(m, r) for m, r in block.related])
        return out

    c = corpus(store, tmp_path / "ix")
    await c.start()
    before = await blocks(c)
    assert all(len(b) == 5 for b in before)
    c2 = corpus(store, tmp_path / "ix")
    assert (await c2.start())["restored"]
    assert await blocks(c2) == before


def test_meta_table_snapshot_keeps_live_cards_only_and_grows_after_restore(tmp_path):
    from recommender.corpus import MetaTable, StoryMeta
    from tests.recommender.test_meta_cards import meta_round_trip

    def card(i, title=None):
        return StoryMeta(i, f"https://e.org/{i}", title or f"Title {i} – ünïcode", "s" * (i % 50),
                         f"site{i % 3}", "src", "politics", "", "", None, NOW - timedelta(hours=i))

    table = MetaTable(tmp_path)
    table.put_many(card(i) for i in range(1, 6001))  # more than one read run when saved
    table.put_many([card(7, "Replaced"), card(9000)])
    table.pop(8)

    def round_trip(t):
        return meta_round_trip(t, tmp_path)

    back = round_trip(table)
    assert list(back) == list(table) and all(back[i] == table[i] for i in table)
    assert back[7].title == "Replaced" and 8 not in back
    # Cards added after the restore go to its scratch file; a second save holds both kinds.
    back.put_many([card(9001), card(5, "Replaced too")])
    again = round_trip(back)
    assert len(again) == 6001 and again[9001] == card(9001) and again[5].title == "Replaced too"
    assert all(again[i] == back[i] for i in back)
    for t in (table, back, again):
        t.close()


async def test_a_new_author_image_or_time_reaches_every_running_card(store, tmp_path):
    """Only a title or text change was re-embedded (and so re-added); a card-only change
    stayed out of every running index, and out of restarts (the saved cards were kept)."""
    await seed(store, 3)
    a, b = corpus(store, tmp_path / "a"), corpus(store, tmp_path / "b", owner=False)
    for c in (a, b):
        await c.start()
    story = (await store.latest_stories(limit=1))[0]
    later = NOW + timedelta(hours=5)
    await store.upsert_stories([StoryDraft(url=story.url, title=story.title, text=story.text,
                                           author="Jane Roe", image_url="https://e.org/i.jpg",
                                           published_at=later)], NOW + timedelta(hours=6))
    for c in (a, b):
        await c.follow()
        card = c.meta[story.id]
        assert (card.author, card.image_url, card.published_at) == ("Jane Roe", "https://e.org/i.jpg", later)
    assert (await Indexer(store, EMB).drain()).embedded == 0 and len(a) == 3  # nothing re-embedded


async def test_tags_reach_the_cards_follow_changes_and_survive_a_restart(store, tmp_path):
    """The cards carried no tags, so a feed's candidates and a block's rows had none for a
    reader's muted topics to match."""
    await store.upsert_stories([StoryDraft(url="https://e.org/villa", title="Villa drama",
                                           text="Two more leave the villa.",
                                           tags=("Love Island", "ITV"))], NOW)
    await seed(store, 3)
    a, b = corpus(store, tmp_path / "a"), corpus(store, tmp_path / "b", owner=False)
    for c in (a, b):
        await c.start()
    sid = (await store.get_story_by_url("https://e.org/villa")).id
    assert a.meta[sid].tags == ("Love Island", "ITV")
    assert [c.tags for c in a.meta.cards([sid, sid + 1])] == [("Love Island", "ITV"), ()]
    await store.upsert_stories([StoryDraft(url="https://e.org/villa", title="Villa drama",
                                           text="Two more leave the villa.",
                                           tags=("Reality TV",))], NOW)
    for c in (a, b):
        await c.follow()
        assert c.meta[sid].tags == ("Reality TV",)
    await a.save()
    again = corpus(store, tmp_path / "a")
    assert (await again.start())["restored"] and again.meta[sid].tags == ("Reality TV",)


def test_card_records_saved_before_tags_were_kept_still_restore(tmp_path):
    """A snapshot saved by the version before tags holds five fields a record: it is still
    used (rebuilding it costs minutes at a million stories), its cards without tags."""
    import io

    from recommender.corpus import MetaTable, StoryMeta

    old = "\x1f".join(["https://e.org/1", "Villa drama", "summary", "", "Jane Roe"]).encode()
    arrays = {"ids": np.array([1], dtype=np.int64), "offset": np.array([0], dtype=np.int64),
              "length": np.array([len(old)], dtype=np.int32),
              "published": np.array([np.iinfo(np.int64).min], dtype=np.int64),
              "collected": np.array([0], dtype=np.int64), "site": np.array([0], dtype=np.int32),
              "source": np.array([1], dtype=np.int32), "category": np.array([2], dtype=np.int32),
              "names": np.asarray(["e.org", "wire", "entertainment"], dtype=np.str_)}
    path = tmp_path / "records"
    path.write_bytes(old)
    table = MetaTable.restore(arrays, open(path, "rb"), tmp_path)
    assert table[1] == StoryMeta(1, "https://e.org/1", "Villa drama", "summary", "e.org", "wire",
                                 "entertainment", "Jane Roe", "", None,
                                 datetime(1970, 1, 1, tzinfo=UTC))
    assert table[1].tags == () and table.cards([1])[0].tags == ()
    # Stories added since keep their tags beside the old records, and through the next save.
    table.put_many([StoryMeta(2, "https://e.org/2", "T", "", "e.org", "wire", "entertainment",
                              "", "", None, NOW, ("Love Island", "a\x1fb\x1ec"))])
    arrays, write = table.snapshot()
    buf = io.BytesIO()
    write(buf)
    (tmp_path / "again").write_bytes(buf.getvalue())
    back = MetaTable.restore(arrays, open(tmp_path / "again", "rb"), tmp_path)
    assert back[1].tags == () and back[2].tags == ("Love Island", "a b c")
    for t in (table, back):
        t.close()


@contextlib.contextmanager
def files_capped_at(max_bytes: int):
    """The operating system refuses to grow any file of this process past `max_bytes`
    (RLIMIT_FSIZE; Python ignores SIGXFSZ, so a write fails with EFBIG): a full disk, for
    the index files only when the limit is set around their writes."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


async def test_index_files_that_cannot_be_written_neither_stop_nor_get_forgotten(store, tmp_path):
    """A full disk under the index files: `tidings run` refused to start (FAISS's write error,
    a RuntimeError, reached the CLI as a traceback), and a periodic save that failed marked
    the index clean, so it was not tried again until the next story. The files are a cache:
    the corpus serves from memory, keeps them pending, and writes them once there is room."""
    emb = HashingEmbedder(256)  # ~1 KiB a vector: the FAISS file outgrows the cap, cards do not
    await store.upsert_stories([StoryDraft(url=f"https://e.org/{i}", title=f"Story {i}",
                                           text=f"words {i}") for i in range(1500)], NOW)
    await Indexer(store, emb).drain()

    def make() -> Corpus:
        return Corpus(store, recipe=emb.recipe, dim=emb.dim, index_dir=tmp_path / "ix",
                      owner=True, index_factory=lambda: FaissIndex(emb.dim))

    c = make()
    with files_capped_at(512 * 1024):
        info = await c.start()
    assert info["indexed"] == 1500 and c.dirty
    assert FaissIndex.load(tmp_path / "ix") is None
    assert await c.try_save() and not c.dirty
    assert len(FaissIndex.load(tmp_path / "ix")) == 1500

    async with store.engine.begin() as conn:  # a takedown of ten, while the API runs
        await conn.execute(text("DELETE FROM stories WHERE url LIKE 'https://e.org/1_'"))
    assert await c.follow() == 10
    with files_capped_at(512 * 1024), pytest.raises(OSError, match="File too large"):
        await c.save()  # `tidings index`: a one-line error, not a traceback
    assert c.dirty  # still to be written
    with files_capped_at(512 * 1024):
        assert not await c.try_save()
    assert c.dirty and await c.try_save() and not c.dirty
    assert len(FaissIndex.load(tmp_path / "ix")) == 1490


async def test_a_start_reports_its_progress_while_it_reads_the_cards(store, tmp_path, monkeypatch):
    """Without a usable snapshot a start reads every story's card and text again (~10 min at
    a million stories): `tidings index` showed no bar for it, only for vectors to add."""
    import recommender.corpus as corpus_module

    monkeypatch.setattr(corpus_module, "META_CHUNK", 7)
    await seed(store)
    c = corpus(store, tmp_path / "ix")
    await c.start()
    (tmp_path / "ix" / "corpus.json").unlink()  # the index file stays usable, the cards not
    seen: list[tuple[int, int]] = []
    info = await corpus(store, tmp_path / "ix").start(progress=lambda d, t: seen.append((d, t)))
    assert info["repaired_added"] == 0 and not info["restored"]
    assert seen == [(7, 20), (14, 20), (20, 20)]


async def test_a_start_without_files_reports_vectors_and_cards_as_one_whole(store, tmp_path,
                                                                            monkeypatch):
    """Without saved files a start adds every vector (seconds), then reads every card (~10
    min at a million): each pass was reported as its own whole, so the bar of `tidings index`
    showed 100% after the vectors and fell back to 0% for the cards."""
    import recommender.corpus as corpus_module

    monkeypatch.setattr(corpus_module, "META_CHUNK", 7)
    await seed(store)
    seen: list[tuple[int, int]] = []
    info = await corpus(store, tmp_path / "ix").start(progress=lambda d, t: seen.append((d, t)))
    assert info["repaired_added"] == 20 and not info["from_files"]
    assert seen == [(20, 40), (27, 40), (34, 40), (40, 40)]


async def _change_while_down(store, urls) -> tuple[int, int]:
    """A story re-embedded (new text) and another given a new card (its author): both keep
    their id, so only the change log tells a replica. Returns their ids."""
    stories = {s.url: s for s in await store.latest_stories(limit=100)}
    moved, recarded = stories[urls[0]], stories[urls[1]]
    await store.upsert_stories([
        StoryDraft(url=moved.url, title="Completely different", text="replacement text"),
        StoryDraft(url=recarded.url, title=recarded.title, text=recarded.text, author="Jane Roe"),
    ], NOW)
    await Indexer(store, EMB).drain()
    return moved.id, recarded.id


async def _prune_log_up_to(store, seq: int) -> None:
    """Entries up to `seq` made 40 days old, then retention's prune at 30 days."""
    async with store.engine.begin() as conn:
        await conn.execute(text("UPDATE index_changes SET at = :at WHERE seq <= :seq"),
                           {"at": datetime.now(UTC) - timedelta(days=40), "seq": seq})
    await store.prune_changes_before(datetime.now(UTC) - timedelta(days=30))
    assert await store.change_horizon() == seq


async def _assert_as_in_database(store, c: Corpus, tmp_path) -> None:
    """`c` holds the database's vectors and cards: the same as a corpus built from it alone."""
    ids = sorted(await store.vector_ids(EMB.recipe))
    assert sorted(c.vindex.ids().tolist()) == sorted(c.meta) == c.lexical.ids().tolist() == ids
    want = await store.load_vectors(ids, EMB.recipe)
    got = c.vindex.get(np.asarray(ids))
    assert all(float(got[j] @ np.frombuffer(want[i], dtype=np.float32)) > 0.999
               for j, i in enumerate(ids))
    fresh = corpus(store, tmp_path / "fresh", owner=False)
    await fresh.start()
    mine, theirs = _view(c), _view(fresh)
    assert mine[1:] == theirs[1:]
    for a, b in zip(mine[0], theirs[0], strict=True):
        assert dict(a) == pytest.approx(dict(b), abs=1e-6)


async def test_saved_files_older_than_the_pruned_log_are_not_trusted(store, tmp_path, monkeypatch,
                                                                     caplog):
    """Retention prunes the change log. Files saved before its horizon would keep the old
    vector and card of a story re-embedded or edited meanwhile (the id reconcile sees no
    difference): such a start reloads every story from the database and says why."""
    await seed(store, 10)
    c = corpus(store, tmp_path / "ix")
    await c.start()  # nothing saved yet: built and saved, at this watermark
    saved_at = c.watermark
    moved, recarded = await _change_while_down(store, ["https://e.org/2", "https://e.org/5"])

    # Pruned up to the files' watermark: what they miss is still logged, so they are used.
    await _prune_log_up_to(store, saved_at)
    calls = _count_meta_loads(monkeypatch)
    within = corpus(store, tmp_path / "ix", owner=False)
    assert (await within.start())["restored"] and calls == [[]]  # no story read from the database
    assert within.meta[moved].title == "Completely different"
    assert within.meta[recarded].author == "Jane Roe"

    # Pruned past it: the re-embed and the edit are gone from the log.
    await _prune_log_up_to(store, await store.change_seq())
    calls.clear()
    behind = corpus(store, tmp_path / "ix", owner=False)
    with caplog.at_level("WARNING", logger="tidings.corpus"):
        info = await behind.start()
    assert behind.meta[moved].title == "Completely different"
    assert behind.meta[recarded].author == "Jane Roe"
    assert not info["restored"] and len(calls[0]) == 10 and "index.log_pruned" in caplog.text
    assert "index.unusable" not in caplog.text
    await _assert_as_in_database(store, behind, tmp_path)
    # The owner saves what it reloaded, at the log's position now: the next start restores it.
    owner = corpus(store, tmp_path / "ix")
    assert not (await owner.start())["restored"] and owner.watermark == await store.change_seq()
    again = corpus(store, tmp_path / "ix", owner=False)
    assert (await again.start())["restored"]
    await _assert_as_in_database(store, again, tmp_path)


async def test_a_follower_behind_the_pruned_log_reloads(store, tmp_path, caplog):
    """A running replica stalled past the horizon cannot replay what it missed; skipping ahead
    would serve old vectors and cards for ever. Its next follow reloads from the database."""
    await seed(store, 8)
    a = corpus(store, tmp_path / "a", owner=False)
    await a.start()
    moved, recarded = await _change_while_down(store, ["https://e.org/1", "https://e.org/6"])
    async with store.engine.begin() as conn:  # a takedown
        gone = (await conn.execute(text("SELECT id FROM stories WHERE url = 'https://e.org/3'"))).scalar_one()
        await conn.execute(text("DELETE FROM stories WHERE id = :id"), {"id": gone})
    await seed(store, 2, start=50)
    await _prune_log_up_to(store, await store.change_seq())
    version = a.version

    with caplog.at_level("WARNING", logger="tidings.corpus"):
        await a.follow()
    assert gone not in a.meta and a.meta[moved].title == "Completely different"
    assert a.meta[recarded].author == "Jane Roe"
    assert "index.log_pruned" in caplog.text and a.version > version
    assert a.watermark == await store.change_seq()
    await _assert_as_in_database(store, a, tmp_path)
    # Then it follows the log as before.
    await seed(store, 1, start=70)
    assert await a.follow() == 1 and len(a) == 10
