# Squiggle warehouse. `make demo` sets everything up on a fresh machine; `make test` tests it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
LAKE   ?= lake
DB     ?= warehouse.duckdb
WH     := $(BIN)/warehouse

.PHONY: install demo models catalog check test test-faults docs clean

# The virtual environment, re-made when the project's dependencies change.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

## demo: write the demo lake, build every model and the catalog, score them against the planted truth
demo: install
	$(WH) demo --lake $(LAKE)
	$(MAKE) --no-print-directory models
	$(WH) scorecard --lake $(LAKE) --db $(DB)

## models: run the models that are out of date, then rebuild the catalog
models: install
	$(WH) models run --lake $(LAKE)
	$(WH) catalog --lake $(LAKE) --db $(DB)

## catalog: rebuild only the catalog file
catalog: install
	$(WH) catalog --lake $(LAKE) --db $(DB)

## check: report every problem of the lake (changes nothing)
check: install
	$(WH) check --lake $(LAKE)

## test: the model lock check and the test suite
test: install
	$(WH) models check
	$(BIN)/python -m pytest -q

## test-faults: SIGKILL `make models` at 20+ seeded random points, checking the lake after each
test-faults: install
	$(BIN)/python -m pytest -q -s -m faults

## docs: regenerate the README's data dictionary from the contracts
docs: install
	$(WH) docs --readme README.md

clean:
	rm -rf $(LAKE) $(DB) $(DB).tmp-*
