# The fleet's commands. `make help` lists them.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Runtime and dev pins with their hashes, resolved by pip-compile from pyproject.toml (make lock).
LOCK := requirements.lock
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) 2>/dev/null | cksum | cut -d' ' -f1)
# pip-tools and pip-audit live in a venv of their own, so the project's venv holds the lock alone.
TOOLS := $(VENV)/tools
CELERY := $(BIN)/celery -A workers

.DEFAULT_GOAL := help
.PHONY: help install lock audit demo test lint format migrate run worker beat flower api fake-anthropic drill bench eval config-docs

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml $(LOCK)
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --require-hashes -r $(LOCK)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP) ## Create .venv and install requirements.lock (runtime + dev, hashed), then the package

$(TOOLS)/bin/pip:
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q --upgrade pip

$(TOOLS)/bin/pip-compile: | $(TOOLS)/bin/pip
	$(TOOLS)/bin/pip install -q pip-tools

$(TOOLS)/bin/pip-audit: | $(TOOLS)/bin/pip
	$(TOOLS)/bin/pip install -q pip-audit

# Keeps the pins that still fit pyproject.toml; LOCK_ARGS=--upgrade (or --upgrade-package NAME) moves them.
lock: | $(TOOLS)/bin/pip-compile ## Re-resolve requirements.lock from pyproject.toml (LOCK_ARGS=--upgrade to bump)
	CUSTOM_COMPILE_COMMAND="make lock" $(TOOLS)/bin/pip-compile -q --generate-hashes --allow-unsafe \
	  --strip-extras --extra dev --build-deps-for editable --no-emit-index-url --no-emit-find-links \
	  $(LOCK_ARGS) --output-file $(LOCK) pyproject.toml

audit: | $(TOOLS)/bin/pip-audit ## Check requirements.lock's pins against PyPI's vulnerability records
	rm -f $(TOOLS)/audit.json
	$(TOOLS)/bin/pip-audit -r $(LOCK) --require-hashes --disable-pip --progress-spinner off \
	  --format json --output $(TOOLS)/audit.json || true
	$(TOOLS)/bin/python -c "$$AUDIT_REPORT" $(TOOLS)/audit.json $(LOCK)

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
	$(BIN)/enrichment migrate

worker: $(STAMP) ## Run one worker (production: see Procfile)
	$(CELERY) worker --loglevel=INFO

beat: $(STAMP) ## Run beat (sweep and monitor schedule)
	$(CELERY) beat --loglevel=INFO -s var/celerybeat-schedule

flower: $(STAMP) ## Run Flower on :5555 (FLOWER_BASIC_AUTH=user:password)
	$(CELERY) flower --port=5555 --basic-auth="$${FLOWER_BASIC_AUTH:?set FLOWER_BASIC_AUTH=user:password}"

fake-anthropic: $(STAMP) ## Serve the fake Anthropic API on 127.0.0.1:8765
	$(BIN)/enrichment fake-anthropic --port 8765 --faults "$${FAULTS:-}"

run: $(STAMP) ## The Procfile under honcho: WORKERS=2 workers, beat, the API on :8000 (FLOWER=1 adds flower)
	$(BIN)/honcho start -c worker=$${WORKERS:-2},flower=$${FLOWER:-0}

api: $(STAMP) ## Serve the enrichment API on :8000
	$(BIN)/uvicorn enrichment.api:app --port 8000

eval: $(STAMP) ## Evaluate the local provider on the shipped labelled set
	$(BIN)/enrichment eval --provider $${PROVIDER:-local}

drill: $(STAMP) ## The fault drill on local Redis + PostgreSQL (DRILL_RECORDS, default 10000)
	$(BIN)/enrichment drill

bench: $(STAMP) ## The benchmarks on local Redis + PostgreSQL; prints a table
	$(BIN)/enrichment bench

# Reads pip-audit's JSON and fails on any known vulnerability. Where PyPI's per-release JSON is not
# served (pip-audit then skips the pin as "not found"), it falls back on the project's JSON, whose
# vulnerability records are those of the latest release: a pin at the latest is audited from them,
# one behind it is listed as not audited.
define AUDIT_REPORT
import json, re, sys, urllib.request
report, lock = json.load(open(sys.argv[1])), open(sys.argv[2]).read()
pins = dict(re.findall(r"^([A-Za-z0-9._-]+)==([^ ;\\\n]+)", lock, re.M))
found, unaudited = [], []
for dep in report["dependencies"]:
    name = dep["name"]
    version = dep.get("version") or pins.get(name)
    vulns = [(v["id"], v["fix_versions"]) for v in dep.get("vulns", [])]
    if "skip_reason" in dep:
        url = f"https://pypi.org/pypi/{name}/json"
        with urllib.request.urlopen(url, timeout=60) as r:
            project = json.load(r)
        latest = project["info"]["version"]
        if latest != version:
            unaudited.append(f"{name} {version} (latest {latest})")
            continue
        vulns = [(v["id"], v.get("fixed_in") or []) for v in project.get("vulnerabilities") or []]
    found += [f"{name} {version}: {i}, fixed in {', '.join(f) or 'no release'}" for i, f in vulns]
for line in found:
    print(line)
if unaudited:
    print("not audited (PyPI's records here cover a project's latest release only):")
    print(*("  " + u for u in unaudited), sep="\n")
deps, skipped = report["dependencies"], sum("skip_reason" in d for d in report["dependencies"])
print(f"{len(deps)} pins: {len(found)} known vulnerabilities; audited {len(deps) - skipped} by pip-audit,"
      f" {skipped - len(unaudited)} from the latest release's records, {len(unaudited)} not at all")
sys.exit(1 if found else 0)
endef
export AUDIT_REPORT
