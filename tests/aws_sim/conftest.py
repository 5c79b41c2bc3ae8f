"""The AWS deployment, simulated on loopback: `make provision` with an AWS-shaped inventory.

The inventory is written by the same generator `make inventory` uses (mlops_cli.inventory) from
Terraform-shaped outputs, plus the committed ansible/inventories/aws/group_vars. What stands in
for AWS:

- "RDS": a PostgreSQL cluster this fixture starts (initdb, TLS only, like rds.force_ssl) with a
  generated password that exists nowhere but in the Secrets Manager emulator;
- Secrets Manager and S3: one moto server on loopback holding the RDS-managed master secret
  ({"username", "password"}), the MLflow server role's secret (created empty, as Terraform does;
  the provisioning step fills it) and the artifact bucket;
- the instance role: a shared credentials file with dummy keys, found by the default AWS
  credential chain (AWS_SHARED_CREDENTIALS_FILE in the service environment); the operator's
  credentials on the controller: another such file (rds_roles_controller_environment). moto does
  not enforce IAM: which secret each side reads is asserted on the configuration instead.

Only endpoint URLs (and that credentials file) differ from real AWS; they live in an inventory
group_vars file. Every host of the inventory is this machine under one instance: "mlflow", the
trainer "trainer-0" (the retrain job runs there, with the training environment installed for real
from the project's `native` extra) and "serving-0" in a serving_servers group of its
own (an inventory file beside the generated one, as a user adds it), so serving is provisioned
as on a host of its own: reaching MLflow through nginx with the basic-auth credentials and the
pinned certificate, and the application database the playbook creates on the "RDS". The
platform runs under a temporary root with its own instance name and ports (28xxx-29xxx;
MLOPS_AWS_SIM_PORT_OFFSET moves them), so it never collides with a user's platform or the other test instances (18xxx).

These tests are selected only with `-m aws_sim` (`make test-aws-sim`): they provision a whole
instance of their own.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import yaml

from mlops.tracking import read_env_file
from mlops_cli.inventory import write_inventory

REPO = Path(__file__).resolve().parents[2]
OFFSET = int(os.environ.get("MLOPS_AWS_SIM_PORT_OFFSET", "0"))
PORTS = {
    "nginx_https_port": 28443 + OFFSET,
    "nginx_http_port": 28080 + OFFSET,
    "mlflow_port": 28500 + OFFSET,
}
SERVING_PORT = PORTS["mlflow_port"] + 700  # the serving role's default
RDS_PORT = 28432 + OFFSET
MOTO_PORT = 28900 + OFFSET
INSTANCE = "mlopsawssim" if OFFSET == 0 else f"mlopsawssim{OFFSET}"
REGION = "eu-west-1"
BUCKET = "mlops-aws-sim-artifacts"
PREFIX = "mlflow"
DB_USER = "mlflow"  # the RDS master user
DB_NAME = "mlflow"
MLFLOW_DB_USER = "mlflow_server"  # the MLflow server's own role (Terraform's mlflow_db_username)
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave these tests out of runs that do not ask for them (`-m aws_sim`)."""
    if "aws_sim" in (config.getoption("markexpr") or ""):
        return
    mine = [item for item in items if Path(str(item.fspath)).resolve().is_relative_to(HERE)]
    if mine:
        config.hook.pytest_deselected(items=mine)
        items[:] = [item for item in items if item not in mine]


