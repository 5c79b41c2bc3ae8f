"""`mlops bench serve`: the platform's served variant vs every forced variant and `mlflow models serve`, one run.

A private ``mlops serve`` (one worker) is started on a loopback port per entry of ``variants``:
``auto`` is the platform's own choice (the variant its worker measured fastest), the others are forced
with ``MLOPS_SERVE_VARIANT``. The platform's own endpoint (``/serve`` through nginx, TLS and basic auth)
is measured too when it serves the same version. ``mlflow models serve`` (what a user would otherwise
pick) runs the same registered version with ``--env-manager local`` on loopback (no TLS: the
comparison favours it). All servers start together; every target gets the same fixed number of batch-1
requests over ``concurrency`` keep-alive connections of one light client (:mod:`mlops_cli.loadgen`), in
``rounds`` slices with the targets taking turns (interleaved), after a warm-up. ``summary.served_variant``,
``summary.served_variant_is_fastest`` and ``summary.served_vs_best_torch_throughput`` compare the platform's
choice with the forced variants.

With ``kit`` (the default), the same is done again at the reference kit's real size on a briefly trained
224 px, width 1.0 model registered as ``<model>-bench-kit`` (:func:`kit_model`), reported as ``summary.kit``.

With ``scrape_interval_s`` (15 by default; 0: not measured), the cost of being scraped (:func:`bench_scrape`): the
platform's served configuration (its number of workers, the variant it chooses) under load with a real Prometheus
scraping its ``/metrics`` every ``scrape_interval_s`` vs no Prometheus, rounds interleaved off/on, reported as
``summary.scrape``. The budget (issue #15): scraping every 15 s costs serving at most 5% of its throughput.
"""

from __future__ import annotations

import base64
import io
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import numpy as np
from PIL import Image

from mlops.settings import get_settings
from mlops.tracking import load_client_env
from mlops_cli.loadgen import LoadResult, post
from training.cpu import detect_capabilities
from training.data import synthetic_arrays, to_tensor

log = logging.getLogger(__name__)


TORCH_VARIANTS = ("int8", "bf16", "compiled", "fp32")


