"""Who may do what on the platform: its roles as bundles of MLflow permissions, and the calls that apply them.

The one place the platform's roles are defined. Read by
- the MLflow server's auth app (:mod:`mlops.mlflow_auth`): which roles may create experiments and
  models, move the promotion aliases, predict through ``/serve/`` and open ``/prometheus/``;
- ``mlops users`` and ``python -m mlops.access sync`` (Ansible, on the MLflow host): which MLflow
  permissions each role holds, and who holds which role.

A role is an MLflow RBAC role of the same name (workspace ``default``) holding the role's grants;
a user holds at most one platform role; MLflow's admin flag stands above them all. Runs a person
created stay when the person is removed (MLflow keeps the run's ``user_id``).

Only the standard library and ``requests`` are imported, so this runs in the MLflow server's own
environment, where the rest of the project is not installed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from typing import Any

import requests

CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous-champion"
PROMOTION_ALIASES = (CHAMPION, PREVIOUS_CHAMPION)
"""Aliases only a role that may promote (or an admin) can set, move or delete."""
CHECK_PATH = "/mlops-auth/check/"
"""MLflow's (the platform's auth app) answer to "may this login <capability>?": GET CHECK_PATH + capability with
the login, 204 / 401 / 403 / 429. Asked by nginx (/prometheus/) and by serving (/serve/)."""
LOGIN_CHECK_HEADER = "X-Mlops-Login-Check"
"""Set by nginx (never the client's) on what it forwards to serving: check this request's login for the named
capability."""

WORKSPACE = "default"
MODEL_PLACEHOLDER = "{model}"
"""A grant's pattern that stands for the platform's served model (its name is a deployment setting)."""

EXPERIMENT = "experiment"
REGISTERED_MODEL = "registered_model"


@dataclass(frozen=True)
class Role:
    name: str
    description: str
    grants: tuple[tuple[str, str, str], ...] = ()
    """(resource type, pattern, MLflow permission): ``*`` is every resource of the type."""
    create: bool = False
    """May create experiments and registered models (MLflow lets any login create them)."""
    promote: bool = False
    """May set, move or delete the promotion aliases and transition stages."""
    predict: bool = False
    """May call the serving endpoint (``/serve/``)."""
    monitor: bool = False
    """May open Prometheus and its consoles (``/prometheus/``)."""
    service: bool = False
    """A job's or host's role, not a person's."""

    def mlflow_grants(self, model: str) -> set[tuple[str, str, str]]:
        return {(kind, model if pattern == MODEL_PLACEHOLDER else pattern, permission)
                for kind, pattern, permission in self.grants}


_READ_ALL = ((EXPERIMENT, "*", "READ"), (REGISTERED_MODEL, "*", "READ"))
# Runs in every experiment (no deleting others'), versions of every registered model (no alias moves:
# mlops.mlflow_auth keeps the promotion aliases for the gate).
_TEAM_WORK = ((EXPERIMENT, "*", "EDIT"), (REGISTERED_MODEL, "*", "EDIT"))

ROLES: dict[str, Role] = {role.name: role for role in (
    Role("viewer", "reads every experiment, run and model; changes nothing", _READ_ALL, monitor=True),
    Role("data-scientist", "creates experiments, logs runs in any (the team's shared ones too), registers model "
         "versions, reads everything, predicts", _TEAM_WORK, create=True, predict=True, monitor=True),
    Role("predictor", "calls the serving endpoint only", predict=True),
    Role("retrain", "the retrain job: logs runs, registers versions, asks the gate", _TEAM_WORK, create=True,
         service=True),
    Role("trainer", "trainer hosts: log runs, register versions", _TEAM_WORK, create=True, service=True),
    Role("model-gate", "the promotion gate: logs its evaluations, moves the promotion aliases",
         ((EXPERIMENT, "*", "EDIT"), (REGISTERED_MODEL, "*", "MANAGE")), create=True, promote=True, service=True),
    Role("serving", "serving: reads the served model and the runs its versions come from",
         ((REGISTERED_MODEL, MODEL_PLACEHOLDER, "READ"), (EXPERIMENT, "*", "READ")), service=True),
    Role("monitor", "Prometheus: scrapes MLflow's /metrics, nothing else", monitor=True, service=True),
    Role("gc", "the gc job: deletes the artifacts of runs deleted long ago (through MLflow's artifact proxy)",
         ((EXPERIMENT, "*", "MANAGE"),), service=True),
)}


class AccessError(RuntimeError):
    """A request the platform cannot carry out (message says what and why; no secret in it)."""


USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
"""A login name (the mlflow role's check of the inventory's names uses the same expression)."""


def check_name(name: str) -> str:
    if not USER_NAME.match(name):
        raise AccessError(f"invalid user name {name[:80]!r}: 1-64 letters, digits, '.', '_', '@' or '-', "
                          "starting with a letter or digit")
    return name


@dataclass
class AccessClient:
    """MLflow's user and role administration over REST, as the platform's admin."""

    url: str
    username: str
    password: str = field(repr=False)
    verify: bool | str = True
    timeout: float = 30.0
    session: requests.Session = field(default_factory=requests.Session, repr=False)

    def _call(self, method: str, path: str, *, auth: tuple[str, str] | None = None, ok: tuple[int, ...] = (200,),
              **kwargs: Any) -> tuple[int, dict[str, Any]]:
        try:
            resp = self.session.request(method, self.url.rstrip("/") + path,
                                        auth=auth or (self.username, self.password),
                                        verify=self.verify, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise AccessError(f"cannot reach MLflow at {self.url}: {type(exc).__name__}") from None
        if resp.status_code not in ok:
            if resp.status_code == 401:
                raise AccessError(f"MLflow refused the admin login {self.username!r} (401): wrong or old password")
            try:
                message = resp.json().get("message", "")
            except ValueError:
                message = resp.text.strip()
            raise AccessError(f"{method} {path}: HTTP {resp.status_code} {message[:300]}")
        try:
            return resp.status_code, resp.json() if resp.content else {}
        except ValueError:
            return resp.status_code, {}

    # --- users ------------------------------------------------------------------------------
    def users(self) -> list[dict[str, Any]]:
        return self._call("GET", "/api/2.0/mlflow/users/list")[1].get("users", [])

    def user(self, name: str) -> dict[str, Any] | None:
        status, body = self._call("GET", "/api/2.0/mlflow/users/get", params={"username": name}, ok=(200, 404))
        return body.get("user") if status == 200 else None

    def create_user(self, name: str, password: str) -> None:
        self._call("POST", "/api/2.0/mlflow/users/create", json={"username": name, "password": password})

    def set_password(self, name: str, password: str) -> None:
        self._call("PATCH", "/api/2.0/mlflow/users/update-password", json={"username": name, "password": password})

    def delete_user(self, name: str) -> None:
        self._call("DELETE", "/api/2.0/mlflow/users/delete", json={"username": name})

    def logs_in(self, name: str, password: str) -> bool:
        status, _ = self._call("GET", "/api/2.0/mlflow/users/current", auth=(name, password), ok=(200, 401))
        return status == 200

    # --- roles ------------------------------------------------------------------------------
    def roles(self) -> dict[str, dict[str, Any]]:
        body = self._call("GET", "/api/3.0/mlflow/roles/list", params={"workspace": WORKSPACE})[1]
        return {role["name"]: role for role in body.get("roles", [])}

    def user_roles(self, name: str) -> list[str]:
        body = self._call("GET", "/api/3.0/mlflow/users/roles/list", params={"username": name})[1]
        return sorted(role["name"] for role in body.get("roles", []))

    def ensure_role(self, role: Role, model: str) -> bool:
        """Create the MLflow role if missing and make its grants exactly the platform role's."""
        changed = False
        existing = self.roles().get(role.name)
        if existing is None:
            body = self._call("POST", "/api/3.0/mlflow/roles/create",
                              json={"workspace": WORKSPACE, "name": role.name, "description": role.description})[1]
            existing, changed = body["role"], True
        role_id = existing["id"]
        have = {(p["resource_type"], p["resource_pattern"], p["permission"]): p["id"]
                for p in self._call("GET", "/api/3.0/mlflow/roles/permissions/list",
                                    params={"role_id": str(role_id)})[1].get("role_permissions", [])}
        want = role.mlflow_grants(model)
        for grant, grant_id in have.items():
            if grant not in want:
                self._call("DELETE", "/api/3.0/mlflow/roles/permissions/remove", json={"role_permission_id": grant_id})
                changed = True
        for kind, pattern, permission in sorted(want - set(have)):
            self._call("POST", "/api/3.0/mlflow/roles/permissions/add",
                       json={"role_id": role_id, "resource_type": kind, "resource_pattern": pattern,
                             "permission": permission})
            changed = True
        return changed

    def set_role(self, name: str, role_name: str | None) -> bool:
        """Give the user exactly this platform role (None: none); roles not the platform's are left alone."""
        roles = self.roles()
        held = set(self.user_roles(name)) & set(ROLES)
        changed = False
        for old in held - {role_name}:
            self._call("DELETE", "/api/3.0/mlflow/roles/unassign", json={"username": name, "role_id": roles[old]["id"]})
            changed = True
        if role_name is not None and role_name not in held:
            if role_name not in roles:
                raise AccessError(f"role {role_name!r} does not exist in MLflow yet: `make up` creates the roles")
            self._call("POST", "/api/3.0/mlflow/roles/assign",
                       json={"username": name, "role_id": roles[role_name]["id"]})
            changed = True
        return changed


def check_role(name: str) -> Role:
    try:
        return ROLES[name]
    except KeyError:
        raise AccessError(f"unknown role {name!r}: choose one of {', '.join(ROLES)}") from None


def sync(client: AccessClient, model: str, users: list[dict[str, str]]) -> dict[str, list[str]]:
    """Make MLflow hold every platform role and these users, each with its password and role.

    ``users``: ``{"name", "password", "role"}`` each. Users not listed are left alone (people added
    with ``mlops users add`` stay). Returns what changed, by kind (names only).
    """
    for entry in users:
        check_name(entry["name"])
        check_role(entry["role"])
    changes: dict[str, list[str]] = {"roles": [], "users_created": [], "passwords_set": [], "roles_assigned": []}
    for role in ROLES.values():
        if client.ensure_role(role, model):
            changes["roles"].append(role.name)
    for entry in users:
        name, password = entry["name"], entry["password"]
        if client.user(name) is None:
            client.create_user(name, password)
            changes["users_created"].append(name)
        elif not client.logs_in(name, password):
            client.set_password(name, password)
            changes["passwords_set"].append(name)
        if client.set_role(name, entry["role"]):
            changes["roles_assigned"].append(name)
    return changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops.access", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("sync", help="apply the platform's roles and the users given on stdin (JSON, see sync())")
    run.add_argument("--url", required=True, help="MLflow's address (loopback on the MLflow host)")
    args = parser.parse_args(argv)
    spec = json.load(sys.stdin)
    admin = spec["admin"]
    client = AccessClient(args.url, admin["name"], admin["password"])
    try:
        changes = sync(client, spec["model"], spec["users"])
    except AccessError as exc:
        print(f"mlops.access: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"changed": any(changes.values()), **changes}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
