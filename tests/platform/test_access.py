"""Team access on the real platform: people and service identities with the platform's roles (MLflow's
auth app with mlops.mlflow_auth's rules), reached through nginx as users reach it.

`make up` provisions one person (the inventory's data scientist) and every service identity; a
second person, a viewer, is added here with `mlops users`, as an admin would.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from typer.testing import CliRunner

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PERSON = "data-scientist"
VIEWER = "viewer-it"
SERVICES = {"svc-gate": "model-gate", "svc-retrain": "retrain", "svc-serving": "serving", "svc-trainer": "trainer",
            "svc-prometheus": "monitor"}


def _cli(platform, *args: str):  # noqa: ANN001, ANN202
    from mlops_cli.cli import app

    return CliRunner().invoke(app, ["users", *args], env={"MLOPS_STATE_DIR": str(platform.state_dir)})


@pytest.fixture(scope="module")
def as_user(platform, patched_environ):  # noqa: ANN001, ANN201 - a context manager factory
    """``with as_user(name) as client:`` an MLflow client through nginx with that login."""
    import contextlib

    @contextlib.contextmanager
    def login(name: str) -> Iterator[MlflowClient]:
        env = platform.env_as(name)
        with patched_environ(env):
            yield MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])

    return login


@pytest.fixture(scope="module")
def viewer(platform) -> str:  # noqa: ANN001
    result = _cli(platform, "add", VIEWER, "--role", "viewer")
    assert result.exit_code == 0, result.output
    assert f"mlflow-{VIEWER}" in result.output and platform.password(VIEWER) not in result.output
    return VIEWER


@pytest.fixture(scope="module")
def model(as_user) -> tuple[str, str, str]:  # noqa: ANN001
    """A run of the data scientist's and a registered version of it: (run id, model name, version)."""
    name = f"access-it-{uuid.uuid4().hex[:6]}"
    with as_user(PERSON) as client:
        experiment = client.create_experiment(f"access-it-{uuid.uuid4().hex[:6]}")
        # The client says it is someone else; the server records who logged in.
        run = client.create_run(experiment, tags={"mlflow.user": "somebody-else"})
        client.log_metric(run.info.run_id, "accuracy", 0.9)
        client.set_terminated(run.info.run_id)
        client.create_registered_model(name)
        version = client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    return run.info.run_id, name, version.version


def _refused(call, status: int = 403) -> str:  # noqa: ANN001
    with pytest.raises(MlflowException) as info:
        call()
    assert f"{status}" in str(info.value) or info.value.error_code in {"PERMISSION_DENIED", "UNAUTHENTICATED"}
    return str(info.value)


def test_make_up_provisions_the_person_and_every_service_identity(platform, viewer) -> None:  # noqa: ANN001
    result = _cli(platform, "list")
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1:] for line in result.output.splitlines()[1:]}
    assert rows[PERSON] == ["data-scientist", "no"] and rows[viewer] == ["viewer", "no"]
    assert rows["admin"][-1] == "yes"
    for name, role in SERVICES.items():
        assert rows[name] == [role, "no"], name
    for name in (PERSON, "admin", *SERVICES):
        assert (platform.state_dir / "credentials" / f"mlflow-{name}").stat().st_mode & 0o777 == 0o600
    assert (platform.state_dir / "admin.env").stat().st_mode & 0o777 == 0o600
    assert platform.env["MLFLOW_TRACKING_USERNAME"] == PERSON


def test_a_run_records_the_person_who_logged_in(as_user, model) -> None:  # noqa: ANN001
    run_id, _, _ = model
    with as_user(VIEWER) as client:
        run = client.get_run(run_id)
    assert run.info.user_id == PERSON and run.data.tags["mlflow.user"] == PERSON


def test_a_viewer_reads_everything_and_changes_nothing(as_user, viewer, model) -> None:  # noqa: ANN001
    run_id, name, version = model
    with as_user(viewer) as client:
        assert client.get_run(run_id).data.metrics["accuracy"] == 0.9
        assert client.get_model_version(name, version).version == version
        message = _refused(lambda: client.create_experiment(f"viewer-{uuid.uuid4().hex[:6]}"))
        assert "may not create experiments" in message
        _refused(lambda: client.delete_run(run_id))
        _refused(lambda: client.log_metric(run_id, "accuracy", 0.1))
        _refused(lambda: client.set_registered_model_alias(name, "champion", version))
        _refused(lambda: client.create_registered_model(f"viewer-{uuid.uuid4().hex[:6]}"))


