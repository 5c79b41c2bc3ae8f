# Serving and registry fragment (included by the top-level Makefile: BIN, VENV_STAMP, SHELL come from there).
# `make up` already runs the serving service (Ansible role `serving`); these targets are for a shell.

MODEL ?= pill-quality

.PHONY: promote rollback serve bench-serve bench-auth serving-test

promote: $(VENV_STAMP) ## Gate the latest version of MODEL against the champion (mlops promote, as the admin)
	$(AS_ADMIN) $(BIN)/mlops promote --model $(MODEL)

rollback: $(VENV_STAMP) ## Make MODEL's previous champion the champion again (mlops rollback, as the admin)
	$(AS_ADMIN) $(BIN)/mlops rollback --model $(MODEL)

serve: $(VENV_STAMP) ## Serve MODEL@champion in the foreground on loopback (mlops serve)
	$(BIN)/mlops serve --model $(MODEL)

bench-serve: $(VENV_STAMP) ## Serving throughput/p99 per variant vs mlflow models serve (writes build/bench-serve.json)
	mkdir -p build
	@# As the admin: the kit-size bench model gets its own champion.
	$(AS_ADMIN) $(BIN)/mlops bench serve --model $(MODEL) --json build/bench-serve.json

bench-auth: $(VENV_STAMP) ## What logins cost: tracking and predictions through nginx vs loopback without auth (writes build/bench-auth.json)
	mkdir -p build
	$(BIN)/mlops bench auth --asgi --json build/bench-auth.json

serving-test: $(VENV_STAMP) ## Promotion and serving integration tests (a private platform instance)
	$(BIN)/pytest tests/pipelines/test_promote.py tests/serving
