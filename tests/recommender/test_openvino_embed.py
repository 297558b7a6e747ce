"""The OpenVINO int8 embedder: built offline with shipped calibration texts, close to torch,
independent of its batch, reused, and chosen over onnxruntime only when it wins a race.

Model tests build the IR once per session into a temporary folder (~20 s on a loaded machine).
"""

from __future__ import annotations

import asyncio
import json
import re
import time

import numpy as np
import pytest

from recommender.openvino_embed import (
    CALIBRATION_TEXTS,
    CHOICE_FILE,
    MANIFEST,
    MODEL_FILE,
    OpenVinoEmbedder,
    available,
    build_openvino_model,
    calibration_inputs,
    choose_int8_runtime,
    pick_runtime,
    race,
    recipe_of_ov_build,
)
from tests.e2e.conftest import stop_group

pytestmark = pytest.mark.skipif(not available(), reason="openvino / nncf not installed")

# --- pure ----------------------------------------------------------------------------------


class _SlowFirstCall:
    """Stands in for a runtime whose first call on a shape (or of several batches) is slow."""

    def __init__(self):
        self.seen: set[int] = set()
        self.calls: list[int] = []

    def encode(self, texts, batch_size=32):
        self.calls.append(len(texts))
        if len(texts) not in self.seen:
            self.seen.add(len(texts))
            time.sleep(0.3)
        return np.zeros((len(texts), 384), dtype=np.float32)


def test_the_race_times_only_warm_runtimes():
    texts = ["a long text"] * 12
    a, b = _SlowFirstCall(), _SlowFirstCall()
    rates = race({"ov": a, "ort": b}, texts, rounds=2)
    # Every timed round ran on the raced texts after an untimed call on those same texts:
    # 12 texts in 0.3 s would be 40 texts/s.
    assert all(r > 1000 for v in rates.values() for r in v), rates
    assert a.calls == b.calls == [12, 12, 12]


def test_pick_runtime_needs_a_clear_win_for_openvino():
    assert pick_runtime({"ov": [30, 31, 29], "ort": [20, 21, 19]}) == "ov"
    # 5 % faster is within a loaded machine's noise: keep the runtime with fewer packages
    assert pick_runtime({"ov": [21, 21, 21], "ort": [20, 20, 20]}) == "ort"
    assert pick_runtime({"ov": [10, 40, 11], "ort": [20, 20, 20]}) == "ort"  # median, not max
    assert pick_runtime({"ov": [5], "ort": [20]}) == "ort"


def test_calibration_covers_short_and_full_length_inputs():
    from recommender.onnx_embed import MAX_TOKENS, load_tokenizer

    lengths = [len(e.ids) for e in load_tokenizer().encode_batch(calibration_inputs())]
    assert min(lengths) < 20  # titles
    assert sum(n == MAX_TOKENS for n in lengths) >= 10  # truncated, full-window inputs
    assert len(set(CALIBRATION_TEXTS)) == len(CALIBRATION_TEXTS)


def test_build_recipe_names_its_calibration_and_runtime():
    recipe = recipe_of_ov_build()
    assert recipe["openvino"] != "absent" and recipe["nncf"] != "absent"
    assert re.fullmatch(r"[0-9a-f]{16}", recipe["calibration_sha"])


# --- the real model ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def models_dir(ov_models_dir):
    """Where `ov_path` (tests/conftest.py, shared with the quality tests) was built."""
    return ov_models_dir


@pytest.fixture(scope="session")
def bbc_paragraphs(shared_data):
    """First paragraphs of 40 BBC articles (real text the calibration never saw)."""
    out = []
    for cat in ("business", "sport", "tech", "politics"):
        for f in sorted((shared_data / "bbc-news" / cat).glob("*.txt"))[:10]:
            body = f.read_bytes().decode("utf-8", errors="replace").split("\n", 1)[-1]
            paras = [p.strip() for p in body.split("\n") if len(p.strip()) > 60]
            out.append(" ".join(paras[:3]))
    return out


@pytest.mark.model
@pytest.mark.slow
def test_agrees_with_torch_on_unseen_text(ov8, minilm, bbc_paragraphs):
    assert len(bbc_paragraphs) == 40
    cos = (ov8.encode(bbc_paragraphs) * minilm.encode(bbc_paragraphs)).sum(axis=1)
    assert cos.mean() >= 0.98, cos.mean()
    assert cos.min() >= 0.95, cos.min()
    assert cos.max() < 0.99999  # quantised: close, not equal


