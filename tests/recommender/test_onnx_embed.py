"""The int8 ONNX embedder: built offline from the bundled model, close to torch, reused, safe.

Model tests build the file once per session into a temporary folder (~5 s on an idle machine)
and compare with the real torch model on BBC sentences from ../shared/data.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recommender.onnx_embed import (
    MANIFEST,
    ModelBuildError,
    OnnxEmbedder,
    StreamPool,
    _build_lock,
    build_int8_model,
    new_build_dir,
    padded_width,
    plan_batches,
    recipe_digest,
    recipe_of_build,
    reduce_range_for,
    stale_builds,
    verify_against_torch,
)

# --- pure: length bucketing ----------------------------------------------------------------


@given(
    st.lists(st.integers(min_value=0, max_value=256), max_size=300),
    st.integers(min_value=1, max_value=128),
    st.integers(min_value=1, max_value=8192),
)
def test_plan_batches_covers_every_row_once_within_limits(lengths, batch_size, budget):
    batches = plan_batches(lengths, batch_size, budget)
    rows = np.concatenate(batches) if batches else np.array([], dtype=np.int64)
    assert sorted(rows.tolist()) == list(range(len(lengths)))
    assert [lengths[r] for r in rows] == sorted(lengths, reverse=True)  # longest first
    for b in batches:
        assert 1 <= len(b) <= batch_size
        if len(b) > 1:
            assert len(b) * max(lengths[r] for r in b) <= budget


def test_plan_batches_gives_long_texts_smaller_batches():
    lengths = [256] * 64 + [16] * 64
    sizes = [len(b) for b in plan_batches(lengths, batch_size=64, max_batch_tokens=4096)]
    assert sizes[:4] == [16, 16, 16, 16] and sizes[-1] == 64


@given(st.lists(st.integers(min_value=0, max_value=256), min_size=1, max_size=300),
       st.sampled_from([8, 16]), st.booleans())
def test_padded_batches_take_few_shapes(lengths, step, split_tail):
    widths = [padded_width(n, step) for n in lengths]
    assert all(w >= n and w % step == 0 for w, n in zip(widths, lengths, strict=True))
    batches = plan_batches(widths, 32, 4096, split_tail=split_tail)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(len(lengths)))
    if not split_tail:  # every batch but the last is full: its width decides its rows
        full = {(len(b), max(widths[r] for r in b)) for b in batches[:-1]}
        assert all(n == min(32, 4096 // w) for n, w in full)
    else:  # and the tail is cut in powers of two
        for b in batches:
            w = max(widths[r] for r in b)
            assert len(b) == min(32, 4096 // w) or len(b) & (len(b) - 1) == 0


# --- pure: 7-bit weights where u8 x s8 products can saturate --------------------------------

AVX2 = frozenset({"sse4_2", "avx", "avx2", "fma"})  # AMD EPYC Zen 3, as on a CI machine


@pytest.mark.parametrize(("machine", "flags", "expected"), [
    ("x86_64", AVX2, True),  # VPMADDUBSW: 16-bit pair sums may saturate
    ("x86_64", AVX2 | {"avx512f", "avx512_vnni"}, False),
    ("x86_64", AVX2 | {"avx_vnni"}, False),
    ("AMD64", AVX2, True),
    ("x86_64", None, True),  # flags unreadable: the safe choice
    ("aarch64", None, False),
    ("arm64", frozenset({"asimd", "asimddp"}), False),
])
def test_int8_weights_are_7_bit_only_on_x86_without_vnni(machine, flags, expected):
    assert reduce_range_for(machine, flags) is expected


def test_the_cpu_decides_the_int8_build_recipe(monkeypatch):
    """A data dir moved between CPU kinds rebuilds its int8 file (and re-embeds, as the file's
    digest is in the recipe); the fp32 file and a VNNI machine's recipe do not change."""
    import recommender.onnx_embed as onnx_embed

    monkeypatch.setattr(onnx_embed.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(onnx_embed, "cpu_flags", lambda: AVX2)
    avx2 = recipe_of_build("int8")
    fp32 = recipe_of_build("fp32")
    monkeypatch.setattr(onnx_embed, "cpu_flags", lambda: AVX2 | {"avx512_vnni"})
    vnni = recipe_of_build("int8")
    assert avx2["export"] == onnx_embed.EXPORT_RECIPE["int8"] + "+reduce_range"
    assert vnni["export"] == onnx_embed.EXPORT_RECIPE["int8"]
    assert recipe_digest(avx2) != recipe_digest(vnni)
    assert recipe_of_build("fp32") == fp32


# --- the real model ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def int8_path(models_dir):
    return build_int8_model(models_dir / "minilm-int8")


@pytest.fixture(scope="session")
def int8(int8_path):
    return OnnxEmbedder(int8_path, threads=2)


@pytest.fixture(scope="session")
def bbc_sentences(shared_data):
    out: list[str] = []
    for cat in ("politics", "entertainment"):
        for f in sorted((shared_data / "bbc-news" / cat).glob("*.txt"))[:40]:
            body = f.read_bytes().decode("utf-8", errors="replace").split("\n", 1)[-1]
            sentence = next((s for s in re.split(r"(?<=\.)\s+", body.strip()) if len(s) > 40), "")
            if sentence:
                out.append(" ".join(sentence.split()))
    return out[:50]


@pytest.mark.model
def test_agrees_with_torch_on_bbc_sentences(int8, minilm, bbc_sentences):
    assert len(bbc_sentences) == 50
    cos = (int8.encode(bbc_sentences) * minilm.encode(bbc_sentences)).sum(axis=1)
    assert cos.mean() >= 0.98, cos.mean()
    assert cos.min() >= 0.95, cos.min()
    # Close is not equal: these vectors must never share an index with torch's.
    assert cos.max() < 0.99999
    assert int8.recipe != minilm.recipe and int8.recipe.startswith("onnx-int8:")


@pytest.mark.model
def test_the_int8_file_traces_eager_attention(int8_path):
    """No IsNaN/Where guard over each layer's attention scores (what an SDPA trace leaves,
    11-13% of the run time at 256 tokens): the plain MatMul-Add-Softmax-MatMul pattern, with
    a Where or two only where the mask is built once."""
    from collections import Counter

    import onnx

    ops = Counter(node.op_type for node in onnx.load(str(int8_path)).graph.node)
    assert ops["Softmax"] == 6 and ops["MatMulInteger"] >= 36  # six layers, quantised
    assert ops["IsNaN"] == 0 and ops["Where"] < ops["Softmax"], ops


@pytest.mark.model
def test_rows_are_unit_float32_and_deterministic(int8, bbc_sentences):
    a = int8.encode(bbc_sentences, batch_size=8)
    b = int8.encode(bbc_sentences, batch_size=8)
    assert a.shape == (50, 384) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a, b)
    assert int8.encode([]).shape == (0, 384)


