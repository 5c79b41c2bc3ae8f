# Training fragment (included by the top-level Makefile: BIN, PYTHON, VENV_STAMP, SHELL come from there).
# The IPEX environment pins torch 2.8 + intel-extension-for-pytorch 2.8 (IPEX's last release) in .venv-ipex.

IPEX_VENV  := .venv-ipex
IPEX_STAMP := $(IPEX_VENV)/.installed
IPEX_PINS  := torch==2.8.0 intel-extension-for-pytorch==2.8.0
# The project's runtime deps except torch/torchao (torchao 0.18 needs torch 2.13), plus pytest.
IPEX_DEPS  := mlflow==3.17.2 "numpy>=2,<3" "scipy>=1.14,<2" "pillow>=11,<13" matplotlib==3.11.2 \
              typer==0.29.2 pydantic-settings==2.16.3 stamina==26.1.0 tqdm==4.70.1 "boto3>=1.40,<2" pytest==9.2.0

.PHONY: ipex-venv ipex-test train bench

$(IPEX_STAMP): pyproject.toml training/training.mk
	$(PYTHON) -m venv $(IPEX_VENV)
	$(IPEX_VENV)/bin/pip install --quiet --upgrade pip
	$(IPEX_VENV)/bin/pip install --quiet $(IPEX_PINS) $(IPEX_DEPS)
	$(IPEX_VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

ipex-venv: $(IPEX_STAMP) ## Create .venv-ipex (torch 2.8 + IPEX 2.8; about 3.5 min and 6.8 GB)

ipex-test: $(IPEX_STAMP) $(VENV_STAMP) ## IPEX tests in .venv-ipex (portability checked with .venv)
	$(IPEX_VENV)/bin/python -m pytest -m ipex tests/training

TEST_GROUPS += ipex-test

train: $(VENV_STAMP) ## Train the demo model and log it to the platform (mlops train)
	$(BIN)/mlops train

bench: $(VENV_STAMP) ## Benchmark training and inference variants side by side (writes build/bench-*.json)
	mkdir -p build
	$(BIN)/mlops bench train --json build/bench-train.json
	$(BIN)/mlops bench infer --json build/bench-infer.json
