"""The AWS deployment, simulated on one machine: several hosts, each in a network namespace of its own.

The simulated layout is the scaled one (Terraform's `topology = "scaled"`) in small:

- "lb": the Application Load Balancer, an nginx on the entry point (the only listener beyond a
  private address): TLS with the deployment's certificate, `/serve/*` to the serving hosts, the
  rest to the MLflow hosts, a failed target skipped (tests/aws_sim/lb.conf);
- "mlflow-0", "mlflow-1": MLflow hosts (mlflow_servers) sharing the "RDS" and the bucket;
- "serving-0": a serving host (serving_servers) with its nginx front on its private address;
- "trainer-0", "trainer-1": trainers (DDP rendezvous on trainer-0);
- the controller (this machine's own network, on the bridge's address): `make provision`, the
  stand-in RDS and AWS services, and the tests.

Each host has its own address on one bridge (tests/aws_sim/network.py) and its own `mlops_root`
on the shared filesystem. Ansible reaches it with the `local` connection through a shell that
enters its namespace, so the roles, and the supervisord they start, run on that host's network.

What stands in for AWS:

- "RDS": a PostgreSQL cluster this fixture starts on the bridge's address (TLS only, like
  rds.force_ssl) with a generated password that exists nowhere but in the Secrets Manager emulator;
- Secrets Manager and S3: one moto server holding the RDS-managed master secret ({"username",
  "password"}), the MLflow server role's secret (created empty, as Terraform does; the
  provisioning step fills it) and the artifact bucket;
- the instance role: a shared credentials file with dummy keys, found by the default AWS
  credential chain (AWS_SHARED_CREDENTIALS_FILE in the service environment); the operator's
  credentials on the controller: another such file (rds_roles_controller_environment). moto does
  not enforce IAM: which secret each side reads is asserted on the configuration instead;
- the dynamic inventory (`amazon.aws.aws_ec2`, which finds the scaled layout's hosts by tag): a
  static hosts.yml with the same groups and host variables; the group variables are the ones
  `make inventory` writes (mlops_cli.inventory.build_inventory);
- the NAT gateway: a masquerade rule (nftables) from the bridge outward (pip reaches its index).

Only endpoint URLs (and that credentials file) differ from real AWS; they live in an inventory
group_vars file.

These tests are selected only with `-m aws_sim` (`make test-aws-sim`, which installs iproute2
and nftables): they need root. MLOPS_AWS_SIM_PORT_OFFSET moves the names, subnet and the
controller's ports, so a second copy can run beside CI's.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import string
import subprocess
import tempfile
import time
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
import yaml

from mlops.tracking import read_env_file
from mlops_cli.inventory import build_inventory

from .network import Network

REPO = Path(__file__).resolve().parents[2]
OFFSET = int(os.environ.get("MLOPS_AWS_SIM_PORT_OFFSET", "0"))
# The controller's listeners, on the bridge's address (the hosts use the roles' default ports).
RDS_PORT = 28432 + OFFSET
MOTO_PORT = 28900 + OFFSET
INSTANCE = "mlopsawssim" if OFFSET == 0 else f"mlopsawssim{OFFSET}"
SUBNET = ipaddress.ip_network(f"10.213.{OFFSET % 250}.0/24")
# Simulated hosts and the last octet of each one's private address.
HOSTS = {"lb": 10, "mlflow-0": 21, "mlflow-1": 22, "serving-0": 31, "trainer-0": 41, "trainer-1": 42}
GROUPS = {
    "mlflow_servers": ["mlflow-0", "mlflow-1"],
    "serving_servers": ["serving-0"],
    "trainers": ["trainer-0", "trainer-1"],
}
PUBLIC_HOSTNAME = "mlflow.aws-sim.internal"
REGION = "eu-west-1"
BUCKET = "mlops-aws-sim-artifacts"
PREFIX = "mlflow"
DB_USER = "mlflow"  # the RDS master user
DB_NAME = "mlflow"
MLFLOW_DB_USER = "mlflow_server"  # the MLflow server's own role (Terraform's mlflow_db_username)
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave these tests out of runs that do not ask for them (`-m aws_sim`); where asked, run
    test_failover.py last (it kills a host the others use)."""
    if "aws_sim" in (config.getoption("markexpr") or ""):
        items.sort(key=lambda item: Path(str(item.fspath)).name == "test_failover.py")
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


