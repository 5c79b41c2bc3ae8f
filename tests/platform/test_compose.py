"""Static checks of docker-compose.yml: the STYLE rules, and that it is the Ansible single node.

No Docker engine runs here, so the compose file is read, never started. The checks that compose
"follows the same design" render the Ansible roles with Ansible itself (a probe playbook that
loads every role with `when: false`, the repository's group_vars and the local inventory, then
evaluates the roles' own definitions: the mlops_service and mlops_timer includes, the
`mlflow db upgrade` task, the backup settings, the certificate request, the nginx template, MLflow's
auth configuration and logins) under
COMPOSE_PROFILE, the Ansible variables that say where things are in the compose network. Every
command line, environment, cron line, job script and setting that Ansible renders must then be
equal to compose's, once compose's own `${VAR:-default}` interpolation is applied.
"""

from __future__ import annotations

import configparser
import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from mlops.tracking import read_env_file

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
COMPOSE_TEXT = (REPO / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES = COMPOSE["services"]
# The monitoring and node_exporter roles' programs (upstream images) and Grafana (profile).
MONITORING = {"prometheus", "alertmanager", "node-exporter", "nginx-exporter", "postgres-exporter"}
LONG_RUNNING = {"postgres", "minio", "mlflow", "serving", "scheduler", "nginx", *MONITORING, "grafana"}
ONE_SHOT = {"postgres-init", "minio-init", "mlflow-db-upgrade", "mlflow-auth-bootstrap", "nginx-init", "mlflow-users"}
# Long-running services without a healthcheck, and why (nothing may wait for their health).
WITHOUT_HEALTHCHECK = {
    "nginx-exporter": "its image is FROM scratch (no shell, no wget); Prometheus's up{job=\"nginx\"} watches it",
}
# Optional services and the compose profile that starts them.
PROFILES = {"grafana": ["grafana"]}
# Services that run the project's programs (read their secrets from files, like the roles).
APP_SERVICES = {"mlflow", "mlflow-db-upgrade", "mlflow-auth-bootstrap", "mlflow-users", "serving", "scheduler"}

# Stands in for ${MLOPS_SERVER_NAME} on both sides (a name that is not compose's default, so a
# value hard-coded on one side shows).
SERVER_NAME = "mlops.example.org"
HTTPS_PORT = "8443"  # compose's default ${MLOPS_HTTPS_PORT}
# The compose network in Ansible's words: play vars of the probe (above group_vars and role
# defaults). Everything else is the roles' own defaults and the local inventory.
COMPOSE_PROFILE: dict[str, Any] = {
    # MLflow and serving listen on the container's interfaces; clients use service names.
    "mlflow_listen_address": "0.0.0.0",  # noqa: S104
    "serving_listen_address": "0.0.0.0",  # noqa: S104
    "mlops_mlflow_client_environment": {"MLFLOW_TRACKING_URI": "http://mlflow:5000"},
    "mlflow_gc_tracking_uri": "http://mlflow:5000",
    # nginx is another container: MLflow, reachable from this private network alone, believes any
    # peer's X-Real-IP (the services' direct calls carry none).
    "mlflow_auth_trusted_proxies": ["any"],
    # Host headers MLflow accepts: the public name and the service name clients use inside the
    # network (MLflow rejects any other Host on API calls, also under gunicorn).
    "mlflow_allowed_hosts": [SERVER_NAME, "mlflow"],
    # PostgreSQL and MinIO are services of their own.
    "mlflow_db_host": "postgres",
    "postgresql_listen_address": "postgres",
    "mlflow_s3_endpoint_url": "http://minio:9000",
    # MinIO's key pair is a secret (s3rver's is a public development pair): programs find it in
    # ~/.aws/credentials, as on AWS they find the instance role, so no key is in an environment.
    "mlflow_s3_access_key_id": "",
    "mlflow_s3_secret_access_key": "",
    "backup_s3_access_key_id": "",
    "backup_s3_secret_access_key": "",
    # nginx listens on the container's 80/443; the host publishes MLOPS_HTTPS_PORT. Its stub_status
    # server listens on the compose network (nginx-exporter is another container), not published.
    "nginx_listen_address": "0.0.0.0",  # noqa: S104
    "nginx_status_address": "0.0.0.0:8091",
    "nginx_http_port": 80,
    "nginx_https_port": 443,
    "nginx_public_https_port": int(HTTPS_PORT),
    "nginx_server_name": SERVER_NAME,
}
# nginx reaches the upstreams by service name (task vars of the nginx render only).
NGINX_UPSTREAM_NAMES = {"mlflow_listen_address": "mlflow", "serving_listen_address": "serving",
                        "monitoring_prometheus_listen_address": "prometheus"}
# Ansible jobs compose does not run, and why (the README says so too).
JOBS_LEFT_OUT = {
    "logrotate": "containers log to Docker's json-file driver, rotated by x-logging (20 MB x 5)",
}
COMPOSE_JOBS = {"retrain", "gate", "backup", "gc"}
# The order the scheduler installs them in (its `for job in ...` loop).
COMPOSE_JOB_ORDER = ["retrain", "gate", "backup", "gc"]
# Ansible services (mlops_service_name) that are compose services of the same name.
COMPOSE_SERVICES_OF_ROLES = ("mlflow", "serving")
# Ansible services that compose runs from upstream images (the image's own program and user):
# their flags are compared, not their argv. The job names the monitoring role's Prometheus scrapes.
MONITORING_SERVICES_OF_ROLES = ("prometheus", "alertmanager", "node-exporter", "nginx-exporter", "postgres-exporter")
SCRAPE_JOBS = ["prometheus", "alertmanager", "mlflow", "nginx", "postgres", "serving", "node"]
# Flags whose values compose sets apart from Ansible's, and why. Addresses are compared by port only
# (compose listens on the container's interfaces and reaches other containers by service name).
FLAG_DIFFERENCES = {
    ("prometheus", "storage.tsdb.path"): "the image's data directory (its user owns it; a named volume inherits that)",
    ("prometheus", "web.console.libraries"): "the image's prom.lib and menu.lib (Ansible copies Debian's) + ours",
    ("alertmanager", "storage.path"): "the image's data directory (its user owns it; a named volume inherits that)",
    ("alertmanager", "config.file"): "the entrypoint writes the effective file (webhook or none) next to the state",
}
# Where the contract of metric names is written down (the dashboard may query only these).
DASHBOARD_METRICS = {
    "mlops_serving_requests_total", "mlops_serving_request_latency_seconds_bucket", "mlops_serving_model_info",
    "mlops_promotion_last_timestamp_seconds", "mlops_promotion_refused", "mlops_champion_version",
    "mlops_drift_feature_score", "mlops_drift_detected", "mlops_job_last_exit_code",
    "mlops_job_last_success_timestamp_seconds", "node_filesystem_avail_bytes", "node_filesystem_size_bytes",
    "node_memory_MemAvailable_bytes", "node_memory_MemTotal_bytes", "ALERTS",
}
GRAFANA = REPO / "prometheus/grafana"
# MLflow's logins: the service identities (mlops_service_identities) compose makes no login for, and
# why; the identities the roles give a program of its own (mlops_client's tasks_from: service) and
# where compose runs that program (its HOME is the compose service's or the job script's).
IDENTITIES_LEFT_OUT = {
    "trainer": "compose runs no trainer hosts",
}
CLIENT_LOGIN_PROGRAMS = {"serving": ("service", "serving"), "retrain": ("job", "job-retrain"),
                         "gate": ("job", "job-gate"), "gc": ("job", "job-gc")}
# The users the images run as (mlops, mlops-serving: the Dockerfile's; Prometheus: the prom/prometheus
# image's nobody).
MLOPS_UID = 10001
PROMETHEUS_UID = 65534
# Stand-ins for the passwords in what the roles render (the probe never resolves a real one).
ADMIN_PASSWORD = "@ADMIN_PASSWORD@"
LOGIN_PASSWORD = "@PASSWORD@"
WEBHOOK_URL = "https://hooks.example.org/services/T0KEN"
# Single sign-on as the mlflow role takes it (mlflow_oidc_*) and as compose's .env gives it.
OIDC_VARS = {"mlflow_oidc_issuer": "https://idp.example.org/realms/team", "mlflow_oidc_client_id": "mlops-team",
             "mlflow_oidc_roles": {"ml-team": "data-scientist", "platform-admins": "admin"}}
OIDC_ENV = {"MLOPS_OIDC_ISSUER": "https://idp.example.org/realms/team", "MLOPS_OIDC_CLIENT_ID": "mlops-team",
            "MLOPS_OIDC_ROLES": "ml-team=data-scientist, platform-admins=admin"}


# --- compose interpolation -----------------------------------------------------------------------

_INTERPOLATION = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}|\$(\w+)")


def interpolate(value: Any, env: dict[str, str] | None = None) -> Any:
    """Apply compose's variable interpolation as `docker compose config` would with an .env that
    sets only the required variables (rendered as <NAME>) and MLOPS_SERVER_NAME."""
    env = {"MLOPS_SERVER_NAME": SERVER_NAME} if env is None else env
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        if name in env:
            return env[name]
        if m.group(2) and m.group(2).endswith("?"):
            return f"<{name}>"
        return m.group(3) or ""

    return _INTERPOLATION.sub(one, value)


RESOLVED = interpolate(COMPOSE)
RSERVICES = RESOLVED["services"]


def _dockerfile() -> str:
    return COMPOSE["x-build"]["dockerfile_inline"]


