"""Single sign-on end to end: a real OpenID provider on loopback (npm `oidc-provider`, tests/oidc), the platform
`make up` provisioned to trust it (tests/conftest.py), a person logging in to the MLflow UI in a real browser
through nginx, then working from a "notebook" with the token the platform gave them."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests
from typer.testing import CliRunner

pytestmark = pytest.mark.integration

TESTS = Path(__file__).resolve().parents[1]
ACCOUNTS = {
    "alice": {"groups": ["ml-team"], "email": "alice@example.test", "name": "Alice"},
    "rita": {"groups": ["ml-readers"], "email": "rita@example.test", "name": "Rita"},
    "mallory": {"groups": ["strangers"], "email": "mallory@example.test", "name": "Mallory"},
}


@pytest.fixture(scope="module")
def provider(platform, oidc_test_client, tmp_path_factory):  # noqa: ANN001, ANN201
    module = sys.modules.get("oidc_provider")
    if module is None:
        spec = importlib.util.spec_from_file_location("oidc_provider", TESTS / "oidc_provider.py")
        module = sys.modules["oidc_provider"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    port, client = oidc_test_client
    with module.start_provider(port, [client], ACCOUNTS, tmp_path_factory.mktemp("oidc")) as p:
        yield p


def _browser_login(page, platform, who: str) -> None:  # noqa: ANN001
    """Open the UI: MLflow sends the browser to the provider, which asks who it is."""
    page.goto(f"{platform.https}/", wait_until="domcontentloaded")
    page.wait_for_selector("input[name=login]", timeout=30_000)
    page.fill("input[name=login]", who)
    page.fill("input[name=password]", "any")
    page.click("button[type=submit]")
    page.wait_for_load_state("domcontentloaded")
    if page.locator("button[type=submit]").count() and "consent" in page.content().lower():
        page.click("button[type=submit]")
        page.wait_for_load_state("domcontentloaded")


def _notebook(platform, token: str, code: str) -> subprocess.CompletedProcess[str]:  # noqa: ANN001
    """``code`` in a fresh Python with only the tracking URI, the CA and the token (no user, no password)."""
    env = {"PATH": os.environ["PATH"], "HOME": str(platform.root), "MLFLOW_TRACKING_URI": platform.https,
           "MLFLOW_TRACKING_SERVER_CERT_PATH": platform.env["MLFLOW_TRACKING_SERVER_CERT_PATH"],
           "MLFLOW_TRACKING_TOKEN": token}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          check=False)


def test_a_person_logs_in_through_the_provider_and_works_from_a_notebook(platform, provider, chromium_page) -> None:  # noqa: ANN001
    with chromium_page(None, None) as page:
        _browser_login(page, platform, "alice")
        page.wait_for_url(f"{platform.https}/**", timeout=30_000)
        page.wait_for_selector("text=Experiments", timeout=60_000)  # the MLflow UI, as alice
        me = page.request.get(f"{platform.https}/api/2.0/mlflow/users/current").json()
        assert me["user"]["username"] == "alice" and not me["user"]["is_admin"], me
        answer = page.request.get(f"{platform.https}/oidc/token", headers={"Accept": "application/json"})
        assert answer.status == 200 and answer.json()["user"] == "alice"
        token = answer.json()["token"]
        # Logging out ends the provider's session too; then the UI sends the browser back to its login.
        # The provider's confirmation page fully loaded before the click, and the click tied to the
        # navigation it starts (one CI run under load clicked and no POST ever reached the provider).
        page.goto(f"{platform.https}/oidc/logout", wait_until="load")
        with page.expect_navigation(url=f"{platform.https}/oidc/logged-out**", timeout=60_000):
            page.click("button[name=logout]")
        page.wait_for_selector("text=Logged out", timeout=30_000)
        page.goto(f"{platform.https}/", wait_until="domcontentloaded")
        page.wait_for_selector("input[name=login]", timeout=30_000)

    experiment = f"sso-{uuid.uuid4().hex[:6]}"
    done = _notebook(platform, token, "import mlflow\n"
                     f"mlflow.set_experiment({experiment!r})\n"
                     "with mlflow.start_run() as run:\n    mlflow.log_metric('accuracy', 0.9)\n"
                     "print(run.info.run_id)\n")
    assert done.returncode == 0, done.stderr[-2000:]
    run = requests.get(f"{platform.https}/api/2.0/mlflow/runs/get", params={"run_id": done.stdout.split()[-1]},
                       auth=("admin", platform.admin_password), verify=platform.ca_cert, timeout=30).json()["run"]
    assert run["info"]["user_id"] == "alice", run["info"]
    assert [m["value"] for m in run["data"]["metrics"] if m["key"] == "accuracy"] == [0.9]
    # Her role is the data scientist's: she creates models, but the promotion aliases stay the gate's.
    bearer = {"Authorization": f"Bearer {token}"}
    model = f"sso-{uuid.uuid4().hex[:6]}"
    created = requests.post(f"{platform.https}/api/2.0/mlflow/registered-models/create", headers=bearer,
                            json={"name": model}, verify=platform.ca_cert, timeout=30)
    assert created.status_code == 200, created.text
    refused = requests.post(f"{platform.https}/api/2.0/mlflow/registered-models/alias", headers=bearer,
                            json={"name": model, "alias": "champion", "version": "1"}, verify=platform.ca_cert,
                            timeout=30)
    assert refused.status_code == 403 and "model-gate" in refused.text, refused.text
    for bad in (token[:-4] + "AAAA", "mlops_not-a-token", "eyJhbGciOiJub25lIn0.e30."):
        answer = requests.get(f"{platform.https}/api/2.0/mlflow/experiments/search?max_results=1",
                              headers={"Authorization": f"Bearer {bad}"}, verify=platform.ca_cert, timeout=30)
        assert answer.status_code == 401, (bad[:12], answer.status_code)


def test_the_providers_groups_give_the_role_and_no_group_no_entry(platform, provider, chromium_page) -> None:  # noqa: ANN001
    with chromium_page(None, None) as page:
        _browser_login(page, platform, "rita")
        page.wait_for_url(f"{platform.https}/**", timeout=30_000)
        token = page.request.get(f"{platform.https}/oidc/token", headers={"Accept": "application/json"}).json()["token"]
    done = _notebook(platform, token, "import mlflow\nmlflow.MlflowClient().create_experiment('rita-was-here')\n")
    assert done.returncode != 0 and "PERMISSION_DENIED" in done.stderr, done.stderr[-2000:]
    from mlops_cli.cli import app

    listed = CliRunner().invoke(app, ["users", "list"], env={"MLOPS_STATE_DIR": str(platform.state_dir)})
    rows = {line.split()[0]: line.split()[1:] for line in listed.output.splitlines()[1:]}
    assert rows["rita"] == ["viewer", "no"], listed.output

    with chromium_page(None, None) as page:
        _browser_login(page, platform, "mallory")
        page.wait_for_selector("text=Login failed", timeout=30_000)
        assert "no group that gives a platform role" in page.content()
    assert requests.get(f"{platform.https}/oidc/token", verify=platform.ca_cert, timeout=30).status_code == 401
