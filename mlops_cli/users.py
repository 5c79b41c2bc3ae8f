"""`mlops users`: people and service identities on the platform's MLflow, as its admin.

Thin over :mod:`mlops.access` (the roles and the REST calls). Logs in with ``.mlops/admin.env``;
a generated password goes to ``.mlops/credentials/mlflow-<name>`` (mode 0600), the file `make up`
reads for the users it manages, so both ways agree. Passwords are never printed.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from pathlib import Path

from mlops.access import ROLES, AccessClient, AccessError, check_name, check_role
from mlops.files import write_atomically
from mlops.settings import get_settings
from mlops.tracking import read_env_file

PASSWORD_LENGTH = 24


@dataclass(frozen=True)
class UserRow:
    name: str
    role: str
    admin: bool


def admin_client(env_file: Path | None = None) -> AccessClient:
    path = env_file or get_settings().admin_env_file
    if not path.is_file():
        raise AccessError(f"no admin settings at {path}: run `make up` first (it writes them)")
    env = read_env_file(path)
    try:
        return AccessClient(env["MLFLOW_TRACKING_URI"], env["MLFLOW_TRACKING_USERNAME"],
                            env["MLFLOW_TRACKING_PASSWORD"], verify=env.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or True)
    except KeyError as exc:
        raise AccessError(f"{path} has no {exc.args[0]}") from None


def password_file(name: str) -> Path:
    return get_settings().credentials_dir / f"mlflow-{name}"


def _new_password(name: str, given: Path | None) -> tuple[str, Path]:
    """The password from ``given``, or a new one written to the user's credentials file (0600, atomically)."""
    if given is not None:
        password = given.read_text().strip()
        if len(password) < 12:
            raise AccessError(f"the password in {given} is shorter than 12 characters")
        return password, given
    password = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(PASSWORD_LENGTH))
    dest = password_file(name)
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomically(dest, password, mode=0o600)
    return password, dest


def list_users(client: AccessClient) -> list[UserRow]:
    rows = []
    for user in sorted(client.users(), key=lambda u: u["username"]):
        roles = [r for r in client.user_roles(user["username"]) if r in ROLES]
        rows.append(UserRow(user["username"], ",".join(roles) or "-", bool(user.get("is_admin"))))
    return rows


def add_user(client: AccessClient, name: str, role: str, given: Path | None = None) -> Path:
    check_name(name)
    check_role(role)
    if client.user(name) is not None:
        raise AccessError(f"user {name!r} exists already: use `mlops users set-role` or `reset-password`")
    password, where = _new_password(name, given)
    client.create_user(name, password)
    client.set_role(name, role)
    return where


def set_role(client: AccessClient, name: str, role: str) -> bool:
    check_role(role)
    _existing(client, name)
    return client.set_role(name, role)


def reset_password(client: AccessClient, name: str, given: Path | None = None) -> Path:
    _existing(client, name)
    password, where = _new_password(name, given)
    client.set_password(name, password)
    return where


def remove_user(client: AccessClient, name: str) -> None:
    user = _existing(client, name)
    if name == client.username or user.get("is_admin"):
        raise AccessError(f"user {name!r} is an admin: the platform's admin is not removed from here")
    client.delete_user(name)
    password_file(name).unlink(missing_ok=True)


def _existing(client: AccessClient, name: str) -> dict:
    check_name(name)
    user = client.user(name)
    if user is None:
        raise AccessError(f"no user {name!r} (see `mlops users list`)")
    return user
