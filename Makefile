# The fleet's commands. `make help` lists them.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
CELERY := $(BIN)/celery -A workers

.DEFAULT_GOAL := help
.PHONY: help install demo test lint format migrate worker beat flower api fake-anthropic drill bench eval config-docs

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (set PYTHON=...)"; exit 1; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP) ## Create .venv and install the package with its dev tools

demo: $(STAMP) ## Run the fleet on the embedded default (SQLite + filesystem broker under ./var)
	$(BIN)/enrichment demo --records $${DEMO_RECORDS:-500}

test: $(STAMP) ## Run the test suite (needs PostgreSQL and Redis on 127.0.0.1)
	$(BIN)/pytest -q

lint: $(STAMP) ## ruff check and format check
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(STAMP) ## ruff fix and format
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

config-docs: $(STAMP) ## Regenerate docs/configuration.md from the settings' fields
	$(BIN)/python -m enrichment.core.settings_doc

migrate: $(STAMP) ## alembic upgrade head on DATABASE_URL
	$(BIN)/alembic upgrade head

worker: $(STAMP) ## Run one worker (production: see Procfile)
	$(CELERY) worker --loglevel=INFO

beat: $(STAMP) ## Run beat (sweep and monitor schedule)
	$(CELERY) beat --loglevel=INFO -s var/celerybeat-schedule

flower: $(STAMP) ## Run Flower on :5555 (FLOWER_BASIC_AUTH=user:password)
	$(CELERY) flower --port=5555 --basic-auth="$${FLOWER_BASIC_AUTH:?set FLOWER_BASIC_AUTH=user:password}"

fake-anthropic: $(STAMP) ## Serve the fake Anthropic API on 127.0.0.1:8765
	$(BIN)/enrichment fake-anthropic --port 8765 --faults "$${FAULTS:-}"

api: $(STAMP) ## Serve the enrichment API on :8000
	$(BIN)/uvicorn enrichment.api:app --port 8000

eval: $(STAMP) ## Evaluate the local provider on the shipped labelled set
	$(BIN)/enrichment eval --provider $${PROVIDER:-local}

drill: $(STAMP) ## The fault drill on local Redis + PostgreSQL (DRILL_RECORDS, default 10000)
	$(BIN)/enrichment drill

bench: $(STAMP) ## The benchmarks on local Redis + PostgreSQL; prints a table
	$(BIN)/enrichment bench
