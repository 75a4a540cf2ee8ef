# pbxbridge: `make run` starts the local stack, `make test` runs every check. Both install what they
# need into .venv first (only when the requirement files changed).
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SAM_VENV ?= .venv-sam
SAM_VERSION ?= 1.170.0
# The Lambda runtime's Python, which `sam build` needs on PATH (pyenv keeps it out of PATH by default).
PY313 := $(shell command -v pyenv >/dev/null 2>&1 && pyenv prefix 3.13 2>/dev/null)
SAM_PATH := $(if $(PY313),$(PY313)/bin:,)$(PATH)

.PHONY: help install run test lint typecheck unit unit-runtime cfn-lint openapi bench sam-build sam-validate smoke ci clean browser screenshots docs docs-build docs-reference

# `make` alone: what each target does (the `## ` comment on its line).
help:
	@echo "pbxbridge: make TARGET"
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-zA-Z_-]+):.*## (.*)$$/  \1\t\2/' | expand -t 18
	@echo "Variables: FRESH=1 (make run: start with no saved data), LOG_FORMAT=json (make run: the functions' JSON logs),"
	@echo "  PARAMS=\"Name=Value ...\" (make run: any template.yaml parameter, checked as a deploy checks it, e.g."
	@echo "    PARAMS=\"ScenarioMissedCallLeads=true CrmEventTypes=LeadCreated,CallMissed\"),"
	@echo "  CRM_RECEIVER=1 or CRM_URL=... (make run: forward call events to a local receiver or a CRM),"
	@echo "  PORT, DYNAMODB_PORT, PBX_PORT, WIDGET_SOCKET_PORT, CRM_RECEIVER_PORT, CRM_TOKEN (make run), PYTEST_ARGS (make unit),"
	@echo "  DOCS_PORT (make docs, 8010),"
	@echo "  PYTHON (the venv's interpreter)"
	@echo "  PBX_API=v1 or auto (make run: the functions reach the PBX simulator over crmapi/v1, or probe its bare URL)"

$(STAMP): pyproject.toml requirements-dev.txt layers/pbxbridge/requirements.txt
	@echo "Installing the development environment into $(VENV) (first time about 1-2 minutes; later only when a requirements file changes)..."
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -e .
	touch $@

install: $(STAMP) ## create .venv with every dependency (run and test do it when needed)

run: $(STAMP) ## the local stack: webhook, commands, PBX simulator, DynamoDB, S3, the widget (data kept; FRESH=1 starts empty)
	FRESH=$(FRESH) $(BIN)/python -m local.stack

lint: $(STAMP) ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## mypy --strict
	$(BIN)/mypy

cfn-lint: $(STAMP) ## lint template.yaml
	$(BIN)/cfn-lint template.yaml

# The widget's browser tests drive Debian's chromium through Playwright (never `playwright install`:
# no browser build is downloaded); installed here on a fresh machine, skipped when already there.
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# The suite needs SAM's own translator (tests/test_least_privilege.py), which lives in $(SAM_VENV).
unit: $(STAMP) browser $(SAM_VENV)/.installed ## pytest only (PYTEST_ARGS="-k name -x")
	SAM_PYTHON=$(SAM_VENV)/bin/python $(BIN)/pytest $(PYTEST_ARGS)

