"""Killing one MLflow host under tracking load (tests/aws_sim/conftest.py's simulated hosts).

It leaves mlflow-1 dead, so it runs after every other test of the simulation (conftest.py orders it last).
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest

pytestmark = [pytest.mark.aws_sim, pytest.mark.slow]


def test_killing_one_mlflow_host_under_load_loses_no_acknowledged_write(aws_sim, mlflow_env) -> None:
    """Four clients log metrics through the load balancer; mlflow-1 dies (every process on it killed,
    its link down) after 40 acknowledged writes. Every acknowledged write is in the store, and
    every client's writes after the failure succeed through mlflow-0."""
    client = aws_sim.mlflow_client("lb", aws_sim.login("data-scientist"))
    experiment = client.create_experiment(f"failover-{uuid.uuid4().hex[:8]}")
    run_id = client.create_run(experiment).info.run_id
    acknowledged: list[tuple[int, int]] = []
    failed: list[tuple[int, int, str]] = []
    lock = threading.Lock()
    killed = threading.Event()
    after_kill: dict[int, int] = {}
    per_client, clients = 60, 4

    def work(index: int) -> None:
        for step in range(per_client):
            try:
                client.log_metric(run_id, f"client-{index}", float(step), step=step)
            except Exception as exc:  # noqa: BLE001 - a failed write is counted, not fatal
                with lock:
                    failed.append((index, step, type(exc).__name__))
                continue
            with lock:
                acknowledged.append((index, step))
                if killed.is_set():
                    after_kill[index] = after_kill.get(index, 0) + 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 120
    while len(acknowledged) < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    died = aws_sim.network.kill("mlflow-1")
    killed.set()
    for thread in threads:
        thread.join(timeout=600)
    assert died > 0 and aws_sim.network.pids("mlflow-1") == []

    stored = set()
    for index in range(clients):
        history = client.get_metric_history(run_id, f"client-{index}")
        stored |= {(index, m.step) for m in history}
    lost = sorted(set(acknowledged) - stored)
    print(
        f"{len(acknowledged)} acknowledged ({sum(after_kill.values())} after the kill), {len(failed)} failed, "
        f"{len(stored)} stored, {len(lost)} lost; failures: {failed[:10]}"
    )
    assert lost == [], f"acknowledged writes missing from the store: {lost[:20]}"
    # Clients go on through mlflow-0: each one's writes after the failure succeeded.
    assert sorted(after_kill) == list(range(clients)), after_kill
    # At most the requests in flight on mlflow-1 when it died failed (one per client).
    assert len(failed) <= clients, failed
