# moesched: the two fresh-machine commands are `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SGLANG_PY := .venvs/sglang/bin/python

.PHONY: setup demo test test-sglang engines engines-sglang model integration clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

## The main job on bundled data: solve a placement, simulate the comparison, print the tables.
demo: setup
	$(PY) -m experiments.demo --out results/demo

## The test suite (pure cores, simulator, router, client against in-process fakes).
test: setup
	$(PY) -m pytest -m 'not integration and not sglang'

## Tests against the real SGLang 0.5.23 classes (light CPU install in .venvs/sglang).
test-sglang: engines-sglang model
	$(SGLANG_PY) -m pytest -m 'sglang and not integration'

engines-sglang:
	bash scripts/setup_sglang.sh

## The tiny random-weight Qwen3-MoE and its tokenizer, built offline (seconds; skipped if current).
model: engines-sglang
	$(SGLANG_PY) scripts/build_tiny_model.py --out models/tiny-qwen3-moe

## Real CPU engines: vanilla vLLM and SGLang venvs plus the tiny Qwen3-MoE model.
engines: engines-sglang model
	bash scripts/setup_vllm.sh

## Tests that start real CPU servers (minutes).
integration: setup engines
	$(PY) -m pytest -m integration --timeout 1800

clean:
	rm -rf $(VENV) .venvs results/demo
