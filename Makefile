# Everyday commands. Needs only python3 (with venv and pip), make and git on PATH.
#   make test   unit, integration and end-to-end tests with a coverage floor
#   make lint   ruff (lint + format check) and mypy on the library
#   make sam    sam validate --lint and sam build (no Docker needed)
#   make run    the local runner against the local Bitrix24 portal
#   make bench  benchmarks, printing their figures

PYTHON ?= python3
VENV := .venv
TOOLS_VENV := .venv-tools
SAM := $(TOOLS_VENV)/bin/sam
COVERAGE_FLOOR ?= 80
PYTEST_ARGS ?=
ARGS ?=
PIP_FLAGS := --quiet --disable-pip-version-check

export SAM_CLI_TELEMETRY := 0

.DEFAULT_GOAL := help
.PHONY: help venv tools test lint sam deploy run bench clean distclean

help:
	@echo "make venv       create .venv from requirements-dev.txt (only when requirements change)"
	@echo "make test       pytest with coverage (floor $(COVERAGE_FLOOR)%); PYTEST_ARGS='-k name' to narrow"
	@echo "make lint       ruff check, ruff format --check, mypy"
	@echo "make tools      create .venv-tools with SAM CLI and cfn-lint"
	@echo "make sam        sam validate --lint, then sam build into .aws-sam/"
	@echo "make deploy     sam deploy --guided (needs AWS credentials)"
	@echo "make run        local runner (python -m local.run); ARGS='...' passes arguments"
	@echo "make bench      benchmarks (bench/run_benchmark.py)"
	@echo "make clean      remove build output and caches; distclean also removes both venvs"

# The stamp is newer than the requirement files once they are installed, so `make venv` is a
# no-op until one of them changes.
venv: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt layers/monitor/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install $(PIP_FLAGS) -r requirements-dev.txt
	touch $@

# SAM CLI pins its own boto3 and friends, so it lives apart from the project's venv.
tools: $(TOOLS_VENV)/.installed

$(TOOLS_VENV)/.installed: requirements-tools.txt
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install $(PIP_FLAGS) -r requirements-tools.txt
	touch $@

test: venv
	$(VENV)/bin/pytest --cov --cov-report=term --cov-fail-under=$(COVERAGE_FLOOR) $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The layer's Makefile runs `python3 -m pip`; the tools venv first on PATH guarantees a pip.
sam: export PATH := $(CURDIR)/$(TOOLS_VENV)/bin:$(PATH)
sam: tools
	$(SAM) validate --lint --template template.yaml
	$(SAM) build --template template.yaml

deploy: export PATH := $(CURDIR)/$(TOOLS_VENV)/bin:$(PATH)
deploy: sam
	$(SAM) deploy --guided

run: venv
	$(VENV)/bin/python -m local.run $(ARGS)

bench: venv
	$(VENV)/bin/python bench/run_benchmark.py $(ARGS)

clean:
	rm -rf .aws-sam .pytest_cache .ruff_cache .mypy_cache .hypothesis .coverage coverage.xml htmlcov
	find . \( -path ./$(VENV) -o -path ./$(TOOLS_VENV) -o -path ./.git \) -prune -o \
		-type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(TOOLS_VENV)
