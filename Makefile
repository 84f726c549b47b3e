# lossbench — every target bootstraps .venv on first use (and again when pyproject.toml changes).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SWEEP  ?= default
JOBS   ?= $(shell nproc 2>/dev/null || echo 1)
RESULTS ?= results
PACK   ?= auto

.DEFAULT_GOAL := help
.PHONY: help install test test-fast sweep report perf clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo "  variables: SWEEP=<preset in conf/sweep or 'default'>  JOBS=<parallel workers>  RESULTS=<dir>  PACK=<auto|true|false>"

# quiet unless it fails: pip's and setuptools' chatter goes to .venv/install.log, shown on a failure;
# editable_mode=compat puts the checkout itself on sys.path, so that Hydra finds bench's launchers by
# walking hydra_plugins (it cannot see through setuptools' default editable finder)
$(STAMP): pyproject.toml
	@echo "setting up $(VENV) (first use, about a minute; log in $(VENV)/install.log)"
	@$(PYTHON) -m venv $(VENV)
	@{ $(PY) -m pip install --upgrade pip && $(PY) -m pip install -e '.[dev,slurm]' --config-settings editable_mode=compat; } > $(VENV)/install.log 2>&1 \
	  || { tail -n 30 $(VENV)/install.log; echo "error: installing lossbench failed; the whole log is $(VENV)/install.log"; exit 1; }
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install lossbench with its dev extras

# tests run in one worker process per core (pytest-xdist), slow-marked ones handed out first (tests/conftest.py);
# worksteal: an idle worker takes tests still queued at another (the default hands each worker a fixed
# first batch, and one worker's batch of slow tests kept it busy ~45 s after the other had finished:
# 5 min 00 s against 4 min 13 s); a test starts a process only where the process is what it checks
# (kill, Ctrl-C, launchers, imports)
test: $(STAMP)  ## run the whole test suite (4-5 minutes on 2 cores, one worker per core)
	$(PY) -m pytest -q -n auto --dist worksteal

test-fast: $(STAMP)  ## run the tests not marked slow (under a minute): the edit loop
	$(PY) -m pytest -q -n auto --dist worksteal -m 'not slow'

# the default set of sweep presets (conf/sweep/*.yaml), run one after the other by `make sweep`
SWEEPS := classification regression saturation binary_vs_categorical outliers demand
# PACK: pack.enabled (conf/config.yaml): auto packs cluster sweeps only, true packs here too, false never
# JOBS > 1: Hydra's joblib launcher, JOBS worker processes with cores / JOBS torch threads each
LAUNCH = $(if $(filter-out 1,$(JOBS)),hydra/launcher=parallel hydra.launcher.n_jobs=$(JOBS))

# the variables, checked before anything runs: a preset, a whole number of workers, a results folder;
# a sweep stopped by Ctrl-C or SIGTERM (exit 130 / 143) stops the loop too, and skips the report
sweep: $(STAMP)  ## run the default sweeps (or SWEEP=name JOBS=n), then build the report
	@for s in $(if $(filter default,$(SWEEP)),,$(SWEEP)); do [ -f conf/sweep/$$s.yaml ] || { \
	  echo "error: SWEEP=$$s is not a preset; choose one of: default $$(ls conf/sweep | sed 's/\.yaml$$//' | tr '\n' ' ')" >&2; exit 2; }; done
	@case "$(JOBS)" in ''|*[!0-9]*|0*) echo "error: JOBS=$(JOBS) is not allowed; it must be a whole number >= 1 (parallel workers), e.g. JOBS=2" >&2; exit 2;; esac
	@[ -n "$(RESULTS)" ] || { echo "error: RESULTS is empty; give the results folder, e.g. RESULTS=results" >&2; exit 2; }
	@failed=0; for s in $(if $(filter default,$(SWEEP)),$(SWEEPS),$(SWEEP)); do \
	  echo "== sweep $$s"; \
	  $(PY) -m bench.run -m sweep=$$s "results_dir='$(RESULTS)'" pack.enabled=$(PACK) $(LAUNCH) || { code=$$?; [ $$code -lt 128 ] || exit $$code; failed=1; }; \
	done; \
	$(PY) -m bench.report "$(RESULTS)" || failed=1; \
	exit $$failed

report: $(STAMP)  ## rebuild results/report/index.html from results/
	$(PY) -m bench.report "$(RESULTS)"

perf: $(STAMP)  ## throughput benchmark of the harness against a plain torch loop (PERF_ARGS="device=cuda ...")
	$(PY) -m bench.perf $(PERF_ARGS)

clean:  ## remove results (keeps results/README.md) and caches; the .venv stays
	@[ -n "$(RESULTS)" ] || { echo "error: RESULTS is empty; give the results folder, e.g. RESULTS=results" >&2; exit 2; }
	find "$(RESULTS)" -mindepth 1 -not -name README.md -delete 2>/dev/null || true
	rm -rf .pytest_cache .hypothesis outputs multirun
