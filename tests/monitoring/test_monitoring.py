"""Monitoring end to end on a private instance: every target scraped, job results in Prometheus,
alerts delivered to a webhook, the operations console in a real browser, nothing listening beyond
loopback (see conftest.py for the short periods)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from mlops_cli import jobs

pytestmark = [pytest.mark.integration, pytest.mark.monitoring]

JOBS = {"prometheus", "alertmanager", "mlflow", "nginx", "postgres", "serving", "node"}


def test_every_scrape_target_is_up(prometheus):
    deadline = time.monotonic() + 120
    while True:
        targets = prometheus.get("/api/v1/targets").json()["data"]["activeTargets"]
        down = [(t["labels"]["job"], t["scrapeUrl"], t["lastError"]) for t in targets if t["health"] != "up"]
        if not down or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert {t["labels"]["job"] for t in targets} == JOBS
    assert not down, down
    # Each exporter reports what it watches, not only that it answers.
    for expr in ("nginx_up == 1", "pg_up == 1", "mlops_serving_monitoring_buffered_rows >= 0",
                 "node_filesystem_avail_bytes > 0"):
        assert prometheus.query(expr), expr


def test_prometheus_is_behind_the_platform_login(platform, prometheus):
    anonymous = httpx.get(f"{prometheus.base}/api/v1/query", params={"query": "up"}, verify=platform.ca_cert,
                          timeout=10)
    assert anonymous.status_code == 401
    ui = prometheus.get("/")
    # Prometheus redirects to its UI under the published prefix (its --web.external-url).
    assert ui.status_code in (200, 302), ui.status_code
    if ui.status_code == 302:
        assert ui.headers["location"].startswith("/prometheus/") or "/prometheus/" in ui.headers["location"]


def test_mlflow_metrics_count_every_gunicorn_worker(platform):
    """MLflow's /metrics sums its workers (two by default): 40 requests are 40, whichever worker took them."""
    url = f"http://127.0.0.1:{platform.ports['mlflow_port']}"
    scraper = ("svc-prometheus", platform.password("svc-prometheus"))  # /metrics is for roles that may monitor
    person = platform.env["MLFLOW_TRACKING_USERNAME"]

    def total() -> float:
        answer = httpx.get(f"{url}/metrics", auth=scraper, timeout=10)
        assert answer.status_code == 200, answer.text[:300]
        return sum(float(line.rsplit(" ", 1)[1]) for line in answer.text.splitlines()
                   if line.startswith("mlflow_http_request_total{") and 'method="GET"' in line)

    before = total()
    with httpx.Client(timeout=10, auth=(person, platform.password(person))) as client:
        for _ in range(40):
            client.get(f"{url}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": "Default"})
    # Other GETs may land meanwhile (the UI, nginx's health probe is a POST): at least the 40, not far above.
    assert 40 <= total() - before <= 50


def test_scheduled_job_results_reach_prometheus(platform, prometheus):
    info = jobs.load_platform(platform.state_dir / "platform.json")
    result = jobs.run_job(info, "gc", timeout=600)
    assert result.returncode == 0, result.output
    found = prometheus.wait_query('mlops_job_last_exit_code{timer="gc"} == 0', 60, "gc's outcome")
    assert found[0]["metric"]["job"] == "node"
    assert prometheus.query('time() - mlops_job_last_success_timestamp_seconds{timer="gc"} < 300')
    periods = {r["metric"]["timer"]: float(r["value"][1]) for r in prometheus.query("mlops_job_period_seconds")}
    # Read from each job's schedule: daily gc and backup, the test's every-minute retrain tick, the
    # promotion gate's every minute (its default).
    assert periods["gc"] == 86400 and periods["backup"] == 86400 and periods["retrain"] == 60, periods
    assert periods["gate"] == 60, periods
    assert prometheus.query("mlops_tls_certificate_not_after_timestamp_seconds - time() > 14 * 86400")


