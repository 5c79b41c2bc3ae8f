"""Labelled feedback on served predictions (``monitoring.feedback``) and the accuracy it shows."""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from training.data import CLASS_NAMES

log = logging.getLogger(__name__)


class FeedbackError(ValueError):
    """Feedback that cannot be recorded (unknown label, malformed file); the message says which."""


@dataclass(frozen=True)
class Label:
    request_id: str
    item_index: int
    label: int


def parse_label(value: str) -> int:
    """A class name (``good``, ``defective``) or its index -> the index."""
    text = value.strip().lower()
    if text in CLASS_NAMES:
        return CLASS_NAMES.index(text)
    if text.isdigit() and int(text) < len(CLASS_NAMES):
        return int(text)
    raise FeedbackError(f"unknown label {value!r}: expected one of {list(CLASS_NAMES)} or 0..{len(CLASS_NAMES) - 1}")


MAX_ITEM_INDEX = 2**31 - 1
"""``monitoring.feedback.item_index`` is a PostgreSQL integer."""


def read_labels(path: Path) -> list[Label]:
    """A CSV with a header ``request_id,item_index,label`` (item_index may be empty: 0), UTF-8."""
    labels = []
    lineno = 1
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = {"request_id", "label"} - set(reader.fieldnames or [])
            if missing:
                raise FeedbackError(f"{path}: missing column(s) {sorted(missing)} "
                                    "(header: request_id,item_index,label)")
            for lineno, row in enumerate(reader, start=2):  # noqa: B007 - read by the error messages below
                labels.append(parse_row(row, f"{path}:{lineno}"))
    except UnicodeDecodeError as exc:
        raise FeedbackError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from exc
    except csv.Error as exc:
        raise FeedbackError(f"{path}:{lineno + 1}: not a readable CSV line ({exc})") from exc
    return labels


def parse_row(row: dict[str | None, Any], where: str) -> Label:
    """One label from a CSV row (or the command line's options as one); errors name ``where``."""
    request_id = row.get("request_id")
    if not isinstance(request_id, str) or not request_id.strip():
        raise FeedbackError(f"{where}: empty request_id")
    if len(request_id) > 256 or any(ord(c) < 32 or ord(c) == 127 for c in request_id):
        raise FeedbackError(f"{where}: request_id {request_id[:40]!r} is not 1-256 printable characters")
    if None in row:
        raise FeedbackError(f"{where}: more fields than the header names")
    item = (row.get("item_index") or "0").strip()
    if not (item.isascii() and item.isdigit()) or int(item) > MAX_ITEM_INDEX:
        raise FeedbackError(f"{where}: item_index {item[:40]!r} is not an integer from 0 to {MAX_ITEM_INDEX}")
    try:
        label = parse_label(row.get("label") or "")
    except FeedbackError as exc:
        raise FeedbackError(f"{where}: {exc}") from exc
    return Label(request_id.strip(), int(item), label)


def record_feedback(conn: Any, labels: Iterable[Label]) -> int:  # noqa: ANN401 - psycopg2 connection
    """Insert or correct labels (a repeated request_id/item_index overwrites the label); returns the count."""
    rows = [(x.request_id, x.item_index, x.label) for x in labels]
    with conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO monitoring.feedback (request_id, item_index, label) VALUES (%s, %s, %s) "
            "ON CONFLICT (request_id, item_index) DO UPDATE SET label = EXCLUDED.label, ts = now()",
            rows,
        )
    log.info("Recorded %d labels", len(rows))
    return len(rows)


@dataclass(frozen=True)
class FeedbackAccuracy:
    n: int
    correct: int

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.n if self.n else None


def _window(model_name: str, model_version: str | None, start: datetime, end: datetime) -> tuple[str, list[object]]:
    """The WHERE clause (on predictions ``p``) selecting a model's (or version's) predictions in ``[start, end)``."""
    where = "WHERE p.model_name = %s AND p.ts >= %s AND p.ts < %s"
    args: list[object] = [model_name, start, end]
    if model_version is not None:
        where += " AND p.model_version = %s"
        args.append(str(model_version))
    return where, args


def feedback_accuracy(conn: Any, model_name: str, model_version: str | None,  # noqa: ANN401
                      start: datetime, end: datetime) -> FeedbackAccuracy:
    """Accuracy of the predictions (of the version, if given) made in ``[start, end)`` that have labels."""
    where, args = _window(model_name, model_version, start, end)
    with conn.cursor() as cur:
        # S608: `where` is constant SQL from _window; every value goes in as a parameter.
        cur.execute("SELECT count(*), count(*) FILTER (WHERE f.label = p.predicted_class) FROM monitoring.feedback f "  # noqa: S608
                    "JOIN monitoring.predictions p USING (request_id, item_index) " + where, args)
        n, correct = cur.fetchone()
    conn.rollback()
    return FeedbackAccuracy(int(n), int(correct))


class NoLabelledSamples(LookupError):
    """Labels exist but serving kept none of their images (``monitoring.samples``); the message says how many."""

    def __init__(self, message: str, labelled: int) -> None:
        super().__init__(message)
        self.labelled = labelled


