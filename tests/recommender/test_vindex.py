"""Contract tests for the vector indexes: one suite over brute force and every FAISS layout."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recommender.vindex import (
    INDEX_FILE,
    MANIFEST_FILE,
    VECTORS_FILE,
    BruteForceIndex,
    FaissIndex,
    ids_digest,
    manifest,
    reconcile,
)

DIM = 32
# Low enough that the HNSW variants really run HNSW on the few hundred rows used here.
HNSW_THRESHOLD = 100


def unit_rows(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def clustered_unit_rows(n: int, dim: int, *, clusters: int, noise: float, seed: int) -> np.ndarray:
    """Cluster centres plus Gaussian noise, normalised: a stand-in for topical news embeddings."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rows = centres[rng.integers(0, clusters, n)]
    rows = rows + noise * rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


FACTORIES: dict[str, Callable[[], object]] = {
    "brute": lambda: BruteForceIndex(DIM),
    "faiss-flat": lambda: FaissIndex(DIM, rebuild_mode="inline"),
    "faiss-hnsw": lambda: FaissIndex(DIM, hnsw_threshold=HNSW_THRESHOLD, rebuild_mode="inline"),
    "faiss-hnsw-sq8": lambda: FaissIndex(DIM, hnsw_threshold=HNSW_THRESHOLD, sq8=True,
                                         rebuild_mode="inline"),
    "faiss-ivf-sq8": lambda: FaissIndex(DIM, hnsw_threshold=HNSW_THRESHOLD,
                                        sq8_threshold=HNSW_THRESHOLD, rebuild_mode="inline"),
}
# The 8-bit kinds search 8-bit codes, then re-score with half floats: vectors and scores come
# back to ~1e-3 (8-bit codes alone are off by up to ~0.03).
ATOL = {"faiss-hnsw-sq8": 2e-3, "faiss-ivf-sq8": 2e-3}
KIND = {"faiss-hnsw": "hnsw", "faiss-hnsw-sq8": "hnsw_sq8", "faiss-ivf-sq8": "ivf_sq8"}


@pytest.fixture(params=list(FACTORIES))
def make(request):
    return request.param, FACTORIES[request.param]


def filled(make, n: int = 400, seed: int = 0):
    name, factory = make
    index = factory()
    vectors = unit_rows(n, seed=seed)
    ids = np.arange(1000, 1000 + n, dtype=np.int64)
    index.add(ids, vectors)
    if name in KIND:
        assert index.kind == KIND[name]
    return index, ids, vectors, ATOL.get(name, 1e-5)


def test_stored_vector_finds_itself_first_with_its_inner_product(make):
    index, ids, vectors, atol = filled(make)
    assert len(index) == len(ids)
    np.testing.assert_array_equal(index.ids(), ids)
    hits = index.search_many(vectors[:50], 5)
    assert [row[0][0] for row in hits] == ids[:50].tolist()
    for query, row in zip(vectors[:50], hits, strict=True):
        scores = [score for _, score in row]
        assert scores == sorted(scores, reverse=True)
        got = index.get(np.array([i for i, _ in row]))
        np.testing.assert_allclose(scores, got @ query, atol=atol)
    single = index.search(vectors[7], 3)
    assert single[0][0] == ids[7] and single[0][1] == pytest.approx(1.0, abs=atol)


def test_get_returns_the_stored_vectors_and_raises_on_unknown(make):
    index, ids, vectors, atol = filled(make)
    np.testing.assert_allclose(index.get(ids[[5, 3, 300]]), vectors[[5, 3, 300]], atol=atol)
    with pytest.raises(KeyError):
        index.get(np.array([ids[0], 999_999]))


def test_readding_an_id_replaces_its_vector(make):
    index, ids, vectors, atol = filled(make)
    fresh = unit_rows(3, seed=99)
    index.add(ids[:3], fresh)
    assert len(index) == len(ids)
    np.testing.assert_allclose(index.get(ids[:3]), fresh, atol=atol)
    for row in index.search_many(vectors[:3], len(ids)):
        returned = [i for i, _ in row]
        assert len(returned) == len(set(returned))  # the old vector is not a second copy
    top = index.search(fresh[1], 1)
    assert top[0][0] == ids[1]


