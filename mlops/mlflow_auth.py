"""The platform's MLflow server app: MLflow's own auth app (users, permissions) plus the platform's rules.

Run by ``mlflow server --app-name mlops-auth`` (entry point in pyproject.toml) under gunicorn (its Flask app, or
with :class:`mlops.workers.MlflowWorker` its ASGI app: :func:`create_app`), with
``MLFLOW_AUTH_CONFIG_PATH`` naming the auth configuration (MLflow's ``[mlflow]`` section, and
``[mlops] secret_key_file``: the file holding the Flask secret key, so that it is never in the
service's environment). On top of MLflow's permission checks, for every user but an admin:

- a run records who created it: ``runs/create``'s ``user_id`` and the ``mlflow.user`` tag become the
  logged-in user, whatever the client sent;
- only roles that may create (:data:`mlops.access.ROLES`) create experiments and registered models;
- only roles that may promote (the gate) set, move or delete the promotion aliases, or transition stages,
  and write the gate's ``promotion_*`` tags on versions; anyone else who may edit a version asks for its
  promotion by tagging it ``promotion_requested_by`` with their own name (:mod:`pipelines.gate`);
- ``GET /mlops-auth/check/<capability>`` answers serving (``predict``: :mod:`serving.logins`, for what nginx
  forwards to ``/serve/``) and nginx's ``auth_request`` for ``/prometheus/`` (``monitor``): 204, or MLflow's
  401, or 403;
- ``/metrics`` (``--expose-prometheus``) is for users who may ``monitor`` (Prometheus's identity);
- ``GET /health/backend`` (no login: MLflow leaves ``/health*`` open) is 200 only when the backend
  store answers a query; nothing of the store is returned;
- failed logins are counted per client address and per (address, user) over a sliding minute: past
  ``[mlops] failed_logins_per_minute`` (five times that per address) the client gets 429 with
  ``Retry-After`` before any password is checked; each failure is logged with the user name and the
  address, never the password. The address is nginx's ``X-Real-IP`` when the peer is a trusted proxy
  (``[mlops] trusted_proxies``: loopback, or ``any`` on a private container network); programs that
  call MLflow directly from such an address (the platform's own services) are not limited;
- the auth store's reads MLflow's checks repeat on every request (a user, their grants, a run's experiment)
  are kept in each worker (:class:`StoreMemo`);
- the questions of nginx and serving (``/mlops-auth/check/...``) are answered from this worker's memory of the auth
  store while the store is unreachable (logins it verified and decisions it took up to ``[mlops]
  stale_login_seconds`` ago; never the password itself): /serve/ keeps answering the people who were
  using it while PostgreSQL is down, and nobody new gets in (503).

Every refusal, MLflow's own included, is a 403 with MLflow's JSON error body
(``PERMISSION_DENIED``) and a sentence that says who may.

``python -m mlops.mlflow_auth bootstrap`` migrates the auth tables and creates the admin once,
before the server starts (the workers then only connect).
"""

from __future__ import annotations

import base64
import configparser
import hashlib
import ipaddress
import json
import logging
import os
import re
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app, g, request

from mlops import oidc
from mlops.access import CHECK_PATH, PROMOTION_ALIASES, ROLES
from mlops.memo import BoundedTable
from mlops.tags import VERSION_TAG_PREFIX, VERSION_TAG_REQUESTED_BY

_API = r"^/(?:ajax-)?api/[23]\.0/mlflow/"
_RULES = (
    (re.compile(_API + r"runs/create$"), {"POST"}, "run"),
    (re.compile(_API + r"(?:experiments|registered-models)/create$"), {"POST"}, "create"),
    (re.compile(_API + r"registered-models/alias$"), {"POST", "DELETE"}, "alias"),
    (re.compile(_API + r"model-versions/transition-stage$"), {"POST"}, "stage"),
    (re.compile(_API + r"model-versions/(?:set-tag|delete-tag|create)$"), {"POST", "DELETE"}, "version_tag"),
)
_ACCOUNT_ROUTE = re.compile(_API + r"(?:users/|roles/|[a-z-]+/permissions/)")
CAPABILITIES = ("create", "promote", "predict", "monitor")
_BOOTSTRAPPED = "_MLFLOW_AUTH_ADMIN_BOOTSTRAPPED"
_LOOPBACK = ("127.0.0.1/32", "::1/128")
log = logging.getLogger(__name__)


