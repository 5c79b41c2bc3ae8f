"""gunicorn settings of the MLflow tracking server (passed with --gunicorn-opts "--config ...").

`mlflow server --expose-prometheus DIR` runs prometheus_flask_exporter in multiprocess mode: each
worker writes its counters to files in DIR and /metrics sums them. Files of workers that exited stay
behind, so this empties DIR when the server starts (no counts from an earlier run) and retires each
exited worker's live gauges, as prometheus_client documents for gunicorn.
"""

import os
from pathlib import Path


def _metrics_dir() -> Path | None:
    value = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")
    return Path(value) if value else None


def on_starting(server):  # noqa: ANN001, ANN201 - gunicorn's hook signature
    directory = _metrics_dir()
    if directory is not None and directory.is_dir():
        for stale in directory.glob("*.db"):
            stale.unlink(missing_ok=True)


def child_exit(server, worker):  # noqa: ANN001, ANN201 - gunicorn's hook signature
    if _metrics_dir() is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
