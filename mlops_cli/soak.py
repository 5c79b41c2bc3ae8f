"""Sustained load on the running platform, and the checks after it (`mlops bench soak`, the resilience tests).

:class:`Load` runs, in threads, until stopped:

- tracking clients through nginx: each creates runs and logs batches of metrics and params, and every
  ``artifact_every``-th operation an artifact (sizes cycling through ``artifact_sizes``); each write the
  server acknowledged goes into a :class:`Ledger`;
- prediction clients through nginx (``/serve/predict``, one image each);
- optionally the platform's scheduled jobs (:mod:`mlops_cli.jobs`), spread over the run.

:func:`verify` then reads every acknowledged write back (artifacts byte for byte, by SHA-256).
:func:`soak` is the benchmark: the load for a fixed time, the memory of every service sampled,
5xx answers counted in nginx's access log, per-operation throughput and p50/p99, a table and a plot
logged to MLflow. Traffic goes only to the platform this machine's ``.mlops`` points at.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import shutil
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlops_cli import jobs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sample:
    op: str
    start: float
    """Seconds since the load started."""
    seconds: float
    error: str | None = None
    """None when the operation succeeded; otherwise its kind (e.g. ``HTTP 502``, ``ConnectError``)."""


@dataclass
class Ledger:
    """Writes the platform acknowledged (the call returned without error)."""

    metrics: list[tuple[str, str, int, float]] = field(default_factory=list)
    """(run_id, key, step, value)"""
    params: list[tuple[str, str, str]] = field(default_factory=list)
    artifacts: list[tuple[str, str, str]] = field(default_factory=list)
    """(run_id, artifact path, sha256)"""
    attempted_artifacts: dict[tuple[str, str], str] = field(default_factory=dict)
    """(run_id, artifact path) -> sha256 of every upload started, acknowledged or not."""
    runs: list[str] = field(default_factory=list)

    @property
    def writes(self) -> int:
        return len(self.metrics) + len(self.params) + len(self.artifacts)


_STATUS = re.compile(r"\b([45]\d\d)\b")


def error_kind(exc: BaseException) -> str:
    """A short, stable name for a failure: the HTTP status when there is one, else the exception type."""
    status = getattr(getattr(exc, "response", None), "status_code", None) or getattr(exc, "status", None)
    text = str(exc)
    if not status:
        match = re.search(r"(\d{3}) error responses|status code:? (\d{3})|HTTP (\d{3})", text)
        status = next((g for g in match.groups() if g), None) if match else None
    name = type(exc).__name__
    return f"HTTP {status} ({name})" if status else name


def size_label(size: int) -> str:
    for unit, scale in (("MB", 1_000_000), ("KB", 1_000)):
        if size >= scale:
            return f"{size // scale}{unit}"
    return f"{size}B"


def _png(seed: int, size: int = 64) -> bytes:
    import io

    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


class Load:
    """Clients in threads until :meth:`stop`; ``samples`` and ``ledger`` hold what happened."""

    def __init__(self, tracking_clients: int, predict_clients: int, *, experiment: str = "soak-load",
                 artifact_sizes: tuple[int, ...] = (1_000, 100_000, 1_000_000), artifact_every: int = 10,
                 ops_per_run: int = 30, jobs_over_s: float | None = None,
                 platform: dict[str, Any] | None = None, seed: int = 0) -> None:
        self.tracking_clients, self.predict_clients = tracking_clients, predict_clients
        self.experiment = experiment
        self.artifact_sizes, self.artifact_every, self.ops_per_run = artifact_sizes, artifact_every, ops_per_run
        self.jobs_over_s = jobs_over_s
        self.platform = platform
        self.seed = seed
        self.samples: list[Sample] = []
        self.ledger = Ledger()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._t0 = 0.0
        self._tmp = Path(tempfile.mkdtemp(prefix="mlops-soak-"))
        self.jobs_first_pass_s: float | None = None
        """When every scheduled job had run once (seconds since the start)."""

    # --- running ---------------------------------------------------------------------------------

    def start(self) -> Load:
        from mlflow import MlflowClient

        # Hundreds of runs: no "View run ..." line for each.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

        from mlops.tracking import experiment_id, load_client_env

        load_client_env()
        self._client = MlflowClient()
        self._experiment_id = experiment_id(self.experiment, self._client) if self.tracking_clients else ""
        self._t0 = time.monotonic()
        workers: list[tuple[str, Callable[[int], None]]] = [
            *((f"soak-tracking-{i}", self._tracking) for i in range(self.tracking_clients)),
            *((f"soak-predict-{i}", self._predict) for i in range(self.predict_clients)),
        ]
        if self.jobs_over_s and self.platform:
            workers.append(("soak-jobs", self._jobs))
        for i, (name, target) in enumerate(workers):
            thread = threading.Thread(target=target, args=(i,), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 300.0) -> None:
        """Stop the clients; each finishes (or gives up on) the operation it is in, its retries included."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        hung = [t.name for t in self._threads if t.is_alive()]
        if hung:
            log.warning("Still running after %.0f s: %s", timeout, ", ".join(hung))
        else:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def delete_runs(self) -> None:
        """Delete the runs the load created (soft delete: `make gc` removes them and their artifacts)."""
        for run_id in self.ledger.runs:
            try:
                self._client.delete_run(run_id)
            except Exception as exc:  # noqa: BLE001 - cleanup only
                log.warning("Could not delete load run %s: %s", run_id, exc)

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    def _timed(self, op: str, call: Callable[[], Any]) -> tuple[bool, Any]:
        start = time.monotonic()
        try:
            value = call()
        except Exception as exc:  # noqa: BLE001 - every failure is a result of the soak, by kind
            self.samples.append(Sample(op, start - self._t0, time.monotonic() - start, error_kind(exc)))
            return False, None
        self.samples.append(Sample(op, start - self._t0, time.monotonic() - start))
        return True, value

    # --- the clients -----------------------------------------------------------------------------

    def _tracking(self, index: int) -> None:
        from mlflow.entities import Metric, Param

        rng = random.Random(self.seed * 1000 + index)  # noqa: S311 - test data, not secrets
        client = self._client
        artifacts = 0
        while not self._stop.is_set():
            ok, run = self._timed("create_run", lambda: client.create_run(self._experiment_id,
                                                                          run_name=f"soak-{index}"))
            if not ok:
                self._stop.wait(0.5)
                continue
            run_id = run.info.run_id
            self.ledger.runs.append(run_id)
            for step in range(self.ops_per_run):
                if self._stop.is_set():
                    break
                now = int(time.time() * 1000)
                metrics = [Metric(f"m{k}", rng.random(), now, step) for k in range(5)]
                params = [Param(f"p{step}", f"{rng.random():.6f}")]
                ok, _ = self._timed("log_batch", lambda m=metrics, p=params, r=run_id: client.log_batch(r, m, p))
                if ok:
                    self.ledger.metrics.extend((run_id, m.key, m.step, m.value) for m in metrics)
                    self.ledger.params.extend((run_id, p.key, p.value) for p in params)
                if step % self.artifact_every == self.artifact_every - 1:
                    size = self.artifact_sizes[artifacts % len(self.artifact_sizes)]
                    artifacts += 1
                    data = rng.randbytes(size)
                    local = self._tmp / f"c{index}" / f"a{step}-{size_label(size)}.bin"
                    local.parent.mkdir(exist_ok=True)
                    local.write_bytes(data)
                    self.ledger.attempted_artifacts[(run_id, f"soak/{local.name}")] = hashlib.sha256(data).hexdigest()
                    ok, _ = self._timed(f"log_artifact_{size_label(size)}",
                                        lambda p=local, r=run_id: client.log_artifact(r, str(p), "soak"))
                    if ok:
                        self.ledger.artifacts.append((run_id, f"soak/{local.name}", hashlib.sha256(data).hexdigest()))
                    local.unlink()
            self._timed("end_run", lambda r=run_id: client.set_terminated(r))

    def _predict(self, index: int) -> None:
        from serving.client import make_client, predict

        http, ep = make_client(timeout=60.0)
        image = _png(self.seed * 1000 + index)
        with http:
            while not self._stop.is_set():
                ok, _ = self._timed("predict", lambda: predict(image, client=http, ep=ep))
                if not ok:
                    self._stop.wait(0.2)

    def _jobs(self, _index: int) -> None:
        """Each scheduled job once right away (their one-time allocations belong to the warm-up), then again,
        one after another, spread over the rest of the run."""
        assert self.platform is not None and self.jobs_over_s
        names = jobs.job_names(self.platform)

        def run(name: str) -> None:
            result = jobs.run_job(self.platform, name)
            if result.returncode != 0:
                raise JobFailed(f"job {name}: exit {result.returncode}: {result.output[-300:]}")

        for name in names:
            if self._stop.is_set():
                return
            self._timed(f"job_{name}", lambda n=name: run(n))
        self.jobs_first_pass_s = self.elapsed
        interval = max(10.0, (self.jobs_over_s - self.elapsed) / max(1, len(names)))
        while True:
            for name in names:
                if self._stop.wait(interval):
                    return
                self._timed(f"job_{name}", lambda n=name: run(n))


