"""`make provision` with the AWS inventory of the scaled layout on simulated hosts, against
stand-ins for RDS, Secrets Manager, S3 and the instance role (see conftest.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import psycopg2
import pytest
import requests

pytestmark = [pytest.mark.aws_sim, pytest.mark.slow]


def _recap(output: str) -> dict[str, dict[str, int]]:
    recap = {}
    for host, counts in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, flags=re.M):
        recap[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}
    return recap


def test_second_provision_changes_nothing(aws_sim) -> None:
    first, second = aws_sim.runs[:2]
    print(f"first run {first.seconds:.0f} s, second run {second.seconds:.0f} s")
    recap = _recap(second.output)
    assert set(recap) == set(aws_sim.hosts), second.output[-3000:]
    assert {host: c["changed"] for host, c in recap.items()} == dict.fromkeys(recap, 0), second.output[-6000:]
    assert all(c["failed"] == 0 and c["unreachable"] == 0 for c in recap.values())


def _task_hosts(output: str, task: str) -> list[str]:
    """The hosts a task of the run reported a result for (ok or changed)."""
    section = re.search(rf"^TASK \[[^\]]*{re.escape(task)}[^\]]*\].*?(?=^TASK \[|^PLAY RECAP)", output, re.M | re.S)
    assert section, f"no task {task!r} in the run"
    return re.findall(r"^(?:ok|changed): \[([^\]]+)\]", section.group(0), re.M)


def test_one_time_steps_run_on_one_mlflow_host_per_run(aws_sim) -> None:
    """Two MLflow hosts share the database: the backend store's and the auth store's migrations run
    once per provisioning run, on the first host, never on both."""
    for run in aws_sim.runs:
        for task in ("Upgrade the backend store schema", "Prepare the auth store"):
            assert _task_hosts(run.output, task) == ["mlflow-0"], task


def test_no_local_database_or_store_on_the_aws_hosts(aws_sim) -> None:
    for host in aws_sim.group("mlflow_servers"):
        status = aws_sim.supervisorctl("status", host=host).stdout
        assert f"{aws_sim.instance}-mlflow" in status and f"{aws_sim.instance}-nginx" in status, status
        assert "postgresql" not in status and "s3server" not in status, status


def test_database_passwords_never_in_ansible_output(aws_sim) -> None:
    """Neither the master password (read on the controller for the provisioning step) nor the MLflow
    server role's (generated there into its secret) is in any output of `make provision -v`."""
    forms = set()
    for password in (aws_sim.db_password, aws_sim.mlflow_db_password):
        forms |= {password, json.dumps(password)[1:-1], password.split(":")[0]}
    for run in aws_sim.runs:
        assert "PLAY RECAP" in run.output  # the whole output was captured
        for form in forms:
            assert form not in run.output


def test_app_and_mlflow_passwords_never_in_ansible_output(aws_sim) -> None:
    """The application database password (sent to the host on stdin, written to pgpass files) and
    every MLflow login's (the admin's, the person's, each service identity's, the Flask secret key)
    are in no Ansible output."""
    credentials = aws_sim.state_dir / "credentials"
    secrets = [
        (credentials / "postgresql-mlops_app").read_text().split()[0],
        *(path.read_text().strip() for path in credentials.glob("mlflow-*")),
    ]
    assert len(secrets) >= 8 and all(len(s) >= 16 for s in secrets)
    for run in aws_sim.runs:
        for secret in secrets:
            assert secret not in run.output


def _files_holding(aws_sim, secret: bytes) -> list[Path]:
    # Not walked: the "RDS" cluster's own files and the installed virtual environments (a walk that
    # entered them and filtered their files afterwards took most of a minute).
    environments = ("venv", "supervisor", "serving", "trainer")
    skip = {aws_sim.root / "rds"}
    skip |= {aws_sim.path("home", host) / name for host in aws_sim.hosts for name in environments}
    holders = []
    for directory, subdirectories, files in os.walk(aws_sim.root):
        base = Path(directory)
        subdirectories[:] = [name for name in subdirectories if base / name not in skip]
        for name in files:
            path = base / name
            if not path.is_symlink() and path.is_file() and secret in path.read_bytes():
                holders.append(path)
    return holders


