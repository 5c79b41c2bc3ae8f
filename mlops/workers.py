"""uvicorn workers for gunicorn: serving's, and MLflow's where it serves its ASGI app (``mlflow_worker_class``).

gunicorn stays the process manager (worker restarts, timeouts, graceful reloads, the Prometheus multiprocess
hooks); uvicorn serves each worker's event loop. Imported by gunicorn (``--worker-class``) in environments that
have uvicorn: MLflow's (MLflow depends on it) and serving's.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

try:
    from uvicorn.workers import UvicornWorker
except ImportError:  # pragma: no cover - an environment without uvicorn never runs these workers
    UvicornWorker = object  # type: ignore[assignment,misc]

log = logging.getLogger(__name__)

# MLflow's auth app returns its FastAPI app (the Flask app inside it, MLflow's ASGI middleware and the
# permission middleware of its FastAPI-native routes around it) when this names uvicorn.
MLFLOW_SERVER_KIND = "_MLFLOW_SGI_NAME"
# gunicorn's --worker-class for MLflow's ASGI app (the mlflow role's mlflow_worker_class).
MLFLOW_WORKER = f"{__name__}.MlflowWorker"


class Worker(UvicornWorker):  # type: ignore[misc,valid-type]
    """A uvicorn worker that leaves when its gunicorn master is gone.

    A worker whose master was killed (-9) keeps the listening socket: it would serve unsupervised while the
    restarted master cannot bind the port. gunicorn's own workers check for this; uvicorn's do not.
    """

    def run(self) -> None:
        threading.Thread(target=self._exit_when_orphaned, name="parent-watch", daemon=True).start()
        super().run()

    def _exit_when_orphaned(self, interval_s: float = 1.0) -> None:
        while os.getppid() == self.ppid:
            time.sleep(interval_s)
        log.warning("worker %d: its gunicorn master %d is gone; shutting down", os.getpid(), self.ppid)
        os.kill(os.getpid(), signal.SIGTERM)  # uvicorn's graceful shutdown: in-flight requests finish


class MlflowWorker(Worker):
    """The MLflow tracking server's ASGI worker: ``mlflow server --app-name mlops-auth --gunicorn-opts "--worker-class
    mlops.workers.MlflowWorker ..."`` serves MLflow's ASGI app (its security middleware and FastAPI-native routes
    included) under gunicorn, where gunicorn's sync workers serve its Flask app.

    ``mlflow server`` tells the app it runs under gunicorn; the worker says uvicorn before the app is loaded
    (gunicorn loads it in each worker), so MLflow's auth app builds its FastAPI app. uvicorn does not rewrite the
    client's address from ``X-Forwarded-For``: the auth app takes nginx's ``X-Real-IP`` itself, and only from
    the proxies it trusts (``mlops.mlflow_auth``).
    """

    CONFIG_KWARGS = {**getattr(UvicornWorker, "CONFIG_KWARGS", {}), "proxy_headers": False, "server_header": False}

    def init_process(self) -> None:
        os.environ[MLFLOW_SERVER_KIND] = "uvicorn"
        super().init_process()
