# Day-2 operations of the platform (included by the top Makefile). Each runs a playbook in
# ansible/ against $(INVENTORY), with $(ANSIBLE_ARGS) like `make up`.
.PHONY: backup backup-list restore upgrade gc test-operations test-upgrade

BACKUP ?= latest
MLFLOW_VERSION ?=

backup: $(VENV_STAMP) ## Back up the self-hosted PostgreSQL databases to the artifact store now (keeps the newest backup_keep)
	$(BIN)/ansible-playbook -i $(INVENTORY) ansible/backup.yml $(ANSIBLE_ARGS)

backup-list: $(VENV_STAMP) ## List the complete backups in the artifact store, newest first
	$(BIN)/ansible-playbook -i $(INVENTORY) ansible/backup.yml $(ANSIBLE_ARGS) -e backup_action=list

restore: $(VENV_STAMP) ## Restore the databases from a backup: BACKUP=<name> (default: latest)
	$(BIN)/ansible-playbook -i $(INVENTORY) ansible/restore.yml $(ANSIBLE_ARGS) -e backup_restore_name=$(BACKUP)

gc: $(VENV_STAMP) ## Run the scheduled `mlflow gc` now (deleted runs and their artifacts)
	$(BIN)/ansible-playbook -i $(INVENTORY) ansible/gc.yml $(ANSIBLE_ARGS)

# The pin is raised in the repository only after the host upgraded cleanly, so a later `make up`
# installs the new version rather than going back to the old one. pyproject.toml is the one place
# it is pinned: the mlflow role, .venv and the other environments all read it from there.
upgrade: $(VENV_STAMP) ## Upgrade MLflow: MLFLOW_VERSION=x.y.z (backup, mlflow db upgrade, restart in order, raise the pin)
	@[[ "$(MLFLOW_VERSION)" =~ ^[0-9]+\.[0-9]+\.[0-9]+$$ ]] || { echo "make upgrade needs MLFLOW_VERSION=x.y.z (got '$(MLFLOW_VERSION)')" >&2; exit 2; }
	$(BIN)/ansible-playbook -i $(INVENTORY) ansible/upgrade.yml $(ANSIBLE_ARGS) -e mlflow_version=$(MLFLOW_VERSION)
	@# Only when it differs: rewriting pyproject.toml (even unchanged) makes every make target reinstall .venv.
	grep -q '"mlflow==$(MLFLOW_VERSION)"' pyproject.toml \
	  || sed -i -E 's/"mlflow==[0-9.]+"/"mlflow==$(MLFLOW_VERSION)"/' pyproject.toml
	@echo "MLflow $(MLFLOW_VERSION) is running; the pin in pyproject.toml says so: commit it."

test-operations: test-deps ## Day-2 operations tests alone (backup/restore, gc, timers, log rotation; upgrade: make test-upgrade)
	$(BIN)/pytest tests/operations

# The upgrade test provisions a second instance at the previous MLflow minor (several minutes), so
# it runs here rather than in the main pytest run (where it skips, saying so).
test-upgrade: test-deps ## Upgrade test: an instance at the previous MLflow minor, with data, through `make upgrade`
	@start=$$(date +%s); \
	MLOPS_TEST_UPGRADE=1 $(BIN)/pytest tests/operations/test_upgrade.py -q; \
	echo "[operations] test-upgrade passed in $$(( $$(date +%s) - start )) s"

TEST_GROUPS += 359:test-upgrade
