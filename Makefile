# flaskbench: `make bench` runs the benchmark, `make test` runs the tests (`make test-unit` the fast
# ones alone). They set themselves up.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= bench.toml
RUNNER ?= auto
# Extra flags for `flaskbench run`, e.g. make bench ARGS="--targets sync,gevent --repeats 3"
ARGS ?=
# make publish: the runs and comparisons to publish (default: all under results/), and where.
RUNS ?=
SITE ?= site

.PHONY: help venv bench bench-quick images base-image report test test-unit lint accuracy compare-check publish doctor clean-containers clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-17s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  variables: RUNNER=auto|docker|local CONFIG=bench.toml ARGS='...' RUN=results/<run>"
	@echo "             RUNS='results/<run> results/<comparison> ...' SITE=site (make publish)"

# Every server's pins, one file per server (flaskbench/servers/pins/).
SERVER_PINS := $(sort $(wildcard flaskbench/servers/pins/*.txt))

$(STAMP): requirements.txt $(SERVER_PINS) targets/app-requirements.txt locustfiles/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt $(addprefix -r ,$(SERVER_PINS))
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

venv: $(STAMP) ## create .venv with the pinned dependencies

bench: $(STAMP) ## run the full default matrix (bench.toml) and write a report
	$(BIN)/flaskbench run --config $(CONFIG) --runner $(RUNNER) $(ARGS)

bench-quick: $(STAMP) ## all targets and workloads, fewer and shorter steps
	$(BIN)/flaskbench run --config $(CONFIG) --runner $(RUNNER) --quick $(ARGS)

images: $(STAMP) ## build the target and Locust images (and a base image if no registry answers)
	$(BIN)/flaskbench images --config $(CONFIG)

base-image: ## build flaskbench-base:bookworm from Debian packages (root, no registry needed)
	scripts/build-base-image.sh

report: $(STAMP) ## rebuild a run's summary and report from its raw data: make report RUN=results/<run>
	@test -n "$(RUN)" || { echo "usage: make report RUN=results/<run directory>" >&2; exit 2; }
	$(BIN)/flaskbench report $(RUN)

compare-check: $(STAMP) ## measure verdicts on this machine: false positives (A/A), power, valid steps (under 30 minutes)
	$(BIN)/python -m flaskbench.selfcheck.compare_check --config $(CONFIG) --runner $(RUNNER)

publish: $(STAMP) ## write a static site of runs and comparisons: make publish [RUNS="..."] [SITE=site]
	$(BIN)/flaskbench publish $(RUNS) --out $(SITE)

doctor: $(STAMP) ## check that this host can run the benchmark
	$(BIN)/flaskbench doctor --config $(CONFIG)

clean-containers: $(STAMP) ## remove the containers of crashed runs (only those)
	$(BIN)/flaskbench clean

# The slowest tests are listed at the end, to keep CI's time in view.
test: lint ## lint, type-check and run every test (docker tests need a daemon)
	$(BIN)/pytest --durations=25

# The markers are declared in pyproject.toml: load starts real servers and Locust, docker needs a
# daemon, hosts emulates separate hosts.
test-unit: $(STAMP) ## the fast tests alone, no lint: none marked load, docker or hosts (under 2 min)
	$(BIN)/pytest -m "not load and not docker and not hosts"

lint: $(STAMP) ## ruff check, ruff format --check, mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

accuracy: $(STAMP) ## print the measurement-accuracy benchmarks (takes a few minutes)
	$(BIN)/python -m flaskbench.selfcheck.accuracy --config $(CONFIG) --runner $(RUNNER)

clean: ## remove the virtualenv and caches (results/ is kept)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
