"""Session fixtures: a private instance of the real platform on loopback.

The instance is provisioned with the same `make up` (the same Ansible roles) a user runs, under a
temporary root, with its own instance name and ports, so the tests never touch a platform the
user already runs on this machine. It is stopped with `make down` at the end of the session.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mlops.settings import get_settings
from mlops.tracking import read_env_file

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"

# MLOPS_TEST_PORT_OFFSET lets test sessions run side by side (each gets its own instance): the test
# groups move it by multiples of 100 (their .mk files), the upgrade test's instance by 100 more.
PORT_OFFSET = int(os.environ.get("MLOPS_TEST_PORT_OFFSET", "0"))
INSTANCE = "mlopstest" if PORT_OFFSET == 0 else f"mlopstest{PORT_OFFSET}"
# The ports a test instance sets; Ansible derives the others from mlflow_port (serving +700, Prometheus,
# Alertmanager and the exporters +4090..+4187) and nginx_http_port (its status page +11). The bases keep
# every port of one instance clear of every other instance's at the offsets in use: the S3 store once
# sat at 19000 + offset, where the instance 100 below had its node exporter, and a monitoring run beside
# a resilience run found its S3 port taken. tests/test_ports.py checks this with the roles' own defaults.
BASE_PORTS = {
    "nginx_https_port": 18443,
    "nginx_http_port": 18080,
    "postgresql_port": 15432,
    "s3server_port": 17000,
    "mlflow_port": 15000,
}


def _instance_ports(offset: int) -> dict[str, int]:
    return {key: port + offset for key, port in BASE_PORTS.items()}


PORTS = _instance_ports(PORT_OFFSET)
# Single sign-on: every test instance names an OpenID provider on this loopback port (tests/oidc: the npm
# `oidc-provider`), which tests/platform/test_oidc.py starts; MLflow asks it only when someone logs in there.
OIDC_PORT = 14000 + PORT_OFFSET
OIDC_CLIENT_ID = "mlops-test"
OIDC_ROLES = {"ml-team": "data-scientist", "ml-readers": "viewer"}
SERVER_NAME = "mlops-test.internal"
AUTH_CACHE_TTL_S = 10
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def run_make(*args: str, vars_file: Path | None = None, timeout: int = 900,
             check: bool = True) -> subprocess.CompletedProcess[str]:
    """``make ARGS`` in the repository (with ``ANSIBLE_ARGS=-e @vars_file``); fails the test with its output
    when ``check`` and it fails. The one way tests run Makefile targets."""
    argv = ["make", "--no-print-directory", *args]
    if vars_file is not None:
        argv.append(f"ANSIBLE_ARGS=-e @{vars_file}")
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"make {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-6000:]}\n"
                    f"{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="session")
def instance_ports():  # noqa: ANN201 - the function itself
    """The ports a private test instance at a given offset sets (``PORTS`` is this session's)."""
    return _instance_ports


@pytest.fixture(scope="session")
def make_target():  # noqa: ANN201 - the function itself
    """:func:`run_make` for test modules (``make_target("backup", vars_file=...)``)."""
    return run_make


@dataclass
class PrivatePostgres:
    """A throwaway PostgreSQL cluster on a loopback port (trust auth for the ``postgres`` user)."""

    root: Path
    port: int

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} dbname=postgres user=postgres"