def test_only_the_gate_moves_the_champion(as_user, model) -> None:  # noqa: ANN001
    _, name, version = model
    with as_user(PERSON) as client:
        message = _refused(lambda: client.set_registered_model_alias(name, "champion", version))
        assert "PERMISSION_DENIED" in message and "model-gate" in message, message
        _refused(lambda: client.transition_model_version_stage(name, version, "Production"))
        client.set_registered_model_alias(name, "candidate", version)  # other aliases are the team's
    with as_user("svc-gate") as client:
        client.set_registered_model_alias(name, "champion", version)
        assert client.get_model_version_by_alias(name, "champion").version == version
    with as_user(PERSON) as client:
        _refused(lambda: client.delete_registered_model_alias(name, "champion"))


def test_only_the_gate_writes_its_records_and_anyone_may_ask_in_their_own_name(as_user, model, platform) -> None:  # noqa: ANN001
    from mlops_cli import jobs

    _, name, version = model
    with as_user(PERSON) as client:
        message = _refused(lambda: client.set_model_version_tag(name, version, "promotion_requested_by", "svc-gate"))
        assert "only in their own name" in message, message
        _refused(lambda: client.set_model_version_tag(name, version, "promotion_verdict", "promoted"))
        client.set_model_version_tag(name, version, "promotion_requested_by", PERSON)
        _refused(lambda: client.delete_model_version_tag(name, version, "promotion_requested_by"))
        client.set_model_version_tag(name, version, "notes", "the team's own tags stay the team's")
    with as_user("svc-retrain") as client:  # the retrain job asks too (it may not promote either)
        client.set_model_version_tag(name, version, "promotion_requested_by", "svc-retrain")
        _refused(lambda: client.set_registered_model_alias(name, "champion", version))
    with as_user("svc-gate") as client:
        assert client.get_model_version(name, version).tags["promotion_requested_by"] == "svc-retrain"
        client.delete_model_version_tag(name, version, "promotion_requested_by")
    # The gate's scheduled job logs in as the gate (its own credentials file) and finds nothing to judge
    # for the platform's model here.
    log = platform.path("log") / "job-gate.log"
    before = log.stat().st_size if log.exists() else 0
    result = jobs.run_job(jobs.load_platform(platform.state_dir / "platform.json"), "gate", timeout=300)
    assert result.returncode == 0, result.output
    with log.open() as f:
        f.seek(before)
        assert "No pending promotion request" in f.read(), log.read_text()[-2000:]


def test_serving_reads_its_model_and_writes_nothing(as_user, model, platform, viewer) -> None:  # noqa: ANN001
    run_id, name, version = model
    with as_user("svc-serving") as client:
        assert client.get_run(run_id).info.run_id == run_id
        _refused(lambda: client.create_experiment(f"serving-{uuid.uuid4().hex[:6]}"))
        _refused(lambda: client.log_metric(run_id, "accuracy", 0.1))
        _refused(lambda: client.set_registered_model_alias(name, "champion", version))
    # ...and cannot call the serving endpoint nor open Prometheus (those are people's).
    for path, allowed in (("/serve/health", {PERSON}), ("/prometheus/-/ready", {PERSON, VIEWER, "svc-prometheus"})):
        for user in ("svc-serving", PERSON, VIEWER, "svc-prometheus"):
            status = requests.get(f"{platform.https}{path}", auth=(user, platform.password(user)),
                                  verify=platform.ca_cert, timeout=30).status_code
            assert (status in {200, 503}) == (user in allowed), (path, user, status)


