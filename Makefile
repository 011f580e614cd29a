# Two entry points for a fresh machine: `make demo` (set up, launch the window on the demo index)
# and `make test` (set up, run the checks and the test suite). Both create .venv on first use.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint check-layering clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --no-cache-dir -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/copylens demo

lint: $(STAMP)
	$(BIN)/ruff check core app tests bench

check-layering: $(STAMP)
	$(BIN)/python tests/check_layering.py

test: $(STAMP) lint check-layering
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
