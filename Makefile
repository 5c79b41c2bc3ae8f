# One entry point for people and CI. Targets that provision run the Ansible roles in ansible/.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON      ?= python3
VENV        := .venv
VENV_STAMP  := $(VENV)/.installed
BIN         := $(VENV)/bin
# The tool environments (.venv and the fragments' .venv-*) skip pip's bytecode compilation of every
# installed module: Python compiles what is imported, once, when it is first used. `make venv` took
# 33 s instead of 85 s, .venv-ipex 113 s instead of 165 s (2-core AMD EPYC). The platform's own
# environments (the roles) are compiled: their services run as accounts that cannot write there.
PIP_INSTALL := pip install --quiet --no-compile
INVENTORY   ?= ansible/inventories/local
# Extra arguments for ansible-playbook, e.g. ANSIBLE_ARGS="-e @my-vars.yml" (the tests use this
# to provision a private instance under a temporary root).
ANSIBLE_ARGS ?=
export ANSIBLE_CONFIG := $(CURDIR)/ansible/ansible.cfg
# The platform admin's MLflow login (`make up` writes it), for targets that move the champion, which
# only the promotion gate and admins may: `$(AS_ADMIN) $(BIN)/mlops ...`.
AS_ADMIN    := MLOPS_CLIENT_ENV=$${MLOPS_STATE_DIR:-.mlops}/admin.env

.PHONY: help venv up down status demo test test-deps test-python lint

help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_.-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(VENV_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/$(PIP_INSTALL) --upgrade pip
	$(BIN)/$(PIP_INSTALL) -e '.[dev]'
	touch $@

venv: $(VENV_STAMP) ## Create .venv with the project and its dev tools

up: $(VENV_STAMP) ## Provision and start the single-node platform on this machine (Ansible, local inventory)
	$(BIN)/ansible-playbook -i $(INVENTORY) ansible/site.yml $(ANSIBLE_ARGS)

down: $(VENV_STAMP) ## Stop every platform service `make up` started
	$(BIN)/ansible-playbook -i $(INVENTORY) ansible/stop.yml $(ANSIBLE_ARGS)

status: $(VENV_STAMP) ## Show each platform service's health
	$(BIN)/mlops status

demo: demo-loop ## The main job: provision the platform, run the whole loop (make demo-loop), then a smoke run through nginx
	$(BIN)/mlops smoke

test-deps: $(VENV_STAMP) ## System packages the tests need beyond what the roles install
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@# promtool checks and unit-tests the alert rules (tests/monitoring/test_rules.py) before any instance exists.
	@command -v promtool >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	@# The OpenID provider the OIDC login tests start on loopback (tests/oidc: oidc-provider under node, the
	@# versions package-lock.json pins).
	@test -d tests/oidc/node_modules/oidc-provider || npm ci --prefix tests/oidc --no-audit --no-fund --silent

test-python: test-deps ## Unit and integration tests (starts a private platform instance on loopback)
	$(BIN)/pytest -m "not ipex and not infra and not resilience and not monitoring" --durations=30

# Test groups: this file and each fragment append theirs as `<seconds it takes in CI>:<target>`
# (with the environment it builds: ipex-test's includes .venv-ipex).
# Groups are independent (own instance names, ports and environments), so `make test` runs them
# two at a time, longest first (the two slots end close together), each group's output printed
# whole when it ends.
TEST_GROUPS := 1729:test-python
TEST_JOBS ?= 2
test_order = $(shell printf '%s\n' $(TEST_GROUPS) | sort -t: -k1,1nr | cut -d: -f2)

# The environments the groups need (.venv, test-deps, the infra and IPEX tool environments) are their
# prerequisites in the same parallel make, so one is built while the other slot builds .venv.
test: ## Everything CI runs (the test groups, two at a time)
	@echo "make test: running $(test_order) ($(TEST_JOBS) at a time)"
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory -j$(TEST_JOBS) --output-sync=target $(test_order); \
	echo "make test: all groups passed in $$(( $$(date +%s) - start )) s"

lint: $(VENV_STAMP) ## ruff, the import layers (import-linter) and ansible-lint
	$(BIN)/ruff check mlops training pipelines serving mlops_cli tests
	$(BIN)/lint-imports
	cd ansible && ../$(BIN)/ansible-lint --profile production

# Fragments owned by their parts of the tree (a missing one is an error, not a silently smaller build).
include infra/infra.mk
include training/training.mk
include serving/serving.mk
include pipelines/pipelines.mk
include ansible/aws.mk
include ansible/operations.mk
include tests/resilience/resilience.mk
include tests/monitoring/monitoring.mk