def _program_account(platform, program: str) -> pwd.struct_passwd:  # noqa: ANN001
    """The account a program runs as: serving's process (and its workers) or a job's cron line."""
    if program != "serving":
        from mlops_cli import jobs

        return pwd.getpwnam(jobs.cron_entry(platform.instance, program)[1])
    pid = platform.supervisorctl("pid", f"{platform.instance}-serving").stdout.strip()
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    uid = int(next(line for line in status if line.startswith("Uid:")).split()[1])
    workers = [p for p in Path("/proc").glob("[0-9]*") if (p / "status").exists()
               and f"PPid:\t{pid}" in (p / "status").read_text()]
    assert workers and all(f"Uid:\t{uid}\t" in (w / "status").read_text() for w in workers)
    return pwd.getpwuid(uid)


@pytest.mark.parametrize(("program", "user"), [("serving", "mlops-serving"), ("retrain", "mlops-retrain"),
                                               ("gate", "mlops-gate")])
def test_program_runs_as_its_own_account_and_reads_no_other_secret(platform, program, user) -> None:  # noqa: ANN001
    """Serving loads models, which may run code; the retrain job trains on data; the gate job moves
    @champion. Each runs as an account of its own, outside the platform's group, and can read its own
    MLflow login and pgpass copy but none of MLflow's files (auth.ini with the admin's password, the
    Flask key, the store's pgpass) nor the other programs' logins: the retrain job cannot act as the gate."""
    account = _program_account(platform, program)
    assert account.pw_name == user
    assert grp.getgrnam("mlops").gr_gid not in os.getgrouplist(account.pw_name, account.pw_gid)

    def readable(path: Path) -> bool:
        return subprocess.run(["runuser", "-u", account.pw_name, "--", "cat", str(path)],
                              capture_output=True, timeout=30, check=False).returncode == 0

    config, data = platform.path("config"), platform.path("data")
    own = [data / program / ".mlflow/credentials", data / program / ".pgpass"]
    for path in own:
        assert (path.stat().st_uid, path.stat().st_mode & 0o777) == (account.pw_uid, 0o600), path
        assert readable(path), path
    others = [config / "mlflow/auth.ini", config / "mlflow/flask-secret-key", config / "mlflow/pgpass",
              config / "monitoring/pgpass", data / "gc/.mlflow/credentials",
              *(data / other / name for other in ("serving", "retrain", "gate") if other != program
                for name in (".mlflow/credentials", ".pgpass"))]
    for path in others:
        assert path.is_file() and not readable(path), f"{program}'s account can read {path}"
    # The jobs publish their results for Prometheus (the metrics group); serving does not need to.
    metrics_writable = subprocess.run(["runuser", "-u", account.pw_name, "--", "test", "-w",
                                       str(platform.path("data") / "metrics")], check=False).returncode == 0
    assert metrics_writable == (program != "serving"), program


def test_missing_or_wrong_logins_are_401_everywhere(platform) -> None:  # noqa: ANN001
    for path in ("/api/2.0/mlflow/experiments/search?max_results=1", "/serve/health", "/prometheus/-/ready",
                 "/metrics"):
        for auth in (None, (PERSON, "wrong-password")):
            answer = requests.get(f"{platform.https}{path}", auth=auth, verify=platform.ca_cert, timeout=30)
            assert answer.status_code == 401, (path, auth and auth[0], answer.status_code)
            assert answer.headers.get("WWW-Authenticate", "").startswith("Basic"), path


def test_users_cli_refuses_bad_input_in_one_line(platform) -> None:  # noqa: ANN001
    for args, words in ((["add", "bad name", "--role", "viewer"], "invalid user name"),
                        (["add", "x-it", "--role", "wizard"], "unknown role 'wizard'"),
                        (["set-role", "nobody-it", "viewer"], "no user 'nobody-it'"),
                        (["remove", "admin"], "is an admin")):
        result = _cli(platform, *args)
        assert result.exit_code == 2, result.output
        assert words in result.output and len(result.output.strip().splitlines()) == 1, result.output


