"""A serving host's own nginx (the scaled layout: the load balancer's HTTPS target on each serving host),
rendered by the nginx role for a host of serving_servers and run for real in front of the platform's
serving app, which asks the platform's MLflow about each login.

The role renders it the way `make provision` does on such a host: a probe playbook beside site.yml
(a mirror of the repository made of links, so playbook_dir and group_vars are the real ones) with the
host in serving_servers and `mlops_topology: scaled`; only the ports and the certificate's place are
this test's. nginx then runs with that file on a free loopback port.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")]

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
PERSON = "data-scientist"


def _render(platform, ansible_probe_dir, free_port, work: Path, port: int) -> tuple[dict, str]:  # noqa: ANN001
    """(the role's decisions for the host, the server blocks it renders)."""
    probe_dir, env = ansible_probe_dir(work / "repo")
    inventory = work / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {
        "mlflow_servers": {"hosts": {}},
        "serving_servers": {"hosts": {"serving-0": {
            "ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3",
            "mlops_private_ip": "127.0.0.1"}}},
    }}}))
    out = work / "serving-front.conf"
    probe = [{
        "name": "Render a serving host's nginx front",
        "hosts": "serving_servers",
        "gather_facts": False,
        "vars": {
            "mlops_topology": "scaled",
            "serving_port": platform.ports["mlflow_port"] + 700,
            "nginx_https_port": port,
            "nginx_http_port": free_port(),
            "nginx_status_address": f"127.0.0.1:{free_port()}",
            "nginx_server_name": "localhost",
            "nginx_prefix": str(platform.path("config") / "nginx"),
        },
        "roles": [{"role": r, "when": False} for r in ("mlops", "serving", "nginx")],
        "tasks": [
            {"name": "decisions", "ansible.builtin.copy": {
                "content": "{{ {'front': mlops_serving_front | bool, 'nginx_front': nginx_front,"
                           " 'listen': nginx_listen_address, 'template': nginx_template_src} | to_json }}",
                "dest": str(work / "decisions.json")}},
            {"name": "server blocks", "ansible.builtin.template": {
                "src": str(ANSIBLE / "roles/nginx/templates/mlops.conf.j2"), "dest": str(out)}},
        ],
    }]
    (probe_dir / "probe.yml").write_text(yaml.safe_dump(probe, sort_keys=False, width=1000))
    result = subprocess.run([str(REPO / ".venv/bin/ansible-playbook"), "-i", str(inventory), "probe.yml"],
                            cwd=probe_dir, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return json.loads((work / "decisions.json").read_text()), out.read_text()


@pytest.fixture(scope="module")
def front(platform, tmp_path_factory, nginx_main_config, ansible_probe_dir,  # noqa: ANN001
          wait_until, free_port) -> Iterator[tuple[str, dict, str]]:  # noqa: ANN001
    """(URL of the serving host's nginx, the role's decisions, the rendered server blocks)."""
    work = tmp_path_factory.mktemp("serving-front")
    port = free_port()
    decisions, text = _render(platform, ansible_probe_dir, free_port, work, port)
    main = nginx_main_config(work, work / "serving-front.conf")
    proc = subprocess.Popen(["nginx", "-p", str(work), "-c", str(main), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)

    def listening() -> bool:
        assert proc.poll() is None, f"nginx did not start: {proc.stderr.read().decode()[-2000:]}"
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_until(listening, 20, "the serving host's nginx to listen")
        yield f"https://127.0.0.1:{port}", decisions, text
    finally:
        os.killpg(proc.pid, signal.SIGQUIT)
        proc.wait(timeout=30)


def _get(platform, url: str, user: str | None = None, password: str | None = None, **headers: str):  # noqa: ANN001, ANN202
    auth = (user, password if password is not None else platform.password(user)) if user else None
    return requests.get(url, auth=auth, headers=headers, verify=platform.ca_cert, timeout=30)


def test_a_serving_host_behind_the_load_balancer_gets_the_serving_front(front) -> None:  # noqa: ANN001
    _url, decisions, text = front
    assert decisions["front"] is True and decisions["nginx_front"] == "serving"
    assert decisions["listen"] == "127.0.0.1"  # the host's private address, as serving listens
    assert Path(decisions["template"]).resolve() == REPO / "nginx/serving-host.conf.template"
    assert "upstream mlflow" not in text and "prometheus" not in text


def test_health_needs_no_login_and_is_the_serving_apps(platform, front) -> None:  # noqa: ANN001
    url, _, _ = front
    response = _get(platform, f"{url}/health")
    assert response.status_code in (200, 503), response.text
    assert {"status", "model_name", "model_version"} <= set(response.json()), response.text


def test_serve_checks_every_login_with_mlflow(platform, front) -> None:  # noqa: ANN001
    url, _, _ = front
    assert _get(platform, f"{url}/serve/health").status_code == 401
    # A client's own check header changes nothing: nginx sets its own.
    assert _get(platform, f"{url}/serve/health", **{"X-Mlops-Login-Check": "none"}).status_code == 401
    assert _get(platform, f"{url}/serve/health", PERSON).status_code in (200, 503)
    assert _get(platform, f"{url}/serve/health", "svc-serving").status_code == 403  # may not predict
    for path in ("/", "/api/2.0/mlflow/experiments/search?max_results=1", "/prometheus/-/ready"):
        assert _get(platform, f"{url}{path}", PERSON).status_code == 404, path


def test_the_clients_address_reaches_mlflow_through_the_front(platform, front) -> None:  # noqa: ANN001
    """From a proxy of the private network (here loopback, the default), X-Forwarded-For names the client:
    MLflow logs (and limits) a failed login under that address, not the proxy's."""
    url, _, _ = front
    address = f"192.0.2.{int(uuid.uuid4().int % 200) + 20}"
    wrong = f"wrong-{uuid.uuid4().hex}"
    response = _get(platform, f"{url}/serve/health", PERSON, wrong, **{"X-Forwarded-For": address})
    assert response.status_code == 401
    line = f"failed login for user '{PERSON}' from {address}"
    log = platform.service_log("mlflow", line)
    assert line in log
    assert wrong not in log