@dataclass
class BenchServeConfig:
    requests: int = 2000
    """Per target: at ~1000 req/s a round of 400 lasted 0.1 s, and two identical servers differed by 12%."""
    concurrency: int = 8
    variants: list[str] = field(default_factory=lambda: ["auto", "openvino_int8", "openvino_bf16", "openvino_fp32",
                                                         "int8", "bf16", "compiled", "fp32"])
    """``auto`` is what the platform serves (its own measured choice); the others are forced."""
    model: str | None = None
    mlflow_serve: bool = True
    warmup: int = 20
    rounds: int = 5
    """Each target gets its requests in this many slices, targets taking turns (interleaved)."""
    start_timeout_s: float = 900.0
    kit: bool = True
    """Also at the kit's real size (224 px, width 1.0): :func:`kit_model`, reported as ``summary.kit``."""
    kit_requests: int = 64
    kit_variants: list[str] = field(default_factory=lambda: ["auto", "openvino_int8", "openvino_bf16", "openvino_fp32",
                                                             "bf16", "compiled", "fp32"])
    """No ``int8``: the kit model has no PT2E program; no ``mlflow models serve`` (its JSON of 150k floats per
    image measures JSON parsing)."""
    scrape_interval_s: float = 15.0
    """Scrape-cost measurement (:func:`bench_scrape`): Prometheus scrapes this often in its rounds; 0: skipped."""
    scrape_rounds: int = 4
    """Rounds of the scrape-cost measurement, alternating without and with Prometheus (off first)."""
    scrape_round_s: float | None = None
    """Seconds of load per round; default 3 scrape intervals (each 'on' round holds about 3 scrapes)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class _Target:
    name: str
    url: str
    bodies: list[bytes]
    client_kwargs: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)
    load: LoadResult = field(default_factory=LoadResult)


def _drive(target: _Target, count: int, cfg: BenchServeConfig, warm: bool) -> None:
    """Send ``count`` POSTs over ``cfg.concurrency`` keep-alive connections (:mod:`mlops_cli.loadgen`); adds
    latencies, failures and wall time to ``target``. ``warm``: first ``cfg.warmup`` requests, not counted."""
    kw = {"auth": target.client_kwargs.get("auth"), "verify": target.client_kwargs.get("verify", True)}
    if warm and cfg.warmup:
        post(target.url, target.bodies, cfg.warmup, cfg.concurrency, **kw)
    target.load.add(post(target.url, target.bodies, count, cfg.concurrency, **kw))


def _result(target: _Target, requests: int, cfg: BenchServeConfig) -> dict[str, Any]:
    result = {"target": target.name, "url": target.url, "requests": requests, "concurrency": cfg.concurrency,
              **target.load.figures(), "throughput_rps": round(target.load.rate, 2), **target.info}
    log.info("%s: %.1f req/s, p50 %.1f ms, p99 %.1f ms, %d failed", target.name, result["throughput_rps"],
             result["p50_ms"], result["p99_ms"], result["failed"])
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


KIT_SUFFIX = "-bench-kit"
KIT_SERVER_ENV = {"MLOPS_SERVE_MAX_BATCH": "8", "MLOPS_SERVE_TIMING_ITERATIONS": "5"}
"""Kit-size servers: batches up to the clients' 8 (two compiled buckets, not three) and 5 timed iterations per
candidate at load (a batch of 8 in FP32 eager takes about a second at 224 px)."""


def kit_model(client: Any, base: str) -> tuple[str, Any, str]:  # noqa: ANN401 - MlflowClient, ModelVersion
    """(name, version, how trained) of the kit-size bench model ``<base>-bench-kit``: the model ``mlops bench
    infer`` measures at the kit's size, registered like ``mlops train`` does (OpenVINO IRs, INT8 gate) under its
    own name, so the platform's champion is never touched. Built once per kit configuration, then reused."""
    import json
    import tempfile
    from pathlib import Path

    import mlflow

    from mlops.registry import CHAMPION, version_by_alias
    from mlops_cli.bench_model import BenchConfig, brief_model, kit_config
    from training import tracking
    from training.optimize import tune_runtime
    from training.train import TrainConfig, export_openvino, log_model

    kit = kit_config(BenchConfig())
    name = base + KIT_SUFFIX
    signature = json.dumps(asdict(kit), sort_keys=True, default=str)
    trained = (f"briefly, as in `mlops bench infer`: random VGG16-BN trunk with batch-norm statistics of the data, "
               f"classifier fitted in {kit.epochs} full-batch steps on {kit.n_train} synthetic images")
    mv = version_by_alias(client, name, CHAMPION)
    if mv is not None and client.get_run(mv.run_id).data.tags.get("bench_kit_config") == signature:
        log.info("Kit-size bench model %s v%s reused", name, mv.version)
        return name, mv, trained
    log.info("Building the kit-size bench model %s (%d px, width %s): a few minutes", name, kit.image_size, kit.width)
    tune_runtime(None)
    model, splits, accuracy = brief_model(kit)
    config = TrainConfig.from_settings(model_name=name, image_size=kit.image_size, width=kit.width,
                                       n_train=kit.n_train, n_val=kit.n_val,
                                       experiment_name=get_settings().experiment_name + "-bench")
    tracking.set_experiment(config.experiment_name)
    with mlflow.start_run(run_name=f"{name} (bench serve)"), tempfile.TemporaryDirectory(prefix="mlops-kit-") as d:
        tracking.set_tags({"bench_kit_config": signature, "stage": "bench", "trained": trained})
        tracking.log_metrics({"final_val_accuracy": accuracy})
        export_openvino(model, splits, config, Path(d))
        info = log_model(model, config, splits, Path(d))
    client.set_registered_model_alias(name, CHAMPION, info.registered_model_version)
    return name, client.get_model_version(name, info.registered_model_version), trained