@pytest.mark.model
@pytest.mark.slow
def test_the_ir_traces_eager_attention(ov_path):
    """As for onnxruntime's file: no IsNaN/Select guard per layer (an SDPA trace leaves six
    IsNaN and 13 Select layers; eager was 10% faster on AVX-512 VNNI)."""
    import re
    from collections import Counter

    kinds = Counter(re.findall(r'<layer [^>]*type="(\w+)"', ov_path.read_text(encoding="utf-8")))
    assert kinds["SoftMax"] == 6 and kinds["MatMul"] >= 36, kinds
    assert kinds["IsNaN"] == 0 and kinds["Select"] < kinds["SoftMax"], kinds


@pytest.mark.model
@pytest.mark.slow
def test_recipe_differs_from_every_other_backend(ov8, minilm, models_dir, ov_path):
    from recommender.embed import make_embedder

    ort = make_embedder("minilm-int8-ort", threads=1, cache_dir=models_dir)
    recipes = {ov8.recipe, minilm.recipe, ort.recipe}
    assert len(recipes) == 3 and ov8.recipe.startswith("ov-int8:")
    pinned = make_embedder("minilm-int8-ov", threads=1, cache_dir=models_dir)
    assert isinstance(pinned, OpenVinoEmbedder) and pinned.model_path == ov_path
    assert pinned.recipe == ov8.recipe


@pytest.mark.model
@pytest.mark.slow
def test_padding_and_batching_barely_move_a_vector(ov8, bbc_paragraphs):
    """Static quantisation: fixed scales, so a text's batch-mates (and the padding they bring)
    may only move its vector by kernel rounding, far less than int8's distance to torch."""
    short = "Blair calls early election"
    long_text = " ".join(bbc_paragraphs * 2)  # beyond 256 tokens: truncated, pads the short one
    alone = ov8.encode([short])[0]
    with_long = ov8.encode([long_text, short], batch_size=2)
    assert float(alone @ with_long[1]) > 0.998
    one_by_one = np.stack([ov8.encode([s])[0] for s in bbc_paragraphs[:12]])
    batched = ov8.encode(bbc_paragraphs[:12], batch_size=12)
    assert float((one_by_one * batched).sum(axis=1).min()) > 0.998
    again = ov8.encode(bbc_paragraphs[:12], batch_size=12)
    np.testing.assert_array_equal(batched, again)  # deterministic
    assert batched.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    assert ov8.encode([]).shape == (0, 384)


@pytest.mark.model
@pytest.mark.slow
def test_padding_to_the_width_grid_keeps_the_vectors(ov8, ov_path, bbc_paragraphs):
    """The default pads batches to multiples of 8 tokens (few shapes to compile); padding is
    masked, so the vectors match an unpadded run's up to kernel rounding."""
    assert ov8.width_step == 8
    texts = bbc_paragraphs + ["Blair calls early election", "Storm"]  # odd token counts
    unpadded = OpenVinoEmbedder(ov_path, threads=2, width_step=1)
    cosines = (ov8.encode(texts) * unpadded.encode(texts)).sum(axis=1)
    assert float(cosines.min()) > 0.998
    alone = ov8.encode(["Storm"])[0] @ unpadded.encode(["Storm"])[0]  # 3 tokens, padded to 8
    assert float(alone) > 0.998


@pytest.mark.model
@pytest.mark.slow
def test_streams_give_the_single_stream_vectors(ov_path, bbc_paragraphs):
    """Several batches run on single-threaded streams side by side: same rows, same order;
    one text (a query) runs on the 2-thread stream and never makes the others."""
    streamed = OpenVinoEmbedder(ov_path, threads=2)
    single = OpenVinoEmbedder(ov_path, threads=2, streams=False)
    query = streamed.encode(bbc_paragraphs[:1])
    assert streamed._stream_requests is None
    a = streamed.encode(bbc_paragraphs, batch_size=4)  # 10 batches over 2 streams
    assert streamed._stream_requests is not None and len(streamed._stream_requests) == 2
    b = single.encode(bbc_paragraphs, batch_size=4)
    assert single._stream_requests is None
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(query, single.encode(bbc_paragraphs[:1]), atol=1e-6)
    assert OpenVinoEmbedder(ov_path, threads=1).streams is False