def test_a_batch_repeating_an_id_keeps_its_last_vector(make):
    index = make[1]()
    rows = unit_rows(3, seed=5)
    index.add(np.array([7, 8, 7]), rows)
    assert len(index) == 2
    np.testing.assert_allclose(index.get(np.array([7])), rows[2:3], atol=ATOL.get(make[0], 1e-5))


def test_removed_ids_are_never_returned(make):
    index, ids, vectors, _ = filled(make)
    gone = ids[::3]
    index.remove(np.concatenate([gone, [5, 123_456_789]]))  # unknown ids are ignored
    live = np.setdiff1d(ids, gone)
    assert len(index) == len(live)
    np.testing.assert_array_equal(index.ids(), live)
    for row in index.search_many(vectors, 20):
        returned = {i for i, _ in row}
        assert not returned & set(gone.tolist())
        assert len(row) == 20
    with pytest.raises(KeyError):
        index.get(gone[:1])


def test_k_beyond_the_size_and_empty_index(make):
    index = make[1]()
    assert index.search(unit_rows(1)[0], 5) == []
    assert len(index) == 0 and index.ids().size == 0
    index.add(np.array([1, 2]), unit_rows(2))
    assert {i for i, _ in index.search(unit_rows(1, seed=3)[0], 10)} == {1, 2}
    assert index.search(unit_rows(1)[0], 0) == []


def test_bad_input_is_refused(make):
    index = make[1]()
    with pytest.raises(ValueError):
        index.add(np.array([1]), np.zeros((1, DIM + 1), dtype=np.float32))
    with pytest.raises(ValueError):
        index.add(np.array([1, 2]), unit_rows(1))
    with pytest.raises(ValueError):
        index.add(np.array([-1]), unit_rows(1))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.tuples(st.booleans(), st.lists(st.integers(0, 60), min_size=1, max_size=40)),
                    min_size=1, max_size=12))
def test_matches_a_dict_model_under_any_sequence_of_adds_and_removes(make, ops):
    name, factory = make
    index = FaissIndex(DIM, hnsw_threshold=20, rebuild_mode="inline") if name == "faiss-hnsw" \
        else factory()
    model: dict[int, np.ndarray] = {}
    for step, (is_add, keys) in enumerate(ops):
        keys_arr = np.array(keys, dtype=np.int64)
        if is_add:
            rows = unit_rows(len(keys), seed=step)
            index.add(keys_arr, rows)
            model.update(zip(keys, rows, strict=True))
        else:
            index.remove(keys_arr)
            for key in keys:
                model.pop(key, None)
    assert index.ids().tolist() == sorted(model)
    if model:
        keys = np.array(sorted(model))
        np.testing.assert_allclose(index.get(keys), np.stack([model[k] for k in keys]),
                                   atol=ATOL.get(name, 1e-5))
        returned = [i for i, _ in index.search(unit_rows(1, seed=77)[0], len(model))]
        assert set(returned) <= set(model)
        if name in ("brute", "faiss-flat"):
            assert sorted(returned) == sorted(model)


# --- FAISS specifics: tombstones, kind switch, rebuild -----------------------------------


def test_flat_switches_to_hnsw_past_the_threshold_and_back_after_compaction():
    index = FaissIndex(DIM, hnsw_threshold=150, rebuild_mode="inline")
    vectors = unit_rows(300, seed=1)
    index.add(np.arange(100), vectors[:100])
    assert index.kind == "flat"
    index.add(np.arange(100, 300), vectors[100:])
    assert index.kind == "hnsw" and len(index) == 300
    index.remove(np.arange(0, 240))  # 80 % tombstones: compaction picks the kind for 60 rows
    assert index.kind == "flat" and index.tombstones == 0 and len(index) == 60
    assert index.search(vectors[250], 1)[0][0] == 250


@pytest.mark.parametrize("threshold,kind", [(10_000, "flat"), (50, "hnsw")])
def test_tombstones_are_filtered_then_compacted(threshold: int, kind: str):
    index = FaissIndex(DIM, hnsw_threshold=threshold, rebuild_mode="inline")
    vectors = unit_rows(500, seed=2)
    index.add(np.arange(500), vectors)
    index.remove(np.arange(0, 90))  # 18 %: kept as tombstones
    assert index.kind == kind and index.tombstones == 90
    for row in index.search_many(vectors[:90], 10):
        assert len(row) == 10 and min(i for i, _ in row) >= 90
    index.remove(np.arange(90, 120))  # 24 %: compacted
    assert index.tombstones == 0 and len(index) == 380
    assert index.search(vectors[400], 1)[0][0] == 400


