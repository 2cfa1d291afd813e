# One-command workflows. `make train` and `make test` do everything on a
# fresh machine: Python venv with libtorch + ONNX Runtime, MNIST, build, run.

VENV ?= .venv
DATA ?= data/mnist
RUN ?= runs/default
MODELS ?= models
# Flags for both training commands (e.g. ARGS="--preset paper"), or for one.
ARGS ?=
# bf16-mixed where the CPU computes bfloat16 natively (AVX512-BF16, AMX),
# float32 elsewhere: the quick preset's quality in less time (README).
PRECISION ?= auto
AE_ARGS ?=
CLF_ARGS ?=

# Where the native libraries come from (see .cargo/config.toml); exported
# so that a VENV outside the checkout works too.
export LIBTORCH := $(abspath $(VENV))/libtorch
export LIBTORCH_CXX11_ABI := 1
export ORT_LIB_PATH := $(abspath $(VENV))/ort
export ORT_PREFER_DYNAMIC_LINK := 1
export PYTHON := $(abspath $(VENV))/bin/python

export BIN_DIR := $(or $(CARGO_TARGET_DIR),target)/release
TRAIN := $(BIN_DIR)/train
INFER := $(BIN_DIR)/infer

.PHONY: all setup setup-infer data build build-tools train serve fashion test dist web web-deps bench bench-serving fuzz clean

all: train

setup:
	@scripts/setup.sh $(VENV) requirements.txt

setup-infer:
	@scripts/setup.sh $(VENV) requirements-infer.txt

data:
	@scripts/data.sh $(DATA)

build: setup
	cargo build --release

# What `make train` runs, and nothing else: not the server (crate serve,
# whose infer-serve binary `infer serve` runs) nor the benchmarks' crate.
build-tools: setup
	cargo build --release -p train -p infer

# The models over the Open Inference Protocol (REST on 127.0.0.1:8000, gRPC on
# :8001; Ctrl-C drains). SERVE_ARGS: more of `infer serve`'s flags.
SERVE_ARGS ?=
serve: setup
	cargo build --release -p infer -p serve
	$(INFER) serve --models $(MODELS) $(SERVE_ARGS)

train: setup data build-tools
	$(TRAIN) autoencoder --images $(DATA)/train-images-idx3-ubyte --out $(RUN)/autoencoder --force \
	  --precision $(PRECISION) $(ARGS) $(AE_ARGS)
	$(TRAIN) classifier --autoencoder $(RUN)/autoencoder \
	  --images $(DATA)/train-images-idx3-ubyte --labels $(DATA)/train-labels-idx1-ubyte \
	  --test-images $(DATA)/t10k-images-idx3-ubyte --test-labels $(DATA)/t10k-labels-idx1-ubyte \
	  --out $(RUN)/classifier --force --precision $(PRECISION) $(ARGS) $(CLF_ARGS)
	$(TRAIN) export --run $(RUN)/classifier --out $(MODELS) --int8
	$(INFER) classify --model $(MODELS)/classifier.onnx --digits 4 \
	  --images $(DATA)/t10k-images-idx3-ubyte --labels $(DATA)/t10k-labels-idx1-ubyte
	@echo "models: $(MODELS)/classifier.onnx, encoder.onnx, autoencoder.onnx and their .int8.onnx; run: $(RUN)/"

