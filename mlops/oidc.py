"""Single sign-on: people log in through the team's OpenID Connect provider (the relying party inside MLflow).

Turned on by ``[mlops] oidc_issuer`` in MLflow's auth configuration (Ansible: ``mlflow_oidc_issuer``), with
``authorization_function = mlops.oidc:authenticate_request``. Then MLflow (behind nginx) accepts, in order:

- ``Authorization: Basic``: MLflow's own logins, as before (service identities, the admin, local people);
- ``Authorization: Bearer <token>``: a *notebook token* the platform issued to a person who logged in
  (``/oidc/token``; ``MLFLOW_TRACKING_TOKEN``), or an ID token of the provider itself (signature, issuer,
  audience and expiry checked against the provider's published keys);
- the session cookie the login sets (the UI in a browser); ``/oidc/password`` sets the same cookie for a local
  account (MLflow's password, asked by the browser) where a browser is not to go to the provider.

A browser without any of these is sent to ``/oidc/login``: the authorization code flow with PKCE, state
and nonce; ``/oidc/callback`` checks the ID token and maps the person's provider groups to one platform
role (``oidc_roles``: ``group=role`` pairs; role ``admin`` is MLflow's admin flag). The person becomes an
MLflow user of that name (a random password nobody knows: Basic logins stay impossible for them), their role
is set again at every login, and a person whose groups map to no role is refused. Runs record the person's
name, and every platform rule (:mod:`mlops.mlflow_auth`) applies to them as to anyone.

Sessions and notebook tokens are HMAC-signed with MLflow's Flask secret key (never stored); they end
after ``oidc_session_hours`` / ``oidc_token_hours``. Only the standard library, ``requests`` and
``cryptography`` (MLflow's own dependencies) are used: this runs in the MLflow server's environment.
"""

from __future__ import annotations

import base64
import configparser
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests

from mlops.access import ROLES, USER_NAME, WORKSPACE

log = logging.getLogger(__name__)

PREFIX = "/oidc/"
SESSION_COOKIE = "mlops_session"
FLOW_COOKIE = "mlops_oidc_flow"
ADMIN = "admin"
_PEOPLE = ("data-scientist", "viewer", "predictor")
PRECEDENCE = (ADMIN, *_PEOPLE, *(name for name in ROLES if name not in _PEOPLE))
"""A person in groups that map to several roles gets the first of these."""
_FLOW_S = 600


