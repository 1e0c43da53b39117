# Lyssna — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.lyssna-installed
MODEL_DIR := .local/models/multilingual-e5-small

.PHONY: help deps system venv infra down model test test-unit bench run up train evaluate lint-deploy clean

help:
	@echo "make run       start everything with a demo feed and watch mentions and alerts (Ctrl-C stops)"
	@echo "make test      install what is missing and run the whole test suite"
	@echo "make up/down   the stack in the background / stop everything the project started"
	@echo "make infra     start local Kafka and Redis only (LYSSNA_KAFKA_BROKERS=3: a three-broker cluster)"
	@echo "make model     convert the bundled encoder into $(MODEL_DIR)"
	@echo "make train     retrain the classifier heads;  make evaluate: scores on the held-out split"
	@echo "make bench     run the benchmarks (figures go in BENCHMARKS.md)"

system:
	@scripts/system-deps.sh

# The venv is reused while pyproject.toml and the lock are unchanged: torch alone is
# several GB, so it is installed once per machine.
$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip==26.3"
	$(BIN)/python -m pip install -q -c requirements.lock -e ".[dev]"
	@touch $@

venv: $(STAMP)

deps: system venv

infra: system
	@scripts/infra.sh up kafka redis

down:
	@-test -x $(BIN)/python && $(BIN)/lyssna stack down 2>/dev/null || true
	@scripts/infra.sh down

model: venv
	@$(BIN)/python -m lyssna.classify.training.model_prep

test: deps model
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: venv
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

train: deps model
	$(BIN)/lyssna train --finetune

evaluate: deps model
	$(BIN)/lyssna evaluate

bench: deps model
	$(BIN)/python -m bench

run: deps model
	$(BIN)/lyssna demo

up: deps model
	$(BIN)/lyssna stack up

clean: down
	rm -rf .local/run .pytest_cache

lint-deploy: venv system
	@scripts/validate-deploy.sh