def test_background_rebuild_does_not_block_or_break_concurrent_queries_and_writes():
    index = FaissIndex(DIM, hnsw_threshold=100, rebuild_mode="background")
    vectors = unit_rows(3000, seed=3)
    index.add(np.arange(2000), vectors[:2000])
    assert index.wait_for_rebuild(30)
    assert index.kind == "hnsw"
    # Ids removed so far, replaced (never mutated) after each remove returns; a reader checks
    # against the set it saw before its search.
    removed = [frozenset(range(0, 2000, 2))]
    errors: list[BaseException] = []
    stop = threading.Event()

    def query() -> None:
        try:
            while not stop.is_set():
                gone = removed[0]
                for row in index.search_many(vectors[:50], 10):
                    assert not {i for i, _ in row} & gone
        except BaseException as e:  # noqa: BLE001 - surfaced below
            errors.append(e)

    index.remove(np.array(sorted(removed[0])))  # 50 % tombstones -> background compaction
    readers = [threading.Thread(target=query) for _ in range(2)]
    for t in readers:
        t.start()
    # Writes while the rebuild may be running: the journal must carry them into the new index.
    index.add(np.arange(2000, 3000), vectors[2000:])
    index.remove(np.array([1, 3, 2001]))
    removed[0] = removed[0] | {1, 3, 2001}
    db_ids = np.setdiff1d(np.arange(3000), sorted(removed[0]))  # what the DB holds now
    thread = index.rebuild_in_background(db_ids, vectors[db_ids])
    index.remove(np.array([5]))  # arrives mid-rebuild: replayed from the journal
    removed[0] = removed[0] | {5}
    thread.join(30)
    assert index.wait_for_rebuild(30)
    stop.set()
    for t in readers:
        t.join(10)
    assert not errors
    assert index.tombstones == 0 or index.tombstones <= 0.2 * (len(index) + index.tombstones)
    np.testing.assert_array_equal(index.ids(), np.setdiff1d(db_ids, [5]))
    assert index.search(vectors[2002], 1)[0][0] == 2002


# --- persistence --------------------------------------------------------------------------


@pytest.mark.parametrize("mmap", [False, True])
@pytest.mark.parametrize("threshold,sq8,sq8_threshold", [
    (10_000, False, 500_000), (50, False, 500_000), (50, True, 500_000), (50, False, 100)])
def test_save_load_roundtrip(tmp_path: Path, mmap: bool, threshold: int, sq8: bool,
                             sq8_threshold: int):
    index = FaissIndex(DIM, hnsw_threshold=threshold, sq8=sq8, sq8_threshold=sq8_threshold,
                       rebuild_mode="inline")
    vectors = unit_rows(300, seed=4)
    index.add(np.arange(300), vectors)
    index.remove(np.array([3, 4]))  # a tombstone survives the roundtrip for HNSW
    saved = index.save(tmp_path, watermark=42, recipe="model-x")
    assert saved["count"] == 298 and saved["ids_digest"] == ids_digest(index.ids())
    assert manifest(tmp_path) == saved
    loaded = FaissIndex.load(tmp_path, mmap=mmap, recipe="model-x", rebuild_mode="inline")
    assert loaded is not None and loaded.kind == index.kind and loaded.mmapped == mmap
    assert loaded.watermark == 42 and loaded.sq8 == sq8
    np.testing.assert_array_equal(loaded.ids(), index.ids())
    assert loaded.search_many(vectors[:20], 5) == index.search_many(vectors[:20], 5)
    # The loaded index keeps taking updates (a memory-mapped one into a private delta).
    loaded.add(np.array([1000, 5]), unit_rows(2, seed=8))
    loaded.remove(np.array([6]))
    assert loaded.search(unit_rows(2, seed=8)[0], 1)[0][0] == 1000
    assert 6 not in {i for i, _ in loaded.search(vectors[6], 10)}
    loaded.save(tmp_path, watermark=43, recipe="model-x")
    again = FaissIndex.load(tmp_path, mmap=mmap)
    assert again is not None and again.watermark == 43
    np.testing.assert_array_equal(again.ids(), loaded.ids())
    assert FaissIndex.load(tmp_path, recipe="another-model") is None
    with pytest.raises(TypeError):
        FaissIndex.load(tmp_path, ef_serch=10)  # a typo is a bug, not a missing index