@pytest.mark.model
@pytest.mark.slow
async def test_closing_the_services_lets_go_of_the_model(tmp_path, ov_path, bbc_paragraphs):
    """FastAPI keeps every endpoint it has seen, and the endpoints hold the services: closing
    them must still free the compiled model, which loads again if it is asked to embed."""
    from aggregator.settings import load_settings
    from api.app import create_app
    from api.services import build

    settings = load_settings(None, env={"TIDINGS_DATA_DIR": str(tmp_path)})
    emb = OpenVinoEmbedder(ov_path, threads=2)
    svc = await build(settings, serve=True, embedder=emb)
    create_app(svc)
    before = emb.encode(bbc_paragraphs[:3])
    assert emb._request is not None and emb._stream_requests is not None
    await svc.close()
    assert emb._request is None and emb._stream_requests is None
    np.testing.assert_allclose(emb.encode(bbc_paragraphs[:3]), before, atol=1e-6)


@pytest.mark.model
@pytest.mark.slow
def test_second_build_reuses_the_files(models_dir, ov_path):
    manifest = json.loads((ov_path.parent / MANIFEST).read_text())
    mtime = ov_path.with_suffix(".bin").stat().st_mtime_ns
    again = build_openvino_model(models_dir / "minilm-int8-ov")
    assert again == ov_path and again.with_suffix(".bin").stat().st_mtime_ns == mtime
    assert manifest["verify"]["mean_cos"] >= 0.98 and manifest["file"] == MODEL_FILE


