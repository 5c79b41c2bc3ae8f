"""One question to MLflow's REST API without importing MLflow: which versions wait for the gate.

The promotion gate's job runs every minute on every MLflow host and almost always finds nothing to do;
importing MLflow to learn that cost about 1.6 s of CPU a run (2-core EPYC), about 2.7 % of a core around
the clock. This asks the same search (``model-versions/search``) with ``requests`` under the same login
MLflow's client would use, and says "I cannot tell" (None) for anything it does not handle as MLflow
does (no http(s) tracking URI, token, plugin or client-certificate logins, any error), so the caller
then asks through MLflow itself. It only ever answers a read; every write stays with MLflow's client.
"""

from __future__ import annotations

import configparser
import os
from pathlib import Path

from mlops.tags import VERSION_TAG_REQUESTED_BY

# Logins MLflow's client supports that this does not: any of them set means "ask MLflow".
_UNHANDLED = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_AUTH", "MLFLOW_TRACKING_AWS_SIGV4",
              "MLFLOW_TRACKING_CLIENT_CERT_PATH")
_TRUE = {"true", "1", "yes", "on"}


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


def pending_requests(model_name: str, *, timeout: float = 10.0) -> list[tuple[str, str]] | None:
    """(version, requested by) of every version of ``model_name`` with a pending promotion request,
    oldest first ([] also when the model does not exist), or None when this cannot tell."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "").rstrip("/")
    if not uri.startswith(("http://", "https://")) or "'" in model_name:
        return None
    if any(os.environ.get(name) for name in _UNHANDLED):
        return None
    import requests

    insecure = os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() in _TRUE
    verify: bool | str = False if insecure else os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or True
    params = {"filter": f"name = '{model_name}'", "max_results": "1000"}
    found: list[tuple[str, str]] = []
    try:
        with requests.Session() as session:
            session.auth = _login()
            while True:
                # verify per request: a session's own is overridden by REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE.
                answer = session.get(f"{uri}/api/2.0/mlflow/model-versions/search", params=params,
                                     verify=verify, timeout=timeout)
                if answer.status_code != 200:
                    return None
                body = answer.json()
                for version in body.get("model_versions", []):
                    tags = {tag["key"]: tag.get("value", "") for tag in version.get("tags", [])}
                    if VERSION_TAG_REQUESTED_BY in tags:
                        found.append((str(version["version"]), tags[VERSION_TAG_REQUESTED_BY]))
                if not body.get("next_page_token"):
                    break
                params["page_token"] = body["next_page_token"]
    except (requests.RequestException, ValueError, KeyError, TypeError, AttributeError):
        return None
    return sorted(found, key=lambda item: int(item[0]))
