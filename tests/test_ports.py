"""The private test instances that run side by side never share a port.

`make test` runs its groups two at a time, each with its own platform instance moved by a port offset.
An instance sets five ports; Ansible derives the rest from them (the roles' defaults). Every port of
every instance, derived ones included, is worked out here from the roles' own defaults, so a new
derived port or a new group's offset that lands on another instance's port fails here rather than as a
service that cannot bind in the middle of a CI run.
"""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
import yaml

REPO = Path(__file__).resolve().parents[1]
ROLES = REPO / "ansible" / "roles"


def _offsets() -> dict[str, int]:
    """Each test instance's offset: the main run's 0, each group's from its .mk file, the upgrade test's."""
    found = {"test-python": 0}
    for mk in sorted((REPO / "tests").glob("*/*.mk")):
        for target, offset in re.findall(
                r"^([\w-]+):.*?(?:\n\t.*?)*?MLOPS_TEST_PORT_OFFSET:-0\}\s*\+\s*(\d+)", mk.read_text(), re.M):
            found[target] = int(offset)
    upgrade = (REPO / "tests" / "operations" / "test_upgrade.py").read_text()
    found["test-upgrade"] = int(re.search(r'"MLOPS_TEST_PORT_OFFSET", "0"\)\)\s*\+\s*(\d+)', upgrade)[1])
    return found


def _defaults() -> dict[str, str]:
    """Every role default that names a port (`*_port`) or a listen address with a port (`*_status_address`)."""
    merged: dict[str, str] = {}
    for defaults in sorted(ROLES.glob("*/defaults/main.yml")):
        for key, value in (yaml.safe_load(defaults.read_text()) or {}).items():
            if key.endswith("_port") or key.endswith("_status_address"):
                merged[key] = value
    return merged


def _resolved_ports(set_by_test: dict[str, int]) -> dict[str, int]:
    """The ports an instance ends up with: the test's values over the roles' defaults, templates resolved
    (in as many passes as templates refer to templates)."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701 - ports, not HTML
    values: dict[str, object] = {**_defaults(), **set_by_test}
    for _ in range(5):
        for key, value in values.items():
            if isinstance(value, str) and "{{" in value:
                try:
                    values[key] = env.from_string(value).render(values)
                except jinja2.UndefinedError:
                    continue
    ports = {}
    for key, value in values.items():
        text = str(value)
        assert "{{" not in text, f"{key} did not resolve: {text}"
        ports[key] = int(text.rsplit(":", 1)[-1])
    return ports


def test_the_offsets_are_the_groups():
    offsets = _offsets()
    # The groups with an instance of their own besides the main run (a group lost by the parsing would
    # silently drop out of the check below).
    assert {"test-monitoring-resilience", "test-resilience", "test-monitoring", "test-upgrade"} <= set(offsets), offsets
    assert len(set(offsets.values())) == len(offsets), f"two groups share an offset: {offsets}"


def test_no_two_test_instances_share_a_port(instance_ports):  # noqa: ANN001
    owners: dict[int, str] = {}
    for group, offset in _offsets().items():
        ports = _resolved_ports(instance_ports(offset))
        # The rendezvous port is the trainers' (not a listener of the tracking host); the database port
        # is where MLflow reaches an external database (postgresql_port on a single node).
        ports.pop("trainer_rendezvous_port", None)
        ports.pop("mlflow_db_port", None)
        mine: dict[int, str] = {}
        for key, port in sorted(ports.items()):
            if key == "nginx_public_https_port":
                continue  # the port clients see, the same listener as nginx_https_port
            assert port not in mine, f"{group}: {key} and {mine[port]} are both {port}"
            mine[port] = key
            assert port not in owners, f"{group}'s {key} is {port}, which {owners[port]} uses"
        owners.update({port: f"{group}'s {key}" for port, key in mine.items()})


def test_the_check_sees_a_clash(instance_ports):  # noqa: ANN001
    # The layout this replaced: the S3 store at 19000 + offset, the node exporter at mlflow_port + 4100.
    low = _resolved_ports({**instance_ports(0), "s3server_port": 19000})
    high = _resolved_ports({**instance_ports(100), "s3server_port": 19100})
    assert low["node_exporter_port"] == high["s3server_port"] == 19100