def _project_packages() -> list[str]:
    """The project's top-level packages, from pyproject.toml's package list (as the roles read it)."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    return [name.rstrip("*") for name in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]


def _moto_server() -> str | None:
    candidates = [
        os.environ.get("MLOPS_MOTO_SERVER"),
        str(REPO / ".venv-infra/bin/moto_server"),
        shutil.which("moto_server"),
    ]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def _pg_bindir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _wait(predicate, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def _as_postgres(cmd: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", *cmd], text=True, capture_output=True, check=True, **kwargs
    )


@dataclass
class Run:
    """One `make provision`: exit code and everything it printed."""

    returncode: int
    output: str
    seconds: float


@dataclass
class AwsSim:
    root: Path
    inventory: Path
    vars_file: Path
    state_dir: Path
    db_password: str
    secret_arn: str
    runs: list[Run]
    pg_bindir: Path
    rds_socket_dir: Path
    mlflow_secret_arn: str = ""

    instance: str = INSTANCE
    region: str = REGION
    bucket: str = BUCKET
    prefix: str = PREFIX
    rds_port: int = RDS_PORT
    moto_url: str = f"http://127.0.0.1:{MOTO_PORT}"

    @property
    def client_env(self) -> dict[str, str]:
        """local.env-style settings the mlops_client role wrote for the host named 'mlflow'."""
        return read_env_file(self.state_dir / "mlflow.env")

    def aws(self, service: str):
        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=self.moto_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    @property
    def mlflow_db_password(self) -> str:
        """The MLflow server role's password: the value the provisioning step put into its secret."""
        secret = self.aws("secretsmanager").get_secret_value(SecretId=self.mlflow_secret_arn)
        return json.loads(secret["SecretString"])["password"]

    def path(self, kind: str) -> Path:
        base = {"home": "opt", "config": "etc", "data": "var/lib", "log": "var/log", "run": "run"}[kind]
        return self.root / base / self.instance

    def supervisorctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(self.path("home") / "supervisor/bin/supervisorctl"),
                "-c",
                str(self.path("config") / "supervisord.conf"),
                *args,
            ],
            capture_output=True,
            text=True,
            check=False,
        )

    def rds_sql(self, sql: str, database: str = DB_NAME) -> str:
        """Run SQL as the cluster's superuser over its Unix socket (stdin, never argv), in ``database``."""
        return _as_postgres(
            [
                str(self.pg_bindir / "psql"),
                "-h",
                str(self.rds_socket_dir),
                "-p",
                str(self.rds_port),
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
            ],
            input=sql,
        ).stdout

    def provision(self) -> Run:
        start = time.monotonic()
        result = subprocess.run(
            [
                "make",
                "--no-print-directory",
                "provision",
                f"PROVISION_INVENTORY={self.inventory}",
                f"ANSIBLE_ARGS=-v -e @{self.vars_file}",
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=900,
            check=False,
            env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        )
        run = Run(result.returncode, result.stdout, time.monotonic() - start)
        self.runs.append(run)
        (self.root / f"provision-{len(self.runs)}.log").write_text(result.stdout)
        if result.returncode != 0:
            pytest.fail(
                f"make provision failed ({result.returncode}) after {run.seconds:.0f} s:\n{result.stdout[-8000:]}"
            )
        return run


def _start_rds(root: Path, bindir: Path, password: str) -> tuple[Path, Path]:
    """A TLS-only PostgreSQL cluster on loopback with the MLflow user and database."""
    rds = root / "rds"
    data, sockets = rds / "data", rds / "sockets"
    for path in (rds, data, sockets):
        path.mkdir(mode=0o700)
        shutil.chown(path, "postgres", "postgres")
    _as_postgres(
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth-local=peer",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ]
    )
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(data / "server.key"),
            "-out",
            str(data / "server.crt"),
        ],
        check=True,
        capture_output=True,
    )
    for name in ("server.key", "server.crt"):
        shutil.chown(data / name, "postgres", "postgres")
        (data / name).chmod(0o600)
    # Like RDS with rds.force_ssl = 1: TCP clients must use TLS.
    (data / "pg_hba.conf").write_text(
        "local all postgres peer\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostnossl all all 0.0.0.0/0 reject\n"
    )
    options = (
        f"-p {RDS_PORT} -k {sockets} -c listen_addresses=127.0.0.1 -c ssl=on "
        "-c ssl_cert_file=server.crt -c ssl_key_file=server.key"
    )
    _as_postgres(
        [str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(rds / "postgresql.log"), "-o", options, "start"]
    )
    psql = [
        str(bindir / "psql"),
        "-h",
        str(sockets),
        "-p",
        str(RDS_PORT),
        "-d",
        "postgres",
        "-v",
        "ON_ERROR_STOP=1",
        "-q",
    ]
    literal = password.replace("'", "''")
    _as_postgres(
        psql,
        # Like RDS's master user (rds_superuser): may create databases and roles, is no superuser.
        input=f"CREATE ROLE {DB_USER} LOGIN CREATEDB CREATEROLE PASSWORD '{literal}';\n"
        f"CREATE DATABASE {DB_NAME} OWNER {DB_USER};\n",
    )
    return data, sockets


