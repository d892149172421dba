# The two commands of the README: `make demo` (the default sweep, end to end, then its
# report) and `make test`. Every target bootstraps what it needs (the .venv with torch 2.11.0,
# the release build, the default corpus) and is fast when that is already done.
SHELL := /bin/bash
export LIBTORCH_USE_PYTORCH := 1
export PATH := $(CURDIR)/.venv/bin:$(PATH)
BIN := target/release/stuffed
DB ?= results/stuffed.db

.PHONY: all build venv corpus test test-deps demo lint fmt clean-results

all: build

venv:
	@scripts/bootstrap-venv.sh

build: venv
	cargo build --release --bin stuffed

corpus: build
	@scripts/bootstrap-corpus.sh $(BIN)

# Test-only dependencies: transformers (the independent Mamba-2 of the parity tests).
test-deps: venv
	@scripts/bootstrap-venv.sh "transformers==5.24.0" "pandas==3.1.1" "pyarrow==26.0.1" "duckdb==2.0.0"

# Formatting (rustfmt.toml) and clippy are part of the suite: CI enforces them.
test: corpus test-deps
	cargo fmt --all --check
	cargo clippy --release --workspace --all-targets -- -D warnings
	cargo test --release --workspace --no-fail-fast

demo: corpus
	$(BIN) doctor
	$(BIN) sweep run sweeps/demo.yaml --db $(DB)
	$(BIN) report --db $(DB) --sweep demo --out results/demo-report
	@echo "demo report: $(CURDIR)/results/demo-report/index.html"

lint: venv
	cargo clippy --release --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

clean-results:
	rm -rf results/runs results/stuffed.db results/stuffed.db-wal results/stuffed.db-shm results/demo-report