def bench_serve(cfg: BenchServeConfig) -> dict[str, Any]:
    from mlflow import MlflowClient

    from mlops.registry import CHAMPION, version_by_alias

    load_client_env()
    name = cfg.model or get_settings().model_name
    client = MlflowClient()
    mv = version_by_alias(client, name, CHAMPION)
    if mv is None:
        raise RuntimeError(f"{name!r} has no champion: promote a version first (`mlops promote`)")
    size = _image_size(client, mv)
    results = _bench_version(cfg, mv, size, cfg.requests, cfg.variants, cfg.mlflow_serve, {})
    out: dict[str, Any] = {"config": asdict(cfg), "results": results,
                           "summary": summarise(name, str(mv.version), results)}
    if cfg.scrape_interval_s > 0:
        out["summary"]["scrape"] = bench_scrape(cfg, name, _png_bodies(size))
    if cfg.kit:
        kit_name, kit_mv, trained = kit_model(client, name)
        size = _image_size(client, kit_mv)
        kit_results = _bench_version(cfg, kit_mv, size, cfg.kit_requests, cfg.kit_variants, False, KIT_SERVER_ENV)
        out["kit_results"] = kit_results
        out["summary"]["kit"] = {**summarise(kit_name, str(kit_mv.version), kit_results), "image_size": size,
                                 "trained": trained, "server_env": KIT_SERVER_ENV}
    return out


def _image_size(client: Any, mv: Any) -> int:  # noqa: ANN401 - MlflowClient, ModelVersion
    from training.artifacts import load_version

    return load_version(client, mv).image_size


def _png_bodies(size: int) -> list[bytes]:
    """The bench's /predict bodies: 32 synthetic ``size`` px images, one per request, as PNG."""
    arrays, _, _ = synthetic_arrays(32, size, 123)
    out = []
    for a in arrays:
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG")
        out.append(b'{"image": "%s"}' % base64.b64encode(buf.getvalue()))
    return out