@pytest.mark.model
def test_streams_give_the_single_session_vectors(int8_path, bbc_sentences):
    """Several batches run on single-threaded sessions side by side: same rows, same order."""
    streamed = OnnxEmbedder(int8_path, threads=2)
    single = OnnxEmbedder(int8_path, threads=2, streams=False)
    a = streamed.encode(bbc_sentences, batch_size=4)  # 13 batches over 2 streams
    assert streamed._stream_sessions is not None and len(streamed._stream_sessions) == 2
    b = single.encode(bbc_sentences, batch_size=4)
    assert single._stream_sessions is None
    np.testing.assert_allclose(a, b, atol=1e-6)
    # One text (the query path) runs on the 2-thread session. Compared with the same text
    # alone, not with its row in a batch: dynamic int8 scales activations per batch.
    np.testing.assert_allclose(streamed.encode(bbc_sentences[:1]),
                               single.encode(bbc_sentences[:1]), atol=1e-6)
    streamed.close()  # what closing the services does: the sessions go, and load again if asked
    assert streamed._session is None and streamed._stream_sessions is None
    np.testing.assert_allclose(streamed.encode(bbc_sentences, batch_size=4), a, atol=1e-6)


@pytest.fixture(scope="session")
def fp32(models_dir):
    from recommender.onnx_embed import build_onnx_model

    return OnnxEmbedder(build_onnx_model(models_dir / "minilm-onnx", "fp32"), threads=2)


@pytest.mark.model
def test_padding_and_batching_do_not_change_an_fp32_vector(fp32, minilm, bbc_sentences):
    """Checks our tokenising, padding and pooling: exact model, so any gap is our bug."""
    short = "Blair calls early election"
    long_text = " ".join(bbc_sentences * 3)  # beyond 256 tokens: truncated, pads the short one
    alone = fp32.encode([short])[0]
    with_long = fp32.encode([long_text, short], batch_size=2)
    assert float(alone @ with_long[1]) > 0.999
    one_by_one = np.stack([fp32.encode([s])[0] for s in bbc_sentences[:10]])
    batched = fp32.encode(bbc_sentences[:10], batch_size=10)
    assert float((one_by_one * batched).sum(axis=1).min()) > 0.999
    # and it reproduces sentence-transformers, truncation at 256 tokens included
    ref = minilm.encode([long_text, *bbc_sentences[:10]])
    got = fp32.encode([long_text, *bbc_sentences[:10]])
    assert float((ref * got).sum(axis=1).min()) > 0.9999


