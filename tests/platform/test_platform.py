"""The single-node platform, for real: nginx -> MLflow (gunicorn) -> PostgreSQL + s3rver.

Tests run in file order against one private instance (see conftest.py); the restart test
comes last but one, so everything logged before it must survive `make down && make up`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from urllib.parse import quote

import boto3
import psycopg2
import pytest
import requests
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXPERIMENT = "platform-integration"
MODEL = "platform-integration-model"
ARTIFACT_BYTES = 20 * 1024 * 1024

CLIENT_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import mlflow, numpy as np, torch
    out = sys.argv[1]
    mlflow.set_experiment(%(experiment)r)
    with mlflow.start_run(run_name="integration") as run:
        mlflow.log_param("alpha", "0.5")
        mlflow.log_metric("rmse", 0.25, step=1)
        path = os.path.join(os.path.dirname(out), "blob.bin")
        with open(path, "wb") as f:
            f.write(os.urandom(%(size)d))
        mlflow.log_artifact(path, artifact_path="data")
        model = torch.nn.Linear(3, 1)
        info = mlflow.pytorch.log_model(model, name="model", registered_model_name=%(model)r,
                                        input_example=np.zeros((1, 3), dtype=np.float32))
    version = mlflow.MlflowClient().get_latest_versions(%(model)r)[0].version
    json.dump({"run_id": run.info.run_id, "experiment_id": run.info.experiment_id,
               "version": version}, open(out, "w"))
    """
) % {"experiment": EXPERIMENT, "model": MODEL, "size": ARTIFACT_BYTES}


def _auth(platform):
    return ("admin", platform.admin_password)