class FailedLogins:
    """Failed logins in a sliding window, per client address and per (address, user); bounded memory."""

    def __init__(self, per_user: int, window_s: float = 60.0, max_keys: int = 10_000) -> None:
        self.per_user, self.per_client, self.window_s, self.max_keys = per_user, 5 * per_user, window_s, max_keys
        self._seen: OrderedDict[tuple[str, ...], deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, ...], now: float) -> deque[float]:
        times = self._seen.get(key) or deque()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def retry_after(self, client: str, user: str, now: float | None = None) -> float:
        """Seconds until this client may try this user again (0: now)."""
        if self.per_user <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        with self._lock:
            waits = [times[0] + self.window_s - now
                     for key, limit in (((client,), self.per_client), ((client, user), self.per_user))
                     if len(times := self._recent(key, now)) >= limit]
        return max(waits, default=0.0)

    def record(self, client: str, user: str, now: float | None = None) -> None:
        if self.per_user <= 0:
            return
        now = time.monotonic() if now is None else now
        with self._lock:
            for key in ((client,), (client, user)):
                times = self._recent(key, now)
                times.append(now)
                self._seen[key] = times
                self._seen.move_to_end(key)
            while len(self._seen) > self.max_keys:
                self._seen.popitem(last=False)


_failed_logins = FailedLogins(0)
_trusted_proxies: list[ipaddress.IPv4Network | ipaddress.IPv6Network] | None = [
    ipaddress.ip_network(n) for n in _LOOPBACK]
"""Peers whose X-Real-IP is believed (nginx's address); None: every peer (a private container network)."""


