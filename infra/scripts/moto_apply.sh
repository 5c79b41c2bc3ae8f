#!/usr/bin/env bash
# Apply infra/envs/<env> against a local moto server, check that a second plan is empty (but
# for the known moto gaps, moto_drift.py), write the inventory from the live outputs, destroy,
# stop moto: once per layout (topology = single and scaled), each with a moto server of its own,
# both at once, so the run takes about as long as one layout (RDS polling dominates).
#
# Usage: moto_apply.sh [--env prod] [--layout single|scaled|both] [--record FILE]
#   FILE receives `terraform output -json` (of the single layout; FILE.scaled.json of the scaled)
#
# Real AWS is never contacted: the endpoints and skip_* flags exist only in an override file
# generated into a temporary copy of infra/, and the environment carries fake credentials.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ENV_NAME=prod
LAYOUTS=(single scaled)
RECORD=""
STEP_TIMEOUT="${MOTO_STEP_TIMEOUT:-300}"   # seconds per terraform step; the whole loop is bounded
while [[ $# -gt 0 ]]; do
  case "$1" in
    --env) ENV_NAME="$2"; shift 2 ;;
    --layout)
      case "$2" in
        single|scaled) LAYOUTS=("$2") ;;
        both) LAYOUTS=(single scaled) ;;
        *) die "--layout takes single, scaled or both" ;;
      esac
      shift 2 ;;
    --record) RECORD="$(realpath -m "$2")"; shift 2 ;;
    *) die "unknown argument: $1" ;;
  esac
done

MOTO_SERVER="$INFRA_VENV/bin/moto_server"
[[ -x "$MOTO_SERVER" ]] || die "moto_server not found in $INFRA_VENV: run 'make infra-venv'"
[[ -d "$INFRA_DIR/envs/$ENV_NAME" ]] || die "no environment infra/envs/$ENV_NAME"

# Fake credentials only; no profile, no shared config, no instance metadata.
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_SECURITY_TOKEN AWS_DEFAULT_PROFILE
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true
REGION=eu-west-1
export AWS_DEFAULT_REGION=$REGION AWS_REGION=$REGION

WORK="$(mktemp -d "${TMPDIR:-/tmp}/infra-moto.XXXXXX")"
declare -A MOTO_PIDS=() ENDPOINTS=()
cleanup() {
  local layout pid
  for layout in "${!MOTO_PIDS[@]}"; do
    pid="${MOTO_PIDS[$layout]}"
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      log "[$layout] moto stopped"
    fi
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

# One moto server per layout: moto 5.2 gives every RDS instance the same DbiResourceId, and the
# provider reads an instance back by that id, so two databases in one server break each other.
# start_moto LAYOUT: sets ENDPOINTS[LAYOUT] and MOTO_PIDS[LAYOUT]; log in $WORK/moto-LAYOUT.log.
start_moto() {
  local layout="$1" port endpoint
  port="$("$INFRA_VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  endpoint="http://127.0.0.1:$port"
  log "[$layout] starting moto on $endpoint (log: $WORK/moto-$layout.log)"
  # MOTO_ACM_VALIDATION_WAIT: moto issues a DNS-validated certificate after this many seconds (60
  # by default), which aws_acm_certificate_validation waits for.
  MOTO_ACM_VALIDATION_WAIT=1 MOTO_IAM_LOAD_MANAGED_POLICIES=true \
    "$MOTO_SERVER" -H 127.0.0.1 -p "$port" >"$WORK/moto-$layout.log" 2>&1 &
  MOTO_PIDS[$layout]=$!
  ENDPOINTS[$layout]="$endpoint"
}
wait_moto() { # wait_moto LAYOUT
  local layout="$1" endpoint="${ENDPOINTS[$1]}"
  for _ in $(seq 1 60); do
    if "$INFRA_VENV/bin/python" -c "import urllib.request,sys; urllib.request.urlopen('$endpoint/moto-api/', timeout=1)" 2>/dev/null; then
      return 0
    fi
    kill -0 "${MOTO_PIDS[$layout]}" 2>/dev/null || { cat "$WORK/moto-$layout.log" >&2; die "[$layout] moto exited"; }
    sleep 0.5
  done
  "$INFRA_VENV/bin/python" -c "import urllib.request; urllib.request.urlopen('$endpoint/moto-api/', timeout=2)" \
    || die "[$layout] moto did not come up"
}
for layout in "${LAYOUTS[@]}"; do start_moto "$layout"; done
for layout in "${LAYOUTS[@]}"; do wait_moto "$layout"; done

# run_layout LAYOUT: copy infra/ (modules resolve relatively) plus the test-only override into
# $WORK/LAYOUT, apply, re-plan, inventory, destroy. Output goes to $WORK/LAYOUT.log.
run_layout() {
  local layout="$1"
  local env_dir="$WORK/$layout/infra/envs/$ENV_NAME"
  local ENDPOINT="${ENDPOINTS[$layout]}"
  export AWS_ENDPOINT_URL="$ENDPOINT"

  # An x86_64 image from moto's default list stands in for Debian 12.
  local AMI_ID ZONE_ID=""
  AMI_ID="$("$INFRA_VENV/bin/python" - "$ENDPOINT" "$REGION" <<'PY'
import sys, boto3
ec2 = boto3.client("ec2", endpoint_url=sys.argv[1], region_name=sys.argv[2])
imgs = [i for i in ec2.describe_images(Owners=["amazon"])["Images"] if i.get("Architecture") == "x86_64"]
print(sorted(i["ImageId"] for i in imgs)[0])
PY
)"
  log "[$layout] moto AMI: $AMI_ID"
  if [[ "$layout" == scaled ]]; then
    # A public hosted zone stands in for the operator's: the ACM certificate is validated by DNS
    # there and its record aliases the load balancer.
    ZONE_ID="$("$INFRA_VENV/bin/python" - "$ENDPOINT" <<'PY'
import sys, boto3
r53 = boto3.client("route53", endpoint_url=sys.argv[1], region_name="us-east-1")
print(r53.create_hosted_zone(Name="example.test", CallerReference="moto-apply")["HostedZone"]["Id"].split("/")[-1])
PY
)"
    log "[$layout] moto public zone example.test: $ZONE_ID"
  fi
  mkdir -p "$WORK/$layout/infra"
  tar -C "$INFRA_DIR" --exclude .terraform --exclude 'terraform.tfstate*' \
    --exclude '*.tfvars' -cf - modules envs | tar -C "$WORK/$layout/infra" -xf -
  cat >"$env_dir/moto_override.tf" <<HCL
