#!/usr/bin/env bash
# fmt -check, init + validate on every env and module, then `terraform test` in every env.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

log "terraform: ${TF_CMD[*]} ($(tf version | head -1)); plugin dir: ${TF_PLUGIN_DIR:-<registry>}"

log "fmt -check -recursive infra/"
tf -chdir="$INFRA_DIR" fmt -check -recursive -diff || die "terraform fmt found unformatted files (run: terraform fmt -recursive infra)"

mapfile -t roots < <(find "$INFRA_DIR/envs" "$INFRA_DIR/modules" -mindepth 1 -maxdepth 1 -type d | sort)
for dir in "${roots[@]}"; do
  rel="${dir#"$REPO_DIR"/}"
  start=$(date +%s)
  if [[ "$dir" == "$INFRA_DIR"/envs/* ]]; then
    # Environments commit their .terraform.lock.hcl: init must match it, never rewrite it.
    tf_init "$dir" -lockfile=readonly
  else
    tf_init "$dir"
  fi
  tf -chdir="$dir" validate -no-color || die "terraform validate failed in $rel"
  log "validated $rel ($(( $(date +%s) - start )) s)"
done

for dir in "$INFRA_DIR"/envs/*/; do
  dir="${dir%/}"
  rel="${dir#"$REPO_DIR"/}"
  if compgen -G "$dir/tests/*.tftest.hcl" >/dev/null; then
    log "terraform test in $rel"
    timed "terraform test $rel" tf -chdir="$dir" test -no-color || die "terraform test failed in $rel"
  fi
done