def test_database_password_only_in_runtime_pgpass_files(aws_sim) -> None:
    """The MLflow server role's password is not in the inventory, configs, unit files, program
    definitions, logs or client state: only in the mode-0600 pgpass files the start wrapper keeps in
    the runtime directory. The master password is in no file at all (the controller read it for
    the provisioning step and sent it on stdin)."""
    assert _files_holding(aws_sim, aws_sim.db_password.split(":")[0].encode()) == []
    runtimes = {aws_sim.path("run", host) / "mlflow" for host in aws_sim.group("mlflow_servers")}
    holders = _files_holding(aws_sim, aws_sim.mlflow_db_password.encode())
    assert {path.parent for path in holders} == runtimes, "a server's pgpass file is missing"
    for path in holders:
        assert path.parent in runtimes and path.name.startswith("pgpass."), f"password found in {path}"
        assert path.stat().st_mode & 0o777 == 0o600
        assert path.owner() == "mlops"
        assert f":{aws_sim.rds_port}:mlflow:mlflow_server:" in path.read_text()
    unit = aws_sim.path("config") / "systemd" / f"{aws_sim.instance}-mlflow.service"
    assert "mlflow-with-db" in unit.read_text()
    assert "AWS_SECRET_ACCESS_KEY" not in unit.read_text()  # the instance role, no keys


def test_database_passwords_not_on_command_lines_or_environments(aws_sim) -> None:
    secrets = [aws_sim.db_password.split(":")[0].encode(), aws_sim.mlflow_db_password.encode()]
    seen = 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if str(aws_sim.root).encode() in cmdline and b"mlflow" in cmdline:
            seen += 1
        for secret in secrets:
            assert secret not in cmdline, f"a database password on the command line of pid {proc.name}"
            assert secret not in environ, f"a database password in the environment of pid {proc.name}"
    assert seen, "no MLflow process of the simulated instance found"


def test_each_service_has_its_own_database_role(aws_sim) -> None:
    """The server runs as mlflow_server (its own secret; the master's is named nowhere on the host),
    which owns the MLflow database and every table in it and is no superuser and may create neither
    roles nor databases; the application role owns its own database; neither role can connect to
    the other's database."""
    config = json.loads((aws_sim.path("config") / "mlflow" / "database.json").read_text())
    assert config["user"] == "mlflow_server" and config["secret_arn"] == aws_sim.mlflow_secret_arn
    assert aws_sim.secret_arn not in json.dumps(config)
    flags = aws_sim.rds_sql(
        "SELECT rolname || '|' || (rolsuper OR rolcreatedb OR rolcreaterole)::text FROM pg_roles"
        " WHERE rolname IN ('mlflow_server', 'mlops_app') ORDER BY 1;"
    )
    assert flags.split() == ["mlflow_server|false", "mlops_app|false"]
    owners = aws_sim.rds_sql("SELECT datname || '|' || pg_get_userbyid(datdba) FROM pg_database ORDER BY 1;")
    assert {"mlflow|mlflow_server", "mlops|mlops_app"} <= set(owners.split())
    tables = aws_sim.rds_sql(
        "SELECT count(*) || '|' || count(*) FILTER (WHERE tableowner <> 'mlflow_server')"
        " FROM pg_tables WHERE schemaname = 'public';"
    )
    total, foreign = tables.strip().split("|")
    assert int(total) > 20 and foreign == "0", tables  # MLflow's schema, all the server role's
    for user, password, other in (
        ("mlflow_server", aws_sim.mlflow_db_password, "mlops"),
        ("mlops_app", (aws_sim.state_dir / "credentials" / "postgresql-mlops_app").read_text().split()[0], "mlflow"),
    ):
        with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
            psycopg2.connect(
                host=aws_sim.rds_host,
                port=aws_sim.rds_port,
                dbname=other,
                user=user,
                password=password,
                sslmode="require",
                connect_timeout=10,
            ).close()