class OidcError(RuntimeError):
    """A login that cannot go on (the message is safe to show: no token, no secret)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_roles(text: str) -> dict[str, str]:
    """``"group=role, group2=role2"`` → mapping; each role is a platform role or ``admin``."""
    roles: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.replace("\n", ",").split(","))):
        group, sep, role = (s.strip() for s in item.partition("="))
        if not sep or not group or role not in (*ROLES, ADMIN):
            raise OidcError(f"oidc_roles entry {item!r}: expected GROUP=ROLE with ROLE one of "
                            f"{', '.join((*ROLES, ADMIN))}")
        roles[group] = role
    return roles


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str
    roles: dict[str, str]
    username_claim: str = "preferred_username"
    groups_claim: str = "groups"
    session_s: float = 8 * 3600
    token_s: float = 12 * 3600
    scopes: str = "openid profile email groups"

    @classmethod
    def from_config(cls, config: configparser.ConfigParser) -> OidcConfig | None:
        issuer = config.get("mlops", "oidc_issuer", fallback="").strip()
        if not issuer:
            return None
        section = config["mlops"]
        secret_file = section.get("oidc_client_secret_file", "")
        return cls(
            issuer=issuer.rstrip("/"), client_id=section["oidc_client_id"],
            client_secret=Path(secret_file).read_text().strip() if secret_file else "",
            redirect_uri=section["oidc_redirect_uri"], roles=parse_roles(section.get("oidc_roles", "")),
            username_claim=section.get("oidc_username_claim", "preferred_username"),
            groups_claim=section.get("oidc_groups_claim", "groups"),
            session_s=float(section.get("oidc_session_hours", "8")) * 3600,
            token_s=float(section.get("oidc_token_hours", "12")) * 3600,
            scopes=section.get("oidc_scopes", "openid profile email groups"))

    def role_of(self, groups: list[str]) -> str | None:
        """The one role the groups give (a user holds one): the first of PRECEDENCE the groups map to."""
        held = {self.roles[g] for g in groups if g in self.roles}
        return next((name for name in PRECEDENCE if name in held), None)


class Provider:
    """The provider's discovery document and signing keys, fetched when first needed and kept."""

    def __init__(self, issuer: str, timeout: float = 10.0) -> None:
        self.issuer, self.timeout = issuer, timeout
        self._meta: dict[str, Any] | None = None
        self._keys: dict[str, Any] = {}
        self._keys_at = 0.0
        self._lock = threading.Lock()

    def meta(self) -> dict[str, Any]:
        if self._meta is None:
            url = f"{self.issuer}/.well-known/openid-configuration"
            try:
                meta = requests.get(url, timeout=self.timeout).json()
            except (requests.RequestException, ValueError) as exc:
                raise OidcError(f"the identity provider at {self.issuer} cannot be reached right now") from exc
            if meta.get("issuer", "").rstrip("/") != self.issuer:
                raise OidcError(f"the identity provider's discovery document names issuer {meta.get('issuer')!r}, "
                                f"not {self.issuer!r}")
            self._meta = meta
        return self._meta

    def key(self, kid: str | None) -> Any:  # noqa: ANN401 - cryptography's RSA public key
        from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers

        with self._lock:
            if kid not in self._keys and time.monotonic() - self._keys_at > 30:  # a new key: refetch, not too often
                try:
                    jwks = requests.get(self.meta()["jwks_uri"], timeout=self.timeout).json()
                except (requests.RequestException, ValueError) as exc:
                    raise OidcError("the identity provider's keys cannot be fetched right now") from exc
                self._keys = {k.get("kid"): RSAPublicNumbers(int.from_bytes(_unb64(k["e"]), "big"),
                                                             int.from_bytes(_unb64(k["n"]), "big")).public_key()
                              for k in jwks.get("keys", []) if k.get("kty") == "RSA" and k.get("use", "sig") == "sig"}
                self._keys_at = time.monotonic()
            if kid not in self._keys and kid is None and len(self._keys) == 1:
                return next(iter(self._keys.values()))
            if kid not in self._keys:
                raise OidcError("the token is signed with a key the identity provider does not publish")
            return self._keys[kid]

    def verify(self, token: str, audience: str, nonce: str | None = None, leeway_s: float = 60) -> dict[str, Any]:
        """The claims of an RS256 ID token from this provider for ``audience``, or OidcError."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        try:
            head_b64, body_b64, sig_b64 = token.split(".")
            header, claims = json.loads(_unb64(head_b64)), json.loads(_unb64(body_b64))
            signature = _unb64(sig_b64)
        except ValueError as exc:
            raise OidcError("not a signed token") from exc
        if header.get("alg") != "RS256":
            raise OidcError(f"token algorithm {header.get('alg')!r} is not accepted (RS256 only)")
        try:
            self.key(header.get("kid")).verify(signature, f"{head_b64}.{body_b64}".encode(), padding.PKCS1v15(),
                                               hashes.SHA256())
        except InvalidSignature as exc:
            raise OidcError("the token's signature is not the identity provider's") from exc
        now = time.time()
        audiences = claims.get("aud") if isinstance(claims.get("aud"), list) else [claims.get("aud")]
        if str(claims.get("iss", "")).rstrip("/") != self.issuer or audience not in audiences:
            raise OidcError("the token was not issued by this platform's identity provider for this platform")
        if not isinstance(claims.get("exp"), (int, float)) or claims["exp"] + leeway_s < now:
            raise OidcError("the token has expired: log in again")
        if nonce is not None and not hmac.compare_digest(str(claims.get("nonce", "")), nonce):
            raise OidcError("the login's nonce does not match: start the login again")
        return claims


# --- the platform's own signed values (sessions, notebook tokens, the login's flow state) ---------


def sign(key: bytes, kind: str, payload: dict[str, Any], ttl_s: float) -> str:
    body = _b64(json.dumps({**payload, "kind": kind, "exp": int(time.time() + ttl_s)}, separators=(",", ":")).encode())
    mac = hmac.new(key, f"mlops.{kind}.{body}".encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def unsign(key: bytes, kind: str, value: str) -> dict[str, Any] | None:
    """The payload of a value ``sign`` made for ``kind`` that has not expired, else None."""
    body, _, mac = value.partition(".")
    try:
        expected = hmac.new(key, f"mlops.{kind}.{body}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(mac)):
            return None
        payload = json.loads(_unb64(body))
    except (ValueError, TypeError):
        return None
    if payload.get("kind") != kind or not isinstance(payload.get("exp"), int) or payload["exp"] < time.time():
        return None
    return payload


TOKEN_PREFIX = "mlops_"  # noqa: S105 - a prefix, not a secret
"""Notebook tokens start with this, so that they are told from the provider's own tokens at once."""