def _terraform_outputs(secret_arn: str, mlflow_secret_arn: str) -> dict:
    """`terraform output -json` as infra/envs/prod would give it, pointing at the simulators."""
    values = {
        "aws_region": REGION,
        "mlflow_public_ip": "127.0.0.1",
        "mlflow_private_ip": "127.0.0.1",
        "mlflow_public_hostname": "mlflow.aws-sim.internal",
        "db_host": "127.0.0.1",
        "db_port": RDS_PORT,
        "db_name": DB_NAME,
        "db_username": DB_USER,
        "db_password_secret_arn": secret_arn,
        "mlflow_db_username": MLFLOW_DB_USER,
        "mlflow_db_secret_arn": mlflow_secret_arn,
        "artifacts_bucket": BUCKET,
        "artifacts_prefix": PREFIX,
        "trainer_public_ips": ["127.0.0.1"],
        "trainer_private_ips": ["127.0.0.1"],
    }
    return {name: {"sensitive": False, "type": "string", "value": value} for name, value in values.items()}


@pytest.fixture(scope="session")
def aws_sim() -> AwsSim:
    moto_server, pg_bindir = _moto_server(), _pg_bindir()
    if moto_server is None:
        pytest.skip("no moto_server (make infra-venv builds .venv-infra with moto[server]; or set MLOPS_MOTO_SERVER)")
    if pg_bindir is None:
        pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql (apt-get install postgresql-15)")
    busy = [port for port in (*PORTS.values(), SERVING_PORT, RDS_PORT, MOTO_PORT) if not _port_free(port)]
    if busy:
        pytest.fail(f"loopback ports {busy} are in use; set MLOPS_AWS_SIM_PORT_OFFSET to move the simulated instance")

    root = Path(tempfile.mkdtemp(prefix="mlops-aws-sim-"))
    root.chmod(0o755)
    password = secrets.token_urlsafe(24) + ":%\\"  # pgpass-special characters on purpose
    moto = pg_data = None
    inventory, vars_file, state_dir = root / "inventory", root / "test-vars.yml", root / "client"
    try:
        moto = subprocess.Popen(
            [moto_server, "-H", "127.0.0.1", "-p", str(MOTO_PORT)],
            stdout=(root / "moto.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait(lambda: not _port_free(MOTO_PORT), "moto server")
        pg_data, sockets = _start_rds(root, pg_bindir, password)

        sim = AwsSim(root, inventory, vars_file, state_dir, password, "", [], pg_bindir, sockets)
        secret = sim.aws("secretsmanager").create_secret(
            Name=f"rds!db-{uuid.uuid4()}", SecretString=json.dumps({"username": DB_USER, "password": password})
        )
        sim.secret_arn = secret["ARN"]
        # The MLflow server role's secret as Terraform creates it: no value until `make provision`.
        sim.mlflow_secret_arn = sim.aws("secretsmanager").create_secret(
            Name=f"mlops-aws-sim/database/{MLFLOW_DB_USER}"
        )["ARN"]
        sim.aws("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})

        # Stand-in for the instance role: dummy keys the default credential chain finds.
        credentials = root / "aws" / "credentials"
        credentials.parent.mkdir()
        credentials.write_text(
            "[default]\naws_access_key_id = AKIAAWSSIMULATOR0000\naws_secret_access_key = simulated\n"
        )
        credentials.chmod(0o644)
        # The operator's credentials on the controller (the provisioning step reads the master secret).
        operator = root / "operator" / "credentials"
        operator.parent.mkdir(mode=0o700)
        operator.write_text("[default]\naws_access_key_id = AKIAAWSSIMOPERATOR00\naws_secret_access_key = simulated\n")
        operator.chmod(0o600)

        # The serving and trainer roles install the project from a snapshot taken once, so both runs
        # see the same sources even while the working tree is being edited (the second run must
        # change nothing). The packages are the ones pyproject.toml lists, as the roles copy them.
        project = root / "project"
        project.mkdir()
        shutil.copy(REPO / "pyproject.toml", project / "pyproject.toml")
        for package in _project_packages():
            shutil.copytree(REPO / package, project / package, ignore=shutil.ignore_patterns("__pycache__"))

        write_inventory(_terraform_outputs(sim.secret_arn, sim.mlflow_secret_arn), inventory)
        # Serving on a host of its own: an inventory file beside the generated hosts.yml.
        (inventory / "serving.yml").write_text(
            yaml.safe_dump(
                {
                    "all": {
                        "children": {
                            "serving_servers": {
                                "hosts": {"serving-0": {"ansible_host": "127.0.0.1", "mlops_private_ip": "127.0.0.1"}}
                            }
                        }
                    }
                }
            )
        )
        group_vars = inventory / "group_vars" / "all"
        shutil.copy(REPO / "ansible/inventories/aws/group_vars/all/main.yml", group_vars / "main.yml")
        (group_vars / "simulator.yml").write_text(
            yaml.safe_dump(
                {
                    "mlflow_secretsmanager_endpoint_url": sim.moto_url,
                    "mlflow_s3_endpoint_url": sim.moto_url,
                    "mlflow_extra_environment": {"AWS_SHARED_CREDENTIALS_FILE": str(credentials)},
                    "rds_roles_controller_environment": {"AWS_SHARED_CREDENTIALS_FILE": str(operator)},
                    # The trainer environment is installed for real, with the `native` extra: its torch
                    # 2.13 comes from the local CPU wheel pip is configured to find (no internet here;
                    # the `trainer` extra's torch 2.8 + IPEX would be GBs from PyTorch's index).
                    "trainer_project_extra": "native",
                    "trainer_torch_index_url": "",
                    "trainer_project_src": str(project),
                    "serving_source_dir": str(project),
                }
            )
        )
        vars_file.write_text(
            yaml.safe_dump(
                {
                    "ansible_connection": "local",
                    "ansible_user": "root",
                    "ansible_python_interpreter": "/usr/bin/python3",
                    "mlops_root": str(root),
                    "mlops_instance": INSTANCE,
                    "mlops_client_state_dir": str(state_dir),
                    # The simulated public name does not resolve: clients use the loopback address.
                    "mlops_client_host": "127.0.0.1",
                    **PORTS,
                }
            )
        )
        sim.provision()
        sim.provision()
        yield sim
    finally:
        if vars_file.exists():
            subprocess.run(
                ["make", "--no-print-directory", "down", f"INVENTORY={inventory}", f"ANSIBLE_ARGS=-e @{vars_file}"],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
        # Without systemd the scheduled jobs are /etc/cron.d entries: none may outlive the instance.
        for entry in Path("/etc/cron.d").glob(f"{INSTANCE}-*"):
            entry.unlink(missing_ok=True)
        if pg_data is not None:
            subprocess.run(
                [
                    "runuser",
                    "-u",
                    "postgres",
                    "--",
                    str(pg_bindir / "pg_ctl"),
                    "-D",
                    str(pg_data),
                    "-m",
                    "fast",
                    "stop",
                ],
                capture_output=True,
                check=False,
                timeout=60,
            )
        if moto is not None:
            os.killpg(moto.pid, signal.SIGTERM)
            moto.wait(timeout=30)
        if not os.environ.get("MLOPS_KEEP_TEST_ROOT"):
            shutil.rmtree(root, ignore_errors=True)
