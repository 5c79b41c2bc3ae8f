"""Asking the promotion gate: a login without the right to promote asks, the gate decides as itself.

Only the gate's identity (role ``model-gate``) and admins may move ``champion`` / ``previous-champion``
(:mod:`mlops.mlflow_auth`). Everyone else who wants a version promoted (a person with ``mlops promote``,
the retrain job) *asks*: :func:`ask` tags the candidate version ``promotion_requested_by`` with the
asker's login (MLflow's auth app accepts only the asker's own name there and keeps the gate's other
``promotion_*`` tags for the gate) and waits. The gate job (:func:`decide_requests`, ``mlops gate``,
scheduled every minute as ``svc-gate``) judges each pending request with
:func:`pipelines.promote.promote`, which records who asked in its evaluation run (``mlops.requested_by``),
and then removes the request; the asker reads the verdict from the version's tags.

A login that may promote (the gate, an admin; or any login on an MLflow without the platform's auth
app) runs the gate in-process, as before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import mlflow
from mlflow import MlflowClient

from mlops.access import CHECK_PATH
from mlops.registry import CHAMPION, PromotionError, resolve_version, search_versions, version_by_alias
from mlops.settings import get_settings
from mlops.tags import VERSION_TAG_REQUESTED_BY
from mlops.tracking import load_client_env, retry

if TYPE_CHECKING:  # pipelines.promote brings torch: loaded only where a version is judged
    from pipelines.promote import PromotionDecision

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Login:
    name: str | None
    """The MLflow login (None: the tracking server has no platform auth app, so no login to name)."""
    may_promote: bool


def current_login() -> Login:
    """Who this process is on MLflow and whether it may move the promotion aliases (MLflow answers)."""
    from mlflow.tracking._tracking_service.utils import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    uri = mlflow.get_tracking_uri()
    if not uri.startswith(("http://", "https://")):
        return Login(None, True)  # a local store: no logins at all
    creds = get_default_host_creds(uri)

    def ask(path: str):  # noqa: ANN202 - requests' Response
        return http_request(creds, path, "GET", max_retries=3, raise_on_status=False, timeout=30)

    resp = ask(CHECK_PATH + "promote")
    if resp.status_code == 204:
        return Login(resp.headers.get("X-Mlops-User") or creds.username, True)
    if resp.status_code == 404:
        return Login(creds.username, True)  # an MLflow without the platform's auth app
    if resp.status_code == 401:
        raise PromotionError(f"MLflow at {uri} refused the login {creds.username!r} (401): wrong, old or no "
                             "password (MLFLOW_TRACKING_USERNAME/PASSWORD or ~/.mlflow/credentials)")
    if resp.status_code != 403:
        raise PromotionError(f"MLflow at {uri} could not say who may promote (HTTP {resp.status_code})")
    me = ask("/api/2.0/mlflow/users/current")
    name = (me.json().get("user") or {}).get("username") if me.status_code == 200 else None
    return Login(name or creds.username, False)


Say = Callable[[str], None]


def ask(model_name: str, candidate: str = "latest", *, wait_s: float | None = None,
        say: Say = log.info) -> PromotionDecision | None:
    """Promote ``candidate`` if it wins: in-process where this login may promote, else through the gate.

    Returns the decision, or None when the gate has not decided within ``wait_s`` (default
    ``promote_wait_s``); the request stays and the gate decides it later.
    """
    from pipelines.promote import promote

    load_client_env()
    login = current_login()
    if login.may_promote:
        return promote(model_name, candidate, requested_by=login.name)
    return request(model_name, candidate, login.name or "", wait_s=wait_s, say=say)


def request(model_name: str, candidate: str, login: str, *, wait_s: float | None = None,
            say: Say = log.info) -> PromotionDecision | None:
    """File a promotion request for ``candidate`` as ``login`` and wait for the gate's decision."""
    from pipelines.promote import PromotionDecision, recorded_decision

    s = get_settings()
    wait_s = s.promote_wait_s if wait_s is None else wait_s
    client = MlflowClient()
    version = str(resolve_version(client, model_name, candidate).version)
    champion = version_by_alias(client, model_name, CHAMPION)
    if champion is not None and str(champion.version) == version:
        return PromotionDecision(promoted=True, reason=f"{model_name} version {version} is already the champion; "
                                 "nothing changed.", candidate_version=version, champion_version=version,
                                 evaluation_run_id="", model_name=model_name, changed=False)
    retry(client.set_model_version_tag)(model_name, version, VERSION_TAG_REQUESTED_BY, login)
    say(f"Asked the promotion gate to judge {model_name} version {version} (as {login!r}, who may not move "
        f"'{CHAMPION}'); the gate job decides pending requests every minute. Waiting up to {wait_s:.0f} s ...")
    deadline, shown = time.monotonic() + wait_s, time.monotonic()
    while True:
        tags = retry(client.get_model_version)(model_name, version).tags or {}
        if VERSION_TAG_REQUESTED_BY not in tags:
            return recorded_decision(model_name, version, tags)
        now = time.monotonic()
        if now >= deadline:
            return None
        if now - shown >= 30:
            say(f"  still waiting for the gate ({now - deadline + wait_s:.0f} s)")
            shown = now
        time.sleep(min(s.promote_poll_s, max(0.0, deadline - now)))


@dataclass(frozen=True)
class Handled:
    version: str
    requested_by: str
    decision: PromotionDecision | None
    error: str = ""


def pending(client: MlflowClient, model_name: str) -> list[tuple[str, str]]:
    """(version, requested by) of every pending request, oldest version first."""
    found = [(str(v.version), (v.tags or {})[VERSION_TAG_REQUESTED_BY]) for v in search_versions(client, model_name)
             if VERSION_TAG_REQUESTED_BY in (v.tags or {})]
    return sorted(found, key=lambda item: int(item[0]))


def decide_requests(model_name: str) -> list[Handled]:
    """The gate job: judge every pending request (as this process's login, the gate's) and remove it.

    A request the gate could not judge (MLflow, the database or the candidate failed) stays for the next
    run; the others are still judged.
    """
    load_client_env()
    client = MlflowClient()
    requests = pending(client, model_name)
    if not requests:
        return []
    from pipelines.promote import promote

    handled = []
    for version, requested_by in requests:
        log.info("Request from %r: %s version %s", requested_by, model_name, version)
        try:
            decision = promote(model_name, version, requested_by=requested_by)
        except Exception as exc:  # noqa: BLE001 - reported, the request stays, the others go on
            log.exception("Could not judge %s version %s (the request stays)", model_name, version)
            handled.append(Handled(version, requested_by, None, f"{type(exc).__name__}: {exc}"))
            continue
        retry(client.delete_model_version_tag)(model_name, version, VERSION_TAG_REQUESTED_BY)
        handled.append(Handled(version, requested_by, decision))
    return handled
