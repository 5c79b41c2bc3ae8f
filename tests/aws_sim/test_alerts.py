"""Alerts with two MLflow hosts: each runs Prometheus and Alertmanager, and the two Alertmanagers are one
cluster (gossip on the hosts' private addresses), which deduplicates what both Prometheus servers raise.
"""

from __future__ import annotations

import json
import time

import pytest
import requests

pytestmark = [pytest.mark.aws_sim, pytest.mark.slow]

# The roles' default gossip port (monitoring_alertmanager_cluster_port: mlflow_port + 4094).
CLUSTER_PORT = 9094


def _local_api(aws_sim, host: str, service: str, path: str, **params: str):  # noqa: ANN001, ANN202
    """GET ``path`` of ``service`` (prometheus, alertmanager) on ``host``'s loopback, from inside that host."""
    platform = json.loads((aws_sim.state_dir / "platform.json").read_text())
    base = next(s for s in platform["services"] if s["name"] == service)["probe"]["url"].removesuffix("/-/ready")
    url = requests.Request("GET", f"{base}{path}", params=params).prepare().url
    return json.loads(aws_sim.network.run(host, ["curl", "-sSf", "--max-time", "10", url], check=True).stdout)


def test_the_mlflow_hosts_alertmanagers_are_one_cluster(aws_sim) -> None:
    """Each MLflow host's Alertmanager is ready in a cluster of both, each member on its private address."""
    members = {f"{aws_sim.address(h)}:{CLUSTER_PORT}" for h in aws_sim.group("mlflow_servers")}
    for host in aws_sim.group("mlflow_servers"):
        deadline = time.monotonic() + 60
        while True:
            cluster = _local_api(aws_sim, host, "alertmanager", "/api/v2/status")["cluster"]
            peers = {p["address"] for p in cluster.get("peers") or []}
            if (cluster["status"] == "ready" and peers == members) or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert cluster["status"] == "ready" and peers == members, (host, cluster)

