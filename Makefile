# particle-dissector: the two commands README promises.
#   make demo  – set up and dissect a bundled capture with its bundled keys
#   make test  – set up and run lint, type checks and the test suite
#   make notebooks – open the teaching notebooks in Jupyter
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint typecheck pytest bench clean notebooks notebooks-run

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	# Byte-compile now: an editable install does not, and where PYTHONDONTWRITEBYTECODE
	# is set every run would otherwise recompile the whole package (~0.1 s of start-up).
	$(BIN)/python -m compileall -q dissector >/dev/null
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/particle-dissect dissect captures/sparkprotocol-deviceos-0.7.0.pcap --keys captures/keys

lint: $(STAMP)
	$(BIN)/ruff check dissector tests benchmarks notebooks
	$(BIN)/ruff format --check dissector tests benchmarks notebooks

typecheck: $(STAMP)
	$(BIN)/mypy dissector

pytest: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck pytest

NB_STAMP := $(VENV)/.notebooks-installed

$(NB_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,notebooks]'
	touch $(NB_STAMP)

# Open the teaching notebooks in JupyterLab (root needs --allow-root on these machines).
notebooks: $(NB_STAMP)
	$(BIN)/jupyter lab --allow-root --ServerApp.root_dir=. notebooks/01-identities-and-keys.ipynb

# Re-execute the notebooks and store their outputs (after a deliberate output change).
notebooks-run: $(STAMP)
	$(BIN)/python notebooks/execute.py

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
