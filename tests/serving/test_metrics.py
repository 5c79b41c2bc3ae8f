"""Serving's Prometheus metrics: what each one reports (offline), and one server's figures across gunicorn workers
(a real ``mlops serve --workers 2`` against a file-store registry whose champion cannot be loaded: no platform)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from serving.app import Metrics

REPO = Path(__file__).resolve().parents[2]


def _value(text: str, sample: str) -> float | None:
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
    return None if match is None else float(match.group(1))


@dataclass
class FakeServed:
    version: str
    name: str = "m"
    alias: str = "champion"
    variant: str = "openvino_int8"


@dataclass
class FakeHolder:
    current: FakeServed | None = None
    load_error: dict[str, str] | None = None
    load_failures: int = 0
    load_failed: bool = False


@dataclass
class FakeWriter:
    pending: int = 0
    buffered_rows: int = 0
    written: int = 0
    dropped: int = 0
    last_error: str | None = field(default=None)


def test_one_process_metrics_follow_the_worker_state() -> None:
    metrics = Metrics(multiproc_dir="")
    holder, writer = FakeHolder(FakeServed("3")), FakeWriter(pending=2, buffered_rows=5, written=10, dropped=1)
    metrics.sync(holder, writer)  # type: ignore[arg-type]
    holder.current, holder.load_error, holder.load_failures = FakeServed("4"), {"version": "5", "error": "x"}, 2
    holder.load_failed = True
    writer.written, writer.dropped = 25, 1
    metrics.sync(holder, writer)  # type: ignore[arg-type]
    metrics.sync(holder, writer)  # type: ignore[arg-type] - nothing new: counters do not move
    metrics.queue_wait.observe(0.002)
    text = metrics.render().decode()
    info = [line for line in text.splitlines() if line.startswith("mlops_serving_model_info{")]
    assert info == ['mlops_serving_model_info{alias="champion",model_name="m",model_version="4",'
                    'variant="openvino_int8"} 1.0'], info  # the replaced version is gone, not 0
    assert _value(text, "mlops_serving_degraded") == 1.0
    assert _value(text, "mlops_serving_model_load_errors_total") == 2.0
    assert _value(text, "mlops_serving_monitoring_rows_written_total") == 25.0
    assert _value(text, "mlops_serving_monitoring_rows_dropped_total") == 1.0
    assert _value(text, "mlops_serving_monitoring_buffered_rows") == 5.0
    assert _value(text, "mlops_serving_monitoring_pending") == 2.0
    assert _value(text, "mlops_serving_queue_wait_seconds_count") == 1.0
    # No champion yet (a missing alias is a load_error on /health): not degraded.
    holder.load_error, holder.load_failed = {"version": "-", "error": "no 'champion' alias yet"}, False
    metrics.sync(holder, None)  # type: ignore[arg-type]
    assert _value(metrics.render().decode(), "mlops_serving_degraded") == 0.0


# --- one server, two workers ----------------------------------------------------------------------


@dataclass
class TwoWorkers:
    url: str
    proc: subprocess.Popen  # type: ignore[type-arg]
    metrics_dir: Path
    log: Path

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=10).text

    def per_worker(self, sample: str) -> dict[int, float]:
        """``sample``'s value in each worker's own counter file (what /metrics adds up)."""
        from prometheus_client.multiprocess import MultiProcessCollector

        got = {}
        for path in self.metrics_dir.glob("counter_*.db"):
            for family in MultiProcessCollector.merge([str(path)]):
                for s in family.samples:
                    if s.name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items())) + "}" == sample:
                        got[int(path.stem.split("_")[1])] = s.value
        return got


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory, wait_until, free_port) -> Iterator[TwoWorkers]:  # noqa: ANN001
    root = tmp_path_factory.mktemp("workers")
    registry = f"file://{root}/registry"
    env = {**os.environ, "MLFLOW_TRACKING_URI": registry, "MLFLOW_ALLOW_FILE_STORE": "true",
           "MLOPS_STATE_DIR": str(root / "state"), "MLOPS_SERVE_MONITORING": "false",
           "MLOPS_SERVE_POLL_INTERVAL_S": "1", "MLOPS_SERVE_THREADS": "1", "MLOPS_MODEL_NAME": "broken"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    # A champion that cannot be loaded (no source run): each worker fails once, serves nothing, answers 503.
    subprocess.run([sys.executable, "-c", f"""
from mlflow import MlflowClient
c = MlflowClient(tracking_uri={registry!r}, registry_uri={registry!r})
c.create_registered_model("broken")
v = c.create_model_version("broken", {str(root)!r})
c.set_registered_model_alias("broken", "champion", v.version)
"""], env=env, check=True, capture_output=True)
    port = free_port()
    log = root / "serve.log"
    proc = subprocess.Popen([sys.executable, "-m", "mlops_cli", "serve", "--port", str(port), "--workers", "2"],
                            cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    server = TwoWorkers(f"http://127.0.0.1:{port}", proc, root / "state" / "serving-metrics" / str(proc.pid), log)
    try:
        wait_until(lambda: _value(server.metrics(), "mlops_serving_model_load_errors_total") == 2.0, 180,
                   "both workers to fail loading the champion", server.log)
        yield server
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)


@pytest.mark.slow
def test_two_workers_report_one_server(two_workers: TwoWorkers, wait_until) -> None:  # noqa: ANN001
    server = two_workers
    assert server.metrics_dir.is_dir() and (server.metrics_dir.stat().st_mode & 0o777) == 0o700
    predict = 'mlops_serving_requests_total{endpoint="/predict",status="503"}'
    sent = 0

    def one(_: int) -> int:  # a new connection each: the kernel hands them to either worker
        return httpx.post(f"{server.url}/predict", json={"image": "x"}, timeout=30).status_code

    with ThreadPoolExecutor(4) as pool:
        for _ in range(50):  # until both workers answered some (which one accepts is the kernel's choice)
            assert set(pool.map(one, range(20))) == {503}
            sent += 20
            if len(server.per_worker(predict)) == 2 and all(server.per_worker(predict).values()):
                break
    per_worker = server.per_worker(predict)
    assert len(per_worker) == 2 and all(per_worker.values()), per_worker
    text = server.metrics()
    assert _value(text, predict) == sent  # the sum over workers, whichever answered the scrape
    assert _value(text, "mlops_serving_degraded") == 1.0  # livemax: 1, not one per worker
    assert _value(text, "mlops_serving_model_load_errors_total") == 2.0
    assert _value(text, "mlops_serving_queue_wait_seconds_count") == 0.0  # no batch ran: no model

    # A worker dies: gunicorn starts another; the dead one's counts stay, its live gauges go.
    dead = max(per_worker)
    os.kill(dead, signal.SIGKILL)
    wait_until(lambda: _value(server.metrics(), "mlops_serving_model_load_errors_total") == 3.0, 180,
               "the replacement worker's failed load", server.log)
    assert not list(server.metrics_dir.glob(f"gauge_live*_{dead}.db"))
    text = server.metrics()
    assert _value(text, predict) == sent and _value(text, "mlops_serving_degraded") == 1.0

    os.killpg(server.proc.pid, signal.SIGTERM)
    assert server.proc.wait(timeout=60) == 0
    assert not server.metrics_dir.exists()  # removed with the server: the next start counts from zero
