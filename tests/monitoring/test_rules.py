"""Alerting rules as data (issue #15): promtool checks them and runs their unit tests; every alert the issue
asks for exists, is complete, and has a case in the promtool tests where it fires. Offline: no platform."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RULES = sorted((REPO / "prometheus" / "rules").glob("*.yml"))
RULE_TESTS = sorted((REPO / "prometheus" / "tests").glob("*.yml"))
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

needs_promtool = pytest.mark.skipif(
    not Path(PROMTOOL).exists(), reason="promtool is not installed (apt-get install prometheus)"
)

# Each alert the issue requires, and the rule that implements it.
REQUIRED_ALERTS = {
    "serving 5xx ratio on /predict above a threshold for 5 min": "ServingHighErrorRatio",
    "p99 latency above a threshold": "ServingHighLatencyP99",
    "champion load error (degraded)": "ServingChampionLoadFailed",
    "retrain tick not successful for 2 periods (dead-man's switch)": "RetrainTickMissed",
    "drift in 2 of the last 5 windows without a retrain": "DriftWithoutRetrain",
    "a promotion refused": "PromotionRefused",
    "backup older than 26 h": "BackupStale",
    "gc failing": "ScheduledJobFailed",
    "disk above 85 %": "DiskAlmostFull",
    "PostgreSQL down": "PostgresDown",
    "MLflow down": "MlflowDown",
    "TLS certificate expiring within 14 days": "TlsCertificateExpiringSoon",
    "a scrape target down": "TargetDown",
}


def _rules() -> list[dict]:
    return [rule for path in RULES for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def _alerts() -> list[dict]:
    return [rule for rule in _rules() if "alert" in rule]


def _rule_tests() -> list[dict]:
    return [case for path in RULE_TESTS for case in yaml.safe_load(path.read_text())["tests"]]


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], cwd=REPO, capture_output=True, text=True, timeout=120, check=False)


def test_rule_and_test_files_exist():
    assert RULES, "no rule files under prometheus/rules/"
    assert RULE_TESTS, "no promtool tests under prometheus/tests/"


@needs_promtool
def test_promtool_check_rules():
    result = _promtool("check", "rules", *map(str, RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_promtool_test_rules():
    result = _promtool("test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_names_are_unique():
    names = [rule["alert"] for rule in _alerts()]
    assert len(names) == len(set(names)), sorted(name for name in names if names.count(name) > 1)


@pytest.mark.parametrize("alert", _alerts(), ids=lambda rule: rule["alert"])
def test_alert_is_complete(alert):
    # Provisioning overrides `for:` per alert name, so it must be there even when it is 0m.
    assert "for" in alert, f"{alert['alert']} has no explicit for:"
    assert alert.get("labels", {}).get("severity") in {"page", "ticket"}
    annotations = alert.get("annotations", {})
    assert annotations.get("summary"), f"{alert['alert']} has no summary"
    assert annotations.get("description"), f"{alert['alert']} has no description"


@pytest.mark.parametrize(("requirement", "name"), REQUIRED_ALERTS.items(), ids=list(REQUIRED_ALERTS))
def test_required_alert_exists(requirement, name):
    assert name in {rule["alert"] for rule in _alerts()}, f"no alert {name} for: {requirement}"


@pytest.mark.parametrize("name", [rule["alert"] for rule in _alerts()])
def test_every_alert_fires_and_stays_quiet_in_a_promtool_case(name):
    cases = [case for test in _rule_tests() for case in test.get("alert_rule_test", []) if case["alertname"] == name]
    firing = [case for case in cases if case.get("exp_alerts")]
    quiet = [case for case in cases if not case.get("exp_alerts")]
    assert firing, f"no promtool case where {name} fires"
    assert quiet, f"no promtool case where {name} stays quiet"
    for case in firing:
        for expected in case["exp_alerts"]:
            assert expected.get("exp_labels", {}).get("severity"), f"{name} at {case['eval_time']}: no labels"
            assert expected.get("exp_annotations", {}).get("summary"), f"{name} at {case['eval_time']}: no summary"


def test_recording_rules_follow_the_naming_convention():
    records = [rule["record"] for rule in _rules() if "record" in rule]
    assert {"mlops:serving_request_rate:5m", "mlops:serving_error_ratio:5m", "mlops:serving_latency_p50:5m",
            "mlops:serving_latency_p99:5m"} <= set(records)
    assert all(record.startswith("mlops:") for record in records)