def test_a_save_while_loading_is_read_again_not_given_up(tmp_path: Path, monkeypatch):
    """The indexer saved while a `serve --workers` worker read the files: the manifest it read
    no longer matched the file, the load gave up, and the worker rebuilt a private copy from
    the database instead of mapping the shared file."""
    import recommender.vindex as vindex

    old = FaissIndex(DIM, rebuild_mode="inline")
    old.add(np.arange(100), unit_rows(100, seed=1))
    old.save(tmp_path, watermark=1)
    new = FaissIndex(DIM, rebuild_mode="inline")
    new.add(np.arange(150), unit_rows(150, seed=2))
    real_manifest = vindex.manifest
    saves = []

    def manifest_then_a_save(directory):
        got = real_manifest(directory)
        if not saves:  # right after the loader read the manifest, the other process saves
            saves.append(new.save(tmp_path, watermark=2))
        return got

    monkeypatch.setattr(vindex, "manifest", manifest_then_a_save)
    loaded = FaissIndex.load(tmp_path, mmap=True)
    assert saves and loaded is not None and loaded.mmapped
    assert loaded.watermark == 2 and len(loaded.ids()) == 150


def test_truncated_or_corrupt_index_file_loads_as_none(tmp_path: Path):
    index = FaissIndex(DIM, hnsw_threshold=50, rebuild_mode="inline")
    index.add(np.arange(200), unit_rows(200))
    index.save(tmp_path)
    path = tmp_path / INDEX_FILE
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert FaissIndex.load(tmp_path) is None
    assert FaissIndex.load(tmp_path, mmap=True) is None
    corrupt = bytearray(data)
    corrupt[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(corrupt))
    assert FaissIndex.load(tmp_path) is None
    path.write_bytes(data)
    assert FaissIndex.load(tmp_path) is not None
    (tmp_path / MANIFEST_FILE).write_text("{not json")
    assert manifest(tmp_path) is None and FaissIndex.load(tmp_path) is None
    assert FaissIndex.load(tmp_path / "missing") is None


def test_manifest_that_does_not_match_the_file_is_detected(tmp_path: Path):
    # A kill between replacing index.faiss and index.json leaves the old manifest beside the
    # new file; the ids digest catches it even when size and checksum are made to match.
    old, new = tmp_path / "old", tmp_path / "new"
    index = FaissIndex(DIM, rebuild_mode="inline")
    index.add(np.arange(100), unit_rows(100))
    index.save(old)
    index.remove(np.array([7]))
    index.add(np.array([7777]), unit_rows(1, seed=9))
    index.save(new)
    stale = json.loads((old / MANIFEST_FILE).read_text())
    fresh = json.loads((new / MANIFEST_FILE).read_text())
    (old / INDEX_FILE).write_bytes((new / INDEX_FILE).read_bytes())
    assert FaissIndex.load(old) is None  # checksum differs
    stale.update(file_bytes=fresh["file_bytes"], file_sha256=fresh["file_sha256"])
    (old / MANIFEST_FILE).write_text(json.dumps(stale))
    assert FaissIndex.load(old) is None  # ids digest differs
    assert FaissIndex.load(new) is not None


def test_reconcile_repairs_an_index_that_disagrees_with_the_db(make, tmp_path: Path):
    name, factory = make
    index = factory()
    vectors = unit_rows(200, seed=6)
    index.add(np.arange(150), vectors[:150])
    db_ids = np.arange(50, 200)  # the DB moved on: 0..49 expired, 150..199 arrived
    missing, extra = reconcile(index, db_ids)
    np.testing.assert_array_equal(missing, np.arange(150, 200))
    np.testing.assert_array_equal(extra, np.arange(50))
    index.add(missing, vectors[missing])
    index.remove(extra)
    assert [a.size for a in reconcile(index, db_ids)] == [0, 0]
    returned = {i for row in index.search_many(vectors, 10) for i, _ in row}
    assert returned <= set(db_ids.tolist())


