# earmark: two commands on a fresh machine.
#   make demo   set up .venv if missing, install, then train/evaluate/predict on a synthesized dataset
#   make test   same set-up, then lint (ruff), types (mypy) and the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# Extra pip arguments, e.g. PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu"
PIP_ARGS ?=
PYTEST_ARGS ?=

.PHONY: install demo test bench clean

$(BIN)/.installed: pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(PIP_ARGS) -c constraints.txt -e '.[dev]'
	@touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/earmark demo --out earmark-demo

test: install
	$(BIN)/ruff check src tests
	$(BIN)/mypy src
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) earmark-demo .pytest_cache
