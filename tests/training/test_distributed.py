"""DDP: two torchrun workers on this machine train one model and produce one MLflow run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from training.distributed import torchrun_command

pytestmark = pytest.mark.slow


def test_torchrun_command_single_and_multi_node() -> None:
    single = torchrun_command(2, ["--epochs=1"])
    assert "--standalone" in single and single[-2:] == ["train", "--epochs=1"]
    multi = torchrun_command(4, [], nnodes="2", node_rank=1, rdzv_endpoint="10.0.0.1:29400")
    assert "--rdzv-endpoint=10.0.0.1:29400" in multi and "--node-rank=1" in multi
    with pytest.raises(ValueError, match="rdzv-endpoint"):
        torchrun_command(2, [], nnodes="2")


def test_two_processes_produce_one_run(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    mlops = Path(sys.executable).with_name("mlops")
    cmd = [str(mlops), "train", "--nproc-per-node=2", "--epochs=2", "--image-size=32", "--width=0.0625",
           "--n-train=64", "--n-val=32", "--batch-size=16", "--no-int8", "--no-register", "--experiment=ddp-test"]
    out = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("ddp-test")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    assert runs[0].data.params["world_size"] == "2" and runs[0].data.params["dist_backend"] in {"gloo", "ccl"}
    assert len(client.get_metric_history(runs[0].info.run_id, "val_accuracy")) == 2
