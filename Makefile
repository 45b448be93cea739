# Everything the project needs is installed from its own files into a local virtualenv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_BUDGET ?= 6
# pytest-xdist workers: the cold suite is dominated by C/Numba/XLA compiles. Three workers keep two
# cores busy while one waits on gcc (PyTensor compiles one module at a time per cache): 647-692 s
# against 819 s for two, cold, on a fresh clone (sgn 0.3.0); 727 s with 0.4.0's MPI tests. A cache
# per worker, measured too, was slower (857 s, 0.4.0): every worker compiles the common modules again.
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
	$(PY) -m pytest -n $(PYTEST_WORKERS)

# ruff's rules are in ruff.toml.
lint: $(VENV)/.sgn-lint
	$(VENV)/bin/ruff check .

# Warnings are errors; tests/test_docs.py runs the same build.
docs: $(VENV)/.sgn-docs
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html
	@echo "open docs/_build/html/index.html"

clean:
	rm -rf $(VENV) demo_output docs/_build .pytest_cache *.egg-info
