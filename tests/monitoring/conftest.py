"""The monitoring tests' platform: the operations instance (tests/conftest.py), with short periods.

Prometheus scrapes and evaluates every 5 s, Alertmanager groups for 1 s and delivers to a webhook
receiver these tests run on loopback, the retrain tick runs every minute (its dead-man's alert fires
after 2 minutes without a success) and the alerts under test wait seconds instead of minutes (their
`for:` overridden by name, monitoring_alert_for). They need an instance without a champion, so
`make test-monitoring-resilience` runs them before the resilience tests on the same instance;
`make test-monitoring` runs them alone, on an instance of their own (MLOPS_TEST_PORT_OFFSET moved by 300).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
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


@pytest.fixture(scope="session")
def platform(operations_platform):  # noqa: ANN001, ANN201 - overrides the session platform of tests/conftest.py
    """The instance shared with the resilience tests (tests/conftest.py: operations_platform)."""
    return operations_platform


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
