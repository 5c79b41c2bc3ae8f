"""MLflow calls used by training and benchmarks, with retries on transient failures (stamina)."""

from __future__ import annotations

import logging
from typing import Any

import mlflow

from mlops.tracking import retry

log = logging.getLogger(__name__)



@retry
def set_experiment(name: str) -> str:
    return mlflow.set_experiment(name).experiment_id


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
