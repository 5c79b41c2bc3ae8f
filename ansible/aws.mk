# AWS provisioning (ansible/): the hosts `terraform apply` + `make inventory` describe, and the
# simulated AWS deployment test. Included by the top-level Makefile (BIN, VENV_STAMP, SHELL).
.PHONY: provision test-aws-sim

# `make provision ENV=aws` configures the hosts in ansible/inventories/aws (written by
# `make inventory`, whose ENV names the Terraform environment: its default, prod, maps here too).
PROVISION_INVENTORY ?= $(if $(filter prod,$(ENV)),ansible/inventories/aws,ansible/inventories/$(ENV))

provision: $(VENV_STAMP) ## Configure the AWS hosts from the generated inventory (make provision ENV=aws)
	@test -f $(PROVISION_INVENTORY)/hosts.yml || { \
	  echo "No inventory in $(PROVISION_INVENTORY)/hosts.yml: run \`make inventory\` after \`terraform apply\`" \
	       "(or give ENV=<dir under ansible/inventories> / PROVISION_INVENTORY=<dir>)." >&2; exit 2; }
	$(BIN)/ansible-playbook -i $(PROVISION_INVENTORY) ansible/site.yml $(ANSIBLE_ARGS)

# Needs moto[server]: .venv-infra (infra/infra.mk's INFRA_STAMP, `make infra-venv`) has it.
test-aws-sim: $(VENV_STAMP) $(INFRA_STAMP) ## Provision an AWS-shaped inventory against loopback emulators (RDS, Secrets Manager, S3)
	@start=$$(date +%s); \
	MLOPS_MOTO_SERVER=$${MLOPS_MOTO_SERVER:-$(CURDIR)/.venv-infra/bin/moto_server} \
	  $(BIN)/pytest -m aws_sim tests/aws_sim -q; \
	echo "[aws-sim] test-aws-sim passed in $$(( $$(date +%s) - start )) s"

TEST_GROUPS += test-aws-sim
