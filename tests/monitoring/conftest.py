"""The monitoring group's own private platform (`make test-monitoring`) with short periods.

Prometheus scrapes and evaluates every 5 s, Alertmanager groups for 1 s and delivers to a webhook
receiver these tests run on loopback, the retrain tick runs every minute (its dead-man's alert fires
after 2 minutes without a success) and the alerts under test wait seconds instead of minutes (their
`for:` overridden by name, monitoring_alert_for). It runs beside the other test groups, so the make
target moves MLOPS_TEST_PORT_OFFSET by 300.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave the end-to-end tests (marker ``monitoring``, their own instance) out of runs that do not ask for
    them (`-m monitoring`); the rule checks beside them (test_rules.py) run everywhere."""
    if "monitoring" in (config.getoption("markexpr") or ""):
        return
    mine = [item for item in items if item.get_closest_marker("monitoring")]
    if mine:
        config.hook.pytest_deselected(items=mine)
        items[:] = [item for item in items if item not in mine]


@dataclass
class Receiver:
    """Alertmanager's webhook target: keeps every notification it gets."""

    url: str
    notifications: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def alerts(self, name: str, status: str = "firing") -> list[dict[str, Any]]:
        with self.lock:
            return [a for n in self.notifications for a in n.get("alerts", [])
                    if a.get("labels", {}).get("alertname") == name and a.get("status") == status]

    def wait_for(self, name: str, timeout: float, status: str = "firing") -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.alerts(name, status)
            if found:
                return found[-1]
            time.sleep(1)
        with self.lock:
            got = sorted({a["labels"].get("alertname", "?") for n in self.notifications for a in n.get("alerts", [])})
        pytest.fail(f"no {status} {name} notification within {timeout:.0f} s (got: {got or 'none'})")


def _serve_receiver() -> tuple[Receiver, ThreadingHTTPServer]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    receiver = Receiver(f"http://127.0.0.1:{port}/alerts")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with receiver.lock:
                receiver.notifications.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver, server


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    found, server = _serve_receiver()
    yield found
    server.shutdown()


# Short periods (see the module docstring); everything else is the platform's defaults.
def instance_vars(receiver: Receiver) -> dict[str, object]:
    return {
        "serving_compile": "false",
        "monitoring_scrape_interval": "5s",
        "monitoring_evaluation_interval": "5s",
        "monitoring_group_wait": "1s",
        "monitoring_group_interval": "5s",
        "monitoring_repeat_interval": "1m",
        "monitoring_webhook_url": receiver.url,
        "monitoring_alert_for": json.dumps({"ServingHighErrorRatio": "15s", "RetrainTickMissed": "0s"}),
        "retrain_cron": '"* * * * *"',
        "retrain_on_calendar": "minutely",
        "retrain_randomized_delay": 0,
    }


@pytest.fixture(scope="session")
def platform(platform_factory, receiver):  # noqa: ANN001, ANN201 - overrides the session platform of tests/conftest.py
    with platform_factory(instance_vars(receiver)) as instance:
        yield instance


@dataclass
class Prometheus:
    """The instance's Prometheus through nginx (/prometheus/, basic auth), as a person reaches it."""

    base: str
    auth: tuple[str, str]
    verify: str

    def get(self, path: str, **params: object) -> httpx.Response:
        return httpx.get(f"{self.base}{path}", params=params, auth=self.auth, verify=self.verify, timeout=30)

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = self.get("/api/v1/query", query=expr)
        answer.raise_for_status()
        return answer.json()["data"]["result"]

    def wait_query(self, expr: str, timeout: float, what: str) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.query(expr)
            if found:
                return found
            time.sleep(2)
        pytest.fail(f"{what}: `{expr}` stayed empty for {timeout:.0f} s")


@pytest.fixture(scope="session")
def prometheus(platform) -> Prometheus:  # noqa: ANN001
    return Prometheus(f"{platform.https}/prometheus", ("admin", platform.admin_password), platform.ca_cert)
