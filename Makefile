# lossbench — every target bootstraps .venv on first use (and again when pyproject.toml changes).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SWEEP  ?= default
JOBS   ?= 1
RESULTS ?= results

.DEFAULT_GOAL := help
.PHONY: help install test test-slow sweep report perf clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo "  variables: SWEEP=<preset in conf/sweep or 'default'>  JOBS=<parallel workers>  RESULTS=<dir>"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,slurm]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install lossbench with its dev extras

test: $(STAMP)  ## run the test suite (fast tests; slow ones with `make test-slow`)
	$(PY) -m pytest -q

test-slow: $(STAMP)  ## run the slow tests too
	$(PY) -m pytest -q -m ''

sweep: $(STAMP)  ## run the default sweeps (or SWEEP=name JOBS=n), then build the report
	@echo "make sweep: not built yet (issue 6)"; exit 1

report: $(STAMP)  ## rebuild results/report/index.html from results/
	@echo "make report: not built yet (issue 7)"; exit 1

perf: $(STAMP)  ## throughput benchmark of the harness against a plain torch loop
	@echo "make perf: not built yet (issue 4)"; exit 1

clean:  ## remove results (keeps results/README.md) and caches; the .venv stays
	find $(RESULTS) -mindepth 1 -not -name README.md -delete 2>/dev/null || true
	rm -rf .pytest_cache .hypothesis outputs multirun
