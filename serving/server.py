"""Start the serving app: gunicorn managing uvicorn workers, bound to loopback by default.

The workers share their Prometheus metrics through files (prometheus_client's multiprocess mode, see
:class:`serving.app.Metrics`): each start gets a fresh private directory (:func:`metrics_dir`), named in
``PROMETHEUS_MULTIPROC_DIR`` for the workers; the master's hooks (:mod:`serving.gunicorn_hooks`) mark an exited
worker dead and remove the directory when the server stops.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import sys
from pathlib import Path

from mlops import workers
from mlops.settings import get_settings

log = logging.getLogger(__name__)

class Worker(workers.Worker):
    """Serving's uvicorn worker (:class:`mlops.workers.Worker`: it leaves when its master is gone) under nginx's path
    prefix (setting ``serve_root_path``).

    Read when the worker starts (uvicorn reads ``CONFIG_KWARGS`` in ``__init__``), not at import. The C HTTP
    parser (httptools) and event loop (uvloop) are required, not "auto": with h11 and asyncio the request path
    cost more than the OpenVINO model it serves.
    """

    @property
    def CONFIG_KWARGS(self) -> dict[str, object]:  # noqa: N802 - uvicorn's name
        return {**getattr(workers.UvicornWorker, "CONFIG_KWARGS", {}), "root_path": get_settings().serve_root_path,
                "loop": "uvloop", "http": "httptools"}


def gunicorn_argv(host: str, port: int, workers: int) -> list[str]:
    return [
        sys.executable, "-m", "gunicorn", "serving.app:create_app()",
        "--worker-class", "serving.server.Worker",
        "--workers", str(workers),
        "--bind", f"{host}:{port}",
        # Model loading happens in a background thread: boot is quick, the timeout can stay short.
        "--timeout", "120",
        "--graceful-timeout", "60",
        "--keep-alive", "5",
        "--access-logfile", "-",
        "--config", "python:serving.gunicorn_hooks",
    ]


def metrics_dir(base: Path, pid: int) -> Path:
    """``base/<pid>``, fresh (emptied) and private (0700): the metric files of the server whose gunicorn master is
    ``pid``. Directories left by masters that are gone (killed before their exit hook ran) are removed."""
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    for old in base.iterdir():
        if old.name.isdigit() and int(old.name) != pid and not _alive(int(old.name)):
            shutil.rmtree(old, ignore_errors=True)
    here = base / str(pid)
    shutil.rmtree(here, ignore_errors=True)
    here.mkdir(mode=0o700)
    here.chmod(0o700)  # whatever the umask
    return here


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def run_server(host: str | None = None, port: int | None = None, workers: int | None = None,
               model: str | None = None, alias: str | None = None) -> None:
    """Replace this process with gunicorn (signals from systemd/supervisord reach it directly)."""
    s = get_settings()
    host = host or s.serve_host
    port = port or s.serve_port
    workers = workers or s.serve_workers
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        log.warning("Serving on %s: not loopback; only nginx should be reachable from outside", host)
    env = dict(os.environ)
    if model:
        env["MLOPS_MODEL_NAME"] = model
    if alias:
        env["MLOPS_SERVE_ALIAS"] = alias
    if not s.serve_threads and "MLOPS_SERVE_THREADS" not in env:
        env["MLOPS_SERVE_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // workers))
    # This process becomes the gunicorn master: its pid names the directory.
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir(s.serve_metrics_dir or s.state_dir / "serving-metrics",
                                                      os.getpid()))
    argv = gunicorn_argv(host, port, workers)
    log.info("Starting %s", " ".join(argv))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, env)  # noqa: S606 - argv is built here, no shell
