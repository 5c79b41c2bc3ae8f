"""The champion every drift check compares with: what is said when a model has none, and asking for
that without importing MLflow, torch or scipy (the retrain tick of a platform with no champion yet)."""

from __future__ import annotations

from mlops.access import CHAMPION
from mlops.rest import alias_version


def no_champion_reason(model_name: str) -> str:
    return f"model {model_name!r} has no @{CHAMPION} version: promote one (mlops promote)"


def surely_no_champion(model_name: str) -> bool:
    """True only when MLflow's REST API says the model (or its champion alias) does not exist; False
    when it has one or this cannot tell (then the check asks through MLflow's client)."""
    return alias_version(model_name, CHAMPION) == ""
