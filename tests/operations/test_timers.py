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
        env={"ANSIBLE_ROLES_PATH": str(REPO / "ansible/roles"), "ANSIBLE_LIBRARY": str(REPO / "ansible/library"),
             "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
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
    # A job that runs as an account of its own (the retrain job) cannot create its log in the log
    # directory: rotation makes the new file with the old one's owner (logrotate's `create`).
    job_log = log_dir / "job-retrain.log"
    owner = job_log.stat().st_uid
    assert owner != 0
    with job_log.open("a") as f:
        f.write("a line to rotate\n")
    rotated = subprocess.run(["logrotate", "--force", "--state", str(tmp_path / "state"), str(config)],
                             capture_output=True, text=True, check=False)
    assert rotated.returncode == 0, rotated.stderr
    assert (log_dir / "nginx-access.log.1").exists()
    assert (log_dir / "job-retrain.log.1").exists()
    assert (job_log.stat().st_uid, job_log.stat().st_size, job_log.stat().st_mode & 0o777) == (owner, 0, 0o640)
    for _ in range(20):
        requests.get(f"{platform.https}/health", verify=platform.ca_cert, timeout=10)
        if access.exists() and access.stat().st_size > 0:
            break
        time.sleep(0.5)
    assert access.exists() and access.stat().st_size > 0, "nginx did not reopen its access log"


def _render_job_script(tmp_path: Path, command: list[str]) -> Path:
    """The role's job script for ``command`` (rendered by Ansible alone: no cron, no systemd)."""
    import json

    definition = {
        "mlops_instance": "jobcheck", "mlops_home": str(tmp_path), "mlops_data_dir": str(tmp_path),
        "mlops_metrics_dir": str(tmp_path / "metrics"), "mlops_timer_name": "check",
        "mlops_timer_command": command, "mlops_timer_workdir": str(tmp_path), "mlops_timer_environment": {},
        "mlops_timer_cron": "0 3 * * *", "mlops_timer_cron_dir": str(tmp_path),
        "mlops_timer_on_calendar": "daily", "mlops_timer_description": "",
    }
    (tmp_path / "vars.json").write_text(json.dumps(definition))
    (tmp_path / "metrics").mkdir()
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        f"    - ansible.builtin.include_vars: {REPO / 'ansible/roles/mlops_timer/vars/main.yml'}\n"
        f"    - ansible.builtin.template:\n        src: {REPO / 'ansible/roles/mlops_timer/templates/job.sh.j2'}\n"
        f"        dest: {tmp_path / 'job-check'}\n        mode: '0755'\n"
    )
    result = subprocess.run(
        [str(REPO / ".venv/bin/ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook),
         "-e", f"@{tmp_path / 'vars.json'}"],
        capture_output=True, text=True, timeout=120, check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stdout[-2000:]
    return tmp_path / "job-check"


def _job_metrics(path: Path) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {s.name: s.value for f in text_string_to_metric_families(path.read_text()) for s in f.samples
            if s.labels == {"timer": "check"}}


def test_job_script_records_its_outcome_for_prometheus(tmp_path):
    flag = tmp_path / "fail"
    script = _render_job_script(tmp_path, ["/bin/sh", "-c", f"sleep 1; test ! -e {flag}"])
    prom = tmp_path / "metrics" / "job-check.prom"

    assert subprocess.run([str(script)], capture_output=True, check=False).returncode == 0
    ok = _job_metrics(prom)
    assert ok["mlops_job_last_exit_code"] == 0
    assert ok["mlops_job_last_success_timestamp_seconds"] == ok["mlops_job_last_run_timestamp_seconds"]
    assert ok["mlops_job_last_duration_seconds"] >= 1

    flag.touch()
    time.sleep(1)
    assert subprocess.run([str(script)], capture_output=True, check=False).returncode == 1
    failed = _job_metrics(prom)
    assert failed["mlops_job_last_exit_code"] == 1
    # The last success survives the failure; the run time moves on.
    assert failed["mlops_job_last_success_timestamp_seconds"] == ok["mlops_job_last_success_timestamp_seconds"]
    assert failed["mlops_job_last_run_timestamp_seconds"] > ok["mlops_job_last_run_timestamp_seconds"]
    assert sorted(p.name for p in (tmp_path / "metrics").iterdir()) == ["job-check.prom"]
