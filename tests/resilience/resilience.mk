# Resilience group (included by the top-level Makefile): faults under load on a private instance.
.PHONY: test-resilience test-monitoring-resilience resilience-report

# Its instance: ports and name moved by 200 from the main test run's (which runs beside it).
test-resilience: test-deps ## Kill -9 each platform process under load: recovery, failures, lost writes (test-artifacts/resilience.json)
	@start=$$(date +%s); \
	MLOPS_TEST_PORT_OFFSET=$$(( $${MLOPS_TEST_PORT_OFFSET:-0} + 200 )) $(BIN)/pytest tests/resilience -m resilience -q; \
	echo "[resilience] test-resilience passed in $$(( $$(date +%s) - start )) s"

RESILIENCE_JSON ?= test-artifacts/resilience.json

resilience-report: $(VENV_STAMP) ## README's resilience table from the last `make test-resilience` (keeps its JSON in tests/resilience)
	cp $(RESILIENCE_JSON) tests/resilience/last-run.json
	$(BIN)/python tests/resilience/report.py tests/resilience/last-run.json README.md

# In `make test`, the monitoring tests and these share one instance (one `make up` less on two shared
# cores; ports moved by 400): the monitoring tests first (they need no champion), then the faults.
test-monitoring-resilience: test-deps ## The monitoring tests, then the resilience tests, on one private instance
	@start=$$(date +%s); \
	MLOPS_TEST_PORT_OFFSET=$$(( $${MLOPS_TEST_PORT_OFFSET:-0} + 400 )) \
		$(BIN)/pytest tests/monitoring tests/resilience -m "monitoring or resilience" -q; \
	echo "[monitoring-resilience] test-monitoring-resilience passed in $$(( $$(date +%s) - start )) s"

TEST_GROUPS += 732:test-monitoring-resilience
