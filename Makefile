# Everyday commands. Needs only python3 (with venv and pip), make and git on PATH.
#   make test   unit, integration and end-to-end tests with a coverage floor
#   make lint   ruff (lint + format check) and mypy on the library
#   make sam    sam validate --lint, cfn-lint on the transformed template, sam build (no Docker)
#   make scan   checkov on the transformed template
#   make run    the local runner against the local Bitrix24 portal
#   make bench  benchmarks, printing their figures
#   make fleet  the checker on 1,000 local portals: time, memory, calls, the sweep and the bill
#   make fanout 10,000 portals fanned out (FanOut=true): the planner, each shard, the bill
#   make coldstart  each handler's cold import, as a ratio to a bare `import boto3`

PYTHON ?= python3
VENV := .venv
TOOLS_VENV := .venv-tools
SAM := $(TOOLS_VENV)/bin/sam
CHECKOV_VENV := .venv-checkov
# template.yaml after the SAM transform: what CloudFormation receives, SAM's generated roles included.
TRANSFORMED := .aws-sam/transformed.json
COVERAGE_FLOOR ?= 80
PYTEST_ARGS ?=
TEST_WORKERS ?= 2
ARGS ?=
PIP_FLAGS := --quiet --disable-pip-version-check

export SAM_CLI_TELEMETRY := 0

.DEFAULT_GOAL := help
.PHONY: help venv tools test lint sam transformed scan deploy run bench fleet fanout cost coldstart clean distclean

help:
	@echo "make venv       create .venv from requirements-dev.txt (only when requirements change)"
	@echo "make test       pytest with coverage (floor $(COVERAGE_FLOOR)%) in $(TEST_WORKERS) workers; PYTEST_ARGS='-k name' to narrow"
	@echo "make lint       ruff check, ruff format --check, mypy"
	@echo "make tools      create .venv-tools with SAM CLI and cfn-lint"
	@echo "make sam        sam validate --lint, cfn-lint on the transformed template, sam build"
	@echo "make scan       checkov (IaC scanner, own venv .venv-checkov) on the transformed template"
	@echo "make deploy     sam deploy; PARAMS='Targets=... AlertEmail=...' on the first (AWS credentials)"
	@echo "make run        local runner (python -m local.run); ARGS='...' passes arguments"
	@echo "make bench      benchmarks (python -m bench.run_benchmark)"
	@echo "make fleet      the checker on 1,000 portals x 5 lines at 300 ms, the sweep and the bill (bench.fleet)"
	@echo "make fanout     10,000 portals x 5 lines fanned out into shards of 1,000: planner, shards, bill"
	@echo "make cost       the monthly bill of 5,000 targets / 1,000 portals, fitted from two small fleets (bench.fleet --fit)"
	@echo "make coldstart  each handler's cold import against import boto3 (bench/coldstart.py)"
	@echo "make clean      remove build output and caches; distclean also removes both venvs"

# The stamp is newer than the requirement files once they are installed, so `make venv` is a
# no-op until one of them changes.
venv: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt layers/monitor/requirements.txt layers/monitor/pyproject.toml
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
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --cov --cov-report=term --cov-fail-under=$(COVERAGE_FLOOR) $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install $(PIP_FLAGS) -r requirements-checkov.txt
	touch $@

# cfn-lint reads SAM resources as written; IAM actions in the roles and policies SAM generates
# are only checked on the transformed template.
transformed: tools
	$(TOOLS_VENV)/bin/python .ci/transform_template.py template.yaml $(TRANSFORMED)
	$(TOOLS_VENV)/bin/cfn-lint $(TRANSFORMED)

# The layer's Makefile runs `python3 -m pip`; the tools venv first on PATH guarantees a pip.
sam: export PATH := $(CURDIR)/$(TOOLS_VENV)/bin:$(PATH)
sam: tools transformed
	$(SAM) validate --lint --template template.yaml
	$(SAM) build --template template.yaml

# Every suppression is a checkov skip in template.yaml's Metadata, next to its reason.
scan: transformed $(CHECKOV_VENV)/.installed
	$(CHECKOV_VENV)/bin/checkov --file $(TRANSFORMED) --framework cloudformation \
		--compact --quiet --skip-download

# samconfig.toml has the rest; a later deploy keeps every parameter PARAMS does not name.
deploy: export PATH := $(CURDIR)/$(TOOLS_VENV)/bin:$(PATH)
deploy: sam
	$(SAM) deploy $(if $(PARAMS),--parameter-overrides $(PARAMS))

run: venv
	$(VENV)/bin/python -m local.run $(ARGS)

bench: venv
	$(VENV)/bin/python -m bench.run_benchmark $(ARGS)

# 1,000 portals x 5 lines at 300 ms, then 250 to 2,000 portals: about ten minutes on 2 cores.
FLEET_ARGS ?= --sweep 250,500,1000,2000
fleet: venv
	$(VENV)/bin/python -m bench.fleet $(FLEET_ARGS) $(ARGS)

# 10,000 portals x 5 lines at 300 ms with FanOut=true: the planner and each of the 5 shards in
# a process of its own, one after another.
FANOUT_ARGS ?= --portals 10000 --lines 5 --shard-portals 2000 --steady-runs 1
fanout: venv
	$(VENV)/bin/python -m bench.fleet --fanout $(FANOUT_ARGS) $(ARGS)

# Two small fleets measured as `make fleet` measures one, every quantity fitted to the priced one.
COST_ARGS ?= --fit 50,100
cost: venv
	$(VENV)/bin/python -m bench.fleet $(COST_ARGS) $(ARGS)

# Builds the layer for this machine into .aws-sam/coldstart/ unless `make sam`'s layer can run here.
coldstart: venv
	$(VENV)/bin/python -m bench.coldstart $(ARGS)

clean:
	rm -rf .aws-sam .pytest_cache .ruff_cache .mypy_cache .hypothesis .coverage coverage.xml htmlcov
	find . \( -path ./$(VENV) -o -path ./$(TOOLS_VENV) -o -path ./$(CHECKOV_VENV) -o -path ./.git \) \
		-prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(TOOLS_VENV) $(CHECKOV_VENV)
