"""Accept a second plan against moto only when every change is a known moto gap.

Usage: moto_drift.py PLAN.json   (`terraform show -json` of the re-plan; exit 0 = only known gaps)

Each gap is a function that takes one resource change and returns a sentence when it recognises
it (and nothing else changes in that resource); any change no rule explains fails the run.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

Change = dict[str, Any]


def _params(side: dict[str, Any] | None) -> set[tuple[str, str]]:
    return {(p["name"], p["value"]) for p in (side or {}).get("parameter", [])}


def _same_except(before: dict[str, Any], after: dict[str, Any], *keys: str) -> bool:
    return {k: v for k, v in before.items() if k not in keys} == {k: v for k, v in after.items() if k not in keys}


def force_ssl_readded(rc: Change) -> str | None:
    """moto 5.2 does not return custom parameter-group parameters to the provider, and
    rds.force_ssl is always merged in (it cannot be left out, by design): the parameter group
    re-adds exactly that parameter, in place."""
    if rc["address"] != "module.database.aws_db_parameter_group.this" or rc["change"]["actions"] != ["update"]:
        return None
    before, after = rc["change"]["before"], rc["change"]["after"]
    added_only_force_ssl = _params(after) - _params(before) == {("rds.force_ssl", "1")} and _params(before) <= _params(
        after
    )
    if added_only_force_ssl and _same_except(before, after, "parameter"):
        return "rds.force_ssl re-added to the parameter group (moto does not return custom parameters)"
    return None


def _norm(value: Any) -> Any:
    """The plan JSON writes some unset strings as null on one side and "" on the other."""
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_norm(v) for v in value]
    return None if value == "" else value


def _unknown(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(_unknown(v) for v in value)
    return value is True


def _changed_keys(rc: Change) -> set[str]:
    before, after = rc["change"]["before"] or {}, rc["change"]["after"] or {}
    unknown = rc["change"].get("after_unknown") or {}
    keys = set(before) | set(after)
    return {k for k in keys if _norm(before.get(k)) != _norm(after.get(k)) or _unknown(unknown.get(k))}


def private_zone_vpc(rc: Change) -> str | None:
    """moto 5.2 makes a zone private only when CreateHostedZone says HostedZoneConfig.PrivateZone,
    which the provider leaves out (AWS infers it from the VPC): moto keeps a public zone without
    the VPC, and the plan re-adds the vpc block in place."""
    if not rc["address"].endswith("aws_route53_zone.private[0]") or rc["change"]["actions"] != ["update"]:
        return None
    before = rc["change"]["before"] or {}
    if _changed_keys(rc) == {"vpc"} and not before.get("vpc"):
        return "vpc block re-added to the private zone (moto keeps it public, without the VPC)"
    return None


def launch_template_own_tags(rc: Change) -> str | None:
    """moto 5.2 copies the launch template's own tags (CreateLaunchTemplate TagSpecifications,
    resource type launch-template, i.e. the provider's default_tags) into the version's
    LaunchTemplateData: the plan removes that extra block, hence a new version."""
    if not rc["address"].endswith("aws_launch_template.this[0]") or rc["change"]["actions"] != ["update"]:
        return None
    if not _changed_keys(rc) <= {"tag_specifications", "default_version", "latest_version"}:
        return None
    before = rc["change"]["before"].get("tag_specifications") or []
    after = rc["change"]["after"].get("tag_specifications") or []
    if [t for t in before if t.get("resource_type") != "launch-template"] == after and len(before) > len(after):
        return "launch-template tag block moto copied into the template data removed (new version)"
    return None


def asg_follows_template_version(rc: Change) -> str | None:
    """The autoscaling group follows the launch template's latest version, which the rule above
    makes unknown: only launch_template.version changes."""
    if not rc["address"].endswith("aws_autoscaling_group.this[0]") or rc["change"]["actions"] != ["update"]:
        return None
    if _changed_keys(rc) != {"launch_template"}:
        return None
    before = rc["change"]["before"]["launch_template"]
    after = rc["change"]["after"].get("launch_template") or []
    unknown = (rc["change"].get("after_unknown") or {}).get("launch_template") or []
    strip = [{k: v for k, v in t.items() if k != "version"} for t in before]
    if (
        len(before) == 1
        and strip == [{k: v for k, v in t.items() if k != "version"} for t in after]
        and any(u.get("version") for u in unknown)
    ):
        return "launch_template.version follows the template's new version"
    return None


RULES: list[Callable[[Change], str | None]] = [
    force_ssl_readded,
    private_zone_vpc,
    launch_template_own_tags,
    asg_follows_template_version,
]


def main(path: str) -> int:
    with open(path, encoding="utf-8") as fh:
        plan = json.load(fh)
    changed = [c for c in plan.get("resource_changes", []) if c["change"]["actions"] not in (["no-op"], ["read"])]
    unexplained = []
    for rc in changed:
        reason = next((r for r in (rule(rc) for rule in RULES) if r), None)
        if reason:
            print(f"[infra] known moto gap: {rc['address']}: {reason}")
        else:
            unexplained.append(rc["address"])
    for address in unexplained:
        print(f"[infra] unexplained change: {address}", file=sys.stderr)
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