class JobFailed(RuntimeError):
    pass


# --- after the load ------------------------------------------------------------------------------


def verify(ledger: Ledger, client: Any = None, threads: int = 4) -> list[str]:  # noqa: ANN401 - MlflowClient
    """Every acknowledged write read back; returns one line per write that is missing or different."""
    from mlflow import MlflowClient

    client = client or MlflowClient()
    by_series: dict[tuple[str, str], set[tuple[int, float]]] = defaultdict(set)
    for run_id, key, step, value in ledger.metrics:
        by_series[(run_id, key)].add((step, value))
    by_run: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for run_id, key, value in ledger.params:
        by_run[run_id].append((key, value))
    lost: list[str] = []

    def series(item: tuple[tuple[str, str], set[tuple[int, float]]]) -> list[str]:
        (run_id, key), acked = item
        stored = {(m.step, m.value) for m in client.get_metric_history(run_id, key)}
        return [f"metric {run_id}/{key} step {step}" for step, _ in sorted(acked - stored)]

    def params(item: tuple[str, list[tuple[str, str]]]) -> list[str]:
        run_id, acked = item
        stored = client.get_run(run_id).data.params
        return [f"param {run_id}/{key}" for key, value in acked if stored.get(key) != value]

    def artifact(item: tuple[str, str, str]) -> list[str]:
        run_id, path, sha = item
        with tempfile.TemporaryDirectory(prefix="mlops-soak-check-") as d:
            try:
                local = client.download_artifacts(run_id, path, d)
            except Exception as exc:  # noqa: BLE001 - a missing artifact is a finding, not a crash
                return [f"artifact {run_id}/{path}: {error_kind(exc)}"]
            if hashlib.sha256(Path(local).read_bytes()).hexdigest() != sha:
                return [f"artifact {run_id}/{path}: content differs"]
        return []

    with ThreadPoolExecutor(threads) as pool:
        for check, items in ((series, by_series.items()), (params, by_run.items()), (artifact, ledger.artifacts)):
            for found in pool.map(check, list(items)):
                lost.extend(found)
    return lost


