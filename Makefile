# Two commands do all the set-up on a fresh clone: `make demo` and `make test`.
# Each creates the virtualenv and installs everything on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo dev test lint typecheck check bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)  ## start the dev stack, run the demo jobs, print the summary
	$(BIN)/gigafactory demo

dev: $(STAMP)  ## the dev stack with two local factories, until Ctrl-C
	$(BIN)/gigafactory dev

test: $(STAMP)  ## lint, type-check and the whole test suite (what CI runs)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy gigafactory workflows activities routing api launch bench
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/gigafactory bench --jobs 200 --factories 2

clean:
	rm -rf $(VENV) .gigafactory .mypy_cache .ruff_cache .pytest_cache
