# semcache developer entry points. `make run` and `make test` do their own set-up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
MODEL_STAMP := $(VENV)/.model-ready
PROTOS := $(wildcard protos/semcache/v1/*.proto)

.PHONY: setup run test lint format protos model bench clean

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

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

format: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
