"""Client-side MLflow helpers: find the platform the way a notebook would."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import requests
import stamina
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlops.settings import get_settings

log = logging.getLogger(__name__)

CLIENT_VARIABLES = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
)


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a ``KEY=VALUE`` file (comments and blank lines allowed, optional quotes)."""
    values: dict[str, str] = {}
    for lineno, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{path}:{lineno}: expected KEY=VALUE, got {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def load_client_env(path: Path | None = None) -> Path | None:
    """Fill the MLflow client variables from ``.mlops/local.env`` unless already tracking elsewhere.

    An explicit ``MLFLOW_TRACKING_URI`` in the environment wins: nothing is loaded then.
    Returns the file that was loaded, or None.
    """
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    env_file = path or get_settings().client_env_file
    if not env_file.is_file():
        return None
    for key, value in read_env_file(env_file).items():
        os.environ.setdefault(key, value)
    log.info("Tracking to %s (from %s)", os.environ.get("MLFLOW_TRACKING_URI"), env_file)
    return env_file


_TRANSIENT_CODES = {"TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR", "REQUEST_LIMIT_EXCEEDED"}


def is_transient(exc: Exception) -> bool:
    """Network errors and MLflow 5xx/429-style errors are retried; client errors are not."""
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return True
    if isinstance(exc, MlflowException):
        return exc.error_code in _TRANSIENT_CODES
    return False


# Every transient-prone MLflow call (training, smoke, later serving) goes through this one policy.
retry = stamina.retry(on=is_transient, attempts=5, timeout=120.0)


def experiment_id(name: str, client: MlflowClient | None = None) -> str:
    """The id of experiment ``name``, created when missing (a concurrent creator wins harmlessly)."""
    client = client or MlflowClient()
    found = retry(client.get_experiment_by_name)(name)
    if found is not None:
        return str(found.experiment_id)
    try:
        return str(retry(client.create_experiment)(name))
    except MlflowException:  # RESOURCE_ALREADY_EXISTS: created between the two calls
        found = retry(client.get_experiment_by_name)(name)
        if found is None:
            raise
        return str(found.experiment_id)
