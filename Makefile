# The two commands a newcomer needs: `make demo` and `make test`. Both build .venv from nothing.
PYTHON    ?= python3
VENV      := .venv
BIN       := $(VENV)/bin
SAM_VENV  := .venv-sam
SAM       := $(SAM_VENV)/bin/sam
STAMP     := $(VENV)/.installed
SAM_STAMP := $(SAM_VENV)/.installed
LITELLM_VENV  := .venv-litellm
LITELLM_STAMP := $(LITELLM_VENV)/.installed
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0

.PHONY: help venv demo test lint typecheck unit litellm template bench clean

help:
	@echo "make demo   run the pipeline offline over samplefiles/ (moto + stand-in gateway)"
	@echo "make test   lint, type-check, run every test, validate and build the SAM template"
	@echo "make bench  run the benchmarks in bench/"

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# The LiteLLM proxy that tests/litellm runs as a user would (a real gateway in front of a fake Gemini API)
# lives in its own venv: its many pins stay out of the project's packages. Pinned: the test holds its
# behaviour (how it maps the request dialects, relays errors and streams).
$(LITELLM_STAMP):
	$(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(LITELLM_VENV)/bin/python -m pip install -q 'litellm[proxy]==1.108.7'
	touch $@

# aws-sam-cli lives in its own venv: it pins its own boto3 and must stay out of the runtime.
$(SAM_STAMP):
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install -q --upgrade pip
	$(SAM_VENV)/bin/python -m pip install -q aws-sam-cli
	touch $@

# Always the stand-in, whatever gateway the environment names: the demo never makes a paid call.
# Then screenshots of its gallery at desktop and phone width, if Chromium is installed.
DEMO_OUT ?= out/demo
demo: $(STAMP)
	env -u NANOBANANA_API_BASE_URL -u NANOBANANA_API_KEY \
		$(BIN)/nanobanana local samplefiles/*.txt samplefiles/*.jsonl samplefiles/*.json samplefiles/*.csv \
		--sqs samplefiles/sqs/messages.jsonl --inputs samplefiles/inputs --out $(DEMO_OUT)
	@$(BIN)/python -m nanobanana_cli.browser $(DEMO_OUT)/index.html

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy functions/ingest/app.py
	$(BIN)/mypy functions/generate/app.py

unit: $(STAMP) $(LITELLM_STAMP)
	$(BIN)/pytest -q

litellm: $(STAMP) $(LITELLM_STAMP)
	$(BIN)/pytest -q tests/litellm

template: $(STAMP) $(SAM_STAMP)
	$(BIN)/cfn-lint template.yaml
	$(SAM) validate --lint --template template.yaml
	$(SAM) build --template template.yaml --build-dir .aws-sam/build

test: lint typecheck unit template

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(SAM_VENV) $(LITELLM_VENV) .aws-sam out .pytest_cache .mypy_cache .ruff_cache