def test_a_removed_person_is_refused_and_their_runs_stay(platform, as_user) -> None:  # noqa: ANN001
    name = f"leaver-{uuid.uuid4().hex[:6]}"
    assert _cli(platform, "add", name, "--role", "data-scientist").exit_code == 0
    with as_user(name) as client:
        experiment = client.create_experiment(f"leaver-{uuid.uuid4().hex[:6]}")
        run_id = client.create_run(experiment).info.run_id
    password = platform.password(name)
    result = _cli(platform, "remove", name)
    assert result.exit_code == 0, result.output
    assert not (platform.state_dir / "credentials" / f"mlflow-{name}").exists()

    def status() -> int:
        return requests.get(f"{platform.https}/api/2.0/mlflow/users/current", auth=(name, password),
                            verify=platform.ca_cert, timeout=30).status_code

    deadline = time.monotonic() + 40  # each worker's credential cache lets the login go (10 s here)
    while any(status() != 401 for _ in range(4)):
        assert time.monotonic() < deadline, "a removed user still logs in after the cache period"
        time.sleep(2)
    with as_user("admin") as client:
        assert client.get_run(run_id).info.user_id == name


def test_a_rotated_password_replaces_the_old_one(platform) -> None:  # noqa: ANN001
    """`mlops users reset-password`: the new password works at once; the old one is refused as soon as
    every worker's credential cache (auth_cache_ttl_seconds: 10 s on test instances) has let it go."""
    name = f"rotate-{uuid.uuid4().hex[:6]}"
    assert _cli(platform, "add", name, "--role", "viewer").exit_code == 0
    old = platform.password(name)
    url = f"{platform.https}/api/2.0/mlflow/users/current"

    def status(password: str) -> int:
        return requests.get(url, auth=(name, password), verify=platform.ca_cert, timeout=30).status_code

    assert status(old) == 200
    result = _cli(platform, "reset-password", name)
    assert result.exit_code == 0 and old not in result.output, result.output
    new = platform.password(name)
    assert new != old and status(new) == 200
    deadline = time.monotonic() + 40
    while any(status(old) != 401 for _ in range(4)):  # both workers, several tries each
        assert time.monotonic() < deadline, "the old password still works after the cache period"
        time.sleep(2)
    assert _cli(platform, "remove", name).exit_code == 0


def test_status_reports_the_auth_mode(platform) -> None:  # noqa: ANN001
    from mlops_cli.status import platform_status, render_status

    report = platform_status(platform.state_dir / "platform.json")
    assert report.auth_ok and "anonymous API call refused (401)" in report.auth, report.auth
    assert "Logins: MLflow auth app mlops-auth" in render_status(report)
    assert "single sign-on through http://127.0.0.1:" in report.auth, report.auth  # the test instance's provider


