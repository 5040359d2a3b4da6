# mtx: the usual tasks. `make install test` on a fresh machine; `make train evaluate` for the default job.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HOME ?= $(CURDIR)/.cache/hf

.PHONY: install test lint format data train evaluate bench gpu-prep clean mutate

STAMP := $(VENV)/.installed

# The CPU build of torch 2.13.0 first, so that the project's `torch>=2.4` pulls no CUDA build.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -rs

# ruff (style, imports at the top), the layer contracts of pyproject.toml (import-linter) and no import cycle,
# package __init__ files included (scripts/import_cycles.py)
lint: $(STAMP)
	$(BIN)/ruff check mtx tests
	$(BIN)/ruff format --check mtx tests
	$(BIN)/lint-imports
	$(BIN)/python scripts/import_cycles.py mtx

# Mutation testing of one module against the tests that cover it (cosmic-ray; not in CI, slow): docs/testing.md
MODULE ?= mtx/serve/access.py
TESTS ?= tests
mutate: $(STAMP)
	$(BIN)/python scripts/mutate.py $(if $(ONLY),--only $(ONLY)) $(if $(SURVIVORS),--survivors) $(MODULE) "$(TESTS)"

format:
	$(BIN)/ruff format mtx tests
	$(BIN)/ruff check --fix mtx tests

# Multi30k from the Hugging Face hub into data/multi30k (only needed where ../shared/data/multi30k is absent).
data: $(STAMP)
	$(BIN)/mtx fetch --out data/multi30k

# then the confidence's calibration on val (docs/quality.md)
train: $(STAMP)
	$(BIN)/mtx train
	$(BIN)/mtx calibrate

evaluate: $(STAMP)
	$(BIN)/mtx evaluate

bench: $(STAMP)
	$(BIN)/mtx bench decode

# What a device session carries for scripts/gpu_check.sh (both folders git-ignored): the corpus and the
# tutorial-style reference in .gpu/, wheels of `datasets` and the needs the device lacks in .whl/.
SHARED ?= ../shared
WHEELS := datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 fsspec==2026.9.0
gpu-prep: $(STAMP)
	mkdir -p .gpu/multi30k .whl
	cp $(SHARED)/data/multi30k/*.de $(SHARED)/data/multi30k/*.en .gpu/multi30k/
	cp $(SHARED)/bench/ref_nn_transformer.py .gpu/
	$(BIN)/pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux2014_x86_64 -d .whl $(WHEELS)

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache *.egg-info
