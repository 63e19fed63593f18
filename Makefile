# semcache developer entry points. `make run` and `make test` do their own set-up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
MODEL_STAMP := $(VENV)/.model-ready
PROTOS := $(wildcard protos/semcache/v1/*.proto)
# System packages install with apt-get as root (CI), through sudo otherwise.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The wire contract's checks: buf from npm, kept in the venv.
BUF := $(VENV)/node/node_modules/.bin/buf
BUF_VERSION := 1.75.0
# promtool checks deploy/prometheus: taken from Debian's prometheus package (the binary
# alone, into the venv; no server installed or started).
PROMTOOL := $(BIN)/promtool
# Client examples in other languages (tests/test_examples.py builds and runs them): Node
# from npm; Go from Debian's toolchain and library sources (no Go module proxy here).
NODE_EXAMPLE := examples/node/node_modules/.package-lock.json
GO_DEBS := golang-go golang-google-grpc-dev golang-google-protobuf-dev \
	golang-github-golang-protobuf-1-5-dev protobuf-compiler
GOCODE := /usr/share/gocode/src

.PHONY: setup run test lint format protos model bench clean examples go-toolchain release-contract

setup: $(INSTALLED) $(MODEL_STAMP)

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q --upgrade pip
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[dev]'
	touch $@

# The stock int8 model (minutes), into ~/.cache/semcache keyed by its recipe: what `make run`
# needs to serve; `semcache up` builds the tuned model in the background.
$(MODEL_STAMP): $(INSTALLED) $(wildcard embed_svc/build/*)
	$(BIN)/python -m embed_svc.build --stock
	touch $@

# Both models: the stock one and the tuned one (fine-tuned on data/pairs, gated). Each is
# taken from the cache when its recipe is unchanged.
model: $(INSTALLED)
	$(BIN)/python -m embed_svc.build

protos: $(INSTALLED)
	$(BIN)/python -m semcache.dev.protos

run: setup
	$(BIN)/python -m semcache.cli up

test: setup model examples $(PROMTOOL)
	$(BIN)/python -m pytest

examples: $(NODE_EXAMPLE) go-toolchain

$(NODE_EXAMPLE): examples/node/package.json examples/node/package-lock.json
	npm ci --prefix examples/node --ignore-scripts --no-audit --no-fund

go-toolchain:
	@command -v go >/dev/null && command -v protoc >/dev/null \
		&& test -f $(GOCODE)/google.golang.org/grpc/version.go \
		&& test -f $(GOCODE)/github.com/golang/protobuf/proto/registry.go \
		|| { $(SUDO) apt-get update -qq \
		&& $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(GO_DEBS); }

$(PROMTOOL): $(INSTALLED)
	@if command -v promtool >/dev/null; then ln -sf "$$(command -v promtool)" $@; else \
		tmp=$$(mktemp -d) && cd $$tmp \
		&& { apt-get download -qq prometheus 2>/dev/null \
			|| { $(SUDO) apt-get update -qq && apt-get download -qq prometheus; }; } \
		&& dpkg-deb --fsys-tarfile prometheus_*.deb | tar -x ./usr/bin/promtool \
		&& cd - >/dev/null && mv $$tmp/usr/bin/promtool $@ && rm -rf $$tmp; fi

lint: $(INSTALLED) $(BUF)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BUF) lint
	$(BUF) breaking --against protos/released.json

$(BUF): $(INSTALLED)
	npm install --prefix $(VENV)/node --no-save --ignore-scripts --no-audit --no-fund \
		@bufbuild/buf@$(BUF_VERSION)

# What clients hold: the contract `buf breaking` guards. Run when a release ships.
release-contract: $(BUF)
	$(BUF) build --exclude-source-info -o protos/released.json

format: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
