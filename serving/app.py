"""The serving app: ``models:/NAME@champion`` behind ``POST /predict``, with hot swap and monitoring.

Endpoints: ``POST /predict`` (JSON, base64 images; schema in the OpenAPI document at
``/openapi.json``), ``GET /health``, ``GET /metrics`` (Prometheus), ``GET /model``.

Each worker process (gunicorn managing uvicorn workers, see :mod:`serving.server`):

* loads the champion in a background thread (``/health`` says ``loading`` until then) and polls the
  alias every ``serve_poll_interval_s``; a new version is loaded and checked beside the old one and
  swapped in as a whole. A batch keeps the model it started with, so in-flight requests finish on
  the old model and none fails. A failed load keeps the old model serving and is reported on
  ``/health`` (``load_error``);
* batches concurrent requests opportunistically: while one batch runs, the next requests queue and
  run together (no added wait when idle). One inference thread per worker;
* hands each prediction to :class:`serving.monitor.MonitoringWriter` (off the request path);
* keeps its Prometheus metrics in files shared with the other workers (:class:`Metrics`): ``/metrics``, answered
  by whichever worker gets the scrape, reports the whole server.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime as dt
import io
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, Field, ValidationError
from starlette.requests import ClientDisconnect

from mlops.settings import get_settings
from mlops.tracking import load_client_env
from serving.logins import LoginCheck, LoginMiddleware
from serving.models import Served, load_served
from serving.monitor import MonitoringWriter, Record
from training.data import CLASS_NAMES, preprocess

log = logging.getLogger(__name__)

MAX_PIXELS = 4096 * 4096
EXAMPLE_PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR42mM8sWUBAwMDEwMDAwMDAwAZogIgTXkKZgAAAABJR"
               "U5ErkJggg==")
"""A real 2x2 PNG: the OpenAPI example predicts as it is ("Try it out" at /docs)."""


# --- request / response schema (published in OpenAPI) -------------------------------------------


class PredictRequest(BaseModel):
    """Either ``image`` (one) or ``images`` (a batch): base64-encoded PNG/JPEG/BMP files."""

    model_config = {"extra": "forbid", "json_schema_extra": {"examples": [{"images": [EXAMPLE_PNG]}]}}

    image: str | None = Field(None, description="One base64-encoded image file (PNG, JPEG or BMP).")
    images: list[str] | None = Field(None, description="A batch of base64-encoded image files.")


class Prediction(BaseModel):
    label: str = Field(description="good | defective")
    class_index: int
    confidence: float = Field(description="Softmax probability of the predicted class.")
    probabilities: dict[str, float]


class ModelRef(BaseModel):
    name: str
    version: str
    alias: str
    variant: str


class PredictResponse(BaseModel):
    request_id: str
    model: ModelRef
    predictions: list[Prediction]


class BadInput(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def decode_images(body: bytes, image_size: int) -> torch.Tensor:
    """Raw request body → model inputs ``(N, 3, S, S)``; :class:`BadInput` naming the problem otherwise."""
    s = get_settings()
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(400, f"request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # [[[[... or {"a":{"a":... thousands of levels deep
        raise BadInput(400, "request body is JSON nested too deeply: send {\"image\": ...} or "
                       "{\"images\": [...]}") from exc
    if not isinstance(payload, dict):
        raise BadInput(422, "request body must be a JSON object with 'image' or 'images'")
    try:
        req = PredictRequest.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise BadInput(422, f"invalid request at '{where}': {first['msg']}") from exc
    if req.image is not None and req.images is not None:
        raise BadInput(422, "give either 'image' or 'images', not both")
    items = [req.image] if req.image is not None else req.images
    if items is None:
        raise BadInput(422, "request has neither 'image' nor 'images'")
    if not items:
        raise BadInput(422, "'images' is empty: send at least one image")
    if len(items) > s.serve_max_batch:
        raise BadInput(413, f"batch of {len(items)} images is over the limit of {s.serve_max_batch}")
    tensors = []
    for i, text in enumerate(items):
        name = "image" if req.image is not None else f"images[{i}]"
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadInput(422, f"{name} is not valid base64") from exc
        if len(raw) > s.serve_max_image_bytes:
            raise BadInput(413, f"{name} is {len(raw)} bytes, over the limit of {s.serve_max_image_bytes}")
        try:
            with Image.open(io.BytesIO(raw)) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise BadInput(413, f"{name} is {img.width}x{img.height} pixels, over the limit of {MAX_PIXELS}")
                img.load()
                tensors.append(preprocess(img, image_size))
        except Image.DecompressionBombError as exc:  # a header declaring far more pixels than the file holds
            raise BadInput(413, f"{name} declares more than {MAX_PIXELS} pixels: {exc}") from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise BadInput(422, f"{name} is not a readable image (PNG, JPEG or BMP): {exc}") from exc
    return torch.cat(tensors)


# --- model holder with hot swap ------------------------------------------------------------------


class ModelHolder:
    def __init__(self, name: str, alias: str) -> None:
        self.name = name
        self.alias = alias
        self.current: Served | None = None
        self.state = "starting"
        self.load_error: dict[str, str] | None = None
        self._failed_version: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.swaps = 0
        self.load_failures = 0
        """Failed attempts to load the alias's version (``mlops_serving_model_load_errors_total``)."""

    @property
    def load_failed(self) -> bool:
        """The alias points at a version this worker failed to load (it serves an older one, or nothing)."""
        return self._failed_version is not None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="model-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _target_version(self, client: Any) -> str | None:  # noqa: ANN401 - MlflowClient
        from mlops.registry import version_by_alias

        mv = version_by_alias(client, self.name, self.alias, retried=False)  # the loop polls again anyway
        return None if mv is None else str(mv.version)

    def _loop(self) -> None:
        from mlflow import MlflowClient
        from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR, MLFLOW_HTTP_REQUEST_MAX_RETRIES

        # The serving process's registry calls (this loop's, and the model downloads it starts) give up within
        # seconds; an explicit MLflow setting in the environment still wins.
        if not MLFLOW_HTTP_REQUEST_MAX_RETRIES.is_set():
            MLFLOW_HTTP_REQUEST_MAX_RETRIES.set(get_settings().serve_registry_retries)
        if not MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.is_set():
            MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.set(1)
        client = MlflowClient()
        interval = get_settings().serve_poll_interval_s
        while not self._stop.is_set():
            try:
                target = self._target_version(client)
                current = self.current.version if self.current else None
                if target is None:
                    self.state = "serving" if self.current else "no_model"
                    if self.current is None:
                        self.load_error = {"version": "-", "error": f"{self.name!r} has no {self.alias!r} alias yet"}
                elif target == current:
                    if self.load_error is not None:  # the alias points back at what we serve: nothing failing
                        log.info("%s@%s is version %s again, which is serving", self.name, self.alias, current)
                    self.load_error = None
                    self._failed_version = None
                    self.state = "serving"
                elif target != self._failed_version:
                    self.state = "swapping" if self.current else "loading"
                    log.info("Loading %s version %s (%s)", self.name, target, self.alias)
                    try:
                        served = load_served(client, self.name, self.alias)
                    except Exception as exc:  # noqa: BLE001 - keep the old model; show why on /health
                        self.load_failures += 1
                        self._failed_version = target
                        self.load_error = {"version": target, "error": f"{type(exc).__name__}: {exc}"}
                        log.exception("Loading %s version %s failed; still serving %s", self.name, target, current)
                    else:
                        self.current = served  # the swap: one reference assignment
                        self.swaps += 1
                        self.load_error = None
                        self._failed_version = None
                    self.state = "serving" if self.current else "load_failed"
            except Exception as exc:  # noqa: BLE001 - registry unreachable: keep serving, retry
                self.load_error = {"version": "?", "error": f"cannot reach the registry: {type(exc).__name__}: {exc}"}
                log.warning("Polling %s@%s failed: %s", self.name, self.alias, exc)
            self._stop.wait(interval)


