# AWS provisioning (ansible/): the hosts `terraform apply` + `make inventory` describe, and the
# simulated AWS deployment test. Included by the top-level Makefile (BIN, VENV_STAMP, SHELL).
.PHONY: provision test-aws-sim

# `make provision` configures the hosts in the inventory `make inventory` writes (INVENTORY_DEST,
# infra/infra.mk). ENV means one thing everywhere: the Terraform environment (infra/envs/<ENV>).
PROVISION_INVENTORY ?= $(INVENTORY_DEST)

provision: $(VENV_STAMP) ## Configure the AWS hosts from the inventory `make inventory` wrote (PROVISION_INVENTORY)
	@test -f $(PROVISION_INVENTORY)/hosts.yml || { \
	  echo "No inventory in $(PROVISION_INVENTORY)/hosts.yml: run \`make inventory\` after \`terraform apply\`" \
	       "(or give PROVISION_INVENTORY=<dir>)." >&2; exit 2; }
	$(BIN)/ansible-playbook -i $(PROVISION_INVENTORY) ansible/site.yml $(ANSIBLE_ARGS)

# Needs moto[server]: .venv-infra (infra/infra.mk's INFRA_STAMP, `make infra-venv`) has it.
# The simulated hosts are network namespaces on a bridge (iproute2), reaching out through a NAT rule
# (nftables); the load balancer in front of them is Debian's nginx.
test-aws-sim: test-deps $(INFRA_STAMP) ## Provision the scaled AWS layout on simulated hosts (network namespaces) against emulators (RDS, Secrets Manager, S3)
	@command -v nft >/dev/null && command -v ss >/dev/null && test -x /usr/sbin/nginx || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iproute2 nftables nginx >/dev/null; }
	@start=$$(date +%s); \
	MLOPS_MOTO_SERVER=$${MLOPS_MOTO_SERVER:-$(CURDIR)/.venv-infra/bin/moto_server} \
	  $(BIN)/pytest -m aws_sim tests/aws_sim -q; \
	echo "[aws-sim] test-aws-sim passed in $$(( $$(date +%s) - start )) s"

TEST_GROUPS += 623:test-aws-sim