@pytest.mark.model
@pytest.mark.slow
def test_corrupt_weights_are_rebuilt(tmp_path, ov_path):
    import shutil

    target = tmp_path / "minilm-int8-ov"
    shutil.copytree(ov_path.parent, target)
    weights = target / ov_path.with_suffix(".bin").name
    data = bytearray(weights.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = b"\x00" * 64
    weights.write_bytes(bytes(data))
    rebuilt = build_openvino_model(target)
    assert rebuilt.with_suffix(".bin").read_bytes() != bytes(data)
    assert OpenVinoEmbedder(rebuilt).encode(["Tories unveil their manifesto"]).shape == (1, 384)
    assert not list(target.glob(".build-*"))


@pytest.mark.model
@pytest.mark.slow
def test_runtime_choice_is_raced_once_and_kept(models_dir, ov_path, monkeypatch):
    from recommender import openvino_embed
    from recommender.onnx_embed import build_onnx_model

    ort_dir = models_dir / "minilm-int8"
    ort_path = build_onnx_model(ort_dir, "int8")
    calls = []

    def fake_race(embedders, texts, rounds=3):
        calls.append(sorted(embedders))
        return {"ov": [30.0], "ort": [10.0]}

    monkeypatch.setattr(openvino_embed, "race", fake_race)
    assert choose_int8_runtime(ort_dir, ort_path, ov_path) == "ov"
    assert choose_int8_runtime(ort_dir, ort_path, ov_path) == "ov"
    assert calls == [["ort", "ov"]]  # the second call read the remembered choice
    saved = json.loads((ort_dir / CHOICE_FILE).read_text())
    assert saved["runtime"] == "ov" and set(saved["recipes"]) == {"ort", "ov"}

    # A different file (e.g. another OpenVINO version) invalidates the choice: raced again.
    saved["recipes"]["ov"] = "ov-int8:something-else"
    (ort_dir / CHOICE_FILE).write_text(json.dumps(saved))
    monkeypatch.setattr(openvino_embed, "race",
                        lambda e, t, rounds=3: {"ov": [10.0], "ort": [10.0]})
    assert choose_int8_runtime(ort_dir, ort_path, ov_path) == "ort"
    (ort_dir / CHOICE_FILE).unlink()


@pytest.mark.model
@pytest.mark.slow
def test_the_runtime_of_the_databases_recipe_is_taken_without_a_race(models_dir, ov_path,
                                                                      monkeypatch):
    """Machines of a cluster each race on their own data dir; where the race would split them,
    each takes the runtime whose recipe the database's stories are embedded with."""
    from recommender import openvino_embed
    from recommender.onnx_embed import OnnxEmbedder, build_onnx_model

    ort_dir = models_dir / "minilm-int8"
    ort_path = build_onnx_model(ort_dir, "int8")
    monkeypatch.setattr(openvino_embed, "race",
                        lambda e, t, rounds=3: {"ov": [30.0], "ort": [10.0]})
    assert choose_int8_runtime(ort_dir, ort_path, ov_path) == "ov"  # this machine's own race
    remembered = (ort_dir / CHOICE_FILE).read_text()

    def no_race(e, t, rounds=3):
        raise AssertionError("raced although the database named a runtime")

    monkeypatch.setattr(openvino_embed, "race", no_race)
    ort_recipe = OnnxEmbedder(ort_path).recipe
    assert choose_int8_runtime(ort_dir, ort_path, ov_path, lead=ort_recipe) == "ort"
    ov_recipe = OpenVinoEmbedder(ov_path).recipe
    assert choose_int8_runtime(ort_dir, ort_path, ov_path, lead=ov_recipe) == "ov"
    # A recipe neither runtime makes here (another model build): the remembered choice.
    assert choose_int8_runtime(ort_dir, ort_path, ov_path, lead="onnx-int8:other") == "ov"
    assert (ort_dir / CHOICE_FILE).read_text() == remembered
    (ort_dir / CHOICE_FILE).unlink()


@pytest.mark.model
@pytest.mark.slow
def test_taking_the_databases_runtime_is_said_only_where_it_overrides_the_race(
        models_dir, ov_path, monkeypatch, caplog):
    """Every `tidings related`, `search` or `import` after a first start printed
    "int8 runtime: ov, the one the database's stories are embedded with" to the terminal,
    although it was the runtime this machine's own race had chosen."""
    import logging

    from recommender import openvino_embed
    from recommender.onnx_embed import OnnxEmbedder, build_onnx_model

    ort_dir = models_dir / "minilm-int8"
    ort_path = build_onnx_model(ort_dir, "int8")
    monkeypatch.setattr(openvino_embed, "race",
                        lambda e, t, rounds=3: {"ov": [30.0], "ort": [10.0]})
    assert choose_int8_runtime(ort_dir, ort_path, ov_path) == "ov"  # this machine's race
    caplog.set_level(logging.INFO, logger="tidings.embed")
    caplog.clear()
    lead = OpenVinoEmbedder(ov_path).recipe
    assert choose_int8_runtime(ort_dir, ort_path, ov_path, lead=lead) == "ov"
    assert [r for r in caplog.records if r.levelno >= logging.INFO] == []
    lead = OnnxEmbedder(ort_path).recipe
    assert choose_int8_runtime(ort_dir, ort_path, ov_path, lead=lead) == "ort"
    (said,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert said == ("int8 runtime: ort, the one the database's stories are embedded with "
                    "(this machine's race chose ov)"), said
    (ort_dir / CHOICE_FILE).unlink()


@pytest.fixture
def ort_races_ahead(models_dir, tmp_path, monkeypatch):
    """Settings of a data dir that shares the built models and whose own race (not yet run)
    says onnxruntime."""
    from aggregator.settings import load_settings
    from recommender import openvino_embed
    from tests.api.conftest import REPO

    (tmp_path / "models").symlink_to(models_dir, target_is_directory=True)
    (models_dir / "minilm-int8" / CHOICE_FILE).unlink(missing_ok=True)
    monkeypatch.setattr(openvino_embed, "race",
                        lambda e, t, rounds=3: {"ov": [10.0], "ort": [30.0]})
    yield load_settings(REPO / "config" / "tidings.toml", env={
        "TIDINGS_DATA_DIR": str(tmp_path), "TIDINGS_INDEX_EMBEDDER": "minilm-int8",
        "TIDINGS_INDEX_THREADS": "1"})
    (models_dir / "minilm-int8" / CHOICE_FILE).unlink(missing_ok=True)


@pytest.mark.model
@pytest.mark.slow
async def test_with_no_indexer_running_a_process_takes_the_stored_vectors_runtime(
        ov_path, ort_races_ahead):
    """A replica started before the indexers, or an indexer on a new machine, finds no leader:
    it takes the runtime of the vectors stored, not its own race (which here says onnxruntime;
    it would serve an index missing every story, or re-embed them all)."""
    from aggregator.model import StoryDraft
    from api.services import build
    from recommender.onnx_embed import OnnxEmbedder

    settings = ort_races_ahead
    svc = await build(settings, serve=True)  # nothing stored yet: this machine's race
    try:
        assert isinstance(svc.embedder, OnnxEmbedder)
        new = (await svc.store.upsert_stories([StoryDraft(url="https://e.org/1", title="A")])).new_ids
        await svc.store.save_vectors([(new[0], 1, b"\x00" * 1536)], OpenVinoEmbedder(ov_path).recipe)
        assert await svc.store.leading_embedder() is None
    finally:
        await svc.close()
    for role in ({"serve": True}, {"index": True}):
        svc = await build(settings, **role)
        try:
            assert isinstance(svc.embedder, OpenVinoEmbedder), role
        finally:
            await svc.close()


@pytest.mark.model
@pytest.mark.slow
async def test_an_empty_replica_takes_the_recipe_the_first_indexer_embeds_with(
        ov_path, ort_races_ahead):
    """A new cluster: a replica starts on an empty database before any indexer and races on
    its own (onnxruntime here); the indexer then embeds with OpenVINO. While its index is
    still empty the replica switches to the database's recipe and serves those stories."""
    from aggregator.model import StoryDraft
    from api.services import adopt_database_recipe, build
    from recommender.onnx_embed import OnnxEmbedder

    svc = await build(ort_races_ahead, serve=True)
    refused: set[str] = set()
    try:
        await svc.corpus.start()
        assert isinstance(svc.embedder, OnnxEmbedder)
        assert not await adopt_database_recipe(svc, refused)  # nothing stored: nothing to take
        ov = OpenVinoEmbedder(ov_path)
        new = (await svc.store.upsert_stories([StoryDraft(url="https://e.org/1", title="A")])).new_ids
        await svc.store.save_vectors([(new[0], 1, ov.encode(["A"])[0].tobytes())], ov.recipe)
        await svc.corpus.follow()
        assert len(svc.corpus) == 0  # the other recipe's vector: not this replica's
        assert await adopt_database_recipe(svc, refused)
        assert isinstance(svc.embedder, OpenVinoEmbedder) and svc.related.embedder is svc.embedder
        await svc.corpus.follow()
        assert len(svc.corpus) == 1 and svc.corpus.recipe == ov.recipe
        assert not await adopt_database_recipe(svc, refused)  # current now
        # A recipe this machine does not make is refused once, not rebuilt every look.
        await svc.store.save_vectors([(new[0], 1, ov.encode(["A"])[0].tobytes())], "ov-int8:other")
        svc.corpus.remove([new[0]])
        assert not await adopt_database_recipe(svc, refused) and refused == {"ov-int8:other"}
    finally:
        await svc.close()


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_serve_workers_on_an_empty_database_take_the_first_indexers_recipe(
        ov_path, ort_races_ahead):
    """As above, for `tidings serve --workers 2`: each worker raced to onnxruntime (the data
    dir remembers that choice), then the first vectors stored are OpenVINO's. Every worker
    switches while empty and serves them; without it they stayed empty until restarted."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import httpx

    from aggregator.model import StoryDraft
    from aggregator.store import Store
    from api.services import configured_embedder, release_model
    from recommender.onnx_embed import OnnxEmbedder
    from tests.api.conftest import REPO, free_port

    settings = ort_races_ahead
    emb = configured_embedder(settings)  # runs the (patched) race: the data dir remembers "ort"
    assert isinstance(emb, OnnxEmbedder)
    release_model(emb)
    env = {**os.environ, "TIDINGS_DATA_DIR": str(settings.data_dir), "HF_HUB_OFFLINE": "1",
           "TIDINGS_INDEX_EMBEDDER": "minilm-int8", "TIDINGS_INDEX_THREADS": "1",
           "TIDINGS_LOG_LEVEL": "info"}
    port, log_file = free_port(), settings.data_dir / "serve.log"
    with log_file.open("wb") as err:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("tidings")), "serve", "--workers", "2",
             "--port", str(port)], env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err,
            start_new_session=True)
    store = Store(settings.database_url)
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            deadline = time.monotonic() + 150

            async def health() -> dict | None:
                assert proc.poll() is None, log_file.read_text()[-3000:]
                try:  # a new connection each time: either worker may take it
                    r = await http.get(f"http://127.0.0.1:{port}/healthz",
                                       headers={"Connection": "close"})
                    return r.json()
                except httpx.TransportError:
                    return None

            while time.monotonic() < deadline and log_file.read_text().count("worker.index_loaded") < 2:
                await asyncio.sleep(0.3)
            first = None  # a worker logs before uvicorn listens: the first look may be refused
            while time.monotonic() < deadline and first is None:
                first = await health()
                await asyncio.sleep(0.2)
            assert first is not None and first.get("indexed") == 0, first
            ov = OpenVinoEmbedder(ov_path)
            new = (await store.upsert_stories([StoryDraft(url="https://e.org/1", title="A")])).new_ids
            await store.save_vectors([(new[0], 1, ov.encode(["A"])[0].tobytes())], ov.recipe)
            while time.monotonic() < deadline and log_file.read_text().count("api.recipe_adopted") < 2:
                await asyncio.sleep(0.5)
            assert log_file.read_text().count("api.recipe_adopted") == 2, log_file.read_text()[-3000:]
            # Both workers now hold the story (each follows the change log within a second).
            answers = []
            while time.monotonic() < deadline and (len(answers) < 12 or set(answers[-12:]) != {1}):
                answers.append((await health() or {}).get("indexed"))
                await asyncio.sleep(0.1)
            assert set(answers[-12:]) == {1}, answers
    finally:
        await store.close()
        stop_group(proc)


@pytest.mark.model
@pytest.mark.slow
def test_default_int8_follows_the_race(models_dir, ov_path, monkeypatch):
    from recommender import openvino_embed
    from recommender.embed import make_embedder
    from recommender.onnx_embed import OnnxEmbedder

    (models_dir / "minilm-int8" / CHOICE_FILE).unlink(missing_ok=True)
    monkeypatch.setattr(openvino_embed, "race",
                        lambda e, t, rounds=3: {"ov": [10.0], "ort": [30.0]})
    assert isinstance(make_embedder("minilm-int8", threads=1, cache_dir=models_dir), OnnxEmbedder)
    (models_dir / "minilm-int8" / CHOICE_FILE).unlink()
    monkeypatch.setattr(openvino_embed, "race",
                        lambda e, t, rounds=3: {"ov": [30.0], "ort": [10.0]})
    emb = make_embedder("minilm-int8", threads=1, cache_dir=models_dir)
    assert isinstance(emb, OpenVinoEmbedder) and emb.model_path == ov_path
    (models_dir / "minilm-int8" / CHOICE_FILE).unlink()


@pytest.mark.model
def test_unreadable_model_gives_a_clear_error(tmp_path):
    from recommender.onnx_embed import ModelBuildError

    bad = tmp_path / MODEL_FILE
    bad.write_text("<not an openvino model/>")
    bad.with_suffix(".bin").write_bytes(b"")
    with pytest.raises(ModelBuildError, match="cannot load OpenVINO model"):
        OpenVinoEmbedder(bad).encode(["x"])


@pytest.mark.model
@pytest.mark.slow
def test_default_int8_falls_back_to_onnxruntime(models_dir, monkeypatch):
    """No OpenVINO, or an OpenVINO build that fails its checks: the checked onnxruntime file."""
    from recommender import openvino_embed
    from recommender.embed import make_embedder
    from recommender.onnx_embed import ModelBuildError, OnnxEmbedder

    monkeypatch.setattr(openvino_embed, "available", lambda: False)
    assert isinstance(make_embedder("minilm-int8", threads=1, cache_dir=models_dir), OnnxEmbedder)

    def broken(out_dir):
        raise ModelBuildError("disagrees with the torch model")

    monkeypatch.setattr(openvino_embed, "available", lambda: True)
    monkeypatch.setattr(openvino_embed, "build_openvino_model", broken)
    emb = make_embedder("minilm-int8", threads=1, cache_dir=models_dir)
    assert isinstance(emb, OnnxEmbedder) and emb.recipe.startswith("onnx-int8:")


@pytest.mark.model
def test_a_fresh_process_first_call_of_several_batches_does_not_freeze(ov_path):
    """The first call of a fresh process that makes several batches starts both streams at
    once; their first calls each set up OpenVINO's Python binding's numpy API (a C++ static
    whose set-up runs Python), and when the GIL passed between them in there, one held the
    GIL waiting for the other's static, which waited for the GIL: the process froze for good,
    Ctrl-C included (`tidings eval related`; `import` and `index --rebuild` take the same
    path). A tiny switch interval makes the GIL pass there nearly every time, and more so
    with the tokenizer's own threads on (the product turns them off; it froze all the same)."""
    import os
    import subprocess
    import sys

    from tests.api.conftest import REPO

    code = (
        "import sys; sys.setswitchinterval(1e-5)\n"
        "from recommender.openvino_embed import OpenVinoEmbedder\n"
        f"emb = OpenVinoEmbedder({str(ov_path)!r}, threads=2)\n"
        "texts = ['word ' * (5 + (i * 37) % 200) for i in range(96)]\n"
        "print(emb.encode(texts, 32).shape)\n")
    env = {k: v for k, v in os.environ.items() if k != "TOKENIZERS_PARALLELISM"}
    for _ in range(2):  # each in a fresh process: the set-up happens once per process
        try:
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 timeout=120, cwd=REPO, env=env)
        except subprocess.TimeoutExpired:
            pytest.fail("the first call of several batches froze the process")
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip() == "(96, 384)"
