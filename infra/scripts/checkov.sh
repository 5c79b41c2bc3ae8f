#!/usr/bin/env bash
# checkov over infra/ in its own venv: zero failed checks, skips only in code with a reason.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
CHECKOV_VENV="${CHECKOV_VENV:-$REPO_DIR/.venv-checkov}"
[[ -x "$CHECKOV_VENV/bin/checkov" ]] || die "checkov not found in $CHECKOV_VENV: run 'make infra-venv'"
export BC_SKIP_MAPPING=TRUE
log "checkov $("$CHECKOV_VENV/bin/checkov" --version) over infra/"
"$CHECKOV_VENV/bin/checkov" --directory "$INFRA_DIR" --framework terraform --quiet --compact \
  --skip-download || die "checkov found failed checks"
