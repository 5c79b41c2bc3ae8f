"""Smoke run: log a small model through nginx, as a notebook would, and say where to see it."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import mlflow
import numpy as np
import torch

from mlops.tracking import experiment_id, load_client_env, retry

log = logging.getLogger(__name__)

SMOKE_EXPERIMENT = "platform-smoke"


@dataclass(frozen=True)
class SmokeResult:
    run_id: str
    experiment_name: str
    run_url: str
    user: str


@retry
def run_smoke(experiment_name: str = SMOKE_EXPERIMENT) -> SmokeResult:
    """Fit a tiny logistic-regression module and log params, metrics and the model."""
    load_client_env()
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        raise RuntimeError("MLFLOW_TRACKING_URI is not set and .mlops/local.env does not exist: run `make up`")
    exp_id = experiment_id(experiment_name)
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).float().unsqueeze(1)
    model = torch.nn.Sequential(torch.nn.Linear(4, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    with mlflow.start_run(experiment_id=exp_id, run_name="smoke") as run:
        mlflow.log_params({"lr": 0.5, "epochs": 20, "features": 4})
        for epoch in range(20):
            optimizer.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
            loss.backward()
            optimizer.step()
            mlflow.log_metric("loss", loss.item(), step=epoch)
        accuracy = ((model(x) > 0).float() == y).float().mean().item()
        mlflow.log_metric("accuracy", accuracy)
        mlflow.pytorch.log_model(model, name="model", input_example=np.zeros((1, 4), dtype=np.float32))
        log.info("smoke run %s: accuracy %.3f", run.info.run_id, accuracy)
    base = os.environ["MLFLOW_TRACKING_URI"].rstrip("/")
    return SmokeResult(run.info.run_id, experiment_name, f"{base}/#/experiments/{exp_id}/runs/{run.info.run_id}",
                       run.info.user_id)
