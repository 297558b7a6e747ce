"""The corpus is a cache of the database: repaired at start, kept in step by the change log,
identical across replicas (run on SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from aggregator.model import StoryDraft
from recommender.corpus import Corpus
from recommender.embed import HashingEmbedder
from recommender.indexer import Indexer
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
    removed = await store.delete_stories_before(NOW + timedelta(days=1), NOW + timedelta(days=2))
    await seed(store, 3, start=200)
    c2 = corpus(store, tmp_path / "ix")
    await c2.start()
    assert sorted(c2.vindex.ids().tolist()) == sorted(await store.vector_ids(EMB.recipe))
    assert len(c2) == 3 and not set(removed) & set(c2.meta)


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
    gone = await store.delete_stories_before(NOW + timedelta(days=1), NOW + timedelta(days=2))
    for c in (a, b):
        await c.follow()
        assert len(c) == 0 and all(i not in c.meta for i in gone)
        assert c.vindex.search(q, 5) == []
    assert isinstance(a.version, int) and a.version > 1
    assert np.asarray(a.vindex.ids()).size == 0


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
        for n, ix in enumerate(indexers):
            async def save(rows, recipe, now=None, n=n):
                seen[n] += [r[0] for r in rows]
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


async def test_large_bulk_load_streams_into_the_8bit_index(store, tmp_path, monkeypatch):
    # Past sq8_threshold the start builds the index from the half-float file it streams the
    # stored vectors into (no float matrix of the whole corpus): same ids, same vectors ~1e-3.
    import recommender.corpus as corpus_module

    monkeypatch.setattr(corpus_module, "BULK_LOAD_MIN", 10)
    streamed = []
    plain = FaissIndex.rebuild_streamed
    monkeypatch.setattr(FaissIndex, "rebuild_streamed",
                        lambda self, ids, rows: streamed.append(len(ids)) or plain(self, ids, rows))
    await seed(store, 60)
    c = Corpus(store, recipe=EMB.recipe, dim=EMB.dim, index_dir=tmp_path / "ix", owner=True,
               index_factory=lambda: FaissIndex(EMB.dim, hnsw_threshold=20, sq8_threshold=40,
                                                rebuild_mode="inline"))
    info = await c.start()
    assert info["indexed"] == 60 and c.vindex.kind == "ivf_sq8" and streamed == [60]
    ids = sorted(await store.vector_ids(EMB.recipe))
    assert sorted(c.vindex.ids().tolist()) == ids
    stored = await store.load_vectors(ids[:5], EMB.recipe)
    for i, blob in stored.items():
        want = np.frombuffer(blob, dtype=np.float32)
        np.testing.assert_allclose(c.vindex.get(np.array([i]))[0], want, atol=2e-3)
        assert c.vindex.search(want, 1)[0][0] == i