# --- the Flask side (MLflow's auth app) -----------------------------------------------------------

_config: OidcConfig | None = None
_provider: Provider | None = None
_synced: dict[str, tuple[str | None, float]] = {}
_SYNC_S = 300.0
"""A bearer ID token's groups are written to the auth store at most this often per person and role."""
_on_change: Callable[[], None] = lambda: None  # noqa: E731


def configure(config: configparser.ConfigParser, on_change: Callable[[], None] | None = None) -> OidcConfig | None:
    """Read ``[mlops] oidc_*`` (None: single sign-on is off); ``on_change`` runs after a user's role changed."""
    global _config, _provider, _on_change
    _config = OidcConfig.from_config(config)
    _provider = Provider(_config.issuer) if _config else None
    _on_change = on_change or (lambda: None)
    return _config


def enabled() -> bool:
    return _config is not None


def _key() -> bytes:
    from flask import current_app

    secret = current_app.secret_key
    if not secret:
        raise OidcError("MLflow has no secret key: sessions cannot be signed")
    return hashlib.sha256(b"mlops.oidc:" + (secret if isinstance(secret, bytes) else secret.encode())).digest()


def _user_of(claims: Mapping[str, Any]) -> tuple[str, list[str]]:
    assert _config is not None
    name = claims.get(_config.username_claim)
    if not isinstance(name, str) or not USER_NAME.match(name):
        raise OidcError(f"the identity provider's {_config.username_claim!r} claim is not a usable login name")
    groups = claims.get(_config.groups_claim) or []
    return name, [g for g in (groups if isinstance(groups, list) else [groups]) if isinstance(g, str)]