test: setup data build dist web-deps
	python3 scripts/tracked_check.py
	python3 scripts/layout_check.py
	python3 scripts/docs_flags.py $(BIN_DIR) README.md docs/*.md models/README.md ARCHITECTURE.md BENCHMARKS.md bench/LOG.md bench/results/*.md
	cd web && node --test test/preprocess.test.mjs
	cargo test --release --workspace
	tests/e2e.sh $(VENV) $(DATA)
	$(PYTHON) tests/interop.py $(MODELS) $(DATA)
	$(PYTHON) tests/tilted.py $(BIN_DIR) $(DATA) $(MODELS)
	$(PYTHON) tests/foreign_models.py $(BIN_DIR) $(DATA) $(abspath $(BIN_DIR))/../foreign-models
	tests/fresh_export.sh $(DATA)
	cd web && node test/browser.mjs $(abspath $(INFER)) $(abspath $(DATA)) $(abspath $(BIN_DIR))/../web \
	  $(abspath $(BIN_DIR))/../foreign-models
	tests/dist.sh $(DIST) $(VENV) $(DATA)

# Fashion-MNIST end to end, from Debian's package (`apt-get install
# dataset-fashion-mnist`: the gzip IDX files), with its class names.
FASHION ?= /usr/share/datasets/fashion-mnist
FASHION_RUN ?= runs/fashion
fashion: setup build
	@test -f $(FASHION)/train-images-idx3-ubyte.gz || { echo "fashion: no $(FASHION)/train-images-idx3-ubyte.gz (apt-get install dataset-fashion-mnist, or FASHION=DIR)" >&2; exit 2; }
	$(TRAIN) autoencoder --images $(FASHION)/train-images-idx3-ubyte.gz --out $(FASHION_RUN)/autoencoder --force $(ARGS) $(AE_ARGS)
	$(TRAIN) classifier --autoencoder $(FASHION_RUN)/autoencoder --class-names fixtures/fashion-mnist-classes.txt \
	  --images $(FASHION)/train-images-idx3-ubyte.gz --labels $(FASHION)/train-labels-idx1-ubyte.gz \
	  --test-images $(FASHION)/t10k-images-idx3-ubyte.gz --test-labels $(FASHION)/t10k-labels-idx1-ubyte.gz \
	  --out $(FASHION_RUN)/classifier --force $(ARGS) $(CLF_ARGS)
	$(TRAIN) export --run $(FASHION_RUN)/classifier --out $(FASHION_RUN)/models
	$(INFER) classify --model $(FASHION_RUN)/models/classifier.onnx \
	  --images $(FASHION)/t10k-images-idx3-ubyte.gz --labels $(FASHION)/t10k-labels-idx1-ubyte.gz \
	  --confusion $(FASHION_RUN)/confusion.png

# The self-contained `infer` bundle: dist/infer-VERSION-linux-x86_64.tar.gz
# (bin/, lib/libonnxruntime.so*, models/). CUDA=1 bundles onnxruntime-gpu's
# libraries instead (-cuda.tar.gz; its README lists the CUDA libraries it needs).
DIST ?= dist
CUDA ?=
dist: setup
	scripts/dist.sh $(VENV) $(MODELS) $(DIST) $(if $(CUDA),cuda,cpu)

# The browser page (web/): onnxruntime-web and protobufjs from web/package-lock.json
# (npm ci), served by Python's standard static server on localhost.
WEB_PORT ?= 8000
web/node_modules/.package-lock.json: web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
web-deps: web/node_modules/.package-lock.json
web: web-deps
	@echo "web: open http://127.0.0.1:$(WEB_PORT)/ — the page runs models/classifier.onnx and models/autoencoder.onnx in the browser (Ctrl-C stops the server)"
	@cd web && python3 -m http.server $(WEB_PORT) --bind 127.0.0.1

# Benchmarks against PyTorch eager and Python onnxruntime (writes BENCHMARKS.md).
bench: setup data build
	$(PYTHON) bench/drivers/run.py $(BIN_DIR) $(DATA) $(MODELS)
	$(PYTHON) bench/drivers/augment_cost.py $(BIN_DIR) $(DATA)
	$(PYTHON) bench/drivers/precision.py $(BIN_DIR) $(DATA)
	$(PYTHON) bench/drivers/shared_core.py $(BIN_DIR) $(DATA)
	$(PYTHON) bench/drivers/serving.py $(BIN_DIR) $(DATA) $(MODELS)
	$(PYTHON) bench/drivers/serve_limits.py $(BIN_DIR) $(MODELS)

# The Serving section alone (bench/results/serving.md): needs wrk (apt-get install wrk).
bench-serving: setup data build
	$(PYTHON) bench/drivers/serving.py $(BIN_DIR) $(DATA) $(MODELS)

# Coverage-guided fuzzing of the IDX reader, the picture loader and the
# serve REST request parser (JSON, binary header + body) with
# cargo-fuzz (libFuzzer), FUZZ_SECONDS each. The stable toolchain is told
# to accept cargo-fuzz's flags with RUSTC_BOOTSTRAP.
FUZZ_SECONDS ?= 600
fuzz: setup
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	$(PYTHON) fuzz/seeds.py fuzz/corpus
	cd fuzz && for t in idx picture request; do \
	  RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none $$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -timeout=5 || exit 1; \
	done

clean:
	rm -rf target runs
