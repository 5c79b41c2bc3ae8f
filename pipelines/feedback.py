"""Labelled feedback on served predictions (``monitoring.feedback``) and the accuracy it shows."""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable
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


def read_labels(path: Path) -> list[Label]:
    """A CSV with a header ``request_id,item_index,label`` (item_index may be empty: 0)."""
    labels = []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"request_id", "label"} - set(reader.fieldnames or [])
        if missing:
            raise FeedbackError(f"{path}: missing column(s) {sorted(missing)} (header: request_id,item_index,label)")
        for lineno, row in enumerate(reader, start=2):
            if not (row.get("request_id") or "").strip():
                raise FeedbackError(f"{path}:{lineno}: empty request_id")
            item = (row.get("item_index") or "0").strip()
            if not item.isdigit():
                raise FeedbackError(f"{path}:{lineno}: item_index {item!r} is not a non-negative integer")
            try:
                label = parse_label(row["label"] or "")
            except FeedbackError as exc:
                raise FeedbackError(f"{path}:{lineno}: {exc}") from exc
            labels.append(Label(row["request_id"].strip(), int(item), label))
    return labels


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


def feedback_accuracy(conn: Any, model_name: str, model_version: str | None,  # noqa: ANN401
                      start: datetime, end: datetime) -> FeedbackAccuracy:
    """Accuracy of the predictions (of the version, if given) made in ``[start, end)`` that have labels."""
    query = ("SELECT count(*), count(*) FILTER (WHERE f.label = p.predicted_class) FROM monitoring.feedback f "
             "JOIN monitoring.predictions p USING (request_id, item_index) "
             "WHERE p.model_name = %s AND p.ts >= %s AND p.ts < %s")
    args: list[object] = [model_name, start, end]
    if model_version is not None:
        query += " AND p.model_version = %s"
        args.append(str(model_version))
    with conn.cursor() as cur:
        cur.execute(query, args)
        n, correct = cur.fetchone()
    conn.rollback()
    return FeedbackAccuracy(int(n), int(correct))
