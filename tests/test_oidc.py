"""Single sign-on's pieces, offline: role mapping, the platform's signed values, and ID-token checks with a key
made here (tests/platform/test_oidc.py logs in through a real provider, in a real browser)."""

from __future__ import annotations

import base64
import json
import time

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mlops import oidc

ISSUER = "https://id.example.test"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _token(key: rsa.RSAPrivateKey, claims: dict, alg: str = "RS256", kid: str = "k1") -> str:
    head = _b64(json.dumps({"alg": alg, "kid": kid}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{_b64(signature)}"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def provider(key: rsa.RSAPrivateKey) -> oidc.Provider:
    p = oidc.Provider(ISSUER)
    p._meta = {"issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks"}
    p._keys, p._keys_at = {"k1": key.public_key()}, time.monotonic()
    return p


def _claims(**extra: object) -> dict:
    return {"iss": ISSUER, "aud": "mlops", "sub": "u1", "preferred_username": "alice", "exp": time.time() + 300,
            "groups": ["ml-team"], **extra}


def test_an_id_token_of_the_provider_for_this_platform_is_accepted(provider, key) -> None:  # noqa: ANN001
    claims = provider.verify(_token(key, _claims(nonce="n1")), "mlops", nonce="n1")
    assert claims["preferred_username"] == "alice" and claims["groups"] == ["ml-team"]


@pytest.mark.parametrize(("change", "words"), [
    ({"aud": "another-app"}, "not issued by this platform's identity provider"),
    ({"iss": "https://evil.example.test"}, "not issued by this platform's identity provider"),
    ({"exp": time.time() - 3600}, "has expired"),
    ({"nonce": "other"}, "nonce does not match"),
])
def test_a_token_for_someone_else_or_too_old_is_refused(provider, key, change, words) -> None:  # noqa: ANN001
    with pytest.raises(oidc.OidcError, match=words):
        provider.verify(_token(key, {**_claims(nonce="n1"), **change}), "mlops", nonce="n1")


def test_a_forged_or_unsigned_token_is_refused(provider, key) -> None:  # noqa: ANN001
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(oidc.OidcError, match="signature is not the identity provider's"):
        provider.verify(_token(other, _claims()), "mlops")
    head, body, _ = _token(key, _claims()).split(".")
    with pytest.raises(oidc.OidcError, match="RS256 only"):
        provider.verify(f"{_b64(json.dumps({'alg': 'none'}).encode())}.{body}.", "mlops")
    with pytest.raises(oidc.OidcError, match="not a signed token"):
        provider.verify("not-a-jwt", "mlops")
    tampered = _b64(json.dumps(_claims(preferred_username="admin")).encode())
    with pytest.raises(oidc.OidcError, match="signature"):
        provider.verify(f"{head}.{tampered}.{_token(key, _claims()).split('.')[2]}", "mlops")


def test_signed_values_hold_only_for_their_kind_key_and_time() -> None:
    value = oidc.sign(b"k" * 32, "session", {"sub": "alice"}, 60)
    assert oidc.unsign(b"k" * 32, "session", value)["sub"] == "alice"
    assert oidc.unsign(b"k" * 32, "token", value) is None  # a session is not a notebook token
    assert oidc.unsign(b"x" * 32, "session", value) is None
    body, _, mac = value.partition(".")
    forged = base64.urlsafe_b64encode(json.dumps({"sub": "admin", "kind": "session", "exp": 9e9}).encode()).decode()
    assert oidc.unsign(b"k" * 32, "session", f"{forged}.{mac}") is None
    assert oidc.unsign(b"k" * 32, "session", oidc.sign(b"k" * 32, "session", {"sub": "a"}, -1)) is None
    assert oidc.unsign(b"k" * 32, "session", "garbage") is None


def test_groups_map_to_one_role_and_bad_mappings_are_named() -> None:
    roles = oidc.parse_roles("ml-team=data-scientist, readers=viewer,\nplatform-admins=admin")
    config = oidc.OidcConfig(ISSUER, "mlops", "s", "https://x/oidc/callback", roles)
    assert config.role_of(["readers", "ml-team"]) == "data-scientist"
    assert config.role_of(["readers", "platform-admins"]) == "admin"
    assert config.role_of(["readers"]) == "viewer"
    assert config.role_of(["strangers"]) is None
    with pytest.raises(oidc.OidcError, match="'ml-team=wizard'"):
        oidc.parse_roles("ml-team=wizard")
    with pytest.raises(oidc.OidcError, match="GROUP=ROLE"):
        oidc.parse_roles("ml-team")


def test_after_login_only_a_path_on_this_site() -> None:
    assert oidc._local("/#/experiments/1") == "/#/experiments/1"
    assert oidc._local("/oidc/token?") == "/oidc/token"
    for target in ("https://evil.example.test/", "//evil.example.test/x", "javascript:alert(1)", None, ""):
        assert oidc._local(target) == "/"


@pytest.fixture
def sso(monkeypatch):  # noqa: ANN001, ANN201 - a Flask app with single sign-on configured
    from flask import Flask

    config = oidc.OidcConfig(ISSUER, "mlops", "s", "https://mlops.example.test/oidc/callback",
                             {"ml-team": "data-scientist"})
    monkeypatch.setattr(oidc, "_config", config)
    monkeypatch.setattr(oidc, "_provider", oidc.Provider(ISSUER))
    monkeypatch.setattr(oidc, "_existing", lambda name: name)
    app = Flask(__name__)
    app.secret_key = "k" * 32
    return app


def _authenticate(app, path: str = "/api/2.0/mlflow/experiments/search", **kwargs):  # noqa: ANN001, ANN202
    with app.test_request_context(path, **kwargs):
        return oidc.authenticate_request()


def test_sessions_and_notebook_tokens_name_the_person_and_nothing_else_passes(sso) -> None:  # noqa: ANN001
    with sso.test_request_context("/"):
        key = oidc._key()
    session = oidc.sign(key, "session", {"sub": "alice"}, 60)
    token = oidc.TOKEN_PREFIX + oidc.sign(key, "token", {"sub": "alice"}, 60)
    assert _authenticate(sso, headers={"Cookie": f"{oidc.SESSION_COOKIE}={session}"}).username == "alice"
    assert _authenticate(sso, headers={"Authorization": f"Bearer {token}"}).username == "alice"
    # A session is no bearer token, a token no session; an API call without either is 401 (never a redirect).
    for headers in ({"Authorization": f"Bearer {oidc.TOKEN_PREFIX}{session}"},
                    {"Cookie": f"{oidc.SESSION_COOKIE}={token.removeprefix(oidc.TOKEN_PREFIX)}"},
                    {"Accept": "text/html"}):
        answer = _authenticate(sso, headers=headers)
        assert answer.status_code == 401 and "Basic" in answer.headers["WWW-Authenticate"], headers
    # Only a browser opening the UI is sent to the login, and it comes back to where it was.
    answer = _authenticate(sso, "/?x=1", headers={"Accept": "text/html"})
    assert answer.status_code == 302 and answer.headers["Location"].startswith("/oidc/login?next=")


def test_a_local_password_login_in_the_browser_gets_the_same_session(sso, monkeypatch) -> None:  # noqa: ANN001
    from flask import Response
    from mlflow.server import auth
    from werkzeug.datastructures import Authorization

    challenge = Response("no", 401, headers={"WWW-Authenticate": 'Basic realm="mlflow"'})
    monkeypatch.setattr(auth, "authenticate_request_basic_auth", lambda: challenge)
    with sso.test_request_context("/oidc/password?next=/%23/models"):
        assert oidc.answer("/oidc/password") is challenge  # no or a wrong password: MLflow's prompt, nothing set
    monkeypatch.setattr(auth, "authenticate_request_basic_auth", lambda: Authorization("basic", {"username": "admin"}))
    for target, back in (("/%23/models", "/#/models"), ("https://evil.example.test/", "/")):
        with sso.test_request_context(f"/oidc/password?next={target}"):
            answer = oidc.answer("/oidc/password")
            cookie = answer.headers["Set-Cookie"]
        assert answer.status_code == 302 and answer.headers["Location"] == back
        assert "Secure" in cookie and "HttpOnly" in cookie
        session = cookie.split(";")[0].split("=", 1)[1]
        assert _authenticate(sso, headers={"Cookie": f"{oidc.SESSION_COOKIE}={session}"}).username == "admin"


def test_the_login_flow_cookie_goes_to_the_callback_only(sso, monkeypatch) -> None:  # noqa: ANN001
    """One cookie per answer (MLflow's ASGI security middleware keeps one header of each name): the login's flow
    cookie is sent back only to the callback, which then sets the session cookie and nothing else."""
    monkeypatch.setattr(oidc._provider, "meta", lambda: {"authorization_endpoint": f"{ISSUER}/auth"})
    with sso.test_request_context("/oidc/login?next=/x"):
        answer = oidc.login()
    cookies = answer.headers.getlist("Set-Cookie")
    assert len(cookies) == 1 and cookies[0].startswith(f"{oidc.FLOW_COOKIE}="), cookies
    assert "Path=/oidc/callback" in cookies[0] and "Secure" in cookies[0] and "HttpOnly" in cookies[0]
