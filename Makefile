# semcache developer entry points. `make run` and `make test` do their own set-up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
MODEL_STAMP := $(VENV)/.model-ready
PROTOS := $(wildcard protos/semcache/v1/*.proto)
# The wire contract's checks: buf from npm, kept in the venv.
BUF := $(VENV)/node/node_modules/.bin/buf
BUF_VERSION := 1.75.0

.PHONY: setup run test lint format protos model bench clean release-contract

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

test: setup model
	$(BIN)/python -m pytest

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
