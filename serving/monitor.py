"""Monitoring records off the request path: a queue, one writer thread, batched inserts.

A request only enqueues its tensors and predictions (microseconds). The writer thread computes
the image statistics (:func:`training.features.feature_rows`) and, where the serving variant did
not return it, the pooled embedding (``CustomVGG.embed`` of the same version), then inserts rows
into ``monitoring.predictions`` in batches. :meth:`MonitoringWriter.close` (worker shutdown)
drains the queue: a clean shutdown loses nothing.

When the store is unreachable (PostgreSQL down or restarting), rows are kept in a backlog of at most
``max_buffered_rows`` and written, oldest first, once it answers again (retried with a backoff of up
to ``max_backoff_s``). Rows beyond the bound are dropped oldest first; every dropped row is counted
(``dropped``, exported by serving's ``/metrics``) and logged, never lost silently.

For a share of requests (``sample_rate``, chosen by :func:`sampled` from a hash of the request id,
so the same id is always in or out), the same transaction also stores each input image as a PNG
(the decoded RGB picture at the model's input size, recovered exactly from the normalised tensor)
in ``monitoring.samples``: with ``mlops feedback`` labels, the examples retraining adds.
"""

from __future__ import annotations

import collections
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
                 sample_rate: float = 0.0, max_buffered_rows: int = 20_000, max_backoff_s: float = 10.0) -> None:
        sampled("", sample_rate)  # validates the rate
        if max_buffered_rows < 1:
            raise ValueError(f"max_buffered_rows must be at least 1, got {max_buffered_rows}")
        self.sample_rate = sample_rate
        self.batch_rows = batch_rows
        self.flush_s = flush_s
        self.max_buffered_rows = max_buffered_rows
        self.max_backoff_s = max_backoff_s
        self._queue: queue.Queue[Record | None] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._conn = None
        self._schema_ok = False
        # Rows computed but not yet stored: (prediction rows, sample rows) per batch, oldest first.
        self._backlog: collections.deque[tuple[list[tuple], list[tuple]]] = collections.deque()
        self._backlog_rows = 0
        self._failures = 0
        self._retry_at = 0.0
        self.written = 0
        self.samples_written = 0
        self.dropped = 0
        self.last_error: str | None = None

    def start(self) -> None:
        """Start the writer thread. The store is connected to lazily: serving starts while PostgreSQL is down."""
        monitoring.connection_kwargs()  # a missing configuration is an error now, not rows dropped later
        try:
            self._connect()
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            self._failed(exc)
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

    @property
    def buffered_rows(self) -> int:
        """Rows waiting for the store to answer again."""
        return self._backlog_rows

    def close(self, timeout: float = 60.0) -> None:
        """Drain and stop (called once at shutdown); what cannot be stored by then is counted as dropped."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        if self._backlog_rows:
            self._drop_oldest(self._backlog_rows, "the store was still unreachable at shutdown")
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
                    self._buffer(self._rows(batch), self._sample_rows(batch))
                except Exception as exc:  # noqa: BLE001 - a record that cannot be turned into rows
                    n = sum(len(r.classes) for r in batch)
                    self.dropped += n
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.error("Monitoring rows could not be computed, %d dropped: %s", n, exc)
            if self._backlog and (stop or time.monotonic() >= self._retry_at):
                self._flush(final=stop)

    def _buffer(self, rows: list[tuple], samples: list[tuple]) -> None:
        self._backlog.append((rows, samples))
        self._backlog_rows += len(rows)
        excess = self._backlog_rows - self.max_buffered_rows
        if excess > 0:
            self._drop_oldest(excess, f"more than {self.max_buffered_rows} rows waiting for the store")

    def _drop_oldest(self, count: int, why: str) -> None:
        dropped = 0
        while self._backlog and dropped < count:
            rows, _ = self._backlog.popleft()
            dropped += len(rows)
        self._backlog_rows -= dropped
        self.dropped += dropped
        log.error("Monitoring rows dropped: %d (%s; %d dropped in all)", dropped, why, self.dropped)

    def _connect(self) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = monitoring.connect(application_name="mlops-serving")
        if not self._schema_ok:
            monitoring.ensure_schema(self._conn)
            self._schema_ok = True

    def _failed(self, exc: Exception) -> None:
        self._failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}".strip()
        backoff = min(self.max_backoff_s, 0.5 * 2 ** min(self._failures, 10))
        self._retry_at = time.monotonic() + backoff
        if self._failures == 1:
            log.warning("Monitoring store unreachable, buffering rows (at most %d): %s",
                        self.max_buffered_rows, self.last_error)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _flush(self, final: bool = False) -> None:
        """Write the backlog oldest first, one transaction per batch, until it is empty or the store fails."""
        attempts = 3 if final else 1
        while self._backlog:
            rows, samples = self._backlog[0]
            try:
                self._connect()
                with self._conn, self._conn.cursor() as cur:  # type: ignore[union-attr]
                    psycopg2.extras.execute_values(cur, _INSERT, rows, page_size=500)
                    if samples:
                        psycopg2.extras.execute_values(cur, _INSERT_SAMPLES, samples, page_size=100)
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                self._failed(exc)
                attempts -= 1
                if attempts <= 0:
                    return
                time.sleep(min(self.max_backoff_s, 1.0))
                continue
            except psycopg2.Error as exc:  # the rows themselves are refused: retrying cannot help
                self._backlog.popleft()
                self._backlog_rows -= len(rows)
                self.dropped += len(rows)
                self.last_error = f"{type(exc).__name__}: {exc}".strip()
                log.error("Monitoring insert refused, %d rows dropped: %s", len(rows), exc)
                continue
            self._backlog.popleft()
            self._backlog_rows -= len(rows)
            self.written += len(rows)
            self.samples_written += len(samples)
            if self._failures:
                log.info("Monitoring store reachable again; %d rows still buffered", self._backlog_rows)
                self._failures = 0
                self.last_error = None

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
