"""The test OpenID provider (tests/oidc, panva's oidc-provider) does what the OIDC login tests rely on.

Driven over plain HTTP with requests, the way a browser would: the authorization request with PKCE, the login
form of oidc-provider's development interactions (parsed from its HTML), the redirect back to the client with
`code` and `state` (not followed: nothing listens at the redirect URI), then the token endpoint, and the ID
token's claims, its signature checked against the provider's JWKS.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import secrets
import sys
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def _load_helper() -> Any:
    """tests/oidc_provider.py (the tests are no package; pytest imports them with --import-mode=importlib)."""
    if "oidc_provider" not in sys.modules:
        spec = importlib.util.spec_from_file_location("oidc_provider", Path(__file__).with_name("oidc_provider.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules["oidc_provider"] = module
        spec.loader.exec_module(module)
    return sys.modules["oidc_provider"]


oidc_provider = _load_helper()

REDIRECT_URI = "https://127.0.0.1:18443/oidc/callback"  # never contacted
LOGGED_OUT_URI = "https://127.0.0.1:18443/oidc/logged-out"  # neither
BASIC = {"client_id": "mlflow", "client_secret": "basic-secret", "redirect_uris": [REDIRECT_URI],
         "post_logout_redirect_uris": [LOGGED_OUT_URI]}
POST = {"client_id": "mlflow-post", "client_secret": "post-secret", "redirect_uris": [REDIRECT_URI],
        "token_endpoint_auth_method": "client_secret_post"}
ACCOUNTS = {
    "alice": {"groups": ["ml-team"], "email": "alice@example.test", "name": "Alice"},
    "bob": {"groups": [], "email": "bob@example.test", "name": "Bob"},
}
SCOPE = "openid profile email groups"


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory, free_port: Callable[[], int]) -> Iterator[Any]:
    with oidc_provider.start_provider(free_port(), [BASIC, POST], ACCOUNTS,
                                      tmp_path_factory.mktemp("oidc")) as running:
        yield running


@pytest.fixture(scope="module")
def discovery(provider: Any) -> dict[str, Any]:
    response = requests.get(provider.discovery_url, timeout=10)
    response.raise_for_status()
    return response.json()


class _Forms(HTMLParser):
    """The forms of a page: action, method and the inputs' names and values."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action") or "", "method": (a.get("method") or "get").lower(),
                               "fields": {}})
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1]["fields"][a["name"]] = a.get("value") or ""


def _forms(html: str) -> list[dict[str, Any]]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _authorize(session: requests.Session, discovery: dict[str, Any], client: dict[str, Any],
               login: str) -> tuple[requests.Response, dict[str, str]]:
    """Start an authorization request and submit `login` on the login form.

    Returns the last response (the redirect to the client, or the page the provider stopped at) and the
    request's state, nonce and code_verifier. Redirects are followed by hand, so the one to the client's
    redirect URI is seen, not followed.
    """
    verifier = _b64url(secrets.token_bytes(32))
    request = {"state": secrets.token_urlsafe(16), "nonce": secrets.token_urlsafe(16), "code_verifier": verifier}
    query = {
        "response_type": "code", "client_id": client["client_id"], "redirect_uri": REDIRECT_URI, "scope": SCOPE,
        "state": request["state"], "nonce": request["nonce"], "code_challenge_method": "S256",
        "code_challenge": _b64url(hashlib.sha256(verifier.encode()).digest()),
    }
    response = session.get(f"{discovery['authorization_endpoint']}?{urlencode(query)}", allow_redirects=False,
                           timeout=10)
    for _ in range(10):
        if response.is_redirect:
            location = urljoin(response.url, response.headers["Location"])
            if location.startswith(REDIRECT_URI):
                return response, request
            response = session.get(location, allow_redirects=False, timeout=10)
            continue
        forms = _forms(response.text) if response.status_code == 200 else []
        if not forms:
            return response, request
        form = forms[0]
        fields = dict(form["fields"])
        if fields.get("prompt") == "login":
            if "Unknown login name" in response.text:
                return response, request  # the login was refused: the form again, with the error
            fields.update(login=login, password="any password")
        assert form["method"] == "post"
        response = session.post(urljoin(response.url, form["action"]), data=fields, allow_redirects=False,
                                timeout=10)
    raise AssertionError(f"no end to the interaction: {response.status_code} {response.url}")


