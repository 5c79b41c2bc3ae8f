"""`mlops bench auth`: what per-user auth (and the nginx front with TLS) costs, side by side in one run.

Two comparisons, each interleaved (targets take turns in ``rounds`` slices, after a warm-up), with the same
light client (:mod:`mlops_cli.loadgen`, ``concurrency`` keep-alive connections) and a fixed number of calls:

- **tracking**: ``log_metric`` calls (``POST /api/2.0/mlflow/runs/log-metric``) through nginx as the person of
  ``local.env`` (TLS, MLflow's auth app with the platform's rules) vs the same MLflow server without the auth app
  on loopback: ``mlflow server`` started by the bench with the platform's backend store, workers and gunicorn
  options (platform.json's ``mlflow_server``, written by ``make up``), stopped after. Where the platform serves
  MLflow's ASGI app (``mlflow_worker_class``), the baseline is MLflow's own ASGI server (uvicorn) instead: the
  platform's worker class needs the auth app. Each call logs a distinct
  step; afterwards each run's metric history is read back, so an acknowledged call that was not stored counts
  as lost.
- **serving**: ``/serve/predict`` through nginx as the same person (TLS, nginx asks MLflow whether the login
  may predict) vs the platform's own serving process on its loopback port (no nginx, no auth): the same
  process, variant and monitoring, so the ratio is what the front and the auth check cost.

``summary.tracking_ratio`` and ``summary.serving_ratio`` are calls/s through nginx over calls/s on loopback;
the target (issue #13) is at least 0.8 each, with nothing lost or failed. The bench runs on the MLflow host of a
``make up`` deployment (it starts a server on the platform's store) as a person who may create experiments and
predict (the inventory's first person, ``local.env``). Its runs go to ``<experiment>-bench-auth``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from mlops.settings import get_settings
from mlops.tracking import load_client_env
from mlops.workers import MLFLOW_WORKER as ASGI_WORKER
from mlops_cli.bench_serve import _free_port, _png_bodies, _stop, _wait_up
from mlops_cli.loadgen import LoadResult, post
from training.cpu import detect_capabilities

log = logging.getLogger(__name__)

TARGET_RATIO = 0.8
"""Issue #13: auth must not halve the platform; each ratio at least this."""
METRIC_KEY = "bench_auth"


class BenchAuthError(RuntimeError):
    """The bench cannot run here (what is missing, in one line)."""


@dataclass
class BenchAuthConfig:
    requests: int = 2000
    """Tracking calls per target (fixed count)."""
    serve_requests: int = 2000
    """Predictions per target (fixed count)."""
    concurrency: int = 8
    rounds: int = 5
    """Each target gets its calls in this many slices, targets taking turns (interleaved)."""
    warmup: int = 40
    tracking: bool = True
    serving: bool = True
    asgi: bool = False
    """Also time MLflow's ASGI app (uvicorn, no auth) on loopback beside the baseline: what the platform's choice
    of worker class (``mlflow_worker_class``) is worth."""
    start_timeout_s: float = 300.0


@dataclass
class _Side:
    name: str
    url: str
    auth: tuple[str, str] | None
    verify: str | bool
    load: LoadResult

    def drive(self, bodies: list[bytes], concurrency: int) -> None:
        self.load.add(post(self.url, bodies, len(bodies), concurrency, auth=self.auth, verify=self.verify))

    def result(self) -> dict[str, Any]:
        return {"target": self.name, "url": self.url, **self.load.figures(), "calls_per_s": round(self.load.rate, 2)}


