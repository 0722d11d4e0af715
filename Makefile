# Everything runs from the project's own virtual environment; the only prerequisites are
# Python 3.11 and make.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help install test test-faults test-faults-full lint format up demo bench bench-graph bench-logic clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run 'make PYTHON=/path/to/python3.11'"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python requirements.txt pyproject.toml
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install the pinned development set

test: $(STAMP)  ## lint, then the whole test suite
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

test-faults: $(STAMP)  ## the fault suite, bounded slice (CI): tiers killed, frozen, drained, fuzzed
	FAULT_REPORT=run/fault-report.txt $(BIN)/python -m pytest -m fault tests/faults

test-faults-full: $(STAMP)  ## the fault suite in full: 20,000-request memory run, 10x the fuzzing
	FAULT_FULL=1 FAULT_REPORT=run/fault-report-full.txt $(BIN)/python -m pytest -m fault tests/faults

lint: $(STAMP)  ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

up: $(STAMP)  ## build the example if needed, convert, start graph + logic services; Ctrl-C stops
	$(BIN)/python scripts/stack.py up

demo: $(STAMP)  ## the same start, a few scored requests printed, then stop
	$(BIN)/python scripts/stack.py demo

bench-graph: $(STAMP)  ## graph service :predict latency/throughput vs in-process
	$(BIN)/python benchmarks/bench_graph.py

bench-logic: $(STAMP)  ## /get_score latency/throughput vs graph call alone and the plain Flask recipe
	$(BIN)/python benchmarks/bench_logic.py

bench: bench-graph bench-logic  ## every benchmark

clean:  ## remove the environment and build leftovers
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info build
