"""Reading one window of serving traffic from the monitoring store (``monitoring.predictions``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipelines.drift.windows import Window


@dataclass
class WindowData:
    features: list[dict[str, Any]]
    model_versions: list[str]
    predicted_class: np.ndarray
    confidence: np.ndarray
    embeddings: list[list[float]]


def load_window(conn: Any, model_name: str, window: Window) -> WindowData:  # noqa: ANN401 - psycopg2 connection
    """Every prediction of ``model_name`` recorded in the window (oldest first)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT features, model_version, predicted_class, confidence, embedding FROM monitoring.predictions "
            "WHERE model_name = %s AND ts >= %s AND ts < %s ORDER BY ts, id",
            (model_name, window.start, window.end),
        )
        rows = cur.fetchall()
    return WindowData(
        features=[r[0] if isinstance(r[0], dict) else {} for r in rows],
        model_versions=[str(r[1]) for r in rows],
        predicted_class=np.array([r[2] for r in rows], dtype=np.int64),
        confidence=np.array([r[3] for r in rows], dtype=np.float64),
        embeddings=[list(r[4] or []) for r in rows],
    )