def test_run_logged_through_nginx_lands_in_rds_and_s3(aws_sim, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    env = aws_sim.client_env
    assert env["MLFLOW_TRACKING_URI"].startswith("https://")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # The client needs no AWS credentials at all: artifacts are proxied by the server.
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SHARED_CREDENTIALS_FILE", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    marker = uuid.uuid4().hex
    try:
        mlflow.set_experiment(f"aws-sim-{marker[:8]}")
        with mlflow.start_run() as run:
            mlflow.log_param("marker", marker)
            mlflow.log_text(f"artifact {marker}\n", "notes/marker.txt")
    finally:
        mlflow.set_tracking_uri(None)

    # The run is in the "RDS" database, reached like MLflow does (TCP, TLS, the managed password).
    with (
        psycopg2.connect(
            host=aws_sim.rds_host,
            port=aws_sim.rds_port,
            dbname="mlflow",
            user="mlflow",
            password=aws_sim.db_password,
            sslmode="require",
        ) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("SELECT value FROM params WHERE run_uuid = %s AND key = 'marker'", (run.info.run_id,))
        assert cur.fetchall() == [(marker,)]

    # The artifact object is in the S3 emulator's bucket, under the prefix from Terraform.
    s3 = aws_sim.aws("s3")
    keys = [
        o["Key"] for o in s3.list_objects_v2(Bucket=aws_sim.bucket, Prefix=f"{aws_sim.prefix}/").get("Contents", [])
    ]
    (key,) = [k for k in keys if run.info.run_id in k and k.endswith("notes/marker.txt")]
    assert s3.get_object(Bucket=aws_sim.bucket, Key=key)["Body"].read().decode() == f"artifact {marker}\n"


def test_no_host_but_mlflow_holds_the_admin_login(aws_sim) -> None:
    """Serving and the trainers' retrain and promotion gate jobs log in to MLflow with service identities
    of their own; the admin's password is only in the MLflow hosts' auth configuration (and the
    controller's state)."""
    admin = (aws_sim.state_dir / "credentials" / "mlflow-admin").read_text().strip().encode()
    holders = [path for path in _files_holding(aws_sim, admin) if not path.is_relative_to(aws_sim.state_dir)]
    assert sorted(holders) == [
        aws_sim.path("config", h) / "mlflow" / "auth.ini" for h in aws_sim.group("mlflow_servers")
    ]
    for host, jobs in (
        ("serving-0", ["serving"]),
        ("trainer-0", ["gate", "retrain"]),
        ("trainer-1", ["gate", "retrain"]),
    ):
        logins = {p.parent.parent.name: p.read_text() for p in aws_sim.path("data", host).rglob(".mlflow/credentials")}
        assert sorted(logins) == jobs, (host, logins.keys())
        for job, text in logins.items():
            assert f"mlflow_tracking_username = svc-{job}" in text, (host, job)
            assert "= admin\n" not in text


def test_every_host_gets_every_source_file(aws_sim) -> None:
    """The serving and trainer hosts' copies of the project hold every Python file of every package
    (a copy that kept one file per relative path lost training/__init__.py beside mlops/__init__.py)."""
    project = aws_sim.root / "project"
    expected = sorted(
        str(p.relative_to(project))
        for package in aws_sim.project_packages
        for p in (project / package).rglob("*.py")
        if "__pycache__" not in p.parts
    )
    assert "training/tracking.py" in expected and "training/__init__.py" in expected
    for host, src in (("serving-0", "serving-src"), ("trainer-0", "trainer-src"), ("trainer-1", "trainer-src")):
        copy = aws_sim.path("home", host) / src
        found = sorted(
            str(p.relative_to(copy))
            for package in aws_sim.project_packages
            for p in (copy / package).rglob("*.py")
            if "__pycache__" not in p.parts
        )
        assert found == expected, (host, sorted(set(expected) - set(found)))


def test_every_environment_is_compiled_for_what_starts(aws_sim) -> None:
    """Each host's environments install without compiling every file; what their programs import at
    start was compiled once, as root (a marker per program; torch's package on the trainers)."""
    environments = {"mlflow_servers": ("venv", "mlflow"), "serving_servers": ("venv", "serving"),
                    "trainers": ("trainer", "trainer")}
    for group, (venv, program) in environments.items():
        for host in aws_sim.group(group):
            home = aws_sim.path("home", host) / venv
            assert (home / f".mlops-bytecode-{program}").is_file(), (host, sorted(p.name for p in home.iterdir()))
    for host in aws_sim.group("trainers"):
        torch = next((aws_sim.path("home", host) / "trainer/lib").glob("python3*/site-packages/torch"))
        assert list((torch / "__pycache__").glob("__init__.*.pyc")), host


def test_trainer_gets_ddp_settings(aws_sim) -> None:
    env = aws_sim.trainer_env("trainer-1")
    rendezvous = aws_sim.address("trainer-0")
    assert env["MASTER_ADDR"] == rendezvous
    assert env["MLOPS_RDZV_ENDPOINT"] == f"{rendezvous}:{env['MASTER_PORT']}"
    assert env["MLOPS_NNODES"] == "2" and env["MLOPS_NODE_RANK"] == "1"
    assert env["MLFLOW_TRACKING_URI"] == aws_sim.client_env["MLFLOW_TRACKING_URI"]  # nginx, with its port
    assert int(env["OMP_NUM_THREADS"]) >= 1


def test_trainer_environment_runs_the_retrain_loop(aws_sim) -> None:
    """The trainer role installed the project with a pip extra into the trainer's own environment:
    its `mlops` (the command the retrain job runs) answers `retrain-loop --help`, and its Python
    imports psycopg2, which the loop needs for the application database."""
    venv = aws_sim.path("home", "trainer-0") / "trainer"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(aws_sim.root), "MPLCONFIGDIR": str(aws_sim.root / "mpl")}
    result = subprocess.run(
        [str(venv / "bin" / "mlops"), "retrain-loop", "--help"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "retrain-loop" in result.stdout and "--model" in result.stdout, result.stdout
    shebang = (venv / "bin" / "mlops").read_text().splitlines()[0]
    assert shebang.startswith(f"#!{venv}/bin/python"), shebang  # the trainer's own Python, not serving's
    imported = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import psycopg2, torch; print(psycopg2.__version__, torch.__version__)"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert imported.returncode == 0, imported.stderr[-3000:]
    print(f"trainer environment: psycopg2 {imported.stdout.split()[0]}, torch {imported.stdout.split()[1]}")


def _program_environment(aws_sim, name: str, host: str) -> dict[str, str]:
    conf = (aws_sim.path("config", host) / "supervisor.d" / f"{name}.conf").read_text()
    (line,) = [line for line in conf.splitlines() if line.startswith("environment=")]
    return dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', line))


def test_app_database_created_on_rds_by_the_playbook(aws_sim) -> None:
    """The provisioning step (master credentials from the controller) created the `mlops` database
    owned by `mlops_app`; the password is stored as a SCRAM verifier."""
    rows = aws_sim.rds_sql(
        "SELECT d.datname || '|' || pg_get_userbyid(d.datdba) || '|' || left(a.rolpassword, 14) "
        "FROM pg_database d JOIN pg_authid a ON a.oid = d.datdba WHERE d.datname = 'mlops';"
    )
    assert rows.strip() == "mlops|mlops_app|SCRAM-SHA-256$"
    for host in aws_sim.hosts:
        pgpass = aws_sim.path("config", host) / "monitoring" / "pgpass"
        assert pgpass.stat().st_mode & 0o777 == 0o600 and pgpass.owner() == "mlops"
        assert pgpass.read_text().startswith(f"{aws_sim.rds_host}:{aws_sim.rds_port}:mlops:mlops_app:")


def test_serving_host_reaches_mlflow_through_nginx_and_monitoring_on_rds(aws_sim) -> None:
    """serving-0 (serving_servers) runs the app with MLflow through nginx (TLS, its own login svc-serving
    from its ~/.mlflow/credentials, never in its environment) and the monitoring DSN of the "RDS";
    /serve/health through the MLflow host's nginx (as the person, who may predict) reports monitoring ok."""
    env = _program_environment(aws_sim, "serving", "serving-0")
    nginx_url = aws_sim.client_env["MLFLOW_TRACKING_URI"]
    assert env["MLFLOW_TRACKING_URI"] == nginx_url and nginx_url.startswith("https://")
    assert env["MLFLOW_TRACKING_SERVER_CERT_PATH"] == str(aws_sim.path("config", "serving-0") / "mlflow-ca.pem")
    assert env["MLOPS_MONITORING_DSN"] == (
        f"host={aws_sim.rds_host} port={aws_sim.rds_port} dbname=mlops user=mlops_app sslmode=require"
    )
    assert "MLFLOW_TRACKING_PASSWORD" not in env
    # Its own account owns its login and its copy of the application database's pgpass file.
    credentials = Path(env["HOME"]) / ".mlflow" / "credentials"
    assert credentials.stat().st_mode & 0o777 == 0o600 and credentials.owner() == "mlops-serving"
    pgpass = Path(env["PGPASSFILE"])
    assert pgpass.parent == Path(env["HOME"]) and pgpass.owner() == "mlops-serving"
    assert pgpass.stat().st_mode & 0o777 == 0o600
    assert pgpass.read_text() == (aws_sim.path("config", "serving-0") / "monitoring" / "pgpass").read_text()
    login = credentials.read_text()
    own = (aws_sim.state_dir / "credentials" / "mlflow-svc-serving").read_text().strip()
    assert "mlflow_tracking_username = svc-serving" in login and own in login
    assert aws_sim.client_env["MLFLOW_TRACKING_PASSWORD"] not in login

    deadline = time.monotonic() + 120
    while True:
        response = requests.get(
            f"{nginx_url}/serve/health",
            auth=(aws_sim.client_env["MLFLOW_TRACKING_USERNAME"], aws_sim.client_env["MLFLOW_TRACKING_PASSWORD"]),
            verify=aws_sim.client_env["MLFLOW_TRACKING_SERVER_CERT_PATH"],
            timeout=10,
        )
        assert response.status_code in (200, 503), response.text
        if response.json().get("monitoring") == "ok" or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert response.json()["monitoring"] == "ok", response.text
    # The serving app wrote its monitoring schema into the application database.
    tables = aws_sim.rds_sql("SELECT count(*) FROM pg_tables WHERE schemaname = 'monitoring';", database="mlops")
    assert tables.strip() != "0"


def test_retrain_job_runs_on_the_trainers(aws_sim) -> None:
    """The retrain tick is scheduled by the trainers play (with the training environment), reaches
    MLflow through nginx and the application database on the "RDS"."""
    job = (aws_sim.path("home", "trainer-1") / "bin" / "job-retrain").read_text()
    assert f"{aws_sim.path('home', 'trainer-1')}/trainer/bin/mlops" in job
    assert aws_sim.client_env["MLFLOW_TRACKING_URI"] in job
    assert f"host={aws_sim.rds_host} port={aws_sim.rds_port} dbname=mlops user=mlops_app sslmode=require" in job
    assert "OMP_NUM_THREADS" in job  # Xeon tuning of the trainer host
    assert aws_sim.client_env["MLFLOW_TRACKING_PASSWORD"] not in job
    credentials = aws_sim.path("data", "trainer-1") / "retrain" / ".mlflow" / "credentials"
    assert credentials.stat().st_mode & 0o777 == 0o600
    # Each host's cron entries are its own (its /etc/cron.d), none in the machine's.
    for host in aws_sim.group("trainers"):
        assert (aws_sim.cron_dir(host) / f"{aws_sim.instance}-retrain").exists(), host
    assert not (aws_sim.cron_dir("serving-0") / f"{aws_sim.instance}-retrain").exists()
    assert list(Path("/etc/cron.d").glob(f"{aws_sim.instance}-*")) == []


def test_password_is_read_at_service_start(aws_sim) -> None:
    """Rotate the server role's password (database + secret), restart MLflow: it comes back
    healthy with the new one, and nothing on the controller had to change. Runs last."""
    new_password = aws_sim.mlflow_db_password[:8] + uuid.uuid4().hex
    aws_sim.rds_sql(f"ALTER ROLE mlflow_server PASSWORD '{new_password}';")
    aws_sim.aws("secretsmanager").put_secret_value(
        SecretId=aws_sim.mlflow_secret_arn,
        SecretString=json.dumps({"username": "mlflow_server", "password": new_password}),
    )
    restarted = aws_sim.supervisorctl("restart", f"{aws_sim.instance}-mlflow")
    assert "started" in restarted.stdout, restarted.stdout + restarted.stderr
    health = f"https://{aws_sim.address('mlflow-0')}:443/health"
    deadline = time.monotonic() + 90
    while True:
        try:
            response = requests.get(health, verify=str(aws_sim.lb_ca), timeout=5)
            if response.status_code == 200:
                break
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, "MLflow did not come back after the password rotation"
        time.sleep(1)
    # The new pgpass file has the new password, the old one is gone with the old process.
    files = list((aws_sim.path("run", "mlflow-0") / "mlflow").glob("pgpass.*"))
    assert len(files) == 1
    assert new_password in files[0].read_text()


def test_monitoring_scrapes_every_host(aws_sim) -> None:
    """Each MLflow host's Prometheus scrapes MLflow, nginx, serving on its own host, each host's node
    exporter and the "RDS" (the PostgreSQL exporter as the application database's role, through its
    pgpass file); every target is up. Prometheus listens on its host's loopback: asked from there. The
    targets on the host itself carry its name (label `host`), the other hosts' and RDS's do not."""

    def query(host: str, path: str, **params: str) -> dict:
        return aws_sim.local_api(host, "prometheus", path, **params)["data"]

    for host in aws_sim.group("mlflow_servers"):
        deadline = time.monotonic() + 120
        while True:
            targets = query(host, "/api/v1/targets")["activeTargets"]
            down = [(t["scrapeUrl"], t["lastError"]) for t in targets if t["health"] != "up"]
            if (targets and not down) or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert {t["labels"]["job"] for t in targets} == {
            "prometheus",
            "alertmanager",
            "mlflow",
            "nginx",
            "serving",
            "node",
            "postgres",
        }, host
        assert not down, (host, down)
        # Its own host's node exporter (loopback), and the serving hosts' and trainers' on their
        # private addresses; the other MLflow host's is that host's own Prometheus's.
        nodes = {t["labels"]["instance"] for t in targets if t["labels"]["job"] == "node"}
        assert nodes == {
            f"{a}:9100" for a in ["127.0.0.1", *map(aws_sim.address, ("serving-0", "trainer-0", "trainer-1"))]
        }
        # The host's own services and node exporter; not serving, the other hosts' exporters or RDS's.
        labelled = {(t["labels"]["job"], t["labels"]["instance"]) for t in targets if t["labels"].get("host") == host}
        assert {job for job, _ in labelled} == {"prometheus", "alertmanager", "mlflow", "nginx", "node"}, labelled
        assert len(labelled) == 5 and ("node", "127.0.0.1:9100") in labelled, labelled
        assert all(t["labels"].get("host") in (None, host) for t in targets), host
        pg_up = query(host, "/api/v1/query", query="pg_up")["result"]
        assert [r["value"][1] for r in pg_up] == ["1"], pg_up