# The suite again under the Lambda runtime's Python (3.13), in its own venv, when the machine has it.
RUNTIME_VENV ?= .venv-py313
$(RUNTIME_VENV)/.installed: pyproject.toml requirements-dev.txt layers/pbxbridge/requirements.txt
	@echo "Installing the test environment for Python 3.13 into $(RUNTIME_VENV) (first time about 1-2 minutes)..."
	$(PY313)/bin/python3.13 -m venv $(RUNTIME_VENV)
	$(RUNTIME_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(RUNTIME_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -e .
	touch $@

# (Not when $(PYTHON) is 3.13 already: `unit` ran the suite under it.)
PYTHON_IS_313 := $(shell $(PYTHON) -c 'import sys; print(int(sys.version_info[:2] == (3, 13)))' 2>/dev/null)
ifeq ($(PYTHON_IS_313),1)
unit-runtime:
	@echo "unit-runtime: $(PYTHON) is the runtime's Python 3.13 already"
else ifneq ($(PY313),)
unit-runtime: $(RUNTIME_VENV)/.installed browser $(SAM_VENV)/.installed ## pytest again under Python 3.13 (the Lambda runtime's)
	SAM_PYTHON=$(SAM_VENV)/bin/python $(RUNTIME_VENV)/bin/pytest -p no:cacheprovider $(PYTEST_ARGS)
else
unit-runtime:
	@echo "unit-runtime: no Python 3.13 (pyenv prefix 3.13) on this machine, the suite ran under $$($(BIN)/python -V) only"
endif

test: lint typecheck cfn-lint docs-build unit unit-runtime ## every check: lint, typecheck, cfn-lint, the docs site, pytest (and under Python 3.13)

# Regenerate the webhook's OpenAPI document and the call events' schemas from the models, and the template's
# schema registry from those (tests fail when they drift).
screenshots: $(STAMP) browser ## refresh the README's and the docs' widget screenshots (docs/screenshots) from the browser tests
	SCREENSHOTS_DIR=docs/screenshots $(BIN)/pytest -q tests/test_widget_browser.py tests/test_team_browser.py

openapi: $(STAMP) ## regenerate openapi/webhook.json, the event schemas, the template's schema registry and docs/reference
	$(if $(PY313),$(MAKE) $(RUNTIME_VENV)/.installed && $(RUNTIME_VENV)/bin/python,$(BIN)/python) -m pbxbridge.openapi > openapi/webhook.json
	$(BIN)/python -c "from pbxbridge.call_events import schemas; [open(f'schemas/events/{n}.json', 'w').write(t) for n, t in schemas().items()]"
	$(BIN)/python -m local.event_schemas
	$(MAKE) docs-reference

# The docs site (mkdocs.yml, docs/): served on loopback only; built with --strict, so a broken link or
# anchor, or a page missing from the nav, fails `make test`.
DOCS_PORT ?= 8010
export NO_MKDOCS_2_WARNING := 1
docs: $(STAMP) ## serve the documentation site on 127.0.0.1, port DOCS_PORT (8010), reloading on edits
	$(BIN)/mkdocs serve --dev-addr 127.0.0.1:$(DOCS_PORT)

docs-build: $(STAMP) ## build the documentation site into site/ with --strict (part of make test)
	$(BIN)/mkdocs build --strict

docs-reference: $(STAMP) ## regenerate docs/reference/ (commands from their models, events from schemas/events)
	$(BIN)/python -m local.docs_reference

bench: $(STAMP) browser ## benchmarks against a floor measured in the same run (PARTS="cold faults" runs only those)
	$(BIN)/python -m bench $(PARTS)

# SAM CLI lives in its own environment: its pins would fight the project's.
$(SAM_VENV)/.installed:
	@echo "Installing the SAM CLI $(SAM_VERSION) into $(SAM_VENV) (first time about 1-2 minutes)..."
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check aws-sam-cli==$(SAM_VERSION)
	touch $@

sam-build: $(SAM_VENV)/.installed ## sam build (installs the SAM CLI into .venv-sam first)
	PATH="$(SAM_PATH)" SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam build --no-cached

sam-validate: $(SAM_VENV)/.installed ## sam validate --lint and the SAM transform
	SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=eu-central-1 $(SAM_VENV)/bin/sam validate --lint
	$(SAM_VENV)/bin/python tests/sam_translate.py

# Import the layer and handler exactly as `sam build` left them.
smoke: $(STAMP) sam-build ## import the built layer and handlers as Lambda would
	PATH="$(SAM_PATH)" $(BIN)/python -m tests.smoke_built

ci: test sam-validate smoke ## what CI runs

clean: ## remove the environments and build output (not the local data)
	rm -rf $(VENV) $(SAM_VENV) $(RUNTIME_VENV) site .aws-sam .pytest_cache .mypy_cache .ruff_cache .hypothesis layers/pbxbridge/build
