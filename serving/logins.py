"""Who may call serving through the platform's front: MLflow decides, each worker remembers a yes.

nginx forwards ``/serve/`` requests with the client's login and :data:`mlops.access.LOGIN_CHECK_HEADER` set to
``predict`` (its own value, never the client's). For those requests, :class:`LoginMiddleware` asks MLflow
(``GET <MLFLOW_TRACKING_URI>/mlops-auth/check/predict`` with that login and the client's address, the platform's
auth app: :mod:`mlops.mlflow_auth`) and keeps a yes for ``fresh_s`` in this worker, under an HMAC of the
``Authorization`` header with a key of this process (never the header itself). A prediction then costs a
dictionary lookup where it cost a request to MLflow through nginx's ``auth_request`` (a third of serving's
throughput on a 2-core host: ``mlops bench auth``).

- A refusal (401, 403, 429) reaches the client as MLflow gave it (status, JSON body, ``WWW-Authenticate``,
  ``Retry-After``) and is never kept: a corrected or new password works at once. MLflow counts and limits
  failed logins per client address (the ``X-Real-IP`` nginx set, passed on; also as ``X-Forwarded-For``, which
  the MLflow host's nginx believes from the private network: ``MLOPS_REAL_IP_FROM``).
- A yes outlives a removed user or a changed role by at most ``fresh_s`` (plus MLflow's own cache period).
- While MLflow is unreachable, a yes up to ``stale_s`` old still counts; anyone else gets 503.
- Requests without the header are not checked, as before: they come from this host's loopback (the platform's
  probes, Prometheus, benchmarks), which nginx, the only way in from the network, never forwards as such.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import time
from typing import Any

import httpx
from starlette.responses import Response

from mlops.access import CHECK_PATH, LOGIN_CHECK_HEADER
from mlops.memo import BoundedTable

log = logging.getLogger(__name__)

CHECKED_CAPABILITIES = ("predict",)
_PASSED_BACK = ("www-authenticate", "retry-after", "content-type")


def _json(status: int, code: str, message: str) -> Response:
    return Response(json.dumps({"error_code": code, "message": message}), status_code=status,
                    media_type="application/json")


class LoginCheck:
    """MLflow's answer to "may this login <capability>?", a yes remembered for ``fresh_s`` (see the module)."""

    def __init__(self, tracking_uri: str, verify: str | bool, fresh_s: float, stale_s: float,
                 max_entries: int = 10_000, timeout_s: float = 10.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.url = tracking_uri.rstrip("/") + CHECK_PATH
        self.verify, self.fresh_s, self.stale_s = verify, fresh_s, max(stale_s, fresh_s)
        self.timeout_s = timeout_s
        self._key = os.urandom(32)
        self._allowed: BoundedTable[bytes, float] = BoundedTable(max_entries)
        self._client: httpx.AsyncClient | None = None
        self._transport = transport

    def _digest(self, capability: str, authorization: str) -> bytes:
        return hmac.new(self._key, f"{capability}\0{authorization}".encode("utf-8", "surrogateescape"),
                        hashlib.sha256).digest()

    async def _ask(self, capability: str, authorization: str | None, client: str | None) -> httpx.Response:
        if self._client is None:
            self._client = httpx.AsyncClient(verify=self.verify, timeout=self.timeout_s, transport=self._transport)
        # The client's address both ways: X-Real-IP for MLflow on loopback (it believes its trusted
        # proxies), X-Forwarded-For for an nginx on the way (a serving host reaches MLflow through the
        # MLflow host's nginx, which takes the client's address from it when the peer is private).
        headers = {**({"Authorization": authorization} if authorization else {}),
                   **({"X-Real-IP": client, "X-Forwarded-For": client} if client else {})}
        return await self._client.get(self.url + capability, headers=headers)

    async def refusal(self, capability: str, authorization: str | None, client: str | None,
                      now: float | None = None) -> Response | None:
        """None when the login may ``capability``, else the response to send instead."""
        if capability not in CHECKED_CAPABILITIES:
            return _json(403, "PERMISSION_DENIED", f"serving does not check {capability[:40]!r} logins")
        now = time.monotonic() if now is None else now
        key = self._digest(capability, authorization) if authorization else None
        at = self._allowed.get(key) if key is not None else None
        if at is not None and now - at < self.fresh_s:
            return None
        try:
            answer = await self._ask(capability, authorization, client)
        except httpx.HTTPError as exc:
            answer, reason = None, f"{type(exc).__name__}"
        else:
            reason = f"HTTP {answer.status_code}"
        if answer is not None and answer.status_code == 204:
            if key is not None:
                self._allowed.put(key, now)
            return None
        if answer is not None and answer.status_code < 500:
            headers = {k: v for k, v in answer.headers.items() if k.lower() in _PASSED_BACK}
            return Response(answer.content, status_code=answer.status_code, headers=headers)
        if at is not None and now - at < self.stale_s:
            log.warning("MLflow cannot check logins (%s): a login verified %.0f s ago may %s", reason, now - at,
                        capability)
            return None
        log.warning("MLflow cannot check logins (%s): a %s request was refused", reason, capability)
        return _json(503, "TEMPORARILY_UNAVAILABLE", "logins cannot be checked right now: try again shortly")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class LoginMiddleware:
    """ASGI middleware: requests that carry :data:`LOGIN_CHECK_HEADER` pass only with MLflow's yes."""

    def __init__(self, app: Any, check: LoginCheck) -> None:  # noqa: ANN401 - any ASGI app
        self.app, self.check = app, check
        self._header = LOGIN_CHECK_HEADER.lower().encode("latin-1")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:  # noqa: ANN401 - ASGI
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            capability = headers.get(self._header)
            if capability is not None:
                authorization, client = headers.get(b"authorization"), headers.get(b"x-real-ip")
                refused = await self.check.refusal(capability.decode("latin-1"),
                                                   authorization.decode("latin-1") if authorization else None,
                                                   client.decode("latin-1") if client else None)
                if refused is not None:
                    await refused(scope, receive, send)
                    return
        await self.app(scope, receive, send)