# --- opportunistic batching ----------------------------------------------------------------------


@dataclass
class _Job:
    x: torch.Tensor
    future: asyncio.Future  # type: ignore[type-arg]
    queued: float = field(default_factory=time.perf_counter)


class Batcher:
    """Runs queued requests together on one inference thread, each batch on one model version."""

    def __init__(self, holder: ModelHolder, max_batch: int,
                 observe_wait: Callable[[float], None] | None = None) -> None:
        self.holder = holder
        self.max_batch = max_batch
        self.observe_wait = observe_wait
        """Called with each request's wait (seconds from queued to its batch's inference starting)."""
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="inference")
        self._carry: _Job | None = None
        self._task: asyncio.Task | None = None  # type: ignore[type-arg]

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def submit(self, x: torch.Tensor) -> tuple[Served, torch.Tensor, torch.Tensor | None]:
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put(_Job(x, fut))
        return await fut

    async def stop(self) -> None:
        if self._task:
            while not self.queue.empty() or self._carry is not None:
                await asyncio.sleep(0.01)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.executor.shutdown(wait=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = self._carry or await self.queue.get()
            self._carry = None
            jobs, n = [first], first.x.shape[0]
            while n < self.max_batch:
                try:
                    job = self.queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if n + job.x.shape[0] > self.max_batch:
                    self._carry = job
                    break
                jobs.append(job)
                n += job.x.shape[0]
            served = self.holder.current  # the version this batch runs on, whatever swaps meanwhile
            if served is None:
                for j in jobs:
                    j.future.set_exception(RuntimeError("no model loaded"))
                continue
            sizes = {j.x.shape[-1] for j in jobs}
            try:
                if sizes != {served.image_size}:  # decoded for another version's input size: redo
                    raise _Resize
                x = torch.cat([j.x for j in jobs])
                if self.observe_wait is not None:
                    started = time.perf_counter()
                    for j in jobs:
                        self.observe_wait(started - j.queued)
                emb, logits = await loop.run_in_executor(self.executor, served.predict, x)
            except _Resize:
                for j in jobs:
                    j.future.set_result((served, None, None))
                continue
            except Exception as exc:  # noqa: BLE001
                for j in jobs:
                    if not j.future.done():
                        j.future.set_exception(exc)
                continue
            i = 0
            for j in jobs:
                k = j.x.shape[0]
                if not j.future.done():
                    j.future.set_result((served, logits[i : i + k], None if emb is None else emb[i : i + k]))
                i += k


class _Resize(Exception):
    pass


# --- metrics -------------------------------------------------------------------------------------


METRICS_SYNC_S = 1.0
"""How often each worker copies what it holds elsewhere (served model, writer counts) into its metrics."""


class Metrics:
    """The worker's Prometheus metrics; ``/metrics`` reports those of every worker of the server.

    Under ``mlops serve`` (:mod:`serving.server`) ``PROMETHEUS_MULTIPROC_DIR`` names a private directory where
    each worker keeps its values in its own files, and :meth:`render` reads them all (prometheus_client's
    multiprocess mode): counters and histograms add up over the workers, those that exited included (their
    requests happened); gauges combine as their ``multiprocess_mode`` says, over live workers only (the master
    marks an exited worker dead). Without the variable (one process: tests, the app run directly) the same
    metrics live in this object's registry.

    What a worker holds elsewhere (the model it serves, its load failures, the monitoring writer's counts) is
    copied in by :meth:`sync`, every ``METRICS_SYNC_S`` in each worker and before answering a scrape.
    """

    def __init__(self, multiproc_dir: str | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        from prometheus_client.multiprocess import MultiProcessCollector

        self.multiproc_dir = multiproc_dir if multiproc_dir is not None else os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        # Multiprocess mode: the metrics write files and register nowhere; a scrape reads the files.
        reg = None if self.multiproc_dir else CollectorRegistry()
        self.requests = Counter("mlops_serving_requests_total", "HTTP requests by endpoint and status",
                                ["endpoint", "status"], registry=reg)
        self.latency = Histogram("mlops_serving_request_latency_seconds", "Request latency by endpoint", ["endpoint"],
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                                 registry=reg)
        self.queue_wait = Histogram(
            "mlops_serving_queue_wait_seconds",
            "Seconds a /predict request waited, after its images were decoded, for its inference batch to start "
            "(queued behind the batch running on the worker's one inference thread; about 0 when the worker is "
            "idle). Counted for requests whose batch ran on a model.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=reg)
        self.images = Counter("mlops_serving_images_total", "Images predicted", ["model_version", "variant"],
                              registry=reg)
        self.model_info = Gauge("mlops_serving_model_info",
                                "Model versions being served (value 1): one series per version a live worker serves",
                                ["model_name", "model_version", "alias", "variant"], registry=reg,
                                multiprocess_mode="livemax")
        self.model_load_errors = Counter(
            "mlops_serving_model_load_errors_total",
            "Failed attempts to load the version the served alias points to (per worker: each worker loads its own)",
            registry=reg)
        self.degraded = Gauge(
            "mlops_serving_degraded",
            "1 while a worker does not serve the version its alias points to because loading it failed (an older "
            "version or nothing is served); else 0. Not for a missing alias (no champion yet) or an unreachable "
            "registry, which /health also reports in load_error", registry=reg, multiprocess_mode="livemax")
        self.batch_size = Histogram("mlops_serving_batch_images", "Images per inference batch",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=reg)
        self.monitoring_pending = Gauge("mlops_serving_monitoring_pending", "Records waiting for the writer",
                                        registry=reg, multiprocess_mode="livesum")
        self.rows_written = Counter("mlops_serving_monitoring_rows_written", "Monitoring rows stored", registry=reg)
        self.rows_dropped = Counter("mlops_serving_monitoring_rows_dropped",
                                    "Monitoring rows dropped (queue full, buffer bound, refused)", registry=reg)
        self.buffered_rows = Gauge("mlops_serving_monitoring_buffered_rows",
                                   "Rows waiting for the monitoring store to answer", registry=reg,
                                   multiprocess_mode="livesum")
        source = MultiProcessCollector(None, self.multiproc_dir) if self.multiproc_dir else reg
        self.exposition = CollectorRegistry(auto_describe=False)
        self.exposition.register(_ServedOnly(source))
        self._shown: tuple[str, ...] | None = None
        self._copied = {"load_failures": 0, "written": 0, "dropped": 0}

    def sync(self, holder: ModelHolder, writer: MonitoringWriter | None) -> None:
        """Copy the worker's state into its metrics (counters by the increase since the last call)."""
        self.show_model(holder.current)
        self.degraded.set(1 if holder.load_failed else 0)
        self._add(self.model_load_errors, "load_failures", holder.load_failures)
        self.monitoring_pending.set(writer.pending if writer else 0)
        self.buffered_rows.set(writer.buffered_rows if writer else 0)
        if writer is not None:
            self._add(self.rows_written, "written", writer.written)
            self._add(self.rows_dropped, "dropped", writer.dropped)

    def _add(self, counter: Any, key: str, total: int) -> None:  # noqa: ANN401 - prometheus_client Counter
        if total > self._copied[key]:
            counter.inc(total - self._copied[key])
            self._copied[key] = total

    def show_model(self, served: Served | None) -> None:
        if served is None:
            return
        labels = (served.name, served.version, served.alias, served.variant)
        if labels != self._shown:
            # Not remove(): multiprocess mode cannot delete a series from the files. 0 = no longer served here;
            # the exposition leaves out series at 0.
            if self._shown:
                self.model_info.labels(*self._shown).set(0)
            self.model_info.labels(*labels).set(1)
            self._shown = labels

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.exposition)


class _ServedOnly:
    """Collector over ``source`` that leaves out ``mlops_serving_model_info`` series at 0 (versions a worker no
    longer serves: with ``livemax``, a version still served by another live worker keeps its 1)."""

    def __init__(self, source: Any) -> None:  # noqa: ANN401 - a registry or prometheus_client collector
        self.source = source

    def collect(self) -> Iterator[Any]:
        for family in self.source.collect():
            if family.name == "mlops_serving_model_info":
                family.samples = [s for s in family.samples if s.value != 0]
            yield family


# --- the app -------------------------------------------------------------------------------------


def create_app() -> FastAPI:
    """Application factory (gunicorn: ``serving.app:create_app()``)."""
    s = get_settings()
    load_client_env()
    if s.serve_threads:
        torch.set_num_threads(s.serve_threads)
    holder = ModelHolder(s.model_name, s.serve_alias)
    metrics = Metrics()
    writer: MonitoringWriter | None = None
    monitoring_status = "disabled (MLOPS_SERVE_MONITORING=false)"
    logins = LoginCheck(os.environ.get("MLFLOW_TRACKING_URI", ""),
                        os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or True, s.serve_login_cache_s,
                        s.serve_login_stale_s)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal writer, monitoring_status
        if s.serve_monitoring:
            try:
                w = MonitoringWriter(s.serve_monitoring_batch, s.serve_monitoring_flush_s,
                                     sample_rate=s.serve_sample_rate, max_buffered_rows=s.serve_monitoring_buffer_rows)
                w.start()
                writer, monitoring_status = w, "ok"
            except Exception as exc:  # noqa: BLE001 - serve without monitoring, say so on /health
                monitoring_status = f"unavailable: {type(exc).__name__}: {exc}"
                log.error("Monitoring store unavailable, predictions are not recorded: %s", exc)
        holder.start()
        app.state.batcher = Batcher(holder, s.serve_max_batch, metrics.queue_wait.observe)
        app.state.batcher.start()
        sync = asyncio.get_running_loop().create_task(_sync_metrics(metrics, holder, lambda: writer))
        log.info("Serving worker %d ready (model %s@%s)", os.getpid(), holder.name, holder.alias)
        yield
        sync.cancel()
        holder.stop()
        await app.state.batcher.stop()
        if writer is not None:
            writer.close()
        await logins.close()

    app = FastAPI(
        title="Pill quality model serving",
        description="Predicts good/defective for pill images with the registered champion model.",
        version="1",
        lifespan=lifespan,
    )
    app.add_middleware(LoginMiddleware, check=logins)

    def error(status: int, detail: str, request_id: str | None = None) -> JSONResponse:
        headers = {"X-Request-ID": request_id} if request_id else None
        return JSONResponse({"detail": detail, "request_id": request_id}, status_code=status, headers=headers)

    @app.post(
        "/predict",
        response_model=PredictResponse,
        summary="Predict good/defective for one image or a batch",
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": PredictRequest.model_json_schema()}}}},
        responses={400: {"description": "Body is not JSON"}, 413: {"description": "Over a size limit"},
                   422: {"description": "Wrong shape, empty batch, not base64, not an image"},
                   503: {"description": "No model loaded yet"}},
    )
    async def predict(request: Request) -> Response:
        start = time.perf_counter()
        request_id = request.headers.get("x-request-id") or os.urandom(16).hex()
        status = 200
        try:
            length = request.headers.get("content-length")
            if length and length.isdigit() and int(length) > s.serve_max_body_bytes:
                status = 413
                return error(413, f"request body is {length} bytes, over the limit of {s.serve_max_body_bytes}",
                             request_id)
            parts, size = [], 0
            async for part in request.stream():  # a chunked body has no length up front: stop at the limit
                size += len(part)
                if size > s.serve_max_body_bytes:
                    status = 413
                    return error(413, f"request body is over the limit of {s.serve_max_body_bytes} bytes",
                                 request_id)
                parts.append(part)
            body = b"".join(parts)
            served = holder.current
            if served is None:
                status = 503
                return error(503, f"no model loaded yet ({holder.state}): "
                             f"{(holder.load_error or {}).get('error', 'loading')}", request_id)
            for _ in range(3):  # a swap to a model with another input size between decode and inference
                try:
                    x = decode_images(body, served.image_size)
                except BadInput as exc:
                    status = exc.status
                    kind = request.headers.get("content-type", "").split(";")[0].strip()
                    hint = f" (sent as {kind[:60]}; send application/json)" if status == 400 and kind and \
                        "json" not in kind else ""
                    return error(exc.status, exc.detail + hint, request_id)
                used, logits, emb = await app.state.batcher.submit(x)
                if logits is not None:
                    break
                served = used
            else:
                status = 503
                return error(503, "the model changed input size repeatedly; retry", request_id)
            rows = torch.softmax(logits, dim=1).tolist()
            cls = [max(range(len(row)), key=row.__getitem__) for row in rows]
            metrics.images.labels(used.version, used.variant).inc(len(cls))
            metrics.batch_size.observe(len(cls))
            if writer is not None:
                writer.put(Record(request_id, dt.datetime.now(dt.UTC), used.name, used.version, used.variant, x,
                                  cls, [row[c] for c, row in zip(cls, rows, strict=True)], emb, used.fp32))
            # PredictResponse's shape as plain data: cheaper per request than building pydantic objects
            out = {"request_id": request_id,
                   "model": {"name": used.name, "version": used.version, "alias": used.alias, "variant": used.variant},
                   "predictions": [{"label": CLASS_NAMES[c], "class_index": c, "confidence": row[c],
                                    "probabilities": dict(zip(CLASS_NAMES, row, strict=True))}
                                   for c, row in zip(cls, rows, strict=True)]}
            return Response(json.dumps(out, separators=(",", ":")).encode(), media_type="application/json",
                            headers={"X-Request-ID": request_id})
        except ClientDisconnect:  # the client left before sending its whole body: nobody to answer
            status = 499
            return error(499, "client closed the connection before sending the whole body", request_id)
        except Exception:
            status = 500
            log.exception("Request %s failed", request_id)
            return error(500, "internal error while predicting (see the serving log)", request_id)
        finally:
            metrics.requests.labels("/predict", str(status)).inc()
            metrics.latency.labels("/predict").observe(time.perf_counter() - start)

    @app.get("/health", summary="Serving health: 200 when a model is loaded, 503 otherwise")
    async def health() -> JSONResponse:
        served = holder.current
        body = {
            "status": "ok" if served and not holder.load_error else ("degraded" if served else holder.state),
            "model_name": holder.name, "alias": holder.alias,
            "model_version": served.version if served else None,
            "variant": served.variant if served else None,
            "variant_reason": served.variant_reason if served else None,
            "variant_checks": served.checks if served else None,
            "cpu": served.cpu if served else None,
            "load_error": holder.load_error,
            "monitoring": monitoring_status if writer is None or not writer.last_error else
            f"error: {writer.last_error}",
            "monitoring_pending": writer.pending if writer else 0,
            "monitoring_buffered_rows": writer.buffered_rows if writer else 0,
            "monitoring_dropped_rows": writer.dropped if writer else 0,
        }
        metrics.requests.labels("/health", "200" if served else "503").inc()
        return JSONResponse(body, status_code=200 if served else 503)

    @app.get("/model", summary="The model this worker serves: name, version, alias, run id, inference variant")
    async def model() -> JSONResponse:
        served = holder.current
        if served is None:
            return error(503, f"no model loaded yet ({holder.state})")
        return JSONResponse({**served.describe(), "load_error": holder.load_error, "swaps": holder.swaps})

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        metrics.sync(holder, writer)  # this worker's figures up to date; the others' are at most METRICS_SYNC_S old
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


async def _sync_metrics(metrics: Metrics, holder: ModelHolder,
                        writer: Callable[[], MonitoringWriter | None]) -> None:
    while True:
        try:
            metrics.sync(holder, writer())
        except Exception:  # noqa: BLE001 - metrics must never stop the worker
            log.exception("Updating the serving metrics failed")
        await asyncio.sleep(METRICS_SYNC_S)