@pytest.mark.model
def test_int8_vector_depends_only_slightly_on_its_batch(int8, bbc_sentences):
    """Dynamic int8 quantises activations with one scale per batch tensor, so the other texts
    of a batch move a vector a little (cosine ~0.99, about its distance to torch): bounded."""
    short = "Blair calls early election"
    long_text = " ".join(bbc_sentences * 3)
    alone = int8.encode([short])[0]
    with_long = int8.encode([long_text, short], batch_size=2)
    assert float(alone @ with_long[1]) > 0.97
    one_by_one = np.stack([int8.encode([s])[0] for s in bbc_sentences[:10]])
    batched = int8.encode(bbc_sentences[:10], batch_size=10)
    assert float((one_by_one * batched).sum(axis=1).min()) > 0.97


@pytest.mark.model
def test_second_build_reuses_the_file(models_dir, int8_path):
    manifest = json.loads((int8_path.parent / MANIFEST["int8"]).read_text())
    mtime = int8_path.stat().st_mtime_ns
    again = build_int8_model(models_dir / "minilm-int8")
    assert again == int8_path and again.stat().st_mtime_ns == mtime
    assert json.loads((int8_path.parent / MANIFEST["int8"]).read_text()) == manifest
    assert manifest["verify"]["mean_cos"] >= 0.98


@pytest.mark.model
def test_built_weights_follow_the_cpu(int8_path):
    """7-bit weights (|w| <= 64) exactly where this CPU lacks VNNI, as the recipe says."""
    import onnx
    from onnx import numpy_helper

    from recommender.onnx_embed import int8_reduce_range

    model = onnx.load(str(int8_path))
    weights = [numpy_helper.to_array(t) for t in model.graph.initializer
               if t.data_type == onnx.TensorProto.INT8 and t.dims and len(t.dims) == 2]
    assert len(weights) >= 36  # 6 layers x (Q, K, V, output, two feed-forward)
    peak = max(int(np.abs(w.astype(np.int16)).max()) for w in weights)
    manifest = json.loads((int8_path.parent / MANIFEST["int8"]).read_text())
    if int8_reduce_range():
        assert peak <= 64 and manifest["recipe"]["export"].endswith("+reduce_range")
    else:
        assert peak > 64 and not manifest["recipe"]["export"].endswith("+reduce_range")


@pytest.mark.model
def test_make_embedder_builds_into_cache_dir(models_dir, int8_path):
    from recommender.embed import make_embedder

    emb = make_embedder("minilm-int8-ort", threads=1, cache_dir=models_dir)
    assert isinstance(emb, OnnxEmbedder) and emb.model_path == int8_path
    assert emb.encode(["Queen's Speech"]).shape == (1, 384)


@pytest.mark.model
def test_a_build_says_it_has_begun(tmp_path, caplog):
    """A first `tidings run` logged store.created, then nothing while it built and raced its
    models (about 100 s on 2 cores) with its port refused: it looked hung."""
    import logging

    caplog.set_level(logging.INFO, logger="tidings.embed")
    build_int8_model(tmp_path / "minilm-int8")
    said = [r.getMessage() for r in caplog.records if r.name == "tidings.embed"]
    assert said[0].startswith(f"building int8 ONNX model in {tmp_path / 'minilm-int8'} "), said
    assert said[-1].startswith("built int8 ONNX model"), said


