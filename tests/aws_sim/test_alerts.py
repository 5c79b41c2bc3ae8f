"""Alerts with two MLflow hosts: each runs Prometheus and Alertmanager, and the two Alertmanagers are one
cluster (gossip on the hosts' private addresses), so what both Prometheus servers see goes out once.

The simulation's monitoring runs on short periods (tests/aws_sim/conftest.py): scrapes every 15 s,
evaluations every 5 s, TargetDown after 20 s, the Alertmanagers' peer timeout 30 s.
"""

from __future__ import annotations

import json
import time

import pytest
import requests

pytestmark = [pytest.mark.aws_sim, pytest.mark.slow]

# The roles' default gossip port (monitoring_alertmanager_cluster_port: mlflow_port + 4094).
CLUSTER_PORT = 9094
# conftest.py's monitoring_alertmanager_peer_timeout and monitoring_group_wait.
PEER_TIMEOUT_S, GROUP_WAIT_S = 30, 1


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


def test_an_alert_both_prometheus_servers_raise_is_delivered_once(aws_sim) -> None:
    """The serving host's node exporter stops: both MLflow hosts' Prometheus raise TargetDown for it and
    both Alertmanagers hold the alert, yet the webhook never gets the same news twice; resolved when the
    exporter is back. Without the cluster each Alertmanager would deliver it.

    "The same news" is a notification of the alert's group with the same firing and resolved alerts: the
    group (TargetDown) may change meanwhile (a scrape of another target timing out on a loaded machine
    fires and resolves it), and each change is news that carries this alert again."""
    target = f"{aws_sim.address('serving-0')}:9100"
    mlflow_hosts = aws_sim.group("mlflow_servers")
    exporter = f"{aws_sim.instance}-node-exporter"

    def delivered(status: str) -> list[dict]:
        return [a for a in aws_sim.alerts.alerts("TargetDown", status)
                if a["labels"].get("instance") == target and a["startsAt"] >= started]

    def news() -> list[tuple[frozenset[str], frozenset[str]]]:
        """(firing, resolved) fingerprints of each delivered notification with this alert firing."""
        with aws_sim.alerts.lock:
            notifications = list(aws_sim.alerts.notifications)
        found = []
        for n in notifications:
            alerts = n.get("alerts", [])
            if any(a["status"] == "firing" and a["labels"].get("instance") == target and a["startsAt"] >= started
                   and a["labels"].get("alertname") == "TargetDown" for a in alerts):
                found.append(tuple(frozenset(a["fingerprint"] for a in alerts if a["status"] == status)
                                   for status in ("firing", "resolved")))
        return found

    def held_by(host: str) -> bool:
        alerts = _local_api(aws_sim, host, "alertmanager", "/api/v2/alerts", filter=f'instance="{target}"')
        return any(a["labels"]["alertname"] == "TargetDown" and a["status"]["state"] == "active" for a in alerts)

    def wait(what: str, predicate, timeout: float = 90) -> None:  # noqa: ANN001
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
            time.sleep(1)

    started = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 1))
    stopped = aws_sim.supervisorctl("stop", exporter, host="serving-0")
    assert "stopped" in stopped.stdout, stopped.stdout + stopped.stderr
    try:
        wait("both Alertmanagers to hold the alert", lambda: all(held_by(h) for h in mlflow_hosts))
        # The later one got it by now: it holds its notification for its group wait and the peer
        # timeout, then sends it unless the other one has. Past that, a duplicate would have arrived.
        time.sleep(GROUP_WAIT_S + PEER_TIMEOUT_S + 5)
        got = news()
        assert got, f"TargetDown for {target} was not delivered"
        assert len(got) == len(set(got)), f"the same TargetDown news for {target} was delivered twice: {got}"
    finally:
        started_again = aws_sim.supervisorctl("start", exporter, host="serving-0")
        assert "started" in started_again.stdout, started_again.stdout + started_again.stderr
    wait("the webhook to get the resolution", lambda: delivered("resolved"))