def _interleave(sides: list[_Side], bodies: Callable[[_Side, int, int], list[bytes]], total: int,
                cfg: BenchAuthConfig, progress: Callable[[str], None]) -> None:
    """``total`` calls per side in ``cfg.rounds`` slices, sides taking turns; ``bodies(side, start, count)``."""
    per_round = max(1, total // cfg.rounds)
    for r in range(cfg.rounds):
        for side in sides:
            side.drive(bodies(side, r * per_round, per_round), cfg.concurrency)
        progress(f"round {r + 1}/{cfg.rounds}: " + ", ".join(
            f"{s.name.split(' (')[0]} {s.load.rate:.0f}/s" for s in sides))


def _platform() -> dict[str, Any]:
    path = get_settings().platform_file
    if not path.is_file():
        raise BenchAuthError(f"{path} not found: run the bench where `make up` provisioned the platform")
    return json.loads(path.read_text())


def _ratio(through: dict[str, Any], loopback: dict[str, Any]) -> float:
    return round(through["calls_per_s"] / loopback["calls_per_s"], 3) if loopback["calls_per_s"] else float("nan")


# --- tracking ------------------------------------------------------------------------------------

def _baseline_server(spec: dict[str, Any], port: int, tmp: Path,  # type: ignore[type-arg]
                     asgi: bool = False) -> subprocess.Popen:
    """The platform's MLflow server without the auth app, on loopback ``port``: its Flask app under the platform's
    gunicorn options, or MLflow's ASGI app under uvicorn (``asgi``, or where the platform's worker serves the ASGI
    app: that worker builds it from the auth app only)."""
    asgi = asgi or _serves_asgi(spec)
    tmp = tmp / ("asgi" if asgi else "baseline")
    metrics = tmp / "metrics"
    metrics.mkdir(parents=True)
    env = {**os.environ, "PGPASSFILE": spec["password_file"], "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
           "PATH": f"{os.path.dirname(sys.executable)}:{os.environ.get('PATH', '')}"}
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_AUTH_CONFIG_PATH"):
        env.pop(name, None)  # the baseline runs without the auth app and needs no login
    argv = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(spec["workers"]), *([] if asgi else ["--gunicorn-opts", spec["gunicorn_opts"]]),
            "--expose-prometheus", str(metrics), "--backend-store-uri", spec["backend_store_uri"],
            "--default-artifact-root", (tmp / "artifacts").as_uri()]
    with open(tmp / "mlflow.log", "w") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _serves_asgi(spec: dict[str, Any]) -> bool:
    """Whether the platform's MLflow serves its ASGI app (``mlflow_worker_class``)."""
    return ASGI_WORKER in spec["gunicorn_opts"]


def _experiment_id(client: httpx.Client, name: str) -> str:
    got = client.get("/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": name})
    if got.status_code == 200:
        return got.json()["experiment"]["experiment_id"]
    created = client.post("/api/2.0/mlflow/experiments/create", json={"name": name})
    if created.status_code != 200:
        raise BenchAuthError(f"cannot create experiment {name!r}: "
                             f"HTTP {created.status_code} {created.text[:200]}")
    return created.json()["experiment_id"]


def _new_run(client: httpx.Client, experiment_id: str, run_name: str) -> str:
    got = client.post("/api/2.0/mlflow/runs/create", json={
        "experiment_id": experiment_id, "run_name": run_name, "start_time": int(time.time() * 1000),
        "tags": [{"key": "stage", "value": "bench"}]})
    if got.status_code != 200:
        raise BenchAuthError(f"cannot create a run: HTTP {got.status_code} {got.text[:200]}")
    return got.json()["run"]["info"]["run_id"]


def _stored_steps(client: httpx.Client, run_id: str) -> set[int]:
    """Steps of the bench metric stored for ``run_id`` (every page of its history)."""
    steps: set[int] = set()
    token = None
    while True:
        params = {"run_id": run_id, "metric_key": METRIC_KEY, "max_results": 25000,
                  **({"page_token": token} if token else {})}
        got = client.get("/api/2.0/mlflow/metrics/get-history", params=params, timeout=120)
        got.raise_for_status()
        body = got.json()
        steps |= {int(m.get("step", 0)) for m in body.get("metrics", [])}
        token = body.get("next_page_token")
        if not token:
            return steps