def test_restart_after_a_stale_save_is_repaired_from_the_db(tmp_path: Path):
    vectors = unit_rows(400, seed=10)
    index = FaissIndex(DIM, hnsw_threshold=100, rebuild_mode="inline")
    index.add(np.arange(300), vectors[:300])
    index.save(tmp_path, watermark=300)
    # ...then the process ran on (stories 300..399 arrived, 0..99 expired) and was killed
    # before the next save. At start: load, compare with the DB, repair.
    db = {i: vectors[i] for i in range(100, 400)}
    restarted = FaissIndex.load(tmp_path, rebuild_mode="inline")
    assert restarted is not None and restarted.watermark == 300
    missing, extra = reconcile(restarted, np.array(sorted(db)))
    restarted.add(missing, np.stack([db[i] for i in missing]))
    restarted.remove(extra)
    np.testing.assert_array_equal(restarted.ids(), np.arange(100, 400))
    assert all(i >= 100 for row in restarted.search_many(vectors[:100], 10) for i, _ in row)


# --- quality --------------------------------------------------------------------------------


def recall_at_k(found: list[list[tuple[int, float]]], exact: list[list[tuple[int, float]]],
                k: int) -> float:
    hits = sum(len({i for i, _ in f[:k]} & {i for i, _ in e[:k]}) for f, e in zip(found, exact, strict=True))
    return hits / (k * len(exact))


@pytest.mark.slow
def test_hnsw_recall_at_10_against_exact_on_clustered_vectors():
    dim, n = 384, 20_000
    vectors = clustered_unit_rows(n + 200, dim, clusters=200, noise=1.0, seed=11)
    base, queries = vectors[:n], vectors[n:]
    exact = BruteForceIndex(dim)
    exact.add(np.arange(n), base)
    hnsw = FaissIndex(dim, hnsw_threshold=1_000, rebuild_mode="inline")
    hnsw.add(np.arange(n), base)
    assert hnsw.kind == "hnsw" and hnsw.ef_search == 64
    recall = recall_at_k(hnsw.search_many(queries, 10), exact.search_many(queries, 10), 10)
    assert recall >= 0.97, recall