def _callback(response: requests.Response) -> dict[str, str]:
    location = response.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?"), location
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def _verify_jwt(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """The payload of an RS256 JWT whose signature verifies with a key of `jwks` (cryptography raises if not)."""
    header_b64, payload_b64, signature_b64 = token.split(".")
    header = json.loads(_b64url_decode(header_b64))
    assert header["alg"] == "RS256"
    (jwk,) = [key for key in jwks["keys"] if key["kid"] == header["kid"]]
    public_key = rsa.RSAPublicNumbers(int.from_bytes(_b64url_decode(jwk["e"])),
                                      int.from_bytes(_b64url_decode(jwk["n"]))).public_key()
    public_key.verify(_b64url_decode(signature_b64), f"{header_b64}.{payload_b64}".encode(), padding.PKCS1v15(),
                      hashes.SHA256())
    return json.loads(_b64url_decode(payload_b64))


def test_discovery(provider: Any, discovery: dict[str, Any]) -> None:
    assert discovery["issuer"] == provider.issuer
    for endpoint in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint"):
        assert discovery[endpoint].startswith(provider.issuer + "/")
    assert "code" in discovery["response_types_supported"]
    assert discovery["code_challenge_methods_supported"] == ["S256"]
    assert {"client_secret_basic", "client_secret_post"} <= set(discovery["token_endpoint_auth_methods_supported"])
    assert "RS256" in discovery["id_token_signing_alg_values_supported"]
    assert set(SCOPE.split()) <= set(discovery["scopes_supported"])
    assert {"preferred_username", "email", "name", "groups"} <= set(discovery["claims_supported"])


def test_code_flow_alice(provider: Any, discovery: dict[str, Any]) -> None:
    session = requests.Session()
    response, request = _authorize(session, discovery, BASIC, "alice")
    callback = _callback(response)
    assert callback["state"] == request["state"]
    assert callback["iss"] == provider.issuer  # RFC 9207: the authorization response names its issuer
    token = requests.post(discovery["token_endpoint"], auth=(BASIC["client_id"], BASIC["client_secret"]), data={
        "grant_type": "authorization_code", "code": callback["code"], "redirect_uri": REDIRECT_URI,
        "code_verifier": request["code_verifier"]}, timeout=10)
    assert token.status_code == 200, token.text
    tokens = token.json()
    assert tokens["token_type"].lower() == "bearer"
    assert tokens["expires_in"] == 3600

    jwks = requests.get(discovery["jwks_uri"], timeout=10).json()
    claims = _verify_jwt(tokens["id_token"], jwks)
    assert claims["iss"] == provider.issuer
    assert claims["aud"] == BASIC["client_id"]
    assert claims["sub"] == "alice"
    assert claims["preferred_username"] == "alice"
    assert claims["groups"] == ["ml-team"]
    assert claims["email"] == "alice@example.test"
    assert claims["name"] == "Alice"
    assert claims["nonce"] == request["nonce"]
    assert claims["exp"] - claims["iat"] == 3600

    userinfo = requests.get(discovery["userinfo_endpoint"], timeout=10,
                            headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert userinfo.status_code == 200, userinfo.text
    assert userinfo.json()["groups"] == ["ml-team"]

    # A code is good once.
    again = requests.post(discovery["token_endpoint"], auth=(BASIC["client_id"], BASIC["client_secret"]), data={
        "grant_type": "authorization_code", "code": callback["code"], "redirect_uri": REDIRECT_URI,
        "code_verifier": request["code_verifier"]}, timeout=10)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_client_secret_post_and_pkce(discovery: dict[str, Any]) -> None:
    response, request = _authorize(requests.Session(), discovery, POST, "bob")
    code = _callback(response)["code"]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            "client_id": POST["client_id"], "client_secret": POST["client_secret"]}
    wrong_verifier = requests.post(discovery["token_endpoint"], timeout=10,
                                   data={**form, "code_verifier": _b64url(secrets.token_bytes(32))})
    assert wrong_verifier.status_code == 400
    assert wrong_verifier.json()["error"] == "invalid_grant"

    response, request = _authorize(requests.Session(), discovery, POST, "bob")
    form["code"] = _callback(response)["code"]
    token = requests.post(discovery["token_endpoint"], timeout=10,
                          data={**form, "code_verifier": request["code_verifier"]})
    assert token.status_code == 200, token.text
    claims = json.loads(_b64url_decode(token.json()["id_token"].split(".")[1]))
    assert claims["aud"] == POST["client_id"]
    assert claims["preferred_username"] == "bob"
    assert claims["groups"] == []


def test_pkce_is_required(discovery: dict[str, Any]) -> None:
    query = {"response_type": "code", "client_id": BASIC["client_id"], "redirect_uri": REDIRECT_URI,
             "scope": SCOPE, "state": "s", "nonce": "n"}
    response = requests.get(f"{discovery['authorization_endpoint']}?{urlencode(query)}", allow_redirects=False,
                            timeout=10)
    callback = _callback(response)
    assert callback["error"] == "invalid_request"
    assert "code" not in callback


def test_unknown_login_gets_no_code(provider: Any, discovery: dict[str, Any]) -> None:
    session = requests.Session()
    response, _ = _authorize(session, discovery, BASIC, "mallory")
    assert response.status_code == 200
    assert "Unknown login name" in response.text
    assert urlsplit(response.url).path.startswith("/interaction/")
    (form,) = _forms(response.text)
    assert form["fields"]["prompt"] == "login"
    assert "refused: unknown login name \"mallory\"" in provider.log.read_text()

    # The same interaction goes on with a known name.
    fields = {**form["fields"], "login": "alice", "password": "x"}
    response = session.post(urljoin(response.url, form["action"]), data=fields, allow_redirects=False, timeout=10)
    while not response.headers["Location"].startswith(REDIRECT_URI):
        response = session.get(urljoin(response.url, response.headers["Location"]), allow_redirects=False,
                               timeout=10)
    assert "code" in _callback(response)


def test_provider_session_then_logout(discovery: dict[str, Any]) -> None:
    """The provider remembers who logged in (its own session cookie, 1 hour): a second authorization request
    from the same browser gets a code without the login form, until the browser logs out at the provider
    (RP-initiated logout: its end_session_endpoint and the confirmation form there)."""
    session = requests.Session()
    response, _ = _authorize(session, discovery, BASIC, "alice")
    assert "code" in _callback(response)
    query = {"response_type": "code", "client_id": BASIC["client_id"], "redirect_uri": REDIRECT_URI,
             "scope": SCOPE, "state": "again", "nonce": "n", "code_challenge_method": "S256",
             "code_challenge": _b64url(hashlib.sha256(b"v" * 43).digest())}
    authorize = f"{discovery['authorization_endpoint']}?{urlencode(query)}"
    again = _callback(session.get(authorize, allow_redirects=False, timeout=10))
    assert again["state"] == "again" and "code" in again

    page = session.get(discovery["end_session_endpoint"], timeout=10, params={
        "client_id": BASIC["client_id"], "post_logout_redirect_uri": LOGGED_OUT_URI, "state": "bye"})
    assert page.status_code == 200
    (form,) = _forms(page.text)
    assert set(form["fields"]) == {"xsrf"}
    response = session.post(urljoin(page.url, form["action"]), data={**form["fields"], "logout": "yes"},
                            allow_redirects=False, timeout=10)
    assert response.headers["Location"] == f"{LOGGED_OUT_URI}?state=bye"

    response = session.get(authorize, allow_redirects=False, timeout=10)
    assert urlsplit(response.headers["Location"]).path.startswith("/interaction/")  # the login form again


def test_consent_page_when_not_automatic(tmp_path: Path, free_port: Callable[[], int]) -> None:
    with oidc_provider.start_provider(free_port(), [BASIC], ACCOUNTS, tmp_path, auto_consent=False) as running:
        assert oct((tmp_path / "oidc-provider.json").stat().st_mode & 0o777) == "0o600"
        discovery = requests.get(running.discovery_url, timeout=10).json()
        session = requests.Session()
        pages: list[str] = []
        original_post = session.post

        def post(url: str, **kwargs: Any) -> requests.Response:
            pages.append(kwargs["data"]["prompt"])
            return original_post(url, **kwargs)

        session.post = post  # type: ignore[method-assign]
        response, _ = _authorize(session, discovery, BASIC, "alice")
        assert pages == ["login", "consent"]
        assert "code" in _callback(response)
    assert running.process.returncode == 0  # stopped by SIGTERM, exited cleanly
