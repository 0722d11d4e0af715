# Everything runs from the project's own virtual environment; the only prerequisites are
# Python (3.11, 3.12 or 3.13) and make. The first of those that runs is used; PYTHON= overrides.
SUPPORTED_PYTHONS := python3.11 python3.12 python3.13
ifeq ($(origin PYTHON),undefined)
PYTHON := $(firstword $(foreach p,$(SUPPORTED_PYTHONS),$(shell $(p) -c 'import sys' >/dev/null 2>&1 && echo $(p))))
endif
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Benchmark-only environment: kserve (the KServe peer) and locust; kept apart from .venv
# because kserve pins protobuf and pandas below the kit's.
BENCH_VENV  := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed
# make loadtest URL=http://127.0.0.1:5000 BODY=examples/credit/requests/one_applicant.json
USERS    ?= 16
DURATION ?= 30s
PIPELINE ?=
OUT      ?= run/loadtest

.PHONY: help install test test-faults test-faults-full lint format up demo bench bench-graph bench-logic bench-venv profile-logic loadtest clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "none of $(SUPPORTED_PYTHONS) found on PATH: install Python 3.11, 3.12 or 3.13, or run 'make PYTHON=/path/to/python3'"; exit 2; }
	@$(PYTHON) -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' 2>/dev/null || { echo "$(PYTHON) is not Python 3.11, 3.12 or 3.13 (or not found); run 'make PYTHON=/path/to/python3.12'"; exit 2; }
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

$(BENCH_STAMP): requirements-bench.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run 'make PYTHON=/path/to/python3.11'"; exit 2; }
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -r requirements-bench.txt
	@touch $@

bench-venv: $(BENCH_STAMP)  ## .venv-bench: kserve, locust, py-spy, for bench-logic, profile-logic and loadtest only

bench-logic: $(STAMP) $(BENCH_STAMP)  ## graph alone, kit, Flask recipe, KServe; then the compiled public template vs its recipe
	$(BIN)/python benchmarks/bench_logic.py --bench-python $(BENCH_VENV)/bin/python
	$(BIN)/python benchmarks/bench_template.py

profile-logic: $(STAMP) $(BENCH_STAMP)  ## py-spy on the logic workers under 16 clients: where the CPU goes
	$(BIN)/python benchmarks/profile_logic.py --py-spy $(BENCH_VENV)/bin/py-spy

loadtest: $(BENCH_STAMP)  ## locust, headless: make loadtest URL=http://127.0.0.1:5000 BODY=req.json
	@test -n "$(URL)" -a -n "$(BODY)" || { echo "usage: make loadtest URL=http://127.0.0.1:5000 BODY=examples/credit/requests/one_applicant.json [PIPELINE=credit USERS=16 DURATION=30s OUT=run/loadtest]"; exit 2; }
	@mkdir -p $(OUT)
	$(BENCH_VENV)/bin/locust -f benchmarks/locustfile.py --headless --host $(URL) \
		--users $(USERS) --spawn-rate $(USERS) --run-time $(DURATION) --stop-timeout 10 \
		--body $(BODY) $(if $(PIPELINE),--pipeline $(PIPELINE)) \
		--csv $(OUT)/locust --html $(OUT)/report.html --only-summary
	@echo "report: $(OUT)/report.html, CSV: $(OUT)/locust_*.csv"

bench: bench-graph bench-logic  ## every benchmark

clean:  ## remove the environment and build leftovers
	rm -rf $(VENV) $(BENCH_VENV) .pytest_cache .ruff_cache *.egg-info build
