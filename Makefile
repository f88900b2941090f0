# Two commands do all the set-up on a fresh clone: `make demo` and `make test`.
# Each creates the virtualenv and installs everything on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

AGENTS_STAMP := tools/agents/node_modules/.installed
AIDER_VENV := .venv-aider
AIDER_STAMP := $(AIDER_VENV)/.installed

.PHONY: demo dev test lint typecheck check bench clean agents browser histories

# The test modules whose scenarios record the replay tests' histories (record_history).
HISTORY_TESTS := tests/e2e/test_leaf_jobs.py tests/e2e/test_dag.py tests/e2e/test_ship.py \
	tests/e2e/test_preemption.py tests/e2e/test_budgets.py tests/budgets/test_controller_workflow.py

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The agent CLIs the real_agents tests run, at pinned versions (docs/agents.md). A failed
# installation does not stop `make test`: each CLI's test then fails, quoting the log.
# `npm install`, not `npm ci`: opencode-ai lists platform packages that npm 11 leaves out of
# the lock file, and `npm ci` then refuses it as out of sync (the versions stay pinned).
$(AGENTS_STAMP): tools/agents/package-lock.json
	cd tools/agents && npm install --no-audit --no-fund > install.log 2>&1 || { tail -5 install.log; exit 1; }
	touch $@

$(AIDER_STAMP):
	rm -rf $(AIDER_VENV)
	$(PYTHON) -m venv $(AIDER_VENV)
	$(AIDER_VENV)/bin/python -m pip install --quiet 'aider-chat==0.86.2' > $(AIDER_VENV)/install.log 2>&1 || { tail -5 $(AIDER_VENV)/install.log; exit 1; }
	touch $@

agents:  ## install the agent CLIs (npm: tools/agents, PyPI: .venv-aider)
	-$(MAKE) $(AGENTS_STAMP)
	-$(MAKE) $(AIDER_STAMP)

# Debian's chromium, which the web UI tests drive with Playwright (Playwright's own browser
# download cannot work here). A failed installation does not stop `make test`: the browser
# tests then fail, saying chromium is missing.
browser:  ## install Debian's chromium for the web UI tests (apt-get, as root)
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium (apt-get)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  { apt-get update -qq && apt-get install -y -qq chromium; } \
	    > /tmp/gigafactory-chromium-install.log 2>&1 \
	  || { tail -5 /tmp/gigafactory-chromium-install.log; exit 1; }; }

demo: $(STAMP)  ## start the dev stack, run the demo jobs, print the summary
	$(BIN)/gigafactory demo

dev: $(STAMP)  ## the dev stack with two local factories, until Ctrl-C
	$(BIN)/gigafactory dev

test: $(STAMP) agents  ## lint, type-check and the whole test suite (what CI runs)
	-$(MAKE) browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy gigafactory workflows activities routing api launch bench
	$(BIN)/pytest

# Re-record the workflow histories the replay tests check (after an intended change to a
# workflow: docs/replay-and-hygiene.md), then replay them.
histories: $(STAMP)  ## re-record tests/replay/histories from the end-to-end scenarios
	GIGAFACTORY_RECORD_HISTORIES=1 $(BIN)/pytest -q -p no:cacheprovider $(HISTORY_TESTS)
	$(BIN)/pytest -q -p no:cacheprovider tests/replay

bench: $(STAMP)
	$(BIN)/gigafactory bench --jobs 200 --factories 2

clean:
	rm -rf $(VENV) $(AIDER_VENV) tools/agents/node_modules .gigafactory .mypy_cache .ruff_cache .pytest_cache