def test_bench_auth_compares_tracking_through_nginx_with_loopback_and_loses_nothing(platform, tmp_path) -> None:  # noqa: ANN001
    """`mlops bench auth --asgi` on a `make up` host: the person through nginx vs MLflow without its auth app
    started on the platform's store (platform.json's mlflow_server: its Flask app under the platform's gunicorn
    options) and MLflow's ASGI app beside it, every acknowledged metric read back. A short run: the figures
    themselves are the benchmark's (README), not a test's."""
    out = tmp_path / "bench-auth.json"
    result = subprocess.run([sys.executable, "-m", "mlops_cli", "bench", "auth", "--no-serving", "--asgi",
                             "--requests", "200", "--rounds", "2", "--json", str(out)], capture_output=True, text=True,
                            timeout=600, env={**os.environ, "MLOPS_STATE_DIR": str(platform.state_dir)}, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    bench = json.loads(out.read_text())
    through, loopback, asgi = bench["tracking"]["results"]
    assert through["target"].startswith("log_metric through nginx") and PERSON in through["target"]
    assert "ASGI" in asgi["target"] and bench["tracking"]["baseline"]["app"] == "flask"
    for row in (through, loopback, asgi):
        assert row["ok"] == row["stored"] == 200 and row["failed"] == 0 and row["lost"] == 0, row
    assert bench["summary"]["tracking_ratio"] > 0 and bench["summary"]["asgi_ratio"] > 0
    assert "serving_ratio" not in bench["summary"]


def test_failed_logins_are_limited_and_logged_without_the_password(platform) -> None:  # noqa: ANN001
    """From one address (as nginx reports it: X-Real-IP), past 10 failed logins a minute for one user in
    a worker the address gets 429 before any password is checked; the user from elsewhere, and the right
    password from elsewhere, still get in. The log names the user and address, never the password."""
    mlflow = f"http://127.0.0.1:{platform.ports['mlflow_port']}/api/2.0/mlflow/users/current"
    name, wrong = PERSON, f"wrong-{uuid.uuid4().hex}"

    def status(password: str, address: str) -> int:
        return requests.get(mlflow, auth=(name, password), headers={"X-Real-IP": address}, timeout=30).status_code

    # Each gunicorn worker counts on its own and locks at its 10th failure. A locked worker answers at
    # once, so it may take most of the next requests while the other one is still checking passwords:
    # try until every worker has failed 10 times (it fails no more once locked).
    workers = yaml.safe_load((REPO / "ansible/roles/mlflow/defaults/main.yml").read_text())["mlflow_workers"]
    statuses: list[int] = []
    while statuses.count(401) < 10 * workers and len(statuses) < 100 * workers:
        statuses.append(status(wrong, "192.0.2.10"))
    assert statuses[0] == 401 and statuses.count(401) == 10 * workers and set(statuses) <= {401, 429}, statuses
    assert status(platform.password(name), "192.0.2.10") == 429  # locked out for the minute, right or wrong
    assert status(wrong, "192.0.2.10") == 429
    assert status(platform.password(name), "192.0.2.11") == 200
    assert status(wrong, "192.0.2.11") == 401
    line = f"failed login for user '{name}' from 192.0.2.10"
    log = platform.service_log("mlflow", line)
    assert line in log
    assert wrong not in log


def test_the_clients_address_behind_a_private_proxy_reaches_mlflow(platform) -> None:  # noqa: ANN001
    """nginx takes the client's address from X-Forwarded-For when the peer is a proxy of the private
    network (the load balancer, a serving host; loopback where none is configured): MLflow logs (and
    limits) a failed login under that address, not the proxy's."""
    address, wrong = "198.51.100.23", f"wrong-{uuid.uuid4().hex}"
    response = requests.get(f"{platform.https}/api/2.0/mlflow/experiments/search?max_results=1",
                            auth=(PERSON, wrong), headers={"X-Forwarded-For": f"203.0.113.9, {address}"},
                            verify=platform.ca_cert, timeout=30)
    assert response.status_code == 401
    line = f"failed login for user '{PERSON}' from {address}"
    log = platform.service_log("mlflow", line)
    # The rightmost address that is not a trusted proxy: what the proxy saw, not what the client wrote.
    assert line in log
    assert "from 203.0.113.9" not in log and wrong not in log


def test_no_login_secret_in_processes_logs_or_ansible_output(platform) -> None:  # noqa: ANN001
    secrets = [path.read_text().strip().encode() for path in (platform.state_dir / "credentials").glob("mlflow-*")]
    assert len(secrets) >= 7 and all(len(secret) >= 24 for secret in secrets)
    seen = 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline, environ = (proc / "cmdline").read_bytes(), (proc / "environ").read_bytes()
        except OSError:
            continue
        if str(platform.root).encode() not in cmdline:
            continue
        seen += 1
        for secret in secrets:
            assert secret not in cmdline and secret not in environ, f"a login secret in process {proc.name}"
    assert seen >= 5, "the instance's processes were not found"
    for path in platform.path("log").rglob("*"):
        if path.is_file():
            text = path.read_bytes()
            assert not any(secret in text for secret in secrets), f"a login secret in {path}"
    assert platform.up_output and not any(secret.decode() in platform.up_output for secret in secrets)


def test_a_missing_model_is_404_to_whoever_could_read_it_and_403_to_others(as_user) -> None:  # noqa: ANN001
    """MLflow refuses requests on models that do not exist (no probing of names); the platform answers
    "not found" to users who could read any model of that name ("no champion yet" stays a 404)."""
    name = f"never-registered-{uuid.uuid4().hex[:6]}"
    for user in (PERSON, "svc-gate"):
        with as_user(user) as client, pytest.raises(MlflowException) as info:
            client.get_model_version_by_alias(name, "champion")
        assert info.value.error_code == "RESOURCE_DOES_NOT_EXIST", (user, str(info.value))
    with as_user("svc-prometheus") as client, pytest.raises(MlflowException) as info:
        client.get_model_version_by_alias(name, "champion")
    assert info.value.error_code == "PERMISSION_DENIED", str(info.value)