@pytest.fixture(scope="module")
def logged_run(platform, tmp_path_factory) -> dict:
    """A notebook-like client with nothing but local.env's variables logs a run and a model."""
    work = tmp_path_factory.mktemp("client")
    out = work / "result.json"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(work), **platform.env}
    result = subprocess.run(
        [sys.executable, "-c", CLIENT_SCRIPT, str(out)], env=env, cwd=work,
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(out.read_text())


def test_client_file_has_only_tracking_variables_and_is_private(platform):
    env_file = platform.state_dir / "local.env"
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert set(platform.env) == {
        "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_TRACKING_SERVER_CERT_PATH",
    }
    assert platform.env["MLFLOW_TRACKING_URI"].startswith("https://")


def test_health_is_public_and_deep(platform):
    response = requests.get(f"{platform.https}/health", verify=False, timeout=10)  # noqa: S501
    assert response.status_code == 200, response.text
    assert response.json()["backend_store"] == "ok"


def test_health_fails_when_postgresql_is_down(platform):
    name = f"{platform.instance}-postgresql"
    assert "stopped" in platform.supervisorctl("stop", name).stdout
    try:
        response = requests.get(f"{platform.https}/health", verify=False, timeout=30)  # noqa: S501
        assert response.status_code >= 500
    finally:
        assert "started" in platform.supervisorctl("start", name).stdout
    # Under load (CI runs two test groups at once) MLflow's pool can take a while to reconnect.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{platform.https}/health", verify=False, timeout=15).status_code == 200:  # noqa: S501
                break
        except requests.RequestException:
            pass
        time.sleep(1)
    else:
        pytest.fail("health did not recover within 120 s after PostgreSQL came back")


@pytest.mark.parametrize("auth", [None, ("admin", "wrong-password"), ("nobody", "x")])
def test_api_refuses_missing_or_wrong_credentials(platform, auth):
    response = requests.get(
        f"{platform.https}/api/2.0/mlflow/experiments/search?max_results=1",
        auth=auth, verify=platform.ca_cert, timeout=10,
    )
    assert response.status_code == 401


def test_api_accepts_right_credentials_with_the_public_host_name(platform):
    # MLflow refuses unknown Host headers with 403 while /health still says 200: only a real API
    # call with the name users reach nginx by proves the allowed-hosts setting.
    port = platform.ports["nginx_https_port"]
    response = requests.get(
        f"{platform.https}/api/2.0/mlflow/experiments/search?max_results=1",
        headers={"Host": f"{platform.server_name}:{port}"}, auth=_auth(platform),
        verify=False, timeout=10,  # noqa: S501 - the Host header differs from the URL's address
    )
    assert response.status_code == 200, response.text


def test_mlflows_security_middleware_is_on(platform):
    """MLflow's security middleware, on its Flask app under gunicorn's sync workers (mlflow.server.security; the ASGI
    worker's in tests/test_mlflow_asgi.py): a Host the platform does not serve (DNS rebinding) and a state change
    from a foreign Origin are refused before any login is looked at, and pages may not be framed by other sites."""
    api = f"{platform.https}/api/2.0/mlflow/experiments"
    foreign = requests.get(f"{api}/search?max_results=1", headers={"Host": "rebound.example.test"},
                           auth=_auth(platform), verify=False, timeout=10)  # noqa: S501 - the Host differs on purpose
    assert foreign.status_code == 403 and "Invalid Host header" in foreign.text, foreign.text
    cross = requests.post(f"{api}/create", json={"name": "cross-origin"}, auth=_auth(platform),
                          headers={"Origin": "https://elsewhere.example.test"}, verify=platform.ca_cert, timeout=10)
    assert cross.status_code == 403 and "Cross-origin request blocked" in cross.text, cross.text
    page = requests.get(f"{api}/search?max_results=1", auth=_auth(platform), verify=platform.ca_cert, timeout=10)
    assert page.status_code == 200 and page.headers.get("X-Frame-Options") == "SAMEORIGIN", dict(page.headers)


def test_http_redirects_to_https(platform):
    http = f"http://127.0.0.1:{platform.ports['nginx_http_port']}/some/page?x=1"
    response = requests.get(http, allow_redirects=False, timeout=10)
    assert response.status_code == 301
    assert response.headers["Location"] == f"https://127.0.0.1:{platform.ports['nginx_https_port']}/some/page?x=1"


def test_client_run_lands_in_postgresql_and_s3(platform, logged_run):
    s3 = boto3.client(
        "s3", endpoint_url=f"http://127.0.0.1:{platform.ports['s3server_port']}",
        aws_access_key_id="S3RVER", aws_secret_access_key="S3RVER", region_name="us-east-1",
    )
    keys = {
        obj["Key"]: obj["Size"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket="mlflow-artifacts")
        for obj in page.get("Contents", [])
    }
    blob = [k for k in keys if k.endswith(f"{logged_run['run_id']}/artifacts/data/blob.bin")]
    assert blob, f"20 MB artifact not in the bucket; keys: {sorted(keys)[:20]}"
    assert keys[blob[0]] == ARTIFACT_BYTES
    assert any("MLmodel" in k for k in keys), "logged model files not in the bucket"

    with psycopg2.connect(
        host="127.0.0.1", port=platform.ports["postgresql_port"], dbname="mlflow",
        user="mlflow", password=platform.db_password,
    ) as conn, conn.cursor() as cur:
        cur.execute("SELECT status FROM runs WHERE run_uuid = %s", (logged_run["run_id"],))
        assert cur.fetchone() == ("FINISHED",)
        cur.execute("SELECT value FROM params WHERE run_uuid = %s AND key = 'alpha'", (logged_run["run_id"],))
        assert cur.fetchone() == ("0.5",)
        cur.execute("SELECT version FROM model_versions WHERE name = %s", (MODEL,))
        assert (int(logged_run["version"]),) in cur.fetchall()


def test_only_nginx_listens_beyond_loopback(platform):
    ports = set(platform.ports.values())
    listeners = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    public = []
    for line in listeners.splitlines():
        local = line.split()[3]
        address, _, port = local.rpartition(":")
        if int(port) not in ports:
            continue
        loopback = address.startswith("127.") or address in {"[::1]", "::1"}
        if not loopback:
            public.append((int(port), line))
    nginx_ports = {platform.ports["nginx_https_port"], platform.ports["nginx_http_port"]}
    assert public, "nginx should listen on a non-loopback address"
    assert {port for port, _ in public} <= nginx_ports, public
    assert all("nginx" in line for _, line in public), public


def test_mlflow_runs_no_background_job_consumers(platform):
    """MLflow's GenAI job runner (huey consumers, ~230 MB each) is off unless mlflow_job_execution
    turns it on: the server's process group holds the gunicorn master and its workers only."""
    venv = str(platform.path("home") / "venv").encode() + b"/"
    mlflow, consumers = [], []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(venv):
            mlflow.append(cmdline)
            if b"huey" in cmdline or b"_job_runner" in cmdline:
                consumers.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    assert mlflow, f"no process runs from {venv.decode()}"
    assert consumers == []


def _raw_https(platform, request: bytes) -> bytes:
    """One request written as is over TLS (headers no HTTP library would send); the start of the answer."""
    import socket
    import ssl

    context = ssl.create_default_context(cafile=platform.ca_cert)
    context.check_hostname = False
    with socket.create_connection(("127.0.0.1", platform.ports["nginx_https_port"]), timeout=30) as raw, \
            context.wrap_socket(raw, server_hostname=platform.server_name) as tls:
        tls.sendall(request)
        return tls.recv(4096)


@pytest.mark.parametrize("request_head", [
    b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"x" * 70_000 + b"\r\nConnection: close\r\n\r\n",
    # Past what MLflow's gunicorn takes (100 fields): its 431, through nginx.
    b"GET /api/2.0/mlflow/experiments/search?max_results=1 HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\n"
    + b"".join(b"X-H%d: %s\r\n" % (i, b"y" * 100) for i in range(300)) + b"Connection: close\r\n\r\n",
    b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    # A body announced beyond /serve/'s limit: refused from the headers, before a byte of it is read.
    b"POST /serve/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 40000000\r\n"
    b"Connection: close\r\n\r\n",
], ids=["70 KB header", "300 headers", "20 KB path", "40 MB body to /serve"])
def test_oversized_requests_get_a_4xx_from_nginx(platform, request_head: bytes) -> None:
    import base64

    auth = b"Basic " + base64.b64encode(f"admin:{platform.admin_password}".encode())
    answer = _raw_https(platform, request_head.replace(b"{AUTH}", auth))
    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status < 500, answer[:300]
    assert requests.get(f"{platform.https}/health", verify=platform.ca_cert, timeout=10).status_code == 200


def test_health_with_many_headers_is_not_a_500(platform) -> None:
    # /health's MLflow probe once forwarded the client's headers: past gunicorn's 100, auth_request said 500.
    headers = b"".join(b"X-H%d: %s\r\n" % (i, b"y" * 100) for i in range(300))
    answer = _raw_https(platform, b"GET /health HTTP/1.1\r\nHost: x\r\n" + headers + b"Connection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]


TRAVERSALS = ["../../../../../../tmp/{marker}", "..%2F..%2F..%2F..%2F..%2F..%2Ftmp%2F{marker}",
              "%2e%2e/%2e%2e/%2e%2e/%2e%2e/tmp/{marker}", "%2Ftmp%2F{marker}"]


def _files_outside_the_bucket(platform) -> set[Path]:
    out = set()
    for d, dirs, files in os.walk(platform.path("data")):  # os.walk skips what vanishes while it walks
        dirs[:] = [x for x in dirs if x not in ("mlflow-artifacts", "postgresql")]
        out.update(Path(d) / f for f in files)
    return out


@pytest.mark.parametrize("template", TRAVERSALS)
def test_artifact_paths_cannot_leave_the_artifact_root(platform, logged_run, template: str) -> None:
    import uuid

    marker = f"escape-{uuid.uuid4().hex[:8]}"
    path = template.format(marker=marker)
    before = _files_outside_the_bucket(platform)
    run = f"{logged_run['experiment_id']}/{logged_run['run_id']}/artifacts"
    base = f"{platform.https}/api/2.0/mlflow-artifacts/artifacts"
    answers = [
        requests.put(f"{base}/{run}/{path}", data=b"evil", auth=_auth(platform), verify=platform.ca_cert, timeout=30),
        requests.put(f"{base}/{path}", data=b"evil", auth=_auth(platform), verify=platform.ca_cert, timeout=30),
        requests.get(f"{base}/{run}/{path}", auth=_auth(platform), verify=platform.ca_cert, timeout=30),
        requests.get(f"{platform.https}/get-artifact", params={"path": path, "run_uuid": logged_run["run_id"]},
                     auth=_auth(platform), verify=platform.ca_cert, timeout=30),
    ]
    for answer in answers:
        assert 400 <= answer.status_code < 500, (answer.request.method, answer.url, answer.status_code, answer.text)
    assert _files_outside_the_bucket(platform) == before
    # Where the traversals point, and anywhere in the instance (other test groups churn /tmp: not walked).
    assert not (Path("/tmp") / marker).exists()
    assert not [d for d, dirs, files in os.walk(platform.root) if marker in dirs or marker in files]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium is not installed (make test-deps)")
def test_browser_shows_the_logged_experiment(platform, logged_run, artifacts_dir, chromium_page):
    # A person's own local login (local.env's). Sign-on is on in every test instance: a browser opening the UI
    # goes to the provider, so a local account logs in at /oidc/password (the browser asks for the password
    # once) and the session cookie carries it through the UI's calls.
    person = platform.env["MLFLOW_TRACKING_USERNAME"]
    with chromium_page(person, platform.password(person)) as page:
        runs = f"/#/experiments/{logged_run['experiment_id']}/runs"
        page.goto(f"{platform.https}/oidc/password?next={quote(runs)}", timeout=60_000)
        assert "mlops_session" in {c["name"] for c in page.context.cookies()}
        page.get_by_text(EXPERIMENT).first.wait_for(timeout=60_000)
        # The run's name in the runs table (exact: the experiment's name contains it too).
        page.get_by_text("integration", exact=True).first.wait_for(timeout=60_000)
        page.screenshot(path=str(artifacts_dir / "mlflow-ui-experiment.png"), full_page=True)


def test_services_and_jobs_start_from_bytecode(platform):
    """The environments install without compiling every file (--no-compile: most of an install's CPU);
    every module the MLflow server, serving and the `mlops` jobs import at start has its bytecode there,
    written once as root (the service accounts cannot write it, and would compile at every start)."""
    repo = Path(__file__).resolve().parents[2]
    modules = []
    for role, key in (("mlflow", "__mlflow_start_modules"), ("serving", "__serving_start_modules")):
        modules += yaml.safe_load((repo / f"ansible/roles/{role}/vars/main.yml").read_text())[key]
    check = textwrap.dedent("""
        import importlib, importlib.util, os, sys
        for name in sys.argv[1:]:
            importlib.import_module(name)
        files = [m.__file__ for m in list(sys.modules.values()) if (getattr(m, "__file__", None) or "").endswith(".py")
                 and m.__file__.startswith(sys.prefix)]
        print(len(files))
        print("\\n".join(f for f in files if not os.path.exists(importlib.util.cache_from_source(f))))
    """)
    venv = platform.path("home") / "venv"
    result = subprocess.run([str(venv / "bin/python"), "-c", check, *modules], capture_output=True, text=True,
                            env={"PATH": os.environ["PATH"], "PYTHONDONTWRITEBYTECODE": "1"}, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    imported, *uncompiled = result.stdout.strip().splitlines()
    assert int(imported) > 500 and uncompiled == [], uncompiled[:20]
    markers = sorted(p.name for p in venv.glob(".mlops-bytecode-*"))
    assert markers == [".mlops-bytecode-mlflow", ".mlops-bytecode-serving"]


def test_services_may_run_on_every_cpu(platform):
    """Nothing `make up` starts is pinned to some CPUs (Mitogen's own CPU policy would pin every process
    it starts on a host, the services included, to all CPUs but the first: ansible/plugins/strategy)."""
    every = os.sched_getaffinity(0)
    pinned, seen = {}, 0
    for line in _instance_processes(platform):
        pid = int(line.split()[0])
        try:
            cpus = os.sched_getaffinity(pid)
        except OSError:  # gone meanwhile
            continue
        seen += 1
        if cpus != every:
            pinned[line.strip()[:120]] = sorted(cpus)
    assert seen >= 10, _instance_processes(platform)
    assert pinned == {}, pinned


def _instance_processes(platform) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    return [line for line in ps.splitlines() if str(platform.root) in line and "pytest" not in line]


# What a `make up` after `make down` and a rotated serving password may change: it starts supervisord and
# each program, and writes the rotated password where serving reads it (and says serving restarts with
# it). Anything else changing is a task that is not idempotent. (The simulation's second `make provision`
# checks changed=0 on every AWS host.)
UP_AFTER_DOWN_CHANGES = re.compile(r"\[(mlops : Start supervisord|mlops_service : Start \S+)\]")
ROTATED_LOGIN_CHANGES = ["[mlops_client : Write the service's own MLflow login",
                         "[serving : Have the serving app restarted when its MLflow credentials"]


def test_down_leaves_no_process_and_up_loses_nothing(platform, logged_run):
    """`make down` stops everything; the next `make up` starts it again, changing nothing else (idempotent:
    single sign-on and the monitoring role's webhook and `for:` overrides included, which the instance sets:
    tests/conftest.py), and loses nothing."""
    from typer.testing import CliRunner

    from mlops_cli.cli import app

    # A service credential rotated meanwhile (one command) is what serving logs in with once it is back.
    old = platform.password("svc-serving")
    rotated = CliRunner().invoke(app, ["users", "reset-password", "svc-serving"],
                                 env={"MLOPS_STATE_DIR": str(platform.state_dir)})
    assert rotated.exit_code == 0 and old not in rotated.output, rotated.output
    new = platform.password("svc-serving")
    platform.make("down")
    leftovers = _instance_processes(platform)
    assert not leftovers, leftovers
    # Run from a shell holding someone's MLflow login (a notebook's local.env, sourced): the programs never see it.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_USERNAME", "someone-in-the-shell")
        mp.setenv("MLFLOW_TRACKING_PASSWORD", "not-a-service-login")
        counts, changed = platform.up_again()
    assert counts[1:] == ("0", "0"), counts
    unexpected = [task for task in changed if not UP_AFTER_DOWN_CHANGES.match(task)]
    # Of the services' logins, only serving's password changed: one write, and serving restarts with it.
    assert len(unexpected) == len(ROTATED_LOGIN_CHANGES), "\n\n".join(unexpected)
    assert all(task.startswith(start) for task, start in zip(unexpected, ROTATED_LOGIN_CHANGES, strict=True))
    assert any("Start serving]" in task for task in changed), "\n\n".join(changed)
    pid = platform.supervisorctl("pid", f"{platform.instance}-serving").stdout.strip()
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert not [v for v in environ if v.startswith(b"MLFLOW_TRACKING_USERNAME")], "the shell's login reached serving"

    current = f"{platform.https}/api/2.0/mlflow/users/current"
    for password, status in ((old, 401), (new, 200)):
        answer = requests.get(current, auth=("svc-serving", password), verify=platform.ca_cert, timeout=30)
        assert answer.status_code == status, (status, answer.text[:200])
    serving_login = (platform.path("data") / "serving/.mlflow/credentials").read_text()
    assert f"mlflow_tracking_password = {new}" in serving_login and old not in serving_login
    # Serving, started by `make up` only after its login was rewritten, asks the registry for its champion
    # with the new login: an answer, not a refusal.
    def answered(health: dict) -> bool:
        return bool(health.get("model_version")) or "alias yet" in str(health.get("load_error"))

    deadline, health = time.monotonic() + 60, {}
    while not answered(health) and time.monotonic() < deadline:
        answer = requests.get(f"{platform.https}/serve/health", auth=("data-scientist", platform.password(
            "data-scientist")), verify=platform.ca_cert, timeout=30)
        health = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else {}
        time.sleep(0 if answered(health) else 2)
    assert answered(health), (health, (platform.path("log") / "serving.log").read_text(errors="replace")[-3000:])

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=platform.env["MLFLOW_TRACKING_URI"])
    env = platform.env
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        run = client.get_run(logged_run["run_id"])
        assert run.data.params["alpha"] == "0.5"
        assert run.data.metrics["rmse"] == 0.25
        artifacts = [a.path for a in client.list_artifacts(logged_run["run_id"], "data")]
        assert artifacts == ["data/blob.bin"]
        local = client.download_artifacts(logged_run["run_id"], "data/blob.bin", dst_path=str(platform.root))
        assert Path(local).stat().st_size == ARTIFACT_BYTES
        assert client.get_model_version(MODEL, logged_run["version"]).run_id == logged_run["run_id"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_rendered_systemd_units_verify(platform):
    units = sorted((platform.path("config") / "systemd").glob("*"))
    assert {u.name for u in units} >= {
        f"{platform.instance}-{name}.service" for name in ("postgresql", "s3server", "mlflow", "nginx")
    }
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *map(str, units)],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