def trusted_proxies(text: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network] | None:
    """``[mlops] trusted_proxies``: comma-separated addresses or networks, or ``any``."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    return None if items == ["any"] else [ipaddress.ip_network(item, strict=False) for item in items]


def _client_address() -> str | None:
    """nginx's X-Real-IP when the request came through it (a trusted proxy), else the peer's address;
    None for a program calling MLflow directly from a trusted address (the platform's own services on
    the MLflow host, or its containers: never locked out)."""
    peer = request.remote_addr or ""
    try:
        trusted = _trusted_proxies is None or any(ipaddress.ip_address(peer) in n for n in _trusted_proxies)
    except ValueError:
        trusted = False
    return request.headers.get("X-Real-IP") if trusted else peer


def _basic_user() -> str | None:
    """The user name a Basic login names (cut to 128 characters; "" for a malformed one), None without one."""
    if not request.headers.get("Authorization", "").startswith("Basic "):
        return None
    login = _basic_login()
    return login[0][:128] if login else ""


def _error(status: int, code: str, message: str) -> Response:
    return Response(json.dumps({"error_code": code, "message": message}), status=status, mimetype="application/json")


def _deny(message: str) -> Response:
    return _error(403, "PERMISSION_DENIED", message)


def _who_may(capability: str) -> str:
    roles = [name for name, role in ROLES.items() if getattr(role, capability)]
    return f"an admin or a user with role {' or '.join(repr(r) for r in roles)}" if roles else "an admin"


def _username() -> str:
    from mlflow.server import auth

    name = getattr(g, "mlflow_authenticated_user", None)
    return name or auth.authenticate_request().username


def _stored_user(username: str) -> tuple[Any, list[Any]]:
    """The user and the MLflow roles (with their grants) it holds, from the auth store."""
    from mlflow.server import auth

    user = auth.store.get_user(username)
    return user, auth.store.list_user_roles(user.id)


def _user_roles(username: str) -> tuple[bool, set[str]]:
    """(is admin, the platform roles the user holds)."""
    user, roles = _stored_user(username)
    return bool(user.is_admin), {role.name for role in roles} & set(ROLES)


class Memory:
    """What this worker last learnt from the auth store: logins it verified (by a salted digest of the
    password, never the password) and capability decisions, each with when.

    Fresh answers (younger than ``fresh_s``) save a store query per request; older ones are used only
    while the store is unreachable, and only up to ``stale_s`` old: with PostgreSQL down, people who
    were just predicting keep predicting through /serve/, and nobody new gets in."""

    def __init__(self, fresh_s: float, stale_s: float, max_entries: int = 10_000) -> None:
        self.fresh_s, self.stale_s, self.max_entries = fresh_s, stale_s, max_entries
        self._salt = os.urandom(16)
        self._logins: BoundedTable[tuple[str, bytes], float] = BoundedTable(max_entries)
        self._decisions: BoundedTable[tuple[str, str], tuple[bool, float]] = BoundedTable(max_entries)

    def _digest(self, password: str) -> bytes:
        return hashlib.sha256(self._salt + password.encode("utf-8", "surrogatepass")).digest()

    def verified(self, username: str, password: str, now: float | None = None) -> None:
        self._logins.put((username, self._digest(password)), time.monotonic() if now is None else now)

    def stale_login(self, username: str, password: str, now: float | None = None) -> bool:
        at = self._logins.get((username, self._digest(password)))
        return at is not None and (time.monotonic() if now is None else now) - at < self.stale_s

    def decide(self, username: str, capability: str, compute: Callable[[], bool], now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        known = self._decisions.get((username, capability))
        if known is not None and now - known[1] < self.fresh_s:
            return known[0]
        try:
            allowed = compute()
        except Exception:
            if known is not None and now - known[1] < self.stale_s:
                log.warning("auth store unreachable: %r may %s as %.0f s ago", username, capability, now - known[1])
                return known[0]
            raise
        self._decisions.put((username, capability), (allowed, now))
        return allowed


_memory = Memory(0, 0)


class StoreMemo:
    """This worker's memo of the auth-store reads MLflow's checks repeat on every request.

    - A user (``get_user``) and their grants (``list_grants``), for ``fresh_s`` (``auth_cache_ttl_seconds``, the
      life of MLflow's own credential cache): a changed role, like a removed user or a new password, takes
      effect in every worker within it, and at once in the worker that served the change.
    - The experiment of a run, which MLflow's check reads with a whole ``get_run`` (8 queries) and which
      never changes: kept as long as there is room.

    Without it, logging a metric cost 11 queries for the check beside the 5 of the write itself."""

    def __init__(self, fresh_s: float, max_entries: int = 10_000) -> None:
        self.fresh_s = fresh_s
        self._reads: BoundedTable[tuple, tuple[object, float]] = BoundedTable(max_entries)
        self._experiments: BoundedTable[str, str] = BoundedTable(max_entries)

    def read(self, key: tuple, compute: Callable[[], object], now: float | None = None) -> object:
        """``compute()``'s value, from memory while younger than ``fresh_s``; errors are not kept."""
        if self.fresh_s <= 0:
            return compute()
        now = time.monotonic() if now is None else now
        known = self._reads.get(key)
        if known is not None and now - known[1] < self.fresh_s:
            return known[0]
        value = compute()
        self._reads.put(key, (value, now))
        return value

    def experiment_of(self, run_id: str, fetch_run: Callable[[], Any]) -> str | None:
        """The experiment of ``run_id`` (None: no such run, not kept)."""
        known = self._experiments.get(run_id)
        if known is not None:
            return known
        run = fetch_run()
        if run is None:
            return None
        self._experiments.put(run_id, run.info.experiment_id)
        return run.info.experiment_id

    def forget_users(self) -> None:
        """After a change to users or roles served by this worker."""
        self._reads.clear()


_store_memo = StoreMemo(0)


class _RunExperiment:
    """What MLflow's run check reads of a run: ``run.info.experiment_id``."""

    def __init__(self, experiment_id: str) -> None:
        self.info = self
        self.experiment_id = experiment_id


def _memoise_auth_store(memo: StoreMemo) -> None:
    """Put ``memo`` in front of the auth store's per-request reads and of the run fetch of MLflow's run check
    (the seams: ``store.get_user``, ``store.list_grants``, ``_fetch_or_none`` given a ``get_run``). Where a seam
    is missing (another MLflow), that read is left as it is: slower, never wrong."""
    from mlflow.server import auth

    store = auth.store
    get_user, list_grants = getattr(store, "get_user", None), getattr(store, "list_grants", None)
    fetch_or_none = getattr(auth, "_fetch_or_none", None)
    if get_user is not None:
        store.get_user = lambda username: memo.read(("user", username), lambda: get_user(username))
    if list_grants is not None:
        store.list_grants = lambda user_id, workspace, types: memo.read(
            ("grants", user_id, workspace, frozenset(types)), lambda: list_grants(user_id, workspace, types))
    if fetch_or_none is not None:
        def fetch(fetcher: Callable[[str], Any], resource_id: str) -> Any:  # noqa: ANN401 - MLflow's entities
            if getattr(fetcher, "__name__", "") != "get_run":
                return fetch_or_none(fetcher, resource_id)
            experiment_id = memo.experiment_of(resource_id, lambda: fetch_or_none(fetcher, resource_id))
            return None if experiment_id is None else _RunExperiment(experiment_id)

        auth._fetch_or_none = fetch
    missing = [name for name, seam in (("store.get_user", get_user), ("store.list_grants", list_grants),
                                       ("_fetch_or_none", fetch_or_none)) if seam is None]
    if missing:
        log.warning("MLflow's auth app has no %s: those reads are not memoised", ", ".join(missing))


def user_may(username: str, capability: str) -> bool:
    def compute() -> bool:
        is_admin, roles = _user_roles(username)
        return is_admin or any(getattr(ROLES[name], capability) for name in roles)

    return _memory.decide(username, capability, compute)


def _basic_login() -> tuple[str, str] | None:
    """(user, password) of a well-formed Basic login, else None."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")
    except ValueError:
        return None
    return user, password


def _stamp_run_user(username: str) -> Response | None:
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        return _error(400, "INVALID_PARAMETER_VALUE", "runs/create needs a JSON object body")
    body["user_id"] = username
    tags = [t for t in body.get("tags") or [] if not (isinstance(t, dict) and t.get("key") == "mlflow.user")]
    body["tags"] = [*tags, {"key": "mlflow.user", "value": username}]
    return None


def _platform_rules() -> Response | None:
    """Runs after MLflow's own check (which already answered 401/403 where it refuses)."""
    kind = next((k for pattern, methods, k in _RULES if request.method in methods and pattern.search(request.path)),
                None)
    if kind is None:
        return None
    username = _username()
    if kind == "run":
        return _stamp_run_user(username)
    if kind == "create":
        if not user_may(username, "create"):
            what = "experiments" if "/experiments/" in request.path else "registered models"
            return _deny(f"user {username!r} may not create {what}: only {_who_may('create')} may")
        return None
    if kind == "version_tag":
        return _gate_records(username)
    if kind == "alias":
        body = request.get_json(force=True, silent=True)
        alias = (body.get("alias") if isinstance(body, dict) else None) or request.args.get("alias")
        if alias not in PROMOTION_ALIASES:
            return None
    if not user_may(username, "promote"):
        what = f"move alias {alias!r}" if kind == "alias" else "transition model stages"
        return _deny(f"user {username!r} may not {what}: only the promotion gate ({_who_may('promote')}) may; "
                     "ask it with `mlops promote` (it judges the version and moves the aliases itself)")
    return None


def _gate_records(username: str) -> Response | None:
    """The gate's ``promotion_*`` tags on a version are its record: only a login that may promote writes or
    removes them. Anyone who may edit the version may ask for a promotion, in their own name only."""
    body = request.get_json(force=True, silent=True)
    body = body if isinstance(body, dict) else {}
    if request.path.endswith("/create"):
        tags = [t for t in body.get("tags") or [] if isinstance(t, dict)]
        keys = [str(t.get("key", "")) for t in tags]
        if not any(k.startswith(VERSION_TAG_PREFIX) for k in keys) or user_may(username, "promote"):
            return None
        return _deny(f"user {username!r} may not create a version with the promotion gate's tags "
                     f"({', '.join(k for k in keys if k.startswith(VERSION_TAG_PREFIX))}): only "
                     f"{_who_may('promote')} may")
    key = str(body.get("key") or request.args.get("key") or "")
    if not key.startswith(VERSION_TAG_PREFIX) or user_may(username, "promote"):
        return None
    if key == VERSION_TAG_REQUESTED_BY and request.method == "POST":
        if body.get("value") == username:
            return None
        return _deny(f"user {username!r} may ask for a promotion only in their own name "
                     f"({VERSION_TAG_REQUESTED_BY} = {username!r})")
    return _deny(f"user {username!r} may not change the promotion gate's record {key!r} on a version: only "
                 f"{_who_may('promote')} may (ask for a promotion with `mlops promote`)")


_MODEL_ROUTE = re.compile(_API + r"(?:registered-models|model-versions)/")


def _missing_model(username: str) -> Response | None:
    """MLflow refuses (403) any request on a registered model that does not exist, so that names cannot be
    probed. A user who could read the model if it existed (a grant on every model or on that name) learns
    nothing from a 404 instead, and clients that ask "is there a champion yet?" get MLflow's usual answer."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.permissions import get_permission
    from mlflow.server.handlers import _get_model_registry_store

    if not _MODEL_ROUTE.search(request.path):
        return None
    body = request.get_json(force=True, silent=True) if request.method != "GET" else None
    name = request.args.get("name") or (body.get("name") if isinstance(body, dict) else None)
    if not isinstance(name, str) or not name:
        return None
    try:
        _get_model_registry_store().get_registered_model(name)
        return None  # it exists: MLflow's refusal stands
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            return None
    user, roles = _stored_user(username)
    readable = user.is_admin or any(
        grant.resource_type == "registered_model" and grant.resource_pattern in ("*", name)
        and get_permission(grant.permission).can_read
        for role in roles for grant in role.permissions)
    return _error(404, "RESOURCE_DOES_NOT_EXIST", f"Registered Model with name={name} not found") if readable else None


# The body of the auth app's refusal (mlflow.server.auth.make_forbidden_response); other 403s (the security
# middleware's refused Host or Origin) keep their own words.
_MLFLOW_FORBIDDEN = b"Permission denied"


def _limited() -> Response | None:
    """429 with ``Retry-After`` for a Basic login from a client past its failed logins, before any check."""
    user, client = _basic_user(), _client_address()
    if user is not None and client and (wait := _failed_logins.retry_after(client, user)) > 0:
        response = _error(429, "REQUEST_LIMIT_EXCEEDED", "too many failed logins from this address: try again later")
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    return None


def _count_failed_login() -> None:
    """Count and log a refused Basic login (401): the user name and the address, never the password."""
    if (user := _basic_user()) is None:
        return
    client = _client_address()
    if client:
        _failed_logins.record(client, user)
    log.warning("failed login for user %r from %s (%s %s)", user, client or "this host", request.method,
                request.path)


def _lacks_permission(name: str | None) -> Response:
    """MLflow's JSON 403 for the auth app's plain-text refusal of this request, naming the user."""
    who = f"user {name!r}" if name else "this user"
    return _deny(f"{who} lacks the permission for {request.method} {request.path} "
                 f"(ask an admin: `mlops users set-role`)")


def _after(response: Response) -> Response:
    """Count and log a failed login; the auth app's own 403 (plain text) becomes MLflow's JSON error with the
    user's name (or, for a model that does not exist and that the user could read, MLflow's 404)."""
    if request.method != "GET" and _ACCOUNT_ROUTE.search(request.path):
        _store_memo.forget_users()
    if response.status_code == 401:
        _count_failed_login()
    if response.status_code == 403 and response.get_data() == _MLFLOW_FORBIDDEN and \
            not request.path.startswith(oidc.PREFIX):
        name = getattr(g, "mlflow_authenticated_user", None)
        if name and (missing := _missing_model(name)) is not None:
            return missing
        return _lacks_permission(name)
    return response


def _front() -> Response | None:
    """Runs before MLflow's check, for the routes the platform answers itself.

    MLflow refuses every route it has no rule for (fail-closed) to all but admins, so the
    capability check and ``/metrics`` (for ``monitor``: Prometheus and the people who may read it)
    are authenticated and answered here.
    """
    from mlflow.server import auth

    if (limited := _limited()) is not None:
        return limited
    if (page := oidc.answer(request.path)) is not None:
        return page
    if request.path == "/metrics":
        capability = "monitor"
    elif request.path.startswith(CHECK_PATH):
        capability = request.path.removeprefix(CHECK_PATH)
    else:
        return None
    login = _basic_login()
    try:
        authorization = auth.authenticate_request()
    except Exception:  # the auth store is unreachable: a login this worker verified lately still counts
        if login is None or not _memory.stale_login(*login):
            log.warning("auth store unreachable: a login could not be checked (%s)", request.path)
            return _error(503, "TEMPORARILY_UNAVAILABLE", "logins cannot be checked right now: try again shortly")
        g.mlflow_authenticated_user = login[0]
    else:
        if isinstance(authorization, Response):
            return authorization
        if login is not None and login[0] == authorization.username:
            _memory.verified(*login)
        g.mlflow_authenticated_user = authorization.username
    try:
        answer = check_capability(capability)
    except Exception:
        log.warning("auth store unreachable: %s for %r could not be decided", capability, g.mlflow_authenticated_user)
        return _error(503, "TEMPORARILY_UNAVAILABLE", "permissions cannot be checked right now: try again shortly")
    if request.path == "/metrics" and answer.status_code == 204 and request.url_rule is not None:
        return current_app.view_functions[request.url_rule.endpoint](**(request.view_args or {}))
    return answer


class NativeRouteRules:
    """ASGI, around MLflow's FastAPI app: the platform's login rules for the routes FastAPI answers itself.

    Under uvicorn (:class:`mlops.workers.MlflowWorker`) MLflow answers some routes without its Flask app: artifact
    uploads and downloads, OTLP traces, jobs, the AI gateway, server info. The Flask hooks above never run for
    them; MLflow's permission middleware checks their logins and rights. This adds what the platform adds on the
    Flask side for a Basic login: the failed-login limit (429 before any password is checked), the count and
    log line of a refused login, and MLflow's JSON ``PERMISSION_DENIED`` with the user's name for its plain-text
    403. Requests on other routes pass straight through.
    """

    def __init__(self, app: Any, flask_app: Flask) -> None:  # noqa: ANN401 - MLflow's FastAPI app
        from starlette.routing import Match, Mount

        self.app, self.flask_app = app, flask_app
        self._native = [route for route in app.routes if not isinstance(route, Mount)]
        self._no_match = Match.NONE

    def _applies(self, scope: dict[str, Any]) -> bool:
        return scope["type"] == "http" and any(
            name == b"authorization" and value[:6].lower() == b"basic " for name, value in scope.get("headers", ())
        ) and any(route.matches(scope)[0] != self._no_match for route in self._native)

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if not self._applies(scope):
            await self.app(scope, receive, send)
            return
        from starlette.middleware.wsgi import build_environ

        environ = build_environ(scope, b"")
        with self.flask_app.request_context(environ):
            limited = _limited()
        if limited is not None:
            await _send_flask_response(limited, send)
            return
        start: dict[str, Any] = {}
        held: list[bytes] = []

        async def watch(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                if message["status"] != 403:
                    await send(message)
                return
            if message["type"] != "http.response.body" or start.get("status") != 403:
                await send(message)
                return
            held.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(held)
            if body != _MLFLOW_FORBIDDEN:
                await send(start)
                await send({"type": "http.response.body", "body": body})
                return
            with self.flask_app.request_context(environ):
                refusal = _lacks_permission(_basic_user())
            await _send_flask_response(refusal, send)

        await self.app(scope, receive, watch)
        if start.get("status") == 401:
            with self.flask_app.request_context(environ):
                _count_failed_login()


async def _send_flask_response(response: Response, send: Callable) -> None:
    await send({"type": "http.response.start", "status": response.status_code,
                "headers": [(name.lower().encode("latin-1"), value.encode("latin-1"))
                            for name, value in response.headers.items()]})
    await send({"type": "http.response.body", "body": response.get_data()})


def check_capability(capability: str) -> Response:
    if capability not in CAPABILITIES:
        return _error(404, "RESOURCE_DOES_NOT_EXIST", f"no capability {capability!r}: one of {', '.join(CAPABILITIES)}")
    username = _username()
    if user_may(username, capability):
        return Response(status=204, headers={"X-Mlops-User": username})
    return _deny(f"user {username!r} may not {capability}: only {_who_may(capability)} may")


def backend_health() -> Response:
    from mlflow.server.handlers import _get_tracking_store

    try:
        _get_tracking_store().search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - any failure means the store is not answering
        return _error(503, "TEMPORARILY_UNAVAILABLE", f"backend store: {type(exc).__name__}")
    return Response(json.dumps({"status": "ok", "backend_store": "ok"}), mimetype="application/json")


def _configure() -> None:
    """Read the platform's section of the auth configuration: the Flask secret key's file (its key goes
    where MLflow reads it) and the failed-login limit."""
    global _failed_logins, _memory, _store_memo, _trusted_proxies
    from mlflow.environment_variables import MLFLOW_AUTH_CONFIG_PATH

    config = configparser.ConfigParser()
    config.read(MLFLOW_AUTH_CONFIG_PATH.get() or "")
    _failed_logins = FailedLogins(config.getint("mlops", "failed_logins_per_minute", fallback=0))
    fresh_s = config.getint("mlflow", "auth_cache_ttl_seconds", fallback=0)
    _memory = Memory(fresh_s, config.getint("mlops", "stale_login_seconds", fallback=0))
    _store_memo = StoreMemo(fresh_s)
    _trusted_proxies = trusted_proxies(config.get("mlops", "trusted_proxies", fallback=",".join(_LOOPBACK)))
    oidc.configure(config, on_change=lambda: _store_memo.forget_users())
    key_file = config.get("mlops", "secret_key_file", fallback="")
    if key_file and not os.environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY"):
        # Set in this worker only (after exec: not in /proc/<pid>/environ); no child process runs.
        os.environ["MLFLOW_FLASK_SERVER_SECRET_KEY"] = Path(key_file).read_text().strip()


def create_app(app: Flask | None = None):  # noqa: ANN201 - Flask under sync workers, MLflow's ASGI app under uvicorn
    """The ``mlflow.app`` entry point: MLflow's auth app with the platform's rules around its checks.

    The rules are Flask hooks on MLflow's Flask app, which serves every route they concern. Under gunicorn's sync
    workers (the platform's default) that app is what this returns. Under :class:`mlops.workers.MlflowWorker` it
    is MLflow's FastAPI app (MLflow's ASGI security middleware, its FastAPI-native routes and their permission
    checks, the Flask app mounted inside), wrapped in :class:`NativeRouteRules`.
    """
    from mlflow.server import app as mlflow_app
    from mlflow.server import auth

    _configure()
    os.environ[_BOOTSTRAPPED] = "true"  # `bootstrap` ran before the server: the workers only connect
    flask_app = app or mlflow_app
    served = auth.create_app(flask_app)
    _memoise_auth_store(_store_memo)
    flask_app.before_request_funcs.setdefault(None, []).insert(0, _front)
    flask_app.before_request(_platform_rules)
    flask_app.after_request(_after)
    # Answered by _front before MLflow's check; the rule makes the path a known route.
    flask_app.add_url_rule(CHECK_PATH + "<capability>", "mlops_auth_check", check_capability, methods=["GET"])
    flask_app.add_url_rule("/health/backend", "mlops_backend_health", backend_health, methods=["GET"])
    if oidc.enabled():  # single sign-on's pages (mlops.oidc), answered by _front before MLflow's login check
        flask_app.add_url_rule(oidc.PREFIX + "<page>", "mlops_oidc", lambda page: oidc.answer(oidc.PREFIX + page),
                               methods=["GET"])
    return served if isinstance(served, Flask) else NativeRouteRules(served, flask_app)


def bootstrap() -> None:
    """Migrate the auth tables and create the admin (from the configuration) if it does not exist."""
    from mlflow.server import auth

    auth.bootstrap_admin_user()


if __name__ == "__main__":
    if sys.argv[1:] != ["bootstrap"]:
        sys.exit("usage: python -m mlops.mlflow_auth bootstrap")
    bootstrap()
