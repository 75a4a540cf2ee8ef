# pbxbridge: `make run` starts the local stack, `make test` runs every check. Both install what they
# need into .venv first (only when the requirement files changed).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SAM_VENV ?= .venv-sam
SAM_VERSION ?= 1.170.0
# The Lambda runtime's Python, which `sam build` needs on PATH (pyenv keeps it out of PATH by default).
PY313 := $(shell command -v pyenv >/dev/null 2>&1 && pyenv prefix 3.13 2>/dev/null)
SAM_PATH := $(if $(PY313),$(PY313)/bin:,)$(PATH)

.PHONY: install run test lint typecheck unit cfn-lint openapi bench sam-build sam-validate smoke ci clean browser

$(STAMP): pyproject.toml requirements-dev.txt layers/pbxbridge/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -e .
	touch $@

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m local.stack

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

cfn-lint: $(STAMP)
	$(BIN)/cfn-lint template.yaml

# The widget's browser tests drive Debian's chromium through Playwright (never `playwright install`:
# no browser build is downloaded); installed here on a fresh machine, skipped when already there.
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

unit: $(STAMP) browser
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck cfn-lint unit

# Regenerate the webhook's OpenAPI document and the call events' schemas from the models, and the template's
# schema registry from those (tests fail when they drift).
openapi: $(STAMP)
	$(BIN)/python -m pbxbridge.openapi > openapi/webhook.json
	$(BIN)/python -c "from pbxbridge.call_events import schemas; [open(f'schemas/events/{n}.json', 'w').write(t) for n, t in schemas().items()]"
	$(BIN)/python -m local.event_schemas

bench: $(STAMP) browser
	$(BIN)/python -m bench

# SAM CLI lives in its own environment: its pins would fight the project's.
$(SAM_VENV)/.installed:
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check aws-sam-cli==$(SAM_VERSION)
	touch $@

sam-build: $(SAM_VENV)/.installed
	PATH="$(SAM_PATH)" SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam build --no-cached

sam-validate: $(SAM_VENV)/.installed
	SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=eu-central-1 $(SAM_VENV)/bin/sam validate --lint
	$(SAM_VENV)/bin/python tests/sam_translate.py

# Import the layer and handler exactly as `sam build` left them.
smoke: $(STAMP) sam-build
	PATH="$(SAM_PATH)" $(BIN)/python -m tests.smoke_built

ci: test sam-validate smoke

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache .hypothesis layers/pbxbridge/build
