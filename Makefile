# mtx: the usual tasks. `make install test` on a fresh machine; `make train evaluate` for the default job.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HOME ?= $(CURDIR)/.cache/hf

.PHONY: install test lint format data train evaluate bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'

test:
	$(BIN)/python -m pytest -q

lint:
	$(BIN)/ruff check mtx tests benchmarks
	$(BIN)/ruff format --check mtx tests benchmarks

format:
	$(BIN)/ruff format mtx tests benchmarks
	$(BIN)/ruff check --fix mtx tests benchmarks

# Multi30k from the Hugging Face hub into data/multi30k (only needed where ../shared/data/multi30k is absent).
data:
	$(BIN)/mtx fetch --out data/multi30k

train:
	$(BIN)/mtx train

evaluate:
	$(BIN)/mtx evaluate

bench:
	$(BIN)/mtx bench decode

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache *.egg-info
