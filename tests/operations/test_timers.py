"""Scheduled jobs (roles/mlops_timer): systemd units that verify, cron entries, log rotation."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

pytestmark = [pytest.mark.integration]

JOBS = ("backup", "gc", "logrotate")
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_timer_units_verify(platform):
    unit_dir = platform.path("config") / "systemd"
    units = [unit_dir / f"{platform.instance}-{job}.{kind}" for job in JOBS for kind in ("timer", "service")]
    for unit in units:
        assert unit.exists(), unit
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *map(str, units)], capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    timer = (unit_dir / f"{platform.instance}-backup.timer").read_text()
    assert "Persistent=true" in timer and "RandomizedDelaySec=1800" in timer
    assert "OnCalendar=*-*-* 02:30:00" in timer


def test_cron_entries_run_the_job_scripts_and_cron_runs(platform):
    for job in JOBS:
        entry = (Path("/etc/cron.d") / f"{platform.instance}-{job}").read_text()
        assert f"{platform.path('home')}/bin/job-{job} >> {platform.path('log')}/job-{job}.log 2>&1" in entry
    backup = (Path("/etc/cron.d") / f"{platform.instance}-backup").read_text()
    assert "30 2 * * * mlops sleep $(shuf -n 1 -i 0-1800); " in backup
    status = platform.supervisorctl("status", f"{platform.instance}-cron").stdout
    assert "RUNNING" in status, status
    assert subprocess.run(["pgrep", "-x", "cron"], capture_output=True, check=False).returncode == 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"mlops_timer_on_calendar": "every tuesday-ish"}, "is not a systemd calendar expression"),
        ({"mlops_timer_cron": "0 3 * *"}, "mlops_timer_cron must have five"),
        ({"mlops_timer_randomized_delay": "soon"}, "mlops_timer_randomized_delay must be"),
        ({"mlops_timer_command": ["relative/path"]}, "an argv list starting with an absolute path"),
    ],
)
def test_timer_role_refuses_bad_definitions(tmp_path, overrides, message):
    import json

    definition = {
        "mlops_instance": "timercheck", "mlops_home": str(tmp_path), "mlops_data_dir": str(tmp_path),
        "mlops_log_dir": str(tmp_path), "mlops_run_dir": str(tmp_path), "mlops_user": "root",
        "mlops_group": "root", "mlops_service_manager": "supervisor", "mlops_systemd_unit_dir": str(tmp_path),
        "mlops_timer_name": "check", "mlops_timer_command": ["/bin/true"], "mlops_timer_cron": "0 3 * * *",
        "mlops_timer_on_calendar": "daily", "mlops_timer_cron_dir": str(tmp_path), **overrides,
    }
    (tmp_path / "vars.json").write_text(json.dumps(definition))
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.include_role:\n        name: mlops_timer\n"
    )
    result = subprocess.run(
        [str(REPO / ".venv/bin/ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook),
         "-e", f"@{tmp_path / 'vars.json'}"],
        capture_output=True, text=True, timeout=120, check=False,
        env={"ANSIBLE_ROLES_PATH": str(REPO / "ansible/roles"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode != 0
    assert message in result.stdout, result.stdout[-2000:]
    assert not list(tmp_path.glob("job-*")), "nothing is installed for a bad definition"


@pytest.mark.skipif(shutil.which("logrotate") is None, reason="logrotate is not installed")
def test_logrotate_rotates_nginx_logs_and_nginx_reopens_them(platform, tmp_path):
    log_dir = platform.path("log")
    config = platform.path("config") / "logrotate.conf"
    check = subprocess.run(["logrotate", "--debug", "--state", str(tmp_path / "s"), str(config)],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    requests.get(f"{platform.https}/health", verify=platform.ca_cert, timeout=10)
    access = log_dir / "nginx-access.log"
    assert access.stat().st_size > 0
    rotated = subprocess.run(["logrotate", "--force", "--state", str(tmp_path / "state"), str(config)],
                             capture_output=True, text=True, check=False)
    assert rotated.returncode == 0, rotated.stderr
    assert (log_dir / "nginx-access.log.1").exists()
    for _ in range(20):
        requests.get(f"{platform.https}/health", verify=platform.ca_cert, timeout=10)
        if access.exists() and access.stat().st_size > 0:
            break
        time.sleep(0.5)
    assert access.exists() and access.stat().st_size > 0, "nginx did not reopen its access log"