def provision(name: str, groups: list[str]) -> str:
    """Make the MLflow user ``name`` hold the role its provider groups give (creating the user if new)."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth import store

    assert _config is not None
    role = _config.role_of(groups)
    if role is None:
        raise OidcError(f"user {name!r} is in no group that gives a platform role (groups: "
                        f"{', '.join(groups) or 'none'}; ask an admin to map one in oidc_roles)")
    known = _synced.get(name)
    if known and known[0] == role and time.monotonic() - known[1] < _SYNC_S:
        return role
    if not store.has_user(name):
        try:
            store.create_user(name, secrets.token_urlsafe(32) + "Aa1!")
            log.info("created user %r from the identity provider (role %s)", name, role)
        except MlflowException:
            if not store.has_user(name):  # not a second worker's create at the same time
                raise
    user = store.get_user(name)
    changed = user.is_admin != (role == ADMIN)
    if changed:
        store.update_user(name, is_admin=role == ADMIN)
    held = {r.name: r.id for r in store.list_user_roles(user.id)}
    want = None if role == ADMIN else role
    for old, role_id in held.items():
        if old in ROLES and old != want:
            store.unassign_role_from_user(user.id, role_id)
            changed = True
    if want and want not in held:
        store.assign_role_to_user(user.id, store.get_role_by_name(WORKSPACE, want).id)
        changed = True
    if changed:
        log.info("user %r now holds role %s (from the identity provider's groups)", name, role)
        _on_change()
    _synced[name] = (role, time.monotonic())
    return role


def _existing(name: str) -> str:
    """A session or token counts only while its user exists (an admin's `mlops users remove` ends them)."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth import store

    try:
        store.get_user(name)  # memoised per worker (mlops.mlflow_auth.StoreMemo)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise OidcError(f"user {name!r} no longer exists on the platform") from exc
    return name


def _bearer_user(token: str) -> str:
    if token.startswith(TOKEN_PREFIX):
        payload = unsign(_key(), "token", token.removeprefix(TOKEN_PREFIX))
        if payload is None:
            raise OidcError("the notebook token is not valid or has expired: get a new one at /oidc/token")
        return str(payload["sub"])
    assert _config is not None and _provider is not None
    name, groups = _user_of(_provider.verify(token, _config.client_id))
    provision(name, groups)
    return name


def authenticate_request():  # noqa: ANN201 - MLflow's Authorization or a Response
    """MLflow's ``authorization_function`` with single sign-on beside MLflow's own Basic logins."""
    from flask import redirect, request
    from mlflow.server import auth
    from werkzeug.datastructures import Authorization

    header = request.headers.get("Authorization", "")
    if _config is None or header.startswith("Basic "):
        return auth.authenticate_request_basic_auth()
    try:
        if header.startswith("Bearer "):
            return Authorization("bearer", {"username": _existing(_bearer_user(header[7:].strip()))})
        cookie = request.cookies.get(SESSION_COOKIE)
        session = unsign(_key(), "session", cookie) if cookie else None
        if session is not None:
            return Authorization("cookie", {"username": _existing(str(session["sub"]))})
    except OidcError as exc:
        log.warning("single sign-on refused a request (%s %s): %s", request.method, request.path, exc)
        return _unauthenticated(str(exc))
    if request.method == "GET" and request.path == "/" and "text/html" in request.headers.get("Accept", ""):
        return redirect(f"{PREFIX}login?{urlencode({'next': _local(request.full_path)})}")
    return _unauthenticated("log in: Basic, a bearer token (MLFLOW_TRACKING_TOKEN) or the browser login at /oidc/login")


def _unauthenticated(message: str):  # noqa: ANN202 - flask.Response
    from flask import jsonify

    response = jsonify({"error_code": "UNAUTHENTICATED", "message": message})
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Basic realm="mlflow", Bearer realm="mlflow"'
    return response


def _local(target: str | None) -> str:
    """Only a path on this site to return to after login (never another host)."""
    target = (target or "/").rstrip("?")
    parts = urlsplit(target)
    return target if target.startswith("/") and not target.startswith("//") and not parts.netloc else "/"


def _cookie_options(max_age: float) -> dict[str, Any]:
    return {"max_age": int(max_age), "secure": True, "httponly": True, "samesite": "Lax", "path": "/"}


def _with_session(response, name: str):  # noqa: ANN001, ANN202 - flask.Response
    """``response`` setting the signed session cookie of ``name`` (a provider login or a local password)."""
    assert _config is not None
    response.set_cookie(SESSION_COOKIE, sign(_key(), "session", {"sub": name}, _config.session_s),
                        **_cookie_options(_config.session_s))
    return response


def login():  # noqa: ANN201 - a redirect to the provider
    from flask import redirect, request
    from markupsafe import escape

    assert _config is not None and _provider is not None
    verifier, state, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    try:
        endpoint = _provider.meta()["authorization_endpoint"]
    except OidcError as exc:
        return _page(503, "Login is not available", f"{escape(str(exc))}. A local account logs in with its password "
                     f"at <a href=\"{PREFIX}password\">{PREFIX}password</a>.", html=True)
    query = urlencode({
        "response_type": "code", "client_id": _config.client_id, "redirect_uri": _config.redirect_uri,
        "scope": _config.scopes, "state": state, "nonce": nonce,
        "code_challenge": _b64(hashlib.sha256(verifier.encode()).digest()), "code_challenge_method": "S256"})
    response = redirect(f"{endpoint}?{query}")
    flow = sign(_key(), "flow", {"state": state, "nonce": nonce, "verifier": verifier,
                                 "next": _local(request.args.get("next"))}, _FLOW_S)
    # Sent only to the callback, which leaves it to expire: MLflow's ASGI security middleware keeps one header of
    # each name, so the callback's answer can set only one cookie (the session's).
    response.set_cookie(FLOW_COOKIE, flow, **{**_cookie_options(_FLOW_S), "path": _callback_path()})
    return response


def _callback_path() -> str:
    assert _config is not None
    return urlsplit(_config.redirect_uri).path or "/"


def callback():  # noqa: ANN201 - a redirect into the UI, or a page that says why not
    from flask import redirect, request

    assert _config is not None and _provider is not None
    flow = unsign(_key(), "flow", request.cookies.get(FLOW_COOKIE, ""))
    if request.args.get("error"):
        return _page(401, "Login refused", f"the identity provider said: {request.args['error'][:200]}")
    if flow is None or not hmac.compare_digest(flow["state"], request.args.get("state", "")):
        return _page(400, "Login expired", "this login was not started here or took too long: start it again")
    try:
        answer = requests.post(_provider.meta()["token_endpoint"], timeout=_provider.timeout,
                               auth=(_config.client_id, _config.client_secret),
                               data={"grant_type": "authorization_code", "code": request.args.get("code", ""),
                                     "redirect_uri": _config.redirect_uri, "code_verifier": flow["verifier"]})
        if answer.status_code != 200:
            raise OidcError(f"the identity provider refused the login's code (HTTP {answer.status_code})")
        claims = _provider.verify(answer.json().get("id_token", ""), _config.client_id, nonce=flow["nonce"])
        name, groups = _user_of(claims)
        role = provision(name, groups)
    except (OidcError, requests.RequestException, ValueError) as exc:
        log.warning("single sign-on: a login failed: %s", exc)
        return _page(403 if "no group" in str(exc) else 401, "Login failed", str(exc))
    log.info("single sign-on: %r logged in (role %s)", name, role)
    return _with_session(redirect(flow["next"]), name)


def password():  # noqa: ANN201 - a redirect into the UI, or the browser's password prompt
    """A local login in a browser while sign-on is on (the admin, a person the provider does not know): the
    browser asks for MLflow's own password (Basic, counted and limited like any failed login) once, and the
    same session cookie as a provider login carries it from then on."""
    from flask import redirect, request
    from mlflow.server import auth
    from werkzeug.datastructures import Authorization

    assert _config is not None
    checked = auth.authenticate_request_basic_auth()
    if not isinstance(checked, Authorization):  # MLflow's 401 and Basic challenge: the browser's prompt
        return checked
    return _with_session(redirect(_local(request.args.get("next"))), checked.username)


def logout():  # noqa: ANN201
    """End the platform's session, then the provider's (RP-initiated logout, where the provider offers it)."""
    from flask import redirect

    assert _config is not None and _provider is not None
    target = f"{PREFIX}logged-out"
    try:
        end = _provider.meta().get("end_session_endpoint")
    except OidcError:
        end = None
    if end:
        back = _config.redirect_uri.removesuffix("callback") + "logged-out"
        target = f"{end}?{urlencode({'client_id': _config.client_id, 'post_logout_redirect_uri': back})}"
    response = redirect(target)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def logged_out():  # noqa: ANN201
    return _page(200, "Logged out", "You are logged out of the platform. <a href=\"/oidc/login\">Log in again</a>.",
                 html=True)


def token():  # noqa: ANN201 - JSON for scripts, a page for people
    """A notebook token for the person of this browser session (``MLFLOW_TRACKING_TOKEN``)."""
    from flask import jsonify, request

    assert _config is not None
    session = unsign(_key(), "session", request.cookies.get(SESSION_COOKIE, ""))
    if session is None:
        return _page(401, "Not logged in", "Log in first: <a href=\"/oidc/login?next=/oidc/token\">log in</a>.",
                     html=True)
    value = TOKEN_PREFIX + sign(_key(), "token", {"sub": session["sub"]}, _config.token_s)
    hours = _config.token_s / 3600
    if "application/json" in request.headers.get("Accept", ""):
        return jsonify({"user": session["sub"], "token": value, "expires_in": int(_config.token_s)})
    return _page(200, "Your notebook token",
                 f"For <b>{session['sub']}</b>, valid {hours:g} hours. In a notebook or shell:"
                 f"<pre>export MLFLOW_TRACKING_TOKEN={value}</pre>"
                 "(with MLFLOW_TRACKING_URI and the platform's CA as in .mlops/local.env; no username or password).",
                 html=True)


def _page(status: int, title: str, text: str, html: bool = False):  # noqa: ANN202 - flask.Response
    from flask import make_response
    from markupsafe import escape

    body = text if html else str(escape(text))
    response = make_response(f"<!doctype html><title>{escape(title)}</title><h1>{escape(title)}</h1><p>{body}</p>",
                             status)
    response.headers["Cache-Control"] = "no-store"
    response.mimetype = "text/html"
    return response


ROUTES = {"login": login, "password": password, "callback": callback, "logout": logout, "logged-out": logged_out,
          "token": token}


def answer(path: str):  # noqa: ANN201 - flask.Response or None
    """The platform's own answer for /oidc/... (before MLflow's login check), None for other paths."""
    if _config is None or not path.startswith(PREFIX):
        return None
    view = ROUTES.get(path.removeprefix(PREFIX))
    if view is None:
        return _page(404, "Not found", "no such login page")
    return view()


def main(argv: list[str] | None = None) -> int:
    """``python -m mlops.oidc check-roles`` (mapping on stdin): what Ansible runs before writing it."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if args != ["check-roles"]:
        print("usage: python -m mlops.oidc check-roles < 'group=role, ...'", file=sys.stderr)
        return 2
    try:
        roles = parse_roles(sys.stdin.read())
    except OidcError as exc:
        print(f"mlops.oidc: {exc}", file=sys.stderr)
        return 2
    if not roles:
        print("mlops.oidc: no group is mapped to a role", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
