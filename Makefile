# The two commands a new user needs (README): `make demo` and `make test`. Both do all setup.
SHELL := /bin/bash
PY := .venv/bin/python
QCAM := target/release/qcam
MODELS := artifacts/models
# Pairs exported for the demo and the tests; resnet18 falls back to random weights offline.
PAIRS ?= efficientnet_lite0,mobilenet_v2_qnnpack,resnet18

.PHONY: setup models models-asexported build demo test bench clean-runs
setup:
	@scripts/setup.sh

models: setup
	$(PY) exporter/export.py --out $(MODELS) --pairs $(PAIRS) --random-weights

# The same pairs as they were exported before the forward speed-ups (traced float files loaded as
# they are, PTQ pairs calibrated for fbgemm): the "as exported" reference of the bench.
models-asexported: setup
	$(PY) exporter/export.py --out $(MODELS)-asexported --pairs $(PAIRS) --random-weights --plain --ptq-engine fbgemm

build: setup
	cargo build --release

demo: build models
	$(QCAM) run jobs/demo.toml --overwrite

test: build models
	cargo test --release --workspace --no-fail-fast

# Kernel benches (criterion), then the whole-run comparison (qcam vs bare libtorch vs the Python
# peer, thread and process layouts, RSS at 300 vs 1,200 images, deletion/insertion in the graph);
# prints the table and writes it under target/bench-run/. See README, Performance.
bench: build models models-asexported
	cargo bench -p qcam-operators --bench kernels
	scripts/bench.sh

clean-runs:
	rm -rf runs
