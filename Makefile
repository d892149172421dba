# The commands of the README: `make demo` (the default sweep, end to end, then its report),
# `make test` (everything, with the system-level tests), `make test-core` (never installs system
# packages) and `make install`. Every target bootstraps what it needs (the .venv with torch
# 2.11.0, the release build, the default corpus) and is fast when that is already done. All of
# them share one release build of target/release/stuffed.
SHELL := /bin/bash
export LIBTORCH_USE_PYTORCH := 1
export PATH := $(CURDIR)/.venv/bin:$(PATH)
BIN := target/release/stuffed
DB ?= results/stuffed.db
# `make install`: $(PREFIX)/bin/stuffed, its shell completions and man pages under $(PREFIX)/share.
PREFIX ?= $(HOME)/.local

.PHONY: all build venv corpus test test-core test-deps demo install uninstall lint fmt clean-results

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
define core_tests
	cargo fmt --all --check
	cargo clippy --release --workspace --all-targets -- -D warnings
	cargo test --release --workspace --no-fail-fast
endef

# Everything. As root, scripts/system-tests.sh then installs the system-level tests' Debian
# packages (Slurm, Chromium: one line each saying what and why before anything changes, apt's
# output in target/apt.log) and runs those tests; the last step checks that `make demo` reuses
# this build.
test: corpus test-deps
	@scripts/system-tests.sh --check
	$(core_tests)
	@scripts/system-tests.sh
	@scripts/check-build-fresh.sh

# The suite without installing any system package: the system-level tests are listed as
# SKIPPED by name, with what they would need.
test-core: export STUFFED_NO_APT := 1
test-core: corpus test-deps
	@scripts/system-tests.sh --check
	$(core_tests)
	@scripts/system-tests.sh --skip

demo: corpus
	$(BIN) doctor
	$(BIN) sweep run sweeps/demo.yaml --db $(DB)
	$(BIN) report --db $(DB) --sweep demo --out results/demo-report
	@scripts/check-demo.sh results/demo-report
	@echo "demo report: $(CURDIR)/results/demo-report/index.html"

# The binary as built (its rpath keeps finding the .venv's libtorch: keep this checkout), the
# bash, zsh and fish completions and one man page per command.
install: build
	install -d $(PREFIX)/bin $(PREFIX)/share/man/man1 $(PREFIX)/share/bash-completion/completions \
		$(PREFIX)/share/zsh/site-functions $(PREFIX)/share/fish/vendor_completions.d
	install -m 755 $(BIN) $(PREFIX)/bin/stuffed
	$(PREFIX)/bin/stuffed completions bash > $(PREFIX)/share/bash-completion/completions/stuffed
	$(PREFIX)/bin/stuffed completions zsh > $(PREFIX)/share/zsh/site-functions/_stuffed
	$(PREFIX)/bin/stuffed completions fish > $(PREFIX)/share/fish/vendor_completions.d/stuffed.fish
	$(PREFIX)/bin/stuffed man --out $(PREFIX)/share/man/man1
	@! ldd $(PREFIX)/bin/stuffed | grep 'not found' || { echo "error: $(PREFIX)/bin/stuffed cannot find the libraries above" >&2; exit 1; }
	@$(PREFIX)/bin/stuffed --version
	@echo "installed $(PREFIX)/bin/stuffed (libtorch: $$(ldd $(PREFIX)/bin/stuffed | awk '/libtorch_cpu/ {print $$3}'))"
	@case ":$$PATH:" in *":$(PREFIX)/bin:"*) ;; *) echo "note: $(PREFIX)/bin is not on PATH: export PATH=\"$(PREFIX)/bin:\$$PATH\"";; esac

uninstall:
	rm -f $(PREFIX)/bin/stuffed $(PREFIX)/share/bash-completion/completions/stuffed \
		$(PREFIX)/share/zsh/site-functions/_stuffed $(PREFIX)/share/fish/vendor_completions.d/stuffed.fish \
		$(PREFIX)/share/man/man1/stuffed.1 $(PREFIX)/share/man/man1/stuffed-*.1

lint: venv
	cargo clippy --release --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

clean-results:
	rm -rf results/runs results/stuffed.db results/stuffed.db-wal results/stuffed.db-shm results/demo-report
