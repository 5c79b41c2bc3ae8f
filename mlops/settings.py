"""The one settings source: read once by :func:`get_settings`, env prefix ``MLOPS_``.

Priority: CLI flag (applied by the caller) > environment > ``.env`` (development only) > default.
Vendor variables keep their own names (``MLFLOW_TRACKING_URI``, ``AWS_*``) and are read by
the vendor libraries themselves; :func:`mlops.tracking.load_client_env` fills them from the
file ``make up`` writes.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLOPS_", env_file=".env", extra="ignore")

    # --- platform (written by `make up`) -------------------------------------------------
    state_dir: Path = Path(".mlops")
    """Where `make up` writes `local.env` (client variables) and `platform.json` (service map)."""

    # --- tracking ------------------------------------------------------------------------
    experiment_name: str = "visual-quality-inspection"
    model_name: str = "pill-quality"

    # --- training (defaults sized so the demo trains in a few minutes on 2 cores) --------
    train_epochs: int = 4
    train_batch_size: int = 32
    train_learning_rate: float = 1e-3
    train_image_size: int = 64
    train_width: float = 0.125
    """Channel multiplier of the VGG16 trunk (1.0 = real VGG16)."""
    train_n_train: int = 512
    train_n_val: int = 256
    train_seed: int = 0
    train_backend: str = "auto"
    """auto | ipex | native | none"""
    train_threads: int | None = None
    """Intra-op threads; default: the cores this process may use (divided among local DDP workers)."""
    int8_max_drop_points: float = 0.5
    """The INT8 model is refused when its validation accuracy is more than this many points below FP32."""
    int8_calibration_images: int = 256

    # --- monitoring store (see mlops.monitoring) -------------------------------------------
    monitoring_dsn: str = ""
    """libpq connection string without password (default: the `monitoring` entry of platform.json)."""

    # --- registry & serving --------------------------------------------------------------

    # --- drift & retraining --------------------------------------------------------------

    # --- day-2 operations ----------------------------------------------------------------

    @property
    def client_env_file(self) -> Path:
        return self.state_dir / "local.env"

    @property
    def platform_file(self) -> Path:
        return self.state_dir / "platform.json"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
