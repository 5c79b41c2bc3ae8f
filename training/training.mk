# Training fragment (included by the top-level Makefile: BIN, PYTHON, PIP_INSTALL, VENV_STAMP, SHELL come from there).
# The IPEX environment: the project with its `ipex` extra (torch 2.8 + IPEX 2.8, pinned in pyproject.toml).

IPEX_VENV  := .venv-ipex
IPEX_STAMP := $(IPEX_VENV)/.installed

.PHONY: ipex-venv ipex-test train bench

# After .venv (order only): two editable installs of this checkout at once would write the same
# build metadata in it (`make test` builds the environments in parallel).
$(IPEX_STAMP): pyproject.toml training/training.mk | $(VENV_STAMP)
	$(PYTHON) -m venv $(IPEX_VENV)
	$(IPEX_VENV)/bin/$(PIP_INSTALL) --upgrade pip
	$(IPEX_VENV)/bin/$(PIP_INSTALL) -e '.[ipex,test]'
	touch $@

ipex-venv: $(IPEX_STAMP) ## Create .venv-ipex (torch 2.8 + IPEX 2.8; about 2 min and 7.4 GB)

ipex-test: $(IPEX_STAMP) $(VENV_STAMP) ## IPEX tests in .venv-ipex (portability checked with .venv)
	$(IPEX_VENV)/bin/python -m pytest -m ipex tests/training

TEST_GROUPS += 170:ipex-test

train: $(VENV_STAMP) ## Train the demo model and log it to the platform (mlops train)
	$(BIN)/mlops train

bench: $(VENV_STAMP) ## Benchmark training and inference variants side by side (writes build/bench-*.json)
	mkdir -p build
	$(BIN)/mlops bench train --json build/bench-train.json
	$(BIN)/mlops bench infer --json build/bench-infer.json
