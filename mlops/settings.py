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

    @property
    def client_env_file(self) -> Path:
        return self.state_dir / "local.env"

    @property
    def platform_file(self) -> Path:
        return self.state_dir / "platform.json"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
