# Everything the project needs is installed from its own files into a local virtualenv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sgn-installed
DEMO_BUDGET ?= 6
# pytest-xdist workers: the cold suite is dominated by C/Numba/XLA compiles, which overlap on two cores.
PYTEST_WORKERS ?= 2

.PHONY: install demo test docs clean

$(STAMP): setup.cfg setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e ".[test,demo]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py --budget $(DEMO_BUDGET) --out demo_output

test: $(STAMP)
	$(PY) -m pytest -n $(PYTEST_WORKERS)

# Warnings are errors; tests/test_docs.py runs the same build.
docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html
	@echo "open docs/_build/html/index.html"

clean:
	rm -rf $(VENV) demo_output docs/_build .pytest_cache *.egg-info