# Generated by infra/scripts/moto_apply.sh for the moto test only. Never in the real config.
provider "aws" {
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  s3_use_path_style           = true

  endpoints {
    acm            = "$ENDPOINT"
    autoscaling    = "$ENDPOINT"
    ec2            = "$ENDPOINT"
    elbv2          = "$ENDPOINT"
    iam            = "$ENDPOINT"
    kms            = "$ENDPOINT"
    rds            = "$ENDPOINT"
    route53        = "$ENDPOINT"
    s3             = "$ENDPOINT"
    secretsmanager = "$ENDPOINT"
    sts            = "$ENDPOINT"
  }
}
HCL
  cat >"$env_dir/moto.auto.tfvars" <<HCL
aws_region             = "$REGION"
allowed_cidrs          = ["203.0.113.0/24"]
ami_id                 = "$AMI_ID"
db_deletion_protection = false
db_skip_final_snapshot = true
force_destroy_buckets  = true
# moto does not implement MonitorInstances (the provider would retry for ever).
enable_detailed_monitoring = false
# moto keeps neither Performance Insights nor custom parameter-group parameters: they would
# show as drift on the second plan (rds.force_ssl, always merged in, is the one accepted
# difference, checked below). The mocked terraform test covers both.
enable_db_monitoring = false
db_parameters        = {}
HCL
  if [[ "$layout" == single ]]; then
    cat >>"$env_dir/moto.auto.tfvars" <<HCL
topology      = "single"
admin_cidrs   = ["198.51.100.7/32"]
trainer_count = 1
HCL
  else
    cat >>"$env_dir/moto.auto.tfvars" <<HCL