@pytest.mark.model
def test_corrupt_file_is_rebuilt(tmp_path, int8_path):
    target = tmp_path / "minilm-int8"
    shutil.copytree(int8_path.parent, target)
    model = target / int8_path.name
    data = bytearray(model.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = b"\x00" * 64
    model.write_bytes(bytes(data))
    rebuilt = build_int8_model(target)
    manifest = json.loads((target / MANIFEST["int8"]).read_text())
    import hashlib

    assert hashlib.sha256(rebuilt.read_bytes()).hexdigest() == manifest["sha256"]
    assert OnnxEmbedder(rebuilt).encode(["Tories unveil their manifesto"]).shape == (1, 384)
    assert not list(target.glob(".build-*"))  # no temporary folder left behind


def test_the_next_build_removes_the_folders_of_killed_builds_only(tmp_path):
    """A first start killed (SIGKILL) while it built the model left its `.build-*` folder
    (~45 MB) and each killed retry one more: nothing removed them. The next build removes
    those of builds no longer running, an older version's (no pid in its name) included;
    a running build's folder, and everything else beside the model, stays."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        killed = tmp_path / f".build-{dead.pid}-k1lled_x"
        older = tmp_path / ".build-ab12cd_3"
        running = tmp_path / f".build-{live.pid}-runn1ng_"
        for folder in (killed, older, running):
            folder.mkdir()
            (folder / "model-fp32.onnx").write_bytes(b"\0" * 4096)
        (tmp_path / "model-int8.onnx").write_bytes(b"the model")
        (tmp_path / ".build-notes").mkdir()  # not a name a build gives its folder
        with _build_lock(tmp_path):
            fresh = new_build_dir(tmp_path)
        assert fresh.name.startswith(f".build-{os.getpid()}-")
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([
            ".build.lock", ".build-notes", running.name, fresh.name, "model-int8.onnx"])
        with _build_lock(tmp_path):  # this process's own folder is a live build's too
            again = new_build_dir(tmp_path)
        assert fresh.is_dir() and again.is_dir() and again != fresh
    finally:
        live.kill()
        live.wait()


def test_stale_builds_are_those_of_no_live_process():
    alive = {10, 11}.__contains__
    names = [".build-10-abc_1234", ".build-12-abc_1234", ".build-x1y2z3_4", ".build.lock",
             "model-int8.onnx", ".build-12-", ".build-notes", ".model-int8.onnx.12-abcd1234.tmp"]
    assert stale_builds(names, alive) == [".build-12-abc_1234", ".build-x1y2z3_4"]


@pytest.mark.model
def test_unreadable_model_gives_a_clear_error(tmp_path):
    bad = tmp_path / "model-int8.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(ModelBuildError, match="cannot load ONNX model"):
        OnnxEmbedder(bad).encode(["x"])


@pytest.mark.model
def test_a_model_with_wrong_vectors_is_refused(tmp_path):
    """Same inputs and output as the real file, but hidden states from a random table."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    table = np.random.default_rng(0).standard_normal((30522, 384)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "input_ids"], ["last_hidden_state"]),
         # the other inputs must be consumed for onnxruntime to accept them as fed
         helper.make_node("Shape", ["attention_mask"], ["s1"]),
         helper.make_node("Shape", ["token_type_ids"], ["s2"])],
        "random",
        [helper.make_tensor_value_info(n, TensorProto.INT64, ["b", "s"])
         for n in ("input_ids", "attention_mask", "token_type_ids")],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["b", "s", 384]),
         helper.make_tensor_value_info("s1", TensorProto.INT64, [2]),
         helper.make_tensor_value_info("s2", TensorProto.INT64, [2])],
        [numpy_helper.from_array(table, "table")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "model-int8.onnx"
    onnx.save(model, str(path))
    assert OnnxEmbedder(path).encode(["x"]).shape == (1, 384)  # runs, but means nothing
    with pytest.raises(ModelBuildError, match="disagrees with the torch model"):
        verify_against_torch(path)


def test_stream_pool_runs_queued_batches_in_order_on_every_stream():
    """Each stream takes the next queued job; a job's error reaches its caller only."""
    import threading

    seen: list[tuple[str, int]] = []
    lock = threading.Lock()

    def job(k):
        def fn(run):
            with lock:
                seen.append((run, k))
            if k == 3:
                raise ValueError("batch 3 failed")
            return k * 10
        return fn

    pool = StreamPool(["a", "b"])
    futures = [pool.submit(job(k)) for k in range(8)]
    assert [futures[k].result() for k in range(8) if k != 3] == [0, 10, 20, 40, 50, 60, 70]
    with pytest.raises(ValueError, match="batch 3"):
        futures[3].result()
    assert sorted(k for _, k in seen) == list(range(8))
    pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit(job(0))


@pytest.mark.model
def test_overlapping_calls_share_the_streams_and_keep_their_rows(int8_path, bbc_sentences):
    """Two calls at once (the indexer keeps two pieces in flight) interleave their batches on
    the shared streams; each still gets its own rows, as when called alone."""
    from concurrent.futures import ThreadPoolExecutor

    emb = OnnxEmbedder(int8_path, threads=2)
    a_texts, b_texts = bbc_sentences[::2], bbc_sentences[1::2]
    alone = (emb.encode(a_texts, batch_size=2), emb.encode(b_texts, batch_size=2))
    with ThreadPoolExecutor(2) as ex:
        both = [ex.submit(emb.encode, t, 2) for t in (a_texts, b_texts)]
        got = [f.result() for f in both]
    np.testing.assert_allclose(got[0], alone[0], atol=1e-6)
    np.testing.assert_allclose(got[1], alone[1], atol=1e-6)
    emb.close()


@pytest.mark.model
def test_warm_up_loads_the_query_session_and_the_streams(int8_path):
    """What the indexer's first claim would otherwise wait for, done before it arrives."""
    from recommender.embed import warm_up

    emb = OnnxEmbedder(int8_path, threads=2)
    warm_up(emb)
    assert emb._session is not None and emb._pool is not None and len(emb._pool) == 2
    emb.close()
