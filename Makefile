# Two commands for a new user: `make demo` and `make test`.
# Each creates the virtual environment .venv on first use (only Python >= 3.9 and pip needed).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.liftpool-installed
PYTEST_WORKERS ?= 2

.PHONY: demo test test-all lint bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/liftpool demo --out liftpool-demo.png

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks scripts
	$(PY) -m mypy --strict --no-warn-return-any src/liftpool

test: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -n $(PYTEST_WORKERS) -m "not slow" -q

test-all: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -n $(PYTEST_WORKERS) -q

bench: $(STAMP)
	$(VENV)/bin/liftpool bench

clean:
	rm -rf $(VENV) build dist src/*.egg-info liftpool-demo.png
