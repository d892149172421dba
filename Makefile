# The two commands of the README: `make demo` (the default sweep, end to end) and `make test`.
# Every target bootstraps what it needs (the .venv with torch 2.11.0, the release build) and is
# fast when that is already done.
SHELL := /bin/bash
export LIBTORCH_USE_PYTORCH := 1
export PATH := $(CURDIR)/.venv/bin:$(PATH)
BIN := target/release/stuffed
CARGO_FLAGS ?= --release

.PHONY: all build venv test test-deps demo clean-results fmt lint

all: build

venv:
	@scripts/bootstrap-venv.sh

build: venv
	cargo build $(CARGO_FLAGS) --bin stuffed

# Test-only dependencies: transformers (the independent Mamba-2 for parity tests).
test-deps: venv
	@scripts/bootstrap-venv.sh "transformers==5.24.0"

test: build test-deps
	cargo test $(CARGO_FLAGS) --workspace

demo: build
	$(BIN) doctor

fmt:
	cargo fmt --all

lint: venv
	cargo clippy $(CARGO_FLAGS) --workspace --all-targets -- -D warnings
