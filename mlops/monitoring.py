"""The monitoring store: what serving records per prediction, what drift checks read.

One PostgreSQL schema, ``monitoring``, in the platform's application database (not MLflow's
backend store). Serving appends to ``monitoring.predictions``; ``mlops drift check`` reads
windows of it; ``mlops feedback`` writes ``monitoring.feedback``; serving also keeps a sample of
its input images in ``monitoring.samples`` (for retraining on labelled traffic). The DDL below is the single
definition (idempotent; applied by :func:`ensure_schema`).

Where the database is: ``MLOPS_MONITORING_DSN`` (a libpq connection string without a password;
libpq reads the password from ``PGPASSFILE``) or, by default, the ``monitoring`` entry that
``make up`` writes to ``.mlops/platform.json`` (host, port, dbname, user, password_file).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from typing import Any

import psycopg2
import psycopg2.extensions

from mlops.settings import get_settings

log = logging.getLogger(__name__)

SCHEMA = "monitoring"

DDL = """
CREATE SCHEMA IF NOT EXISTS monitoring;

-- One row per predicted image. `features` holds the named image statistics of
-- training.features.FEATURE_NAMES (name -> float); `embedding` the model's pooled embedding.
CREATE TABLE IF NOT EXISTS monitoring.predictions (
    id              bigserial PRIMARY KEY,
    request_id      text        NOT NULL,
    item_index      integer     NOT NULL,
    ts              timestamptz NOT NULL DEFAULT now(),
    model_name      text        NOT NULL,
    model_version   text        NOT NULL,
    variant         text        NOT NULL,
    predicted_class smallint    NOT NULL,
    confidence      real        NOT NULL,
    features        jsonb       NOT NULL,
    embedding       real[]      NOT NULL,
    UNIQUE (request_id, item_index)
);
CREATE INDEX IF NOT EXISTS predictions_model_ts ON monitoring.predictions (model_name, ts);

-- Labelled feedback on served predictions (`mlops feedback`).
CREATE TABLE IF NOT EXISTS monitoring.feedback (
    id          bigserial PRIMARY KEY,
    request_id  text        NOT NULL,
    item_index  integer     NOT NULL DEFAULT 0,
    label       smallint    NOT NULL,
    ts          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (request_id, item_index)
);

-- A deterministic sample (MLOPS_SERVE_SAMPLE_RATE, by request id) of the images serving predicted:
-- a PNG of the decoded RGB input at the model's input size. Joined with feedback, the labelled
-- examples retraining adds to the reference data (pipelines.feedback.labelled_examples).
CREATE TABLE IF NOT EXISTS monitoring.samples (
    request_id  text        NOT NULL,
    item_index  integer     NOT NULL,
    ts          timestamptz NOT NULL DEFAULT now(),
    image       bytea       NOT NULL,
    PRIMARY KEY (request_id, item_index)
);
"""


class MonitoringNotConfigured(RuntimeError):
    """Neither MLOPS_MONITORING_DSN nor a `monitoring` entry in platform.json."""


def connection_kwargs() -> dict[str, Any]:
    """libpq parameters for the monitoring database (the password stays in PGPASSFILE)."""
    settings = get_settings()
    if settings.monitoring_dsn:
        return {"dsn": settings.monitoring_dsn}
    try:
        entry = json.loads(settings.platform_file.read_text())["monitoring"]
        if not isinstance(entry, dict):
            raise KeyError("monitoring")
    except (OSError, ValueError, KeyError) as exc:
        raise MonitoringNotConfigured(
            f"no monitoring database: set MLOPS_MONITORING_DSN or run `make up` "
            f"(it writes the `monitoring` entry of {settings.platform_file})"
        ) from exc
    kwargs = {k: entry[k] for k in ("host", "port", "dbname", "user")}
    if entry.get("password_file") and "PGPASSFILE" not in os.environ:
        kwargs["passfile"] = entry["password_file"]
    return kwargs


def connect(application_name: str = "mlops") -> psycopg2.extensions.connection:
    """A new connection to the monitoring database."""
    return psycopg2.connect(application_name=application_name, connect_timeout=10, **connection_kwargs())


def ensure_schema(conn: psycopg2.extensions.connection) -> None:
    """Create the monitoring schema and tables if missing (safe to run concurrently and repeatedly)."""
    with conn, conn.cursor() as cur:
        # Serialise concurrent first runs: CREATE ... IF NOT EXISTS races on the catalog otherwise.
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('mlops.monitoring.ddl'))")
        cur.execute(DDL)


@contextlib.contextmanager
def advisory_lock(conn: psycopg2.extensions.connection, key: int | str, wait_s: float | None) -> Iterator[bool]:
    """Hold a session-level advisory lock on ``key`` for the block; yields whether it is held.

    ``key``: a bigint, or a string PostgreSQL hashes (``hashtext``). ``wait_s=None`` tries once (a
    second holder gets False at once: the retrain tick); otherwise waits at most ``wait_s`` seconds
    (``lock_timeout``; psycopg2 raises when it passes: promotion). Released on exit or disconnect.
    """
    expr = "hashtext(%s)" if isinstance(key, str) else "%s::bigint"
    conn.autocommit = True
    with conn.cursor() as cur:
        if wait_s is None:
            cur.execute(f"SELECT pg_try_advisory_lock({expr})", (key,))
            held = bool(cur.fetchone()[0])
        else:
            cur.execute("SET lock_timeout = %s", (f"{int(wait_s * 1000)}ms",))
            cur.execute(f"SELECT pg_advisory_lock({expr})", (key,))
            held = True
    try:
        yield held
    finally:
        if held and not conn.closed:
            with conn.cursor() as cur:
                cur.execute(f"SELECT pg_advisory_unlock({expr})", (key,))
