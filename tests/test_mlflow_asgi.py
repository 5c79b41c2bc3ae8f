"""MLflow's ASGI app under gunicorn (``mlflow_worker_class: mlops.workers.MlflowWorker``), for real.

The platform instances run the default worker class (gunicorn's sync workers: MLflow's Flask app). This starts
``mlflow server --app-name mlops-auth`` with the ASGI worker, as the mlflow role's command and environment would
(its gunicorn options, the warning filter), on loopback with a SQLite store and local artifacts, and checks what
only the ASGI app has: routes MLflow's FastAPI app answers itself (artifacts, server info), where the platform's
login rules come from ``mlops.mlflow_auth.NativeRouteRules``.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from mlops.workers import MLFLOW_WORKER

REPO = Path(__file__).resolve().parents[1]
ROLE_VARS = yaml.safe_load((REPO / "ansible/roles/mlflow/vars/main.yml").read_text())
LIMIT = 3  # failed logins a minute for one user from one address; one worker, so one count


@dataclass
class Server:
    url: str
    admin: tuple[str, str]
    log: Path

    def put_user(self, name: str) -> tuple[str, str]:
        password = secrets.token_urlsafe(18)
        created = requests.post(f"{self.url}/api/2.0/mlflow/users/create", auth=self.admin, timeout=30,
                                json={"username": name, "password": password})
        assert created.status_code == 200, created.text
        return name, password


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, free_port: Callable[[], int]) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("mlflow-asgi")
    admin = ("admin", secrets.token_urlsafe(18))
    (root / "key").write_text(secrets.token_urlsafe(32))
    (root / "auth.ini").write_text(
        "[mlflow]\ndefault_permission = NO_PERMISSIONS\n"
        f"database_uri = sqlite:///{root}/auth.db\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        f"admin_username = {admin[0]}\nadmin_password = {admin[1]}\nauth_cache_ttl_seconds = 60\n"
        f"[mlops]\nsecret_key_file = {root}/key\nfailed_logins_per_minute = {LIMIT}\nstale_login_seconds = 60\n"
        "trusted_proxies = 127.0.0.1/32\n")
    env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(root / "auth.ini"),
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "PYTHONWARNINGS": ROLE_VARS["__mlflow_asgi_warnings"],
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        env.pop(name, None)
    subprocess.run([sys.executable, "-m", "mlops.mlflow_auth", "bootstrap"], env=env, check=True, capture_output=True)
    port, log = free_port(), root / "mlflow.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--app-name", "mlops-auth", "--workers", "1",
         "--gunicorn-opts", f"--worker-class {MLFLOW_WORKER} --timeout 60 --graceful-timeout 5",
         "--backend-store-uri", f"sqlite:///{root}/mlflow.db", "--serve-artifacts",
         "--artifacts-destination", str(root / "artifacts")],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(f"{url}/health", timeout=10).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or still loading the app
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        yield Server(url, admin, log)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def test_the_role_names_this_worker() -> None:
    assert ROLE_VARS["__mlflow_asgi_worker"] == MLFLOW_WORKER


def test_mlflows_asgi_app_answers_under_gunicorn(server: Server) -> None:
    """gunicorn runs the ASGI worker; MLflow's FastAPI-native route answers, its security middleware refuses a
    Host it does not serve, and MLflow's warning against --gunicorn-opts is not printed."""
    info = requests.get(f"{server.url}/api/3.0/mlflow/server-info", auth=server.admin, timeout=30)
    assert info.status_code == 200 and info.json()["store_type"] == "SqlStore", info.text
    foreign = requests.get(f"{server.url}/api/2.0/mlflow/experiments/search", auth=server.admin, timeout=30,
                           headers={"Host": "rebound.example.test"})
    assert foreign.status_code == 403 and "Invalid Host header" in foreign.text
    log = server.log.read_text()
    assert f"Using worker: {MLFLOW_WORKER}" in log and "We recommend using uvicorn" not in log


def test_native_routes_refuse_with_mlflows_json_and_keep_permissions(server: Server) -> None:
    """An artifact upload MLflow's FastAPI app answers: the admin writes and reads; a user without rights gets
    MLflow's JSON PERMISSION_DENIED naming them (not the auth app's plain text); the Flask side's rules hold."""
    user = server.put_user("asgi-reader")
    artifact = f"{server.url}/api/2.0/mlflow-artifacts/artifacts/0/notes.txt"
    assert requests.put(artifact, data=b"hello", auth=server.admin, timeout=30).status_code == 200
    assert requests.get(artifact, auth=server.admin, timeout=30).content == b"hello"
    refused = requests.put(artifact, data=b"no", auth=user, timeout=30)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error_code"] == "PERMISSION_DENIED" and "'asgi-reader'" in refused.json()["message"]
    assert requests.get(artifact, auth=server.admin, timeout=30).content == b"hello"
    check = requests.get(f"{server.url}/mlops-auth/check/create", auth=user, timeout=30)
    assert check.status_code == 403 and check.json()["error_code"] == "PERMISSION_DENIED"


def test_failed_logins_on_native_routes_are_limited_and_logged_without_the_password(server: Server) -> None:
    """As on the Flask routes (tests/platform/test_access.py): past the limit for one user from one address (nginx's
    X-Real-IP), that address gets 429 before any password is checked; another address still gets in."""
    name, password = server.put_user("asgi-person")
    wrong, path = f"wrong-{secrets.token_hex(8)}", "/api/2.0/mlflow-artifacts/artifacts/0/none.txt"

    def status(secret: str, address: str) -> int:
        return requests.get(f"{server.url}{path}", auth=(name, secret), headers={"X-Real-IP": address},
                            timeout=30).status_code

    assert [status(wrong, "192.0.2.30") for _ in range(LIMIT + 2)] == [401] * LIMIT + [429, 429]
    assert status(password, "192.0.2.30") == 429
    assert status(password, "192.0.2.31") == 403  # logged in; no right on experiment 0's artifacts
    assert status(wrong, "192.0.2.31") == 401
    log = server.log.read_text()
    assert f"failed login for user '{name}' from 192.0.2.30 (GET {path})" in log and wrong not in log