def _shell_lines(text: str) -> list[list[str]]:
    """A script or cron file as shell words per line, comments and blank lines left out (so
    quoting style and comments may differ, words may not)."""
    return [shlex.split(line) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _config(name: str) -> str:
    return RESOLVED["configs"][name]["content"]


def _contents(configs: dict) -> dict[str, str]:
    """The inline configs' texts (a config may also be a repository file: `file:`)."""
    return {name: config["content"] for name, config in configs.items() if "content" in config}


def _mount(service: str, target: str) -> str:
    for entry in SERVICES[service].get("configs", []):
        if entry["target"] == target:
            return entry["source"]
    raise AssertionError(f"compose service {service} mounts no config at {target}")


# --- Ansible, rendered -----------------------------------------------------------------------------

_TASK_KEYS = ("block", "rescue", "always")
_INCLUDE_ROLE = ("ansible.builtin.include_role", "include_role", "ansible.builtin.import_role", "import_role")
_COMMAND = ("ansible.builtin.command", "command", "ansible.builtin.shell", "shell")
_COPY = ("ansible.builtin.copy", "copy")
_TEMPLATE = ("ansible.builtin.template", "template")
# Only the probe's tasks run: the roles are loaded for their variables (and skipped besides).
_PROBE_TAG = "compose_probe"
# How the nginx role makes its self-signed certificate (community.crypto): key, request, signature.
_CERTIFICATE_MODULES = {
    "key": ("community.crypto.openssl_privatekey", "openssl_privatekey"),
    "csr": ("community.crypto.openssl_csr_pipe", "openssl_csr_pipe", "community.crypto.openssl_csr", "openssl_csr"),
    "certificate": ("community.crypto.x509_certificate", "x509_certificate"),
}
_CERTIFICATE_FACTS = {"path", "type", "size", "passphrase", "common_name", "subject_alt_name", "basic_constraints",
                      "basic_constraints_critical", "provider", "selfsigned_digest", "selfsigned_not_after"}


def _tasks(node: Any):
    if isinstance(node, list):
        for item in node:
            yield from _tasks(item)
    elif isinstance(node, dict):
        yield node
        for key in _TASK_KEYS:
            yield from _tasks(node.get(key))


def _role_tasks() -> list[tuple[str, dict]]:
    found = []
    for path in sorted((ANSIBLE / "roles").glob("*/tasks/*.yml")):
        role = path.parts[-3]
        try:
            tasks = yaml.safe_load(path.read_text()) or []
        except yaml.YAMLError as exc:
            pytest.fail(f"{path.relative_to(REPO)} is not valid YAML: {exc}")
        found.extend((role, task) for task in _tasks(tasks))
    return found


def _module(task: dict, names: tuple[str, ...]) -> Any:
    return next((task[n] for n in names if n in task), None)


def _definitions(of_role: str, name_key: str) -> dict[str, tuple[str, dict]]:
    """The includes of role `of_role` (mlops_service, mlops_timer) in every role's tasks:
    {their <name_key> value: (including role, include vars)}."""
    found = {}
    for role, task in _role_tasks():
        include = _module(task, _INCLUDE_ROLE)
        if isinstance(include, dict) and include.get("name") == of_role and name_key in task.get("vars", {}):
            found[task["vars"][name_key]] = (role, task["vars"])
    if not found:
        pytest.fail(f"no role includes {of_role} with {name_key} in ansible/roles/*/tasks: update test_compose.py")
    return found


def _find_task(what: str, predicate) -> tuple[str, dict]:
    for role, task in _role_tasks():
        if predicate(task):
            return role, task
    pytest.fail(f"found no task in ansible/roles/*/tasks that {what}: update test_compose.py")


def _probe_playbook() -> list[dict]:
    timer_templates = ANSIBLE / "roles/mlops_timer/templates"
    tasks: list[dict] = []

    def dump(name: str, value: Any, task_vars: dict) -> None:
        # debug runs on the controller (no module to ship): the JSON callback reports each value.
        tasks.append({
            "name": f"{_PROBE_TAG} {name}",
            "ansible.builtin.debug": {"msg": "{{ __probe }}"},
            "vars": {**task_vars, "__probe": value},
            "tags": [_PROBE_TAG],
        })

    def render(name: str, template: Path, task_vars: dict) -> None:
        dump(name, "{{ lookup('ansible.builtin.template', '" + str(template) + "') }}", task_vars)

    services = _definitions("mlops_service", "mlops_service_name")
    for name in COMPOSE_SERVICES_OF_ROLES:
        if name not in services:
            pytest.fail(f"no role runs the service {name} through mlops_service: update test_compose.py")
        _role, job = services[name]
        dump(f"service-{name}", {
            "command": "{{ mlops_service_command }}", "environment": "{{ mlops_service_environment }}",
            "user": "{{ mlops_service_user }}", "workdir": "{{ mlops_service_workdir }}",
            "stop_signal": "{{ mlops_service_stop_signal }}", "stop_timeout": "{{ mlops_service_stop_timeout }}",
        }, job)
    for name in MONITORING_SERVICES_OF_ROLES:
        if name not in services:
            pytest.fail(f"no role runs the service {name} through mlops_service: update test_compose.py")
        _role, job = services[name]
        dump(f"service-{name}", {"command": "{{ mlops_service_command }}",
                                 "environment": "{{ mlops_service_environment | default({}) }}"}, job)
    monitoring_templates = ANSIBLE / "roles/monitoring/templates"
    render("prometheus.yml", monitoring_templates / "prometheus.yml.j2", {})
    render("alertmanager.yml-webhook", monitoring_templates / "alertmanager.yml.j2",
           {"monitoring_webhook_url": WEBHOOK_URL})
    render("alertmanager.yml-none", monitoring_templates / "alertmanager.yml.j2", {"monitoring_webhook_url": ""})
    dump("monitoring", {
        "metrics_dir": "{{ mlops_metrics_dir }}", "metrics_group": "{{ mlops_metrics_group }}",
        "rules_src": "{{ monitoring_rules_src }}",
        "consoles_src": "{{ monitoring_consoles_src }}", "config_dir": "{{ __monitoring_config_dir }}",
        "pg_user": "{{ monitoring_postgres_user }}", "pg_password_file": "{{ __monitoring_pg_password_file }}",
        "external_url": "{{ __monitoring_external_url }}", "route_prefix": "{{ __monitoring_route_prefix }}",
    }, {})
    _role, gunicorn = _find_task("installs MLflow's gunicorn configuration", lambda t: isinstance(
        _module(t, _COPY), dict) and str(_module(t, _COPY).get("src", "")).endswith("gunicorn.conf.py"))
    dump("mlflow-gunicorn", {"src": _module(gunicorn, _COPY)["src"], "dest": _module(gunicorn, _COPY)["dest"]},
         gunicorn.get("vars", {}))
    timers = _definitions("mlops_timer", "mlops_timer_name")
    dump("timer-names", sorted(timers), {})
    # The job's files are one mlops_files task (ansible/library): the schedule is its schedule.prom.j2 at
    # __mlops_timer_schedule_prom_path.
    _find_task("publishes a job's schedule (schedule.prom.j2)", lambda t: "__mlops_timer_schedule_prom_path" in str(
        _module(t, ("mlops_files",)) or "") and "schedule.prom.j2" in str(_module(t, ("mlops_files",))))
    dump("mlflow-version", "{{ mlflow_version }}", {})
    for name in sorted(COMPOSE_JOBS & set(timers)):
        _role, job = timers[name]
        dump(f"timer-{name}", {"command": "{{ mlops_timer_command }}"}, job)
        for template in ("job.sh", "cron.d"):
            render(f"{template}-{name}", timer_templates / f"{template}.j2", job)
        dump(f"schedule-{name}", {
            "dest": "{{ __mlops_timer_schedule_prom_path }}",
            "content": "{{ lookup('ansible.builtin.template', '" + str(timer_templates / "schedule.prom.j2") + "') }}",
        }, {**job, "__mlops_timer_installed": "@INSTALLED@"})
    _role, upgrade = _find_task("runs `mlflow db upgrade`", lambda t: "'upgrade'" in str(
        (_module(t, _COMMAND) or {}).get("argv", "") if isinstance(_module(t, _COMMAND), dict) else ""))
    dump("db-upgrade", {"argv": _module(upgrade, _COMMAND)["argv"], "environment": upgrade.get("environment", {})},
         upgrade.get("vars", {}))
    _role, settings = _find_task("writes the backup settings (to_nice_json)", lambda t: isinstance(
        _module(t, _COPY), dict) and "to_nice_json" in str(_module(t, _COPY).get("content", "")) and "backup" in str(
        _module(t, _COPY).get("dest", "")))
    copy = _module(settings, _COPY)
    dump("backup-settings", {"dest": copy["dest"], "content": copy["content"]}, settings.get("vars", {}))
    certificate = {}
    for key, modules in _CERTIFICATE_MODULES.items():
        _role, task = _find_task(f"uses {modules[0]} (the self-signed certificate)", lambda t, m=modules, key=key: any(
            isinstance(t.get(n), dict) and (key != "certificate" or "selfsigned" in str(t[n])) for n in m))
        certificate[key] = {k: v for k, v in _module(task, modules).items() if k in _CERTIFICATE_FACTS}
    dump("certificate", certificate, {})
    nginx_templates = sorted((ANSIBLE / "roles").glob("*/templates/mlops.conf.j2"))
    if len(nginx_templates) != 1:
        pytest.fail(f"expected one ansible/roles/*/templates/mlops.conf.j2, found {nginx_templates}")
    render("nginx.conf", nginx_templates[0], NGINX_UPSTREAM_NAMES)
    # MLflow's auth app: its configuration and secret key (paths, owners, modes), the bootstrap, the
    # users sync and the logins each program gets. Passwords are stand-ins: the roles' password
    # lookups would generate files on this machine.
    admin_login = ("{{ {mlops_mlflow_admin_user: {'name': mlops_mlflow_admin_user, 'password': '"
                   + ADMIN_PASSWORD + "'}} }}")
    all_logins = ("{{ dict(__mlflow_login_entries | map(attribute='name') | zip(__mlflow_login_entries"
                  " | map('combine', {'password': '" + LOGIN_PASSWORD + "'}))) }}")
    auth_templates = sorted((ANSIBLE / "roles").glob("*/templates/auth.ini.j2"))
    if len(auth_templates) != 1:
        pytest.fail(f"expected one ansible/roles/*/templates/auth.ini.j2, found {auth_templates}")
    render("auth.ini", auth_templates[0], {"__mlflow_logins": admin_login})
    render("auth.ini-oidc", auth_templates[0], {"__mlflow_logins": admin_login, **OIDC_VARS})
    auth_files = {}
    for name, variable, modules in (("config", "__mlflow_auth_config", _TEMPLATE),
                                    ("secret_key", "__mlflow_secret_key_file", _COPY),
                                    ("oidc_client_secret", "__mlflow_oidc_client_secret_file", _COPY)):
        _role, task = _find_task(f"writes {variable}", lambda t, m=modules, v=variable: isinstance(
            _module(t, m), dict) and v in str(_module(t, m).get("dest", "")))
        module = _module(task, modules)
        auth_files[name] = {key: module[key] for key in ("dest", "owner", "group", "mode")}
    dump("mlflow-auth-files", auth_files, {})
    _role, bootstrap = _find_task("runs `python -m mlops.mlflow_auth bootstrap`", lambda t: isinstance(
        _module(t, _COMMAND), dict) and "mlops.mlflow_auth" in str(_module(t, _COMMAND).get("argv", "")))
    dump("auth-bootstrap", {"argv": _module(bootstrap, _COMMAND)["argv"], "environment": bootstrap["environment"],
                            "user": bootstrap["become_user"]}, bootstrap.get("vars", {}))
    _role, users = _find_task("runs `python -m mlops.access sync`", lambda t: isinstance(
        _module(t, _COMMAND), dict) and "mlops.access" in str(_module(t, _COMMAND).get("argv", "")))
    dump("users-sync", {"argv": _module(users, _COMMAND)["argv"], "stdin": _module(users, _COMMAND)["stdin"]},
         {**users.get("vars", {}), "__mlflow_logins": all_logins})
    dump("mlflow-logins", {"identities": "{{ mlops_service_identities }}", "people": "{{ mlops_users }}",
                           "password_length": "{{ mlops_mlflow_password_length }}",
                           "packages": "{{ __mlflow_packages }}"}, {})
    _role, ready = _find_task("waits for MLflow's backend store (/health/backend)", lambda t: "/health/" in str(
        (t.get("ansible.builtin.uri") or t.get("uri") or {}).get("url", "")))
    dump("mlflow-ready", (ready.get("ansible.builtin.uri") or ready.get("uri"))["url"], {})
    _role, credentials = _find_task("writes a service's ~/.mlflow/credentials", lambda t: isinstance(
        _module(t, _COPY), dict) and ".mlflow/credentials" in str(_module(t, _COPY).get("dest", "")))
    # One dump per identity (a role may give two programs their logins: the retrain role's jobs).
    for identity, (_role, job) in sorted(_definitions("mlops_client", "mlops_client_service_identity").items()):
        copy = _module(credentials, _COPY)
        dump(f"client-login-{identity}", {
            "identity": identity, "name": "{{ mlops_service_identities[mlops_client_service_identity].name }}",
            "home": "{{ mlops_client_service_home }}", "dest": copy["dest"], "content": copy["content"],
            "owner": copy["owner"], "mode": copy["mode"],
        }, {**job, "mlops_mlflow_logins": "{{ {mlops_service_identities[mlops_client_service_identity].name: "
                                          "{'password': '" + LOGIN_PASSWORD + "'}} }}"})
    # The programs' own accounts (the mlops role's account tasks) and their copies of the pgpass file.
    _role, account_pgpass = _find_task("copies the application database's pgpass file for an account", lambda t: (
        isinstance(_module(t, _COPY), dict) and _module(t, _COPY).get("remote_src")
        and "mlops_app_db_pgpass" in str(_module(t, _COPY).get("src", ""))))
    copy = _module(account_pgpass, _COPY)
    accounts = _definitions("mlops", "mlops_account_user")
    for user, (_role, account) in accounts.items():
        dump("account-" + re.sub(r"[{} ]", "", user), {
            "user": "{{ mlops_account_user }}", "group": "{{ mlops_account_group }}",
            "groups": "{{ mlops_account_groups | default([]) }}", "state_dir": "{{ mlops_account_state_dir }}",
            "pgpass": {key: copy[key] for key in ("src", "dest", "owner", "group", "mode")},
        }, {**account, **account_pgpass.get("vars", {})})
    roles = sorted(p.name for p in (ANSIBLE / "roles").iterdir() if (p / "defaults").is_dir() or (p / "vars").is_dir())
    return [{
        "name": "Render the Ansible single node as compose runs it",
        "hosts": "mlflow_servers",
        "gather_facts": False,
        "vars": COMPOSE_PROFILE,
        "roles": [{"role": r, "when": False} for r in roles],
        "tasks": tasks,
    }]


@pytest.fixture(scope="module")
def ansible(tmp_path_factory, ansible_probe_dir) -> dict[str, Any]:
    """What the roles render under COMPOSE_PROFILE: {probe name: JSON value or rendered text}."""
    playbook_bin = REPO / ".venv/bin/ansible-playbook"
    if not playbook_bin.exists():
        pytest.skip("ansible-playbook is not installed in .venv (make venv)")
    # The probe playbook sits where site.yml does, in a mirror of the repository made of links.
    work, env = ansible_probe_dir(tmp_path_factory.mktemp("ansible-probe"))
    (work / "probe.yml").write_text(yaml.safe_dump(_probe_playbook(), sort_keys=False, width=1000))
    env.update(ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_NOCOLOR="1")
    result = subprocess.run(
        [str(playbook_bin), "-i", str(ANSIBLE / "inventories/local"), "--tags", _PROBE_TAG, str(work / "probe.yml")],
        cwd=work, env=env, capture_output=True, text=True, timeout=180, check=False,
    )
    try:
        report = json.loads(result.stdout)
    except ValueError:
        pytest.fail(f"rendering the roles for compose failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    rendered: dict[str, Any] = {}
    for task in report["plays"][0]["tasks"]:
        name = task["task"]["name"]
        if not name.startswith(f"{_PROBE_TAG} "):
            continue
        outcome = next(iter(task["hosts"].values()))
        if outcome.get("failed") or "msg" not in outcome:
            pytest.fail(f"rendering the roles for compose failed at {name!r} (a variable moved or was renamed?):\n"
                        f"{json.dumps(outcome, indent=1)[:3000]}")
        rendered[name.removeprefix(f"{_PROBE_TAG} ")] = outcome["msg"]
    if result.returncode != 0:
        pytest.fail(f"rendering the roles for compose failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    settings = rendered["backup-settings"]
    if isinstance(settings["content"], str):
        settings["content"] = json.loads(settings["content"])
    return rendered


def _argv(values: list) -> list[str]:
    return [str(v) for v in values]


# --- topology and STYLE rules -----------------------------------------------------------------------

def test_compose_has_the_platform_services():
    assert set(SERVICES) == LONG_RUNNING | ONE_SHOT
    for name, svc in SERVICES.items():
        assert svc.get("profiles", []) == PROFILES.get(name, []), f"{name}: profiles {svc.get('profiles')}"
        if name in LONG_RUNNING:
            assert svc["restart"] == "unless-stopped", name


@pytest.mark.parametrize("name", sorted(LONG_RUNNING - set(WITHOUT_HEALTHCHECK)))
def test_compose_long_running_services_have_healthchecks(name):
    assert SERVICES[name]["healthcheck"]["test"]


@pytest.mark.parametrize("name", sorted(WITHOUT_HEALTHCHECK))
def test_compose_services_without_healthcheck_are_waited_for_by_none(name):
    assert "healthcheck" not in SERVICES[name], f"{name} has a healthcheck now: drop it from WITHOUT_HEALTHCHECK"
    waiting = [s for s, svc in SERVICES.items() if name in svc.get("depends_on", {})]
    assert not waiting, f"{waiting} wait for {name}, which has no healthcheck ({WITHOUT_HEALTHCHECK[name]})"


def test_compose_dependencies_wait_for_health_and_init():
    assert SERVICES["mlflow"]["depends_on"] == {
        "mlflow-db-upgrade": {"condition": "service_completed_successfully"},
        "mlflow-auth-bootstrap": {"condition": "service_completed_successfully"},
        "minio-init": {"condition": "service_completed_successfully"},
    }
    assert SERVICES["mlflow-auth-bootstrap"]["depends_on"] == {
        "mlflow-db-upgrade": {"condition": "service_completed_successfully"}}
    assert SERVICES["mlflow-db-upgrade"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert SERVICES["mlflow-db-upgrade"]["depends_on"]["postgres-init"]["condition"] == "service_completed_successfully"
    assert SERVICES["postgres-init"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert SERVICES["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    assert SERVICES["nginx"]["depends_on"]["mlflow"]["condition"] == "service_healthy"
    for name in ("serving", "scheduler"):
        assert SERVICES[name]["depends_on"]["mlflow"]["condition"] == "service_healthy"
        assert SERVICES[name]["depends_on"]["postgres-init"]["condition"] == "service_completed_successfully"
        # Their MLflow logins (~/.mlflow/credentials) exist and MLflow knows them.
        assert SERVICES[name]["depends_on"]["mlflow-users"]["condition"] == "service_completed_successfully"
    assert SERVICES["mlflow-users"]["depends_on"] == {"mlflow": {"condition": "service_healthy"}}
    for name in ONE_SHOT:
        assert SERVICES[name]["restart"] == "no"
    for name, svc in SERVICES.items():
        for dep, cond in svc.get("depends_on", {}).items():
            expected = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
            assert cond["condition"] == expected, f"{name} waits for {dep} with {cond}"


def test_compose_publishes_only_nginx():
    published = {name for name, svc in SERVICES.items() if svc.get("ports")}
    assert published == {"nginx"}


# An exact release: 1.2.3 / v1.2.3 (a distribution suffix allowed: 15.10-bookworm) or MinIO's RELEASE.<time>.
_PINNED_TAG = re.compile(r"^(v?\d+\.\d+(\.\d+)?(-[a-z0-9.]+)?|RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ)$")


def test_compose_images_are_pinned():
    for name, svc in SERVICES.items():
        image = svc["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: {image}"
        tag = image.rsplit(":", 1)[1]
        assert _PINNED_TAG.match(tag), f"{name}: {image} is not pinned to an exact release"
        if "build" not in svc:
            assert "@" not in image and "/" not in tag, f"{name}: {image}"


def test_compose_state_lives_in_named_volumes():
    """State in named volumes; the only host paths are the repository's own files, read-only."""
    named = set(COMPOSE["volumes"])
    for name, svc in SERVICES.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert volume.endswith(":ro"), f"{name}: {volume} mounts a repository path writable"
                assert (REPO / source).exists(), f"{name}: {volume}: the repository has no {source}"
            else:
                assert source in named, f"{name}: {volume} is not a named volume"
    for name, config in COMPOSE["configs"].items():
        if "file" in config:
            assert (REPO / config["file"]).is_file(), f"config {name}: the repository has no {config['file']}"


def test_compose_mlflow_matches_the_project_pin():
    """The MLflow image installs the project, so it gets pyproject's pins (and nothing else)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = {d.split("==")[0] for d in project["dependencies"] if "==" in d}
    assert {"mlflow"} <= pins, "pyproject.toml pins mlflow (the server's version)"
    assert {"psycopg2-binary", "boto3"} <= {re.split(r"[=<>\[ ]", d)[0] for d in project["dependencies"]}
    dockerfile = _dockerfile()
    assert SERVICES["mlflow"]["build"]["target"] == "mlflow"
    mlflow_stage = dockerfile.split("FROM mlflow AS serving")[0]
    assert re.search(r"/opt/mlops/venv/bin/pip install [^\n]*/src\s*$", mlflow_stage, re.M), mlflow_stage
    assert "==" not in dockerfile, "compose repeats no pin: the project's pyproject.toml has them"
    for name, svc in SERVICES.items():
        if "build" in svc:
            assert svc["image"].endswith(f":{project['version']}"), f"{name}: tag the image with the project version"


def test_ansible_role_pins_the_same_mlflow_as_the_client(ansible):
    """The mlflow role's server version (rendered: it reads pyproject.toml) is the client pin, the
    one compose's image installs with the project."""
    pin = next(d.split("==")[1] for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
               if d.startswith("mlflow=="))
    assert str(ansible["mlflow-version"]) == pin


def test_compose_images_install_the_project_with_its_extras():
    dockerfile = _dockerfile()
    optional = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    extras = set(re.findall(r'"/src\[(\w+)\]"', dockerfile))
    assert extras == {"serving"} and extras <= set(optional)
    assert SERVICES["serving"]["build"]["target"] == "serving"
    assert SERVICES["scheduler"]["build"]["target"] == "scheduler"
    stages = re.findall(r"^FROM \S+ AS (\w+)", dockerfile, re.M)
    assert stages == ["mlflow", "serving", "scheduler"]
    # Every top-level package the project declares is copied in, and every COPY source exists.
    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = set()
    for line in re.findall(r"^COPY (.+)$", dockerfile, re.M):
        *sources, _dest = line.split()
        for source in sources:
            assert (REPO / source).exists(), f"compose copies {source}, which the repository does not have"
            copied.add(source)
    assert {p.rstrip("*") for p in include} <= copied


def test_compose_required_variables_fail_loudly():
    required = set(re.findall(r"(?<!\$)\$\{(\w+):\?", COMPOSE_TEXT))
    assert {"POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "MLOPS_ADMIN_PASSWORD"} <= required
    example = read_env_file(REPO / ".env.example")
    assert required <= set(example), "every required variable is listed in .env.example"
    optional = set(re.findall(r"(?<!\$)\$\{(\w+):-", COMPOSE_TEXT))
    assert optional <= set(example), "every setting compose reads is listed in .env.example"
    # Secrets made from variables: compose refuses to start when the variable is unset.
    from_env = {secret["environment"] for secret in COMPOSE["secrets"].values() if "environment" in secret}
    assert from_env <= set(example), "every variable a secret is made of is listed in .env.example"
    assert not (REPO / ".env").exists() or ".env" in (REPO / ".gitignore").read_text()


def test_compose_secrets_stay_out_of_app_environments_and_command_lines():
    required = set(re.findall(r"(?<!\$)\$\{(\w+):\?", COMPOSE_TEXT))
    for name, svc in SERVICES.items():
        for part in ("command", "entrypoint", "healthcheck"):
            text = json.dumps(svc.get(part, ""))
            assert not any(f"${{{var}" in text for var in required), f"{name}: a secret on a command line ({part})"
        if name in APP_SERVICES:
            env = json.dumps(svc.get("environment", {}))
            assert not re.search(r"PASSWORD|SECRET|ACCESS_KEY", env), f"{name}: a secret in the environment"
    for name, content in _contents(COMPOSE["configs"]).items():
        assert not any(f"${{{var}" in content for var in required), f"config {name} holds a secret"
    # Secrets reach containers as files (compose secrets), never in an environment or a command line.
    for name, svc in SERVICES.items():
        env = json.dumps(svc.get("environment", {}))
        assert not any(f"${{{var}" in env for var in required) or name in {"postgres", "postgres-init", "minio",
                                                                         "minio-init", "nginx-init"}, name
    assert "ALERTMANAGER_WEBHOOK_URL" not in json.dumps(SERVICES), "the webhook URL is a secret file only"
    assert not re.search(r"\$\$?\{?MLOPS_OIDC_CLIENT_SECRET", json.dumps([SERVICES, COMPOSE["configs"]])), \
        "the single sign-on client's secret is a secret file only"


def test_compose_nginx_mounts_the_shared_template():
    volumes = SERVICES["nginx"]["volumes"]
    assert "./nginx/templates:/etc/nginx/templates:ro" in volumes
    template = (REPO / "nginx/templates/mlops.conf.template").read_text()
    used = set(re.findall(r"\$\{(MLOPS_[A-Z_]+)\}", template))
    assert used == set(k for k in SERVICES["nginx"]["environment"] if k.startswith("MLOPS_"))


# --- the same design as Ansible ------------------------------------------------------------------------

def test_compose_profile_names_ansible_variables():
    """Each COMPOSE_PROFILE key must be a variable Ansible defines (role defaults, group_vars or an
    inventory), or overriding it changes nothing and the comparisons below mislead."""
    texts = [p.read_text() for p in ANSIBLE.rglob("*.yml")]
    for name in [*COMPOSE_PROFILE, *NGINX_UPSTREAM_NAMES]:
        assert any(re.search(rf"^\s*{name}:", t, re.M) for t in texts), (
            f"Ansible no longer defines {name}: update COMPOSE_PROFILE in tests/platform/test_compose.py")


def test_compose_clients_reach_mlflow_by_a_host_it_accepts():
    """MLflow answers 403 to API calls whose Host header is not in MLFLOW_SERVER_ALLOWED_HOSTS
    (mlflow.server.security, also under gunicorn): every client's tracking URI must match."""
    allowed = RSERVICES["mlflow"]["environment"]["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    uris = {name: svc["environment"]["MLFLOW_TRACKING_URI"] for name, svc in RSERVICES.items()
            if isinstance(svc.get("environment"), dict) and "MLFLOW_TRACKING_URI" in svc["environment"]}
    for name, content in _contents(RESOLVED["configs"]).items():
        for words in _shell_lines(content):
            if words and words[0].startswith("MLFLOW_TRACKING_URI="):
                uris[name] = words[0].split("=", 1)[1]
    assert {"serving", "job-retrain", "job-gate", "job-gc"} <= set(uris)
    for name, uri in uris.items():
        host = urlsplit(uri).netloc
        assert any(fnmatch.fnmatch(host, pattern) for pattern in allowed), f"{name}: MLflow refuses Host {host}"
    assert any(fnmatch.fnmatch(SERVER_NAME, p) for p in allowed), "nginx forwards the public name"


def test_compose_database_layout_matches_ansible(ansible):
    """MLflow's backend store and the application database, each with its own owner role and
    pgpass file, as the postgresql role makes them (the backup settings list both)."""
    ansible_dbs = {(d["name"], d["user"], d["passfile"]) for d in ansible["backup-settings"]["content"]["databases"]}
    script = RSERVICES["postgres-init"]["command"][0]
    compose_dbs = set(re.findall(r"^setup (\S+) (\S+) (\S+)$", script, re.M))
    assert compose_dbs == ansible_dbs
    assert len({user for _db, user, _file in ansible_dbs}) == len(ansible_dbs), "one role per database"
    # Each pgpass file is mounted where a program reads it, and only the postgres-init writes them.
    mounts = {svc: [v.split(":")[1] for v in RSERVICES[svc].get("volumes", [])] for svc in RSERVICES}
    for _db, _user, passfile in ansible_dbs:
        writable = [s for s, vols in RSERVICES.items() for v in vols.get("volumes", [])
                    if v.split(":")[1] == str(Path(passfile).parent) and not v.endswith(":ro")]
        assert writable == ["postgres-init"], f"{passfile} is written by {writable}"
        assert any(str(Path(passfile).parent) in m for s in APP_SERVICES for m in mounts[s])


def test_compose_mlflow_command_and_environment_match_ansible(ansible):
    mlflow = ansible["service-mlflow"]
    assert _argv(RSERVICES["mlflow"]["command"]) == _argv(mlflow["command"])
    assert RSERVICES["mlflow"]["environment"] == mlflow["environment"]


def test_compose_mlflow_db_upgrade_matches_ansible(ansible):
    upgrade = ansible["db-upgrade"]
    assert _argv(RSERVICES["mlflow-db-upgrade"]["command"]) == _argv(upgrade["argv"])
    assert RSERVICES["mlflow-db-upgrade"]["environment"] == upgrade["environment"]


# --- MLflow's auth app and logins: the mlflow, mlops_client and monitoring roles --------------------

def _ini(text: str) -> dict[str, dict[str, str]]:
    """An ini file's settings (as MLflow's configparser reads them; comments and order do not matter)."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return {section: dict(parser[section]) for section in parser.sections()}


def _compose_logins() -> dict[str, dict[str, Any]]:
    """The logins mlflow-users makes (config mlflow-users), by name."""
    return {user["name"]: user for user in json.loads(_config("mlflow-users"))["users"]}


def _volume_at(service: str, path: str) -> str:
    """The named volume a compose service mounts at `path` (the directory itself)."""
    found = [v.split(":")[0] for v in SERVICES[service].get("volumes", []) if v.split(":")[1] == path]
    assert len(found) == 1, f"{service} mounts no (or more than one) volume at {path}"
    return found[0]


def _mlops_gid(group: str) -> int:
    found = re.search(rf"groupadd --system --gid (\d+) {group}(?![\w-])", _dockerfile())
    assert found, f"the image makes no group {group}"
    return int(found.group(1))


def _image_uid(user: str) -> int:
    """The uid the image gives an account (its useradd line ends with the name)."""
    return int(_image_account(user)[0])


def _useradd(user: str) -> str:
    """The image's useradd command for an account (continued lines joined)."""
    joined = re.sub(r"\\\n\s*", " ", _dockerfile())
    found = re.search(rf"useradd [^&\n]*--shell /usr/sbin/nologin {user}(?![\w-])", joined)
    assert found, f"the image makes no user {user}"
    return found.group(0)


def _image_groups(user: str) -> list[str]:
    """The supplementary groups the image gives an account (its useradd's --groups)."""
    found = re.search(r"--groups (\S+)", _useradd(user))
    return found.group(1).split(",") if found else []


def _image_account(user: str) -> tuple[str, str]:
    """(uid, primary group) of an account the image makes (one useradd command)."""
    found = re.match(r"useradd --system --uid (\d+) --gid (\S+) ", _useradd(user))
    assert found, f"the image's useradd for {user} gives no --uid and --gid first"
    return found.group(1), found.group(2)


def test_compose_mlflow_runs_the_auth_app_the_project_installs(ansible):
    """`--app-name` (compared with the role's argv above) is an `mlflow.app` entry point of the
    project, which the image installs from /src with the packages the role installs beside MLflow."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    command = _argv(RSERVICES["mlflow"]["command"])
    app = command[command.index("--app-name") + 1]
    entry = project["entry-points"]["mlflow.app"][app]
    assert (REPO / (entry.split(":")[0].replace(".", "/") + ".py")).is_file(), entry
    # Every package the role installs into MLflow's venv (flask-wtf for the auth app, ...) is a
    # dependency of the project as pinned there.
    packages = ansible["mlflow-logins"]["packages"]
    assert any(p.startswith("flask-wtf") for p in packages)
    assert set(packages) <= set(project["dependencies"])


def test_compose_mlflow_auth_config_matches_ansible(ansible, tmp_path):
    """postgres-init writes the role's auth.ini: the config mlflow-auth and the admin's password
    line from MLOPS_ADMIN_PASSWORD ('%' doubled: MLflow's configparser interpolates), at the path
    MLFLOW_AUTH_CONFIG_PATH names, with the role's owner, group and mode; with MLOPS_OIDC_ISSUER set,
    the role's single sign-on lines (config mlflow-auth-oidc) and the client's secret file; and the
    Flask secret key (generated once, the role's length) at the path the configuration names."""
    files = ansible["mlflow-auth-files"]
    config, key = files["config"], files["secret_key"]
    assert RSERVICES["mlflow"]["environment"]["MLFLOW_AUTH_CONFIG_PATH"] == config["dest"]
    staged = {c["source"]: c["target"] for c in SERVICES["postgres-init"]["configs"]}
    script = RSERVICES["postgres-init"]["command"][0]
    # The admin's password comes from .env through postgres-init's environment (an init's), on stdin.
    assert RSERVICES["postgres-init"]["environment"]["MLOPS_ADMIN_PASSWORD"] == "<MLOPS_ADMIN_PASSWORD>"
    # postgres-init's own assembly (its auth_ini function, run here) gives the role's file, with
    # single sign-on off and on.
    function = re.search(r"^auth_ini\(\) \{\n.*?^\}\n", script, re.M | re.S)
    assert function, "postgres-init defines no auth_ini function"
    sso_lines = interpolate(COMPOSE, {"MLOPS_SERVER_NAME": SERVER_NAME, **OIDC_ENV})["configs"]["mlflow-auth-oidc"]
    for rendered, sso, authorization in (
            ("auth.ini", "/dev/null", "mlflow.server.auth:authenticate_request_basic_auth"),
            ("auth.ini-oidc", staged["mlflow-auth-oidc"], "mlops.oidc:authenticate_request")):
        call = f"auth_ini {staged['mlflow-auth']} {sso} {authorization} \\\n    > {config['dest']}.new\n"
        assert call in script, call
        work = tmp_path / rendered
        work.mkdir()
        (work / "base").write_text(_config("mlflow-auth"))
        (work / "sso").write_text(sso_lines["content"])
        ran = subprocess.run(["sh", "-c", function.group(0) + f'auth_ini base {"sso" if sso != "/dev/null" else sso} '
                              f'{authorization}'], cwd=work, capture_output=True, text=True, check=False,
                             env={"PATH": "/usr/bin:/bin", "MLOPS_ADMIN_PASSWORD": ADMIN_PASSWORD})
        assert ran.returncode == 0, ran.stderr
        assert _ini(ran.stdout) == _ini(ansible[rendered]), rendered
    ours = _ini(_config("mlflow-auth") + f"admin_password = {ADMIN_PASSWORD}\n")
    assert ours["mlops"]["secret_key_file"] == key["dest"]
    # The client's secret: a compose secret (from .env) that only postgres-init reads, installed where
    # the configuration names it with the role's owner, group and mode; removed when sign-on is off.
    sso_secret = files["oidc_client_secret"]
    sso_config = _ini("[mlops]\n" + sso_lines["content"])
    assert sso_config["mlops"]["oidc_client_secret_file"] == sso_secret["dest"]
    mount = next(m for m in SERVICES["postgres-init"]["secrets"] if m["source"] == "mlops-oidc-client-secret")
    assert COMPOSE["secrets"]["mlops-oidc-client-secret"]["environment"] == "MLOPS_OIDC_CLIENT_SECRET"
    assert (sso_secret["owner"], sso_secret["group"], sso_secret["mode"]) == ("root", "mlops", "0640")
    assert (f"install -o 0 -g {_mlops_gid('mlops')} -m 0640 /run/secrets/{mount['target']} \"$sso\"\n" in script
            and f"sso={sso_secret['dest']}\n" in script and 'rm -f "$sso"\n' in script)
    assert not any(m["source"] == "mlops-oidc-client-secret" for name, svc in SERVICES.items()
                   if name != "postgres-init" for m in svc.get("secrets", []))
    assert f"mv {config['dest']}.new {config['dest']}\n" in script
    # Both files: the role's owner, group and mode (root:mlops 0640; the image's group id).
    for spec, path in ((config, f"{config['dest']}.new"), (key, '"$key"')):
        assert (spec["owner"], spec["group"]) == ("root", "mlops")
        assert f"chown 0:{_mlops_gid(spec['group'])} {path} && chmod {spec['mode']} {path}" in script, spec["dest"]
    assert f"key={key['dest']}\n" in script
    length = re.search(r"length=(\d+)", json.dumps(_find_task("writes the Flask secret key", lambda t: isinstance(
        _module(t, _COPY), dict) and "__mlflow_secret_key_file" in str(_module(t, _COPY).get("dest")))[1]))
    assert f"head -c {length.group(1)}" in script
    # In the volume MLflow, its bootstrap and its users sync read, which only postgres-init writes.
    directory = str(Path(config["dest"]).parent)
    assert Path(key["dest"]).parent == Path(directory)
    for name in ("mlflow", "mlflow-auth-bootstrap", "mlflow-users"):
        assert f"mlflow-credentials:{directory}:ro" in SERVICES[name]["volumes"], name


def test_compose_mlflow_auth_bootstrap_matches_ansible(ansible):
    """The auth tables migrate and the admin is made once, after the schema upgrade and before the
    server starts: the role's argv, environment and user."""
    bootstrap = ansible["auth-bootstrap"]
    assert _argv(RSERVICES["mlflow-auth-bootstrap"]["command"]) == _argv(bootstrap["argv"])
    assert RSERVICES["mlflow-auth-bootstrap"]["environment"] == bootstrap["environment"]
    assert SERVICES["mlflow-auth-bootstrap"]["user"] == bootstrap["user"]


def test_compose_mlflow_users_match_ansible(ansible):
    """mlflow-users runs the role's `mlops.access sync` (its argv; MLflow by service name) once MLflow
    answers as the role waits for it, with the role's spec: the served model, the admin of auth.ini,
    and the role's logins (name and role) but for the identities compose runs no program of."""
    sync = ansible["users-sync"]
    ours, theirs = _argv(RSERVICES["mlflow-users"]["command"]), _argv(sync["argv"])
    assert ours[:-1] == theirs[:-1] and _hostless(ours[-1]) == _hostless(theirs[-1])
    assert urlsplit(ours[-1]).hostname == "mlflow"
    # MLflow is healthy when it answers where the role waits for it (its backend store; no login).
    assert urlsplit(ansible["mlflow-ready"]).path in json.dumps(SERVICES["mlflow"]["healthcheck"]["test"])
    spec = json.loads(sync["stdin"])
    config = json.loads(_config("mlflow-users"))
    assert _mount("mlflow-users", "/etc/mlops/init/mlflow-users.json") == "mlflow-users"
    script = SERVICES["mlflow-users"]["entrypoint"][2]
    assert 'json.loads(Path("/etc/mlops/init/mlflow-users.json").read_text())' in script
    assert config["model"] == spec["model"]
    identities = ansible["mlflow-logins"]["identities"]
    assert set(IDENTITIES_LEFT_OUT) <= set(identities)
    left_out = {identities[key]["name"] for key in IDENTITIES_LEFT_OUT}
    assert {n: u["role"] for n, u in _compose_logins().items()} == {
        u["name"]: u["role"] for u in spec["users"] if u["name"] not in left_out}
    # The admin is the one auth.ini bootstraps, read from the file MLflow reads.
    assert spec["admin"]["name"] == _ini(_config("mlflow-auth"))["mlflow"]["admin_username"]
    assert f'auth.read("{ansible["mlflow-auth-files"]["config"]["dest"]}")' in script
    assert 'admin = {"name": auth["mlflow"]["admin_username"], "password": auth["mlflow"]["admin_password"]}' in script
    # The spec goes on stdin to the command (compared above), never on a command line.
    assert "subprocess.run(sys.argv[1:], input=json.dumps(spec)" in script
    assert SERVICES["mlflow-users"]["entrypoint"][:2] == ["/opt/mlops/venv/bin/python", "-c"]


def test_compose_mlflow_login_passwords_come_from_files(ansible):
    """A person's password is a secret file from .env (a person must know it); a service's is
    generated once (letters and digits, the role's length) into its program's own file, of the
    program's user (owner) only."""
    people = {person["name"] for person in ansible["mlflow-logins"]["people"]}
    mounts = {f"/run/secrets/{s['target']}": s for s in SERVICES["mlflow-users"]["secrets"]}
    example = read_env_file(REPO / ".env.example")
    for name, login in _compose_logins().items():
        if name in people:
            assert "owner" not in login and "mlflow_credentials" not in login, name
            secret = mounts[login["password_file"]]
            assert COMPOSE["secrets"][secret["source"]]["environment"] in example, name
            assert (secret["uid"], oct(secret["mode"])) == ("0", "0o400"), name
        else:
            assert login["owner"] in (MLOPS_UID, PROMETHEUS_UID, *map(_image_uid, _accounts(ansible))), name
            assert ("mlflow_credentials" in login) != ("password_file" in login), name
    script = SERVICES["mlflow-users"]["entrypoint"][2]
    assert f"LENGTH = {ansible['mlflow-logins']['password_length']}\n" in script
    assert "ALPHABET = string.ascii_letters + string.digits\n" in script
    assert "os.chmod(tmp, 0o600)" in script and "os.umask(0o077)" in script


def test_compose_programs_log_in_to_mlflow_as_the_roles_have_them(ansible):
    """Serving and the retrain, gate and gc jobs each log in with the identity its role gives it,
    in ~/.mlflow/credentials of the HOME it runs with (the mlops_client role's file: same keys, the
    program's own user, 0600), in the volume the program mounts there."""
    logins = _compose_logins()
    script = SERVICES["mlflow-users"]["entrypoint"][2]
    found = {name.removeprefix("client-login-") for name in ansible if name.startswith("client-login-")}
    assert found == set(CLIENT_LOGIN_PROGRAMS), f"roles give logins to {found}: update CLIENT_LOGIN_PROGRAMS"
    for identity, (kind, where) in CLIENT_LOGIN_PROGRAMS.items():
        client = ansible[f"client-login-{identity}"]
        assert client["identity"] == identity
        if kind == "service":
            home = RSERVICES[where]["environment"]["HOME"]
            program = where
        else:
            home = _job_environment(where.removeprefix("job-"))["HOME"]
            program = "scheduler"
        assert home == client["home"], identity
        login = logins[client["name"]]
        assert login["mlflow_credentials"] == client["dest"] == f"{home}/.mlflow/credentials", identity
        # The program's account owns it: serving's (as the service runs), a job's (its cron line's user).
        user = SERVICES[where]["user"] if kind == "service" else _cron_user(where.removeprefix("job-"))
        assert client["owner"] == user and client["mode"] == "0600", identity
        assert login["owner"] == _image_uid(user), identity
        assert _volume_at("mlflow-users", home) == _volume_at(program, home), identity
        # The same settings as the role's file (the password is the generated one).
        written = f"[mlflow]\nmlflow_tracking_username = {client['name']}\nmlflow_tracking_password = {LOGIN_PASSWORD}"
        assert _ini(written) == _ini(client["content"]), identity
    assert ('f"[mlflow]\\nmlflow_tracking_username = {name}\\nmlflow_tracking_password = {password}\\n"'
            in script)


@pytest.mark.parametrize("name", COMPOSE_SERVICES_OF_ROLES)
def test_compose_service_runs_like_the_ansible_service(ansible, name):
    """Same account, working directory and stop (signal, then the time to stop before a kill)."""
    service = ansible[f"service-{name}"]
    assert SERVICES[name]["user"] == service["user"]
    assert SERVICES[name]["working_dir"] == service["workdir"]
    assert SERVICES[name].get("stop_signal", "SIGTERM") == f"SIG{service['stop_signal']}"
    assert SERVICES[name]["stop_grace_period"] == f"{service['stop_timeout']}s"


def test_compose_serving_command_and_environment_match_ansible(ansible):
    serving = ansible["service-serving"]
    assert _argv(RSERVICES["serving"]["command"]) == _argv(serving["command"])
    assert RSERVICES["serving"]["environment"] == serving["environment"]
    port = _argv(serving["command"])[_argv(serving["command"]).index("--port") + 1]
    assert RSERVICES["nginx"]["environment"]["MLOPS_SERVING_UPSTREAM"] == f"serving:{port}"


def _accounts(ansible) -> dict[str, dict[str, Any]]:
    """The programs' own accounts the roles make (the mlops role's account tasks), by user name."""
    return {value["user"]: value for name, value in ansible.items() if name.startswith("account-")}


def _job_environment(job: str) -> dict[str, str]:
    """The variables compose's job script sets (NAME=value lines)."""
    return {words[0].split("=", 1)[0]: words[0].split("=", 1)[1] for words in _shell_lines(_config(f"job-{job}"))
            if len(words) == 1 and "=" in words[0]}


def _cron_user(job: str) -> str:
    """The user field of compose's cron line for a job."""
    return next(words[5] for words in _shell_lines(_config(f"cron-{job}")) if len(words) > 6)


@pytest.mark.parametrize("program", ["serving", "retrain", "gate"])
def test_compose_program_has_its_own_account_and_pgpass_copy(ansible, program):
    """Serving and the retrain and gate jobs run as accounts of their own, outside group mlops (a
    model that runs code when it loads, or a training run, reads none of MLflow's or the other
    programs' secrets), each with its own copy of the application database's pgpass file where the
    role puts it: postgres-init copies it into the program's state volume with the role's owner and
    mode. Only the jobs are in the metrics group (they publish results)."""
    if program == "serving":
        user, environment = SERVICES["serving"]["user"], RSERVICES["serving"]["environment"]
        assert user == ansible["service-serving"]["user"]
    else:
        user, environment = _cron_user(program), _job_environment(program)
    account = _accounts(ansible).get(user)
    assert account, f"no role gives {program}'s user {user} an account of its own: {sorted(_accounts(ansible))}"
    pgpass, state = account["pgpass"], environment["MLOPS_STATE_DIR"]
    uid = _image_uid(user)
    assert uid != MLOPS_UID and _image_account(user)[1] == user == account["group"], "its own primary group"
    assert (pgpass["owner"], pgpass["group"], pgpass["mode"]) == (user, user, "0600")
    assert environment["PGPASSFILE"] == pgpass["dest"] == f"{state}/.pgpass" and state == account["state_dir"]
    assert _image_groups(user) == account["groups"], user
    assert "mlops" not in account["groups"]
    script = RSERVICES["postgres-init"]["command"][0]
    assert f"setup mlops mlops_app {pgpass['src']}\n" in script
    gid = _mlops_gid(user)
    assert f"chown {uid}:{gid} {state} && chmod 0750 {state}\n" in script
    assert f"install -o {uid} -g {gid} -m 0600 {pgpass['src']} {pgpass['dest']}\n" in script
    where = "serving" if program == "serving" else "scheduler"
    assert _volume_at("postgres-init", state) == _volume_at(where, state)
    if program == "serving":
        mounted = {v.split(":")[0] for v in SERVICES["serving"].get("volumes", [])}
        assert mounted == {_volume_at("serving", state)}, f"serving mounts {mounted}: only its state"


def test_compose_runs_the_scheduled_jobs_ansible_defines(ansible):
    timers = set(ansible["timer-names"])
    missing = timers - COMPOSE_JOBS - set(JOBS_LEFT_OUT)
    assert not missing, f"Ansible schedules {missing}: run them in compose's scheduler or list them in JOBS_LEFT_OUT"
    assert timers >= COMPOSE_JOBS, f"compose runs jobs Ansible does not define: {COMPOSE_JOBS - timers}"
    installed = SERVICES["scheduler"]["command"][0]
    assert set(COMPOSE_JOB_ORDER) == COMPOSE_JOBS
    assert "for job in " + " ".join(COMPOSE_JOB_ORDER) + ";" in installed


@pytest.mark.parametrize("job", sorted(COMPOSE_JOBS))
def test_compose_job_matches_the_ansible_timer(ansible, job):
    """The cron entry and the job script are the ones mlops_timer renders for a host without
    systemd: same schedule, user, random delay, directory, environment and command."""
    assert _mount("scheduler", f"/etc/mlops/scheduler/cron-{job}") == f"cron-{job}"
    assert _mount("scheduler", f"/etc/mlops/scheduler/job-{job}") == f"job-{job}"
    assert _shell_lines(_config(f"cron-{job}")) == _shell_lines(ansible[f"cron.d-{job}"])
    assert _shell_lines(_config(f"job-{job}")) == _shell_lines(ansible[f"job.sh-{job}"])
    # The scheduler installs them where cron and the cron line look for them.
    script = SERVICES["scheduler"]["command"][0]
    assert '"/etc/cron.d/mlops-$$job"' in script and '"/opt/mlops/bin/job-$$job"' in script
    assert f"/opt/mlops/bin/job-{job} >>" in _config(f"cron-{job}")


def test_compose_backup_settings_match_ansible(ansible):
    settings = ansible["backup-settings"]
    assert _mount("scheduler", settings["dest"]) == "backup-settings"
    assert json.loads(_config("backup-settings")) == settings["content"]
    # The backup job's script is the role's file, installed where the job runs it.
    backup_command = ansible["timer-backup"]["command"]
    assert f"COPY ansible/roles/backup/files/pg_backup.py {backup_command[1]}" in _dockerfile()


def test_compose_nginx_config_matches_ansible(ansible):
    """The shared template filled with compose's values (as envsubst does) is the nginx role's
    rendering: same ports behind the mapping, server name, TLS paths, upstreams."""
    env = RSERVICES["nginx"]["environment"]
    text = (REPO / "nginx/templates/mlops.conf.template").read_text()
    rendered = re.sub(r"\$\{(MLOPS_[A-Z_]+)\}", lambda m: str(env[m.group(1)]), text)
    strip = lambda t: [ln for ln in t.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]  # noqa: E731
    assert strip(rendered) == strip(ansible["nginx.conf"])
    # nginx-init writes the files nginx reads, in the volume mounted at the role's prefix.
    script = RSERVICES["nginx-init"]["command"][0]
    for key in ("MLOPS_TLS_CERT", "MLOPS_TLS_KEY"):
        assert env[key] in script
    # MLflow checks the logins: nginx has no password file any more.
    assert "htpasswd" not in script and "PASSWORD" not in json.dumps(SERVICES["nginx-init"])


def _openssl_request() -> dict[str, Any]:
    """The facts of nginx-init's `openssl req` (the server name as SERVER_NAME, a DNS name)."""
    script = SERVICES["nginx-init"]["command"][0]
    line = next(ln for ln in script.splitlines() if "openssl req" in ln)
    words = shlex.split(interpolate(line[line.index("openssl req"):]).replace("$MLOPS_SERVER_NAME", SERVER_NAME)
                        .replace("$san", f"DNS:{SERVER_NAME}"))
    value = lambda flag: words[words.index(flag) + 1]  # noqa: E731
    extensions = dict(words[i + 1].split("=", 1) for i, w in enumerate(words) if w == "-addext")
    key_type, key_size = value("-newkey").split(":")
    return {
        "self_signed": "-x509" in words, "unencrypted_key": "-nodes" in words,
        "key_type": key_type.upper(), "key_size": int(key_size), "key_path": value("-keyout"),
        "path": value("-out"), "digest": next(w[1:] for w in words if w in ("-sha256", "-sha384", "-sha512")),
        "days": int(value("-days")), "common_name": value("-subj").removeprefix("/CN="),
        "subject_alt_name": extensions["subjectAltName"].split(","),
        "basic_constraints": extensions["basicConstraints"].split(","),
    }


def test_compose_certificate_request_matches_ansible(ansible):
    """nginx-init's self-signed certificate is the nginx role's: key, names, addresses, CA flag,
    digest, lifetime and paths (the role's prefix, which compose mounts as a volume)."""
    cert = ansible["certificate"]
    key, csr, signed = cert["key"], cert["csr"], cert["certificate"]
    assert signed["provider"] == "selfsigned"
    expected = {
        "self_signed": True, "unencrypted_key": not key.get("passphrase"),
        "key_type": str(key.get("type", "RSA")).upper(), "key_size": int(key.get("size", 4096)),
        "key_path": key["path"], "path": signed["path"], "digest": signed.get("selfsigned_digest", "sha256"),
        "days": int(str(signed["selfsigned_not_after"]).strip("+d")), "common_name": csr["common_name"],
        "subject_alt_name": list(csr["subject_alt_name"]),
        "basic_constraints": (["critical"] if csr.get("basic_constraints_critical") else [])
        + list(csr["basic_constraints"]),
    }
    assert _openssl_request() == expected


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_compose_nginx_config_passes_nginx_t(platform, tmp_path, nginx_main_config):
    """Render the shared template with compose's values (as envsubst would) and run `nginx -t`.

    Upstream service names only resolve inside the compose network: loopback addresses stand in.
    """
    env = dict(SERVICES["nginx"]["environment"])
    tls = platform.path("config") / "nginx" / "tls"
    env.update(
        MLOPS_PUBLIC_HTTPS_PORT="8443", MLOPS_TLS_CERT=str(tls / "server.crt"), MLOPS_TLS_KEY=str(tls / "server.key"),
    )
    # Every `service:port` value (MLflow, serving, Prometheus upstreams, ...) points at loopback instead.
    env.update({
        name: f"127.0.0.1:{value.split(':')[1]}" for name, value in env.items()
        if re.fullmatch(r"[a-z][a-z0-9_-]*:\d+", str(value)) and value.split(":")[0] in SERVICES
    })
    text = (REPO / "nginx/templates/mlops.conf.template").read_text()
    rendered = re.sub(r"\$\{(MLOPS_[A-Z_]+)\}", lambda m: str(env[m.group(1)]), text)
    (tmp_path / "conf.d.conf").write_text(rendered)
    main = nginx_main_config(tmp_path, tmp_path / "conf.d.conf")
    result = subprocess.run(["nginx", "-t", "-p", str(tmp_path), "-c", str(main)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- monitoring: the monitoring and node_exporter roles ---------------------------------------------

def _flags(argv: list) -> dict[str, str]:
    """`--name=value` / `-name=value` / `--name` words as {name: value} (dashes do not matter:
    Debian's older nginx exporter takes -flag, the upstream image --flag)."""
    flags = {}
    for word in _argv(argv):
        assert word.startswith("-"), f"{word!r} is not a flag"
        name, _sep, value = word.lstrip("-").partition("=")
        assert name not in flags, f"flag {name} given twice"
        flags[name] = value
    return flags


def _hostless(value: str) -> str:
    """An address or URL with its host left out (compose reaches services by name, Ansible on loopback)."""
    if "://" in value:
        parts = urlsplit(value)
        return parts._replace(netloc=f"*:{parts.port}" if parts.port else "*").geturl()
    return re.sub(r"^[\w.\-]*:(\d+)$", r"*:\1", value)


@pytest.mark.parametrize("name", MONITORING_SERVICES_OF_ROLES)
def test_compose_monitoring_service_runs_like_the_ansible_service(ansible, name):
    """The same flags with the same values (ports, paths, retention, external URL) as the role's
    program, but for addresses' hosts and the differences FLAG_DIFFERENCES gives reasons for."""
    service = ansible[f"service-{name}"]
    ours, theirs = _flags(RSERVICES[name]["command"]), _flags(service["command"][1:])
    assert set(ours) == set(theirs), f"{name}: flags differ from the role's: {set(ours) ^ set(theirs)}"
    for flag in ours:
        if (name, flag) not in FLAG_DIFFERENCES:
            assert _hostless(ours[flag]) == _hostless(theirs[flag]), f"{name}: --{flag}"
    if service["environment"]:
        assert RSERVICES[name]["environment"] == service["environment"]
    image = SERVICES[name]["image"]
    assert "build" not in SERVICES[name] and image.split(":")[0].split("/")[-1] in {
        "prometheus", "alertmanager", "node-exporter", "nginx-prometheus-exporter", "postgres-exporter"}, image


def test_compose_prometheus_config_matches_ansible(ansible):
    """prometheus/compose/prometheus.yml is the role's template with service names: the same
    intervals, labels, rule files, job names (in order), metrics paths and ports."""
    ours = yaml.safe_load((REPO / "prometheus/compose/prometheus.yml").read_text())
    theirs = yaml.safe_load(ansible["prometheus.yml"])
    assert ours["global"] == theirs["global"]
    assert ours["rule_files"] == theirs["rule_files"]
    jobs = [job["job_name"] for job in ours["scrape_configs"]]
    assert jobs == [job["job_name"] for job in theirs["scrape_configs"]] == SCRAPE_JOBS

    def ports(config: dict) -> list[str]:
        return [_hostless(t) for sc in config["static_configs"] for t in sc["targets"]]

    for mine, role in zip(ours["scrape_configs"], theirs["scrape_configs"], strict=True):
        assert mine.get("metrics_path", "/metrics") == role.get("metrics_path", "/metrics"), mine["job_name"]
        assert ports(mine) == ports(role), mine["job_name"]
    am = ours["alerting"]["alertmanagers"]
    assert [_hostless(t) for a in am for sc in a["static_configs"] for t in sc["targets"]] == [
        _hostless(t) for a in theirs["alerting"]["alertmanagers"] for sc in a["static_configs"] for t in sc["targets"]]
    # Every target is a compose service listening on that port.
    for job in ours["scrape_configs"] + [{"static_configs": a["static_configs"]} for a in am]:
        for target in (t for sc in job["static_configs"] for t in sc["targets"]):
            host, port = target.rsplit(":", 1)
            assert host in SERVICES, f"{target}: no compose service {host}"
            assert f":{port}" in json.dumps(RSERVICES[host].get("command", [])) or host in ("mlflow", "serving"), target
    # The file Prometheus reads is this one, its rules the repository's.
    volumes = SERVICES["prometheus"]["volumes"]
    assert "./prometheus/compose/prometheus.yml:/etc/mlops/prometheus/prometheus.yml:ro" in volumes
    assert _flags(SERVICES["prometheus"]["command"])["config.file"] == "/etc/mlops/prometheus/prometheus.yml"


def test_compose_prometheus_logs_in_to_mlflow_as_the_role_does(ansible):
    """The mlflow job's basic_auth is the role's: the monitoring identity, and the password file
    mlflow-users generates for it (the image's user only), in a volume of its own that Prometheus
    mounts read-only. The file keeps the role's name; its directory is a volume (the role's
    directory is where compose mounts the repository's files)."""
    theirs = next(j for j in yaml.safe_load(ansible["prometheus.yml"])["scrape_configs"] if j["job_name"] == "mlflow")
    ours = next(j for j in yaml.safe_load((REPO / "prometheus/compose/prometheus.yml").read_text())["scrape_configs"]
                if j["job_name"] == "mlflow")
    assert set(ours.get("basic_auth", {})) == set(theirs["basic_auth"]) == {"username", "password_file"}
    name = theirs["basic_auth"]["username"]
    assert ours["basic_auth"]["username"] == name == ansible["mlflow-logins"]["identities"]["prometheus"]["name"]
    path = Path(ours["basic_auth"]["password_file"])
    assert path.name == Path(theirs["basic_auth"]["password_file"]).name
    login = _compose_logins()[name]
    assert login["password_file"] == str(path) and login["owner"] == PROMETHEUS_UID
    volume = _volume_at("prometheus", str(path.parent))
    assert f"{volume}:{path.parent}:ro" in SERVICES["prometheus"]["volumes"]
    assert _volume_at("mlflow-users", str(path.parent)) == volume
    users = {s for s, svc in SERVICES.items() for v in svc.get("volumes", []) if v.split(":")[0] == volume}
    assert users == {"prometheus", "mlflow-users"}, f"only Prometheus reads its login ({users})"


def test_compose_prometheus_reads_the_repository_rules_and_consoles(ansible):
    """The rules and console templates are the files Ansible installs (one source), mounted where
    the role puts them; the platform's console libraries join the image's."""
    monitoring = ansible["monitoring"]
    assert Path(monitoring["rules_src"]).resolve() == REPO / "prometheus/rules/platform.rules.yml"
    assert Path(monitoring["consoles_src"]).resolve() == REPO / "prometheus/consoles"
    volumes = SERVICES["prometheus"]["volumes"]
    rules = f"{monitoring['config_dir']}/platform.rules.yml"
    assert f"./prometheus/rules/platform.rules.yml:{rules}:ro" in volumes
    assert yaml.safe_load((REPO / "prometheus/compose/prometheus.yml").read_text())["rule_files"] == [rules]
    consoles = _flags(SERVICES["prometheus"]["command"])["web.console.templates"]
    assert consoles == f"{monitoring['config_dir']}/consoles"
    assert f"./prometheus/consoles:{consoles}:ro" in volumes
    libraries = _flags(SERVICES["prometheus"]["command"])["web.console.libraries"]
    for lib in sorted((REPO / "prometheus/console_libraries").glob("*.lib")):
        assert f"./prometheus/console_libraries/{lib.name}:{libraries}/{lib.name}:ro" in volumes, lib.name
    # Published through nginx under the role's route prefix, at the role's external URL.
    flags = _flags(RSERVICES["prometheus"]["command"])
    assert flags["web.external-url"] == monitoring["external_url"]
    assert urlsplit(flags["web.external-url"]).path.rstrip("/") == monitoring["route_prefix"]
    port = flags["web.listen-address"].rsplit(":", 1)[1]
    assert RSERVICES["nginx"]["environment"]["MLOPS_PROMETHEUS_UPSTREAM"] == f"prometheus:{port}"
    assert monitoring["route_prefix"] in json.dumps(SERVICES["prometheus"]["healthcheck"]["test"])
    assert SERVICES["nginx"]["depends_on"]["prometheus"]["condition"] == "service_healthy"


def _alertmanager_effective(with_url: bool) -> dict:
    """What the alertmanager entrypoint makes of prometheus/compose/alertmanager.yml: the file
    itself with a URL (its secret file), else the file cut where its `sed` cuts it."""
    script = RSERVICES["alertmanager"]["entrypoint"][2]
    text = (REPO / "prometheus/compose/alertmanager.yml").read_text()
    if not with_url:
        cut = re.search(r"sed '/(.+?)/,\$d' (\S+) > (\S+)", script)
        assert cut, script
        lines = text.splitlines()
        first = next(i for i, line in enumerate(lines) if re.search(cut.group(1), line))
        text = "\n".join(lines[:first])
    return yaml.safe_load(text)


def test_compose_alertmanager_config_matches_ansible(ansible):
    """With ALERTMANAGER_WEBHOOK_URL set, the role's configuration with that URL (read from the
    secret file); empty, the role's configuration without a webhook."""
    secret = COMPOSE["secrets"]["alertmanager-webhook-url"]
    assert secret == {"environment": "ALERTMANAGER_WEBHOOK_URL"}
    mount = next(s for s in SERVICES["alertmanager"]["secrets"] if s["source"] == "alertmanager-webhook-url")
    path = f"/run/secrets/{mount['target']}"
    with_url = _alertmanager_effective(True)
    webhook = with_url["receivers"][0]["webhook_configs"][0]
    assert webhook.pop("url_file") == path
    webhook["url"] = WEBHOOK_URL
    assert with_url == yaml.safe_load(ansible["alertmanager.yml-webhook"])
    assert _alertmanager_effective(False) == yaml.safe_load(ansible["alertmanager.yml-none"])
    # The entrypoint picks by the secret file, writes the file --config.file names, runs the flags.
    script = RSERVICES["alertmanager"]["entrypoint"][2]
    config = _flags(RSERVICES["alertmanager"]["command"])["config.file"]
    source = "/etc/mlops/prometheus/alertmanager.yml"
    assert f"./prometheus/compose/alertmanager.yml:{source}:ro" in SERVICES["alertmanager"]["volumes"]
    assert f"[ -s {path} ]" in script and f"cp {source} {config}\n" in script and f"{source} > {config}\n" in script
    assert script.rstrip().endswith('exec /bin/alertmanager "$@"')
    # Readable by the image's user (nobody) only.
    assert (mount["uid"], oct(mount["mode"])) == ("65534", "0o400")


def test_compose_metrics_volume_is_the_textfile_directory(ansible):
    """The jobs write their results where node-exporter's textfile collector reads them: the mlops
    role's metrics directory, one named volume (the scheduler writes, node-exporter reads)."""
    metrics = ansible["monitoring"]["metrics_dir"]
    assert _flags(SERVICES["node-exporter"]["command"])["collector.textfile.directory"] == metrics
    mounts = {name: [v for v in svc.get("volumes", []) if v.split(":")[1] == metrics] for name, svc in SERVICES.items()}
    assert mounts["node-exporter"] == [f"job-metrics:{metrics}:ro"]
    assert mounts["scheduler"] == [f"job-metrics:{metrics}"]
    assert {n for n, m in mounts.items() if m} == {"node-exporter", "scheduler", "nginx-init"}
    # The retrain tick and the promotion gate publish there (mlops.textfile), the job scripts too.
    for name in ("retrain", "gate"):
        assert _job_environment(name)["MLOPS_METRICS_TEXTFILE_DIR"] == metrics, name
    for name in COMPOSE_JOBS:
        assert f"metrics={metrics}" in _config(f"job-{name}")
    # The directory is the mlops role's (root:<metrics group> 0775) in the image and whenever the
    # scheduler starts; every job's account is in that group.
    group = ansible["monitoring"]["metrics_group"]
    assert f"install -d -o root -g {group} -m 0775 {metrics}" in SERVICES["scheduler"]["command"][0]
    assert f"install -d -o root -g {group} -m 0775 {metrics}" in _dockerfile()
    for name in COMPOSE_JOBS:
        assert group in _image_groups(_cron_user(name)), name


@pytest.mark.parametrize("job", sorted(COMPOSE_JOBS))
def test_compose_job_schedule_textfile_matches_ansible(ansible, job):
    """job-<name>-schedule.prom (period, first install time) as mlops_timer publishes it: the
    scheduler fills @INSTALLED@ in when it starts and keeps the time of an existing file."""
    schedule = ansible[f"schedule-{job}"]
    assert _mount("scheduler", f"/etc/mlops/scheduler/schedule-{job}") == f"schedule-{job}"
    assert _config(f"schedule-{job}") == schedule["content"]
    script = RSERVICES["scheduler"]["command"][0]
    assert schedule["dest"] == re.search(r'prom="(\S+)"', script).group(1).replace("$job", job)
    assert 'sed "s/@INSTALLED@/' in script and '"/etc/mlops/scheduler/schedule-$job" > "$prom.new"' in script


def test_compose_postgres_exporter_has_its_own_role(ansible):
    """postgres-init makes the monitoring role's exporter role (pg_monitor) with a generated password
    in the role's password file, which only postgres-init writes and the exporter reads."""
    monitoring = ansible["monitoring"]
    script = RSERVICES["postgres-init"]["command"][0]
    expected = [(monitoring["pg_user"], monitoring["pg_password_file"])]
    assert re.findall(r"^monitor (\S+) (\S+)$", script, re.M) == expected
    assert 'GRANT pg_monitor TO :"role";' in script
    env = RSERVICES["postgres-exporter"]["environment"]
    assert env["DATA_SOURCE_USER"] == monitoring["pg_user"]
    assert env["DATA_SOURCE_PASS_FILE"] == monitoring["pg_password_file"]
    assert not any(k in env for k in ("DATA_SOURCE_PASS", "DATA_SOURCE_NAME"))
    directory = str(Path(monitoring["pg_password_file"]).parent)
    writers = [s for s, svc in RSERVICES.items() for v in svc.get("volumes", [])
               if v.split(":")[1] == directory and not v.endswith(":ro")]
    readers = [s for s, svc in RSERVICES.items() for v in svc.get("volumes", []) if v.split(":")[1] == directory]
    assert writers == ["postgres-init"] and sorted(readers) == ["postgres-exporter", "postgres-init"]
    # The file is user mlops's (0600); the exporter runs as mlops.
    assert SERVICES["postgres-exporter"]["user"] == "10001:10001"
    assert 'chown 10001:10001 "$2.new" && chmod 0600 "$2.new"' in script


def test_compose_mlflow_metrics_and_gunicorn_config_match_ansible(ansible):
    """MLflow's gunicorn configuration is the mlflow role's file, at the path its command names;
    the multiprocess directory of --expose-prometheus is in a directory MLflow may write."""
    gunicorn = ansible["mlflow-gunicorn"]
    command = _argv(RSERVICES["mlflow"]["command"])
    assert f"--config {gunicorn['dest']}" in command[command.index("--gunicorn-opts") + 1]
    assert COMPOSE["configs"]["mlflow-gunicorn"] == {"file": f"./ansible/roles/mlflow/files/{gunicorn['src']}"}
    staged = next(c["target"] for c in SERVICES["postgres-init"]["configs"] if c["source"] == "mlflow-gunicorn")
    assert f"install -o 0 -g 10001 -m 0640 {staged} {gunicorn['dest']}" in RSERVICES["postgres-init"]["command"][0]
    metrics_dir = command[command.index("--expose-prometheus") + 1]
    assert [t.split(":")[0] for t in SERVICES["mlflow"]["tmpfs"]] == [str(Path(metrics_dir).parent)]
    assert "gid=10001" in SERVICES["mlflow"]["tmpfs"][0] and "mode=0775" in SERVICES["mlflow"]["tmpfs"][0]


def test_compose_nginx_status_is_on_the_network_only():
    env = RSERVICES["nginx"]["environment"]
    port = env["MLOPS_STATUS_LISTEN"].rsplit(":", 1)[1]
    assert not any(port in str(p) for p in SERVICES["nginx"]["ports"]), "stub_status is not published"
    assert _flags(RSERVICES["nginx-exporter"]["command"])["nginx.scrape-uri"] == f"http://nginx:{port}/stub_status"


# --- Grafana (profile grafana): provisioning and the dashboard -----------------------------------------

def _dashboard_targets(dashboard: dict) -> list[dict]:
    found = list(dashboard.get("annotations", {}).get("list", []))
    for panel in dashboard["panels"]:
        found.extend(panel.get("targets", []))
        for inner in panel.get("panels", []):
            found.extend(inner.get("targets", []))
    return found


def test_grafana_provisioning_matches_compose():
    grafana = SERVICES["grafana"]
    assert "./prometheus/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    datasources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())["datasources"]
    assert len(datasources) == 1
    source = datasources[0]
    assert source["type"] == "prometheus" and source["uid"] and source["isDefault"]
    # Prometheus by service name and port, under its route prefix (--web.external-url's path).
    flags = _flags(RSERVICES["prometheus"]["command"])
    port = flags["web.listen-address"].rsplit(":", 1)[1]
    prefix = urlsplit(flags["web.external-url"]).path.rstrip("/")
    assert source["url"] == f"http://prometheus:{port}{prefix}"
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/platform.yml").read_text())["providers"]
    path = providers[0]["options"]["path"]
    assert f"./prometheus/grafana/dashboards:{path}:ro" in grafana["volumes"]
    # Its admin password is MLflow's admin's (MLOPS_ADMIN_PASSWORD), as a secret file.
    assert COMPOSE["secrets"]["grafana-admin-password"] == {"environment": "MLOPS_ADMIN_PASSWORD"}
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana-admin-password"
    assert not re.search(r"PASSWORD\"?: [^/]", json.dumps(grafana["environment"]))


@pytest.mark.parametrize("path", sorted(p.name for p in (GRAFANA / "dashboards").glob("*.json")))
def test_grafana_dashboard_is_valid(path):
    """Valid JSON; every panel and annotation queries the provisioned data source by uid; every
    query names a metric of the platform's contract (no typo silently draws nothing)."""
    dashboard = json.loads((GRAFANA / "dashboards" / path).read_text())
    uid = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())["datasources"][0]["uid"]
    assert dashboard["uid"] and dashboard["title"] and dashboard["panels"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
        assert panel["targets"], f"{panel['title']}: no query"
        for key in ("h", "w", "x", "y"):
            assert isinstance(panel["gridPos"][key], int), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
    targets = _dashboard_targets(dashboard)
    assert dashboard["annotations"]["list"], "promotions are shown as annotations"
    for target in targets:
        assert target["datasource"] == {"type": "prometheus", "uid": uid}, target
        names = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b(?=\s*[{\[)]|\s*$|\s*/|\s*>|\s*==|\s*-|\s*\+)",
                               target["expr"]))
        metrics = {n for n in names if n in DASHBOARD_METRICS}
        assert metrics, f"{target['expr']!r} names no metric of the contract"
        unknown = {n for n in re.findall(r"\b(?:mlops|node)_[a-zA-Z0-9_]+", target["expr"])} - DASHBOARD_METRICS
        assert not unknown, f"{target['expr']!r} names metrics outside the contract: {unknown}"
    exprs = " ".join(t["expr"] for t in targets)
    for metric in DASHBOARD_METRICS:
        assert metric in exprs, f"the dashboard shows nothing of {metric}"
