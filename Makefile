# Two entry points for a fresh machine:
#   make demo   builds a small index into ./demo-data, searches it, then serves it over HTTP
#   make test   runs every test (lints included)
# Both install what they need: Debian packages and a Python venv.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
FIXTURES := .fixtures
BUCKET := ivflake-test
# Faiss uses OpenMP and OpenBLAS; their spinning threads starve each other
# when tests run in parallel.
TEST_ENV := OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=1

.PHONY: deps demo test lint fixtures python-dev quickstart clean

# Faiss 1.12 is built from source once per machine (scripts/build_faiss.sh,
# a few minutes on 2 cores) into ~/.cache/ivflake; later runs find it there.
deps: $(VENV)/.ok
	@if ! command -v cmake >/dev/null || ! command -v c++ >/dev/null || ! command -v haproxy >/dev/null \
		|| [ ! -e /usr/lib/x86_64-linux-gnu/libopenblas.so ]; then \
		SUDO=$$(command -v sudo >/dev/null && [ "$$(id -u)" != 0 ] && echo sudo); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq cmake g++ libopenblas-dev haproxy; \
	fi
	scripts/build_faiss.sh >/dev/null

$(VENV)/.ok: scripts/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r scripts/requirements.txt
	touch $@

# Where `make demo` serves; e.g. `make demo DEMO_ADDR=127.0.0.1:9000` when 8080 is taken.
DEMO_ADDR ?= 127.0.0.1:8080
demo: deps
	cargo build --release -p ivflake-cli
	./target/release/ivflake demo --dir demo-data
	$(PY) -c 'import json, numpy as np; q = np.load("demo-data/queries.npy"); json.dump({"vectors": [q[0].tolist()], "k": 10, "nprobe": 16}, open("demo-data/query.json", "w"))'
	@echo
	@echo "Serving demo-data/index.faiss as index 'demo' on http://$(DEMO_ADDR) (Ctrl-C stops). Search it from another terminal:"
	@echo
	@echo "  curl -s http://$(DEMO_ADDR)/v1/indexes/demo/search -H 'Content-Type: application/json' --data @demo-data/query.json"
	@echo
	RUST_LOG=$${RUST_LOG:-warn,ivflake_server=info,tower_http=info} ./target/release/ivflake serve demo=demo-data/index.faiss --listen $(DEMO_ADDR)

$(FIXTURES)/manifest.json: scripts/make_fixtures.py $(VENV)/.ok
	$(PY) scripts/make_fixtures.py $(FIXTURES)

fixtures: deps $(FIXTURES)/manifest.json

# The pytest suite (python/tests) runs last in `test`, against the same moto
# server and fixtures, and against the `ivflake` binary `cargo test` built for
# the CLI's integration tests (target/debug/ivflake). A separate `cargo build`
# here used to rebuild pyo3 and the Python crate once more, for nothing.
# The Python package (python/) in the venv. `maturin develop` builds it with
# the dev profile into this workspace's target/, so it reuses what
# `cargo test --workspace` compiled; `pip install ./python` (what users run)
# makes an optimized wheel from scratch, minutes more on two cores.
python-dev: deps
	cd python && VIRTUAL_ENV=$(abspath $(VENV)) $(abspath $(VENV))/bin/maturin develop -q

# Builds an index with faiss-cpu, searches it with ivflake cold and warm, and
# plots latency against faiss in memory (quickstart-data/latency.png; the
# README's docs/quickstart-latency.png is redrawn with --plot).
quickstart: python-dev
	OMP_WAIT_POLICY=PASSIVE $(PY) examples/quickstart.py

lint: deps
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

test: fixtures lint
	@set -euo pipefail; \
	endpoint_file=$$(mktemp); rm -f $$endpoint_file; \
	$(PY) scripts/s3_server.py $(FIXTURES) $$endpoint_file $(BUCKET) & server=$$!; \
	trap 'kill $$server 2>/dev/null || true' EXIT; \
	for i in $$(seq 1 100); do [ -s $$endpoint_file ] && break; sleep 0.2; done; \
	[ -s $$endpoint_file ] || { echo "moto S3 server did not start"; exit 1; }; \
	export AWS_ENDPOINT_URL=$$(cat $$endpoint_file) AWS_ALLOW_HTTP=true AWS_ACCESS_KEY_ID=test \
		AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 IVFLAKE_S3_BUCKET=$(BUCKET) \
		IVFLAKE_FIXTURES=$$(pwd)/$(FIXTURES) $(TEST_ENV); \
	cargo test --workspace; \
	(cd python && VIRTUAL_ENV=$(abspath $(VENV)) $(abspath $(VENV))/bin/maturin develop -q); \
	IVFLAKE_BIN=$$(pwd)/target/debug/ivflake $(PY) -m pytest -q python/tests

clean:
	rm -rf $(FIXTURES) demo-data quickstart-data