@contextlib.contextmanager
def _private_postgres(prefix: str, port: int) -> Iterator[PrivatePostgres]:
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL server binaries not found in {PG_BIN}")
    # Not under pytest's tmp_path: its parents are private to root and initdb runs as postgres.
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o777)
    data = root / "pg"
    as_postgres = ["su", "postgres", "-s", "/bin/sh", "-c"] if os.geteuid() == 0 else ["sh", "-c"]
    subprocess.run([*as_postgres, f"{PG_BIN}/initdb -A trust -U postgres -D {data} >/dev/null"], check=True)
    subprocess.run([*as_postgres, f"{PG_BIN}/pg_ctl -w -D {data} -l {root}/pg.log -o "
                    f"'-p {port} -k {root} -c listen_addresses=127.0.0.1' start >/dev/null"], check=True)
    try:
        yield PrivatePostgres(root, port)
    finally:
        subprocess.run([*as_postgres, f"{PG_BIN}/pg_ctl -w -D {data} -m immediate stop >/dev/null"], check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def private_postgres():  # noqa: ANN201 - a context manager factory
    """``with private_postgres(prefix, port) as pg:`` a private cluster (``pg.dsn``, ``pg.root``); port offset
    by MLOPS_TEST_PORT_OFFSET here."""

    def start(prefix: str, port: int) -> contextlib.AbstractContextManager[PrivatePostgres]:
        return _private_postgres(prefix, port + PORT_OFFSET)

    return start


@dataclass
class Platform:
    root: Path
    state_dir: Path
    vars_file: Path
    instance: str = INSTANCE
    ports: dict[str, int] = field(default_factory=lambda: dict(PORTS))
    server_name: str = SERVER_NAME
    up_output: str = ""
    """What the first `make up` printed."""

    @property
    def env(self) -> dict[str, str]:
        return read_env_file(self.state_dir / "local.env")

    @property
    def https(self) -> str:
        return f"https://127.0.0.1:{self.ports['nginx_https_port']}"

    @property
    def ca_cert(self) -> str:
        return self.env["MLFLOW_TRACKING_SERVER_CERT_PATH"]

    @property
    def admin_password(self) -> str:
        return self.password("admin")

    def password(self, user: str) -> str:
        """An MLflow login's password, as `make up` (or `mlops users`) generated it."""
        return (self.state_dir / "credentials" / f"mlflow-{user}").read_text().strip()

    def env_as(self, user: str) -> dict[str, str]:
        """local.env's client variables with another login: a person, the admin or a service identity
        (``svc-gate`` promotes)."""
        return {**self.env, "MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": self.password(user)}

    @property
    def oidc_client_secret(self) -> str:
        """The secret `make up` gave MLflow for the test OpenID provider's client (in the vars file)."""
        import yaml

        return str(yaml.safe_load(self.vars_file.read_text())["mlflow_oidc_client_secret"])

    @property
    def db_password(self) -> str:
        return (self.state_dir / "credentials" / "postgresql-mlflow").read_text().strip()

    def path(self, kind: str) -> Path:
        """kind: home, config, data, log, run (the FHS directories under the temporary root)."""
        base = {"home": "opt", "config": "etc", "data": "var/lib", "log": "var/log", "run": "run"}[kind]
        return self.root / base / self.instance

    def service_log(self, service: str, containing: str, timeout: float = 10) -> str:
        """``service``'s log once it contains ``containing`` (or as it is after ``timeout`` s): a program writes its
        line before it answers, but supervisord copies it to the file a moment later."""
        log = self.path("log") / f"{service}.log"
        deadline = time.monotonic() + timeout
        while True:
            text = log.read_text(errors="replace") if log.exists() else ""
            if containing in text or time.monotonic() > deadline:
                return text
            time.sleep(0.2)

    def make(self, *args: str, timeout: int = 900, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run Makefile targets against this instance; fail with their output if they fail (``check``)."""
        return run_make(*args, vars_file=self.vars_file, timeout=timeout, check=check)

    def up_again(self) -> tuple[tuple[str, str, str], list[str]]:
        """`make up` once more: (changed, unreachable, failed) from its recap, and each task that changed
        with what Ansible printed for it. A service the run found down and started comes with supervisord's
        record of it and the end of its log (why it was down)."""
        recap = self.make("up").stdout
        match = re.search(r"changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", recap)
        assert match, recap[-2000:]
        changed = []
        for block in recap.split("\nTASK ")[1:]:
            if "\nchanged:" not in block:
                continue
            text = block[:600]
            started = re.match(r"\[mlops_service : Start (\S+)\]", block)
            if started:
                program = f"{self.instance}-{started[1]}"
                supervisord = (self.path("log") / "supervisord.log").read_text(errors="replace").splitlines()
                own_log = self.path("log") / f"{started[1]}.log"
                tail = own_log.read_text(errors="replace").splitlines()[-15:] if own_log.exists() else []
                text += "\n".join(["", "supervisord.log:", *[ln for ln in supervisord if program in ln][-15:],
                                    f"{own_log.name}:", *tail])
            changed.append(text)
        return (match[1], match[2], match[3]), changed

    def supervisorctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(self.path("home") / "supervisor/bin/supervisorctl"),
                "-c", str(self.path("config") / "supervisord.conf"),
                *args,
            ],
            capture_output=True,
            text=True,
            check=False,
        )


@contextlib.contextmanager
def provisioned_platform(extra_vars: dict[str, object] | None = None) -> Iterator[Platform]:
    """`make up` of a private instance (``extra_vars``: more Ansible variables), `make down` and cleanup after."""
    root = Path(tempfile.mkdtemp(prefix="mlops-it-"))
    state_dir = root / "client"
    vars_file = root / "test-vars.yml"
    settings: dict[str, object] = {
        "mlops_root": root,
        "mlops_instance": INSTANCE,
        "mlops_client_state_dir": state_dir,
        "nginx_server_name": SERVER_NAME,
        # The test name does not resolve: clients use the loopback address (also in the certificate).
        "mlops_client_host": "127.0.0.1",
        # A removed user or an old password stops working within this many seconds in every MLflow
        # worker (the credential cache; 60 s by default): the tests that check it wait less.
        "mlflow_auth_cache_ttl_seconds": AUTH_CACHE_TTL_S,
        **PORTS,
        "mlflow_oidc_issuer": f"http://127.0.0.1:{OIDC_PORT}",
        "mlflow_oidc_client_id": OIDC_CLIENT_ID,
        "mlflow_oidc_client_secret": secrets.token_urlsafe(24),
        "mlflow_oidc_redirect_uri": f"https://127.0.0.1:{PORTS['nginx_https_port']}/oidc/callback",
        "mlflow_oidc_roles": json.dumps(OIDC_ROLES),
        # The monitoring role's optional branches, so that a second `make up` covers them too
        # (tests/platform/test_platform.py): alerts go to a webhook, here loopback's discard port where
        # nothing listens (Alertmanager logs the failed deliveries and retries), and one alert's `for:`
        # is overridden. The monitoring group's instance sets its own receiver and overrides.
        "monitoring_webhook_url": "http://127.0.0.1:9/alerts",
        "monitoring_alert_for": json.dumps({"ServingHighErrorRatio": "10m"}),
        **(extra_vars or {}),
    }
    vars_file.write_text("".join(f"{key}: {value}\n" for key, value in settings.items()))
    instance = Platform(root=root, state_dir=state_dir, vars_file=vars_file)
    try:
        instance.up_output = instance.make("up").stdout
        yield instance
    finally:
        run_make("down", vars_file=vars_file, timeout=300, check=False)
        # Scheduled jobs of a host without systemd are /etc/cron.d entries (mlops_timer): a stopped
        # test instance's entries must not be left for another instance's cron daemon to run.
        for entry in Path("/etc/cron.d").glob(f"{instance.instance}-*"):
            entry.unlink(missing_ok=True)
        if not os.environ.get("MLOPS_KEEP_TEST_ROOT"):
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def platform() -> Iterator[Platform]:
    with provisioned_platform() as instance:
        yield instance


# --- the operations instance: monitoring's alerts, then the faults of the resilience tests ---------------

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
    notifications: list[dict[str, Any]] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                notifications.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # the port is bound here: no other can take it
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return Receiver(f"http://127.0.0.1:{server.server_address[1]}/alerts", notifications, lock), server


@pytest.fixture(scope="session")
def alert_receiver() -> Iterator[Receiver]:
    """Alertmanager's webhook target on a loopback port, for the operations instance."""
    found, server = _serve_receiver()
    yield found
    server.shutdown()


# Short periods: Prometheus scrapes and evaluates every 5 s, Alertmanager groups for 1 s and delivers to
# the receiver, the retrain tick runs every minute (its dead-man's alert fires after 2 minutes without a
# success) and the alerts under test wait seconds instead of minutes (their `for:` overridden by name).
# The tick checks a model nobody promotes, so it stays a check (no champion: nothing to do) while the
# resilience tests serve and load `pill-quality`. Serving skips torch.compile (minutes per load on two
# shared cores) and polls its alias every second.
def operations_instance_vars(receiver: Receiver) -> dict[str, object]:
    return {
        "serving_compile": "false",
        "serving_poll_interval": 1,
        "monitoring_scrape_interval": "5s",
        "monitoring_evaluation_interval": "5s",
        "monitoring_group_wait": "1s",
        "monitoring_group_interval": "5s",
        "monitoring_repeat_interval": "1m",
        "monitoring_webhook_url": receiver.url,
        "monitoring_alert_for": json.dumps({"ServingHighErrorRatio": "15s", "RetrainTickMissed": "0s"}),
        "retrain_model_name": "tick-only",
        "retrain_cron": '"* * * * *"',
        "retrain_on_calendar": "minutely",
        "retrain_randomized_delay": 0,
    }


@pytest.fixture(scope="session")
def operations_platform(alert_receiver: Receiver) -> Iterator[Platform]:
    """One private instance for tests/monitoring (which need no champion: they run first) and then
    tests/resilience (which promote one and kill its processes): `make test-monitoring-resilience` runs
    both on it, one `make up` instead of two; `make test-monitoring` or `make test-resilience` alone
    make it for themselves."""
    with provisioned_platform(operations_instance_vars(alert_receiver)) as instance:
        yield instance


@pytest.fixture(scope="session")
def oidc_test_client(platform: Platform) -> tuple[int, dict[str, object]]:
    """(port, client) of the OpenID provider this session's instance trusts: the port to start it on and the
    client registration (id, the secret `make up` gave MLflow, the redirect URI) it must know."""
    return OIDC_PORT, {"client_id": OIDC_CLIENT_ID, "client_secret": platform.oidc_client_secret,
                       "redirect_uris": [f"{platform.https}/oidc/callback"],
                       "post_logout_redirect_uris": [f"{platform.https}/oidc/logged-out"]}


@pytest.fixture(scope="session")
def platform_env(platform: Platform) -> dict[str, str]:
    """The client variables a notebook gets from local.env (tracking URI, user, password, CA)."""
    return platform.env


def _wait_until(predicate, timeout: float, what: str, log: Path | None = None) -> None:  # noqa: ANN001
    """Poll ``predicate`` (HTTP errors count as not yet) every 0.5 s; fail naming ``what`` (and ``log``'s tail)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    tail = f":\n{log.read_text()[-3000:]}" if log is not None and log.exists() else ""
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}{tail}")


@pytest.fixture(scope="session")
def wait_until():  # noqa: ANN201 - the function itself
    """``wait_until(predicate, timeout, what, log=None)``: poll until true or fail the test."""
    return _wait_until


def _free_port() -> int:
    """A loopback port nothing listens on at this moment (the OS picks it; bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def free_port():  # noqa: ANN201 - the function itself
    """``free_port()``: a loopback port nothing listens on (for a server the test starts, or a refused one)."""
    return _free_port


@contextlib.contextmanager
def _chromium_page(username: str | None, password: str | None, height: int = 900) -> Iterator[object]:
    """A page of Debian's headless Chromium (Playwright) that logs in with basic auth (unless ``username`` is
    None) and accepts the test CA."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=shutil.which("chromium"),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync"],
        )
        try:
            credentials = {"username": username, "password": password} if username is not None else None
            context = browser.new_context(http_credentials=credentials, ignore_https_errors=True,
                                          viewport={"width": 1400, "height": height})
            yield context.new_page()
        finally:
            browser.close()


@pytest.fixture(scope="session")
def chromium_page():  # noqa: ANN201 - a context manager factory
    """``with chromium_page(user, password) as page:`` (skip the test first where chromium is missing)."""
    return _chromium_page


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@contextlib.contextmanager
def _environ(overrides: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in overrides}
    os.environ.update(overrides)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()


@pytest.fixture(scope="session")
def patched_environ():  # noqa: ANN201 - a context manager factory
    """``with patched_environ(env):`` sets the variables and re-reads settings; restores both after.

    For module-scoped fixtures, where pytest's function-scoped ``monkeypatch`` cannot be used.
    """
    return _environ


def _ansible_probe_dir(root: Path) -> tuple[Path, dict[str, str]]:
    """A mirror of the repository made of links under ``root``, its ansible/ a directory of links:
    a probe playbook written there runs with the real playbook_dir, group_vars and the paths the
    roles derive from them. Returns (that directory, the environment to run ansible-playbook with)."""
    work = root / "ansible"
    work.mkdir(parents=True)
    for entry in REPO.iterdir():
        if entry.name != "ansible":
            (root / entry.name).symlink_to(entry)
    for entry in (REPO / "ansible").iterdir():
        (work / entry.name).symlink_to(entry)
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible/ansible.cfg"),
               ANSIBLE_ROLES_PATH=str(REPO / "ansible/roles"))
    return work, env


@pytest.fixture(scope="session")
def ansible_probe_dir():  # noqa: ANN201 - the function itself
    """``ansible_probe_dir(root)`` -> (directory for a probe playbook beside site.yml, its environment)."""
    return _ansible_probe_dir


def _nginx_main_config(work: Path, servers: Path) -> Path:
    """A main nginx.conf of its own in ``work`` (pid, logs and temporary files there) including the
    server blocks in ``servers``; for `nginx -t` or an nginx a test runs."""
    for sub in ("logs", "tmp"):
        (work / sub).mkdir(exist_ok=True)
    main = work / "nginx.conf"
    main.write_text(
        f"pid {work}/nginx.pid; error_log {work}/logs/error.log;\n"
        f"events {{}}\nhttp {{ access_log {work}/logs/access.log; client_body_temp_path {work}/tmp/b;"
        f" proxy_temp_path {work}/tmp/p; fastcgi_temp_path {work}/tmp/f; uwsgi_temp_path {work}/tmp/u;"
        f" scgi_temp_path {work}/tmp/s; include {servers}; }}\n"
    )
    return main


@pytest.fixture(scope="session")
def nginx_main_config():  # noqa: ANN201 - the function itself
    """``nginx_main_config(work_dir, server_blocks_file)`` -> the main configuration's path."""
    return _nginx_main_config


@pytest.fixture(autouse=True)
def _environ_restored() -> Iterator[None]:
    """Undo what a test leaves in os.environ: a command run in-process (Typer's CliRunner) loads
    .mlops/local.env into it, and the next test (or a platform started later by this process)
    would otherwise see that login."""
    saved = dict(os.environ)
    yield
    if dict(os.environ) != saved:
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()


@dataclass
class ServeProcess:
    """A private ``mlops serve`` (gunicorn + uvicorn worker) on a free loopback port."""

    url: str
    proc: subprocess.Popen  # type: ignore[type-arg]
    log: Path

    def stop(self, timeout: float = 90) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=timeout)


def _start_serving(env: dict[str, str], model: str, log: Path) -> ServeProcess:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlops_cli", "serve", "--port", str(port), "--model", model, "--workers", "1"],
        cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    return ServeProcess(f"http://127.0.0.1:{port}", proc, log)


@pytest.fixture(scope="session")
def serve_process():  # noqa: ANN201 - a factory
    """``serve_process(env, model, log_path)`` starts ``mlops serve`` for ``model``; stopped at the latest here."""
    started: list[ServeProcess] = []

    def start(env: dict[str, str], model: str, log: Path) -> ServeProcess:
        started.append(_start_serving(env, model, log))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def _lying_png(width: int, height: int) -> str:
    """Base64 of a 60-byte PNG whose header declares ``width`` x ``height`` pixels (PIL's bomb check trips on it)."""
    import base64
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b""))
    return base64.b64encode(png).decode()


@pytest.fixture(scope="session")
def lying_png():  # noqa: ANN201 - the function itself
    """A factory of hostile images: tiny PNG files whose header declares enormous dimensions."""
    return _lying_png

