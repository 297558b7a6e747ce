# Tidings: `make run` and `make test` work from a fresh clone (they install what is missing).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install run demo test lint bench load browser loadtools soak clean

# torch==2.13.0 first: it is the CPU wheel on this machine's disk; any looser torch
# requirement (for example sentence-transformers' own) would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/tidings run

# The BBC politics and entertainment stories from ../shared/data, imported, then the main job:
# a corpus to try the related blocks and /demo on a machine without internet.
demo: $(STAMP)
	$(PY) -m tests.datasets bbc | $(VENV)/bin/tidings import -
	$(VENV)/bin/tidings run

# Debian's chromium for the widget tests (no browser download: none can be fetched here).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

# Debian's wrk, the HTTP load generator of the serve benchmark (benchmarks/serve_bench.py).
loadtools:
	@command -v wrk >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null)

lint: $(STAMP)
	$(VENV)/bin/ruff check aggregator recommender api tests benchmarks
	$(PY) tests/check_imports.py

# The slowest tests are listed at the end: the suite is to stay well under 15 minutes (CI on
# 2 cores), and this is where to look when it grows. Two workers (pytest-xdist): serial, the
# suite kept one core busy at ~75% and the other idle (14:42 on a 2-core Xeon, 8:18 on two).
# The tests that run the model share one worker (tests/conftest.py: loadgroup), since two
# side by side ran 3-4x slower. `make test TEST_WORKERS=0` runs serially.
TEST_WORKERS ?= 2
test: $(STAMP) browser lint
	$(VENV)/bin/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadgroup --durations=15

# Raw figures go to docs/benchmarks.json too, so one part can be rerun later and the rest kept:
# `python -m benchmarks.run --only embed --reuse docs/benchmarks.json --json docs/benchmarks.json`.
bench: $(STAMP) loadtools
	$(PY) -m benchmarks.run --json docs/benchmarks.json

# 60 s of concurrent related + widget requests against a real `tidings serve` (BBC stories,
# hashing embedder) from a separate process; figures in docs/reliability.md.
# `make load LOAD_SECONDS=180` runs longer (enough for 100k requests on a 2-core machine).
load: $(STAMP)
	$(PY) -m benchmarks.load --seconds $(or $(LOAD_SECONDS),60)

# Long crash tests on PostgreSQL (127.0.0.1:5432): collectors, indexers and the whole cluster
# SIGKILLed repeatedly at 500 sources; see docs/reliability.md. Not part of `make test`.
soak: $(STAMP)
	$(VENV)/bin/pytest -q -p no:cacheprovider -m soak -s tests/cluster

clean:
	rm -rf $(VENV) data
