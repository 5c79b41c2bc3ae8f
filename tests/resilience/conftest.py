"""The resilience tests' platform: the operations instance (tests/conftest.py), a champion served through nginx.

It runs beside the other test groups, so its instance has its own name and ports: `make
test-monitoring-resilience` (the monitoring tests first, which need no champion, then these) moves
MLOPS_TEST_PORT_OFFSET by 400, `make test-resilience` (these alone) by 200. Serving skips
torch.compile (minutes per load on 2 shared cores) and polls the alias every second; one serving
worker and two MLflow workers, as the platform's defaults.
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from mlops_cli import jobs
from mlops_cli.soak import AccessLog, Load, verify
from mlops_cli.status import platform_status

# The champion is a tiny model (the gate is not under test here): no accuracy floor.
GATE_ENV = {
    "MLOPS_PROMOTE_MIN_ACCURACY": "0.0",
    "MLOPS_PROMOTE_MIN_F1": "0.0",
    "MLOPS_PROMOTE_MAX_LATENCY_REGRESSION": "1000",
    "MLOPS_PROMOTE_EVAL_IMAGES": "128",
    "MLOPS_PROMOTE_LATENCY_ITERATIONS": "10",
}


@pytest.fixture(scope="session")
def platform(operations_platform):  # noqa: ANN001, ANN201 - overrides the session platform of tests/conftest.py
    """The instance shared with the monitoring tests (tests/conftest.py: operations_platform)."""
    return operations_platform


class Health:
    """End-to-end health of the instance: every service up (``mlops status``) and the champion answering
    through nginx."""

    def __init__(self, platform) -> None:  # noqa: ANN001
        self.platform = platform
        self.file = platform.state_dir / "platform.json"
        self.info = jobs.load_platform(self.file)
        self.auth = ("admin", platform.admin_password)

    def ok(self) -> bool:
        try:
            if not platform_status(self.file).healthy:
                return False
            response = httpx.get(f"{self.platform.https}/serve/health", auth=self.auth,
                                 verify=self.platform.ca_cert, timeout=5)
            return response.status_code == 200
        except (httpx.HTTPError, OSError):
            return False

    def wait(self, timeout: float, since: float | None = None) -> float:
        """Seconds from ``since`` (default: now) until healthy; fails the test after ``timeout``."""
        start = since if since is not None else time.monotonic()
        while time.monotonic() - start < timeout:
            if self.ok():
                return time.monotonic() - start
            time.sleep(0.25)
        pytest.fail(f"not healthy within {timeout:.0f} s: {platform_status(self.file).services}")


@pytest.fixture(scope="session")
def client_env(platform, patched_environ) -> Iterator[dict[str, str]]:  # noqa: ANN001
    """The environment a notebook on this host has (local.env: the person, who tracks and predicts), plus
    the gate's test thresholds."""
    env = {**platform.env, **GATE_ENV, "MLOPS_STATE_DIR": str(platform.state_dir)}
    with patched_environ(env):
        yield {**os.environ}


@pytest.fixture(scope="session")
def health(platform, client_env, patched_environ) -> Health:  # noqa: ANN001
    """The instance with a champion (trained by the person, promoted by the gate's login) loaded by its
    serving program."""
    from mlops.settings import get_settings
    from pipelines.promote import promote
    from training.train import TrainConfig, train

    config = TrainConfig.from_settings(
        epochs=3, batch_size=16, image_size=32, width=0.0625, n_train=256, n_val=64, calibration_images=64,
        int8_max_drop_points=100.0, experiment_name="resilience", model_name=get_settings().model_name)
    result = train(config, show_progress=False)
    gate = platform.env_as("svc-gate")
    with patched_environ({key: gate[key] for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}):
        assert promote(config.model_name, result.registered_version).promoted
    h = Health(platform)
    h.wait(300)
    return h


# --- one fault under load, and the report of all of them ----------------------------------------------

TRACKING_CLIENTS = 3
PREDICT_CLIENTS = 2
BEFORE_S = 4.0
AFTER_S = 4.0
RECOVERY_TIMEOUT_S = 240.0


@dataclass
class FaultRun:
    row: dict
    load: Load
    lost: list[str]
    failed: Counter

    def failures(self, tracking: bool) -> dict:
        return {k: n for k, n in self.failed.items() if (k[0] != "predict") == tracking}


@pytest.fixture(scope="session")
def results(artifacts_dir: Path) -> Iterator[list[dict]]:
    """Rows of the resilience table; written to test-artifacts/resilience.json when the session ends."""
    rows: list[dict] = []
    yield rows
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "unknown")
    report = {
        "host": {"cpu": cpu, "cpus": os.cpu_count()},
        "load": {"tracking_clients": TRACKING_CLIENTS, "predict_clients": PREDICT_CLIENTS,
                 "seconds_before_fault": BEFORE_S, "seconds_after_recovery": AFTER_S},
        "faults": rows,
    }
    (artifacts_dir / "resilience.json").write_text(json.dumps(report, indent=2) + "\n")


@pytest.fixture(scope="session")
def under_load(health, platform, results):  # noqa: ANN001, ANN201 - a function
    """``under_load(fault, inject)``: the load runs; ``inject(load)`` does the fault and returns the instant
    (``time.monotonic()``) recovery is timed from; then the time until healthy, the failures as clients saw
    them, nginx's 5xx and the acknowledged writes read back. The row joins the report."""

    def run(fault: str, inject: Callable[[Load], float], tracking: int = TRACKING_CLIENTS,
            predict: int = PREDICT_CLIENTS) -> FaultRun:
        health.wait(RECOVERY_TIMEOUT_S)
        access = AccessLog(platform.path("log") / "nginx-access.log")
        load = Load(tracking, predict, experiment="resilience-load", artifact_every=5, ops_per_run=15)
        load.start()
        try:
            time.sleep(BEFORE_S)
            fault_t = load.elapsed
            since = inject(load)
            recovery_s = health.wait(RECOVERY_TIMEOUT_S, since=since)
            time.sleep(AFTER_S)
        finally:
            load.stop()
        lost = verify(load.ledger)
        failed = Counter(("log_artifact" if s.op.startswith("log_artifact") else s.op, s.error)
                         for s in load.samples if s.error is not None)
        row = {
            "fault": fault,
            "recovery_s": round(recovery_s, 1),
            "operations": len(load.samples),
            "operations_after_fault": sum(1 for s in load.samples if s.start + s.seconds >= fault_t),
            "failed": [{"operation": op, "error": err, "count": n} for (op, err), n in sorted(failed.items())],
            "nginx_5xx": {str(k): v for k, v in sorted(access.statuses().items()) if k >= 500},
            "acknowledged_writes": load.ledger.writes,
            "lost_writes": len(lost),
        }
        results.append(row)
        return FaultRun(row, load, lost, failed)

    return run
