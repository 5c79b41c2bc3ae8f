"""MLflow calls used by training and benchmarks, with retries on transient failures (stamina)."""

from __future__ import annotations

import logging
from typing import Any

import mlflow

from mlops.tracking import experiment_id, retry

log = logging.getLogger(__name__)



def set_experiment(name: str) -> str:
    """Make ``name`` the active experiment of ``mlflow.start_run`` (created when missing); returns its id."""
    exp_id = experiment_id(name)
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


@retry
def log_params(params: dict[str, Any]) -> None:
    mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})


@retry
def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    mlflow.log_metrics(metrics, step=step)


@retry
def set_tags(tags: dict[str, Any]) -> None:
    mlflow.set_tags(tags)


@retry
def log_figure(figure: Any, path: str) -> None:  # noqa: ANN401 - matplotlib Figure
    mlflow.log_figure(figure, path)


@retry
def log_artifact(local_path: str, artifact_path: str | None = None) -> None:
    mlflow.log_artifact(local_path, artifact_path)


@retry
def log_dict(data: dict[str, Any], path: str) -> None:
    mlflow.log_dict(data, path)


@retry
def log_text(text: str, path: str) -> None:
    mlflow.log_text(text, path)