def bench_tracking(cfg: BenchAuthConfig, spec: dict[str, Any] | None,
                   progress: Callable[[str], None]) -> dict[str, Any]:
    if not spec:
        raise BenchAuthError("platform.json has no mlflow_server entry: run the bench on the MLflow host of a "
                             "`make up` deployment (re-run `make up` if it predates the entry)")
    if not os.access(spec["password_file"], os.R_OK):
        raise BenchAuthError(f"cannot read the backend store's password file {spec['password_file']}: run the "
                             "bench as root on the MLflow host")
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if not tracking_uri.startswith("https://") or not user or not password:
        raise BenchAuthError("the login file has no https MLFLOW_TRACKING_URI with a user and password "
                             "(MLOPS_CLIENT_ENV, default .mlops/local.env)")
    verify: str | bool = os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or True
    platform = httpx.Client(base_url=tracking_uri, auth=(user, password), verify=verify, timeout=60)
    experiment = get_settings().experiment_name + "-bench-auth"
    experiment_id = _experiment_id(platform, experiment)
    asgi = cfg.asgi and not _serves_asgi(spec)  # else the baseline is the ASGI app already
    with tempfile.TemporaryDirectory(prefix="mlops-bench-auth-") as tmp:
        servers: dict[str, subprocess.Popen] = {}  # type: ignore[type-arg]
        bases: dict[str, str] = {}
        try:
            for kind in ("loopback", "asgi") if asgi else ("loopback",):
                servers[kind] = _baseline_server(spec, port := _free_port(), Path(tmp), asgi=kind == "asgi")
                bases[kind] = f"http://127.0.0.1:{port}"
            for kind, server in servers.items():
                _wait_up(f"{bases[kind]}/health", server, cfg.start_timeout_s, f"the {kind} MLflow server")
            clients = {"nginx": platform,
                       **{kind: httpx.Client(base_url=base, timeout=60) for kind, base in bases.items()}}
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            runs = {"nginx": _new_run(platform, experiment_id, f"bench auth {stamp}: through nginx as {user}"),
                    "loopback": _new_run(clients["loopback"], experiment_id, f"bench auth {stamp}: loopback, no auth")}
            sides = {"nginx": _Side(f"log_metric through nginx (TLS, auth as {user})",
                                    f"{tracking_uri}/api/2.0/mlflow/runs/log-metric", (user, password), verify,
                                    LoadResult()),
                     "loopback": _Side("log_metric on loopback (no auth)",
                                       f"{bases['loopback']}/api/2.0/mlflow/runs/log-metric", None, True, LoadResult())}
            if asgi:
                runs["asgi"] = _new_run(clients["asgi"], experiment_id, f"bench auth {stamp}: MLflow's ASGI app")
                sides["asgi"] = _Side("MLflow's ASGI app on loopback (uvicorn, no auth)",
                                      f"{bases['asgi']}/api/2.0/mlflow/runs/log-metric", None, True, LoadResult())
            run_of = {sides[kind].name: runs[kind] for kind in sides}
            now = int(time.time() * 1000)

            def bodies(side: _Side, start: int, count: int) -> list[bytes]:
                return [json.dumps({"run_id": run_of[side.name], "key": METRIC_KEY, "value": float(step),
                                    "timestamp": now + step, "step": step}).encode()
                        for step in range(start, start + count)]

            for side in sides.values():  # warm-up: its own steps (negative), counted nowhere
                post(side.url, bodies(side, -cfg.warmup, cfg.warmup), cfg.warmup, cfg.concurrency,
                     auth=side.auth, verify=side.verify)
            _interleave(list(sides.values()), bodies, cfg.requests, cfg, progress)
            results = []
            for kind, side in sides.items():
                row = side.result()
                stored = {s for s in _stored_steps(clients[kind], run_of[side.name]) if s >= 0}
                row["stored"] = len(stored)
                row["lost"] = max(0, row["ok"] - len(stored))
                row["run_id"] = run_of[side.name]
                results.append(row)
        finally:
            for server in servers.values():
                _stop(server)
    out = {"experiment": experiment, "results": results, "ratio": _ratio(results[0], results[1]),
           "baseline": {"workers": spec["workers"], "gunicorn_opts": spec["gunicorn_opts"],
                        "app": "asgi" if _serves_asgi(spec) else "flask"}}
    if asgi:  # MLflow's ASGI app over the baseline (its Flask app under the platform's gunicorn options)
        out["asgi_ratio"] = _ratio(results[2], results[1])
    return out


# --- serving -------------------------------------------------------------------------------------

