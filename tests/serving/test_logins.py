"""serving.logins: MLflow decides who may predict through nginx; each worker remembers a yes (unit: MLflow's
answers come from a stand-in transport; tests/platform/test_access.py checks the real chain through nginx)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from mlops.access import CHECK_PATH, LOGIN_CHECK_HEADER
from serving.logins import LoginCheck, LoginMiddleware

REPO = Path(__file__).resolve().parents[2]
GOOD, BAD = "Basic Z29vZDpwdw==", "Basic YmFkOnB3"


class FakeMlflow:
    def __init__(self) -> None:
        self.asked: list[tuple[str, str | None, str | None]] = []
        self.down = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        auth = request.headers.get("authorization")
        # The client's address goes both ways (MLflow on loopback, or an nginx on the way).
        assert request.headers.get("x-forwarded-for") == request.headers.get("x-real-ip")
        self.asked.append((request.url.path, auth, request.headers.get("x-real-ip")))
        if auth == GOOD:
            return httpx.Response(204)
        if auth is None or auth == BAD:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="mlflow"'}, text="no")
        return httpx.Response(403, json={"error_code": "PERMISSION_DENIED", "message": "may not predict"})


def _check(mlflow: FakeMlflow, fresh_s: float = 10, stale_s: float = 60) -> LoginCheck:
    return LoginCheck("http://mlflow.test:5000/", True, fresh_s, stale_s, transport=httpx.MockTransport(mlflow))


def test_a_yes_is_kept_while_fresh_a_no_never() -> None:
    mlflow = FakeMlflow()
    check = _check(mlflow)

    async def go() -> None:
        assert await check.refusal("predict", GOOD, "10.0.0.9", now=0) is None
        assert await check.refusal("predict", GOOD, "10.0.0.9", now=5) is None  # remembered
        assert len(mlflow.asked) == 1 and mlflow.asked[0] == (CHECK_PATH + "predict", GOOD, "10.0.0.9")
        assert await check.refusal("predict", GOOD, None, now=10) is None  # fresh no more: asked again
        assert len(mlflow.asked) == 2
        for _ in range(2):  # a refusal is passed back as MLflow gave it, and asked again each time
            refused = await check.refusal("predict", BAD, None, now=11)
            assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")
        refused = await check.refusal("predict", "Basic dmlld2VyOnB3", None, now=11)
        assert refused.status_code == 403 and b"PERMISSION_DENIED" in refused.body
        assert (await check.refusal("predict", None, None, now=11)).status_code == 401
        assert len(mlflow.asked) == 6
        assert (await check.refusal("monitor", GOOD, None, now=11)).status_code == 403  # not serving's to check
        await check.close()

    asyncio.run(go())


def test_while_mlflow_is_down_a_recent_yes_counts_and_nobody_new_gets_in() -> None:
    mlflow = FakeMlflow()
    check = _check(mlflow, fresh_s=10, stale_s=60)

    async def go() -> None:
        assert await check.refusal("predict", GOOD, None, now=0) is None
        mlflow.down = True
        assert await check.refusal("predict", GOOD, None, now=30) is None  # stale, but MLflow cannot answer
        assert (await check.refusal("predict", GOOD, None, now=61)).status_code == 503  # too old
        assert (await check.refusal("predict", "Basic bmV3OnB3", None, now=30)).status_code == 503
        await check.close()

    asyncio.run(go())


def test_the_middleware_checks_only_what_nginx_marked() -> None:
    mlflow = FakeMlflow()
    inner = Starlette(routes=[Route("/predict", lambda _r: PlainTextResponse("ok"), methods=["GET", "POST"])])
    client = TestClient(LoginMiddleware(inner, _check(mlflow)))
    assert client.get("/predict").text == "ok" and not mlflow.asked  # loopback callers: as before
    marked = {LOGIN_CHECK_HEADER: "predict"}
    assert client.get("/predict", headers={**marked, "Authorization": GOOD}).text == "ok"
    refused = client.post("/predict", headers={**marked, "Authorization": BAD}, content=b"{}")
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")
    assert client.get("/predict", headers=marked).status_code == 401


@pytest.mark.parametrize("template", ["nginx/templates/mlops.conf.template", "nginx/serving-host.conf.template"])
def test_nginx_marks_every_serve_request_with_the_header_serving_reads(template: str) -> None:
    """The MLflow host's nginx and a serving host's: /serve/ always carries nginx's own check header."""
    text = (REPO / template).read_text()
    serve = re.search(r"location /serve/ \{(.*?)\n    \}", text, re.S).group(1)
    assert f"proxy_set_header {LOGIN_CHECK_HEADER} predict;" in serve
    assert "proxy_set_header X-Real-IP $remote_addr;" in serve
