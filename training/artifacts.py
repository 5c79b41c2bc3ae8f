"""A logged model version read back: what ``training.train.log_model`` writes, loaded without unpickling.

A registered version is loaded from its run's ``model_state/`` artifacts (``state_dict.pt`` with
``weights_only=True`` and ``model_config.json``), not by unpickling the MLflow model: loading needs
no code from the artifact store and gives a plain :class:`training.model.CustomVGG`.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import torch
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from mlops.registry import RegistryError
from mlops.tracking import retry
from training.model import CustomVGG, ModelConfig

log = logging.getLogger(__name__)


@dataclass
class LoadedVersion:
    name: str
    version: str
    run_id: str
    model: CustomVGG
    tags: dict[str, str] = field(default_factory=dict)
    run_tags: dict[str, str] = field(default_factory=dict)
    run_params: dict[str, str] = field(default_factory=dict)
    local_dir: Path | None = None

    @property
    def image_size(self) -> int:
        return self.model.config.image_size


@retry
def _download(run_id: str, artifact_path: str, dst: str) -> str:
    return mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path, dst_path=dst)


@retry
def _run_data(client: MlflowClient, run_id: str) -> tuple[dict[str, str], dict[str, str]]:
    """(tags, params) of a run."""
    data = client.get_run(run_id).data
    return dict(data.tags), dict(data.params)


def load_version(client: MlflowClient, mv: ModelVersion, keep_dir: Path | None = None) -> LoadedVersion:
    """Download a version's ``model_state`` and build the plain FP32 model (eval mode).

    ``keep_dir``: download there and keep the files (serving also fetches the INT8 artifact next to it).
    """
    if not mv.run_id:
        raise RegistryError(f"{mv.name} version {mv.version} has no source run (not logged by `mlops train`)")
    tmp = None
    if keep_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="mlops-model-")
        target = Path(tmp.name)
    else:
        target = keep_dir
        target.mkdir(parents=True, exist_ok=True)
    try:
        try:
            local = Path(_download(mv.run_id, "model_state", str(target)))
        except MlflowException as exc:
            raise RegistryError(
                f"{mv.name} version {mv.version}: run {mv.run_id} has no model_state/ artifacts ({exc.message})"
            ) from exc
        missing = [f for f in ("model_config.json", "state_dict.pt") if not (local / f).is_file()]
        if missing:
            raise RegistryError(f"{mv.name} version {mv.version}: run {mv.run_id} lacks model_state/{missing[0]} "
                                f"(not logged by `mlops train`)")
        config = ModelConfig(**json.loads((local / "model_config.json").read_text()))
        model = CustomVGG(config)
        model.load_state_dict(torch.load(local / "state_dict.pt", map_location="cpu", weights_only=True))
        model.eval()
    finally:
        if tmp is not None:
            tmp.cleanup()
    run_tags, run_params = _run_data(client, mv.run_id)
    return LoadedVersion(
        name=mv.name, version=str(mv.version), run_id=mv.run_id, model=model, tags=dict(mv.tags or {}),
        run_tags=run_tags, run_params=run_params, local_dir=keep_dir,
    )


def download_run_artifact(run_id: str, artifact_path: str, dst: Path) -> Path:
    """One artifact of a run (e.g. ``int8/model_int8.pt2``) into ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    return Path(_download(run_id, artifact_path, str(dst)))