@dataclass
class LabelledExamples:
    """Labelled served images as model input: ``images (N, 3, S, S)``, ``labels (N,)``, their ``request_id:item``."""

    images: Any  # torch.Tensor
    labels: Any  # torch.Tensor
    keys: list[str]
    labelled: int  # labels found in the window (with or without a sampled image)

    @property
    def missing(self) -> int:
        """Labels whose image serving did not sample (left out; logged)."""
        return self.labelled - len(self.keys)

    def __len__(self) -> int:
        return len(self.keys)

    def split(self, share: float) -> tuple[LabelledExamples, LabelledExamples]:
        """(retraining part, held-out part): :func:`held_out` decides per example, the same way every time."""
        import torch

        mask = [held_out(k, share) for k in self.keys]
        parts = []
        for want in (False, True):
            idx = [i for i, m in enumerate(mask) if m == want]
            index = torch.tensor(idx, dtype=torch.long)
            parts.append(LabelledExamples(self.images[index], self.labels[index], [self.keys[i] for i in idx],
                                          len(idx)))
        return parts[0], parts[1]


def held_out(key: str, share: float) -> bool:
    """Whether the labelled example ``request_id:item`` belongs to the gate's held-out set (stable hash).

    No retraining ever trains on a held-out example, so every candidate and champion can be judged on them.
    """
    import hashlib

    digest = hashlib.sha256(f"mlops.holdout:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < share * 2**64


def _decode(png: bytes | memoryview, image_size: int) -> Any:  # noqa: ANN401 - torch.Tensor (1, 3, S, S)
    """A sampled PNG from ``monitoring.samples`` as a model input (the one preprocessing, training.data)."""
    import io

    from PIL import Image

    from training.data import preprocess

    with Image.open(io.BytesIO(bytes(png))) as img:
        return preprocess(img, image_size)


def labelled_examples(conn: Any, model_name: str, start: datetime, end: datetime,  # noqa: ANN401
                      image_size: int, model_version: str | None = None) -> LabelledExamples:
    """Feedback joined with the sampled images of the predictions of ``model_name`` made in ``[start, end)``.

    Images are decoded from their PNGs and preprocessed (:func:`training.data.preprocess`) to
    ``image_size``. Labels without a sampled image are counted and logged; if there are labels but
    not one sampled image, :class:`NoLabelledSamples` says so. No labels at all: an empty result.
    """
    import torch

    where, args = _window(model_name, model_version, start, end)
    with conn.cursor() as cur:
        cur.execute("SELECT f.request_id, f.item_index, f.label, s.image FROM monitoring.feedback f "  # noqa: S608
                    "JOIN monitoring.predictions p USING (request_id, item_index) "
                    "LEFT JOIN monitoring.samples s USING (request_id, item_index) "
                    + where + " ORDER BY p.ts, f.request_id, f.item_index", args)
        rows = cur.fetchall()
    conn.rollback()
    tensors, labels, keys = [], [], []
    for request_id, item, label, png in rows:
        if png is None:
            continue
        tensors.append(_decode(png, image_size))
        labels.append(int(label))
        keys.append(f"{request_id}:{item}")
    missing = len(rows) - len(keys)
    where = f"predictions of {model_name} in [{start.isoformat()}, {end.isoformat()})"
    if rows and not keys:
        raise NoLabelledSamples(f"{len(rows)} labelled {where} but none has a sampled image in monitoring.samples "
                                f"(serving keeps MLOPS_SERVE_SAMPLE_RATE of requests): nothing to retrain on",
                                len(rows))
    if missing:
        log.warning("%d of %d labelled %s have no sampled image (MLOPS_SERVE_SAMPLE_RATE): left out", missing,
                    len(rows), where)
    log.info("%d labelled examples with images from %s", len(keys), where)
    images = torch.cat(tensors) if tensors else torch.empty((0, 3, image_size, image_size))
    return LabelledExamples(images, torch.tensor(labels, dtype=torch.long), keys, len(rows))


@dataclass
class SampledImages:
    """Served images serving sampled (``monitoring.samples``) as model inputs, with their ``request_id:item``."""

    images: Any  # torch.Tensor (N, 3, S, S)
    keys: list[str]

    def __len__(self) -> int:
        return len(self.keys)


def sampled_images(conn: Any, model_name: str, windows: Sequence[tuple[datetime, datetime]],  # noqa: ANN401
                   image_size: int, max_images: int) -> SampledImages:
    """The sampled images (labelled or not) of the predictions of ``model_name`` in the ``[start, end)`` windows.

    At most ``max_images`` in all (a fixed pseudo-random subset, an equal share per window).
    """
    import torch

    tensors, keys = [], []
    per_window = -(-max_images // max(1, len(windows)))
    for start, end in windows:
        where, args = _window(model_name, None, start, end)
        with conn.cursor() as cur:
            cur.execute("SELECT request_id, item_index, image FROM (SELECT s.request_id, s.item_index, s.image, p.ts "  # noqa: S608
                        "FROM monitoring.samples s JOIN monitoring.predictions p USING (request_id, item_index) "
                        + where + " ORDER BY md5(s.request_id || ':' || s.item_index) LIMIT %s) AS chosen "
                        "ORDER BY ts, request_id, item_index", [*args, per_window])
            rows = cur.fetchall()
        conn.rollback()
        for request_id, item, png in rows:
            tensors.append(_decode(png, image_size))
            keys.append(f"{request_id}:{item}")
    images = torch.cat(tensors) if tensors else torch.empty((0, 3, image_size, image_size))
    return SampledImages(images, keys)