_MEASURE_LOAD = """
import sys
from pathlib import Path

import faiss  # imported up front: the library's own pages are not the index's
from recommender.vindex import FaissIndex

def private_mib():
    resident, shared = (int(x) for x in Path("/proc/self/statm").read_text().split()[1:3])
    return (resident - shared) * 4096 / 2**20

before = private_mib()
index = FaissIndex.load(Path(sys.argv[1]), mmap=sys.argv[2] == "1")
assert index is not None and len(index) == int(sys.argv[3])
print(private_mib() - before)
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc to read RSS")
@pytest.mark.parametrize("sq8_threshold", [10**9, 1_000], ids=["flat", "ivf_sq8"])
def test_memory_mapped_load_shares_the_file_instead_of_copying_it(tmp_path: Path,
                                                                 sq8_threshold: int):
    # Worker processes can share one index only if a mapped load leaves the vectors in the
    # page cache (shared) rather than copying them into private memory. Measured in fresh
    # processes: in this one, freed heap from earlier tests would hide a copy.
    dim, n = 256, 20_000
    index = FaissIndex(dim, sq8_threshold=sq8_threshold, rebuild_mode="inline")
    index.add(np.arange(n), unit_rows(n, dim=dim, seed=12))
    file_mib = index.save(tmp_path)["file_bytes"] / 2**20
    repo = Path(__file__).resolve().parents[2]

    def private_mib_after_load(mmap: bool) -> float:
        done = subprocess.run([sys.executable, "-c", _MEASURE_LOAD, str(tmp_path), str(int(mmap)),
                               str(n)], cwd=repo, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return float(done.stdout.strip().splitlines()[-1])

    mapped_mib, copied_mib = private_mib_after_load(True), private_mib_after_load(False)
    assert mapped_mib < 0.25 * file_mib < 0.75 * file_mib < copied_mib, (mapped_mib, copied_mib)
    mapped = FaissIndex.load(tmp_path, mmap=True)
    assert mapped is not None
    query = unit_rows(1, dim=dim, seed=13)[0]
    assert mapped.search(query, 5) == index.search(query, 5)


def test_large_indexes_switch_to_ivf_sq8_by_themselves():
    index = FaissIndex(DIM, hnsw_threshold=100, sq8_threshold=200, rebuild_mode="inline")
    vectors = unit_rows(300, seed=4)
    index.add(np.arange(150), vectors[:150])
    assert index.kind == "hnsw"
    index.add(np.arange(150, 300), vectors[150:])
    assert index.kind == "ivf_sq8" and len(index) == 300
    assert index.search(vectors[299], 1)[0][0] == 299
    # Half-precision rows: the stored vectors come back close, not exact.
    assert np.allclose(index.get(np.array([5]))[0], vectors[5], atol=2e-3)


def test_ivf_sq8_recall_on_near_ties_comes_from_rescoring():
    # Clusters whose members are near-ties (as in the 1M benchmark): recall@10 against exact
    # search must reach 0.97 (issue 6); here 0.998, 0.991 from the 8-bit codes alone. The
    # scores must be the half-float inner products (~5e-5 off), not the 8-bit ones (~1e-3).
    vectors = clustered_unit_rows(10_000, 384, clusters=100, noise=1.0, seed=3)
    ids = np.arange(10_000, dtype=np.int64)
    index = FaissIndex(384, hnsw_threshold=1000, sq8_threshold=1000, nprobe=16,
                       rebuild_mode="inline")
    index.add(ids, vectors)
    assert index.kind == "ivf_sq8"
    exact = BruteForceIndex(384)
    exact.add(ids, vectors)
    queries = vectors[::100]
    got = index.search_many(queries, 10)
    want = exact.search_many(queries, 10)
    hits = [len({i for i, _ in g} & {i for i, _ in w}) for g, w in zip(got, want, strict=True)]
    assert sum(hits) / (10 * len(queries)) >= 0.99
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose([s for _, s in g][:3], [s for _, s in w][:3], atol=2e-4)


def test_8bit_index_without_its_half_floats_loads_as_none(tmp_path: Path):
    index = FaissIndex(DIM, hnsw_threshold=50, sq8_threshold=50, rebuild_mode="inline")
    index.add(np.arange(200), unit_rows(200))
    saved = index.save(tmp_path)
    assert saved["kind"] == "ivf_sq8" and saved["vectors_bytes"] == 200 * DIM * 2
    rows_file = tmp_path / VECTORS_FILE
    data = bytearray(rows_file.read_bytes())
    data[100] ^= 0xFF
    rows_file.write_bytes(bytes(data))
    assert FaissIndex.load(tmp_path) is None  # checksum
    rows_file.write_bytes(bytes(data[:-2]))
    assert FaissIndex.load(tmp_path, verify_checksum=False) is None  # size
    rows_file.unlink()
    assert FaissIndex.load(tmp_path, verify_checksum=False) is None


def test_8bit_compaction_copies_live_rows_to_a_new_half_float_file():
    index = FaissIndex(DIM, hnsw_threshold=50, sq8_threshold=50, rebuild_mode="inline")
    vectors = unit_rows(400, seed=21)
    index.add(np.arange(400), vectors)
    old_rows = index._state.base.exact
    index.remove(np.arange(0, 400, 3))  # a third dead: past the 20 % that triggers compaction
    assert index.kind == "ivf_sq8" and index.tombstones == 0 and len(index) == 266
    assert index._state.base.exact is not old_rows and len(index._state.base.exact) == 266
    live = np.setdiff1d(np.arange(400), np.arange(0, 400, 3))
    np.testing.assert_allclose(index.get(live), vectors[live], atol=2e-3)
    exact = BruteForceIndex(DIM)
    exact.add(live, vectors[live])
    assert [i for i, _ in index.search(vectors[1], 5)] == [i for i, _ in exact.search(vectors[1], 5)]


def test_ivf_lists_follow_a_growing_corpus(tmp_path: Path):
    # Trained at 2,000 vectors; at four times that the lists are rebuilt for the new size
    # instead of growing ever longer (the saved index remembers what it was trained for).
    index = FaissIndex(DIM, hnsw_threshold=100, sq8_threshold=1_000, rebuild_mode="inline")
    vectors = unit_rows(9_000, seed=31)
    index.add(np.arange(2_000), vectors[:2_000])
    assert index.kind == "ivf_sq8"
    first = index._state.base.index.nlist
    index.add(np.arange(2_000, 7_000), vectors[2_000:7_000])
    assert index._state.base.index.nlist == first  # 3.5x: not yet
    index.save(tmp_path)
    loaded = FaissIndex.load(tmp_path, rebuild_mode="inline")
    assert loaded is not None and loaded._state.trained_for == 2_000
    for ix in (index, loaded):
        ix.add(np.arange(7_000, 9_000), vectors[7_000:])
        assert ix._state.base.index.nlist > first and ix._state.trained_for == 9_000
        assert len(ix) == 9_000 and ix.search(vectors[8_999], 1)[0][0] == 8_999


@pytest.mark.parametrize("n, hnsw_threshold", [(600, 100_000), (2_000, 1_000), (3_000, 100_000)])
def test_a_replaced_index_state_is_freed_without_the_cycle_collector(n, hnsw_threshold):
    """Serving processes freeze their start-up heap (`api.runner.settle_heap`): a frozen object
    in a reference cycle is never collected, so the index's replaced state (a rebuild, a
    switch of kind) must be freed by reference counting alone, or a million-story index would
    stay in memory beside its successor."""
    import gc
    import weakref

    rng = np.random.default_rng(5)
    vecs = rng.standard_normal((n, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ix = FaissIndex(16, hnsw_threshold=hnsw_threshold, sq8_threshold=2_500, rebuild_mode="inline")
    ix.add(np.arange(n), vecs)
    old = [weakref.ref(ix._state), *(weakref.ref(s) for s in ix._state.segments)]
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        ix.remove(np.arange(0, n, 2))
        ix.compact()
        assert [r() for r in old] == [None] * len(old), ix.kind
    finally:
        if was_enabled:
            gc.enable()


@pytest.mark.parametrize("watermark", [None, "ten", [1]])
def test_a_manifest_with_a_bad_watermark_is_an_unusable_file(tmp_path: Path, watermark):
    """It raised on every start (outside the checks), so no command ran until it was deleted;
    now the index is rebuilt from the database, as for any damaged file."""
    import json

    from recommender.vindex import MANIFEST_FILE

    index = FaissIndex(DIM)
    index.add(np.arange(10), unit_rows(10, seed=1))
    index.save(tmp_path, watermark=5)
    saved = json.loads((tmp_path / MANIFEST_FILE).read_text())
    (tmp_path / MANIFEST_FILE).write_text(json.dumps({**saved, "watermark": watermark}))
    assert FaissIndex.load(tmp_path) is None


_KILLED_MID_SAVE = """
import os, signal, sys
import numpy as np
from recommender.vindex import FaissIndex
index = FaissIndex(32, rebuild_mode="inline")
rows = np.random.default_rng(0).standard_normal((300, 32)).astype(np.float32)
index.add(np.arange(300), rows / np.linalg.norm(rows, axis=1, keepdims=True))
# Killed once the temporary files are written, before the first one replaces a final file.
os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
index.save(sys.argv[1])
"""


def test_a_save_sweeps_the_temporary_files_of_a_save_that_was_killed(tmp_path: Path):
    killed = subprocess.run([sys.executable, "-c", _KILLED_MID_SAVE, str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    left = sorted(p.name for p in tmp_path.glob(".*.tmp"))
    assert any(name.startswith(f".{INDEX_FILE}.") for name in left), left
    # A save still running in a live process keeps its files.
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as live:
        try:
            running = tmp_path / f".{INDEX_FILE}.{live.pid}-0123abcd.tmp"
            running.write_bytes(b"in progress")
            index = FaissIndex(DIM, rebuild_mode="inline")
            index.add(np.arange(10), unit_rows(10))
            index.save(tmp_path)
            assert sorted(p.name for p in tmp_path.glob(".*.tmp")) == [running.name]
        finally:
            live.kill()
    assert len(FaissIndex.load(tmp_path)) == 10
