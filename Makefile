# particle-dissector: the two commands README promises.
#   make demo  – set up and dissect a bundled capture with its bundled keys
#   make test  – set up and run lint, type checks and the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint typecheck pytest bench clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/particle-dissect dissect captures/sparkprotocol-deviceos-0.7.0.pcap --keys captures/keys

lint: $(STAMP)
	$(BIN)/ruff check dissector tests benchmarks
	$(BIN)/ruff format --check dissector tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy dissector

pytest: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