class AccessLog:
    """Counts the statuses nginx logged from now on (follows a rotation: the old file is read to its end)."""

    _LINE = re.compile(r'" (\d{3}) ')

    def __init__(self, path: Path) -> None:
        self.path = path
        stat = path.stat() if path.exists() else None
        self._inode, self._offset = (stat.st_ino, stat.st_size) if stat else (None, 0)

    def statuses(self) -> Counter[int]:
        counts: Counter[int] = Counter()
        files: list[tuple[Path, int]] = []
        current = self.path.stat() if self.path.exists() else None
        if current is not None and current.st_ino == self._inode:
            files.append((self.path, self._offset))
        else:
            rotated = [p for p in self.path.parent.glob(self.path.name + ".*") if p.stat().st_ino == self._inode]
            files.extend((p, self._offset) for p in rotated[:1])
            if current is not None:
                files.append((self.path, 0))
        for path, offset in files:
            with path.open("rb") as f:
                f.seek(offset)
                for line in f:
                    match = self._LINE.search(line.decode("latin-1"))
                    if match:
                        counts[int(match.group(1))] += 1
        return counts


def op_table(samples: list[Sample], seconds: float) -> dict[str, dict[str, Any]]:
    """Per operation: count, failures by kind, successful operations per second, p50/p99 (ms) of the successes."""
    ops: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        ops[s.op].append(s)
    out = {}
    for op, items in sorted(ops.items()):
        ok = np.array([s.seconds for s in items if s.error is None])
        errors = Counter(s.error for s in items if s.error is not None)
        out[op] = {
            "count": len(items), "ok": int(ok.size), "failed": len(items) - int(ok.size),
            "errors": dict(errors),
            "throughput_per_s": round(ok.size / seconds, 3) if seconds > 0 else 0.0,
            "p50_ms": round(float(np.percentile(ok, 50)) * 1000, 2) if ok.size else None,
            "p99_ms": round(float(np.percentile(ok, 99)) * 1000, 2) if ok.size else None,
        }
    return out


