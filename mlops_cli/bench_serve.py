"""`mlops bench serve`: our endpoint per inference variant vs `mlflow models serve`, same model, same load.

For each variant a private ``mlops serve`` (one worker, ``MLOPS_SERVE_VARIANT=<variant>``) is started
on a loopback port and driven *through the platform's nginx* when it is the one nginx proxies to,
otherwise directly; the platform's own serving endpoint (``/serve`` through nginx, TLS and basic
auth) is measured too when it serves the same version. ``mlflow models serve`` (what a user would
otherwise pick) runs the same registered version with ``--env-manager local`` on loopback, driven
directly (no TLS: the comparison favours it). Every target gets the same fixed number of batch-1
requests from ``concurrency`` client threads, after a warm-up.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import numpy as np
from PIL import Image

from mlops.settings import get_settings
from mlops.tracking import load_client_env
from training.data import synthetic_arrays, to_tensor

log = logging.getLogger(__name__)


@dataclass
class BenchServeConfig:
    requests: int = 400
    concurrency: int = 8
    variants: list[str] = field(default_factory=lambda: ["int8", "compiled", "fp32"])
    model: str | None = None
    mlflow_serve: bool = True
    warmup: int = 20
    start_timeout_s: float = 900.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _drive(name: str, url: str, bodies: list[bytes], cfg: BenchServeConfig, client_kwargs: dict[str, Any],
           headers: dict[str, str]) -> dict[str, Any]:
    """Send ``cfg.requests`` POSTs with ``cfg.concurrency`` threads; latency per request, wall-clock throughput."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    counter = iter(range(cfg.requests))

    def worker() -> None:
        with httpx.Client(timeout=120, **client_kwargs) as http:
            for i in range(cfg.warmup // cfg.concurrency + 1):
                http.post(url, content=bodies[i % len(bodies)], headers=headers)
            barrier.wait()
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                start = time.perf_counter()
                try:
                    r = http.post(url, content=bodies[i % len(bodies)], headers=headers)
                    ok = r.status_code == 200
                    err = f"HTTP {r.status_code}: {r.text[:120]}"
                except httpx.HTTPError as exc:
                    ok, err = False, repr(exc)
                elapsed = time.perf_counter() - start
                with lock:
                    (latencies.append(elapsed) if ok else failures.append(err))

    barrier = threading.Barrier(cfg.concurrency + 1)
    threads = [threading.Thread(target=worker) for _ in range(cfg.concurrency)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat = np.asarray(latencies) * 1000.0 if latencies else np.asarray([np.nan])
    result = {"target": name, "url": url, "requests": cfg.requests, "concurrency": cfg.concurrency,
              "ok": len(latencies), "failed": len(failures), "seconds": round(wall, 3),
              "throughput_rps": round(len(latencies) / wall, 2), "p50_ms": round(float(np.percentile(lat, 50)), 2),
              "p99_ms": round(float(np.percentile(lat, 99)), 2), "first_errors": failures[:3]}
    log.info("%s: %.1f req/s, p50 %.1f ms, p99 %.1f ms, %d failed", name, result["throughput_rps"],
             result["p50_ms"], result["p99_ms"], len(failures))
    return result


def _wait_up(url: str, proc: subprocess.Popen, timeout: float, what: str) -> None:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    raise RuntimeError(f"{what} not ready after {timeout:.0f} s")


def _stop(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def bench_serve(cfg: BenchServeConfig) -> dict[str, Any]:
    from mlflow import MlflowClient

    from mlops.registry import CHAMPION, version_by_alias
    from serving.client import endpoint

    load_client_env()
    s = get_settings()
    name = cfg.model or s.model_name
    client = MlflowClient()
    mv = version_by_alias(client, name, CHAMPION)
    if mv is None:
        raise RuntimeError(f"{name!r} has no champion: promote a version first (`mlops promote`)")
    from training.artifacts import load_version

    size = load_version(client, mv).image_size
    arrays, _, _ = synthetic_arrays(32, size, 123)
    ours: list[bytes] = []
    for a in arrays:
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG")
        ours.append(b'{"image": "%s"}' % base64.b64encode(buf.getvalue()))
    theirs = [b'{"inputs": %s}' % str(to_tensor(a[None]).numpy().round(5).tolist()).encode() for a in arrays]
    json_h = {"Content-Type": "application/json"}
    results: list[dict[str, Any]] = []
    threads = max(1, len(os.sched_getaffinity(0)))

    # The platform's endpoint through nginx (TLS + auth), if it serves this version.
    try:
        ep = endpoint()
        info = httpx.get(f"{ep.url}/model", auth=ep.auth, verify=ep.verify, timeout=10).json()
        if str(info.get("version")) == str(mv.version):
            r = _drive(f"platform /serve via nginx ({info['variant']})", f"{ep.url}/predict", ours, cfg,
                       {"auth": ep.auth, "verify": ep.verify}, json_h)
            r["variant"] = info["variant"]
            results.append(r)
        else:
            log.info("Platform endpoint serves %s, not version %s: skipped", info.get("version"), mv.version)
    except Exception as exc:  # noqa: BLE001 - the platform endpoint is optional in a bench
        log.info("Platform endpoint not measured: %s", exc)

    for variant in cfg.variants:
        port = _free_port()
        env = {**os.environ, "MLOPS_SERVE_VARIANT": variant, "MLOPS_SERVE_COMPILE": str(variant != "fp32").lower(),
               "MLOPS_MODEL_NAME": name, "MLOPS_SERVE_MONITORING": "false", "MLOPS_SERVE_THREADS": str(threads)}
        proc = subprocess.Popen([sys.executable, "-m", "mlops_cli", "serve", "--port", str(port), "--workers", "1"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_up(f"{base}/health", proc, cfg.start_timeout_s, f"mlops serve ({variant})")
            got = httpx.get(f"{base}/model", timeout=10).json()
            r = _drive(f"mlops serve {got['variant']} (loopback)", f"{base}/predict", ours, cfg, {}, json_h)
            r["variant"] = got["variant"]
            r["variant_requested"] = variant
            r["variant_checks"] = got.get("variant_checks")
            results.append(r)
        except RuntimeError as exc:
            results.append({"target": f"mlops serve {variant}", "error": str(exc), "failed": 0})
        finally:
            _stop(proc)

    if cfg.mlflow_serve:
        port = _free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{name}/{mv.version}",
             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "--workers", "1"],
            # It execs `uvicorn` by name: the venv's bin must be on PATH.
            env={**os.environ, "OMP_NUM_THREADS": str(threads),
                 "PATH": f"{os.path.dirname(sys.executable)}:{os.environ.get('PATH', '')}"}, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_up(f"{base}/ping", proc, cfg.start_timeout_s, "mlflow models serve")
            r = _drive("mlflow models serve (loopback)", f"{base}/invocations", theirs, cfg, {}, json_h)
            r["variant"] = "mlflow-pyfunc"
            results.append(r)
        finally:
            _stop(proc)

    ours_ok = [r for r in results if "throughput_rps" in r and r.get("variant") != "mlflow-pyfunc"]
    mlflow_r = next((r for r in results if r.get("variant") == "mlflow-pyfunc"), None)
    summary: dict[str, Any] = {"model": name, "version": str(mv.version),
                               "failed_requests": int(sum(r.get("failed", 0) for r in results))}
    if ours_ok:
        best = max(ours_ok, key=lambda r: r["throughput_rps"])
        summary["best_target"] = best["target"]
        if mlflow_r and mlflow_r["throughput_rps"] > 0:
            summary["throughput_ratio_vs_mlflow_serve"] = round(best["throughput_rps"] / mlflow_r["throughput_rps"], 2)
            summary["p99_ratio_vs_mlflow_serve"] = round(best["p99_ms"] / mlflow_r["p99_ms"], 2)
            nginx = [r for r in ours_ok if "nginx" in r["target"]]
            if nginx:
                summary["nginx_throughput_ratio_vs_mlflow_serve"] = round(
                    nginx[0]["throughput_rps"] / mlflow_r["throughput_rps"], 2)
                summary["nginx_p99_ratio_vs_mlflow_serve"] = round(nginx[0]["p99_ms"] / mlflow_r["p99_ms"], 2)
    return {"config": asdict(cfg), "results": results, "summary": summary}


def render(result: dict[str, Any]) -> str:
    lines = [f"{'target':<44} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'failed':>6}"]
    for r in result["results"]:
        if "throughput_rps" in r:
            lines.append(f"{r['target']:<44} {r['throughput_rps']:>8.1f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
                         f"{r['failed']:>6}")
        else:
            lines.append(f"{r['target']:<44} error: {r.get('error')}")
    lines.append("summary: " + ", ".join(f"{k}={v}" for k, v in result["summary"].items()))
    return "\n".join(lines)