topology                 = "scaled"
private_egress           = "nat_gateway"
dns_name                 = "mlflow.example.test"
route53_zone_id          = "$ZONE_ID"
alb_deletion_protection  = false
mlflow_min_size          = 2
mlflow_max_size          = 3
mlflow_desired_capacity  = 2
serving_min_size         = 1
serving_max_size         = 2
serving_desired_capacity = 1
trainer_count            = 2
HCL
  fi

  tf_logged() { # tf_logged LOGFILE terraform-args...: bounded by STEP_TIMEOUT
    local logfile="$1"
    shift
    timeout --kill-after=10 "$STEP_TIMEOUT" "${TF_CMD[@]}" -chdir="$env_dir" "$@" >"$logfile" 2>&1
  }
  step() { # step LABEL LOGFILE terraform-args...: output to LOGFILE, timing to stdout
    local label="$1" logfile="$2"
    shift 2
    timed "[$layout] $label" tf_logged "$logfile" "$@"
  }
  local out="$WORK/$layout"

  timed "[$layout] init" tf_init "$env_dir" -lockfile=readonly
  log "[$layout] apply (RDS takes about 1.5 min of polling in moto)"
  step "apply" "$out/apply.log" apply -auto-approve -no-color -input=false \
    || { tail -60 "$out/apply.log" >&2; tail -30 "$WORK/moto-$layout.log" >&2; die "[$layout] apply against moto failed"; }
  grep -E '^Apply complete' "$out/apply.log" || true

  log "[$layout] plan -detailed-exitcode (must show no changes but known moto gaps)"
  local rc=0
  step "re-plan" "$out/plan.log" plan -detailed-exitcode -no-color -input=false -out="$out/replan.tfplan" || rc=$?
  if [[ $rc -eq 2 ]]; then
    tf -chdir="$env_dir" show -json "$out/replan.tfplan" >"$out/replan.json"
    if "$INFRA_VENV/bin/python" "$INFRA_DIR/scripts/moto_drift.py" "$out/replan.json"; then
      log "[$layout] only the known moto gaps above differ: accepted"
      rc=-1
    else
      cat "$out/plan.log" >&2
      die "[$layout] second plan is not empty: the configuration drifts against moto"
    fi
  fi
  if [[ $rc -gt 0 ]]; then
    cat "$out/plan.log" >&2
    die "[$layout] plan failed (exit $rc)"
  fi
  [[ $rc -eq 0 ]] && log "[$layout] no changes"

  tf -chdir="$env_dir" output -json >"$out/outputs.json"
  if [[ -n "$RECORD" ]]; then
    local record="$RECORD"
    [[ "$layout" == scaled ]] && record="${RECORD%.json}.scaled.json"
    cp "$out/outputs.json" "$record"
    log "[$layout] recorded terraform output -json to $record"
  fi
  if [[ -x "$REPO_DIR/.venv/bin/mlops" ]]; then
    log "[$layout] inventory from the live outputs"
    "$REPO_DIR/.venv/bin/mlops" inventory --tf-output "$out/outputs.json" --dest "$out/inventory"
    if [[ "$layout" == scaled ]]; then
      # The dynamic inventory, run against moto's instances: every group by its tag.
      log "[$layout] ansible-inventory with the amazon.aws.aws_ec2 file against moto"
      ANSIBLE_INVENTORY_ENABLED=amazon.aws.aws_ec2 \
        timeout 120 "$REPO_DIR/.venv/bin/ansible-inventory" -i "$out/inventory/aws_ec2.yml" --list \
        >"$out/ansible-inventory.json" 2>"$out/ansible-inventory.err" \
        || { cat "$out/ansible-inventory.err" >&2; die "[$layout] ansible-inventory failed on aws_ec2.yml"; }
      "$INFRA_VENV/bin/python" - "$out/ansible-inventory.json" <<'PY' || die "[$layout] the dynamic inventory does not hold the expected hosts"
import json, sys
inv = json.load(open(sys.argv[1]))
want = {"mlflow_servers": 2, "serving_servers": 1, "trainers": 2}
got = {g: len(inv.get(g, {}).get("hosts", [])) for g in want}
print(f"[infra] [scaled] dynamic inventory hosts per group: {got}")
hostvars = inv.get("_meta", {}).get("hostvars", {})
def plain(v):  # ansible-core 2.19 marks templated values {"__ansible_unsafe": value} in --list
    return v.get("__ansible_unsafe") if isinstance(v, dict) else v
private = all(str(plain(v.get("ansible_host"))).startswith("10.") for v in hostvars.values())
sys.exit(0 if got == want and private and len(hostvars) == sum(want.values()) else 1)
PY
    fi
  fi

  log "[$layout] destroy"
  step "destroy" "$out/destroy.log" destroy -auto-approve -no-color -input=false \
    || { tail -40 "$out/destroy.log" >&2; die "[$layout] destroy against moto failed"; }
  grep -E '^Destroy complete' "$out/destroy.log" || true
}

declare -A PIDS=()
for layout in "${LAYOUTS[@]}"; do
  ( run_layout "$layout" ) >"$WORK/$layout.log" 2>&1 &
  PIDS[$layout]=$!
done
failed=()
for layout in "${LAYOUTS[@]}"; do
  if ! wait "${PIDS[$layout]}"; then
    failed+=("$layout")
  fi
  cat "$WORK/$layout.log"
done
[[ ${#failed[@]} -eq 0 ]] || die "moto apply failed for: ${failed[*]}"