def bench_serving(cfg: BenchAuthConfig, platform: dict[str, Any], progress: Callable[[str], None]) -> dict[str, Any]:
    from serving.client import endpoint

    probe = next((s["probe"]["url"] for s in platform.get("services", []) if s["name"] == "serving"), None)
    if probe is None:
        raise BenchAuthError("platform.json lists no serving process on this host")
    loopback = probe.removesuffix("/health")
    ep = endpoint()
    if ep.auth is None:
        raise BenchAuthError("the login file has no MLFLOW_TRACKING_USERNAME/PASSWORD: serving needs a login")
    got = httpx.get(f"{ep.url}/model", auth=ep.auth, verify=ep.verify, timeout=30)
    if got.status_code != 200:
        raise BenchAuthError(f"{ep.url}/model answered HTTP {got.status_code} for {ep.auth[0]!r}: "
                             f"{got.text[:200]} (the login must be allowed to predict; a champion must be served)")
    model = got.json()
    bodies_all = _png_bodies(int(model["image_size"]))
    through = _Side(f"/serve/predict through nginx (TLS, auth as {ep.auth[0]})", f"{ep.url}/predict", ep.auth,
                    ep.verify, LoadResult())
    direct = _Side("serving process on loopback (no nginx, no auth)", f"{loopback}/predict", None, True,
                   LoadResult())
    for side in (through, direct):  # warm-up, not counted
        post(side.url, [bodies_all[i % len(bodies_all)] for i in range(cfg.warmup)], cfg.warmup, cfg.concurrency,
             auth=side.auth, verify=side.verify)
    _interleave([through, direct], lambda _side, start, count: [bodies_all[(start + i) % len(bodies_all)]
                                                                 for i in range(count)],
                cfg.serve_requests, cfg, progress)
    results = [through.result(), direct.result()]
    return {"model": model.get("name"), "version": model.get("version"), "variant": model.get("variant"),
            "results": results, "ratio": _ratio(results[0], results[1])}


# --- the bench -----------------------------------------------------------------------------------

def bench_auth(cfg: BenchAuthConfig, progress: Callable[[str], None] = lambda _line: None) -> dict[str, Any]:
    load_client_env()
    platform = _platform()
    out: dict[str, Any] = {"config": asdict(cfg)}
    summary: dict[str, Any] = {"target_ratio": TARGET_RATIO, "cpu_isa": detect_capabilities().isa,
                               "cores": len(os.sched_getaffinity(0)),
                               "user": os.environ.get("MLFLOW_TRACKING_USERNAME"),
                               "host": urlsplit(os.environ.get("MLFLOW_TRACKING_URI", "")).hostname}
    if cfg.tracking:
        progress(f"tracking: {cfg.requests} log_metric calls per target, {cfg.rounds} interleaved rounds")
        out["tracking"] = bench_tracking(cfg, platform.get("mlflow_server"), progress)
        summary["tracking_ratio"] = out["tracking"]["ratio"]
        if "asgi_ratio" in out["tracking"]:
            summary["asgi_ratio"] = out["tracking"]["asgi_ratio"]
    if cfg.serving:
        progress(f"serving: {cfg.serve_requests} predictions per target, {cfg.rounds} interleaved rounds")
        out["serving"] = bench_serving(cfg, platform, progress)
        summary["serving_ratio"] = out["serving"]["ratio"]
    rows = [r for part in ("tracking", "serving") for r in out.get(part, {}).get("results", [])]
    summary["failed"] = sum(r["failed"] for r in rows)
    summary["lost"] = sum(r.get("lost", 0) for r in rows)
    ratios = [summary[k] for k in ("tracking_ratio", "serving_ratio") if k in summary]
    summary["meets_target"] = bool(ratios) and all(r >= TARGET_RATIO for r in ratios) and not (
        summary["failed"] or summary["lost"])
    out["summary"] = summary
    return out


def render(result: dict[str, Any]) -> str:
    lines = [f"{'target':<58} {'calls/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'failed':>6} {'lost':>5}"]
    for part in ("tracking", "serving"):
        for r in result.get(part, {}).get("results", []):
            lost = r.get("lost")
            lines.append(f"{r['target']:<58} {r['calls_per_s']:>8.1f} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} "
                         f"{r['failed']:>6} {'' if lost is None else lost:>5}")
    s = result["summary"]
    figures = [f"{k}={s[k]}" for k in ("tracking_ratio", "serving_ratio") if k in s]
    lines.append(f"summary: {', '.join(figures)} (target >= {s['target_ratio']}), failed={s['failed']}, "
                 f"lost={s['lost']}: {'meets' if s['meets_target'] else 'MISSES'} the target "
                 f"({s['cores']} cores, {s['cpu_isa']})")
    if "asgi_ratio" in s:
        lines.append("MLflow's ASGI app on loopback over the platform's server without auth: "
                     f"asgi_ratio={s['asgi_ratio']}")
    return "\n".join(lines)
