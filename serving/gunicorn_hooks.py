"""gunicorn configuration module of ``mlops serve`` (``--config python:serving.gunicorn_hooks``): the master's hooks.

Only names of gunicorn settings belong here (gunicorn reads every one of them); the command line
(:func:`serving.server.gunicorn_argv`) holds the rest.
"""

from __future__ import annotations

import os
import shutil
from typing import Any


def child_exit(server: Any, worker: Any) -> None:  # noqa: ANN401 - gunicorn's Arbiter and Worker
    """A worker exited (stopped, crashed, replaced): its live gauges leave ``/metrics`` (model_info, degraded,
    monitoring backlog); its counters and histograms stay, as what it served happened."""
    from prometheus_client import multiprocess

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:  # noqa: ANN401 - gunicorn's Arbiter
    """The server stops: its metric files go with it (the next start begins at zero, as Prometheus expects)."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        shutil.rmtree(path, ignore_errors=True)
