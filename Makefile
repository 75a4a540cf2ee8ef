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

.PHONY: install run test lint typecheck unit unit-runtime cfn-lint openapi bench sam-build sam-validate smoke ci clean

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

# The suite needs SAM's own translator (tests/test_least_privilege.py), which lives in $(SAM_VENV).
unit: $(STAMP) $(SAM_VENV)/.installed
	SAM_PYTHON=$(SAM_VENV)/bin/python $(BIN)/pytest $(PYTEST_ARGS)

# The suite again under the Lambda runtime's Python (3.13), in its own venv, when the machine has it.
RUNTIME_VENV ?= .venv-py313
$(RUNTIME_VENV)/.installed: pyproject.toml requirements-dev.txt layers/pbxbridge/requirements.txt
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
unit-runtime: $(RUNTIME_VENV)/.installed $(SAM_VENV)/.installed
	SAM_PYTHON=$(SAM_VENV)/bin/python $(RUNTIME_VENV)/bin/pytest -p no:cacheprovider $(PYTEST_ARGS)
else
unit-runtime:
	@echo "unit-runtime: no Python 3.13 (pyenv prefix 3.13) on this machine, the suite ran under $$($(BIN)/python -V) only"
endif

test: lint typecheck cfn-lint unit unit-runtime

# Regenerate the webhook's OpenAPI document and the call events' schemas from the models (tests fail when they drift).
openapi: $(STAMP)
	$(BIN)/python -m pbxbridge.openapi > openapi/webhook.json
	$(BIN)/python -c "from pbxbridge.call_events import schemas; [open(f'schemas/events/{n}.json', 'w').write(t) for n, t in schemas().items()]"

bench: $(STAMP)
	$(BIN)/python -m bench $(PARTS)

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
	rm -rf $(VENV) $(SAM_VENV) $(RUNTIME_VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache .hypothesis layers/pbxbridge/build