def _bench_version(cfg: BenchServeConfig, mv: Any, size: int, requests: int, variants: list[str],  # noqa: ANN401
                   mlflow_serve: bool, server_env: dict[str, str]) -> list[dict[str, Any]]:
    """Every target on one registered version (input ``size`` px), interleaved: the results rows."""
    from serving.client import endpoint

    name = mv.name
    arrays, _, _ = synthetic_arrays(32, size, 123)
    ours = _png_bodies(size)
    theirs = ([b'{"inputs": %s}' % str(to_tensor(a[None]).numpy().round(5).tolist()).encode() for a in arrays]
              if mlflow_serve else [])
    threads = max(1, len(os.sched_getaffinity(0)))
    targets: list[_Target] = []
    errors: list[dict[str, Any]] = []
    procs: list[tuple[subprocess.Popen, str, str, _Target]] = []  # type: ignore[type-arg]

    # The platform's endpoint through nginx (TLS + auth), if it serves this version.
    try:
        ep = endpoint()
        info = httpx.get(f"{ep.url}/model", auth=ep.auth, verify=ep.verify, timeout=10).json()
        if info.get("name") == name and str(info.get("version")) == str(mv.version):
            targets.append(_Target(f"platform /serve via nginx ({info['variant']})", f"{ep.url}/predict", ours,
                                   {"auth": ep.auth, "verify": ep.verify}, {"variant": info["variant"]}))
        else:
            log.info("Platform endpoint serves %s v%s, not %s v%s: skipped", info.get("name"), info.get("version"),
                     name, mv.version)
    except Exception as exc:  # noqa: BLE001 - the platform endpoint is optional in a bench
        log.info("Platform endpoint not measured: %s", exc)

    try:
        # Every server starts at once and waits idle while the others are driven. Each chooses its variant
        # now (no choice remembered from an earlier run): `auto` is measured as the platform chooses today.
        for variant in variants:
            port = _free_port()
            env = {**os.environ, "MLOPS_SERVE_VARIANT": variant, "MLOPS_SERVE_COMPILE": str(variant != "fp32").lower(),
                   "MLOPS_MODEL_NAME": name, "MLOPS_SERVE_MONITORING": "false", "MLOPS_SERVE_THREADS": str(threads),
                   "MLOPS_SERVE_REMEMBER_CHOICE": "false", **server_env}
            proc = subprocess.Popen([sys.executable, "-m", "mlops_cli", "serve", "--port", str(port), "--workers",
                                     "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            base = f"http://127.0.0.1:{port}"
            procs.append((proc, f"{base}/health", f"mlops serve ({variant})",
                          _Target(f"mlops serve {variant} (loopback)", f"{base}/predict", ours, {},
                                  {"variant_requested": variant})))
        if mlflow_serve:
            port = _free_port()
            proc = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{name}/{mv.version}",
                 "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "--workers", "1"],
                # It execs `uvicorn` by name: the venv's bin must be on PATH.
                env={**os.environ, "OMP_NUM_THREADS": str(threads),
                     "PATH": f"{os.path.dirname(sys.executable)}:{os.environ.get('PATH', '')}"},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            base = f"http://127.0.0.1:{port}"
            procs.append((proc, f"{base}/ping", "mlflow models serve",
                          _Target("mlflow models serve (loopback)", f"{base}/invocations", theirs, {},
                                  {"variant": "mlflow-pyfunc"})))
        for proc, health, what, target in procs:
            try:
                _wait_up(health, proc, cfg.start_timeout_s, what)
            except RuntimeError as exc:
                errors.append({"target": target.name, "error": str(exc), "failed": 0})
                continue
            if "variant_requested" in target.info:
                got = httpx.get(health.replace("/health", "/model"), timeout=10).json()
                target.info |= {"variant": got["variant"], "variant_reason": got.get("variant_reason"),
                                "variant_checks": got.get("variant_checks"),
                                "variant_latency_ms": got.get("variant_latency_ms")}
                target.name = f"mlops serve {target.info['variant_requested']}: {got['variant']} (loopback)"
            targets.append(target)
        per_round = max(1, requests // cfg.rounds)
        for r in range(cfg.rounds):  # interleaved: machine noise hits every target alike
            for target in targets:
                _drive(target, per_round, cfg, warm=r == 0)
    finally:
        for proc, *_ in procs:
            _stop(proc)

    return [_result(t, requests, cfg) for t in targets] + errors


def summarise(name: str, version: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures the issue asks for, all from this one interleaved run."""
    ours_ok = [r for r in results if "throughput_rps" in r and r.get("variant") != "mlflow-pyfunc"]
    mlflow_r = next((r for r in results if r.get("variant") == "mlflow-pyfunc"), None)
    summary: dict[str, Any] = {"model": name, "version": version,
                               "failed_requests": int(sum(r.get("failed", 0) for r in results)),
                               "cpu_isa": detect_capabilities().isa}
    if not ours_ok:
        return summary
    best = max(ours_ok, key=lambda r: r["throughput_rps"])
    summary["best_target"] = best["target"]
    # Forced variants that really ran as asked (one that cannot run here falls back and is not its own figure).
    forced = [r for r in ours_ok if r.get("variant_requested") not in (None, "auto")
              and r.get("variant") == r.get("variant_requested")]
    auto = next((r for r in ours_ok if r.get("variant_requested") == "auto"), None)
    if auto is not None:
        summary["served_variant"] = auto["variant"]
        summary["served_throughput_rps"] = auto["throughput_rps"]
        if forced:
            fastest = max(forced, key=lambda r: r["throughput_rps"])
            summary["fastest_forced_variant"] = fastest["variant"]
            # the platform's own server measured fastest, or the variant it serves is the fastest forced one
            summary["served_variant_is_fastest"] = (auto["variant"] == fastest["variant"]
                                                    or auto["throughput_rps"] >= fastest["throughput_rps"])
            summary["served_vs_fastest_throughput"] = round(auto["throughput_rps"] / fastest["throughput_rps"], 2)
        torch_r = [r for r in forced if r["variant"] in TORCH_VARIANTS]
        if torch_r:
            best_torch = max(torch_r, key=lambda r: r["throughput_rps"])
            summary["best_torch_variant"] = best_torch["variant"]
            summary["served_vs_best_torch_throughput"] = round(auto["throughput_rps"] / best_torch["throughput_rps"], 2)
            summary["served_vs_best_torch_p99"] = round(auto["p99_ms"] / best_torch["p99_ms"], 2)
        compiled = next((r for r in forced if r["variant"] == "compiled"), None)
        if compiled is not None:  # the issue's baseline: the best torch variant before OpenVINO and torch BF16
            summary["served_vs_compiled_throughput"] = round(auto["throughput_rps"] / compiled["throughput_rps"], 2)
            summary["served_vs_compiled_p99"] = round(auto["p99_ms"] / compiled["p99_ms"], 2)
    if mlflow_r and mlflow_r.get("throughput_rps"):
        summary["throughput_ratio_vs_mlflow_serve"] = round(best["throughput_rps"] / mlflow_r["throughput_rps"], 2)
        summary["p99_ratio_vs_mlflow_serve"] = round(best["p99_ms"] / mlflow_r["p99_ms"], 2)
        nginx = [r for r in ours_ok if "nginx" in r["target"]]
        if nginx:
            summary["nginx_throughput_ratio_vs_mlflow_serve"] = round(
                nginx[0]["throughput_rps"] / mlflow_r["throughput_rps"], 2)
            summary["nginx_p99_ratio_vs_mlflow_serve"] = round(nginx[0]["p99_ms"] / mlflow_r["p99_ms"], 2)
    return summary


def _table(results: list[dict[str, Any]]) -> list[str]:
    lines = [f"{'target':<52} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'failed':>6}"]
    for r in results:
        if "throughput_rps" in r:
            lines.append(f"{r['target']:<52} {r['throughput_rps']:>8.1f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
                         f"{r['failed']:>6}")
        else:
            lines.append(f"{r['target']:<52} error: {r.get('error')}")
    return lines


def render_scrape(s: dict[str, Any]) -> str:
    return (f"scrape cost (Prometheus every {s['interval_s']:g} s, {len(s['rounds'])} rounds of {s['round_s']:g} s "
            f"off/on, {s['workers']} worker(s)): {s['throughput_off']:.1f} req/s off, {s['throughput_on']:.1f} on, "
            f"ratio {s['throughput_ratio']:.3f} ({'within' if s['within_budget'] else 'OVER'} the 5% budget); "
            f"p99 {s['p99_ms_off']:.1f} ms off, {s['p99_ms_on']:.1f} on; {s['scrapes']} scrapes"
            f"{'' if s['scrapes_verified'] else ' (NOT every on round was scraped)'}; {s['failed']} failed")


def render(result: dict[str, Any]) -> str:
    summary = dict(result["summary"])
    kit = summary.pop("kit", None)
    scrape = summary.pop("scrape", None)
    lines = _table(result["results"]) + ["summary: " + ", ".join(f"{k}={v}" for k, v in summary.items())]
    if scrape is not None:
        lines.append(render_scrape(scrape))
    if kit is not None:
        lines += [f"kit size ({kit.get('image_size')} px):", *_table(result["kit_results"]),
                  "kit summary: " + ", ".join(f"{k}={v}" for k, v in kit.items() if k not in ("trained", "server_env"))]
    return "\n".join(lines)


# --- the cost of being scraped ---------------------------------------------------------------------

SCRAPE_JOB = "mlops-serving"
SCRAPE_BUDGET = 0.95
"""Issue #15: scraping every 15 s must not cost serving more than 5% of its throughput."""


def find_prometheus() -> str | None:
    """The Prometheus server program (Debian's package installs /usr/bin/prometheus), or None."""
    found = shutil.which("prometheus")
    if found:
        return found
    return "/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None


def _prom_duration(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def prometheus_config(target: str, interval_s: float) -> str:
    """The bench's Prometheus configuration: one job scraping ``target`` (``host:port``, path /metrics) every
    ``interval_s``; no self-scrape, no rules."""
    import yaml

    interval = _prom_duration(interval_s)
    config = {"global": {"scrape_interval": interval, "scrape_timeout": _prom_duration(min(interval_s, 10.0))},
              "scrape_configs": [{"job_name": SCRAPE_JOB, "metrics_path": "/metrics",
                                  "static_configs": [{"targets": [target]}]}]}
    return yaml.safe_dump(config, sort_keys=False)


def count_scrapes(values: list[list[Any]], start: float, end: float) -> tuple[int, int]:
    """(scrapes, successful ones) among ``up`` samples ``[[unix time, "0"|"1"], ...]`` (Prometheus's query API)
    taken from ``start`` to ``end``."""
    inside = [float(v) for ts, v in values if start <= float(ts) <= end]
    return len(inside), sum(1 for v in inside if v == 1.0)


@dataclass
class ScrapeRound:
    prometheus: bool
    load: LoadResult
    scrapes: int = 0
    """Successful scrapes Prometheus recorded during the round (its ``up`` samples at 1)."""
    attempted: int = 0


def summarise_scrape(interval_s: float, rounds: list[ScrapeRound]) -> dict[str, Any]:
    """``summary.scrape``: throughput and p99 over the rounds without and with Prometheus, their ratio, scrapes."""

    def pooled(on: bool) -> tuple[float, float, int]:
        chosen = [r.load for r in rounds if r.prometheus is on]
        lat = [x for r in chosen for x in r.latencies_s]
        seconds = sum(r.seconds for r in chosen)
        rps = len(lat) / seconds if seconds > 0 else float("nan")
        p99 = float(np.percentile(np.asarray(lat) * 1000.0, 99)) if lat else float("nan")
        return rps, p99, sum(len(r.failures) for r in chosen)

    rps_off, p99_off, failed_off = pooled(False)
    rps_on, p99_on, failed_on = pooled(True)
    ratio = rps_on / rps_off if rps_off > 0 else float("nan")
    on_rounds = [r for r in rounds if r.prometheus]
    return {
        "interval_s": interval_s, "throughput_off": round(rps_off, 2), "throughput_on": round(rps_on, 2),
        "throughput_ratio": round(ratio, 3), "scrapes": sum(r.scrapes for r in on_rounds),
        "p99_ms_off": round(p99_off, 2), "p99_ms_on": round(p99_on, 2),
        "within_budget": bool(ratio >= SCRAPE_BUDGET), "failed": failed_off + failed_on,
        # Every 'on' round was scraped, and successfully (Prometheus's own `up`): else the figures say nothing.
        "scrapes_verified": bool(on_rounds) and all(r.scrapes >= 1 and r.scrapes == r.attempted for r in on_rounds),
        "rounds": [{"prometheus": r.prometheus, "seconds": round(r.load.seconds, 2), "ok": len(r.load.latencies_s),
                    "failed": len(r.load.failures),
                    "throughput_rps": round(r.load.rate, 2),
                    **({"scrapes": r.scrapes, "scrapes_attempted": r.attempted} if r.prometheus else {})}
                   for r in rounds],
    }


def _drive_for(url: str, bodies: list[bytes], seconds: float, concurrency: int) -> LoadResult:
    """Load for about ``seconds``: fixed-count slices of about a second each (:func:`mlops_cli.loadgen.post`)."""
    total, count = LoadResult(), 4 * concurrency
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = post(url, bodies, count, concurrency)
        total.add(got)
        if got.seconds > 0:  # next slice: about a second, never past the deadline by much
            rate = len(got.latencies_s) / got.seconds
            left = deadline - time.monotonic()
            count = max(concurrency, int(rate * min(1.0, max(left, 0.1))))
    return total


def _prometheus_api(base: str, query: str, at: float) -> list[dict[str, Any]]:
    got = httpx.get(f"{base}/api/v1/query", params={"query": query, "time": f"{at:.3f}"}, timeout=30).json()
    if got.get("status") != "success":
        raise RuntimeError(f"Prometheus query {query!r} failed: {got}")
    return got["data"]["result"]


def _wait_first_scrape(base: str, proc: subprocess.Popen, timeout: float) -> None:  # type: ignore[type-arg]
    """Until Prometheus has scraped serving once: its targets arrive some seconds after it is ready and the first
    scrape waits for the target's offset in the interval; after it, a round of N intervals holds about N scrapes."""
    deadline = time.monotonic() + timeout
    while not _prometheus_api(base, f'up{{job="{SCRAPE_JOB}"}}', time.time()):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"Prometheus did not scrape serving within {timeout:.0f} s")
        time.sleep(0.5)


def bench_scrape(cfg: BenchServeConfig, name: str, bodies: list[bytes]) -> dict[str, Any]:
    """Serving under load without and with a real Prometheus scraping it every ``cfg.scrape_interval_s``.

    One ``mlops serve`` as the platform runs it (its ``serve_workers``, its variant setting; monitoring off as in
    the rest of the bench) on loopback. Rounds of ``cfg.scrape_round_s`` alternate off/on; for an 'on' round a
    fresh Prometheus (temporary configuration and data directory, a free loopback port) is started, and the load
    begins once it has scraped serving a first time; it is stopped after the round, and its own ``up`` samples say
    how many scrapes happened in the round. The Prometheus server runs on the same host: its own CPU is part of
    the cost measured.
    """
    prometheus = find_prometheus()
    if prometheus is None:
        raise RuntimeError("no Prometheus server program (/usr/bin/prometheus): install prometheus")
    interval = cfg.scrape_interval_s
    round_s = cfg.scrape_round_s or 3 * interval
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLOPS_MODEL_NAME": name, "MLOPS_SERVE_MONITORING": "false"}
    workers = get_settings().serve_workers
    log.info("Scrape cost: %d rounds of %.0f s (off/on), Prometheus every %.0f s, %d serving worker(s)",
             cfg.scrape_rounds, round_s, interval, workers)
    rounds: list[ScrapeRound] = []
    with tempfile.TemporaryDirectory(prefix="mlops-bench-prom-") as tmp:
        config_file = os.path.join(tmp, "prometheus.yml")
        with open(config_file, "w") as f:
            f.write(prometheus_config(f"127.0.0.1:{port}", interval))
        server = subprocess.Popen([sys.executable, "-m", "mlops_cli", "serve", "--port", str(port)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            _wait_up(f"{base}/health", server, cfg.start_timeout_s, "mlops serve (scrape cost)")
            post(f"{base}/predict", bodies, max(cfg.warmup, 4 * cfg.concurrency), cfg.concurrency)
            for i in range(cfg.scrape_rounds):
                on = i % 2 == 1
                prom = None
                if on:
                    prom_port = _free_port()
                    prom_url = f"http://127.0.0.1:{prom_port}"
                    with open(os.path.join(tmp, f"prometheus-{i}.log"), "w") as errors:
                        prom = subprocess.Popen(
                            [prometheus, f"--config.file={config_file}", f"--storage.tsdb.path={tmp}/data-{i}",
                             f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
                            stdout=subprocess.DEVNULL, stderr=errors, start_new_session=True)
                try:
                    if prom is not None:
                        _wait_up(f"{prom_url}/-/ready", prom, 60, "prometheus")
                        _wait_first_scrape(prom_url, prom, 2 * interval + 30)
                    start = time.time()
                    load = _drive_for(f"{base}/predict", bodies, round_s, cfg.concurrency)
                    end = time.time()
                    result = ScrapeRound(on, load)
                    if prom is not None:
                        window = math.ceil(end - start + 2 * interval)
                        found = _prometheus_api(prom_url, f'up{{job="{SCRAPE_JOB}"}}[{window}s]', end)
                        result.attempted, result.scrapes = count_scrapes(found[0]["values"] if found else [],
                                                                         start, end)
                    rounds.append(result)
                    log.info("Scrape round %d (%s): %.1f req/s%s", i + 1, "on" if on else "off",
                             load.rate,
                             f", {result.scrapes} scrapes" if on else "")
                finally:
                    if prom is not None:
                        _stop(prom)
        finally:
            _stop(server)
    summary = {**summarise_scrape(interval, rounds), "workers": workers, "round_s": round_s}
    if not summary["scrapes_verified"]:
        log.warning("Prometheus did not scrape serving in every 'on' round: %s", summary["rounds"])
    return summary
