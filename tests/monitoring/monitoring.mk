# Monitoring group (included by the top-level Makefile): Prometheus, Alertmanager and the alerts end to
# end on a private instance with short periods (scrape and rule evaluation every 5 s, the retrain tick
# every minute, short `for:`), so alerts fire in minutes instead of hours.
.PHONY: test-monitoring

# Its own instance: ports and name moved by 300 from the main test run's (which runs beside it).
test-monitoring: test-deps ## Scrape targets up, alerts delivered to a webhook, the operations console in a browser
	@start=$$(date +%s); \
	MLOPS_TEST_PORT_OFFSET=$$(( $${MLOPS_TEST_PORT_OFFSET:-0} + 300 )) $(BIN)/pytest tests/monitoring -m monitoring -q; \
	echo "[monitoring] test-monitoring passed in $$(( $$(date +%s) - start )) s"

# `make test` runs these in test-monitoring-resilience (tests/resilience/resilience.mk).
