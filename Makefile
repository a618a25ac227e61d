# Two commands for a new user: `make demo` and `make test`.
# Each creates the virtual environment .venv on first use (only Python >= 3.9 and pip needed).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.liftpool-installed
PYTEST_WORKERS ?= 2

.PHONY: demo test test-all lint bench sanitize venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/liftpool demo --out liftpool-demo.png

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks scripts examples
	$(PY) -m mypy --strict --no-warn-return-any src/liftpool

test: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -n $(PYTEST_WORKERS) -m "not slow" -q

test-all: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -n $(PYTEST_WORKERS) -q

# tests/native and a seeded random-shape fuzz of the native kernels against the eager kernel, with the
# extension built under AddressSanitizer + UndefinedBehaviorSanitizer (its own cache directory; Python
# and torch are not instrumented, hence the preloaded ASan runtime; libstdc++ is preloaded with it so that
# ASan finds the C++ exception functions it intercepts).  See docs/performance.md.
SANITIZE_CACHE ?= $(HOME)/.cache/liftpool/native-sanitize
FUZZ_CASES ?= 400
FUZZ_SEED ?= 0
sanitize: $(STAMP)
	LIFTPOOL_NATIVE_SANITIZE=1 LIFTPOOL_CACHE_DIR="$(SANITIZE_CACHE)" \
	LIFTPOOL_FUZZ_CASES=$(FUZZ_CASES) LIFTPOOL_FUZZ_SEED=$(FUZZ_SEED) OMP_NUM_THREADS=2 \
	LD_PRELOAD="$$($${CXX:-c++} -print-file-name=libasan.so) $$($${CXX:-c++} -print-file-name=libstdc++.so)" \
	ASAN_OPTIONS=detect_leaks=0 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	$(PY) -m pytest -n 0 -p no:cacheprovider -q tests/native

bench: $(STAMP)
	$(VENV)/bin/liftpool bench

clean:
	rm -rf $(VENV) build dist src/*.egg-info liftpool-demo.png
