"""Alerts with two MLflow hosts: each runs Prometheus and Alertmanager, and the two Alertmanagers are one
cluster (gossip on the hosts' private addresses), which deduplicates what both Prometheus servers raise.
"""

from __future__ import annotations

import time

import pytest

pytestmark = [pytest.mark.aws_sim, pytest.mark.slow]

# The roles' default gossip port (monitoring_alertmanager_cluster_port: mlflow_port + 4094).
CLUSTER_PORT = 9094


def test_the_mlflow_hosts_alertmanagers_are_one_cluster(aws_sim) -> None:
    """Each MLflow host's Alertmanager is ready in a cluster of both, each member on its private address."""
    members = {f"{aws_sim.address(h)}:{CLUSTER_PORT}" for h in aws_sim.group("mlflow_servers")}
    for host in aws_sim.group("mlflow_servers"):
        deadline = time.monotonic() + 60
        while True:
            cluster = aws_sim.local_api(host, "alertmanager", "/api/v2/status")["cluster"]
            peers = {p["address"] for p in cluster.get("peers") or []}
            if (cluster["status"] == "ready" and peers == members) or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert cluster["status"] == "ready" and peers == members, (host, cluster)

