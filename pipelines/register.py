"""Registry access shared by promotion and serving: resolve versions and aliases, load a version's model.

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

from mlops.tracking import retry
from training.model import CustomVGG, ModelConfig

log = logging.getLogger(__name__)

CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous-champion"
CHALLENGER = "challenger"


class RegistryError(RuntimeError):
    """A model, version or alias the command needs does not exist (message says which)."""


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


def _not_found(exc: MlflowException) -> bool:
    return exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}


@retry
def _get_version(client: MlflowClient, name: str, version: str) -> ModelVersion:
    return client.get_model_version(name, version)


@retry
def _get_by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion:
    return client.get_model_version_by_alias(name, alias)


@retry
def _search_versions(client: MlflowClient, name: str) -> list[ModelVersion]:
    return list(client.search_model_versions(f"name = '{name}'"))


def version_by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version ``alias`` points to, or None when the alias (or the model) does not exist."""
    try:
        return _get_by_alias(client, name, alias)
    except MlflowException as exc:
        if _not_found(exc):
            return None
        raise


def resolve_version(client: MlflowClient, name: str, candidate: str = "latest") -> ModelVersion:
    """``latest`` (highest version number), a version number, or an alias → the ModelVersion."""
    if candidate == "latest":
        versions = _search_versions(client, name)
        if not versions:
            raise RegistryError(f"registered model {name!r} has no versions (train one with `mlops train`)")
        return max(versions, key=lambda v: int(v.version))
    if candidate.isdigit():
        try:
            return _get_version(client, name, candidate)
        except MlflowException as exc:
            if _not_found(exc):
                raise RegistryError(f"registered model {name!r} has no version {candidate}") from exc
            raise
    found = version_by_alias(client, name, candidate)
    if found is None:
        raise RegistryError(f"registered model {name!r} has no version {candidate!r} (expected a number, "
                            f"'latest' or an existing alias)")
    return found


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
