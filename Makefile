# Everything the project needs is installed from its own files into a local virtualenv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sgn-installed
DEMO_BUDGET ?= 6

.PHONY: install demo test clean

$(STAMP): setup.cfg setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e ".[test,demo]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py --budget $(DEMO_BUDGET) --out demo_output

test: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf $(VENV) demo_output .pytest_cache *.egg-info
