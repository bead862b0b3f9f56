# Every target installs what it needs itself; a fresh machine needs only `make <target>`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PY313 ?= $(firstword $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.13*/bin/python3.13) $(shell command -v python3.13))
VENV := .venv
PY := $(VENV)/bin/python
SAM_VENV := .tools/sam
CHECKOV_VENV := .tools/checkov
SAM := SAM_CLI_TELEMETRY=0 PATH="$(dir $(PY313)):$$PATH" $(SAM_VENV)/bin/sam
PIP_QUIET := --quiet --disable-pip-version-check
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help setup tools chromium lint unit integration e2e browser validate build test dev demo bench deploy clean

help:
	@echo "make dev       run the whole pipeline locally (no Docker, no AWS account)"
	@echo "make demo      the whole flow headless: sign in, upload, process, serve; exit 0 on success"
	@echo "make test      lint, unit, integration, e2e, browser, template checks, sam build"
	@echo "make build     sam build (python3.13, arm64)"
	@echo "make deploy    sam deploy (guided the first time)"
	@echo "make bench     processing benchmark against sharp and pyvips"

$(PY313):
	@test -n "$(PY313)" || { echo "Python 3.13 not found: install it (pyenv install 3.13) or set PY313=/path/to/python3.13"; exit 1; }

$(VENV)/.stamp: requirements/dev.txt pyproject.toml
	@test -n "$(PY313)" || { echo "Python 3.13 not found: install it (pyenv install 3.13) or set PY313=/path/to/python3.13"; exit 1; }
	$(PY313) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_QUIET) -r requirements/dev.txt
	$(VENV)/bin/pip install $(PIP_QUIET) --no-deps -e .
	touch $@

setup: $(VENV)/.stamp

$(SAM_VENV)/.stamp: requirements/sam.txt
	$(PY313) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install $(PIP_QUIET) -r requirements/sam.txt
	touch $@

$(CHECKOV_VENV)/.stamp: requirements/checkov.txt
	$(PY313) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install $(PIP_QUIET) -r requirements/checkov.txt
	touch $@

tools: $(SAM_VENV)/.stamp $(CHECKOV_VENV)/.stamp

chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

unit: setup
	$(PY) -m pytest tests/unit -q

integration: setup
	$(PY) -m pytest tests/integration -q

e2e: setup chromium
	$(PY) -m pytest tests/e2e -q

validate: tools
	$(SAM) validate --lint
	$(SAM_VENV)/bin/cfn-lint template.yaml
	$(CHECKOV_VENV)/bin/checkov -f template.yaml --framework cloudformation --quiet --compact --skip-download

build: $(SAM_VENV)/.stamp
	$(SAM) build
	$(PY) -m pytest tests/build -q

test: lint unit integration e2e validate build demo

dev: setup
	$(PY) -m imgpipe_local dev

demo: setup
	$(PY) -m imgpipe_local demo

bench: setup
	$(PY) bench/run.py

deploy: $(SAM_VENV)/.stamp build
	@if [ -f .aws-sam/deployed ]; then $(SAM) deploy; else $(SAM) deploy --guided && touch .aws-sam/deployed; fi

clean:
	rm -rf $(VENV) .tools .aws-sam .pytest_cache .ruff_cache