def _listening(address: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((address, port)) == 0


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
    network: Network
    lb_ca: Path = field(default_factory=Path)
    mlflow_secret_arn: str = ""

    instance: str = INSTANCE
    region: str = REGION
    bucket: str = BUCKET
    prefix: str = PREFIX
    rds_port: int = RDS_PORT

    @property
    def rds_host(self) -> str:
        return self.network.gateway

    @property
    def moto_url(self) -> str:
        return f"http://{self.network.gateway}:{MOTO_PORT}"

    @property
    def client_env(self) -> dict[str, str]:
        """local.env-style settings the mlops_client role wrote (the person's login, through the load balancer)."""
        return read_env_file(self.state_dir / "mlflow-0.env")

    def address(self, host: str) -> str:
        return self.network.address(host)

    def group(self, name: str) -> list[str]:
        """The hosts of an inventory group."""
        return GROUPS[name]

    @property
    def hosts(self) -> list[str]:
        """Every provisioned host (every group's; not the load balancer)."""
        return [host for hosts in GROUPS.values() for host in hosts]

    def trainer_env(self, host: str) -> dict[str, str]:
        """The DDP and tuning settings the trainer role wrote on ``host`` (trainer.env)."""
        return read_env_file(self.path("config", host) / "trainer.env")

    def login(self, name: str) -> tuple[str, str]:
        """An MLflow login (user, password) as the controller keeps it."""
        return name, (self.state_dir / "credentials" / f"mlflow-{name}").read_text().strip()

    def mlflow_client(self, host: str, login: tuple[str, str]):
        """An MLflow client that reaches MLflow through ``host``'s HTTPS front (the load balancer or
        one MLflow host's nginx) as ``login``, trusting the deployment's certificate. Sets the
        process's MLflow login variables: use it with the ``mlflow_env`` fixture."""
        from mlflow.tracking import MlflowClient

        os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = login
        os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"] = str(self.lb_ca)
        return MlflowClient(tracking_uri=f"https://{self.address(host)}:443")

    @property
    def project_packages(self) -> list[str]:
        return _project_packages()

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

    def host_root(self, host: str) -> Path:
        return self.root / "hosts" / host

    def path(self, kind: str, host: str = "mlflow-0") -> Path:
        base = {"home": "opt", "config": "etc", "data": "var/lib", "log": "var/log", "run": "run"}[kind]
        return self.host_root(host) / base / self.instance

    def cron_dir(self, host: str) -> Path:
        """The host's /etc/cron.d (network.PER_HOST_ETC)."""
        return Path("/etc/netns") / self.network.namespace(host) / "cron.d"

    def local_api(self, host: str, service: str, path: str, **params: str):  # noqa: ANN201 - the JSON answer
        """GET ``path`` of a service on ``host``'s loopback (prometheus, alertmanager: platform.json's probe URL
        without /-/ready), from inside that host; its JSON answer."""
        import requests

        platform = json.loads((self.state_dir / "platform.json").read_text())
        base = next(s for s in platform["services"] if s["name"] == service)["probe"]["url"].removesuffix("/-/ready")
        url = requests.Request("GET", f"{base}{path}", params=params).prepare().url
        return json.loads(self.network.run(host, ["curl", "-sSf", "--max-time", "10", url], check=True).stdout)

    def supervisorctl(self, *args: str, host: str = "mlflow-0") -> subprocess.CompletedProcess[str]:
        return self.network.run(
            host,
            [
                str(self.path("home", host) / "supervisor/bin/supervisorctl"),
                "-c",
                str(self.path("config", host) / "supervisord.conf"),
                *args,
            ],
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
            timeout=1500,
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


def _self_signed(cert: Path, key: Path, name: str, sans: list[str] | None = None) -> None:
    """A self-signed certificate for ``name`` (two days), with ``sans`` as its subject alternative names."""
    extra = ["-addext", "subjectAltName=" + ",".join(sans)] if sans else []
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}", *extra,
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip


def _start_rds(root: Path, bindir: Path, password: str, network: Network) -> tuple[Path, Path]:
    """A TLS-only PostgreSQL cluster on the bridge's address with the MLflow user and database."""
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
    _self_signed(data / "server.crt", data / "server.key", network.gateway)
    for name in ("server.key", "server.crt"):
        shutil.chown(data / name, "postgres", "postgres")
        (data / name).chmod(0o600)
    # Like RDS with rds.force_ssl = 1: TCP clients must use TLS.
    (data / "pg_hba.conf").write_text(
        f"local all postgres peer\nhostssl all all {network.subnet} scram-sha-256\nhostnossl all all 0.0.0.0/0 reject\n"
    )
    options = (
        f"-p {RDS_PORT} -k {sockets} -c listen_addresses={network.gateway} -c ssl=on "
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


def _certificate(root: Path, network: Network) -> tuple[Path, Path]:
    """The deployment's certificate (ACM's, in AWS): the public name and every front's address."""
    tls = root / "tls"
    tls.mkdir(mode=0o700)
    fronts = ["lb", *GROUPS["mlflow_servers"], *GROUPS["serving_servers"]]
    sans = [f"DNS:{PUBLIC_HOSTNAME}"] + [f"IP:{network.address(h)}" for h in fronts]
    cert, key = tls / "deployment.crt", tls / "deployment.key"
    _self_signed(cert, key, PUBLIC_HOSTNAME, sans)
    cert.chmod(0o644)
    return cert, key


def start_load_balancer(sim: AwsSim, cert: Path, key: Path) -> subprocess.Popen:
    """The ALB stand-in: Debian's nginx (`make test-aws-sim` installs it) in the "lb" namespace."""
    lb = sim.root / "lb"
    lb.mkdir(exist_ok=True)
    template = string.Template((HERE / "lb.conf").read_text())

    def upstream(hosts: list[str]) -> str:
        return "\n".join(f"        server {sim.address(h)}:443 max_fails=1 fail_timeout=30s;" for h in hosts)

    (lb / "nginx.conf").write_text(
        template.substitute(
            dir=lb,
            address=sim.address("lb"),
            cert=cert,
            key=key,
            mlflow_servers=upstream(GROUPS["mlflow_servers"]),
            serving_servers=upstream(GROUPS["serving_servers"]),
        )
    )
    proc = sim.network.popen(
        "lb",
        ["/usr/sbin/nginx", "-c", str(lb / "nginx.conf"), "-p", str(lb), "-g", "daemon off;"],
        stdout=(lb / "nginx.out").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    _wait(lambda: _listening(sim.address("lb"), 443) or proc.poll() is not None, "the load balancer")
    if proc.poll() is not None:
        pytest.fail(f"the load balancer's nginx exited: {(lb / 'nginx.out').read_text()[-2000:]}")
    return proc


def _terraform_outputs(network: Network, secret_arn: str, mlflow_secret_arn: str) -> dict:
    """`terraform output -json` of infra/envs/prod in the scaled layout, pointing at the simulators."""
    values = {
        "topology": "scaled",
        "aws_region": REGION,
        "mlflow_public_ip": None,
        "mlflow_private_ip": None,
        "mlflow_public_hostname": PUBLIC_HOSTNAME,
        "db_host": network.gateway,
        "db_port": RDS_PORT,
        "db_name": DB_NAME,
        "db_username": DB_USER,
        "db_password_secret_arn": secret_arn,
        "mlflow_db_username": MLFLOW_DB_USER,
        "mlflow_db_secret_arn": mlflow_secret_arn,
        "artifacts_bucket": BUCKET,
        "artifacts_prefix": PREFIX,
        "trainer_rendezvous_host": network.address("trainer-0"),
        "vpc_cidr": str(network.subnet),
    }
    return {name: {"sensitive": False, "type": "string", "value": value} for name, value in values.items()}


def _hosts_yml(sim: AwsSim) -> dict:
    """What the aws_ec2 dynamic inventory finds, as a static file: each host on its private address,
    plus how Ansible reaches the simulated host (its shell) and where its filesystem root is."""

    def host(name: str) -> dict:
        shell = sim.network.shell(name)
        return {
            "ansible_host": sim.address(name),
            "mlops_private_ip": sim.address(name),
            "ansible_shell_executable": str(shell),
            # Mitogen starts the host's Python itself (no shell): through the host's shell as well.
            "ansible_python_interpreter": f"{shell} -c 'exec /usr/bin/python3 \"$@\"' sh",
            "mlops_root": str(sim.host_root(name)),
        }

    return {"all": {"children": {group: {"hosts": {h: host(h) for h in hosts}} for group, hosts in GROUPS.items()}}}


@pytest.fixture
def mlflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow login variables restored after the test (AwsSim.mlflow_client sets them); a dead host
    fails a call after a few seconds instead of MLflow's minutes of retries."""
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_SERVER_CERT_PATH"):
        monkeypatch.setenv(key, "")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")


@pytest.fixture(scope="session")
def aws_sim() -> AwsSim:
    moto_server, pg_bindir = _moto_server(), _pg_bindir()
    if moto_server is None:
        pytest.skip("no moto_server (make infra-venv builds .venv-infra with moto[server]; or set MLOPS_MOTO_SERVER)")
    if pg_bindir is None:
        pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql (apt-get install postgresql-15)")
    for tool in ("ip", "nft", "ss", "nginx"):
        if shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
            pytest.fail(f"no `{tool}` on this machine: `make test-aws-sim` installs iproute2, nftables and nginx")

    root = Path(tempfile.mkdtemp(prefix="mlops-aws-sim-"))
    root.chmod(0o755)
    network = Network(f"mlsim{OFFSET or ''}", SUBNET, HOSTS, root / "bin")
    password = secrets.token_urlsafe(24) + ":%\\"  # pgpass-special characters on purpose
    moto = pg_data = lb = None
    inventory, vars_file, state_dir = root / "inventory", root / "test-vars.yml", root / "client"
    try:
        network.up()
        moto = subprocess.Popen(
            [moto_server, "-H", network.gateway, "-p", str(MOTO_PORT)],
            stdout=(root / "moto.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait(lambda: _listening(network.gateway, MOTO_PORT), "moto server")
        pg_data, sockets = _start_rds(root, pg_bindir, password, network)

        sim = AwsSim(root, inventory, vars_file, state_dir, password, "", [], pg_bindir, sockets, network)
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
        cert, key = _certificate(root, network)
        sim.lb_ca = cert

        # The serving and trainer roles install the project from a snapshot taken once, so both runs
        # see the same sources even while the working tree is being edited (the second run must
        # change nothing). The packages are the ones pyproject.toml lists, as the roles copy them.
        project = root / "project"
        project.mkdir()
        shutil.copy(REPO / "pyproject.toml", project / "pyproject.toml")
        for package in _project_packages():
            shutil.copytree(REPO / package, project / package, ignore=shutil.ignore_patterns("__pycache__"))

        _, terraform_vars = build_inventory(_terraform_outputs(network, sim.secret_arn, sim.mlflow_secret_arn))
        group_vars = inventory / "group_vars" / "all"
        group_vars.mkdir(parents=True)
        (inventory / "hosts.yml").write_text(yaml.safe_dump(_hosts_yml(sim)))
        (group_vars / "terraform.yml").write_text(yaml.safe_dump(terraform_vars))
        shutil.copy(REPO / "ansible/inventories/aws/group_vars/all/main.yml", group_vars / "main.yml")
        (group_vars / "simulator.yml").write_text(
            yaml.safe_dump(
                {
                    "mlflow_secretsmanager_endpoint_url": sim.moto_url,
                    "mlflow_s3_endpoint_url": sim.moto_url,
                    "mlflow_extra_environment": {"AWS_SHARED_CREDENTIALS_FILE": str(credentials)},
                    "rds_roles_controller_environment": {"AWS_SHARED_CREDENTIALS_FILE": str(operator)},
                    # The deployment's certificate (ACM's on the load balancer; the hosts' fronts too).
                    "nginx_tls_cert_src": str(cert),
                    "nginx_tls_key_src": str(key),
                    # The trainer environment is installed for real, with the `native` extra: its torch
                    # 2.13 comes from the local CPU wheel pip is configured to find (the `trainer`
                    # extra's torch 2.8 + IPEX would be GBs from PyTorch's index).
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
                    "mlops_instance": INSTANCE,
                    "mlops_client_state_dir": str(state_dir),
                    # The public name does not resolve here: clients use the load balancer's address.
                    "mlops_client_host": network.address("lb"),
                }
            )
        )
        lb = start_load_balancer(sim, cert, key)
        sim.provision()
        sim.provision()
        yield sim
    finally:
        # The hosts go with their namespaces (network.down kills every process on them): no `make
        # down`, and the cron entries are in the hosts' own /etc/cron.d. The load balancer is one.
        network.down()
        if lb is not None:
            lb.wait(timeout=30)
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
