# pdstudy: `make run` and `make test` each create the environment first when needed.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.pdstudy-env
LOCK := requirements.lock
PROFILE ?= quick

.PHONY: env run test unit notebooks lint lock clean help paper-smoke

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

env: $(STAMP)  ## create .venv with the locked versions (once; redone when pyproject.toml or the lock change)

$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "pdstudy needs Python 3.11, found " + sys.version' 
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --constraint $(LOCK) --editable ".[test]"
	$(BIN)/python -m pip check
	@touch $(STAMP)

run: env  ## run notebooks 00-10 on the built-in synthetic cohort into reports/$(PROFILE)
	$(BIN)/pdstudy run --profile $(PROFILE)

test: env lint  ## unit tests, then every notebook under pytest --nbval-lax
	$(BIN)/python -m pytest tests --nbval-lax --nbval-current-env --nbval-cell-timeout=1800 notebooks

paper-smoke: env  ## the paper profile end to end, work shrunk (real models, 224 px, local weights); not part of make test
	$(BIN)/python -m pdstudy.study.smoke --out reports/paper-smoke --data-dir data/paper-smoke

unit: env  ## unit tests only
	$(BIN)/python -m pytest tests

lint: env  ## ruff on the package, tests and notebooks, then the import contracts of pyproject.toml (lint-imports)
	$(BIN)/ruff check src tests notebooks
	$(BIN)/lint-imports --no-cache

lock:  ## re-resolve the lock from pyproject.toml in a throw-away venv
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet ".[test]"
	grep '^#' $(LOCK) > $(LOCK).new
	.lock-venv/bin/python -m pip freeze --all --exclude-editable | grep -v '^pdstudy\|^pip==' >> $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf .lock-venv

clean:  ## remove the environment, caches and runs (keeps reports/README.md)
	rm -rf $(VENV) data/synthetic data/cache .pytest_cache
	find reports -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