def _instance_listeners(platform) -> list[tuple[str, str, str]]:
    """(address, port, process) of every listening TCP socket of this instance's processes (the ones under its
    supervisord, found through each process's parents)."""
    supervisor = str(platform.path("config") / "supervisord.conf")

    def ours(pid: int) -> bool:
        for _ in range(10):
            try:
                if supervisor in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").replace("\0", " "):
                    return True
                pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                return False
            if pid <= 1:
                return False
        return False

    found = []
    for line in subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout.splitlines():
        local = line.split()[3]
        address, _, port = local.rpartition(":")
        for name, pid in re.findall(r'\("([^"]+)",pid=(\d+)', line):
            if ours(int(pid)):
                found.append((address, port, name))
                break
    return found


def test_nothing_but_nginx_listens_beyond_loopback(platform):
    listeners = _instance_listeners(platform)
    names = {name for _, _, name in listeners}
    # The monitoring processes are among them (found through their supervisord), all on loopback.
    assert {"prometheus", "prometheus-aler", "prometheus-node", "prometheus-ngin", "prometheus-post"} <= {
        n[:15] for n in names}, names
    public = [(a, p, n) for a, p, n in listeners if not (a.startswith("127.") or a in {"[::1]", "::1"})]
    nginx_ports = {str(platform.ports["nginx_https_port"]), str(platform.ports["nginx_http_port"])}
    assert all(n == "nginx" and p in nginx_ports for _, p, n in public), public


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium is not installed (make test-deps)")
def test_operations_console_in_a_browser(platform, prometheus, artifacts_dir, chromium_page):
    # Something to show: the request rate needs two scrapes of the serving counters.
    prometheus.wait_query("mlops:serving_request_rate:5m", 60, "the serving request rate")
    errors: list[str] = []
    with chromium_page("admin", platform.admin_password, height=1000) as page:
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        answer = page.goto(f"{prometheus.base}/consoles/platform.html", timeout=60_000)
        assert answer is not None and answer.status == 200
        # Graphs are drawn by the console library's JavaScript (rickshaw) into SVG.
        page.locator("svg").first.wait_for(timeout=60_000)
        page.wait_for_timeout(3000)
        page.screenshot(path=str(artifacts_dir / "monitoring-console.png"), full_page=True)
        text = page.inner_text("body")
    assert not errors, errors
    assert "error executing template" not in text.lower()
    for heading in ("Request rate", "Error ratio", "Latency", "Drift", "Jobs", "Disk", "Memory"):
        assert heading.lower() in text.lower(), heading


def test_serving_errors_raise_the_alert(platform, prometheus, alert_receiver):
    """No champion is registered here: /serve/predict answers 503 (no model loaded) until the alert is delivered."""
    stop = threading.Event()
    statuses: list[int] = []

    def load() -> None:
        with httpx.Client(base_url=platform.https, auth=("admin", platform.admin_password),
                          verify=platform.ca_cert, timeout=10) as client:
            while not stop.is_set():
                statuses.append(client.post("/serve/predict", json={"images": []}).status_code)
                time.sleep(0.1)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    try:
        alert = alert_receiver.wait_for("ServingHighErrorRatio", timeout=180)
    finally:
        stop.set()
        thread.join(timeout=15)
    assert statuses and set(statuses) == {503}, set(statuses)
    assert alert["labels"]["severity"] == "page"
    assert "5xx" in alert["annotations"]["summary"]
    # No champion yet is not a failed load: nothing pages for it.
    assert prometheus.query('mlops_serving_degraded{job="serving"} == 0')
    assert not alert_receiver.alerts("ServingChampionLoadFailed")


def test_stopped_retrain_timer_raises_the_dead_mans_alert(platform, prometheus, alert_receiver):
    # The every-minute tick (no champion here: it finds nothing to check and succeeds).
    prometheus.wait_query('mlops_job_last_success_timestamp_seconds{timer="retrain"}', 180, "a successful tick")
    assert not alert_receiver.alerts("RetrainTickMissed")
    info = jobs.load_platform(platform.state_dir / "platform.json")
    if info["service_manager"] == "systemd":
        subprocess.run(["systemctl", "stop", f"{platform.instance}-retrain.timer"], check=True)
    else:
        # What stopping the timer is on a host without systemd: its cron entry gone.
        entry = Path("/etc/cron.d") / f"{platform.instance}-retrain"
        entry.unlink()
        os.utime("/etc/cron.d")  # cron rereads the directory when its mtime changes
    alert = alert_receiver.wait_for("RetrainTickMissed", timeout=240)
    assert alert["labels"]["timer"] == "retrain"
