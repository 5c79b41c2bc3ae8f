"""Monitoring records off the request path: a queue, one writer thread, batched inserts.

A request only enqueues its tensors and predictions (microseconds). The writer thread computes
the image statistics (:func:`training.features.feature_rows`) and, where the serving variant did
not return it, the pooled embedding (``CustomVGG.embed`` of the same version), then inserts rows
into ``monitoring.predictions`` in batches. :meth:`MonitoringWriter.close` (worker shutdown)
drains the queue: a clean shutdown loses nothing.

For a share of requests (``sample_rate``, chosen by :func:`sampled` from a hash of the request id,
so the same id is always in or out), the same transaction also stores each input image as a PNG
(the decoded RGB picture at the model's input size, recovered exactly from the normalised tensor)
in ``monitoring.samples``: with ``mlops feedback`` labels, the examples retraining adds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np
import psycopg2.extras
import torch
from PIL import Image

from mlops import monitoring
from training.data import IMAGENET_MEAN, IMAGENET_STD
from training.features import feature_rows

log = logging.getLogger(__name__)


@dataclass
class Record:
    request_id: str
    ts: dt.datetime
    model_name: str
    model_version: str
    variant: str
    images: torch.Tensor
    classes: list[int]
    confidences: list[float]
    embeddings: torch.Tensor | None
    fp32: torch.nn.Module


_INSERT = """
INSERT INTO monitoring.predictions
    (request_id, item_index, ts, model_name, model_version, variant, predicted_class, confidence, features, embedding)
VALUES %s
ON CONFLICT (request_id, item_index) DO NOTHING
"""


_INSERT_SAMPLES = """
INSERT INTO monitoring.samples (request_id, item_index, ts, image) VALUES %s
ON CONFLICT (request_id, item_index) DO NOTHING
"""


def sampled(request_id: str, rate: float) -> bool:
    """Whether the request's images are kept: a stable hash of the id below ``rate`` (0: none, 1: all)."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"sample rate {rate} is outside 0..1 (MLOPS_SERVE_SAMPLE_RATE)")
    digest = hashlib.sha256(request_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Normalised model input ``(N, 3, S, S)`` -> the RGB pictures ``uint8 (N, S, S, 3)`` it was made from."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    x = (images.detach().float().cpu() * std + mean).mul_(255.0).round_().clamp_(0, 255)
    return x.to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def png_bytes(picture: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(picture, "RGB").save(buf, format="PNG")
    return buf.getvalue()


class MonitoringWriter:
    def __init__(self, batch_rows: int = 256, flush_s: float = 1.0, max_queue: int = 10_000,
                 sample_rate: float = 0.0) -> None:
        sampled("", sample_rate)  # validates the rate
        self.sample_rate = sample_rate
        self.batch_rows = batch_rows
        self.flush_s = flush_s
        self._queue: queue.Queue[Record | None] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._conn = None
        self.written = 0
        self.samples_written = 0
        self.dropped = 0
        self.last_error: str | None = None

    def start(self) -> None:
        conn = monitoring.connect(application_name="mlops-serving")
        monitoring.ensure_schema(conn)
        self._conn = conn
        self._thread = threading.Thread(target=self._run, name="monitoring-writer", daemon=True)
        self._thread.start()

    def put(self, record: Record) -> None:
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += len(record.classes)
            log.warning("Monitoring queue full: dropped %d records", len(record.classes))

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def close(self, timeout: float = 60.0) -> None:
        """Drain and stop (called once at shutdown)."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        if self._conn is not None:
            self._conn.close()
        log.info("Monitoring writer stopped: %d rows written (%d images sampled), %d dropped", self.written,
                 self.samples_written, self.dropped)

    def _run(self) -> None:
        stop = False
        while not stop:
            batch: list[Record] = []
            rows = 0
            deadline = time.monotonic() + self.flush_s
            while rows < self.batch_rows:
                timeout = max(0.0, deadline - time.monotonic())
                try:
                    item = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
                rows += len(item.classes)
            if stop:  # drain everything left
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None:
                        batch.append(item)
            if batch:
                try:
                    self._write(batch)
                except Exception as exc:  # noqa: BLE001 - keep serving; the error shows on /health
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    self.dropped += sum(len(r.classes) for r in batch)
                    log.error("Monitoring insert failed, %d rows lost: %s", sum(len(r.classes) for r in batch), exc)

    def _rows(self, batch: list[Record]) -> list[tuple]:
        out = []
        for r in batch:
            feats = feature_rows(r.images)
            emb = r.embeddings
            if emb is None:
                with torch.no_grad():
                    emb = r.fp32.embed(r.images)
            for i, (cls, conf) in enumerate(zip(r.classes, r.confidences, strict=True)):
                out.append((r.request_id, i, r.ts, r.model_name, r.model_version, r.variant, cls, conf,
                            json.dumps(feats[i]), [float(v) for v in emb[i].tolist()]))
        return out

    def _sample_rows(self, batch: list[Record]) -> list[tuple]:
        out = []
        for r in batch:
            if sampled(r.request_id, self.sample_rate):
                for i, picture in enumerate(to_uint8(r.images)):
                    out.append((r.request_id, i, r.ts, psycopg2.Binary(png_bytes(picture))))
        return out

    @monitoring.retry_db
    def _write(self, batch: list[Record]) -> None:
        rows = self._rows(batch)
        samples = self._sample_rows(batch)
        if self._conn is None or self._conn.closed:
            self._conn = monitoring.connect(application_name="mlops-serving")
        try:
            with self._conn, self._conn.cursor() as cur:
                psycopg2.extras.execute_values(cur, _INSERT, rows, page_size=500)
                if samples:
                    psycopg2.extras.execute_values(cur, _INSERT_SAMPLES, samples, page_size=100)
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            self._conn.close()
            raise
        self.written += len(rows)
        self.samples_written += len(samples)
        self.last_error = None
