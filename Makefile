# Quick start: `make report` runs the whole pipeline, `make test` the test suite,
# `make lab` opens JupyterLab. Each target creates .venv and installs the project
# into it when needed (Python 3.11+ as $(PYTHON)).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# Extra arguments, e.g. make report ARGS="--data ratings.csv -p epochs 5"
ARGS        ?=
# make lab RUN=latest (or RUN=reports/<run>): notebooks start from that finished run's
# artifacts, copied to reports/lab so the run itself is not changed
RUN         ?=
PYTEST_ARGS ?=
# make test runs pytest-xdist workers (tests/conftest.py's groups); TEST_WORKERS=0: one process
TEST_WORKERS ?= 2
# JupyterLab refuses to start as root unless told; containers often run as root.
LAB_ARGS    ?= $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: help install report test lab sample screenshots clean-reports

help:
	@echo "make report   run the five notebooks on the default data, render HTML under reports/"
	@echo "make test     run the test suite"
	@echo "make lab      open JupyterLab on notebooks/ with this project's environment"
	@echo "              (RUN=latest or RUN=reports/<run>: start from a finished run)"
	@echo "make sample   (re)generate the embedded sample data"
	@echo "make screenshots  a fresh default run, checked in headless Chromium; full-page PNGs to docs/"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required; run with PYTHON=python3.11 (found " + sys.version.split()[0] + ")")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name recsys-utils --display-name "recsys_utils (.venv)" >/dev/null
	@touch $(STAMP)

install: $(STAMP)

report: $(STAMP)
	$(PY) -m recsys_utils run $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

lab: $(STAMP)
	$(PY) -m ipykernel install --sys-prefix --name recsys-utils --display-name "recsys_utils (.venv)" >/dev/null
	$(PY) -m recsys_utils generate
	cd notebooks && $(if $(RUN),RECSYS_RUN_DIR=$(if $(filter latest,$(RUN)),latest,$(abspath $(RUN))) )$(abspath $(PY)) -m jupyter lab $(LAB_ARGS)

sample: $(STAMP)
	$(PY) -m recsys_utils generate --force

# Needs Debian's chromium (apt-get install -y chromium); Playwright drives it, downloading no browser.
screenshots: $(STAMP)
	$(PY) tests/browser.py --out docs

clean-reports:
	rm -rf reports/*/
