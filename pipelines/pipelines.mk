# Drift & retraining fragment (included by the top-level Makefile: BIN, PYTHON, PIP_INSTALL, VENV_STAMP, SHELL come from there).
# Evidently is NOT a runtime dependency: the benchmark runs it in its own environment, .venv-evidently
# (Evidently 0.7 needs pandas<3, the project uses pandas 3), as a subprocess timed from outside.

EVIDENTLY_VENV  := .venv-evidently
EVIDENTLY_STAMP := $(EVIDENTLY_VENV)/.installed
EVIDENTLY_PINS  := evidently==0.7.23 "pandas<3" "numpy>=2,<3"

.PHONY: evidently-venv bench-drift

$(EVIDENTLY_STAMP): pipelines/pipelines.mk
	$(PYTHON) -m venv $(EVIDENTLY_VENV)
	$(EVIDENTLY_VENV)/bin/$(PIP_INSTALL) --upgrade pip
	$(EVIDENTLY_VENV)/bin/$(PIP_INSTALL) $(EVIDENTLY_PINS)
	touch $@

evidently-venv: $(EVIDENTLY_STAMP) ## Create .venv-evidently (Evidently 0.7, pandas<3) for the drift benchmark

bench-drift: $(VENV_STAMP) $(EVIDENTLY_STAMP) ## Drift benchmark: our KS+PSI vs Evidently's DataDriftPreset on 1M x 20 (build/bench-drift.json)
	mkdir -p build
	$(BIN)/mlops bench drift --evidently-python $(EVIDENTLY_VENV)/bin/python --json build/bench-drift.json

.PHONY: demo-loop
demo-loop: up ## The drift loop on the running platform: train, promote, serve, drift, retrain, new champion
	@# As the platform's admin: the loop promotes, which only the gate and admins may.
	$(AS_ADMIN) $(BIN)/mlops demo