@dataclass
class SoakConfig:
    minutes: float = 5.0
    clients: int = 16
    """Half track (tracking clients), half predict; at least one of each."""
    artifact_sizes: tuple[int, ...] = (1_000, 100_000, 1_000_000)
    artifact_every: int = 10
    run_jobs: bool = True
    sample_every_s: float = 10.0
    warmup_s: float = 60.0
    """Memory growth is measured from the first sample after this (or after a fifth of the run if shorter)."""
    log_to_mlflow: bool = True
    keep_runs: bool = False
    """The soak's own runs are deleted after they were checked (``mlops gc`` removes their artifacts)."""


def soak(cfg: SoakConfig, progress: Callable[[str], None] = print) -> dict[str, Any]:
    platform = jobs.load_platform()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # thousands of checks, one line each
    seconds = cfg.minutes * 60.0
    tracking = max(1, cfg.clients // 2)
    predicting = max(1, cfg.clients - tracking)
    access = AccessLog(Path(platform["log_dir"]) / "nginx-access.log")
    memory: list[tuple[float, dict[str, int]]] = []
    load = Load(tracking, predicting, artifact_sizes=cfg.artifact_sizes, artifact_every=cfg.artifact_every,
                jobs_over_s=seconds if cfg.run_jobs else None, platform=platform)
    progress(f"soak: {tracking} tracking + {predicting} prediction clients for {cfg.minutes:g} min"
             f"{', with the scheduled jobs' if cfg.run_jobs else ''}")
    memory.append((0.0, jobs.service_memory(platform)))
    load.start()
    try:
        while load.elapsed < seconds:
            time.sleep(min(cfg.sample_every_s, max(0.0, seconds - load.elapsed)))
            memory.append((load.elapsed, jobs.service_memory(platform)))
            done = Counter(s.op for s in load.samples if s.error is None)
            failed = sum(1 for s in load.samples if s.error is not None)
            progress(f"soak: {load.elapsed:5.0f}/{seconds:.0f} s  predict {done['predict']}  "
                     f"log_batch {done['log_batch']}  artifacts "
                     f"{sum(v for k, v in done.items() if k.startswith('log_artifact'))}  failed {failed}")
    finally:
        load.stop()
    duration = load.elapsed
    progress(f"soak: checking {load.ledger.writes} acknowledged writes")
    lost = verify(load.ledger)
    statuses = access.statuses()
    # Warm-up: a fifth of the run (at most warmup_s) and every scheduled job once (a first backup allocates).
    warm = max(min(cfg.warmup_s, seconds / 5), load.jobs_first_pass_s or 0.0)
    base = next((m for t, m in memory if t >= warm), memory[-1][1])
    end = memory[-1][1]

    def growth(kind: str) -> dict[str, float | None]:
        return {name: round(end[name][kind] / base[name][kind] - 1.0, 4) if base[name][kind] else None
                for name in end}

    table = op_table(load.samples, duration)
    result = {
        "config": {**asdict(cfg), "tracking_clients": tracking, "predict_clients": predicting},
        "seconds": round(duration, 1),
        "operations": table,
        "acknowledged_writes": load.ledger.writes,
        "lost": lost[:50],
        "nginx_statuses": {str(k): v for k, v in sorted(statuses.items())},
        "memory_bytes": {"start": memory[0][1], "after_warmup": base, "end": end,
                         "samples": [{"t": round(t, 1), **m} for t, m in memory]},
        "warmup_s": warm,
        "rss_growth": growth("anon"),
        "pss_growth": growth("pss"),
        "summary": {
            "lost_writes": len(lost),
            "server_errors": sum(v for k, v in statuses.items() if k >= 500),
            "failed_operations": sum(v["failed"] for v in table.values()),
            # Anonymous memory (heaps) after warm-up: caches of a fixed size (shared buffers) filling up are
            # not growth; their share is in pss_growth.
            "max_rss_growth": max((v for v in growth("anon").values() if v is not None), default=0.0),
            "requests_per_s": round(sum(v["ok"] for v in table.values()) / duration, 1) if duration else 0.0,
        },
    }
    if not cfg.keep_runs:
        load.delete_runs()
    if cfg.log_to_mlflow:
        _log(result, load.samples)
    return result


def render(result: dict[str, Any]) -> str:
    lines = [f"{'operation':<22} {'ok':>7} {'failed':>6} {'per s':>8} {'p50 ms':>8} {'p99 ms':>8}  errors"]
    for op, v in result["operations"].items():
        errors = ", ".join(f"{k} x{n}" for k, n in v["errors"].items())
        p50 = f"{v['p50_ms']:.1f}" if v["p50_ms"] is not None else "-"
        p99 = f"{v['p99_ms']:.1f}" if v["p99_ms"] is not None else "-"
        lines.append(f"{op:<22} {v['ok']:>7} {v['failed']:>6} {v['throughput_per_s']:>8.2f} {p50:>8} {p99:>8}"
                     f"  {errors}")
    mem = result["memory_bytes"]
    lines.append("")
    lines.append(f"memory (MiB): PSS, and its anonymous part (heaps) whose growth after {result['warmup_s']:.0f} s "
                 f"of warm-up is max_rss_growth")
    lines.append(f"{'service':<12} {'PSS start':>10} {'warm':>8} {'end':>8} {'growth':>8}   "
                 f"{'anon start':>10} {'warm':>8} {'end':>8} {'growth':>8}")
    for name, end in mem["end"].items():
        row = f"{name:<12}"
        for kind, width in (("pss", 10), ("anon", 10)):
            g = result[f"{'rss' if kind == 'anon' else 'pss'}_growth"][name]
            row += (f" {mem['start'][name][kind] / 2**20:>{width}.1f} {mem['after_warmup'][name][kind] / 2**20:>8.1f}"
                    f" {end[kind] / 2**20:>8.1f} {'-' if g is None else f'{g:+.1%}':>8}  ")
        lines.append(row.rstrip())
    s = result["summary"]
    lines.append("")
    lines.append(f"{result['seconds']:.0f} s, {result['acknowledged_writes']} acknowledged writes: "
                 f"{s['lost_writes']} lost; {s['server_errors']} 5xx answered by nginx; "
                 f"{s['failed_operations']} operations failed; max anonymous memory growth after warm-up "
                 f"{s['max_rss_growth']:+.1%}")
    return "\n".join(lines)


def figure(result: dict[str, Any], samples: list[Sample]):  # noqa: ANN201 - matplotlib Figure
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_ops, ax_mem) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    end = max((s.start for s in samples), default=0.0)
    edges = np.arange(0.0, end + 10.0, 10.0)
    for op in result["operations"]:
        starts = [s.start for s in samples if s.op == op and s.error is None]
        if len(starts) > 20:
            counts, _ = np.histogram(starts, edges)
            ax_ops.plot(edges[:-1], counts / 10.0, label=op)
    failures = [s.start for s in samples if s.error is not None]
    if failures:
        ax_ops.plot(failures, [0] * len(failures), "rx", label="failed")
    ax_ops.set_ylabel("successful operations / s")
    ax_ops.legend(fontsize=7, ncol=3)
    points = result["memory_bytes"]["samples"]
    for k, name in enumerate(result["memory_bytes"]["end"]):
        color = f"C{k}"
        ax_mem.plot([p["t"] for p in points], [p[name]["pss"] / 2**20 for p in points], color=color,
                    marker=".", label=f"{name} PSS")
        ax_mem.plot([p["t"] for p in points], [p[name]["anon"] / 2**20 for p in points], color=color,
                    linestyle="--", label=f"{name} anonymous")
    ax_mem.set_yscale("log")
    ax_mem.set_ylabel("memory (MiB)")
    ax_mem.set_xlabel("seconds")
    ax_mem.legend(fontsize=7)
    fig.suptitle(f"mlops bench soak: {result['summary']['lost_writes']} lost writes, "
                 f"{result['summary']['server_errors']} 5xx")
    fig.tight_layout()
    return fig


def _log(result: dict[str, Any], samples: list[Sample]) -> None:
    import mlflow

    from mlops.settings import get_settings
    from training import tracking

    tracking.set_experiment(get_settings().experiment_name + "-bench")
    with mlflow.start_run(run_name="bench-soak"):
        tracking.log_params({"bench": "soak", "minutes": result["config"]["minutes"],
                             "clients": result["config"]["clients"], "cpus": os.cpu_count()})
        tracking.log_metrics({k: float(v) for k, v in result["summary"].items()})
        tracking.log_text(render(result), "bench_soak.txt")
        tracking.log_dict(result, "bench_soak.json")
        tracking.log_figure(figure(result, samples), "bench_soak.png")
