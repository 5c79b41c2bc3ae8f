#!/usr/bin/env bash
# make inventory: `terraform output -json` in infra/envs/<env> -> mlops inventory -> Ansible inventory.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ENV_NAME="${1:-prod}"
DEST="${2:-ansible/inventories/aws}"
ENV_DIR="$INFRA_DIR/envs/$ENV_NAME"
[[ -d "$ENV_DIR" ]] || die "no environment infra/envs/$ENV_NAME"
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
tf -chdir="$ENV_DIR" output -json >"$tmp" || die "terraform output failed in infra/envs/$ENV_NAME (applied yet?)"
[[ "$(tr -d '[:space:]' <"$tmp")" != "{}" ]] || die "infra/envs/$ENV_NAME has no outputs: run terraform apply first"
"$REPO_DIR/.venv/bin/mlops" inventory --tf-output "$tmp" --dest "$DEST"
