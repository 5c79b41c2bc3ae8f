"""Kill -9 each platform process under load; the service manager restarts it. Nothing acknowledged may be lost.

For each fault: tracking clients (the `mlflow` client, through nginx) and prediction clients (through
nginx) run (:class:`mlops_cli.soak.Load`); the process is killed with SIGKILL; the time until the
platform is healthy again end to end is measured; the load goes on a few seconds more, then every
write the clients were told succeeded is read back (artifacts by SHA-256). Each fault's figures go
to ``test-artifacts/resilience.json``; ``make resilience-report`` turns the last run into README's table.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from mlops_cli import jobs

pytestmark = [pytest.mark.integration, pytest.mark.resilience]


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


def _args(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _gunicorn_master(info: dict, service: str) -> int:
    """The gunicorn master of a service: the program itself (serving) or its child (`mlflow server`)."""
    pid = jobs.main_pid(info, service)
    assert pid, f"{service} is not running"
    if "gunicorn" in _args(pid):
        return pid
    masters = [c for c in _children(pid) if "gunicorn" in _args(c)]
    assert len(masters) == 1, f"{service}: gunicorn master not found under {pid}"
    return masters[0]


def _target(info: dict, service: str, role: str) -> int:
    if role == "worker":
        workers = _children(_gunicorn_master(info, service))
        assert workers, f"{service}: no gunicorn worker"
        return workers[0]
    if role == "master":
        return _gunicorn_master(info, service)
    pid = jobs.main_pid(info, service)
    assert pid, f"{service} is not running"
    return pid


# (what is killed, service, which process of it). Serving first: its restarts reload the model.
FAULTS = [
    ("serving worker", "serving", "worker"),
    ("serving master", "serving", "master"),
    ("MLflow worker", "mlflow", "worker"),
    ("MLflow gunicorn master", "mlflow", "master"),
    ("S3 store (s3rver)", "s3server", "main"),
    ("PostgreSQL", "postgresql", "main"),
    ("nginx", "nginx", "main"),
]


@pytest.mark.parametrize(("fault", "service", "role"), FAULTS, ids=[f[0] for f in FAULTS])
def test_kill_under_load_recovers_and_loses_nothing(health, under_load, fault, service, role) -> None:  # noqa: ANN001
    def kill(_load) -> float:  # noqa: ANN001
        pid = _target(health.info, service, role)
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        # Healthy only counts once the process is gone (a probe right after the signal could still pass).
        while _alive(pid) and time.monotonic() - killed_at < 10:
            time.sleep(0.05)
        return killed_at

    run = under_load(f"kill -9 {fault}", kill)
    assert not run.lost, f"{fault}: acknowledged writes lost: {run.lost[:10]}"
    # The mlflow client retries 5xx and connection errors: no tracking call may fail for the client.
    assert not run.failures(tracking=True), f"{fault}: tracking calls failed despite retries: {run.failed}"
    # A prediction may fail while its process is down, but only visibly: an HTTP 5xx with a reason, or a
    # connection refused or cut (the client can retry). Never a 4xx, a hang until the timeout, or bad data.
    clear = ("HTTP 5", "ConnectError", "RemoteProtocolError", "ReadError")
    unclear = {k: n for k, n in run.failures(tracking=False).items() if not k[1].startswith(clear)}
    assert not unclear, f"{fault}: predictions failed without a clear error: {unclear}"


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False
