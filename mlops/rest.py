"""Two questions to MLflow's REST API without importing MLflow: which versions wait for the gate, and
which version an alias points to.

The promotion gate's job runs every minute on every MLflow host and almost always finds nothing to do;
importing MLflow to learn that cost about 1.6 s of CPU a run (2-core EPYC), about 2.7 % of a core around
the clock. The retrain tick of a model without a champion has nothing to check, and learning that
imported MLflow, torch and scipy. These ask the same reads (``model-versions/search``,
``registered-models/alias``) with ``requests`` under the same login MLflow's client would use, and
say "I cannot tell" (None) for anything they do not handle as MLflow does (no http(s) tracking URI,
token, plugin or client-certificate logins, any error or other answer), so the caller then asks
through MLflow itself. Only reads: every write stays with MLflow's client.
"""

from __future__ import annotations

import configparser
import os
from pathlib import Path
from typing import TYPE_CHECKING

from mlops.tags import VERSION_TAG_REQUESTED_BY

# Logins MLflow's client supports that this does not: any of them set means "ask MLflow".
_UNHANDLED = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_AUTH", "MLFLOW_TRACKING_AWS_SIGV4",
              "MLFLOW_TRACKING_CLIENT_CERT_PATH")
_TRUE = {"true", "1", "yes", "on"}

# MLflow's error codes for a model, version or alias that does not exist (a missing alias of an existing
# model is INVALID_PARAMETER_VALUE in MLflow's SQL store): mlops.registry reads them too.
NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"})

if TYPE_CHECKING:
    import requests


def _login() -> tuple[str, str] | None:
    """Basic-auth login as MLflow's client finds it: the environment, else ``~/.mlflow/credentials``."""
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if not (user and password):
        parser = configparser.ConfigParser()
        parser.read(Path("~/.mlflow/credentials").expanduser())
        if parser.has_section("mlflow"):
            user = user or parser["mlflow"].get("mlflow_tracking_username")
            password = password or parser["mlflow"].get("mlflow_tracking_password")
    return (user, password) if user and password else None


def _get(path: str, params: dict[str, str], timeout: float) -> requests.Response | None:
    """GET ``path`` of the tracking server under MLflow's client login, or None where this cannot ask
    the way MLflow's client would (or the request failed)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "").rstrip("/")
    if not uri.startswith(("http://", "https://")) or any(os.environ.get(name) for name in _UNHANDLED):
        return None
    import requests

    insecure = os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() in _TRUE
    verify: bool | str = False if insecure else os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or True
    try:
        # verify per request: a session's own would be overridden by REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE.
        return requests.get(f"{uri}{path}", params=params, auth=_login(), verify=verify, timeout=timeout)
    except requests.RequestException:
        return None


def pending_requests(model_name: str, *, timeout: float = 10.0) -> list[tuple[str, str]] | None:
    """(version, requested by) of every version of ``model_name`` with a pending promotion request,
    oldest first ([] also when the model does not exist), or None when this cannot tell."""
    if "'" in model_name:
        return None
    params = {"filter": f"name = '{model_name}'", "max_results": "1000"}
    found: list[tuple[str, str]] = []
    while True:
        answer = _get("/api/2.0/mlflow/model-versions/search", params, timeout)
        if answer is None or answer.status_code != 200:
            return None
        try:
            body = answer.json()
            for version in body.get("model_versions", []):
                tags = {tag["key"]: tag.get("value", "") for tag in version.get("tags", [])}
                if VERSION_TAG_REQUESTED_BY in tags:
                    found.append((str(version["version"]), tags[VERSION_TAG_REQUESTED_BY]))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        if not body.get("next_page_token"):
            return sorted(found, key=lambda item: int(item[0]))
        params["page_token"] = body["next_page_token"]


def alias_version(model_name: str, alias: str, *, timeout: float = 10.0) -> str | None:
    """The version ``alias`` of ``model_name`` points to, "" when the model or the alias does not exist,
    or None when this cannot tell."""
    answer = _get("/api/2.0/mlflow/registered-models/alias", {"name": model_name, "alias": alias}, timeout)
    if answer is None:
        return None
    try:
        if answer.status_code == 200:
            return str(answer.json()["model_version"]["version"])
        if answer.status_code in (400, 404) and answer.json().get("error_code") in NOT_FOUND_CODES:
            return ""
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    return None
