"""The platform's processes and scheduled jobs, found from the service map `make up` writes (platform.json).

Used by `mlops bench soak` (memory of every service, the jobs run under load) and by the resilience
tests (which process to kill). Under supervisord a service is the program ``<instance>-<name>``; under
systemd the unit ``<instance>-<name>.service``. A scheduled job runs the way its timer runs it: on
systemd hosts ``systemctl start --wait``, elsewhere its ``/etc/cron.d`` entry's command as the entry's user.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops.settings import get_settings

CRON_DIR = Path("/etc/cron.d")
"""Debian's cron reads only this directory (roles/mlops_timer writes ``<instance>-<job>`` there)."""
_DELAY = re.compile(r"^sleep \$\(shuf -n 1 -i 0-[0-9]+\); ")
"""The random delay in front of a job's command in its cron entry."""


def load_platform(path: Path | None = None) -> dict[str, Any]:
    path = path or get_settings().platform_file
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the platform has not been provisioned here (run `make up`)")
    return json.loads(path.read_text())


def service_names(platform: dict[str, Any]) -> list[str]:
    return [s["name"] for s in platform["services"]]


def main_pid(platform: dict[str, Any], service: str) -> int | None:
    """The service manager's process for a service (supervisord's program, systemd's MainPID); None if down."""
    name = f"{platform['instance']}-{service}"
    if platform["service_manager"] == "systemd":
        cmd = ["systemctl", "show", "--property=MainPID", "--value", f"{name}.service"]
    else:
        cmd = [platform["supervisorctl"], "-c", platform["supervisor_config"], "pid", name]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
    return int(out) if out.isdigit() and int(out) > 0 else None


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        ppid = int(text.rpartition(")")[2].split()[1])
        tree.setdefault(ppid, []).append(int(stat.parent.name))
    return tree


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    tree, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(tree.get(p, []))
    return out


def memory_bytes(pids: list[int]) -> dict[str, int]:
    """Memory of the processes together: ``pss`` (proportional set size: shared pages counted once, unlike summed
    RSS) and ``anon``, its anonymous part (heaps; without PostgreSQL's shared buffers or mapped files, caches
    that fill up to a fixed size), where a leak shows."""
    total = {"pss": 0, "anon": 0}
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total["pss"] += int(line.split()[1]) * 1024
                elif line.startswith("Pss_Anon:"):
                    total["anon"] += int(line.split()[1]) * 1024
        except (OSError, ValueError):
            continue  # exited meanwhile
    return total


def service_memory(platform: dict[str, Any]) -> dict[str, dict[str, int]]:
    """:func:`memory_bytes` of each service's process tree; zeros for a service that is down."""
    out = {}
    for service in service_names(platform):
        pid = main_pid(platform, service)
        out[service] = memory_bytes(process_tree(pid)) if pid else {"pss": 0, "anon": 0}
    return out


@dataclass(frozen=True)
class JobResult:
    name: str
    returncode: int
    output: str


def job_names(platform: dict[str, Any]) -> list[str]:
    """The scheduled jobs of this instance (their job scripts, ``<home>/bin/job-<name>``)."""
    return sorted(p.name.removeprefix("job-") for p in (Path(platform["home"]) / "bin").glob("job-*"))


def cron_entry(instance: str, name: str) -> tuple[str, str, str]:
    """(schedule, user, command) of a job's entry in /etc/cron.d."""
    path = CRON_DIR / f"{instance}-{name}"
    lines = [ln for ln in path.read_text().splitlines()
             if ln.strip() and not ln.startswith("#") and "=" not in ln.split()[0]]
    if len(lines) != 1:
        raise ValueError(f"{path}: expected one schedule line, found {len(lines)}")
    fields = lines[0].split(None, 6)
    return " ".join(fields[:5]), fields[5], fields[6]


def run_job(platform: dict[str, Any], name: str, timeout: float = 1800) -> JobResult:
    """Run a scheduled job now, as its timer would (minus the random delay); output is in its log."""
    if platform["service_manager"] == "systemd":
        argv = ["systemctl", "start", "--wait", f"{platform['instance']}-{name}.service"]
    else:
        _, user, command = cron_entry(platform["instance"], name)
        argv = ["runuser", "-u", user, "--", "env", "-i", "SHELL=/bin/sh", "PATH=/usr/bin:/bin",
                f"LOGNAME={user}", "/bin/sh", "-c", _DELAY.sub("", command)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    return JobResult(name, result.returncode, (result.stdout + result.stderr)[-2000:])
