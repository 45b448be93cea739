# Everything the project needs is installed from its own files into a local virtualenv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_BUDGET ?= 6
# pytest-xdist workers: the cold suite is dominated by C/Numba/XLA compiles. Each worker has its own
# PyTensor compile cache (tests/conftest.py says why) and a test file's tests stay on one worker.
PYTEST_WORKERS ?= 3

.PHONY: install demo test lint docs clean

# One stamp per extra: `make demo` installs only what the demo needs (the library and matplotlib).
$(VENV)/.sgn-%: setup.cfg setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e ".[$*]"
	touch $@

install: $(VENV)/.sgn-test

demo: $(VENV)/.sgn-demo
	$(PY) examples/demo.py --budget $(DEMO_BUDGET) --out demo_output

test: $(VENV)/.sgn-test
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile

# ruff's rules are in pyproject.toml ([tool.ruff]).
lint: $(VENV)/.sgn-lint
	$(VENV)/bin/ruff check .

# Warnings are errors; tests/test_docs.py runs the same build.
docs: $(VENV)/.sgn-docs
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html
	@echo "open docs/_build/html/index.html"

clean:
	rm -rf $(VENV) demo_output docs/_build .pytest_cache *.egg-info
