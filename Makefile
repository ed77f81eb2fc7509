# fraudlake: the two commands of the quickstart are `make demo` and `make test`.
# Everything else here is what those two need, usable on its own.

SHELL := /bin/bash
CARGO ?= cargo
# One cargo profile (release) for the binary and the tests: dependencies compile once.
CARGO_FLAGS ?= --release --locked
BIN := $(or $(CARGO_TARGET_DIR),target)/release/fraudlake
VENV := .venv
PY := $(VENV)/bin/python
LAKE ?= ./lake
SYSTEM_PACKAGES := cmake ninja-build libclang-dev g++ python3-venv

.PHONY: help deps build venv test test-rust lint fmt demo bench clean-lake

help:
	@echo "make demo   - install what is missing, build, simulate a lake, build features, SQL summary"
	@echo "make test   - install what is missing, build, run every test (Rust + Python interop)"
	@echo "make lint   - rustfmt check and clippy -D warnings"
	@echo "make bench  - side-by-side benchmarks against the peers (needs ../shared)"

# System packages (Debian/Ubuntu): installed only when missing.
deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

build: deps
	$(CARGO) build $(CARGO_FLAGS) --bin fraudlake

$(PY): tests/python/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r tests/python/requirements.txt
	@touch $(PY)

venv: $(PY)

# The README's test command.
test: deps venv
	FRAUDLAKE_TEST_PYTHON=$(abspath $(PY)) $(CARGO) test $(CARGO_FLAGS) --workspace --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy $(CARGO_FLAGS) --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# Simulate (once), build features, show a SQL summary. A second run reuses the lake.
demo: build
	@if [ -z "$$($(BIN) --lake $(LAKE) tables --format csv 2>/dev/null | grep '^transactions,')" ]; then \
	  $(BIN) --lake $(LAKE) simulate --drift-from 2018-09-01 --drift-kind amount-scale; \
	else echo "lake $(LAKE) already has transactions: reusing it"; fi
	$(BIN) --lake $(LAKE) features build
	$(BIN) --lake $(LAKE) tables
	$(BIN) --lake $(LAKE) sql "SELECT date_trunc('month', tx_ts) AS month, COUNT(*) AS transactions, \
	  ROUND(AVG(amount), 2) AS mean_amount FROM transactions GROUP BY 1 ORDER BY 1"
	$(BIN) --lake $(LAKE) features show

bench: build
	bench/run.sh

clean-lake:
	rm -rf $(LAKE)/*/
